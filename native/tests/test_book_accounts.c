/*
 * test_book_accounts.c — what a mass cancel, a session close and the recovery image cost
 * and yield now that live orders hang off their ACCOUNT's list (book_internal.h):
 *
 *  - an account's mass cancel looks at its own orders only, however many others rest
 *    (counted by ts_book_mass_cancel_visits, not timed);
 *  - every kind of mass cancel and session close still cancels in ascending seq, across
 *    books and after replaces that moved orders in their queues;
 *  - the account table grows past its first size in the middle of a stream, a snapshot
 *    round trip rebuilds the lists, the order image keeps its order;
 *  - out of memory when the account table or a sort buffer must grow leaves the engine
 *    exactly as it was (the program is linked with malloc, calloc and realloc wrapped,
 *    see native/Makefile, so a test can make them fail).
 *
 * Every command goes through run(), which also runs the invariant checker (book_check.h).
 * Usage: test_book_accounts [NAME...]; the last line is "N passed, M failed".
 */
#define _GNU_SOURCE
#include "../book.h"
#include "../book_check.h"
#include "../book_internal.h"
#include "../order_image.h"
#include "../wire.h"
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- allocation failure on demand ---- */

static int g_fail_allocs; /* while set, every malloc, calloc and realloc fails */
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n) { return g_fail_allocs ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t k, size_t n) { return g_fail_allocs ? NULL : __real_calloc(k, n); }
void *__wrap_realloc(void *p, size_t n) { return g_fail_allocs ? NULL : __real_realloc(p, n); }

/* ---- engine, commands, output ---- */

enum { BUY = TS_SIDE_BUY, SELL = TS_SIDE_SELL };

static ts_engine *g_e, *g_e2; /* freed by the runner after each test */
static const ts_event *EV;
static uint64_t NEV;
static char g_err[256];

static ts_engine *engine_with(const uint32_t *symbols, uint32_t n) {
    ts_engine *e = ts_engine_new();
    if (!e) exit(2);
    for (uint32_t i = 0; i < n; i++) {
        ts_instrument ins = {.symbol_id = symbols[i], .tick_size = 1, .lot_size = 1,
                             .min_qty = 1};
        if (ts_engine_add_instrument(e, &ins) != TS_ENG_OK) exit(2);
    }
    return e;
}

static ts_command limit(uint64_t id, uint32_t sym, uint32_t acct, uint8_t side, int64_t qty,
                        int64_t price) {
    return (ts_command){.kind = TS_CMD_NEW_ORDER, .order_type = TS_ORD_LIMIT,
                        .tif = TS_TIF_GTC, .order_id = id, .symbol_id = sym,
                        .account_id = acct, .side = side, .quantity = qty, .price = price};
}

static ts_command day(ts_command c) {
    c.tif = TS_TIF_DAY;
    return c;
}

static ts_command stop(uint64_t id, uint32_t sym, uint32_t acct, uint8_t side, int64_t qty,
                       int64_t stop_price) {
    ts_command c = limit(id, sym, acct, side, qty, 0);
    c.order_type = TS_ORD_STOP;
    c.stop_price = stop_price;
    return c;
}

static ts_command replace(uint64_t id, uint32_t sym, uint32_t acct, int64_t price, int64_t qty) {
    return (ts_command){.kind = TS_CMD_REPLACE, .order_id = id, .symbol_id = sym,
                        .account_id = acct, .price = price, .quantity = qty};
}

static ts_command mass_cancel(uint32_t acct, uint32_t sym) {
    return (ts_command){.kind = TS_CMD_MASS_CANCEL, .account_id = acct, .symbol_id = sym};
}

static ts_command control(uint8_t code, uint32_t sym) {
    return (ts_command){.kind = TS_CMD_CONTROL, .control = code, .symbol_id = sym};
}

/* Apply one command; 1 when processed and every invariant holds (EV/NEV: its events). */
static int run_on(ts_engine *e, ts_command c) {
    ts_engine_clear_output(e);
    if (ts_engine_process(e, &c, 1) != 1) {
        snprintf(g_err, sizeof g_err, "not processed");
        return 0;
    }
    NEV = ts_engine_events(e, &EV);
    return ts_book_check(e, g_err, sizeof g_err) == 0;
}

