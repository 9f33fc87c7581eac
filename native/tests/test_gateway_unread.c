/*
 * test_gateway_unread.c — events a session's client never read are not lost when the
 * session ends (ts_gateway_remove_session, gw_hold_unread): they become the account's
 * held events ahead of everything routed after the detach, through the held-events log,
 * within the account's cap; and the log's rewrite batch holds up to a crash at any of
 * its stores. Run under ASan/UBSan by `make test-asan`.
 */
#define _GNU_SOURCE
#include "../gateway.h"
#include "check.h"
#include "gateway_rig.h"

#include <stdio.h>
#include <string.h>

typedef struct client {
    int64_t id;
    ts_ring *in, *out;
} client;

static client open_client(rig *r, uint32_t account, uint64_t capacity) {
    client c = {0, rig_ring(r, capacity), rig_ring(r, capacity)};
    c.id = ts_gateway_add_session(r->gw, account, c.in, c.out, -1, -1);
    return c;
}

static void add_accounts(rig *r, int32_t cancel_on_disconnect) {
    ts_risk_limits l;
    memset(&l, 0, sizeof l);
    l.cancel_on_disconnect = cancel_on_disconnect;
    ts_gateway_set_account(r->gw, 1, &l);
    ts_gateway_set_account(r->gw, 2, &l);
}

/* One resting order of `account`'s session, as its shard received it. */
static ts_command place(rig *r, client *c, uint64_t client_id, int64_t qty) {
    ts_command n = rig_new(client_id, 1, TS_SIDE_SELL, 1000, qty);
    ts_ring_push(c->in, &n, 1);
    ts_gateway_poll(r->gw, 0);
    ts_command got = {0};
    if (ts_ring_pop(r->cmd[0], &got, 1) != 1) abort();
    return got;
}

/* Polls until the gateway has taken the n events just pushed to shard 0's ring (into the
 * sessions' rings and stages, or held); those a stage keeps stay in the shard's ring
 * until they are pushed (gw_release_routed), so its fill does not say. */
static void route(rig *r, uint64_t n) {
    ts_gateway_stats st;
    ts_gateway_get_stats(r->gw, &st);
    const uint64_t want = st.events_in + n;
    for (int polls = 0; st.events_in < want; polls++) {
        if (polls == 1000) abort();
        ts_gateway_poll(r->gw, 0);
        ts_gateway_get_stats(r->gw, &st);
    }
}

/* The shard's events for order `c`: an ACCEPTED, then `fills` trades of 1 lot, routed by
 * polls (into the session's ring and stage, or held). */
static void shard_events(rig *r, const ts_command *c, int64_t *leaves, uint64_t fills,
                         int accept) {
    ts_event batch[64];
    uint64_t k = 0;
    if (accept) batch[k++] = rig_event(r, TS_EV_ACCEPTED, c, 0, *leaves, 0);
    while (fills || k) {
        while (fills && k < 64) {
            *leaves -= 1;
            batch[k++] = rig_event(r, TS_EV_TRADE, c, 1, *leaves, TS_EVF_MAKER);
            fills--;
        }
        if (ts_ring_push(r->evt[0], batch, k) != k) abort();
        route(r, k);
        k = 0;
    }
}

/* Events 1..n by exec id, exactly once each, in order, all of client order `client_id`,
 * with leaves counting down from `qty` past the ACCEPTED (exec id 1). */
static int stream_is(const ts_event *ev, uint64_t n, uint64_t first_exec, uint64_t client_id,
                     int64_t qty) {
    for (uint64_t i = 0; i < n; i++) {
        if (ev[i].exec_id != first_exec + i || ev[i].order_id != client_id) return 0;
        if (ev[i].leaves_qty != qty - (int64_t)(first_exec + i - 1)) return 0;
        if (ev[i].kind != (first_exec + i == 1 ? TS_EV_ACCEPTED : TS_EV_TRADE)) return 0;
    }
    return 1;
}

/* A client read the ACCEPTED and 2 fills, then vanished with 14 in its ring (of 16) and
 * 4 more in the pump's stage for it; 5 more fills come after the detach. The account's
 * next session gets the 18 unread, then the 5, each once, in order. */
