/*
 * test_book.c — scenario tests for the matching engine (docs/matching.md), runnable
 * without Python (see native/Makefile), and a throughput bench.
 *
 *   test_book [NAME...]          run the tests (those whose name contains a NAME); other
 *                                --options (shared TEST_ARGS of the Makefile) are ignored
 *   test_book --bench[=N]        time N commands of a venue-like mixed workload
 *   test_book --memory[=N]       bytes held and resident per order with N orders resting
 *
 * Every command in a test goes through run(), which also runs the full invariant
 * checker (book_check.h) and checks that events and market data are well formed
 * (exec ids consecutive, per-channel md sequences consecutive, maker/taker pairs
 * agreeing), so each scenario doubles as a consistency test.
 *
 * No framework: CHECK/CHECK_EQ print file:line and the failed expression and end the
 * current test; the last line is always "N passed, M failed", exit status 1 on failure.
 */
#define _GNU_SOURCE
#include "../book.h"
#include "../book_check.h"
#include "../wire.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- checks ------------------------------------------------------------------------ */

static void dump_output(void);
#define CHECK_ON_FAIL() dump_output()
#include "check.h"

/* ---- the engine under test and its last output ---------------------------------------- */

enum { S1 = 1, S2 = 2, S3 = 3 };
enum { BUY = TS_SIDE_BUY, SELL = TS_SIDE_SELL };

static ts_engine *g_e;      /* freed by the runner after each test */
static ts_engine *g_e2;     /* a second engine some tests use */
static const ts_event *EV;  /* output of the last run() */
static uint64_t NEV;
static const ts_md *MD;
static uint64_t NMD;
static uint64_t g_exec_seen;         /* last exec id seen, per g_e */
static char g_check_err[256];
static int g_run_failed;

static void dump_output(void) {
    for (uint64_t i = 0; i < NEV; i++) {
        const ts_event *v = &EV[i];
        fprintf(stderr,
                "  ev[%llu] kind=%u side=%u reason=%u flags=%u sym=%u acct=%u id=%llu contra=%llu "
                "px=%lld qty=%lld leaves=%lld exec=%llu\n",
                (unsigned long long)i, v->kind, v->side, v->reason, v->flags, v->symbol_id,
                v->account_id, (unsigned long long)v->order_id,
                (unsigned long long)v->contra_order_id, (long long)v->price,
                (long long)v->quantity, (long long)v->leaves_qty, (unsigned long long)v->exec_id);
    }
    for (uint64_t i = 0; i < NMD; i++) {
        const ts_md *m = &MD[i];
        fprintf(stderr,
                "  md[%llu] kind=%u side=%u sym=%u seq=%llu px=%lld qty=%lld ask=%lld/%lld "
                "count=%u t=%lld\n",
                (unsigned long long)i, m->kind, m->side, m->symbol_id, (unsigned long long)m->seq,
                (long long)m->price, (long long)m->quantity, (long long)m->ask_price,
                (long long)m->ask_quantity, m->order_count, (long long)m->time_ns);
    }
}

static ts_instrument instrument(uint32_t id) {
    ts_instrument i;
    memset(&i, 0, sizeof i);
    i.symbol_id = id;
    i.tick_size = 1;
    i.lot_size = 1;
    i.min_qty = 1;
    i.reference_price = 1000;
    if (id == S2) {
        i.tick_size = 5;
        i.lot_size = 10;
        i.min_qty = 10;
        i.max_qty = 5000;
        i.band_bps = 2000;
    } else if (id == S3) {
        i.breaker_bps = 300;
        i.breaker_halt_ns = 1000;
    }
    return i;
}

/* Three symbols like tradsys.matching.workload.test_instruments(): plain, lots+band,
 * breaker. */
static ts_engine *engine3(void) {
    ts_engine *e = ts_engine_new();
    if (!e) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (uint32_t id = S1; id <= S3; id++) {
        ts_instrument i = instrument(id);
        if (ts_engine_add_instrument(e, &i) != TS_ENG_OK) exit(2);
    }
    return e;
}

static void setup(void) {
    g_e = engine3();
    g_exec_seen = 0;
}

/* Output sanity common to every command: exec ids consecutive, trade pairs agree. */
static int output_well_formed(void) {
    for (uint64_t i = 0; i < NEV; i++) {
        if (EV[i].exec_id != ++g_exec_seen) {
            snprintf(g_check_err, sizeof g_check_err, "exec id %llu, want %llu",
                     (unsigned long long)EV[i].exec_id, (unsigned long long)g_exec_seen);
            return 0;
        }
        if (EV[i].kind == TS_EV_TRADE && (EV[i].flags & TS_EVF_TAKER)) {
            const ts_event *t = &EV[i], *m = &EV[i + 1];
            if (i + 1 >= NEV || m->kind != TS_EV_TRADE || !(m->flags & TS_EVF_MAKER) ||
                m->contra_order_id != t->order_id || t->contra_order_id != m->order_id ||
                m->price != t->price || m->quantity != t->quantity || m->side == t->side) {
                snprintf(g_check_err, sizeof g_check_err, "trade pair at ev[%llu]",
                         (unsigned long long)i);
                return 0;
            }
        }
    }
    return 1;
}

/* Apply one command to engine e; EV/MD hold its output; invariants are checked. */
static void run_on(ts_engine *e, ts_command c) {
    ts_engine_clear_output(e);
    uint64_t n = ts_engine_process(e, &c, 1);
    NEV = ts_engine_events(e, &EV);
    NMD = ts_engine_md(e, &MD);
    g_run_failed = 0;
    if (n != 1) {
        snprintf(g_check_err, sizeof g_check_err, "process returned %llu", (unsigned long long)n);
        g_run_failed = 1;
    } else if (ts_book_check(e, g_check_err, sizeof g_check_err) != 0) {
        g_run_failed = 1;
    } else if (e == g_e && !output_well_formed()) {
        g_run_failed = 1;
    }
    if (g_run_failed) fprintf(stderr, "run: %s\n", g_check_err);
}

#define RUN(cmd)                                                                           \
    do {                                                                                   \
        run_on(g_e, (cmd));                                                                \
        CHECK(!g_run_failed);                                                              \
    } while (0)

/* ---- command builders ---- */

static ts_command limit(uint64_t id, uint32_t sym, uint32_t acct, uint8_t side, int64_t qty,
                        int64_t price) {
    ts_command c;
    memset(&c, 0, sizeof c);
    c.kind = TS_CMD_NEW_ORDER;
    c.order_type = TS_ORD_LIMIT;
    c.tif = TS_TIF_GTC;
    c.order_id = id;
    c.symbol_id = sym;
    c.account_id = acct;
    c.side = side;
    c.quantity = qty;
    c.price = price;
    return c;
}

static ts_command with_tif(ts_command c, uint8_t tif) {
    c.tif = tif;
    return c;
}

static ts_command with_stp(ts_command c, uint8_t stp) {
    c.stp_mode = stp;
    return c;
}

static ts_command market(uint64_t id, uint32_t sym, uint32_t acct, uint8_t side, int64_t qty) {
    ts_command c = limit(id, sym, acct, side, qty, 0);
    c.order_type = TS_ORD_MARKET;
    c.tif = TS_TIF_IOC;
    return c;
}

static ts_command stop(uint64_t id, uint32_t sym, uint32_t acct, uint8_t side, int64_t qty,
                       int64_t stop_price, int64_t limit_price) {
    ts_command c = limit(id, sym, acct, side, qty, limit_price);
    c.order_type = limit_price ? TS_ORD_STOP_LIMIT : TS_ORD_STOP;
    c.stop_price = stop_price;
    return c;
}

static ts_command cancel(uint64_t id, uint32_t sym, uint32_t acct) {
    ts_command c;
    memset(&c, 0, sizeof c);
    c.kind = TS_CMD_CANCEL;
    c.order_id = id;
    c.symbol_id = sym;
    c.account_id = acct;
    return c;
}

static ts_command replace(uint64_t id, uint32_t sym, uint32_t acct, int64_t price, int64_t qty) {
    ts_command c = cancel(id, sym, acct);
    c.kind = TS_CMD_REPLACE;
    c.price = price;
    c.quantity = qty;
    return c;
}

static ts_command mass_cancel(uint32_t acct, uint32_t sym) {
    ts_command c;
    memset(&c, 0, sizeof c);
    c.kind = TS_CMD_MASS_CANCEL;
    c.account_id = acct;
    c.symbol_id = sym;
    return c;
}

static ts_command control(uint8_t code, uint32_t sym, int64_t t) {
    ts_command c;
    memset(&c, 0, sizeof c);
    c.kind = TS_CMD_CONTROL;
    c.control = code;
    c.symbol_id = sym;
    c.time_ns = t;
    return c;
}

/* ---- output expectations ---- */

static int ev_is(uint64_t i, uint8_t kind, uint64_t id, int64_t price, int64_t qty,
                 int64_t leaves) {
    if (i >= NEV) return 0;
    const ts_event *v = &EV[i];
    return v->kind == kind && v->order_id == id && v->price == price && v->quantity == qty &&
           v->leaves_qty == leaves;
}

#define EV_IS(i, kind, id, price, qty, leaves)                                             \
    CHECK(ev_is((i), (kind), (id), (price), (qty), (leaves)))

static int md_l2(uint64_t i, uint8_t side, int64_t price, int64_t qty, uint32_t count) {
    return i < NMD && MD[i].kind == TS_MD_L2_UPDATE && MD[i].side == side &&
           MD[i].price == price && MD[i].quantity == qty && MD[i].order_count == count;
}

static int md_bbo(uint64_t i, int64_t bp, int64_t bq, int64_t ap, int64_t aq) {
    return i < NMD && MD[i].kind == TS_MD_BBO && MD[i].price == bp && MD[i].quantity == bq &&
           MD[i].ask_price == ap && MD[i].ask_quantity == aq;
}

static int md_trade(uint64_t i, uint8_t side, int64_t price, int64_t qty) {
    return i < NMD && MD[i].kind == TS_MD_TRADE && MD[i].side == side && MD[i].price == price &&
           MD[i].quantity == qty;
}

/* One STATUS record (wire.h): the new phase, the one before, the reason, reopen_ns. */
static int md_status(uint64_t i, uint32_t sym, uint64_t seq, int64_t phase, int64_t before,
                     uint32_t reason, int64_t reopen_ns) {
    return i < NMD && MD[i].kind == TS_MD_STATUS && MD[i].symbol_id == sym && MD[i].seq == seq &&
           MD[i].price == phase && MD[i].quantity == before && MD[i].order_count == reason &&
           MD[i].ask_price == reopen_ns && MD[i].side == 0 && MD[i].ask_quantity == 0;
}

static int rejected(uint8_t reason) {
    return NEV == 1 && EV[0].kind == TS_EV_REJECTED && EV[0].reason == reason &&
           EV[0].flags == TS_EVF_DONE && NMD == 0;
}

static int bbo_is(uint32_t sym, int64_t bp, int64_t bq, int64_t ap, int64_t aq) {
    ts_bbo b;
    if (ts_engine_bbo(g_e, sym, &b) != TS_ENG_OK) return 0;
    return b.bid_price == bp && b.bid_quantity == bq && b.ask_price == ap && b.ask_quantity == aq;
}

/* ---- tests: basics ------------------------------------------------------------------- */