/* The same without the O(n) checker, for building big books. */
static int feed(ts_engine *e, ts_command c) {
    ts_engine_clear_output(e);
    if (ts_engine_process(e, &c, 1) != 1) return 0;
    NEV = ts_engine_events(e, &EV);
    return 1;
}

#define RUN(cmd)                                                                           \
    do {                                                                                   \
        if (!run_on(g_e, (cmd))) {                                                         \
            fprintf(stderr, "run: %s\n", g_err);                                           \
            CHECK(0);                                                                      \
        }                                                                                  \
    } while (0)

/* The events are all CANCELLED(reason), their order ids strictly ascending (ids are
 * given in acceptance order here, so ascending id = ascending seq). */
static int cancels_ascending(uint8_t reason) {
    for (uint64_t i = 0; i < NEV; i++) {
        if (EV[i].kind != TS_EV_CANCELLED || EV[i].reason != reason) return 0;
        if (i > 0 && EV[i - 1].order_id >= EV[i].order_id) return 0;
    }
    return 1;
}

static uint8_t *snapshot_of(const ts_engine *e, uint64_t *n) {
    *n = ts_engine_snapshot_size(e);
    uint8_t *p = malloc(*n);
    if (!p || ts_engine_snapshot(e, p, *n) != *n) exit(2);
    return p;
}

static int same_snapshot(const ts_engine *a, const ts_engine *b) {
    uint64_t n1, n2;
    uint8_t *s1 = snapshot_of(a, &n1), *s2 = snapshot_of(b, &n2);
    int same = n1 == n2 && memcmp(s1, s2, n1) == 0;
    free(s1);
    free(s2);
    return same;
}

static int zero_pad(const ts_live_order *r) {
    for (size_t i = 0; i < sizeof r->_pad0; i++)
        if (r->_pad0[i]) return 0;
    return 1;
}

/* ---- cost ---- */

/* 200 000 orders of 1000 other accounts rest in one book: a mass cancel of an account
 * with none, or with one, looks at that many orders, not at the book. */
static void test_mass_cancel_costs_the_accounts_own_orders(void) {
    const uint32_t syms[] = {1, 2};
    g_e = engine_with(syms, 2);
    enum { N = 200000 };
    uint64_t id = 1;
    for (uint64_t i = 0; i < N; i++) {
        uint8_t side = i & 1 ? BUY : SELL;
        int64_t px = side == BUY ? 1000 - (int64_t)(i % 300) : 1001 + (int64_t)(i % 300);
        CHECK(feed(g_e, limit(id++, 1, 1 + (uint32_t)(i % 1000), side, 1, px)));
    }
    const uint64_t mine = id;
    CHECK(feed(g_e, limit(id++, 2, 5001, BUY, 3, 500)));
    for (int k = 0; k < 5; k++) CHECK(feed(g_e, limit(id++, 1 + k % 2, 5002, BUY, 1, 900)));
    CHECK(ts_book_check(g_e, g_err, sizeof g_err) == 0);

    uint64_t v = ts_book_mass_cancel_visits(g_e);
    RUN(mass_cancel(5000, 0)); /* never had an order */
    CHECK_EQ(NEV, 0);
    CHECK_EQ(ts_book_mass_cancel_visits(g_e) - v, 0);
    RUN(mass_cancel(5000, 1));
    CHECK_EQ(ts_book_mass_cancel_visits(g_e) - v, 0);

    v = ts_book_mass_cancel_visits(g_e);
    RUN(mass_cancel(5001, 1)); /* its one order is in symbol 2 */
    CHECK_EQ(NEV, 0);
    CHECK_EQ(ts_book_mass_cancel_visits(g_e) - v, 1);
    RUN(mass_cancel(5001, 0));
    CHECK_EQ(NEV, 1);
    CHECK(EV[0].order_id == mine && EV[0].reason == TS_CXL_MASS_CANCEL);
    CHECK_EQ(ts_book_mass_cancel_visits(g_e) - v, 2);
    RUN(mass_cancel(5001, 0)); /* now empty: its entry stays, its list is empty */
    CHECK_EQ(ts_book_mass_cancel_visits(g_e) - v, 2);

    v = ts_book_mass_cancel_visits(g_e);
    RUN(mass_cancel(5002, 2)); /* 5 orders, 2 of them in symbol 2 */
    CHECK_EQ(NEV, 2);
    CHECK(cancels_ascending(TS_CXL_MASS_CANCEL));
    CHECK_EQ(ts_book_mass_cancel_visits(g_e) - v, 5);
    CHECK_EQ(ts_engine_live_orders(g_e), N + 3);

    /* one of the 1000 big accounts: its 200 orders, not the book's 200 000 */
    v = ts_book_mass_cancel_visits(g_e);
    RUN(mass_cancel(7, 0));
    CHECK_EQ(NEV, N / 1000);
    CHECK(cancels_ascending(TS_CXL_MASS_CANCEL));
    CHECK_EQ(ts_book_mass_cancel_visits(g_e) - v, N / 1000);
}

