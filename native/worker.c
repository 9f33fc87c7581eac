/*
 * worker.c — the shard worker's loop and recovery; see worker.h for the design.
 *
 * Memory-order notes: every control-block field has one writer. The worker publishes its
 * counters with relaxed stores (they are monitoring figures, read one at a time), the
 * state and the base fields with release stores (a reader that sees base_set sees the
 * base values), and reads the supervisor's steering fields with acquire loads.
 *
 * The outbox is the engine's own output buffers: the engine appends until
 * ts_engine_clear_output, so under GROUP several batches' output can wait there for the
 * sync that covers them, and nothing is copied on the way to the rings. `ready` marks how
 * much of it may leave; `pushed` how much has.
 */
#define _GNU_SOURCE
#include "worker.h"
#include "mono_clock.h"

#include "latency_hist_record.h"
#include "md_refresh.h"
#include "snapshot_file.h"
#include "snapshot_fork.h"
#include "snapshot_writer.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define DEFAULT_MAX_BATCH 1024u
/* GROUP: output held for a sync beyond this many records forces the sync early */
#define MAX_HELD_OUTPUT (1u << 16)

_Static_assert(sizeof(ts_worker_control) == TS_WORKER_CONTROL_SIZE, "control block size");
_Static_assert(offsetof(ts_worker_control, heartbeat_ns) == 128, "hot counters on their own lines");
_Static_assert(offsetof(ts_worker_control, snapshot_seq) == 256, "recovery facts on their own lines");
_Static_assert(offsetof(ts_worker_control, error) == 384, "error text offset");
_Static_assert(offsetof(ts_worker_control, batch_gap_max_ns) == 896, "stall gauge offset");
_Static_assert(offsetof(ts_worker_control, md_refreshes_served) == 360, "md refresh fields");
_Static_assert(offsetof(ts_worker_control, snapshot_write_ns) == 376, "snapshot timing fields");
_Static_assert(offsetof(ts_worker_control, order_images_served) == 84, "order image fields");
_Static_assert(offsetof(ts_worker_control, snapshot_fork_ns) == 904, "fork mode fields");
_Static_assert(offsetof(ts_worker_control, snapshots_failed) == 940, "fork mode fields");
_Static_assert(offsetof(ts_worker_control, snapshot_collapse_ns) == 952, "fork mode fields");
_Static_assert(offsetof(ts_worker_control, accepted_out) == 1024, "event counters offset");
_Static_assert(offsetof(ts_worker_control, rejects_by_reason) == 1088, "reject counters offset");

#define STORE(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)
#define PUBLISH(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELEASE)
#define LOAD(field) __atomic_load_n(&(field), __ATOMIC_ACQUIRE)

typedef struct outbox {
    uint64_t count;  /* records in the engine's buffer */
    uint64_t ready;  /* of which may be pushed */
    uint64_t pushed; /* of which are pushed */
} outbox;

struct ts_worker {
    ts_worker_config cfg;
    ts_engine *e;
    ts_journal *j;
    ts_ring *in, *ev, *md;
    uint64_t ev_capacity, md_capacity;
    ts_worker_control *ctl;
    int32_t durability;
    uint64_t in_tail;          /* absolute index of the next inbound command */
    uint64_t seq;              /* last seq journaled and matched */
    uint64_t md_total;         /* md records made through seq */
    uint64_t last_exec_id;     /* exec id of the last event made */
    uint64_t since_snapshot;   /* commands since the last snapshot */
    uint32_t snapshot_req_seen;
    uint32_t refresh_seen;     /* md_refresh_requests value last served */
    int stopping;
    int local_stop;            /* ts_worker_request_stop */
    uint64_t stop_tail;        /* drain the inbound ring up to here, then stop */
    outbox evo, mdo;
    /* recovery: what the previous incarnation never pushed */
    uint64_t emit_exec_after;
    uint64_t emit_md_from;
    uint64_t reemitted_events, reemitted_md;
    ts_journal_error err;
    /* stage latencies (NULL: not recorded); see ts_worker_set_latency */
    ts_lat_segment *lat;
    ts_lat_hist *lat_g2s, *lat_s2m, *lat_m2e; /* its histograms */
    int64_t out_since_ns;      /* when the oldest output not yet pushed was matched */
    /* background snapshots (NULL writer: inline, SNAPSHOT_DUE to the caller) */
    ts_snapwriter *writer;
    uint64_t ready_seq;        /* output through this seq may leave (mark_all_ready) */
    uint64_t pushed_seq;       /* output through this seq is in the rings (atomic: the
                                * writer's gate) */
    int snapshot_deferred;     /* the due snapshot was counted as waiting for the writer */
    int fork_mode;             /* TS_SNAPSHOTS_FORK: children serialize and write */
    int fork_failures;         /* children in a row that died unfinished */
    int child_running;         /* a child forked by this thread has not exited yet */
    long child_minflt;         /* this thread's minor faults at that fork */
    int64_t batch_max_ns;      /* the control block's, kept here (no shared-line load) */
    int64_t backlog_since_ns;  /* end of the last batch, if commands were left waiting */
};

static int worker_fail(ts_worker *w, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int worker_fail(ts_worker *w, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err.message, sizeof w->err.message, fmt, ap);
    va_end(ap);
    w->err.status = TS_JOURNAL_ERR_STATE;
    snprintf(w->ctl->error, sizeof w->ctl->error, "%s", w->err.message);
    return rc;
}