static void test_rest_and_market_data(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    CHECK_EQ(NEV, 1);
    EV_IS(0, TS_EV_ACCEPTED, 1, 1000, 10, 10);
    CHECK_EQ(EV[0].side, SELL);
    CHECK_EQ(EV[0].symbol_id, S1);
    CHECK_EQ(EV[0].account_id, 1);
    CHECK_EQ(NMD, 2);
    CHECK(md_l2(0, SELL, 1000, 10, 1));
    CHECK(md_bbo(1, 0, 0, 1000, 10));
    CHECK_EQ(MD[0].seq, 1);
    CHECK_EQ(MD[1].seq, 1);
    RUN(limit(2, S1, 1, SELL, 5, 1000));
    CHECK_EQ(NMD, 2);
    CHECK(md_l2(0, SELL, 1000, 15, 2));
    CHECK_EQ(MD[0].seq, 2);
    CHECK(md_bbo(1, 0, 0, 1000, 15));
    /* a level behind the best: L2 only, the BBO did not change */
    RUN(limit(3, S1, 1, SELL, 5, 1001));
    CHECK_EQ(NMD, 1);
    CHECK(md_l2(0, SELL, 1001, 5, 1));
    CHECK_EQ(ts_engine_live_orders(g_e), 3);
    ts_level lv[4];
    CHECK_EQ(ts_engine_depth(g_e, S1, SELL, lv, 4), 2);
    CHECK(lv[0].price == 1000 && lv[0].quantity == 15 && lv[0].order_count == 2);
    CHECK(lv[1].price == 1001 && lv[1].quantity == 5 && lv[1].order_count == 1);
    CHECK_EQ(ts_engine_depth(g_e, 99, SELL, lv, 4), TS_ENG_ERR_UNKNOWN_SYMBOL);
    CHECK_EQ(ts_engine_phase(g_e, S1), TS_PHASE_CONTINUOUS);
}

static void test_fill_at_maker_price(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    RUN(limit(2, S1, 2, BUY, 4, 1005));
    CHECK_EQ(NEV, 3);
    EV_IS(0, TS_EV_ACCEPTED, 2, 1005, 4, 4);
    EV_IS(1, TS_EV_TRADE, 2, 1000, 4, 0);
    CHECK_EQ(EV[1].flags, TS_EVF_TAKER | TS_EVF_DONE);
    CHECK_EQ(EV[1].contra_order_id, 1);
    EV_IS(2, TS_EV_TRADE, 1, 1000, 4, 6);
    CHECK_EQ(EV[2].flags, TS_EVF_MAKER);
    CHECK_EQ(NMD, 3);
    CHECK(md_trade(0, BUY, 1000, 4));
    CHECK(md_l2(1, SELL, 1000, 6, 1));
    CHECK(md_bbo(2, 0, 0, 1000, 6));
    /* the seller crosses down to the resting buyer: maker price again */
    RUN(limit(3, S1, 2, BUY, 5, 990));
    RUN(limit(4, S1, 3, SELL, 5, 900));
    CHECK_EQ(NEV, 3);
    EV_IS(1, TS_EV_TRADE, 4, 990, 5, 0);
    EV_IS(2, TS_EV_TRADE, 3, 990, 5, 0);
    CHECK_EQ(EV[2].flags, TS_EVF_MAKER | TS_EVF_DONE);
}

static void test_price_time_priority(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1001));
    RUN(limit(2, S1, 1, SELL, 10, 1000));
    RUN(limit(3, S1, 1, SELL, 10, 1000));
    RUN(limit(4, S1, 1, SELL, 10, 999));
    RUN(limit(5, S1, 2, BUY, 25, 1001));
    CHECK_EQ(NEV, 7);
    EV_IS(1, TS_EV_TRADE, 5, 999, 10, 15);
    EV_IS(2, TS_EV_TRADE, 4, 999, 10, 0);
    EV_IS(3, TS_EV_TRADE, 5, 1000, 10, 5);
    EV_IS(4, TS_EV_TRADE, 2, 1000, 10, 0);
    EV_IS(5, TS_EV_TRADE, 5, 1000, 5, 0);
    EV_IS(6, TS_EV_TRADE, 3, 1000, 5, 5);
    CHECK_EQ(NMD, 6);
    CHECK(md_trade(0, BUY, 999, 10));
    CHECK(md_trade(1, BUY, 1000, 10));
    CHECK(md_trade(2, BUY, 1000, 5));
    CHECK(md_l2(3, SELL, 999, 0, 0));
    CHECK(md_l2(4, SELL, 1000, 5, 1));
    CHECK(md_bbo(5, 0, 0, 1000, 5));
    CHECK(bbo_is(S1, 0, 0, 1000, 5));
}

static void test_partial_fill_rests_remainder(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    RUN(limit(2, S1, 2, BUY, 25, 1000));
    CHECK_EQ(NEV, 3);
    EV_IS(1, TS_EV_TRADE, 2, 1000, 10, 15);
    CHECK_EQ(EV[1].flags, TS_EVF_TAKER);
    CHECK(md_trade(0, BUY, 1000, 10));
    CHECK(md_l2(1, SELL, 1000, 0, 0));
    CHECK(md_l2(2, BUY, 1000, 15, 1));
    CHECK(md_bbo(3, 1000, 15, 0, 0));
    CHECK(bbo_is(S1, 1000, 15, 0, 0));
}

static void test_ioc_and_market_remainders(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    RUN(with_tif(limit(2, S1, 2, BUY, 30, 1000), TS_TIF_IOC));
    CHECK_EQ(NEV, 4);
    EV_IS(3, TS_EV_CANCELLED, 2, 1000, 20, 0);
    CHECK_EQ(EV[3].reason, TS_CXL_IOC_REMAINDER);
    CHECK_EQ(EV[3].flags, TS_EVF_DONE);
    CHECK_EQ(ts_engine_live_orders(g_e), 0);
    /* a market order on an empty side: accepted, then all of it cancelled */
    RUN(market(3, S1, 2, BUY, 7));
    CHECK_EQ(NEV, 2);
    EV_IS(0, TS_EV_ACCEPTED, 3, 0, 7, 7);
    EV_IS(1, TS_EV_CANCELLED, 3, 0, 7, 0);
    CHECK_EQ(EV[1].reason, TS_CXL_MARKET_REMAINDER);
    CHECK_EQ(NMD, 0);
    /* a market order sweeps every level, whatever the price */
    RUN(limit(4, S1, 1, SELL, 5, 1000));
    RUN(limit(5, S1, 1, SELL, 5, 5000));
    RUN(market(6, S1, 2, BUY, 20));
    CHECK_EQ(NEV, 6);
    EV_IS(1, TS_EV_TRADE, 6, 1000, 5, 15);
    EV_IS(3, TS_EV_TRADE, 6, 5000, 5, 10);
    EV_IS(5, TS_EV_CANCELLED, 6, 0, 10, 0);
    CHECK_EQ(EV[5].reason, TS_CXL_MARKET_REMAINDER);
}

static void test_fok(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    RUN(limit(2, S1, 2, SELL, 10, 1001));
    RUN(with_tif(limit(3, S1, 3, BUY, 21, 1001), TS_TIF_FOK));
    CHECK(rejected(TS_REJ_FOK_UNFILLABLE));
    CHECK_EQ(EV[0].price, 1001);
    CHECK_EQ(EV[0].quantity, 21);
    CHECK_EQ(EV[0].leaves_qty, 0);
    /* the price limit bounds the walk */
    RUN(with_tif(limit(4, S1, 3, BUY, 15, 1000), TS_TIF_FOK));
    CHECK(rejected(TS_REJ_FOK_UNFILLABLE));
    /* an own order under CANCEL_INCOMING (default) ends the walk */
    RUN(with_tif(limit(5, S1, 1, BUY, 5, 1001), TS_TIF_FOK));
    CHECK(rejected(TS_REJ_FOK_UNFILLABLE));
    /* under CANCEL_RESTING it adds nothing but the walk goes on */
    RUN(with_stp(with_tif(limit(6, S1, 1, BUY, 10, 1001), TS_TIF_FOK), TS_STP_CANCEL_RESTING));
    CHECK_EQ(NEV, 4);
    EV_IS(0, TS_EV_ACCEPTED, 6, 1001, 10, 10);
    EV_IS(1, TS_EV_CANCELLED, 1, 1000, 10, 0);
    CHECK_EQ(EV[1].reason, TS_CXL_SELF_TRADE);
    EV_IS(2, TS_EV_TRADE, 6, 1001, 10, 0);
    EV_IS(3, TS_EV_TRADE, 2, 1001, 10, 0);
    /* hidden quantity counts: an iceberg of 30 showing 10 fills a FOK of 25 */
    ts_command ice = limit(7, S1, 1, SELL, 30, 1000);
    ice.display_qty = 10;
    RUN(ice);
    RUN(with_tif(market(8, S1, 2, BUY, 25), TS_TIF_FOK));
    CHECK_EQ(NEV, 7);
    EV_IS(1, TS_EV_TRADE, 8, 1000, 10, 15);
    EV_IS(3, TS_EV_TRADE, 8, 1000, 10, 5);
    EV_IS(5, TS_EV_TRADE, 8, 1000, 5, 0);
    EV_IS(6, TS_EV_TRADE, 7, 1000, 5, 5);
}

/* ---- tests: validation --------------------------------------------------------------- */

static void test_reject_reasons(void) {
    setup();
    ts_command c;
    RUN(limit(1, 99, 1, BUY, 10, 1000));
    CHECK(rejected(TS_REJ_UNKNOWN_SYMBOL));
    CHECK_EQ(EV[0].symbol_id, 99);
    RUN(limit(1, S1, 0, BUY, 10, 1000));
    CHECK(rejected(TS_REJ_INVALID_COMMAND));
    RUN(limit(1, S1, 1, 3, 10, 1000));
    CHECK(rejected(TS_REJ_INVALID_SIDE));
    CHECK_EQ(EV[0].side, 3);
    c = limit(1, S1, 1, BUY, 10, 1000);
    c.order_type = 5;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_ORDER_TYPE));
    RUN(with_tif(limit(1, S1, 1, BUY, 10, 1000), 0));
    CHECK(rejected(TS_REJ_INVALID_TIF));
    c = limit(1, S1, 1, BUY, 10, 1000);
    c.flags = 2;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_COMMAND));
    RUN(with_stp(limit(1, S1, 1, BUY, 10, 1000), 4));
    CHECK(rejected(TS_REJ_INVALID_COMMAND));
    /* combinations */
    RUN(with_tif(market(1, S1, 1, BUY, 10), TS_TIF_GTC));
    CHECK(rejected(TS_REJ_INVALID_TIF));
    RUN(with_tif(stop(1, S1, 1, BUY, 10, 1000, 0), TS_TIF_IOC));
    CHECK(rejected(TS_REJ_INVALID_TIF));
    c = market(1, S1, 1, BUY, 10);
    c.flags = TS_FLAG_POST_ONLY;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_ORDER_TYPE));
    c = with_tif(limit(1, S1, 1, BUY, 10, 1000), TS_TIF_IOC);
    c.flags = TS_FLAG_POST_ONLY;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_TIF));
    c = stop(1, S1, 1, BUY, 10, 1000, 1000);
    c.display_qty = 5;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_ORDER_TYPE));
    c = with_tif(limit(1, S1, 1, BUY, 10, 1000), TS_TIF_FOK);
    c.display_qty = 5;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_TIF));
    /* quantity: lot, min, max, display */
    RUN(limit(1, S2, 1, BUY, 15, 1000));
    CHECK(rejected(TS_REJ_INVALID_QUANTITY));
    RUN(limit(1, S2, 1, BUY, 0, 1000));
    CHECK(rejected(TS_REJ_INVALID_QUANTITY));
    RUN(limit(1, S2, 1, BUY, 5010, 1000));
    CHECK(rejected(TS_REJ_INVALID_QUANTITY));
    c = limit(1, S2, 1, BUY, 100, 1000);
    c.display_qty = 110;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_QUANTITY));
    c.display_qty = 15;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_QUANTITY));
    c.display_qty = -10;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_QUANTITY));
    /* price and stop price */
    RUN(limit(1, S2, 1, BUY, 10, 1001));
    CHECK(rejected(TS_REJ_INVALID_PRICE));
    RUN(limit(1, S1, 1, BUY, 10, 0));
    CHECK(rejected(TS_REJ_INVALID_PRICE));
    c = market(1, S1, 1, BUY, 10);
    c.price = -1; /* a market order's protection price: 0 (none) or positive */
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_PRICE));
    RUN(stop(1, S2, 1, BUY, 10, 1002, 0));
    CHECK(rejected(TS_REJ_INVALID_PRICE));
    c = limit(1, S1, 1, BUY, 10, 1000);
    c.stop_price = 1000;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_PRICE));
    /* band: S2 allows +-20% around 1000 */
    RUN(limit(1, S2, 1, BUY, 10, 1205));
    CHECK(rejected(TS_REJ_PRICE_BAND));
    RUN(limit(1, S2, 1, BUY, 10, 795));
    CHECK(rejected(TS_REJ_PRICE_BAND));
    RUN(limit(1, S2, 1, BUY, 10, 1200));
    EV_IS(0, TS_EV_ACCEPTED, 1, 1200, 10, 10);
    /* GTD must lie in the future */
    RUN(control(TS_CTL_CLOCK_TICK, 0, 100));
    c = with_tif(limit(2, S1, 1, BUY, 10, 1000), TS_TIF_GTD);
    c.time_ns = 100;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_TIF));
    /* ids must grow */
    RUN(limit(1, S1, 1, BUY, 10, 1000));
    CHECK(rejected(TS_REJ_DUPLICATE_ORDER_ID));
    RUN(limit(0, S1, 1, BUY, 10, 1000));
    CHECK(rejected(TS_REJ_DUPLICATE_ORDER_ID));
    /* phases */
    RUN(control(TS_CTL_HALT, S1, 0));
    RUN(limit(2, S1, 1, BUY, 10, 1000));
    CHECK(rejected(TS_REJ_HALTED));
    RUN(control(TS_CTL_AUCTION_START, S1, 0));
    RUN(with_tif(limit(2, S1, 1, BUY, 10, 1000), TS_TIF_IOC));
    CHECK(rejected(TS_REJ_PHASE));
    RUN(stop(2, S1, 1, BUY, 10, 1000, 0));
    CHECK(rejected(TS_REJ_PHASE));
    RUN(limit(2, S1, 1, BUY, 10, 1000));
    EV_IS(0, TS_EV_ACCEPTED, 2, 1000, 10, 10);
    /* first failing rule wins: unknown symbol before a bad side */
    RUN(limit(3, 77, 1, 9, 10, 1000));
    CHECK(rejected(TS_REJ_UNKNOWN_SYMBOL));
    /* an unknown command kind */
    c = limit(3, S1, 1, BUY, 10, 1000);
    c.kind = 0;
    RUN(c);
    CHECK(rejected(TS_REJ_INVALID_COMMAND));
    /* rejections changed nothing but the exec id */
    CHECK_EQ(ts_engine_live_orders(g_e), 2);
}