/* ---- order ---- */

/* Three books, three accounts, orders interleaved, some moved in their queues by
 * replaces (a replace keeps the seq): every kind of mass cancel is ascending seq. */
static void build_interleaved(ts_engine *e, uint64_t n, uint32_t accounts) {
    for (uint64_t i = 1; i <= n; i++) {
        uint32_t sym = 1 + (uint32_t)(i % 3), acct = 1 + (uint32_t)((i / 3) % accounts);
        uint8_t side = (i / 7) % 2 ? BUY : SELL;
        int64_t px = side == BUY ? 1000 - (int64_t)(i % 5) : 1010 + (int64_t)(i % 5);
        ts_command c = i % 11 == 0 ? stop(i, sym, acct, side, 2, side == BUY ? 2000 : 10)
                                   : limit(i, sym, acct, side, 2, px);
        if (!feed(e, c)) exit(2);
    }
    /* to the back of other queues: at a new price, and with a bigger quantity */
    for (uint64_t i = 1; i <= n; i += 4)
        if (i % 11) {
            uint32_t sym = 1 + (uint32_t)(i % 3), acct = 1 + (uint32_t)((i / 3) % accounts);
            uint8_t side = (i / 7) % 2 ? BUY : SELL;
            int64_t px = side == BUY ? 1000 - (int64_t)((i + 2) % 5) : 1010 + (int64_t)((i + 2) % 5);
            if (!feed(e, replace(i, sym, acct, px, 3))) exit(2);
        }
}

static void test_mass_cancels_in_ascending_seq(void) {
    const uint32_t syms[] = {3, 1, 2};
    g_e = engine_with(syms, 3);
    build_interleaved(g_e, 300, 3);
    CHECK(ts_book_check(g_e, g_err, sizeof g_err) == 0);
    uint64_t live = ts_engine_live_orders(g_e);
    RUN(mass_cancel(2, 2));
    CHECK(NEV == 300 / 9 && cancels_ascending(TS_CXL_MASS_CANCEL));
    for (uint64_t i = 0; i < NEV; i++) CHECK(EV[i].symbol_id == 2 && EV[i].account_id == 2);
    live -= NEV;
    RUN(mass_cancel(0, 1));
    CHECK(NEV == 100 && cancels_ascending(TS_CXL_MASS_CANCEL));
    for (uint64_t i = 0; i < NEV; i++) CHECK_EQ(EV[i].symbol_id, 1);
    live -= NEV;
    RUN(mass_cancel(3, 0));
    uint64_t want = 0; /* account 3's orders outside symbol 1, as build_interleaved made them */
    for (uint64_t i = 1; i <= 300; i++) want += (i / 3) % 3 == 2 && i % 3 != 0;
    CHECK(NEV == want && cancels_ascending(TS_CXL_MASS_CANCEL));
    for (uint64_t i = 0; i < NEV; i++) CHECK(EV[i].account_id == 3 && EV[i].symbol_id != 1);
    live -= NEV;
    RUN(mass_cancel(0, 0));
    CHECK(NEV == live && cancels_ascending(TS_CXL_MASS_CANCEL));
    CHECK_EQ(ts_engine_live_orders(g_e), 0);
    RUN(mass_cancel(0, 0));
    CHECK_EQ(NEV, 0);
}

/* A mass cancel of every account in every symbol merges hundreds of account lists. */
static void test_global_mass_cancel_merges_many_accounts(void) {
    const uint32_t syms[] = {1, 2, 3};
    g_e = engine_with(syms, 3);
    build_interleaved(g_e, 6000, 700);
    CHECK(ts_book_check(g_e, g_err, sizeof g_err) == 0);
    uint64_t live = ts_engine_live_orders(g_e), v = ts_book_mass_cancel_visits(g_e);
    RUN(mass_cancel(0, 0));
    CHECK(NEV == live && cancels_ascending(TS_CXL_MASS_CANCEL));
    CHECK_EQ(ts_book_mass_cancel_visits(g_e) - v, live);
}