static void test_unread_then_later(void) {
    rig r;
    rig_init(&r, 1, 64, 256, 1024);
    add_accounts(&r, 0);
    client a = open_client(&r, 1, 16);
    ts_command o = place(&r, &a, 11, 1000);
    int64_t leaves = 1000;
    shard_events(&r, &o, &leaves, 19, 1); /* exec 1..20 */
    ts_event ev[64];
    CHECK_EQ(ts_ring_pop(a.out, ev, 3), 3);
    CHECK(stream_is(ev, 3, 1, 11, 1000));
    CHECK_EQ(ts_ring_readable(a.out), 13); /* the ring took 16, the stage keeps 4 */
    CHECK_EQ(ts_gateway_remove_session(r.gw, a.id), TS_GW_OK);
    shard_events(&r, &o, &leaves, 5, 0); /* exec 21..25: routed after the detach */
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.events_unread_held, 17);
    CHECK_EQ(st.events_unread_dropped, 0);
    CHECK_EQ(st.events_held, 17 + 5);
    client b = open_client(&r, 1, 64);
    ts_gateway_poll(r.gw, 0);
    CHECK_EQ(ts_ring_pop(b.out, ev, 64), 22);
    CHECK(stream_is(ev, 22, 4, 11, 1000));
    /* and the order is the new session's: its next event comes straight */
    shard_events(&r, &o, &leaves, 1, 0);
    CHECK_EQ(ts_ring_pop(b.out, ev, 64), 1);
    CHECK(stream_is(ev, 1, 26, 11, 1000));
    rig_free(&r);
}

/* With cancel_on_disconnect, the unread events are still the client's (fills it never
 * saw), and so is what the order does after the detach: a fill that races the cancel the
 * gateway sends, and the CANCELLED, are held for the account's next session after them. */
static void test_unread_with_cancel_on_disconnect(void) {
    rig r;
    rig_init(&r, 1, 64, 256, 1024);
    add_accounts(&r, 1);
    client a = open_client(&r, 1, 64);
    ts_command o = place(&r, &a, 7, 100);
    int64_t leaves = 100;
    shard_events(&r, &o, &leaves, 3, 1);
    CHECK_EQ(ts_gateway_remove_session(r.gw, a.id), TS_GW_OK);
    ts_command cancel;
    ts_gateway_poll(r.gw, 0);
    CHECK_EQ(ts_ring_pop(r.cmd[0], &cancel, 1), 1);
    CHECK_EQ(cancel.kind, TS_CMD_CANCEL);
    shard_events(&r, &o, &leaves, 1, 0); /* exec 5: a fill that raced the cancel */
    ts_event cx = rig_event(&r, TS_EV_CANCELLED, &o, 0, 0, TS_EVF_DONE);
    ts_ring_push(r.evt[0], &cx, 1);
    ts_gateway_poll(r.gw, 0);
    client b = open_client(&r, 1, 64);
    ts_gateway_poll(r.gw, 0);
    ts_event ev[8];
    CHECK_EQ(ts_ring_pop(b.out, ev, 8), 6);
    CHECK(stream_is(ev, 5, 1, 7, 100));
    CHECK(ev[5].kind == TS_EV_CANCELLED && ev[5].order_id == 7 && ev[5].exec_id == 6);
    rig_free(&r);
}

/* The account's other live session takes the orders and the unread events, the unread
 * first; so does the session already taking the account's held events (one session gets
 * an order's events, held or not). The caller's `taken` events go ahead of the ring's. */
static void test_unread_to_other_session_and_taken_first(void) {
    rig r;
    rig_init(&r, 1, 64, 256, 1024);
    add_accounts(&r, 0);
    client a = open_client(&r, 1, 64), b = open_client(&r, 1, 64);
    ts_command o = place(&r, &a, 5, 100);
    int64_t leaves = 100;
    shard_events(&r, &o, &leaves, 5, 1); /* exec 1..6 in a's ring */
    /* a TCP edge took exec 1..2 out of the ring and could not write them */
    ts_event taken[2];
    CHECK_EQ(ts_ring_pop(a.out, taken, 2), 2);
    CHECK_EQ(ts_gateway_remove_session_unread(r.gw, a.id, NULL, 1), TS_GW_ERR_ARGUMENT);
    CHECK_EQ(ts_gateway_remove_session_unread(r.gw, a.id, taken, 2), TS_GW_OK);
    shard_events(&r, &o, &leaves, 2, 0); /* exec 7..8: held behind, then to b */
    ts_event ev[16];
    CHECK_EQ(ts_ring_pop(b.out, ev, 16), 8);
    CHECK(stream_is(ev, 8, 1, 5, 100));
    rig_free(&r);
}