static void test_post_only(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    ts_command c = limit(2, S1, 2, BUY, 10, 1000);
    c.flags = TS_FLAG_POST_ONLY;
    RUN(c);
    CHECK(rejected(TS_REJ_POST_ONLY_WOULD_TAKE));
    c.price = 999;
    RUN(c);
    EV_IS(0, TS_EV_ACCEPTED, 2, 999, 10, 10);
    /* a replace of a post-only order that would take is refused too */
    RUN(replace(2, S1, 2, 1000, 10));
    CHECK(rejected(TS_REJ_POST_ONLY_WOULD_TAKE));
    RUN(replace(2, S1, 2, 998, 10));
    EV_IS(0, TS_EV_REPLACED, 2, 998, 10, 10);
}

static void test_cancel_rules(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    RUN(cancel(1, S1, 2));
    CHECK(rejected(TS_REJ_NOT_OWNER));
    RUN(cancel(1, S2, 1));
    CHECK(rejected(TS_REJ_UNKNOWN_ORDER));
    RUN(cancel(9, S1, 1));
    CHECK(rejected(TS_REJ_UNKNOWN_ORDER));
    RUN(cancel(1, S1, 1));
    CHECK_EQ(NEV, 1);
    EV_IS(0, TS_EV_CANCELLED, 1, 1000, 10, 0);
    CHECK_EQ(EV[0].reason, TS_CXL_USER);
    CHECK(md_l2(0, SELL, 1000, 0, 0));
    CHECK(md_bbo(1, 0, 0, 0, 0));
    RUN(cancel(1, S1, 1));
    CHECK(rejected(TS_REJ_UNKNOWN_ORDER));
    /* cancelling a level behind the best keeps the best exact; cancelling the best
     * level moves the best to the next price at once */
    RUN(limit(2, S1, 1, BUY, 10, 990));
    RUN(limit(3, S1, 1, BUY, 10, 995));
    RUN(limit(4, S1, 1, BUY, 10, 985));
    RUN(cancel(2, S1, 1));
    CHECK(bbo_is(S1, 995, 10, 0, 0));
    RUN(cancel(3, S1, 1));
    CHECK(bbo_is(S1, 985, 10, 0, 0));
    CHECK(md_l2(0, BUY, 995, 0, 0));
    CHECK(md_bbo(1, 985, 10, 0, 0));
}

/* ---- tests: STP ------------------------------------------------------------------------ */

static void test_stp_modes(void) {
    setup();
    /* CANCEL_RESTING: the resting own order goes, matching continues */
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    RUN(limit(2, S1, 2, SELL, 10, 1000));
    RUN(with_stp(limit(3, S1, 1, BUY, 15, 1000), TS_STP_CANCEL_RESTING));
    CHECK_EQ(NEV, 4);
    EV_IS(1, TS_EV_CANCELLED, 1, 1000, 10, 0);
    CHECK_EQ(EV[1].reason, TS_CXL_SELF_TRADE);
    EV_IS(2, TS_EV_TRADE, 3, 1000, 10, 5);
    EV_IS(3, TS_EV_TRADE, 2, 1000, 10, 0);
    CHECK(bbo_is(S1, 1000, 5, 0, 0));
    /* default (0) acts as CANCEL_INCOMING */
    RUN(limit(4, S1, 1, SELL, 10, 1000)); /* own order 3 is bid at 1000: self-match */
    CHECK_EQ(NEV, 2);
    EV_IS(1, TS_EV_CANCELLED, 4, 1000, 10, 0);
    CHECK_EQ(EV[1].reason, TS_CXL_SELF_TRADE);
    CHECK_EQ(NMD, 0);
    CHECK(bbo_is(S1, 1000, 5, 0, 0));
    /* CANCEL_INCOMING after a partial fill against someone else */
    RUN(limit(5, S1, 2, BUY, 5, 1001));
    RUN(with_stp(limit(6, S1, 2, SELL, 8, 1000), TS_STP_CANCEL_INCOMING));
    CHECK_EQ(NEV, 2);
    EV_IS(1, TS_EV_CANCELLED, 6, 1000, 8, 0);
    RUN(with_stp(limit(7, S1, 1, SELL, 8, 1000), TS_STP_CANCEL_INCOMING));
    CHECK_EQ(NEV, 4);
    EV_IS(1, TS_EV_TRADE, 7, 1001, 5, 3);
    EV_IS(2, TS_EV_TRADE, 5, 1001, 5, 0);
    EV_IS(3, TS_EV_CANCELLED, 7, 1000, 3, 0);
    CHECK_EQ(EV[3].reason, TS_CXL_SELF_TRADE);
    /* CANCEL_BOTH: resting first, then the incoming remainder */
    RUN(with_stp(limit(8, S1, 1, SELL, 2, 1000), TS_STP_CANCEL_BOTH));
    CHECK_EQ(NEV, 3);
    EV_IS(1, TS_EV_CANCELLED, 3, 1000, 5, 0);
    EV_IS(2, TS_EV_CANCELLED, 8, 1000, 2, 0);
    CHECK_EQ(ts_engine_live_orders(g_e), 0);
    CHECK(md_l2(0, BUY, 1000, 0, 0));
    CHECK(md_bbo(1, 0, 0, 0, 0));
}

/* ---- tests: icebergs ------------------------------------------------------------------- */

static void test_iceberg_refresh(void) {
    setup();
    ts_command ice = limit(1, S1, 1, SELL, 30, 1000);
    ice.display_qty = 10;
    RUN(ice);
    CHECK(md_l2(0, SELL, 1000, 10, 1));
    RUN(limit(2, S1, 1, SELL, 10, 1000));
    CHECK(md_l2(0, SELL, 1000, 20, 2));
    RUN(limit(3, S1, 2, BUY, 25, 1000));
    CHECK_EQ(NEV, 7);
    EV_IS(1, TS_EV_TRADE, 3, 1000, 10, 15);
    EV_IS(2, TS_EV_TRADE, 1, 1000, 10, 20);
    EV_IS(3, TS_EV_TRADE, 3, 1000, 10, 5); /* the iceberg went behind order 2 */
    EV_IS(4, TS_EV_TRADE, 2, 1000, 10, 0);
    EV_IS(5, TS_EV_TRADE, 3, 1000, 5, 0);
    EV_IS(6, TS_EV_TRADE, 1, 1000, 5, 15);
    CHECK_EQ(NMD, 5);
    CHECK(md_l2(3, SELL, 1000, 5, 1));
    CHECK(md_bbo(4, 0, 0, 1000, 5));
    /* the iceberg alone at its level meets the same taker again and again */
    RUN(limit(4, S1, 2, BUY, 15, 1000));
    CHECK_EQ(NEV, 5);
    EV_IS(1, TS_EV_TRADE, 4, 1000, 5, 10);
    EV_IS(2, TS_EV_TRADE, 1, 1000, 5, 10);
    EV_IS(3, TS_EV_TRADE, 4, 1000, 10, 0);
    EV_IS(4, TS_EV_TRADE, 1, 1000, 10, 0);
    CHECK(md_l2(2, SELL, 1000, 0, 0));
}

static void test_iceberg_taker_uses_full_quantity(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 50, 1000));
    ts_command ice = limit(2, S1, 2, BUY, 40, 1000);
    ice.display_qty = 10;
    RUN(ice);
    CHECK_EQ(NEV, 3);
    EV_IS(1, TS_EV_TRADE, 2, 1000, 40, 0);
    ice = limit(3, S1, 2, BUY, 40, 1000);
    ice.display_qty = 10;
    RUN(ice);
    EV_IS(1, TS_EV_TRADE, 3, 1000, 10, 30);
    /* the remainder rests showing one peak */
    CHECK(bbo_is(S1, 1000, 10, 0, 0));
}

/* ---- tests: stops ---------------------------------------------------------------------- */

static void test_stops(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    RUN(stop(2, S1, 2, BUY, 5, 1000, 0));
    CHECK_EQ(NEV, 1);
    EV_IS(0, TS_EV_ACCEPTED, 2, 0, 5, 5);
    CHECK_EQ(NMD, 0);
    CHECK_EQ(ts_engine_live_orders(g_e), 2);
    RUN(limit(3, S1, 3, BUY, 2, 1000));
    CHECK_EQ(NEV, 6);
    EV_IS(1, TS_EV_TRADE, 3, 1000, 2, 0);
    EV_IS(2, TS_EV_TRADE, 1, 1000, 2, 8);
    EV_IS(3, TS_EV_TRIGGERED, 2, 0, 5, 5);
    EV_IS(4, TS_EV_TRADE, 2, 1000, 5, 0);
    EV_IS(5, TS_EV_TRADE, 1, 1000, 5, 3);
    CHECK(md_trade(0, BUY, 1000, 2));
    CHECK(md_trade(1, BUY, 1000, 5));
    CHECK(md_l2(2, SELL, 1000, 3, 1));
    CHECK(md_bbo(3, 0, 0, 1000, 3));
    /* a stop-limit already triggered when accepted fires at the end of its command and
     * rests as a limit order */
    RUN(stop(4, S1, 2, SELL, 5, 1000, 995));
    CHECK_EQ(NEV, 2);
    EV_IS(0, TS_EV_ACCEPTED, 4, 995, 5, 5);
    EV_IS(1, TS_EV_TRIGGERED, 4, 995, 5, 5);
    CHECK(bbo_is(S1, 0, 0, 995, 5));
}