/* SESSION_CLOSE of every symbol: symbols in id order, each one's DAY orders (resting and
 * pending) in ascending seq; GTC orders stay. Books big enough for the radix sort's
 * passes and for the sort buffer to be given back afterwards. */
static void test_session_close_of_many_symbols(void) {
    enum { NSYM = 150 };
    uint32_t syms[NSYM];
    for (uint32_t i = 0; i < NSYM; i++) syms[i] = 1 + (i * 37) % NSYM; /* not added in order */
    g_e = engine_with(syms, NSYM);
    uint64_t id = 1, n_day = 0;
    for (uint64_t i = 0; i < 30000; i++) {
        /* symbol 5 gets a third of everything: one big book */
        uint32_t sym = i % 3 == 0 ? 5 : 1 + (uint32_t)((i * 7919) % NSYM);
        uint8_t side = i & 1 ? BUY : SELL;
        int64_t px = side == BUY ? 1000 - (int64_t)(i % 50) : 1001 + (int64_t)(i % 50);
        ts_command c = i % 13 == 0 ? stop(id, sym, 1 + (uint32_t)(i % 40), side, 1,
                                          side == BUY ? 5000 : 1)
                                   : limit(id, sym, 1 + (uint32_t)(i % 40), side, 1, px);
        if (i % 3 != 1) {
            c = day(c);
            n_day++;
        }
        CHECK(feed(g_e, c));
        id++;
        if (i % 5 == 0 && c.order_type == TS_ORD_LIMIT) /* moves it in its queue */
            CHECK(feed(g_e, replace(c.order_id, sym, c.account_id, px, 2)));
    }
    CHECK(ts_book_check(g_e, g_err, sizeof g_err) == 0);
    const uint64_t live = ts_engine_live_orders(g_e);
    RUN(control(TS_CTL_SESSION_CLOSE, 0));
    CHECK_EQ(NEV, n_day);
    CHECK_EQ(ts_engine_live_orders(g_e), live - n_day);
    for (uint64_t i = 0; i < NEV; i++) {
        CHECK(EV[i].kind == TS_EV_CANCELLED && EV[i].reason == TS_CXL_EXPIRED);
        if (i == 0) continue;
        CHECK(EV[i - 1].symbol_id <= EV[i].symbol_id);
        if (EV[i - 1].symbol_id == EV[i].symbol_id) CHECK(EV[i - 1].order_id < EV[i].order_id);
    }
    CHECK(g_e->scratch_cap <= 4096); /* the big book's sort buffer was given back */
    RUN(control(TS_CTL_SESSION_CLOSE, 5));
    CHECK_EQ(NEV, 0);
}

/* ---- growth, snapshot, image ---- */

/* Thousands of accounts arrive in the middle of a stream (the table starts with 64
 * slots); each account's mass cancel then takes exactly its own orders. */
static void test_account_table_grows_mid_stream(void) {
    const uint32_t syms[] = {1, 2, 3};
    g_e = engine_with(syms, 3);
    const uint32_t first_cap = g_e->acct_mask + 1;
    enum { ACCTS = 5000, PER = 3 };
    uint64_t id = 1;
    for (uint32_t k = 0; k < PER; k++)
        for (uint32_t a = 1; a <= ACCTS; a++) {
            uint8_t side = a & 1 ? BUY : SELL;
            int64_t px = side == BUY ? 1000 - (int64_t)(a % 9) : 1001 + (int64_t)(a % 9);
            ts_command c = limit(id++, 1 + k, a * 7919u, side, 1, px); /* spread account ids */
            if (a % 512 == 0) RUN(c);
            else CHECK(feed(g_e, c));
        }
    CHECK(g_e->acct_mask + 1 > first_cap);
    CHECK_EQ(g_e->n_accts, ACCTS);
    CHECK(ts_book_check(g_e, g_err, sizeof g_err) == 0);
    for (uint32_t a = ACCTS; a >= 1; a -= 7) {
        uint64_t v = ts_book_mass_cancel_visits(g_e);
        CHECK(feed(g_e, mass_cancel(a * 7919u, 0)));
        CHECK(NEV == PER && cancels_ascending(TS_CXL_MASS_CANCEL));
        CHECK_EQ(ts_book_mass_cancel_visits(g_e) - v, PER);
        if (a < 8) break;
    }
    CHECK(ts_book_check(g_e, g_err, sizeof g_err) == 0);
}