/* The account's held events were being replayed to session a (its ring too small for
 * all): a ends with some of them read, some unread in its ring, some not yet pushed. The
 * next session gets the unread ones, then the rest, then later events. */
static void test_unread_during_replay(void) {
    rig r;
    rig_init(&r, 1, 64, 256, 1024);
    add_accounts(&r, 0);
    client a = open_client(&r, 1, 64);
    ts_command o = place(&r, &a, 9, 1000);
    int64_t leaves = 1000;
    CHECK_EQ(ts_gateway_remove_session(r.gw, a.id), TS_GW_OK);
    shard_events(&r, &o, &leaves, 39, 1); /* exec 1..40 held */
    client b = open_client(&r, 1, 16);
    ts_gateway_poll(r.gw, 0); /* 16 of the 40 into b's ring */
    ts_event ev[64];
    CHECK_EQ(ts_ring_pop(b.out, ev, 4), 4);
    CHECK(stream_is(ev, 4, 1, 9, 1000));
    ts_gateway_poll(r.gw, 0); /* 4 more */
    CHECK_EQ(ts_gateway_remove_session(r.gw, b.id), TS_GW_OK);
    shard_events(&r, &o, &leaves, 3, 0); /* exec 41..43 */
    client c = open_client(&r, 1, 64);
    ts_gateway_poll(r.gw, 0);
    CHECK_EQ(ts_ring_pop(c.out, ev, 64), 39);
    CHECK(stream_is(ev, 39, 5, 9, 1000));
    rig_free(&r);
}

/* Beyond TS_GW_HELD_EVENTS: the oldest are kept, the newest unread and what comes after
 * the detach are dropped and counted. A client that wrote garbage into its ring's index
 * gets nothing back (and nothing is read out of bounds). */
static void test_unread_cap_and_bad_index(void) {
    rig r;
    rig_init(&r, 1, 64, 256, 8192);
    add_accounts(&r, 0);
    client a = open_client(&r, 1, 8192);
    ts_command o = place(&r, &a, 3, 100000);
    int64_t leaves = 100000;
    shard_events(&r, &o, &leaves, TS_GW_HELD_EVENTS + 99, 1); /* 4196 unread */
    CHECK_EQ(ts_gateway_remove_session(r.gw, a.id), TS_GW_OK);
    shard_events(&r, &o, &leaves, 2, 0);
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.events_unread_held, TS_GW_HELD_EVENTS);
    CHECK_EQ(st.events_unread_dropped, 100);
    CHECK_EQ(st.events_orphaned, 100 + 2);
    client b = open_client(&r, 1, 8192);
    ts_gateway_poll(r.gw, 0);
    static ts_event ev[8192];
    CHECK_EQ(ts_ring_pop(b.out, ev, 8192), TS_GW_HELD_EVENTS);
    CHECK(stream_is(ev, TS_GW_HELD_EVENTS, 1, 3, 100000));
    /* b's client corrupts its consumer index: tail beyond head */
    shard_events(&r, &o, &leaves, 3, 0);
    ts_ring_info info;
    ts_ring_read_info(b.out, &info);
    CHECK_EQ(info.head - info.tail, 3);
    uint64_t *tail = (uint64_t *)((char *)b.out + 256); /* ring.c: the consumer's line */
    CHECK_EQ(*tail, info.tail);
    *tail = info.head + 5;
    CHECK_EQ(ts_gateway_remove_session(r.gw, b.id), TS_GW_OK);
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.events_unread_held, TS_GW_HELD_EVENTS);
    rig_free(&r);
}

/* The account's held events already fill its cap when a session ends with 16 unread
 * answers in its ring: they are dropped and counted, the held ones stay as they were. */