static void test_stops_fire_lowest_seq_first_and_cascade(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    RUN(limit(2, S1, 1, SELL, 10, 1002));
    RUN(stop(3, S1, 2, BUY, 10, 1002, 0)); /* triggers only after a 1002 print */
    RUN(stop(4, S1, 2, BUY, 1, 1000, 0));  /* seq 4: fires first, prints 1000 */
    RUN(stop(5, S1, 3, BUY, 9, 1000, 0));  /* fires next, sweeps into 1002 */
    RUN(limit(6, S1, 9, BUY, 1, 1000));
    /* 6 trades at 1000 -> stops 4 and 5 triggered: 4 then 5; 5 buys 8 at 1000 and 1
     * at 1002 -> stop 3 triggers and buys 9 at 1002 */
    CHECK_EQ(NEV, 1 + 2 + (1 + 2) + (1 + 4) + (1 + 2 + 1));
    uint64_t i = 3;
    EV_IS(i, TS_EV_TRIGGERED, 4, 0, 1, 1);
    EV_IS(i + 1, TS_EV_TRADE, 4, 1000, 1, 0);
    i += 3;
    EV_IS(i, TS_EV_TRIGGERED, 5, 0, 9, 9);
    EV_IS(i + 1, TS_EV_TRADE, 5, 1000, 8, 1);
    EV_IS(i + 3, TS_EV_TRADE, 5, 1002, 1, 0);
    i += 5;
    EV_IS(i, TS_EV_TRIGGERED, 3, 0, 10, 10);
    EV_IS(i + 1, TS_EV_TRADE, 3, 1002, 9, 1);
    EV_IS(i + 3, TS_EV_CANCELLED, 3, 0, 1, 0);
    CHECK_EQ(EV[i + 3].reason, TS_CXL_MARKET_REMAINDER);
    CHECK_EQ(ts_engine_live_orders(g_e), 0);
}

static void test_stop_cancel_replace(void) {
    setup();
    RUN(stop(1, S1, 1, SELL, 10, 990, 985));
    RUN(replace(1, S1, 1, 980, 20));
    CHECK_EQ(NEV, 1);
    EV_IS(0, TS_EV_REPLACED, 1, 980, 20, 20);
    RUN(stop(2, S1, 1, SELL, 10, 990, 0));
    RUN(replace(2, S1, 1, -1, 20)); /* a STOP's protection price: 0 keeps it, else > 0 */
    CHECK(rejected(TS_REJ_INVALID_PRICE));
    RUN(replace(2, S1, 1, 985, 20)); /* sets a protection price */
    EV_IS(0, TS_EV_REPLACED, 2, 985, 20, 20);
    RUN(replace(2, S1, 1, 0, 5)); /* keeps it */
    EV_IS(0, TS_EV_REPLACED, 2, 985, 5, 5);
    RUN(cancel(1, S1, 1));
    EV_IS(0, TS_EV_CANCELLED, 1, 980, 20, 0);
    CHECK_EQ(NMD, 0);
    RUN(mass_cancel(1, 0));
    EV_IS(0, TS_EV_CANCELLED, 2, 985, 5, 0);
    CHECK_EQ(EV[0].reason, TS_CXL_MASS_CANCEL);
}

/* ---- tests: replace -------------------------------------------------------------------- */

/* A replace that moves an order reserves room first, and when the order pool is full (no
 * free slot: every order ever placed still rests) the reserve grows it, which can move
 * the pool: the replace must not go on with pointers taken before. It did, and a worker
 * crashed on it at 1 024 resting orders, then again on every restart, replaying the
 * journaled replace. After each new order here the pool is full whenever its size is a
 * capacity, so the replace meets the growth at each of them. */
static void test_replace_when_the_order_pool_grows(void) {
    setup();
    for (uint64_t id = 1; id <= 2100; id++) {
        RUN(limit(id, S1, 1, SELL, 10, 1000 + (int64_t)(id % 50)));
        RUN(replace(1, S1, 1, 1001 + (int64_t)(id % 2), 10));
        EV_IS(0, TS_EV_REPLACED, 1, 1001 + (int64_t)(id % 2), 10, 10);
    }
    CHECK_EQ(ts_engine_live_orders(g_e), 2100);
}

static void test_replace_queue_position(void) {
    setup();
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    RUN(limit(2, S1, 1, SELL, 10, 1000));
    /* smaller, same price: keeps its place */
    RUN(replace(1, S1, 1, 1000, 6));
    CHECK_EQ(NEV, 1);
    EV_IS(0, TS_EV_REPLACED, 1, 1000, 6, 6);
    CHECK(md_l2(0, SELL, 1000, 16, 2));
    RUN(limit(3, S1, 2, BUY, 1, 1000));
    EV_IS(2, TS_EV_TRADE, 1, 1000, 1, 5);
    /* bigger: to the back */
    RUN(replace(1, S1, 1, 1000, 20));
    EV_IS(0, TS_EV_REPLACED, 1, 1000, 20, 19);
    RUN(limit(4, S1, 2, BUY, 1, 1000));
    EV_IS(2, TS_EV_TRADE, 2, 1000, 1, 9);
    /* unchanged: an event, no market data */
    RUN(replace(2, S1, 1, 1000, 10));
    EV_IS(0, TS_EV_REPLACED, 2, 1000, 10, 9);
    CHECK_EQ(NMD, 0);
    /* new quantity at or below what is filled: the order is cancelled */
    RUN(replace(2, S1, 1, 1000, 1));
    CHECK_EQ(NEV, 1);
    EV_IS(0, TS_EV_CANCELLED, 2, 1000, 9, 0);
    CHECK_EQ(EV[0].reason, TS_CXL_USER);
    /* validation */
    RUN(replace(1, S1, 2, 1000, 5));
    CHECK(rejected(TS_REJ_NOT_OWNER));
    RUN(replace(1, S1, 1, 0, 5));
    CHECK(rejected(TS_REJ_INVALID_PRICE));
    RUN(replace(1, S1, 1, 1000, 0));
    CHECK(rejected(TS_REJ_INVALID_QUANTITY));
    RUN(control(TS_CTL_HALT, S1, 0));
    RUN(replace(1, S1, 1, 1000, 5));
    CHECK(rejected(TS_REJ_HALTED));
    RUN(cancel(1, S1, 1)); /* cancels still work while halted */
    EV_IS(0, TS_EV_CANCELLED, 1, 1000, 19, 0);
}

static void test_replace_crossing_matches(void) {
    setup();
    RUN(limit(1, S1, 1, BUY, 10, 990));
    RUN(limit(2, S1, 2, SELL, 15, 1000));
    RUN(replace(2, S1, 2, 990, 15));
    CHECK_EQ(NEV, 3);
    EV_IS(0, TS_EV_REPLACED, 2, 990, 15, 15);
    EV_IS(1, TS_EV_TRADE, 2, 990, 10, 5);
    CHECK_EQ(EV[1].flags, TS_EVF_TAKER);
    EV_IS(2, TS_EV_TRADE, 1, 990, 10, 0);
    /* L2: the old level, then the level it traded against, then its new level */
    CHECK_EQ(NMD, 5);
    CHECK(md_trade(0, SELL, 990, 10));
    CHECK(md_l2(1, SELL, 1000, 0, 0));
    CHECK(md_l2(2, BUY, 990, 0, 0));
    CHECK(md_l2(3, SELL, 990, 5, 1));
    CHECK(md_bbo(4, 0, 0, 990, 5));
}

static void test_replace_in_auction_does_not_match(void) {
    setup();
    RUN(limit(1, S1, 1, BUY, 10, 990));
    RUN(limit(2, S1, 2, SELL, 15, 1000));
    RUN(control(TS_CTL_AUCTION_START, S1, 0));
    RUN(replace(2, S1, 2, 990, 15));
    CHECK_EQ(NEV, 1);
    CHECK(bbo_is(S1, 990, 10, 990, 15));
}

/* ---- tests: mass cancel, expiry --------------------------------------------------------- */

static void test_mass_cancel(void) {
    setup();
    RUN(limit(1, S2, 1, BUY, 10, 1000));
    RUN(limit(2, S1, 2, BUY, 10, 1000));
    RUN(limit(3, S1, 1, BUY, 10, 999));
    RUN(stop(4, S3, 1, BUY, 10, 1100, 0));
    RUN(limit(5, S2, 1, SELL, 10, 1100));
    RUN(mass_cancel(0, 99));
    CHECK(rejected(TS_REJ_UNKNOWN_SYMBOL));
    RUN(mass_cancel(2, S2)); /* nothing of account 2 in S2 */
    CHECK_EQ(NEV, 0);
    RUN(mass_cancel(1, 0));
    CHECK_EQ(NEV, 4);
    EV_IS(0, TS_EV_CANCELLED, 1, 1000, 10, 0);
    EV_IS(1, TS_EV_CANCELLED, 3, 999, 10, 0);
    EV_IS(2, TS_EV_CANCELLED, 4, 0, 10, 0);
    EV_IS(3, TS_EV_CANCELLED, 5, 1100, 10, 0);
    for (int i = 0; i < 4; i++) CHECK_EQ(EV[i].reason, TS_CXL_MASS_CANCEL);
    /* md grouped by symbol in first-touch order: S2, then S1 (whose BBO is unchanged);
     * the pending stop of S3 touched no level */
    CHECK_EQ(NMD, 4);
    CHECK(MD[0].symbol_id == S2 && md_l2(0, BUY, 1000, 0, 0));
    CHECK(MD[1].symbol_id == S2 && md_l2(1, SELL, 1100, 0, 0));
    CHECK(MD[2].symbol_id == S2 && md_bbo(2, 0, 0, 0, 0));
    CHECK(MD[3].symbol_id == S1 && md_l2(3, BUY, 999, 0, 0));
    CHECK_EQ(ts_engine_live_orders(g_e), 1);
    RUN(mass_cancel(0, S1));
    EV_IS(0, TS_EV_CANCELLED, 2, 1000, 10, 0);
}

static void test_gtd_expiry_and_session_close(void) {
    setup();
    ts_command c = with_tif(limit(1, S1, 1, BUY, 10, 990), TS_TIF_GTD);
    c.time_ns = 500;
    RUN(c);
    c = with_tif(limit(2, S2, 1, BUY, 10, 990), TS_TIF_GTD);
    c.time_ns = 300;
    RUN(c);
    c = with_tif(stop(3, S1, 1, BUY, 10, 1100, 0), TS_TIF_GTD);
    c.time_ns = 300;
    RUN(c);
    RUN(with_tif(limit(4, S1, 1, BUY, 10, 980), TS_TIF_DAY));
    RUN(with_tif(stop(5, S1, 1, SELL, 10, 900, 0), TS_TIF_DAY));
    RUN(cancel(1, S1, 1));
    c = with_tif(limit(6, S1, 1, BUY, 10, 970), TS_TIF_GTD);
    c.time_ns = 200;
    RUN(c);
    RUN(control(TS_CTL_CLOCK_TICK, 0, 299));
    CHECK_EQ(NEV, 1);
    EV_IS(0, TS_EV_CANCELLED, 6, 970, 10, 0);
    CHECK_EQ(EV[0].reason, TS_CXL_EXPIRED);
    for (uint64_t i = 0; i < NMD; i++) CHECK_EQ(MD[i].time_ns, 299);
    RUN(control(TS_CTL_CLOCK_TICK, 0, 298));
    CHECK(rejected(TS_REJ_INVALID_COMMAND));
    RUN(control(TS_CTL_CLOCK_TICK, 0, 400));
    CHECK_EQ(NEV, 2); /* (300, seq 2) then (300, seq 3); order 1 was cancelled */
    EV_IS(0, TS_EV_CANCELLED, 2, 990, 10, 0);
    EV_IS(1, TS_EV_CANCELLED, 3, 0, 10, 0);
    RUN(control(TS_CTL_CLOCK_TICK, 0, 1000));
    CHECK_EQ(NEV, 0);
    RUN(control(TS_CTL_SESSION_CLOSE, 0, 0));
    CHECK_EQ(NEV, 2);
    EV_IS(0, TS_EV_CANCELLED, 4, 980, 10, 0);
    EV_IS(1, TS_EV_CANCELLED, 5, 0, 10, 0);
    CHECK_EQ(EV[1].reason, TS_CXL_EXPIRED);
    CHECK_EQ(ts_engine_live_orders(g_e), 0);
}

