/*
 * test_gateway_latency.c — the gateway pump's stage-latency hooks (gateway_latency.h):
 * the hand-off slot is stamped before a push with the index the push ends at and the
 * pass time, only when there is something to push; a new order's first event (and only
 * its first) is recorded in the order → ack histogram; a cancel's or replace's answer in
 * the amend → answer one, unless another amend of the order was in flight; a gateway
 * without segments records nothing.
 */
#define _GNU_SOURCE
#include "../gateway_latency.h"
#include "check.h"
#include "gateway_rig.h"

#include <stdlib.h>
#include <time.h>

static int64_t mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static ts_risk_limits open_limits(void) {
    ts_risk_limits l = {.max_order_qty = 1000,
                        .max_order_notional = 1 << 30,
                        .price_collar_bps = 1000,
                        .max_open_orders = 1 << 20,
                        .max_position = 1LL << 40,
                        .credit_limit = 1LL << 62,
                        .throttle_per_s = 1000000000,
                        .throttle_burst = 1000000000};
    return l;
}

/* A gateway of one shard with account 1, unlimited, and one session of it. */
static void one_session(rig *r, ts_ring **in, ts_ring **out) {
    rig_init(r, 1, 1024, 64, 1024);
    ts_risk_limits l = open_limits();
    CHECK_EQ(ts_gateway_set_account(r->gw, 1, &l), TS_GW_OK);
    *in = rig_ring(r, 1024);
    *out = rig_ring(r, 1024);
    CHECK(ts_gateway_add_session(r->gw, 1, *in, *out, -1, 0) >= 0);
}

static void test_handoff_and_ack(void) {
    rig r;
    ts_ring *in, *out;
    one_session(&r, &in, &out);
    void *own = calloc(1, ts_lat_segment_size(1)), *shard = calloc(1, ts_lat_segment_size(3));
    CHECK(own && shard);
    ts_lat_segment_init(own, ts_lat_segment_size(1), 1, TS_LAT_ROLE_GATEWAY, 0, 1, 1);
    ts_lat_segment_init(shard, ts_lat_segment_size(3), 3, TS_LAT_ROLE_WORKER, 0, 1, 1);
    ts_gateway_set_latency(r.gw, own);
    CHECK_EQ(ts_gateway_set_shard_latency(r.gw, 7, shard), TS_GW_ERR_ARGUMENT); /* no shard 7 */
    CHECK_EQ(ts_gateway_set_shard_latency(r.gw, 0, shard), TS_GW_OK);
    ts_lat_hist *ack = ts_lat_segment_hist(own, TS_LAT_ORDER_TO_ACK);
    uint64_t idx = 0;
    int64_t ns = 0;

    /* an idle pass stamps nothing */
    ts_gateway_poll_at(r.gw, 0, mono());
    CHECK_EQ(ts_lat_handoff_read(shard, &idx, &ns), 0);

    /* three orders in one pass: one stamp, at index 3, with the pass's time */
    ts_command c[3];
    for (int i = 0; i < 3; i++) c[i] = rig_new((uint64_t)i + 1, 1, TS_SIDE_BUY, 1000, 1);
    CHECK_EQ(ts_ring_push(in, c, 3), 3);
    int64_t pass = mono();
    ts_gateway_poll_at(r.gw, 0, pass);
    CHECK_EQ(ts_lat_handoff_read(shard, &idx, &ns), 1);
    CHECK_EQ(idx, 3);
    CHECK_EQ(ns, pass);
    ts_command at_shard[3];
    CHECK_EQ(ts_ring_pop(r.cmd[0], at_shard, 3), 3);

    /* the shard acks two and fills one of them: two first events recorded, the fill not */
    ts_event ev[3] = {rig_event(&r, TS_EV_ACCEPTED, &at_shard[0], 1, 1, 0),
                      rig_event(&r, TS_EV_ACCEPTED, &at_shard[1], 1, 1, 0),
                      rig_event(&r, TS_EV_TRADE, &at_shard[0], 1, 0, TS_EVF_DONE)};
    CHECK_EQ(ts_ring_push(r.evt[0], ev, 3), 3);
    int64_t before = mono();
    ts_gateway_poll_at(r.gw, 0, before);
    int64_t after = mono();
    CHECK_EQ(ack->total, 2);
    /* each value is (a clock read in the pass) - (the first pass's time) */
    CHECK(ack->min_ns >= (uint64_t)(before - pass));
    CHECK(ack->max_ns <= (uint64_t)(after - pass));
    ts_event back[8];
    CHECK_EQ(ts_ring_pop(out, back, 8), 3);

    /* the third order's reject (from the engine) is its first event: recorded */
    ts_event rej = rig_event(&r, TS_EV_REJECTED, &at_shard[2], 1, 0, TS_EVF_DONE);
    CHECK_EQ(ts_ring_push(r.evt[0], &rej, 1), 1);
    ts_gateway_poll_at(r.gw, 0, mono());
    CHECK_EQ(ack->total, 3);
    /* the hand-off was not stamped again: nothing was pushed to the shard */
    CHECK_EQ(ts_lat_handoff_read(shard, &idx, &ns), 1);
    CHECK_EQ(idx, 3);
    CHECK_EQ(ns, pass);

    rig_free(&r);
    free(own);
    free(shard);
}