static void test_unread_when_the_cap_is_full(void) {
    rig r;
    rig_init(&r, 1, 64, 256, 8192);
    add_accounts(&r, 0);
    client a = open_client(&r, 1, 64);
    ts_command o = place(&r, &a, 6, 100000);
    int64_t leaves = 100000;
    CHECK_EQ(ts_gateway_remove_session(r.gw, a.id), TS_GW_OK);
    shard_events(&r, &o, &leaves, TS_GW_HELD_EVENTS - 1, 1); /* the cap, all held */
    client b = open_client(&r, 1, 16);
    ts_command bad[16];
    for (int i = 0; i < 16; i++) bad[i] = rig_new(100 + (uint64_t)i, 9, TS_SIDE_BUY, 1000, 1);
    ts_ring_push(b.in, bad, 16);
    ts_gateway_poll(r.gw, 0); /* its 16 rejects fill its ring: no held event fits */
    CHECK_EQ(ts_ring_readable(b.out), 16);
    CHECK_EQ(ts_gateway_remove_session(r.gw, b.id), TS_GW_OK);
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.events_unread_held, 0);
    CHECK_EQ(st.events_unread_dropped, 16);
    client c = open_client(&r, 1, 8192);
    ts_gateway_poll(r.gw, 0);
    static ts_event ev[8192];
    CHECK_EQ(ts_ring_pop(c.out, ev, 8192), TS_GW_HELD_EVENTS);
    CHECK(stream_is(ev, TS_GW_HELD_EVENTS, 1, 6, 100000));
    rig_free(&r);
}

/* The gateway's own answers (REJECTED, exec_id 0) unread at the end are held too, in
 * their place among the engine's events: a client learns the fate of a command its
 * previous session sent. */
static void test_unread_gateway_rejects_are_held(void) {
    rig r;
    rig_init(&r, 1, 64, 256, 1024);
    add_accounts(&r, 0);
    client a = open_client(&r, 1, 64);
    ts_command o = place(&r, &a, 4, 100);
    int64_t leaves = 100;
    shard_events(&r, &o, &leaves, 1, 1); /* exec 1..2 */
    ts_command bad = rig_new(5, 9, TS_SIDE_BUY, 1000, 1); /* no symbol 9 */
    ts_ring_push(a.in, &bad, 1);
    ts_gateway_poll(r.gw, 0);
    shard_events(&r, &o, &leaves, 1, 0); /* exec 3 */
    CHECK_EQ(ts_gateway_remove_session(r.gw, a.id), TS_GW_OK);
    client b = open_client(&r, 1, 64);
    ts_gateway_poll(r.gw, 0);
    ts_event ev[8];
    CHECK_EQ(ts_ring_pop(b.out, ev, 8), 4);
    CHECK(stream_is(ev, 2, 1, 4, 100));
    CHECK_EQ(ev[2].kind, TS_EV_REJECTED);
    CHECK_EQ(ev[2].reason, TS_REJ_UNKNOWN_SYMBOL);
    CHECK_EQ(ev[2].order_id, 5);
    CHECK_EQ(ev[2].exec_id, 0);
    CHECK(stream_is(ev + 3, 1, 3, 4, 100));
    rig_free(&r);
}

/* ---- the held-events log ------------------------------------------------------------- */

/* gateway_held.c's layout, as a crash would leave it: the marks after the 64-byte header,
 * then half 0 of 96-byte records whose flags sit at byte 24. */
#define LOG_MARKS 64
#define LOG_RECORDS(max_accounts) ((LOG_MARKS + (max_accounts) * 16 + 63) & ~63)
#define REC_SIZE 96

/* The first gateway dies (nothing removed, nothing held) and a new one takes over the
 * same rings, with no accounts yet. */
static void reborn(rig *r) {
    ts_gateway_free(r->gw);
    ts_gateway_config cfg = {.max_sessions = 8, .max_accounts = 8, .max_instruments = 8,
                             .max_batch = 256, .max_orders = 64, .epoch = 4, .wait = rig_wait};
    r->gw = ts_gateway_new(&cfg);
    if (!r->gw) abort();
    ts_gateway_add_shard(r->gw, 0, r->cmd[0], r->evt[0]);
    for (uint32_t sym = 1; sym <= 4; sym++) ts_gateway_add_instrument(r->gw, sym, 0, 1000);
}

/* A gateway over the same rings and log, as after a crash of the first: returns what
 * attach found. */
static int64_t successor(rig *r, void *log, uint64_t size) {
    reborn(r);
    add_accounts(r, 0);
    int64_t found = ts_gateway_attach_held(r->gw, log, size);
    ts_gateway_hold_drained(r->gw);
    return found;
}