/* ---- tests: phases, auctions, breaker ----------------------------------------------------- */

static void test_controls(void) {
    setup();
    RUN(control(TS_CTL_RESUME, S1, 0));
    CHECK(rejected(TS_REJ_INVALID_COMMAND));
    RUN(control(TS_CTL_AUCTION_UNCROSS, S1, 0));
    CHECK(rejected(TS_REJ_INVALID_COMMAND));
    RUN(control(9, S1, 0));
    CHECK(rejected(TS_REJ_INVALID_COMMAND));
    RUN(control(TS_CTL_HALT, 42, 0));
    CHECK(rejected(TS_REJ_UNKNOWN_SYMBOL));
    RUN(control(TS_CTL_HALT, 0, 0));
    CHECK_EQ(NEV, 0);
    for (uint32_t s = S1; s <= S3; s++) CHECK_EQ(ts_engine_phase(g_e, s), TS_PHASE_HALTED);
    RUN(control(TS_CTL_RESUME, S2, 0));
    CHECK_EQ(ts_engine_phase(g_e, S2), TS_PHASE_CONTINUOUS);
    /* symbol 0: every symbol in id order; the one not halted answers for itself */
    RUN(control(TS_CTL_RESUME, 0, 0));
    CHECK(NEV == 1 && EV[0].kind == TS_EV_REJECTED && EV[0].symbol_id == S2);
    CHECK_EQ(ts_engine_phase(g_e, S1), TS_PHASE_CONTINUOUS);
    CHECK_EQ(ts_engine_phase(g_e, S3), TS_PHASE_CONTINUOUS);
    RUN(control(TS_CTL_AUCTION_START, S1, 0));
    CHECK_EQ(ts_engine_phase(g_e, S1), TS_PHASE_AUCTION);
    RUN(control(TS_CTL_AUCTION_START, S1, 0));
    CHECK(rejected(TS_REJ_INVALID_COMMAND));
    RUN(control(TS_CTL_SESSION_OPEN, S1, 0));
    CHECK_EQ(ts_engine_phase(g_e, S1), TS_PHASE_CONTINUOUS);
    RUN(control(TS_CTL_HALT, S1, 0));
    RUN(control(TS_CTL_SESSION_OPEN, 0, 0));
    CHECK_EQ(NEV, 0);
    CHECK_EQ(ts_engine_phase(g_e, S1), TS_PHASE_CONTINUOUS);
}

static void test_auction_uncross(void) {
    setup();
    RUN(control(TS_CTL_AUCTION_START, S1, 0));
    RUN(limit(1, S1, 1, BUY, 10, 1002));
    RUN(limit(2, S1, 2, BUY, 10, 1000));
    RUN(limit(3, S1, 3, SELL, 15, 999));
    CHECK(md_bbo(1, 1002, 10, 999, 15)); /* a crossed book is fine in a call phase */
    RUN(limit(4, S1, 4, SELL, 10, 1001));
    RUN(control(TS_CTL_AUCTION_UNCROSS, S1, 0));
    /* volume 15 at 999 and 1000 (imbalance 5 both): 1000 is nearer the reference */
    CHECK_EQ(NEV, 4);
    EV_IS(0, TS_EV_TRADE, 3, 1000, 10, 5);
    CHECK_EQ(EV[0].flags, TS_EVF_TAKER);
    EV_IS(1, TS_EV_TRADE, 1, 1000, 10, 0);
    EV_IS(2, TS_EV_TRADE, 3, 1000, 5, 0);
    EV_IS(3, TS_EV_TRADE, 2, 1000, 5, 5);
    CHECK_EQ(NMD, 7);
    CHECK(md_trade(0, SELL, 1000, 10));
    CHECK(md_trade(1, SELL, 1000, 5));
    CHECK(md_status(2, S1, 2, TS_PHASE_CONTINUOUS, TS_PHASE_AUCTION, TS_MDS_AUCTION_UNCROSS, -1));
    CHECK(md_l2(3, SELL, 999, 0, 0));
    CHECK(md_l2(4, BUY, 1002, 0, 0));
    CHECK(md_l2(5, BUY, 1000, 5, 1));
    CHECK(md_bbo(6, 1000, 5, 1001, 10));
    CHECK_EQ(ts_engine_phase(g_e, S1), TS_PHASE_CONTINUOUS);
}

static void test_uncross_price_rules(void) {
    setup();
    /* equal volume and imbalance at 995 and 1010 (1000 is no candidate: only the limit
     * prices are); 995 is nearer the reference 1000 */
    RUN(control(TS_CTL_AUCTION_START, S1, 0));
    RUN(limit(1, S1, 1, BUY, 10, 1010));
    RUN(limit(2, S1, 2, SELL, 10, 995));
    RUN(control(TS_CTL_SESSION_OPEN, S1, 0));
    CHECK_EQ(NEV, 2);
    EV_IS(0, TS_EV_TRADE, 2, 995, 10, 0);
    EV_IS(1, TS_EV_TRADE, 1, 995, 10, 0);
    /* the static reference is now 995: symmetric candidates 990 and 1000 -> 990 */
    RUN(control(TS_CTL_AUCTION_START, S1, 0));
    RUN(limit(3, S1, 1, BUY, 10, 1000));
    RUN(limit(4, S1, 2, SELL, 10, 990));
    RUN(control(TS_CTL_AUCTION_UNCROSS, S1, 0));
    EV_IS(0, TS_EV_TRADE, 4, 990, 10, 0);
    /* volume first: 20 at 1001 beats 10 anywhere else; then the smaller imbalance */
    RUN(control(TS_CTL_AUCTION_START, S1, 0));
    RUN(limit(5, S1, 1, BUY, 20, 1001));
    RUN(limit(6, S1, 2, SELL, 10, 995));
    RUN(limit(7, S1, 2, SELL, 10, 1001));
    RUN(limit(8, S1, 2, SELL, 30, 1002));
    RUN(control(TS_CTL_AUCTION_UNCROSS, S1, 0));
    CHECK_EQ(NEV, 4);
    EV_IS(0, TS_EV_TRADE, 6, 1001, 10, 0);
    EV_IS(2, TS_EV_TRADE, 7, 1001, 10, 0);
    CHECK(bbo_is(S1, 0, 0, 1002, 30));
    /* with no reference, ties go to the lower price */
    ts_instrument i = instrument(10);
    i.reference_price = 0;
    CHECK_EQ(ts_engine_add_instrument(g_e, &i), TS_ENG_OK);
    RUN(control(TS_CTL_AUCTION_START, 10, 0));
    RUN(limit(9, 10, 1, BUY, 10, 1010));
    RUN(limit(10, 10, 2, SELL, 10, 995));
    RUN(control(TS_CTL_AUCTION_UNCROSS, 10, 0));
    EV_IS(0, TS_EV_TRADE, 10, 995, 10, 0);
}

static void test_uncross_nothing_to_trade(void) {
    setup();
    RUN(control(TS_CTL_AUCTION_START, S1, 0));
    RUN(limit(1, S1, 1, BUY, 10, 990));
    RUN(limit(2, S1, 2, SELL, 10, 995));
    RUN(control(TS_CTL_AUCTION_UNCROSS, S1, 0));
    CHECK_EQ(NEV, 0);
    CHECK_EQ(NMD, 1); /* only the phase change */
    CHECK(md_status(0, S1, 2, TS_PHASE_CONTINUOUS, TS_PHASE_AUCTION, TS_MDS_AUCTION_UNCROSS, -1));
    CHECK_EQ(ts_engine_phase(g_e, S1), TS_PHASE_CONTINUOUS);
}

static void test_uncross_stp(void) {
    setup();
    RUN(control(TS_CTL_AUCTION_START, S1, 0));
    RUN(limit(1, S1, 1, BUY, 10, 1000));
    RUN(with_stp(limit(2, S1, 1, SELL, 5, 1000), TS_STP_CANCEL_RESTING));
    RUN(limit(3, S1, 2, SELL, 10, 1000));
    RUN(control(TS_CTL_AUCTION_UNCROSS, S1, 0));
    /* heads 1 and 2 are the same account; 2 is later and its mode cancels resting 1;
     * then nothing of the bid side is left */
    CHECK_EQ(NEV, 1);
    EV_IS(0, TS_EV_CANCELLED, 1, 1000, 10, 0);
    CHECK_EQ(EV[0].reason, TS_CXL_SELF_TRADE);
    CHECK(bbo_is(S1, 0, 0, 1000, 15));
}

static void test_breaker_trip_and_reopen(void) {
    setup();
    RUN(limit(1, S3, 1, SELL, 10, 1020));
    RUN(limit(2, S3, 1, SELL, 10, 1040));
    RUN(limit(3, S3, 2, BUY, 20, 1040));
    /* 1020 is within 3% of the reference 1000; 1040 is not: trip, the rest rests */
    CHECK_EQ(NEV, 3);
    EV_IS(1, TS_EV_TRADE, 3, 1020, 10, 10);
    EV_IS(2, TS_EV_TRADE, 1, 1020, 10, 0);
    CHECK_EQ(ts_engine_phase(g_e, S3), TS_PHASE_AUCTION);
    CHECK(md_bbo(NMD - 1, 1040, 10, 1040, 10));
    /* an IOC arriving now is refused; a market order in an auction too */
    RUN(with_tif(limit(4, S3, 3, BUY, 1, 1040), TS_TIF_IOC));
    CHECK(rejected(TS_REJ_PHASE));
    RUN(control(TS_CTL_CLOCK_TICK, 0, 999));
    CHECK_EQ(NEV, 0);
    RUN(control(TS_CTL_CLOCK_TICK, 0, 1000));
    CHECK_EQ(NEV, 2);
    EV_IS(0, TS_EV_TRADE, 3, 1040, 10, 0);
    EV_IS(1, TS_EV_TRADE, 2, 1040, 10, 0);
    CHECK_EQ(ts_engine_phase(g_e, S3), TS_PHASE_CONTINUOUS);
    /* the reference is now 1040: 1070 is within 3% of the last trade, 1080 is not */
    RUN(limit(5, S3, 1, SELL, 10, 1080));
    RUN(market(6, S3, 2, BUY, 5));
    CHECK_EQ(NEV, 2);
    EV_IS(1, TS_EV_CANCELLED, 6, 0, 5, 0);
    CHECK_EQ(EV[1].reason, TS_CXL_HALT);
    CHECK_EQ(ts_engine_phase(g_e, S3), TS_PHASE_AUCTION);
    /* HALT drops the pending reopening */
    RUN(control(TS_CTL_HALT, S3, 0));
    RUN(control(TS_CTL_CLOCK_TICK, 0, 5000));
    CHECK_EQ(ts_engine_phase(g_e, S3), TS_PHASE_HALTED);
}