/* A restored engine has the same account lists: the checker passes, the snapshot bytes
 * are the same, and every kind of mass cancel gives the same output on both. */
static void test_snapshot_round_trip_rebuilds_the_lists(void) {
    const uint32_t syms[] = {1, 2, 3};
    g_e = engine_with(syms, 3);
    build_interleaved(g_e, 3000, 200);
    uint64_t n;
    uint8_t *snap = snapshot_of(g_e, &n);
    int status = 1;
    g_e2 = ts_engine_restore(snap, n, &status);
    free(snap);
    CHECK_EQ(status, TS_ENG_OK);
    CHECK(ts_book_check(g_e2, g_err, sizeof g_err) == 0);
    CHECK_EQ(g_e2->n_accts, 200);
    CHECK(same_snapshot(g_e, g_e2));
    const ts_command tail[] = {mass_cancel(17, 0), mass_cancel(18, 2), mass_cancel(0, 3),
                               limit(5000, 1, 999, BUY, 1, 900), mass_cancel(999, 1),
                               mass_cancel(0, 0)};
    for (size_t i = 0; i < sizeof tail / sizeof tail[0]; i++) {
        CHECK(run_on(g_e, tail[i]));
        uint64_t n1 = NEV;
        ts_event *ev1 = malloc(n1 * sizeof *ev1 + 1);
        memcpy(ev1, EV, n1 * sizeof *ev1);
        int ok = run_on(g_e2, tail[i]) && NEV == n1 && memcmp(ev1, EV, n1 * sizeof *ev1) == 0;
        free(ev1);
        CHECK(ok);
        CHECK(i == sizeof tail / sizeof tail[0] - 1 || NEV > 0);
    }
    CHECK_EQ(ts_engine_live_orders(g_e2), 0);
    CHECK(same_snapshot(g_e, g_e2));
}

/* The recovery image: symbols in id order, each one's orders in arrival (seq) order,
 * whatever their places in the queues; every field as the engine holds it. */
static void test_order_image_in_arrival_order(void) {
    const uint32_t syms[] = {3, 1, 2};
    g_e = engine_with(syms, 3);
    build_interleaved(g_e, 600, 5);
    const uint64_t n = ts_order_image_count(g_e);
    CHECK_EQ(n, ts_engine_live_orders(g_e));
    ts_live_order *img = calloc(n + 1, sizeof *img);
    CHECK_EQ(ts_order_image(g_e, img, n - 1), 0);
    uint64_t k = ts_order_image(g_e, img, n);
    int ok = k == n;
    for (uint64_t i = 0; ok && i < n; i++) {
        const ts_live_order *r = &img[i];
        if (i > 0)
            ok = img[i - 1].symbol_id < r->symbol_id ||
                 (img[i - 1].symbol_id == r->symbol_id && img[i - 1].order_id < r->order_id);
        uint64_t i3 = r->order_id;
        uint8_t side = (i3 / 7) % 2 ? BUY : SELL;
        int replaced = i3 % 4 == 1 && i3 % 11;
        ok = ok && r->symbol_id == 1 + i3 % 3 && r->account_id == 1 + (i3 / 3) % 5 &&
             r->side == side && r->leaves_qty == (replaced ? 3 : 2) &&
             r->quantity == r->leaves_qty && zero_pad(r);
    }
    free(img);
    CHECK(ok);
}

/* ---- out of memory ---- */

/* The table is full to its limit: a new order must grow it first; with no memory the
 * command is not processed and nothing changed; with memory it goes through. */