static void test_amend_to_answer(void) {
    rig r;
    ts_ring *in, *out;
    one_session(&r, &in, &out);
    void *own = calloc(1, ts_lat_segment_size(2));
    CHECK(own);
    ts_lat_segment_init(own, ts_lat_segment_size(2), 2, TS_LAT_ROLE_GATEWAY, 0, 1, 1);
    ts_gateway_set_latency(r.gw, own);
    ts_lat_hist *ack = ts_lat_segment_hist(own, TS_LAT_ORDER_TO_ACK);
    ts_lat_hist *amend = ts_lat_segment_hist(own, TS_LAT_AMEND_TO_ANSWER);
    ts_event back[8];

    /* two orders, acknowledged: the ack stage only */
    ts_command c[2] = {rig_new(1, 1, TS_SIDE_BUY, 1000, 5), rig_new(2, 1, TS_SIDE_BUY, 1000, 5)};
    CHECK_EQ(ts_ring_push(in, c, 2), 2);
    ts_gateway_poll_at(r.gw, 0, mono());
    ts_command sent[2];
    CHECK_EQ(ts_ring_pop(r.cmd[0], sent, 2), 2);
    ts_event acked[2] = {rig_event(&r, TS_EV_ACCEPTED, &sent[0], 5, 5, 0),
                         rig_event(&r, TS_EV_ACCEPTED, &sent[1], 5, 5, 0)};
    CHECK_EQ(ts_ring_push(r.evt[0], acked, 2), 2);
    ts_gateway_poll_at(r.gw, 0, mono());
    CHECK_EQ(ts_ring_pop(out, back, 8), 2);
    CHECK_EQ(ack->total, 2);
    CHECK_EQ(amend->total, 0);

    /* a cancel of order 1: timed from its pass to its CANCELLED */
    ts_command x = {.kind = TS_CMD_CANCEL, .symbol_id = 1, .order_id = 1};
    CHECK_EQ(ts_ring_push(in, &x, 1), 1);
    int64_t pass = mono();
    ts_gateway_poll_at(r.gw, 0, pass);
    ts_command at_shard;
    CHECK_EQ(ts_ring_pop(r.cmd[0], &at_shard, 1), 1);
    CHECK_EQ(at_shard.kind, TS_CMD_CANCEL);
    ts_event done = rig_event(&r, TS_EV_CANCELLED, &at_shard, 5, 0, TS_EVF_DONE);
    done.reason = TS_CXL_USER;
    CHECK_EQ(ts_ring_push(r.evt[0], &done, 1), 1);
    int64_t before = mono();
    ts_gateway_poll_at(r.gw, 0, before);
    int64_t after = mono();
    CHECK_EQ(ts_ring_pop(out, back, 8), 1);
    CHECK_EQ(amend->total, 1);
    CHECK(amend->min_ns >= (uint64_t)(before - pass));
    CHECK(amend->max_ns <= (uint64_t)(after - pass));

    /* two amends of order 2 in one pass: only the first is timed, by the first answer */
    ts_command two[2] = {{.kind = TS_CMD_REPLACE, .symbol_id = 1, .order_id = 2,
                          .price = 999, .quantity = 5},
                         {.kind = TS_CMD_CANCEL, .symbol_id = 1, .order_id = 2}};
    CHECK_EQ(ts_ring_push(in, two, 2), 2);
    ts_gateway_poll_at(r.gw, 0, mono());
    ts_command amends[2];
    CHECK_EQ(ts_ring_pop(r.cmd[0], amends, 2), 2);
    ts_event answers[2] = {rig_event(&r, TS_EV_REPLACED, &amends[0], 5, 5, 0),
                           rig_event(&r, TS_EV_CANCELLED, &amends[1], 5, 0, TS_EVF_DONE)};
    answers[1].reason = TS_CXL_USER;
    CHECK_EQ(ts_ring_push(r.evt[0], answers, 2), 2);
    ts_gateway_poll_at(r.gw, 0, mono());
    CHECK_EQ(ts_ring_pop(out, back, 8), 2);
    CHECK_EQ(amend->total, 2);
    CHECK_EQ(ack->total, 2); /* amends are not orders */

    rig_free(&r);
    free(own);
}

static void test_no_segments_records_nothing(void) {
    rig r;
    ts_ring *in, *out;
    one_session(&r, &in, &out);
    ts_command c = rig_new(1, 1, TS_SIDE_BUY, 1000, 1);
    CHECK_EQ(ts_ring_push(in, &c, 1), 1);
    ts_gateway_poll_at(r.gw, 0, mono());
    ts_command s;
    CHECK_EQ(ts_ring_pop(r.cmd[0], &s, 1), 1);
    ts_event e = rig_event(&r, TS_EV_ACCEPTED, &s, 1, 1, 0);
    CHECK_EQ(ts_ring_push(r.evt[0], &e, 1), 1);
    ts_gateway_poll_at(r.gw, 0, mono());
    ts_event back;
    CHECK_EQ(ts_ring_pop(out, &back, 1), 1); /* routed as ever */
    rig_free(&r);
}

int main(void) {
    test_handoff_and_ack();
    test_amend_to_answer();
    test_no_segments_records_nothing();
    if (g_test_failed) return 1;
    printf("test_gateway_latency: ok\n");
    return 0;
}