static void test_status_records(void) {
    setup();
    RUN(control(TS_CTL_HALT, S1, 0));
    CHECK_EQ(NMD, 1);
    CHECK(md_status(0, S1, 1, TS_PHASE_HALTED, TS_PHASE_CONTINUOUS, TS_MDS_HALT, -1));
    RUN(control(TS_CTL_HALT, S1, 0)); /* no change, no record */
    CHECK_EQ(NMD, 0);
    RUN(control(TS_CTL_RESUME, S2, 0)); /* refused: S2 is not halted */
    CHECK_EQ(NMD, 0);
    RUN(control(TS_CTL_AUCTION_START, 0, 0)); /* every symbol, in id order */
    CHECK_EQ(NMD, 3);
    CHECK(md_status(0, S1, 2, TS_PHASE_AUCTION, TS_PHASE_HALTED, TS_MDS_AUCTION_START, -1));
    CHECK(md_status(1, S2, 1, TS_PHASE_AUCTION, TS_PHASE_CONTINUOUS, TS_MDS_AUCTION_START, -1));
    CHECK(md_status(2, S3, 1, TS_PHASE_AUCTION, TS_PHASE_CONTINUOUS, TS_MDS_AUCTION_START, -1));
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    RUN(limit(2, S1, 2, BUY, 10, 1001));
    RUN(control(TS_CTL_AUCTION_UNCROSS, S1, 0)); /* the print, then the status, then L2 */
    CHECK(md_trade(0, BUY, 1000, 10));
    CHECK(md_status(1, S1, 3, TS_PHASE_CONTINUOUS, TS_PHASE_AUCTION, TS_MDS_AUCTION_UNCROSS, -1));
    CHECK(md_l2(2, BUY, 1001, 0, 0));
    RUN(control(TS_CTL_SESSION_OPEN, 0, 0));
    CHECK_EQ(NMD, 2);
    CHECK(md_status(0, S2, 2, TS_PHASE_CONTINUOUS, TS_PHASE_AUCTION, TS_MDS_SESSION_OPEN, -1));
    CHECK(md_status(1, S3, 2, TS_PHASE_CONTINUOUS, TS_PHASE_AUCTION, TS_MDS_SESSION_OPEN, -1));
    /* the breaker: the fill inside the band prints, then the trip; the tick reopens */
    RUN(control(TS_CTL_CLOCK_TICK, 0, 7));
    RUN(limit(3, S3, 1, SELL, 10, 1020));
    RUN(limit(4, S3, 1, SELL, 10, 1040));
    RUN(limit(5, S3, 2, BUY, 20, 1040));
    CHECK(md_trade(0, BUY, 1020, 10));
    CHECK(md_status(1, S3, 3, TS_PHASE_AUCTION, TS_PHASE_CONTINUOUS, TS_MDS_BREAKER, 1007));
    RUN(control(TS_CTL_CLOCK_TICK, 0, 1007));
    CHECK(md_trade(0, BUY, 1040, 10));
    CHECK(md_status(1, S3, 4, TS_PHASE_CONTINUOUS, TS_PHASE_AUCTION, TS_MDS_REOPEN_TIMER, -1));
    CHECK_EQ(MD[1].time_ns, 1007);
}

/* ---- tests: snapshot ---------------------------------------------------------------------- */

static uint8_t *snapshot_of(ts_engine *e, uint64_t *size) {
    *size = ts_engine_snapshot_size(e);
    uint8_t *buf = malloc(*size);
    if (!buf || ts_engine_snapshot(e, buf, *size) != *size) exit(2);
    return buf;
}

static void build_rich_state(void) {
    RUN(limit(1, S1, 1, SELL, 10, 1000));
    ts_command ice = limit(2, S1, 2, SELL, 30, 1000);
    ice.display_qty = 10;
    RUN(ice);
    RUN(limit(3, S1, 3, SELL, 5, 1003));
    RUN(limit(4, S1, 3, BUY, 5, 990));
    RUN(limit(5, S1, 4, BUY, 12, 1000)); /* fills 10 of 1, 2 of the iceberg */
    ts_command g = with_tif(limit(6, S1, 4, BUY, 7, 995), TS_TIF_GTD);
    g.time_ns = 900;
    RUN(g);
    RUN(stop(7, S1, 4, BUY, 3, 1003, 1004));
    RUN(with_tif(stop(8, S1, 4, SELL, 3, 980, 0), TS_TIF_DAY));
    RUN(limit(9, S2, 1, BUY, 100, 1000));
    RUN(control(TS_CTL_AUCTION_START, S2, 0));
    RUN(limit(10, S2, 2, SELL, 50, 995));
    RUN(limit(11, S3, 1, SELL, 10, 1050));
    RUN(market(12, S3, 2, BUY, 5)); /* trips S3 */
    RUN(control(TS_CTL_CLOCK_TICK, 0, 100));
}

static void test_snapshot_restore_identical(void) {
    setup();
    build_rich_state();
    uint64_t n1, n2;
    uint8_t *s1 = snapshot_of(g_e, &n1);
    int status = 1;
    g_e2 = ts_engine_restore(s1, n1, &status);
    CHECK_EQ(status, TS_ENG_OK);
    CHECK(g_e2 != NULL);
    CHECK(ts_book_check(g_e2, g_check_err, sizeof g_check_err) == 0);
    uint8_t *s2 = snapshot_of(g_e2, &n2);
    int same = n1 == n2 && memcmp(s1, s2, n1) == 0;
    free(s2);
    CHECK(same);
    CHECK_EQ(ts_engine_live_orders(g_e2), ts_engine_live_orders(g_e));
    /* the same commands now give the same output on both */
    ts_command tail[] = {
        limit(20, S1, 5, BUY, 30, 1003),  /* sweeps, triggers stop 7 */
        replace(4, S1, 3, 990, 50),
        control(TS_CTL_CLOCK_TICK, 0, 1500), /* expires 6, reopens S3 */
        control(TS_CTL_SESSION_OPEN, 0, 0),  /* uncrosses S2 */
        mass_cancel(3, 0),
        control(TS_CTL_SESSION_CLOSE, 0, 0),
        limit(21, S1, 5, SELL, 30, 980),     /* triggers nothing: stop 8 was DAY */
    };
    for (size_t i = 0; i < sizeof tail / sizeof tail[0]; i++) {
        run_on(g_e, tail[i]);
        CHECK(!g_run_failed);
        ts_event *ev1 = malloc(NEV * sizeof *ev1 + 1);
        ts_md *md1 = malloc(NMD * sizeof *md1 + 1);
        uint64_t nev1 = NEV, nmd1 = NMD;
        memcpy(ev1, EV, NEV * sizeof *ev1);
        memcpy(md1, MD, NMD * sizeof *md1);
        run_on(g_e2, tail[i]);
        int ok = !g_run_failed && NEV == nev1 && NMD == nmd1 &&
                 memcmp(ev1, EV, NEV * sizeof *ev1) == 0 && memcmp(md1, MD, NMD * sizeof *md1) == 0;
        free(ev1);
        free(md1);
        CHECK(ok);
    }
    free(s1);
    s1 = snapshot_of(g_e, &n1);
    s2 = snapshot_of(g_e2, &n2);
    same = n1 == n2 && memcmp(s1, s2, n1) == 0;
    free(s1);
    free(s2);
    CHECK(same);
}

static void test_snapshot_layout(void) {
    setup();
    build_rich_state();
    uint64_t n;
    uint8_t *s = snapshot_of(g_e, &n);
    ts_snap_header h;
    memcpy(&h, s, sizeof h);
    CHECK(h.magic == TS_SNAPSHOT_MAGIC && h.version == TS_SNAPSHOT_VERSION);
    CHECK_EQ(h.n_symbols, 3);
    CHECK_EQ(h.clock_ns, 100);
    CHECK_EQ(h.max_order_id, 12);
    CHECK_EQ(h.total_orders, ts_engine_live_orders(g_e));
    CHECK_EQ(n, 64 + 3 * (64 + 104) + 96 * h.total_orders);
    /* S1: bids best first, then asks best first, then stops in seq order */
    const uint8_t *p = s + 64;
    ts_snap_symbol sy;
    memcpy(&sy, p + 64, sizeof sy);
    CHECK_EQ(sy.symbol_id, S1);
    CHECK_EQ(sy.last_trade_price, 1000);
    CHECK_EQ(sy.reopen_ns, -1);
    CHECK_EQ(sy.status_seq, 0);
    uint64_t want[] = {6, 4, 2, 3, 7, 8};
    CHECK_EQ(sy.n_orders, 6);
    for (int i = 0; i < 6; i++) {
        ts_snap_order o;
        memcpy(&o, p + 64 + 104 + 96 * i, sizeof o);
        CHECK_EQ(o.order_id, want[i]);
        if (o.order_id == 2) {
            CHECK_EQ(o.visible, 8);
            CHECK_EQ(o.leaves, 28);
            CHECK_EQ(o.display_qty, 10);
        }
        if (o.order_id == 7) {
            CHECK_EQ(o.state, TS_STATE_PENDING_STOP);
            CHECK_EQ(o.visible, 0);
            CHECK_EQ(o.stop_price, 1003);
        }
        if (o.order_id == 6) CHECK_EQ(o.expire_ns, 900);
    }
    /* restore refuses damage */
    int status = 0;
    ts_engine *bad = ts_engine_restore(s, n - 1, &status);
    CHECK(bad == NULL && status == TS_ENG_ERR_BAD_SNAPSHOT);
    s[0] ^= 1;
    bad = ts_engine_restore(s, n, &status);
    CHECK(bad == NULL && status == TS_ENG_ERR_BAD_SNAPSHOT);
    s[0] ^= 1;
    s[64 + 64 + 104 + 86] = 1; /* a pad byte of the first order */
    bad = ts_engine_restore(s, n, &status);
    CHECK(bad == NULL && status == TS_ENG_ERR_BAD_SNAPSHOT);
    s[64 + 64 + 104 + 86] = 0;
    /* S2's one phase change (AUCTION_START): its status seq is in the symbol record */
    const uint8_t *p2 = p + 64 + 104 + 96 * sy.n_orders;
    memcpy(&sy, p2 + 64, sizeof sy);
    CHECK_EQ(sy.symbol_id, S2);
    CHECK_EQ(sy.status_seq, 1);
    /* a version-1 snapshot (no status_seq in the symbol records, as an older engine
     * wrote it) restores the same books, with the status seqs from 0 */
    {
        uint64_t n1 = n - 3 * 8;
        uint8_t *v1 = malloc(n1), *w = v1;
        const uint8_t *r = s + 64;
        CHECK(v1 != NULL);
        memcpy(w, s, 64);
        ((ts_snap_header *)(void *)w)->version = 1;
        w += 64;
        for (int k = 0; k < 3; k++) {
            ts_snap_symbol one;
            memcpy(&one, r + 64, sizeof one);
            memcpy(w, r, 64 + 96); /* the instrument, the symbol record up to status_seq */
            memcpy(w + 64 + 96, r + 64 + 104, 96 * one.n_orders);
            w += 64 + 96 + 96 * one.n_orders;
            r += 64 + 104 + 96 * one.n_orders;
        }
        CHECK_EQ((uint64_t)(w - v1), n1);
        ts_engine *old = ts_engine_restore(v1, n1, &status);
        CHECK(old != NULL && status == TS_ENG_OK);
        uint64_t n2;
        uint8_t *again = snapshot_of(old, &n2);
        CHECK_EQ(n2, n);
        /* the one thing version 1 did not keep: each symbol's status seq, now 0 (S2 and
         * S3 had changed phase); put the originals back and all else is identical */
        uint64_t at = 64;
        for (int k = 0; k < 3; k++) {
            ts_snap_symbol now;
            memcpy(&now, again + at + 64, sizeof now);
            CHECK_EQ(now.status_seq, 0);
            memcpy(again + at + 64 + 96, s + at + 64 + 96, 8);
            at += 64 + 104 + 96 * now.n_orders;
        }
        CHECK(memcmp(again, s, n) == 0);
        free(again);
        ts_engine_free(old);
        ((ts_snap_header *)(void *)v1)->version = TS_SNAPSHOT_VERSION + 1;
        CHECK(ts_engine_restore(v1, n1, &status) == NULL && status == TS_ENG_ERR_BAD_SNAPSHOT);
        free(v1);
    }
    /* swap the first two bids: no longer best first */
    uint8_t tmp[96];
    memcpy(tmp, s + 64 + 168, 96);
    memcpy(s + 64 + 168, s + 64 + 168 + 96, 96);
    memcpy(s + 64 + 168 + 96, tmp, 96);
    bad = ts_engine_restore(s, n, &status);
    CHECK(bad == NULL && status == TS_ENG_ERR_BAD_SNAPSHOT);
    free(s);
    /* an empty engine round-trips too */
    ts_engine *empty = ts_engine_new();
    uint8_t hdr[64];
    CHECK_EQ(ts_engine_snapshot(empty, hdr, sizeof hdr), 64);
    CHECK_EQ(ts_engine_snapshot(empty, hdr, 63), 0);
    ts_engine_free(empty);
    g_e2 = ts_engine_restore(hdr, 64, &status);
    CHECK(g_e2 != NULL && status == TS_ENG_OK);
}

