/*
 * bench_gateway.c — orders per second through the gateway pump alone (no engine, no
 * Python): one client session and one shard, both played by this program in the same
 * thread. Per round the client pushes a batch of NEW orders (limits set, so every check
 * runs), the pump takes them to the shard ring, the "shard" answers each with ACCEPTED
 * and a final TRADE, and the pump routes both back. Only the time inside
 * ts_gateway_poll is counted, so the figure is the pump's own cost per order (one
 * command in, one out, two events in, two out).
 *
 *   build/bench_gateway [orders] [batch]
 */
#define _GNU_SOURCE
#include "../tests/gateway_rig.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    uint64_t orders = argc > 1 ? strtoull(argv[1], NULL, 10) : 5000000;
    uint32_t batch = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 256;
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