/* Order 1 of account 1 has exec 1..4 held (no session); session b takes 2 of them into
 * its ring of 2 (delivered, marked in the log) and ends with them unread and 2 not yet
 * pushed: the log gets all 4 again as one batch, then exec 5..6 come after the detach.
 * `crash` picks what a successor finds: 0 everything, 1 the gateway died right after the
 * batch (its mark store not done), 2 it died writing the batch's commit record. */
static void unread_through_log(int crash) {
    rig r;
    rig_init(&r, 1, 64, 256, 1024);
    add_accounts(&r, 0);
    uint64_t size = ts_gateway_held_size(r.gw);
    unsigned char *log = aligned_alloc(64, (size + 63) & ~(uint64_t)63);
    unsigned char *before = malloc(size);
    CHECK(log != NULL && before != NULL);
    memset(log, 0, size);
    CHECK_EQ(ts_gateway_attach_held(r.gw, log, size), 0);
    ts_gateway_hold_drained(r.gw);
    client a = open_client(&r, 1, 64);
    ts_command o = place(&r, &a, 1, 100);
    int64_t leaves = 100;
    CHECK_EQ(ts_gateway_remove_session(r.gw, a.id), TS_GW_OK);
    shard_events(&r, &o, &leaves, 3, 1); /* exec 1..4 held */
    client b = open_client(&r, 1, 2);
    ts_gateway_poll(r.gw, 0);
    CHECK_EQ(ts_ring_readable(b.out), 2);
    memcpy(before, log, size);
    CHECK_EQ(ts_gateway_remove_session(r.gw, b.id), TS_GW_OK);
    int64_t want_first = 1, want_n = 6;
    if (crash) {
        memcpy(log + LOG_MARKS, before + LOG_MARKS, 8 * 16); /* the mark store undone */
        want_n = 4;
    } else {
        shard_events(&r, &o, &leaves, 2, 0); /* exec 5..6 */
    }
    if (crash == 2) {
        unsigned char *rec = log + LOG_RECORDS(8);
        while (!(rec[24] & 4)) rec += REC_SIZE; /* REC_COMMIT */
        rec[40] ^= 1; /* torn: its crc no longer matches */
        want_first = 3; /* the batch does not count: the old records stand */
        want_n = 2;
    }
    CHECK_EQ(successor(&r, log, size), want_n);
    client c = open_client(&r, 1, 64);
    ts_gateway_poll(r.gw, 0);
    ts_event ev[16];
    CHECK_EQ(ts_ring_pop(c.out, ev, 16), want_n);
    CHECK(stream_is(ev, (uint64_t)want_n, (uint64_t)want_first, 1, 100));
    free(before);
    rig_free(&r);
    free(log);
}

static void test_unread_through_log(void) {
    for (int crash = 0; crash < 3; crash++) unread_through_log(crash);
}

/* The gateway dies (no remove_session) with exec 1..4 of order 1 in session a's ring, of
 * which the client had read `read`; a successor over the same log finds the ring (it
 * outlives the dead gateway in shared memory) and holds the unread ones for account 1:
 * its next session gets exactly those, in order. A ring of an account the successor does
 * not know gives nothing and is counted. */
static void stale_ring_after_a_crash(uint64_t read) {
    rig r;
    rig_init(&r, 1, 64, 256, 1024);
    add_accounts(&r, 0);
    uint64_t size = ts_gateway_held_size(r.gw);
    unsigned char *log = aligned_alloc(64, (size + 63) & ~(uint64_t)63);
    CHECK(log != NULL);
    memset(log, 0, size);
    CHECK_EQ(ts_gateway_attach_held(r.gw, log, size), 0);
    ts_gateway_hold_drained(r.gw);
    client a = open_client(&r, 1, 64);
    ts_command o = place(&r, &a, 1, 100);
    int64_t leaves = 100;
    shard_events(&r, &o, &leaves, 3, 1); /* exec 1..4 into a's ring */
    ts_event ev[16];
    CHECK_EQ(ts_ring_pop(a.out, ev, read), read);
    reborn(&r); /* the crash */
    ts_risk_limits l;
    memset(&l, 0, sizeof l);
    ts_gateway_set_account(r.gw, 1, &l); /* account 2 is no longer configured */
    CHECK_EQ(ts_gateway_attach_held(r.gw, log, size), 0);
    CHECK_EQ(ts_gateway_hold_stale_ring(r.gw, a.out), (int64_t)(4 - read));
    CHECK_EQ(ts_ring_readable(a.out), 4 - read); /* only read: the ring is as it was */
    /* account 2's session ring of the dead gateway: its events have nowhere to go */
    ts_ring *other = rig_ring(&r, 64);
    ts_event stray = rig_event(&r, TS_EV_ACCEPTED, &o, 0, 100, 0);
    stray.account_id = 2;
    CHECK_EQ(ts_ring_push(other, &stray, 1), 1);
    CHECK_EQ(ts_gateway_hold_stale_ring(r.gw, other), 0);
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.events_unread_held, 4 - read);
    CHECK_EQ(st.events_unread_dropped, 1);
    ts_gateway_hold_drained(r.gw);
    client c = open_client(&r, 1, 64);
    ts_gateway_poll(r.gw, 0);
    CHECK_EQ(ts_ring_pop(c.out, ev, 16), 4 - read);
    CHECK(stream_is(ev, 4 - read, 1 + read, 1, 100));
    rig_free(&r);
    free(log);
}