static void test_add_instrument_errors(void) {
    setup();
    ts_instrument i = instrument(S1);
    CHECK_EQ(ts_engine_add_instrument(g_e, &i), TS_ENG_ERR_DUPLICATE_SYMBOL);
    i.symbol_id = 10;
    i.tick_size = 0;
    CHECK_EQ(ts_engine_add_instrument(g_e, &i), TS_ENG_ERR_BAD_INSTRUMENT);
    i.tick_size = 1;
    i.max_qty = 5;
    i.min_qty = 6;
    CHECK_EQ(ts_engine_add_instrument(g_e, &i), TS_ENG_ERR_BAD_INSTRUMENT);
    i.symbol_id = 0;
    i.min_qty = 1;
    CHECK_EQ(ts_engine_add_instrument(g_e, &i), TS_ENG_ERR_BAD_INSTRUMENT);
    i.symbol_id = 10;
    CHECK_EQ(ts_engine_add_instrument(g_e, &i), TS_ENG_OK);
}

/* Many orders: pools, ladders and the index grow; cancels in random order keep every
 * structure exact (checked every 997 commands, it is O(n)). */
static void test_growth_and_random_cancels(void) {
    setup();
    enum { N = 20000 };
    uint64_t *ids = malloc(N * sizeof *ids);
    uint64_t rng = 12345;
    for (uint64_t i = 0; i < N; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        uint8_t side = (rng >> 33) & 1 ? BUY : SELL;
        int64_t px = side == BUY ? 900 - (int64_t)((rng >> 40) % 500) : 1100 + (int64_t)((rng >> 40) % 500);
        ts_command c = limit(i + 1, S1, 1 + (uint32_t)(i % 7), side, 1 + (int64_t)(i % 13), px);
        ts_engine_clear_output(g_e);
        if (ts_engine_process(g_e, &c, 1) != 1) break;
        ids[i] = i + 1;
    }
    CHECK_EQ(ts_engine_live_orders(g_e), N);
    CHECK(ts_book_check(g_e, g_check_err, sizeof g_check_err) == 0);
    for (uint64_t i = N; i > 1; i--) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t j = (rng >> 33) % i;
        uint64_t t = ids[j];
        ids[j] = ids[i - 1];
        ids[i - 1] = t;
    }
    for (uint64_t i = 0; i < N; i++) {
        ts_command c = cancel(ids[i], S1, 1 + (uint32_t)((ids[i] - 1) % 7));
        ts_engine_clear_output(g_e);
        ts_engine_process(g_e, &c, 1);
        const ts_event *ev;
        if (ts_engine_events(g_e, &ev) != 1 || ev->kind != TS_EV_CANCELLED) {
            free(ids);
            CHECK(0);
        }
        if (i % 997 == 0 && ts_book_check(g_e, g_check_err, sizeof g_check_err) != 0) {
            fprintf(stderr, "%s\n", g_check_err);
            free(ids);
            CHECK(0);
        }
    }
    free(ids);
    CHECK_EQ(ts_engine_live_orders(g_e), 0);
    CHECK(ts_book_check(g_e, g_check_err, sizeof g_check_err) == 0);
}

/* Order ids far apart collide in the index's direct table (its slot is the id's low bits)
 * and spill to its hash; ids equal in their low 32 bits also share a hash tag. Cancels,
 * replaces, a snapshot round trip and growth must find every order all the same. */
static uint64_t sparse_id(uint64_t i) {
    /* ascending (2^32 apart); even ids have only seven distinct low halves, multiples of
     * 1024 (a few direct slots while the table is small, more as it grows: hash entries
     * move over), odd ones are spread */
    return ((i + 1) << 32) + (i % 7) * 1024u + (i % 2 ? i : 0);
}

/* Process c on g_e, every 64th call through RUN (the invariant checker looks every live
 * order up: O(n) a call, and longer over hash collisions); the first event's kind. */
static int run_sampled(ts_command c, uint64_t i) {
    if (i % 64 == 0) {
        run_on(g_e, c);
        return g_run_failed ? -1 : NEV ? EV[0].kind : -1;
    }
    ts_engine_clear_output(g_e);
    if (ts_engine_process(g_e, &c, 1) != 1) return -1;
    uint64_t k = ts_engine_events(g_e, &EV);
    NEV = k;
    if (k) g_exec_seen = EV[k - 1].exec_id; /* keeps RUN's exec id check in step */
    return k ? EV[0].kind : -1;
}

static void test_sparse_order_ids(void) {
    setup();
    enum { N = 3000 }; /* past the direct table's first size, so it grows */
    uint64_t ids[N];
    for (uint64_t i = 0; i < N; i++) {
        ids[i] = sparse_id(i);
        uint8_t side = i % 2 ? BUY : SELL;
        int64_t px = side == BUY ? 900 - (int64_t)(i % 40) : 1100 + (int64_t)(i % 40);
        ts_command c = limit(ids[i], S1, 1 + (uint32_t)(i % 5), side, 1 + (int64_t)(i % 9), px);
        CHECK_EQ(run_sampled(c, i), TS_EV_ACCEPTED);
    }
    CHECK_EQ(ts_engine_live_orders(g_e), N);
    CHECK(ts_book_check(g_e, g_check_err, sizeof g_check_err) == 0);
    /* every other order replaced (new size, same price), every third cancelled */
    for (uint64_t i = 0; i < N; i += 2) {
        int64_t px = i % 2 ? 900 - (int64_t)(i % 40) : 1100 + (int64_t)(i % 40);
        CHECK_EQ(run_sampled(replace(ids[i], S1, 1 + (uint32_t)(i % 5), px, 20), i / 2),
                 TS_EV_REPLACED);
    }
    for (uint64_t i = 0; i < N; i += 3)
        CHECK_EQ(run_sampled(cancel(ids[i], S1, 1 + (uint32_t)(i % 5)), i / 3), TS_EV_CANCELLED);
    /* unknown ids sharing a slot or a tag with live ones */
    RUN(cancel(ids[1] + ((uint64_t)1 << 32), S1, 1));
    CHECK_EQ(EV[0].kind, TS_EV_REJECTED);
    CHECK_EQ(EV[0].reason, TS_REJ_UNKNOWN_ORDER);
    RUN(cancel(ids[0], S1, 1)); /* cancelled above */
    CHECK_EQ(EV[0].reason, TS_REJ_UNKNOWN_ORDER);
    /* a restored engine finds them too */
    uint64_t n1, n2;
    uint8_t *s1 = snapshot_of(g_e, &n1);
    int status = 1;
    g_e2 = ts_engine_restore(s1, n1, &status);
    free(s1);
    CHECK_EQ(status, TS_ENG_OK);
    CHECK(ts_book_check(g_e2, g_check_err, sizeof g_check_err) == 0);
    for (uint64_t i = 0; i < N; i++) {
        if (i % 3 == 0) continue;
        ts_command c = cancel(ids[i], S1, 1 + (uint32_t)(i % 5));
        for (int k = 0; k < 2; k++) {
            ts_engine *e = k ? g_e2 : g_e;
            ts_engine_clear_output(e);
            CHECK_EQ(ts_engine_process(e, &c, 1), 1);
            const ts_event *ev;
            CHECK_EQ(ts_engine_events(e, &ev), 1);
            CHECK_EQ(ev->kind, TS_EV_CANCELLED);
        }
    }
    CHECK_EQ(ts_engine_live_orders(g_e), 0);
    CHECK_EQ(ts_engine_live_orders(g_e2), 0);
    CHECK(ts_book_check(g_e, g_check_err, sizeof g_check_err) == 0);
    CHECK(ts_book_check(g_e2, g_check_err, sizeof g_check_err) == 0);
    s1 = snapshot_of(g_e, &n1);
    uint8_t *s2 = snapshot_of(g_e2, &n2);
    int same = n1 == n2 && memcmp(s1, s2, n1) == 0;
    free(s1);
    free(s2);
    CHECK(same);
}

/* ---- bench ------------------------------------------------------------------------------ */

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/*
 * A venue-like mix on one symbol: 40% new GTC limits near the touch (mostly within 5
 * ticks, a quarter up to 50 away), 40% cancels of resting orders, 10% small IOCs that
 * take at the touch, 10% replaces (same price, new size); the book is held near 20k
 * resting orders over 1000 accounts. The stream is built against a live engine so cancels and
 * replaces name orders that really rest; then a fresh engine processes it, timed, in
 * batches of 256 as a shard worker would.
 */