/* Copy a journal error into the control block's text and return rc. */
static int journal_fail(ts_worker *w, int rc) {
    snprintf(w->ctl->error, sizeof w->ctl->error, "%s", w->err.message);
    return rc;
}

/* ---- control block ---------------------------------------------------------------------- */

void ts_worker_control_init(ts_worker_control *ctl, uint32_t shard_id) {
    memset(ctl, 0, sizeof *ctl);
    ctl->version = TS_WORKER_CONTROL_VERSION;
    ctl->shard_id = shard_id;
    PUBLISH(ctl->magic, (uint64_t)TS_WORKER_CONTROL_MAGIC);
}

int ts_worker_control_check(const void *mem, uint64_t size) {
    if (size < sizeof(ts_worker_control)) return -1;
    const ts_worker_control *ctl = mem;
    if (__atomic_load_n(&ctl->magic, __ATOMIC_ACQUIRE) != (uint64_t)TS_WORKER_CONTROL_MAGIC)
        return -1;
    return ctl->version == TS_WORKER_CONTROL_VERSION ? 0 : -1;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

ts_worker *ts_worker_new(const ts_worker_config *cfg, ts_engine *e, ts_ring *commands,
                         ts_ring *events, ts_ring *md, ts_worker_control *ctl) {
    if (!cfg || !e || !commands || !events || !md || !ctl) return NULL;
    ts_worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->cfg = *cfg;
    if (!w->cfg.max_batch) w->cfg.max_batch = DEFAULT_MAX_BATCH;
    w->e = e;
    w->in = commands;
    w->ev = events;
    w->md = md;
    w->ctl = ctl;
    w->emit_exec_after = UINT64_MAX;
    w->emit_md_from = UINT64_MAX;
    ts_ring_info info;
    ts_ring_read_info(events, &info);
    w->ev_capacity = info.capacity;
    ts_ring_read_info(md, &info);
    w->md_capacity = info.capacity;
    ts_ring_read_info(commands, &info);
    w->in_tail = info.tail;
    /* a request made while no worker ran is still served */
    w->snapshot_req_seen = LOAD(ctl->snapshots_served);
    w->refresh_seen = LOAD(ctl->md_refreshes_served);
    return w;
}

void ts_worker_free(ts_worker *w) {
    if (!w) return;
    ts_snapwriter_free(w->writer); /* cancels a write still waiting, removes its .tmp */
    free(w);
}

int ts_worker_set_snapshots(ts_worker *w, const char *dir, int mode) {
    if (w->writer) {
        ts_snapwriter_free(w->writer);
        w->writer = NULL;
    }
    w->fork_mode = mode == TS_SNAPSHOTS_FORK && ts_snapfork_supported();
    w->child_running = 0;
    STORE(w->ctl->snapshot_child_pid, 0);
    if (mode == TS_SNAPSHOTS_INLINE) return TS_JOURNAL_OK;
    w->writer = ts_snapwriter_new(dir, w->cfg.shard_id, &w->err);
    if (!w->writer) return journal_fail(w, w->err.status);
    ts_snapwriter_publish_child(w->writer, &w->ctl->snapshot_child_pid);
    /* best effort, like the children's own step aside: a refused policy leaves the thread
     * where it was, which is how it ran before */
    if (w->cfg.background_idle) (void)ts_snapwriter_share_core(w->writer);
    return TS_JOURNAL_OK;
}

int ts_worker_fork_supported(void) { return ts_snapfork_supported(); }

void ts_worker_snapshot_child_hooks(ts_worker *w, const char *hold_path, int fail) {
    if (w->writer) ts_snapwriter_child_hooks(w->writer, hold_path, fail);
}

void ts_worker_snapshot_hold(ts_worker *w, int hold) {
    if (w->writer) ts_snapwriter_hold(w->writer, hold);
}

int ts_worker_snapshot_phase(ts_worker *w) {
    if (!w->writer) return -1;
    if (ts_snapwriter_idle(w->writer)) return TS_SNAPWRITER_IDLE;
    int phase = ts_snapwriter_phase(w->writer);
    /* between the hand-off and the thread's start the job counts as being written */
    return phase == TS_SNAPWRITER_IDLE ? TS_SNAPWRITER_WRITING : phase;
}

void ts_worker_set_journal(ts_worker *w, ts_journal *j) {
    w->j = j;
    w->durability = j ? ts_journal_durability(j) : TS_DURABILITY_NONE;
}

void ts_worker_set_latency(ts_worker *w, ts_lat_segment *seg) {
    w->lat = seg;
    w->lat_g2s = seg ? ts_lat_segment_hist(seg, TS_LAT_GATEWAY_TO_SHARD) : NULL;
    w->lat_s2m = seg ? ts_lat_segment_hist(seg, TS_LAT_SHARD_TO_MATCHED) : NULL;
    w->lat_m2e = seg ? ts_lat_segment_hist(seg, TS_LAT_MATCHED_TO_EVENT) : NULL;
}

uint64_t ts_worker_seq(const ts_worker *w) { return w->seq; }
uint64_t ts_worker_md_count(const ts_worker *w) { return w->md_total; }
uint64_t ts_worker_last_exec_id(const ts_worker *w) { return w->last_exec_id; }
const ts_journal_error *ts_worker_error(const ts_worker *w) { return &w->err; }

/* ---- recovery ------------------------------------------------------------------------------ */

/* The record at absolute index `index` of a ring (the slots follow the header). */
static const void *ring_slot(ts_ring *r, uint64_t index) {
    ts_ring_info info;
    ts_ring_read_info(r, &info);
    return (const unsigned char *)r + TS_RING_HEADER_SIZE +
           (index & (info.capacity - 1)) * info.slot_size;
}

static uint64_t ring_head(ts_ring *r) {
    ts_ring_info info;
    ts_ring_read_info(r, &info);
    return info.head;
}

/* Push all n records, waiting as long as it takes (recovery and a refresh have nothing
 * else to do). Counted as every push is: a consumer's count of what it took from the ring
 * is compared with these (the md sidecar's drained records, the metrics say). */
static void push_blocking(ts_worker *w, ts_ring *r, const void *recs, uint64_t n) {
    const int64_t step = 100000000; /* re-check now and then, with a fresh heartbeat */
    uint64_t done = 0;
    uint64_t *counter = r == w->ev ? &w->ctl->events_out : &w->ctl->md_out;
    while (done < n) {
        uint64_t k = ts_ring_push_all(r, (const unsigned char *)recs + done * TS_RECORD_SIZE,
                                      n - done, &w->cfg.wait, step);
        done += k;
        STORE(*counter, *counter + k);
        STORE(w->ctl->heartbeat_ns, ts_mono_ns());
    }
}

static void reemit_batch(void *ctx, ts_engine *e, uint64_t first_seq, uint64_t n) {
    ts_worker *w = ctx;
    (void)first_seq;
    (void)n;
    const ts_event *ev;
    const ts_md *md;
    uint64_t n_ev = ts_engine_events(e, &ev);
    uint64_t n_md = ts_engine_md(e, &md);
    if (n_ev) {
        /* exec ids grow by one per event: the ones to emit are a suffix of the batch */
        uint64_t k = 0;
        while (k < n_ev && ev[k].exec_id <= w->emit_exec_after) k++;
        if (k < n_ev) {
            push_blocking(w, w->ev, ev + k, n_ev - k);
            w->reemitted_events += n_ev - k;
            STORE(w->ctl->last_exec_id, ev[n_ev - 1].exec_id);
        }
        w->last_exec_id = ev[n_ev - 1].exec_id;
    }
    if (n_md) {
        uint64_t first = w->md_total;
        uint64_t skip = w->emit_md_from > first ? w->emit_md_from - first : 0;
        if (skip < n_md && !w->cfg.discard_md) {
            push_blocking(w, w->md, md + skip, n_md - skip);
            w->reemitted_md += n_md - skip;
        }
        w->md_total += n_md;
    }
    STORE(w->ctl->heartbeat_ns, ts_mono_ns());
}

/* A refresh the previous incarnation was pushing when it died: count what reached the
 * ring (nothing else is pushed during a refresh). Idempotent, like its completion. */
static void settle_cut_refresh(ts_worker *w) {
    ts_worker_control *ctl = w->ctl;
    uint64_t len = LOAD(ctl->md_refresh_len);
    if (!len) return;
    uint64_t pushed = ring_head(w->md) - ctl->md_refresh_head;
    if (pushed > len) pushed = len;
    STORE(ctl->md_refresh_records, ctl->md_refresh_before + pushed);
    PUBLISH(ctl->md_refresh_len, 0);
}

int ts_worker_recover(ts_worker *w, const char *dir, uint64_t snapshot_seq,
                      uint64_t snapshot_md_count, uint64_t snapshot_last_exec_id, int sync_first,
                      ts_journal_replay_result *out) {
    ts_worker_control *ctl = w->ctl;
    settle_cut_refresh(w);
    w->seq = snapshot_seq;
    w->md_total = snapshot_md_count;
    w->last_exec_id = snapshot_last_exec_id;
    int base_set = (int)LOAD(ctl->base_set);
    /* what this run's earlier incarnations had pushed out (acknowledged): the journal
     * must still reach it, or files were removed or cut under the running instance */
    const uint64_t acked_before = base_set ? LOAD(ctl->acked_seq) : 0;
    if (base_set) {
        uint64_t ev_head = ring_head(w->ev);
        if (ev_head > 0) {
            const ts_event *last = ring_slot(w->ev, ev_head - 1);
            w->emit_exec_after = last->exec_id;
        } else {
            w->emit_exec_after = ctl->base_exec_id;
        }
        /* the md ring also holds refresh records, which are not engine output */
        w->emit_md_from = ctl->base_md + ring_head(w->md) - LOAD(ctl->md_refresh_records);
    } else {
        const uint32_t inherited = LOAD(ctl->inherited_set);
        if (inherited & TS_INHERITED_EVENTS) {
            /* a dead run's last push, or this run's if an incarnation that died before
             * its base was set pushed more (exec ids only grow): carried ones are older */
            uint64_t ev_head = ring_head(w->ev);
            uint64_t after = ctl->inherited_exec_id;
            if (ev_head > 0) {
                const ts_event *last = ring_slot(w->ev, ev_head - 1);
                if (last->exec_id > after) after = last->exec_id;
            }
            w->emit_exec_after = after;
        }
        if (inherited & TS_INHERITED_MD) /* past what an earlier incarnation pushed */
            w->emit_md_from = ctl->inherited_md + ring_head(w->md) -
                              ctl->inherited_md_carried - LOAD(ctl->md_refresh_records);
    }
    int rc = ts_journal_replay(dir, w->cfg.shard_id, snapshot_seq, 0, w->e, 0, reemit_batch, w,
                               sync_first, out);
    w->err = out->error;
    if (rc < 0) return journal_fail(w, rc);
    if (out->last_seq > w->seq) w->seq = out->last_seq;
    if (w->seq < acked_before)
        return worker_fail(w, TS_WORKER_ERR_STATE,
                           "the snapshots and journal in %s end at seq %llu, but this shard "
                           "acknowledged commands up to seq %llu earlier in this run: journal "
                           "files were removed or cut short under it (restore them; the data "
                           "directory must not be moved or deleted while the instance runs)",
                           dir, (unsigned long long)w->seq, (unsigned long long)acked_before);

    /* exactly-once intake: the next command to take is the one after the last journaled */
    ts_ring_info info;
    ts_ring_read_info(w->in, &info);
    w->in_tail = info.tail;
    if (base_set && out->last_seq > ctl->base_seq && out->last_ring_known) {
        uint64_t want = out->last_ring_index + 1;
        if (want > info.tail) {
            if (want > info.head)
                return worker_fail(w, TS_WORKER_ERR_STATE,
                                   "the journal has ring index %llu but the commands ring only "
                                   "holds up to %llu: the ring is not the one this journal "
                                   "was written from", (unsigned long long)(want - 1),
                                   (unsigned long long)info.head);
            ts_ring_release(w->in, want - info.tail);
            STORE(ctl->intake_skipped, want - info.tail);
            w->in_tail = want;
        } else if (want < info.tail) {
            return worker_fail(w, TS_WORKER_ERR_STATE,
                               "commands ring indices %llu..%llu were taken but never journaled "
                               "(journal ends at seq %llu)", (unsigned long long)want,
                               (unsigned long long)(info.tail - 1),
                               (unsigned long long)out->last_seq);
        }
    }
    if (!base_set) {
        ctl->base_seq = w->seq;
        ctl->base_exec_id = w->last_exec_id;
        /* the ordinal of the next md record is base_md + head - refresh records: the
         * ring holds none on a new block, or what was carried in and re-emitted */
        ctl->base_md = w->md_total - (ring_head(w->md) - LOAD(ctl->md_refresh_records));
        PUBLISH(ctl->base_set, 1u);
    }
    w->emit_exec_after = UINT64_MAX;
    w->emit_md_from = UINT64_MAX;
    STORE(ctl->recovered_from_seq, snapshot_seq);
    STORE(ctl->replayed, out->replayed);
    STORE(ctl->reemitted_events, w->reemitted_events);
    STORE(ctl->reemitted_md, w->reemitted_md);
    STORE(ctl->processed_seq, w->seq);
    STORE(ctl->journaled_seq, w->seq);
    STORE(ctl->acked_seq, w->seq);
    STORE(ctl->snapshot_seq, snapshot_seq);
    w->ready_seq = w->seq;
    PUBLISH(w->pushed_seq, w->seq);
    return rc;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static inline int outbox_waiting(const ts_worker *w) {
    return w->evo.pushed < w->evo.ready || w->mdo.pushed < w->mdo.ready;
}

static inline int outbox_empty(const ts_worker *w) {
    return w->evo.pushed == w->evo.count && w->mdo.pushed == w->mdo.count;
}

static inline void mark_all_ready(ts_worker *w) {
    w->evo.ready = w->evo.count;
    w->mdo.ready = w->mdo.count;
    w->ready_seq = w->seq;
}

/* Count pushed events by kind for /metrics: one switch per event, on records the loop
 * has just touched (they are in cache), written with relaxed stores like every counter. */
static void count_events(ts_worker_control *ctl, const ts_event *ev, uint64_t n) {
    uint64_t accepted = 0, trades = 0, cancelled = 0, replaced = 0, triggered = 0, rejected = 0;
    for (uint64_t i = 0; i < n; i++) {
        switch (ev[i].kind) {
        case TS_EV_ACCEPTED: accepted++; break;
        case TS_EV_TRADE: trades += (ev[i].flags & TS_EVF_TAKER) != 0; break;
        case TS_EV_CANCELLED: cancelled++; break;
        case TS_EV_REPLACED: replaced++; break;
        case TS_EV_TRIGGERED: triggered++; break;
        case TS_EV_REJECTED:
            rejected++;
            STORE(ctl->rejects_by_reason[ev[i].reason & 63],
                  ctl->rejects_by_reason[ev[i].reason & 63] + 1);
            break;
        default: break;
        }
    }
    STORE(ctl->accepted_out, ctl->accepted_out + accepted);
    STORE(ctl->trades_out, ctl->trades_out + trades);
    STORE(ctl->cancelled_out, ctl->cancelled_out + cancelled);
    STORE(ctl->replaced_out, ctl->replaced_out + replaced);
    STORE(ctl->triggered_out, ctl->triggered_out + triggered);
    STORE(ctl->rejected_out, ctl->rejected_out + rejected);
}

/* Push what may leave; 1 when nothing ready is left, 0 when a ring is full. */
static int push_ready(ts_worker *w) {
    const ts_event *ev;
    const ts_md *md;
    if (w->evo.pushed < w->evo.ready) {
        ts_engine_events(w->e, &ev);
        uint64_t k = ts_ring_push(w->ev, ev + w->evo.pushed, w->evo.ready - w->evo.pushed);
        if (k) {
            count_events(w->ctl, ev + w->evo.pushed, k);
            if (w->lat)
                ts_lat_record_inline(w->lat_m2e, ts_mono_ns() - w->out_since_ns, k);
            w->evo.pushed += k;
            STORE(w->ctl->events_out, w->ctl->events_out + k);
            STORE(w->ctl->last_exec_id, ev[w->evo.pushed - 1].exec_id);
        }
    }
    if (w->mdo.pushed < w->mdo.ready && w->cfg.discard_md) {
        w->mdo.pushed = w->mdo.ready; /* no reader: dropped, never waited for */
    } else if (w->mdo.pushed < w->mdo.ready) {
        ts_engine_md(w->e, &md);
        uint64_t k = ts_ring_push(w->md, md + w->mdo.pushed, w->mdo.ready - w->mdo.pushed);
        if (k) {
            w->mdo.pushed += k;
            STORE(w->ctl->md_out, w->ctl->md_out + k);
        }
    }
    if (outbox_empty(w)) {
        if (w->evo.count || w->mdo.count) ts_engine_clear_output(w->e);
        memset(&w->evo, 0, sizeof w->evo);
        memset(&w->mdo, 0, sizeof w->mdo);
        STORE(w->ctl->acked_seq, w->seq);
        w->ready_seq = w->seq;
        PUBLISH(w->pushed_seq, w->seq);
        return 1;
    }
    if (outbox_waiting(w)) return 0;
    /* everything marked ready is out: the snapshot writer's gate (acked_seq waits for an
     * empty outbox, which a steady GROUP stream may never give) */
    PUBLISH(w->pushed_seq, w->ready_seq);
    return 1;
}

static int sync_journal(ts_worker *w) {
    int rc = ts_journal_sync(w->j, &w->err);
    if (rc) return journal_fail(w, TS_WORKER_ERR_JOURNAL);
    STORE(w->ctl->synced_seq, ts_journal_synced_seq(w->j));
    mark_all_ready(w);
    return 0;
}

static int64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Push the engine's whole L2 image (md_refresh.h) at a quiescent point; see worker.h. */
static int push_md_refresh(ts_worker *w, uint32_t req) {
    ts_worker_control *ctl = w->ctl;
    if (w->cfg.discard_md) { /* no reader to refresh: served at once, nothing pushed */
        w->refresh_seen = req;
        PUBLISH(ctl->md_refreshes_served, req);
        return 0;
    }
    uint64_t n = ts_md_refresh_size(w->e);
    ts_md *image = n ? malloc(n * sizeof *image) : NULL;
    if (n && !image)
        return worker_fail(w, TS_WORKER_ERR_ENGINE,
                           "out of memory for a market-data refresh of %llu records",
                           (unsigned long long)n);
    ts_md_refresh_image(w->e, image, n, realtime_ns());
    uint64_t before = LOAD(ctl->md_refresh_records);
    STORE(ctl->md_refresh_before, before);
    STORE(ctl->md_refresh_head, ring_head(w->md));
    PUBLISH(ctl->md_refresh_len, n);
    push_blocking(w, w->md, image, n);
    STORE(ctl->md_refresh_records, before + n);
    PUBLISH(ctl->md_refresh_len, 0);
    free(image);
    w->refresh_seen = req;
    PUBLISH(ctl->md_refreshes_served, req);
    return 0;
}

/* The clock ticks among n commands: the gateway's, not an order's, so the stages leave
 * them out (an idle engine would otherwise record ten wake-ups a second, and a busy one
 * a tick before nearly every batch). */
static uint64_t count_ticks(const ts_command *c, uint64_t n) {
    uint64_t ticks = 0;
    for (uint64_t i = 0; i < n; i++)
        ticks += c[i].kind == TS_CMD_CONTROL && c[i].control == TS_CTL_CLOCK_TICK;
    return ticks;
}

/* The hand-off stamp, read while the batch is still in the ring: once released, the
 * gateway may stamp a newer push over it (it keeps a stamp only until it is taken). */
typedef struct handoff_seen {
    int ok;
    uint64_t index_end;
    int64_t stamp;
} handoff_seen;

/* Stage latencies of a batch taken at t_in (ring index `first_index`, n commands), just
 * matched: every command of it but the clock ticks waited for the whole batch, so the
 * batch's time counts once per such command. The gateway's hand-off stamp is a sample for
 * the batch holding the last command of the oldest push the worker had not yet taken. */
static void note_batch_latency(ts_worker *w, const ts_command *first, uint64_t first_index,
                               uint64_t n, int64_t t_in, const handoff_seen *h) {
    int64_t t_matched = ts_mono_ns();
    uint64_t orders = n - count_ticks(first, n);
    if (orders) {
        ts_lat_record_inline(w->lat_s2m, t_matched - t_in, orders);
        if (h->ok && h->index_end > first_index && h->index_end <= first_index + n)
            ts_lat_record_inline(w->lat_g2s, t_in - h->stamp, 1);
    }
    if (w->evo.pushed == w->evo.count) w->out_since_ns = t_matched;
}

/* Take, journal, match and release one batch of n commands at `first`. */
static int take_batch(ts_worker *w, const ts_command *first, uint64_t n, int64_t now) {
    /* shard in: the loop's `now`, read just before the peek that found this batch (it is
     * refreshed after every wait, push and sync), so recording adds no clock read here */
    const int64_t t_in = now;
    const uint64_t first_index = w->in_tail;
    handoff_seen h = {0};
    if (w->lat) h.ok = ts_lat_handoff_read(w->lat, &h.index_end, &h.stamp);
    if (ts_journal_append(w->j, 0, w->in_tail, first, n, &w->err))
        return journal_fail(w, TS_WORKER_ERR_JOURNAL);
    uint64_t done = ts_engine_process(w->e, first, n);
    if (done != n)
        return worker_fail(w, TS_WORKER_ERR_ENGINE,
                           "the engine ran out of memory at seq %llu (journaled; a restart "
                           "with more memory replays it)",
                           (unsigned long long)(w->seq + done + 1));
    if (w->lat) note_batch_latency(w, first, first_index, n, t_in, &h);
    ts_ring_release(w->in, n);
    w->in_tail += n;
    w->seq += n;
    w->since_snapshot += n;
    const ts_event *ev;
    const ts_md *md;
    uint64_t n_ev = ts_engine_events(w->e, &ev);
    uint64_t n_md = ts_engine_md(w->e, &md);
    if (n_ev > w->evo.count) w->last_exec_id = ev[n_ev - 1].exec_id;
    w->md_total += n_md - w->mdo.count;
    w->evo.count = n_ev;
    w->mdo.count = n_md;
    ts_worker_control *ctl = w->ctl;
    STORE(ctl->journaled_seq, w->seq);
    STORE(ctl->processed_seq, w->seq);
    STORE(ctl->commands, ctl->commands + n);
    STORE(ctl->batches, ctl->batches + 1);
    if (w->durability != TS_DURABILITY_GROUP) {
        if (w->durability == TS_DURABILITY_FSYNC) STORE(ctl->synced_seq, w->seq);
        mark_all_ready(w);
    } else {
        /* sync now if the group interval has passed (at a low rate: every batch), or if
         * too much output is already held for it */
        uint64_t held = (w->evo.count - w->evo.ready) + (w->mdo.count - w->mdo.ready);
        int rc = held > MAX_HELD_OUTPUT ? ts_journal_sync(w->j, &w->err)
                                        : ts_journal_sync_if_due(w->j, now, &w->err);
        if (rc < 0) return journal_fail(w, TS_WORKER_ERR_JOURNAL);
        if (held > MAX_HELD_OUTPUT || rc > 0) {
            STORE(ctl->synced_seq, ts_journal_synced_seq(w->j));
            mark_all_ready(w);
        }
    }
    return 0;
}

static long thread_minor_faults(void) {
#ifdef RUSAGE_THREAD
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0) return ru.ru_minflt;
#endif
    return 0;
}

/* Once per batch while a child runs (one atomic load): has it exited? Then its window
 * closes: the copy-on-write faults this thread took meanwhile are recorded. */
static void note_child_exit(ts_worker *w) {
    if (ts_snapwriter_child(w->writer) != 0) return;
    w->child_running = 0; /* snapshot_child_pid: the writer cleared it as it reaped */
    STORE(w->ctl->snapshot_cow_faults, (uint64_t)(thread_minor_faults() - w->child_minflt));
}

/* A background write has finished: publish it (snapshot_seq, counters, the request it
 * served), or fail the worker as a failed inline snapshot would, naming the file. A
 * fork-mode child that died unfinished is no journal failure: counted, described in the
 * error text, its request left to be served by the next snapshot; 1 is returned. */
static int settle_snapshot(ts_worker *w, const ts_snapwriter_result *res) {
    ts_worker_control *ctl = w->ctl;
    STORE(ctl->snapshot_write_ns, (uint64_t)res->write_ns);
    if (w->child_running) note_child_exit(w);
    if (res->child_failed) {
        w->fork_failures++;
        STORE(ctl->snapshots_failed, ctl->snapshots_failed + 1);
        snprintf(ctl->error, sizeof ctl->error, "%s", res->err.message);
        w->snapshot_req_seen = LOAD(ctl->snapshots_served); /* a request is asked again */
        return 1;
    }
    if (res->child_serialize_ns) {
        w->fork_failures = 0;
        STORE(ctl->snapshot_child_ns, (uint64_t)res->child_serialize_ns);
        STORE(ctl->snapshot_collapse_ns, (uint64_t)res->collapse_ns);
    }
    if (res->status != TS_JOURNAL_OK) {
        w->err = res->err;
        return journal_fail(w, TS_WORKER_ERR_JOURNAL);
    }
    STORE(ctl->snapshot_seq, res->seq);
    STORE(ctl->snapshots_taken, ctl->snapshots_taken + 1);
    PUBLISH(ctl->snapshots_served, res->tag);
    return 0;
}

/* Serialize the engine at this batch boundary (seq N: everything before it matched,
 * nothing of the next batch) and hand the bytes to the writer. The rest happens there. */
static int hand_off_snapshot(ts_worker *w, uint32_t req) {
    const int64_t t0 = ts_mono_ns();
    ts_snapwriter_job job = {.seq = w->seq, .md_count = w->md_total, .tag = req,
                             .pushed_seq = &w->pushed_seq};
    if (w->durability != TS_DURABILITY_NONE) job.durable_seq = &w->ctl->synced_seq;
    if (w->fork_mode && w->fork_failures < 3 &&
        ts_engine_snapshot_size(w->e) >= w->cfg.fork_min_bytes) {
        /* the child's image is the engine at this boundary: nothing to copy here */
        long minflt = thread_minor_faults();
        int64_t fork_ns;
        ts_journal_error ferr;
        if (ts_snapwriter_fork(w->writer, w->e, &job, &fork_ns, &ferr) == 0) {
            w->child_running = 1;
            w->child_minflt = minflt;
            STORE(w->ctl->snapshot_fork_ns, (uint64_t)fork_ns);
            STORE(w->ctl->snapshot_serialize_ns, (uint64_t)(ts_mono_ns() - t0));
            w->snapshot_req_seen = req;
            w->since_snapshot = 0;
            w->snapshot_deferred = 0;
            return 0;
        }
        /* fork failed (out of memory, a process limit): this one is serialized here */
    }
    w->fork_failures = 0;
    if (ts_snapfile_serialize(w->e, &job.payload, &job.payload_bytes, &w->err))
        return journal_fail(w, TS_WORKER_ERR_JOURNAL);
    if (ts_snapwriter_submit(w->writer, &job) != 0) { /* checked idle before: cannot be */
        free(job.payload);
        return worker_fail(w, TS_WORKER_ERR_STATE, "the snapshot writer was busy at hand-off");
    }
    STORE(w->ctl->snapshot_serialize_ns, (uint64_t)(ts_mono_ns() - t0));
    w->snapshot_req_seen = req;
    w->since_snapshot = 0;
    w->snapshot_deferred = 0;
    return 0;
}

int ts_worker_run(ts_worker *w, int64_t max_ns) {
    if (!w->j) return worker_fail(w, TS_WORKER_ERR_STATE, "ts_worker_run before a journal was set");
    ts_worker_control *ctl = w->ctl;
    int64_t start = ts_mono_ns(), now = start;
    const int64_t deadline = start + (max_ns > 0 ? max_ns : 0);
    int64_t waited = 0;
    int status = TS_WORKER_SLICE_END;
    for (;;) {
        STORE(ctl->heartbeat_ns, now);
        /* 1. output that may leave goes first: no new intake while it cannot */
        if (outbox_waiting(w)) {
            if (!push_ready(w)) {
                if (now >= deadline) break;
                ts_ring *full = w->evo.pushed < w->evo.ready ? w->ev : w->md;
                STORE(ctl->out_waits, ctl->out_waits + 1);
                int64_t t = now;
                ts_ring_wait_writable(full, &w->cfg.wait, deadline - now);
                now = ts_mono_ns();
                waited += now - t;
                continue;
            }
            now = ts_mono_ns(); /* after a push of held output: the next shard-in stamp */
        }
        /* 2. a group commit that has come due releases the output it covers */
        if (w->durability == TS_DURABILITY_GROUP) {
            int rc = ts_journal_sync_if_due(w->j, now, &w->err);
            if (rc < 0) {
                status = journal_fail(w, TS_WORKER_ERR_JOURNAL);
                break;
            }
            if (rc > 0) {
                STORE(ctl->synced_seq, ts_journal_synced_seq(w->j));
                mark_all_ready(w);
                now = ts_mono_ns(); /* an fdatasync took time: the next batch's shard-in stamp */
                continue;
            }
        }
        /* 3. steering: stop (after draining what is in the ring now) and snapshots */
        if (!w->stopping && (w->local_stop || LOAD(ctl->stop_requested))) {
            w->stopping = 1;
            w->stop_tail = w->in_tail + ts_ring_readable(w->in);
            PUBLISH(ctl->state, (int32_t)TS_WORKER_STOPPING);
        }
        uint32_t req = LOAD(ctl->snapshot_requests);
        uint32_t refresh_req = LOAD(ctl->md_refresh_requests);
        int drained = w->stopping && w->in_tail >= w->stop_tail;
        int snapshot_due = req != w->snapshot_req_seen ||
                           (w->cfg.snapshot_every && w->since_snapshot >= w->cfg.snapshot_every);
        int refresh_due = refresh_req != w->refresh_seen;
        if (w->writer) {
            /* background snapshots: collect a finished write, hand off a due one. A
             * periodic one due once drained for a stop is left to the stop's own. */
            if (drained && req == w->snapshot_req_seen) snapshot_due = 0;
            ts_snapwriter_result res;
            if (ts_snapwriter_poll(w->writer, &res)) {
                int rc = settle_snapshot(w, &res);
                status = rc == 1 ? TS_WORKER_SNAPSHOT_FAILED
                                 : rc ? rc : TS_WORKER_SNAPSHOT_WRITTEN; /* the caller prunes */
                break;
            }
            if (snapshot_due && !drained) {
                if (ts_snapwriter_idle(w->writer)) {
                    int rc = hand_off_snapshot(w, req);
                    if (rc) {
                        status = rc;
                        break;
                    }
                    now = ts_mono_ns(); /* serializing took time: the stall gauge counts it */
                } else if (!w->snapshot_deferred) {
                    /* the previous one is still being written: this one waits */
                    w->snapshot_deferred = 1;
                    STORE(ctl->snapshots_deferred, ctl->snapshots_deferred + 1);
                }
                snapshot_due = 0;
            }
        }
        /* an order image waits for the inbound ring to be empty (see worker.h) */
        int image_due = LOAD(ctl->order_image_requests) != LOAD(ctl->order_images_served) &&
                        ts_ring_readable(w->in) == 0;
        if (drained || snapshot_due || refresh_due || image_due) {
            /* quiesce: everything journaled is synced and pushed before returning */
            if (ts_journal_written_seq(w->j) != ts_journal_synced_seq(w->j) && sync_journal(w)) {
                status = TS_WORKER_ERR_JOURNAL;
                break;
            }
            mark_all_ready(w);
            if (!outbox_empty(w)) {
                if (push_ready(w)) continue;
                if (now >= deadline) break;
                continue; /* step 1 waits for room */
            }
            if (refresh_due) {
                /* everything the image reflects is in the ring before it */
                int rc = push_md_refresh(w, refresh_req);
                if (rc) {
                    status = rc;
                    break;
                }
                now = ts_mono_ns();
                if (!drained && !snapshot_due) continue;
            }
            if (image_due && !drained && !snapshot_due) {
                status = TS_WORKER_IMAGE_DUE;
                break;
            }
            w->snapshot_req_seen = req;
            status = snapshot_due ? TS_WORKER_SNAPSHOT_DUE : TS_WORKER_STOP;
            break;
        }
        /* 4. intake */
        void *first;
        uint64_t n = ts_ring_peek(w->in, &first);
        if (w->stopping && n > w->stop_tail - w->in_tail) n = w->stop_tail - w->in_tail;
        if (n == 0) {
            if (now >= deadline) break;
            int64_t until = deadline;
            int64_t due = w->durability == TS_DURABILITY_GROUP ? ts_journal_sync_due_ns(w->j)
                                                               : INT64_MAX;
            if (due < until) until = due;
            if (until > now) {
                STORE(ctl->idle_waits, ctl->idle_waits + 1);
                int64_t t = now;
                ts_ring_wait_readable(w->in, &w->cfg.wait, until - now);
                now = ts_mono_ns();
                waited += now - t;
            } else {
                now = ts_mono_ns();
            }
            continue;
        }
        if (n > w->cfg.max_batch) n = w->cfg.max_batch;
        if (w->backlog_since_ns && now - w->backlog_since_ns > LOAD(ctl->batch_gap_max_ns))
            STORE(ctl->batch_gap_max_ns, now - w->backlog_since_ns);
        int rc = take_batch(w, first, n, now);
        if (rc) {
            status = rc;
            break;
        }
        push_ready(w);
        const int64_t batch_start = now;
        now = ts_mono_ns();
        if (now - batch_start > w->batch_max_ns) {
            w->batch_max_ns = now - batch_start;
            STORE(ctl->batch_max_ns, w->batch_max_ns);
        }
        if (w->child_running) {
            /* the copy-on-write faults land in batches: the longest one meanwhile */
            if (now - batch_start > LOAD(ctl->fork_batch_max_ns))
                STORE(ctl->fork_batch_max_ns, now - batch_start);
            note_child_exit(w);
        }
        uint64_t fill = ts_ring_readable(w->in);
        STORE(ctl->in_fill, fill);
        w->backlog_since_ns = fill ? now : 0;
        STORE(ctl->events_fill, w->ev_capacity - ts_ring_writable(w->ev));
        STORE(ctl->md_fill, w->md_capacity - ts_ring_writable(w->md));
        if (now >= deadline) break;
    }
    STORE(ctl->busy_ns, ctl->busy_ns + (uint64_t)(now - start - waited));
    STORE(ctl->heartbeat_ns, now);
    return status;
}

void ts_worker_request_stop(ts_worker *w) { w->local_stop = 1; }

int ts_worker_sync(ts_worker *w) {
    if (!w->j) return TS_JOURNAL_ERR_STATE;
    return sync_journal(w) ? w->err.status : TS_JOURNAL_OK;
}

int ts_worker_snapshot_wait(ts_worker *w) {
    if (!w->writer) return TS_JOURNAL_OK;
    ts_snapwriter_result res;
    if (!ts_snapwriter_wait(w->writer, &res)) return TS_JOURNAL_OK;
    int rc = settle_snapshot(w, &res);
    /* a child that died unfinished is counted and described; the caller carries on */
    return rc && rc != 1 ? res.status : TS_JOURNAL_OK;
}

int ts_worker_snapshot(ts_worker *w, const char *dir) {
    if (!w->j || !outbox_empty(w))
        return worker_fail(w, TS_JOURNAL_ERR_STATE,
                           "a snapshot needs a quiescent worker (after SNAPSHOT_DUE or STOP)");
    if (sync_journal(w)) return w->err.status;
    /* quiescent and synced: a background write in flight passes its gates now */
    w->ready_seq = w->seq;
    PUBLISH(w->pushed_seq, w->seq);
    int wrc = ts_worker_snapshot_wait(w);
    if (wrc) return wrc;
    int rc = ts_snapfile_write(dir, w->cfg.shard_id, w->seq, w->md_total, w->e, &w->err);
    if (rc) return journal_fail(w, rc);
    w->since_snapshot = 0;
    STORE(w->ctl->snapshot_seq, w->seq);
    STORE(w->ctl->snapshots_taken, w->ctl->snapshots_taken + 1);
    PUBLISH(w->ctl->snapshots_served, w->snapshot_req_seen);
    return TS_JOURNAL_OK;
}