static void test_account_growth_out_of_memory(void) {
    const uint32_t syms[] = {1};
    g_e = engine_with(syms, 1);
    uint64_t id = 1;
    for (; g_e->n_accts < g_e->acct_limit; id++)
        RUN(limit(id, 1, 100 + g_e->n_accts, BUY, 1, 900 - (int64_t)id));
    const uint32_t cap = g_e->acct_mask + 1;
    uint64_t n;
    uint8_t *before = snapshot_of(g_e, &n);
    ts_command c = limit(id, 1, 1, SELL, 1, 1000);
    ts_engine_clear_output(g_e);
    g_fail_allocs = 1;
    uint64_t done = ts_engine_process(g_e, &c, 1);
    g_fail_allocs = 0;
    CHECK_EQ(done, 0);
    NEV = ts_engine_events(g_e, &EV);
    CHECK_EQ(NEV, 0);
    CHECK_EQ(g_e->acct_mask + 1, cap);
    CHECK(ts_book_check(g_e, g_err, sizeof g_err) == 0);
    uint8_t *after = snapshot_of(g_e, &n);
    int same = memcmp(before, after, n) == 0;
    free(before);
    free(after);
    CHECK(same);
    RUN(c);
    CHECK_EQ(EV[0].kind, TS_EV_ACCEPTED);
    CHECK_EQ(g_e->acct_mask + 1, 2 * cap);
    RUN(mass_cancel(0, 0));
    CHECK(NEV == id && cancels_ascending(TS_CXL_MASS_CANCEL));
}

/* A mass cancel of one symbol and a session close must reserve their sort buffer before
 * cancelling anything. */
static void test_sort_buffer_out_of_memory(void) {
    const uint32_t syms[] = {1, 2};
    g_e = engine_with(syms, 2);
    /* 3000 DAY orders a book: a sort buffer that big is given back after each command */
    for (uint64_t i = 1; i <= 6000; i++)
        CHECK(feed(g_e, day(limit(i, 1 + (uint32_t)(i % 2), 1 + (uint32_t)(i % 9),
                                  i & 2 ? BUY : SELL, 1, i & 2 ? 900 : 1100))));
    /* symbol 1 by mass cancel, then symbol 2 (all that is left) by session close */
    const ts_command cmds[] = {mass_cancel(0, 1), control(TS_CTL_SESSION_CLOSE, 0)};
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
        const uint64_t live = ts_engine_live_orders(g_e);
        CHECK(g_e->scratch_cap < 2 * 3000);
        ts_engine_clear_output(g_e);
        ts_command c = cmds[k];
        g_fail_allocs = 1;
        uint64_t done = ts_engine_process(g_e, &c, 1);
        g_fail_allocs = 0;
        CHECK_EQ(done, 0);
        CHECK_EQ(ts_engine_events(g_e, &EV), 0);
        CHECK_EQ(ts_engine_live_orders(g_e), live);
        CHECK(ts_book_check(g_e, g_err, sizeof g_err) == 0);
        RUN(c);
        CHECK(NEV > 0 && cancels_ascending(k ? TS_CXL_EXPIRED : TS_CXL_MASS_CANCEL));
    }
    CHECK_EQ(ts_engine_live_orders(g_e), 0);
}

/* ---- runner ---- */

struct test {
    const char *name;
    void (*fn)(void);
};

#define T(fn) {#fn, fn}
static const struct test TESTS[] = {
    T(test_mass_cancel_costs_the_accounts_own_orders),
    T(test_mass_cancels_in_ascending_seq),
    T(test_global_mass_cancel_merges_many_accounts),
    T(test_session_close_of_many_symbols),
    T(test_account_table_grows_mid_stream),
    T(test_snapshot_round_trip_rebuilds_the_lists),
    T(test_order_image_in_arrival_order),
    T(test_account_growth_out_of_memory),
    T(test_sort_buffer_out_of_memory),
};

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    for (size_t t = 0; t < sizeof TESTS / sizeof TESTS[0]; t++) {
        int filters = 0, hit = 0;
        for (int i = 1; i < argc; i++) {
            if (strncmp(argv[i], "--", 2) == 0) continue; /* shared TEST_ARGS */
            filters++;
            hit |= strstr(TESTS[t].name, argv[i]) != NULL;
        }
        if (filters && !hit) continue;
        g_test_failed = 0;
        NEV = 0;
        TESTS[t].fn();
        ts_engine_free(g_e);
        ts_engine_free(g_e2);
        g_e = g_e2 = NULL;
        if (g_test_failed) failed++;
        else passed++;
        printf("%s %s\n", g_test_failed ? "FAIL" : "ok  ", TESTS[t].name);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