static int bench(uint64_t n) {
    ts_engine *gen = engine3();
    ts_command *cmds = malloc(n * sizeof *cmds);
    uint64_t n_rest = 0;
    uint64_t *rest = malloc(n * sizeof *rest);
    int64_t *rest_px = malloc(n * sizeof *rest_px);
    uint32_t *rest_acct = malloc(n * sizeof *rest_acct);
    uint64_t *pos_of = malloc((n + 1) * sizeof *pos_of); /* order id -> index in rest[] */
    if (!cmds || !rest || !rest_px || !rest_acct || !pos_of) return 2;
    uint64_t s = 88172645463325252ull, next_id = 1;
    const uint64_t depth = 20000;
    int64_t mid = 100000;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = xorshift(&s);
        unsigned roll = (unsigned)(r % 100);
        if ((r >> 8) % 64 == 0) mid += (r >> 16) & 1 ? 1 : -1;
        ts_command c;
        /* hold the book near `depth` resting orders: a little more adding below it */
        const unsigned add_cut = n_rest < depth ? 60 : 40, cancel_cut = 80;
        if (i < depth / 2 || roll < add_cut || n_rest == 0) {
            uint8_t side = (r >> 20) & 1 ? BUY : SELL;
            uint64_t u = xorshift(&s);
            int64_t dist = (int64_t)(u % 4 == 0 ? u % 50 : u % 5) + 1;
            c = limit(next_id++, S1, 1 + (uint32_t)(u >> 40) % 1000, side,
                      1 + (int64_t)((u >> 20) % 20), side == BUY ? mid - dist : mid + dist);
        } else if (roll < cancel_cut) {
            uint64_t j = xorshift(&s) % n_rest;
            c = cancel(rest[j], S1, rest_acct[j]);
        } else if (roll < 90) {
            uint8_t side = (r >> 20) & 1 ? BUY : SELL;
            c = with_tif(limit(next_id++, S1, 1 + (uint32_t)(r >> 40) % 1000, side,
                               1 + (int64_t)((r >> 24) % 10), side == BUY ? mid + 1 : mid - 1),
                         TS_TIF_IOC);
        } else {
            uint64_t j = xorshift(&s) % n_rest;
            c = replace(rest[j], S1, rest_acct[j], rest_px[j], 1 + (int64_t)((r >> 24) % 20));
        }
        cmds[i] = c;
        ts_engine_clear_output(gen);
        ts_engine_process(gen, &c, 1);
        const ts_event *ev;
        uint64_t k = ts_engine_events(gen, &ev);
        for (uint64_t x = 0; x < k; x++) {
            /* track what rests: accepted GTC orders, minus anything done */
            if (ev[x].kind == TS_EV_ACCEPTED && c.tif == TS_TIF_GTC) {
                pos_of[ev[x].order_id] = n_rest;
                rest[n_rest] = ev[x].order_id;
                rest_px[n_rest] = ev[x].price;
                rest_acct[n_rest] = ev[x].account_id;
                n_rest++;
            } else if ((ev[x].flags & TS_EVF_DONE) && ev[x].kind != TS_EV_REJECTED &&
                       !(c.kind == TS_CMD_NEW_ORDER && c.tif == TS_TIF_IOC &&
                         ev[x].order_id == c.order_id)) {
                uint64_t j = pos_of[ev[x].order_id], last = n_rest - 1;
                rest[j] = rest[last];
                rest_px[j] = rest_px[last];
                rest_acct[j] = rest_acct[last];
                pos_of[rest[j]] = j;
                n_rest--;
            }
        }
    }
    ts_engine_free(gen);
    free(rest);
    free(rest_px);
    free(rest_acct);
    free(pos_of);

    double best = 1e30;
    uint64_t events = 0, mds = 0;
    for (int rep = 0; rep < 3; rep++) {
        ts_engine *e = engine3();
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        events = mds = 0;
        for (uint64_t i = 0; i < n; i += 256) {
            uint64_t k = n - i < 256 ? n - i : 256;
            ts_engine_process(e, cmds + i, k);
            const ts_event *ev;
            const ts_md *md;
            events += ts_engine_events(e, &ev);
            mds += ts_engine_md(e, &md);
            ts_engine_clear_output(e);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        if (sec < best) best = sec;
        if (rep == 2)
            printf("bench: %llu live orders at the end, %llu bytes held (%.0f per live order)\n",
                   (unsigned long long)ts_engine_live_orders(e),
                   (unsigned long long)ts_engine_memory_bytes(e),
                   (double)ts_engine_memory_bytes(e) / (double)(ts_engine_live_orders(e) + 1));
        ts_engine_free(e);
    }
    printf("bench: %llu commands -> %llu events, %llu md records; best of 3: %.3f s, "
           "%.2f M commands/s, %.0f ns/command\n",
           (unsigned long long)n, (unsigned long long)events, (unsigned long long)mds, best,
           (double)n / best / 1e6, best * 1e9 / (double)n);
    free(cmds);
    return 0;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

/* A resting-book memory figure: n resting orders at spread prices; bytes the engine
 * holds (capacity) and the resident-set growth (pages really touched). */
static int bench_memory(uint64_t n) {
    long rss0 = rss_kb();
    ts_engine *e = engine3();
    for (uint64_t i = 0; i < n; i++) {
        ts_command c = limit(i + 1, S1, 1, i & 1 ? BUY : SELL, 1,
                             i & 1 ? 50000 - (int64_t)(i % 20000) : 50001 + (int64_t)(i % 20000));
        ts_engine_clear_output(e);
        if (ts_engine_process(e, &c, 1) != 1) return 2;
    }
    uint64_t bytes = ts_engine_memory_bytes(e);
    long rss1 = rss_kb();
    printf("memory: %llu resting orders: %llu bytes held (%.1f per order), resident growth "
           "%.1f bytes per order\n",
           (unsigned long long)n, (unsigned long long)bytes, (double)bytes / (double)n,
           (double)(rss1 - rss0) * 1024.0 / (double)n);
    ts_engine_free(e);
    return 0;
}

/* ---- lookahead ---- */

/* A batch over a book past the lookahead's threshold (book_orders.c, LOOK_MIN_LIVE =
 * 32 768 live orders) gives the output of the same commands one call at a time, where
 * the lookahead never runs; under ASan, its reads of orders a few commands ahead are
 * checked too. The storm races the hints: cancels and replaces of orders that a trade or
 * a cancel took away a few commands before, in the same batch, and of ids never sent. */
static void test_batch_lookahead_matches_one_at_a_time(void) {
    enum { RESTING = 40000, STORM = 8000, BATCH = 512 };
    ts_command *cmds = malloc((RESTING + STORM) * sizeof *cmds);
    ts_event *ev_one = malloc(4 * STORM * sizeof *ev_one);
    CHECK(cmds && ev_one);
    if (!cmds || !ev_one) return;
    uint64_t s = 0x9E3779B97F4A7C15ull, next_id = 1;
    for (uint64_t i = 0; i < RESTING; i++, next_id++) {
        uint64_t r = xorshift(&s);
        uint8_t side = r & 1 ? BUY : SELL;
        int64_t dist = 1 + (int64_t)((r >> 8) % 3000);
        cmds[i] = limit(next_id, S1, 1 + (uint32_t)((r >> 32) % 50), side,
                        1 + (int64_t)((r >> 20) % 19), side == BUY ? 100000 - dist : 100000 + dist);
    }
    for (uint64_t i = RESTING; i < RESTING + STORM; i++) {
        uint64_t r = xorshift(&s);
        unsigned roll = (unsigned)(r % 100);
        uint64_t back = (r >> 8) % 64, id = next_id - 1 - (back < next_id - 1 ? back : 0);
        if (roll < 25) {
            uint8_t side = (r >> 16) & 1 ? BUY : SELL;
            int crossing = (r >> 17) % 3 == 0;
            int64_t away = crossing ? -(int64_t)((r >> 24) % 40) : 1 + (int64_t)((r >> 24) % 3000);
            ts_command c = limit(next_id++, S1, 1 + (uint32_t)((r >> 40) % 50), side,
                                 1 + (int64_t)((r >> 32) % 60),
                                 side == BUY ? 100000 - away : 100000 + away);
            cmds[i] = crossing ? with_tif(c, TS_TIF_IOC) : c;
        } else {
            if ((r >> 48) % 10 == 0) id = next_id + 1000000; /* never sent */
            else if ((r >> 48) % 10 < 3) id = 1 + (r >> 20) % (next_id - 1); /* any */
            /* the owner is not tracked here: a wrong account is NOT_OWNER, raced too */
            uint32_t acct = 1 + (uint32_t)((r >> 40) % 50);
            cmds[i] = roll < 85 ? cancel(id, S1, acct)
                                : replace(id, S1, acct, 100000 + (int64_t)((r >> 32) % 6000) - 3000,
                                          1 + (int64_t)((r >> 24) % 40));
        }
    }
    g_e = engine3();
    g_e2 = engine3();
    CHECK(ts_engine_process(g_e, cmds, RESTING) == RESTING);
    CHECK(ts_engine_process(g_e2, cmds, RESTING) == RESTING);
    CHECK(ts_engine_live_orders(g_e) == RESTING);
    ts_engine_clear_output(g_e);
    ts_engine_clear_output(g_e2);
    uint64_t n_one = 0, mismatches = 0, gone = 0;
    for (uint64_t i = RESTING; i < RESTING + STORM; i++) {
        ts_engine_clear_output(g_e2);
        CHECK(ts_engine_process(g_e2, &cmds[i], 1) == 1);
        const ts_event *ev;
        uint64_t k = ts_engine_events(g_e2, &ev);
        CHECK(n_one + k <= 4 * STORM);
        if (n_one + k > 4 * STORM) break;
        memcpy(ev_one + n_one, ev, k * sizeof *ev);
        n_one += k;
    }
    uint64_t at = 0;
    for (uint64_t i = RESTING; i < RESTING + STORM; i += BATCH) {
        uint64_t n = RESTING + STORM - i < BATCH ? RESTING + STORM - i : BATCH;
        ts_engine_clear_output(g_e);
        CHECK(ts_engine_process(g_e, &cmds[i], n) == n);
        const ts_event *ev;
        uint64_t k = ts_engine_events(g_e, &ev);
        for (uint64_t x = 0; x < k; x++, at++) {
            if (at >= n_one || memcmp(&ev[x], &ev_one[at], sizeof *ev) != 0) mismatches++;
            if (ev[x].kind == TS_EV_REJECTED && ev[x].reason == TS_REJ_UNKNOWN_ORDER) gone++;
        }
    }
    CHECK(mismatches == 0);
    CHECK(at == n_one);
    CHECK(gone > 500); /* the race was run */
    CHECK(ts_book_check(g_e, g_check_err, sizeof g_check_err) == 0);
    free(cmds);
    free(ev_one);
}

/* ---- runner -------------------------------------------------------------------------- */

struct test {
    const char *name;
    void (*fn)(void);
};

#define T(fn) {#fn, fn}
static const struct test TESTS[] = {
    T(test_batch_lookahead_matches_one_at_a_time),
    T(test_rest_and_market_data),
    T(test_fill_at_maker_price),
    T(test_price_time_priority),
    T(test_partial_fill_rests_remainder),
    T(test_ioc_and_market_remainders),
    T(test_fok),
    T(test_reject_reasons),
    T(test_post_only),
    T(test_cancel_rules),
    T(test_stp_modes),
    T(test_iceberg_refresh),
    T(test_iceberg_taker_uses_full_quantity),
    T(test_stops),
    T(test_stops_fire_lowest_seq_first_and_cascade),
    T(test_stop_cancel_replace),
    T(test_replace_queue_position),
    T(test_replace_when_the_order_pool_grows),
    T(test_replace_crossing_matches),
    T(test_replace_in_auction_does_not_match),
    T(test_mass_cancel),
    T(test_gtd_expiry_and_session_close),
    T(test_controls),
    T(test_auction_uncross),
    T(test_uncross_price_rules),
    T(test_uncross_nothing_to_trade),
    T(test_uncross_stp),
    T(test_breaker_trip_and_reopen),
    T(test_status_records),
    T(test_snapshot_restore_identical),
    T(test_snapshot_layout),
    T(test_add_instrument_errors),
    T(test_growth_and_random_cancels),
    T(test_sparse_order_ids),
};

int main(int argc, char **argv) {
    const char *filters[32];
    int nfilters = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--bench", 7) == 0) {
            uint64_t n = argv[i][7] == '=' ? strtoull(argv[i] + 8, NULL, 10) : 5000000;
            return bench(n);
        }
        if (strncmp(argv[i], "--memory", 8) == 0) {
            uint64_t n = argv[i][8] == '=' ? strtoull(argv[i] + 9, NULL, 10) : 1000000;
            return bench_memory(n);
        }
        if (strncmp(argv[i], "--", 2) == 0) continue; /* shared TEST_ARGS: scenarios are fixed */
        if (nfilters < 32) filters[nfilters++] = argv[i];
    }
    int passed = 0, failed = 0;
    for (size_t t = 0; t < sizeof TESTS / sizeof TESTS[0]; t++) {
        if (nfilters) {
            int hit = 0;
            for (int f = 0; f < nfilters; f++) hit |= strstr(TESTS[t].name, filters[f]) != NULL;
            if (!hit) continue;
        }
        g_test_failed = 0;
        NEV = NMD = 0;
        TESTS[t].fn();
        ts_engine_free(g_e);
        ts_engine_free(g_e2);
        g_e = g_e2 = NULL;
        NEV = NMD = 0;
        if (g_test_failed) failed++;
        else passed++;
        printf("%s %s\n", g_test_failed ? "FAIL" : "ok  ", TESTS[t].name);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