static void test_stale_ring_after_a_crash(void) {
    for (uint64_t read = 0; read <= 4; read += 2) stale_ring_after_a_crash(read);
}

/* A gateway holds the events it staged for a session whose ring was full only in its
 * memory, so it leaves them in the shard's event ring until it has pushed them
 * (gw_release_routed); what it took after them, for another session, stays there too.
 * Session a (account 1, ring of 4) has exec 1..6 of its order of 5 lots, the last fill
 * finishing it: 4 in its ring, 2 staged; then b places an order (the pool slot of a's
 * order, which a successor names the staged fills by, must not be reused yet) and exec
 * 7, its ACCEPTED, goes into b's ring. `crash`: 0, a reads its ring and a pass pushes
 * the stage, which frees the shard's ring; 1, the gateway dies instead, and a successor
 * over the same rings, ledger and log holds a's unread ring, b's unread ring, then the
 * drained shard ring: account 1 gets exec 1..6 and account 2 exec 7, each once (the
 * drained copy of exec 7 is known from b's ring and dropped). */
static void staged_events_after_a_crash(int crash) {
    rig r;
    rig_init(&r, 1, 64, 256, 1024);
    add_accounts(&r, 0);
    uint64_t lsize = ts_gateway_ledger_size(r.gw), size = ts_gateway_held_size(r.gw);
    void *ledger = aligned_alloc(64, (lsize + 63) & ~(uint64_t)63);
    unsigned char *log = aligned_alloc(64, (size + 63) & ~(uint64_t)63);
    CHECK(ledger != NULL && log != NULL);
    /* zeroed: heap memory may still hold an earlier test's ledger of the same run id,
     * which attach would take as this run's own (it returns 1, carried) */
    memset(ledger, 0, lsize);
    memset(log, 0, size);
    CHECK_EQ(ts_gateway_attach_ledger(r.gw, ledger, lsize, 9), 0);
    CHECK_EQ(ts_gateway_attach_held(r.gw, log, size), 0);
    ts_gateway_hold_drained(r.gw);
    client a = open_client(&r, 1, 4), b = open_client(&r, 2, 64);
    ts_command oa = place(&r, &a, 1, 5);
    int64_t leaves_a = 5, leaves_b = 100;
    shard_events(&r, &oa, &leaves_a, 5, 1); /* exec 1..6: 4 in a's ring, 2 staged */
    ts_command ob = place(&r, &b, 2, 100);
    shard_events(&r, &ob, &leaves_b, 0, 1); /* exec 7 into b's ring */
    CHECK_EQ(ts_ring_readable(a.out), 4);
    CHECK_EQ(ts_ring_readable(b.out), 1);
    CHECK_EQ(ts_ring_readable(r.evt[0]), 3); /* exec 5..7: not released */
    ts_event ev[16];
    if (!crash) {
        CHECK_EQ(ts_ring_pop(a.out, ev, 16), 4);
        ts_gateway_poll(r.gw, 0);
        CHECK_EQ(ts_ring_pop(a.out, ev, 16), 2);
        CHECK(stream_is(ev, 2, 5, 1, 5));
        CHECK_EQ(ts_ring_readable(r.evt[0]), 0);
    } else {
        reborn(&r);
        add_accounts(&r, 0);
        CHECK_EQ(ts_gateway_attach_ledger(r.gw, ledger, lsize, 9), 1);
        CHECK_EQ(ts_gateway_attach_held(r.gw, log, size), 0);
        CHECK_EQ(ts_gateway_hold_stale_ring(r.gw, a.out), 4);
        CHECK_EQ(ts_gateway_hold_stale_ring(r.gw, b.out), 1);
        CHECK_EQ(ts_gateway_drain(r.gw, 64), 3);
        ts_gateway_stats st;
        ts_gateway_get_stats(r.gw, &st);
        CHECK_EQ(st.recovery_duplicates, 1);
        ts_gateway_hold_drained(r.gw);
        client c = open_client(&r, 1, 64), d = open_client(&r, 2, 64);
        ts_gateway_poll(r.gw, 0);
        CHECK_EQ(ts_ring_pop(c.out, ev, 16), 6);
        CHECK(stream_is(ev, 6, 1, 1, 5));
        CHECK_EQ(ts_ring_pop(d.out, ev, 16), 1);
        CHECK_EQ(ev[0].exec_id, 7);
        CHECK_EQ(ev[0].order_id, 2);
    }
    rig_free(&r);
    free(ledger);
    free(log);
}

