/*
 * bench_gateway.c — orders per second through the gateway pump alone (no engine, no
 * Python): one client session and one shard, both played by this program in the same
 * thread. Per round the client pushes a batch of NEW orders (limits set, so every check
 * runs), the pump takes them to the shard ring, the "shard" answers each with ACCEPTED
 * and a final TRADE, and the pump routes both back. Only the time inside
 * ts_gateway_poll is counted, so the figure is the pump's own cost per order (one
 * command in, one out, two events in, two out).
 *
 * With a third argument "threaded", the pump runs in its own thread (ts_gateway_run,
 * busy-spin) and this thread plays client and shard on the other core: the figure is then
 * the whole loop's rate across two cores, ring hand-offs included.
 *
 *   build/bench_gateway [orders] [batch] [threaded]
 */
#define _GNU_SOURCE
#include "../tests/gateway_rig.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

typedef struct pump_thread {
    ts_gateway *gw;
    int32_t stop;
} pump_thread;

static void *run_pump(void *arg) {
    pump_thread *p = arg;
    ts_gateway_run(p->gw, &p->stop);
    return NULL;
}

/* Client and shard in this thread, the pump in another: orders in flight up to `batch`
 * at a time, every one answered with ACCEPTED and a final TRADE. */
static int threaded(rig *r, ts_ring *in, ts_ring *out, uint64_t orders, uint32_t batch) {
    pump_thread p = {r->gw, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, run_pump, &p)) return 2;
    ts_command *cmds = calloc(batch, sizeof *cmds);
    ts_event *evs = calloc(2 * (size_t)batch, sizeof *evs);
    uint64_t sent = 0, back = 0, client_id = 0;
    int64_t t0 = now_ns();
    while (back < 2 * orders) {
        uint64_t in_flight = sent - back / 2;
        if (sent < orders && in_flight < batch) {
            uint64_t n = batch - in_flight;
            if (orders - sent < n) n = orders - sent;
            for (uint64_t i = 0; i < n; i++)
                cmds[i] = rig_new(++client_id, 1, i & 1 ? TS_SIDE_SELL : TS_SIDE_BUY, 1000, 1);
            uint64_t k = ts_ring_push(in, cmds, n);
            client_id -= n - k;
            sent += k;
        }
        uint64_t k = ts_ring_pop(r->cmd[0], cmds, batch);
        for (uint64_t i = 0; i < k; i++) {
            evs[2 * i] = rig_event(r, TS_EV_ACCEPTED, &cmds[i], 1, 1, 0);
            evs[2 * i + 1] = rig_event(r, TS_EV_TRADE, &cmds[i], 1, 0, TS_EVF_DONE);
        }
        for (uint64_t done = 0; done < 2 * k;) done += ts_ring_push(r->evt[0], evs + done, 2 * k - done);
        back += ts_ring_pop(out, evs, 2 * (uint64_t)batch);
    }
    int64_t total = now_ns() - t0;
    __atomic_store_n(&p.stop, 1, __ATOMIC_RELEASE);
    ts_gateway_wake(r->gw);
    pthread_join(t, NULL);
    printf("gateway pump, threaded: %llu orders, %u in flight: %.2f M orders/s through the pump "
           "thread (client and shard on the other core)\n",
           (unsigned long long)orders, batch, orders / (total / 1e3));
    free(cmds);
    free(evs);
    return 0;
}

int main(int argc, char **argv) {
    uint64_t orders = argc > 1 ? strtoull(argv[1], NULL, 10) : 5000000;
    uint32_t batch = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 256;
    int threads = argc > 3 && strcmp(argv[3], "threaded") == 0;
    if (threads) rig_wait = (ts_wait_strategy){TS_WAIT_BUSY_SPIN, 1 << 14, 0, 0};
    rig r;
    rig_init(&r, 1, 1 << 16, batch, 4096);
    ts_risk_limits l = {.max_order_qty = 1000,
                        .max_order_notional = 1 << 30,
                        .price_collar_bps = 1000,
                        .max_open_orders = 1 << 20,
                        .max_position = 1LL << 40,
                        .credit_limit = 1LL << 62,
                        .throttle_per_s = 1000000000,
                        .throttle_burst = 1000000000};
    ts_gateway_set_account(r.gw, 1, &l);
    ts_ring *in = rig_ring(&r, 4096), *out = rig_ring(&r, 4096);
    if (ts_gateway_add_session(r.gw, 1, in, out, -1, 0) < 0) return 2;
    if (threads) {
        int rc = threaded(&r, in, out, orders, batch);
        rig_free(&r);
        return rc;
    }
    ts_command *cmds = calloc(batch, sizeof *cmds);
    ts_event *evs = calloc(2 * (size_t)batch, sizeof *evs);
    ts_event *back = calloc(2 * (size_t)batch, sizeof *back);
    uint64_t done = 0, client_id = 0;
    int64_t pump_ns = 0, clock = 1;
    int64_t t0 = now_ns();
    while (done < orders) {
        uint32_t n = batch;
        if (orders - done < n) n = (uint32_t)(orders - done);
        for (uint32_t i = 0; i < n; i++)
            cmds[i] = rig_new(++client_id, 1, i & 1 ? TS_SIDE_SELL : TS_SIDE_BUY, 1000, 1);
        ts_ring_push(in, cmds, n);
        int64_t a = now_ns();
        ts_gateway_poll_at(r.gw, 0, clock++);
        pump_ns += now_ns() - a;
        uint64_t k = ts_ring_pop(r.cmd[0], cmds, n);
        for (uint64_t i = 0; i < k; i++) {
            evs[2 * i] = rig_event(&r, TS_EV_ACCEPTED, &cmds[i], 1, 1, 0);
            evs[2 * i + 1] = rig_event(&r, TS_EV_TRADE, &cmds[i], 1, 0, TS_EVF_DONE);
        }
        ts_ring_push(r.evt[0], evs, 2 * k);
        uint64_t got = 0;
        for (int pass = 0; pass < 4 && got < 2 * k; pass++) {
            a = now_ns();
            ts_gateway_poll_at(r.gw, 0, clock++);
            pump_ns += now_ns() - a;
            got += ts_ring_pop(out, back, 2 * (uint64_t)batch);
        }
        if (got != 2 * k || k != n) {
            fprintf(stderr, "lost records: %u sent, %llu at the shard, %llu back\n", n,
                    (unsigned long long)k, (unsigned long long)got);
            return 1;
        }
        done += n;
    }
    int64_t total = now_ns() - t0;
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    printf("gateway pump: %llu orders, batch %u: %.2f M orders/s in the pump "
           "(%.1f ns/order: 1 command + 2 events each way), %.2f M/s with the harness; "
           "live orders at end %llu\n",
           (unsigned long long)orders, batch, orders / (pump_ns / 1e3), (double)pump_ns / orders,
           orders / (total / 1e3), (unsigned long long)st.live_orders);
    free(cmds);
    free(evs);
    free(back);
    rig_free(&r);
    return 0;
}
