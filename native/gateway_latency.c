/*
 * gateway_latency.c — wiring the gateway to its stage-latency segments; see
 * gateway_latency.h. The recording itself is three short hooks in gateway_pump.c.
 */
#include "gateway_latency.h"

#include "gateway_internal.h"

void ts_gateway_set_latency(ts_gateway *gw, ts_lat_segment *own) {
    pthread_mutex_lock(&gw->lock);
    gw->lat_ack = own ? ts_lat_segment_hist(own, TS_LAT_ORDER_TO_ACK) : NULL;
    /* a segment of one stage (made by an older supervisor) has no amend histogram */
    gw->lat_amend = own && own->n_hists > TS_LAT_AMEND_TO_ANSWER
                        ? ts_lat_segment_hist(own, TS_LAT_AMEND_TO_ANSWER)
                        : NULL;
    pthread_mutex_unlock(&gw->lock);
}

int ts_gateway_set_shard_latency(ts_gateway *gw, uint32_t shard_id, ts_lat_segment *seg) {
    int rc = TS_GW_ERR_ARGUMENT;
    pthread_mutex_lock(&gw->lock);
    for (uint32_t i = 0; i < gw->n_shards; i++) {
        gw_shard *sh = &gw->shards[i];
        if (sh->shard_id != shard_id) continue;
        /* the ring's head, counted on locally from here: reading it per push would pull
         * in the consumer's cache line */
        ts_ring_info info;
        ts_ring_read_info(sh->cmd, &info);
        sh->lat = seg;
        sh->lat_pushed = info.head;
        sh->lat_stamped = info.head;
        sh->lat_taken = info.tail;
        sh->lat_capacity = info.capacity;
        rc = TS_GW_OK;
    }
    pthread_mutex_unlock(&gw->lock);
    return rc;
}

/* Stamped before the push, never after: a worker that takes the commands at once must
 * find their stamp already there. The end index is where this push will end if it all
 * fits; a partial push leaves the stamp ahead, for the batch that later takes the rest.
 * A stage left over from an earlier pass is not stamped again, so the time stays that of
 * the pass that took its commands (or the earliest stamped pass since).
 *
 * A stamp the worker has not taken yet is never overwritten: the batch that takes it is
 * timed from the oldest push in it. Overwriting it with each newer push timed a batch
 * from its youngest commands, so a worker stopped for a second, while the idle clock
 * ticks kept coming every 100 ms, read as a 100 ms wait at most. The tail is read only
 * while a stamp is out (one load of the consumer's line per push then, none otherwise). */
void gw_latency_before_push(gw_shard *sh, int64_t pass_ns) {
    uint64_t pending = (uint64_t)(sh->staged - sh->stage_sent) + (sh->backlog.count - sh->backlog.sent);
    uint64_t end = sh->lat_pushed + pending;
    if (!pending || end == sh->lat_stamped) return;
    if (sh->lat_stamped > sh->lat_taken) {
        sh->lat_taken = sh->lat_pushed - (sh->lat_capacity - ts_ring_writable(sh->cmd));
        if (sh->lat_stamped > sh->lat_taken) return; /* still waiting to be taken */
    }
    sh->lat_stamped = end;
    ts_lat_handoff_stamp(sh->lat, end, pass_ns);
}