static void test_staged_events_after_a_crash(void) {
    for (int crash = 0; crash < 2; crash++) staged_events_after_a_crash(crash);
}

/* A client that stops reading holds back at most a quarter of the shard's event ring
 * (pin_max, 16 of 64 here): session a's ring of 2 is full and one event waits in its
 * stage; 40 events of b's order follow, which b reads as they come. The shard's ring
 * never holds more than 16 of them, the rest are released (counted unpinned), and a
 * still gets its staged event, once, when it reads. */
static void test_a_stuck_session_pins_a_quarter_of_the_ring(void) {
    rig r;
    rig_init(&r, 1, 64, 256, 64);
    add_accounts(&r, 0);
    client a = open_client(&r, 1, 2), b = open_client(&r, 2, 64);
    ts_command oa = place(&r, &a, 1, 100), ob = place(&r, &b, 2, 100);
    int64_t leaves_a = 100, leaves_b = 100;
    shard_events(&r, &oa, &leaves_a, 2, 1); /* exec 1..3: 2 in a's ring, 1 staged */
    ts_event ev[64];
    uint64_t most = 0, got = 0;
    for (int k = 0; k < 40; k++) {
        shard_events(&r, &ob, &leaves_b, 1, k == 0);
        uint64_t held = ts_ring_readable(r.evt[0]);
        if (held > most) most = held;
        got += ts_ring_pop(b.out, ev, 64);
    }
    CHECK_EQ(got, 41);
    CHECK(most <= 16);
    CHECK_EQ(most, 16);
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.events_unpinned, 1 + 41 - 16);
    CHECK_EQ(ts_ring_pop(a.out, ev, 64), 2);
    ts_gateway_poll(r.gw, 0);
    CHECK_EQ(ts_ring_pop(a.out, ev, 64), 1);
    CHECK(stream_is(ev, 1, 3, 1, 100));
    CHECK_EQ(ts_ring_readable(r.evt[0]), 0);
    rig_free(&r);
}

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

int main(void) {
    const test_case tests[] = {
        {"unread_then_later", test_unread_then_later},
        {"unread_with_cancel_on_disconnect", test_unread_with_cancel_on_disconnect},
        {"unread_to_other_session_and_taken_first", test_unread_to_other_session_and_taken_first},
        {"unread_during_replay", test_unread_during_replay},
        {"unread_cap_and_bad_index", test_unread_cap_and_bad_index},
        {"unread_gateway_rejects_are_held", test_unread_gateway_rejects_are_held},
        {"unread_when_the_cap_is_full", test_unread_when_the_cap_is_full},
        {"unread_through_log", test_unread_through_log},
        {"stale_ring_after_a_crash", test_stale_ring_after_a_crash},
        {"staged_events_after_a_crash", test_staged_events_after_a_crash},
        {"a_stuck_session_pins_a_quarter_of_the_ring", test_a_stuck_session_pins_a_quarter_of_the_ring},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
        g_test_failed = 0;
        tests[i].fn();
        printf("%s %s\n", g_test_failed ? "FAIL" : "ok  ", tests[i].name);
        failed += g_test_failed;
    }
    printf("test_gateway_unread: %d failed\n", failed);
    return failed != 0;
}
