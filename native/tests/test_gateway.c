/*
 * test_gateway.c — the gateway pump in C, without Python: routing and ids, rejects that
 * never reach a shard, hash-table churn in random completion order, kill switch and
 * disconnect cancels, backpressure on full rings, the pool's limit, and the run loop in
 * a thread (park and wake). Run under ASan/UBSan by `make test-asan`.
 */
#define _GNU_SOURCE
#include "../gateway.h"
#include "check.h"
#include "gateway_rig.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* The Makefile links this program with -Wl,--wrap for malloc, calloc and realloc, so
 * every allocation the gateway's code makes passes through here and is counted. */
static uint64_t g_allocs;
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n) {
    g_allocs++;
    return __real_malloc(n);
}
void *__wrap_calloc(size_t k, size_t n) {
    g_allocs++;
    return __real_calloc(k, n);
}
void *__wrap_realloc(void *p, size_t n) {
    g_allocs++;
    return __real_realloc(p, n);
}

/* ... and the risk checks: with g_rewrite set, the slot a check has just passed is
 * rewritten, as a colocated client writing its own ring slot while the pump reads it would;
 * what reaches the shard must be what the check saw. */
typedef struct gw_session gw_session;
int __real_gw_check_new(ts_gateway *gw, gw_session *s, const ts_command *c, uint32_t *instr,
                        int64_t *rest_price, int64_t *send_price);
int __real_gw_check_replace(ts_gateway *gw, gw_session *s, const ts_command *c, uint32_t *order);
static ts_ring *g_rewrite; /* the inbound ring whose oldest slot the "client" rewrites */
static void rewrite_checked(const ts_command *checked) {
    (void)checked; /* what the pump checked may be a copy: the client writes its ring */
    if (!g_rewrite) return;
    void *first;
    if (!ts_ring_peek(g_rewrite, &first)) return;
    ts_command *slot = first;
    slot->quantity = 1000000000;
    slot->price = 1;
    slot->account_id = 99;
}
int __wrap_gw_check_new(ts_gateway *gw, gw_session *s, const ts_command *c, uint32_t *instr,
                        int64_t *rest_price, int64_t *send_price) {
    int reason = __real_gw_check_new(gw, s, c, instr, rest_price, send_price);
    rewrite_checked(c);
    return reason;
}
int __wrap_gw_check_replace(ts_gateway *gw, gw_session *s, const ts_command *c, uint32_t *order) {
    int reason = __real_gw_check_replace(gw, s, c, order);
    rewrite_checked(c);
    return reason;
}

static ts_risk_limits no_limits(void) {
    ts_risk_limits l;
    memset(&l, 0, sizeof l);
    l.cancel_on_disconnect = 1;
    return l;
}

typedef struct client {
    int64_t id;
    ts_ring *in, *out;
} client;

static client rig_client(rig *r, uint32_t account, uint64_t capacity) {
    client c = {0, rig_ring(r, capacity), rig_ring(r, capacity)};
    c.id = ts_gateway_add_session(r->gw, account, c.in, c.out, -1, -1);
    return c;
}

static uint64_t pop_cmds(ts_ring *ring, ts_command *out, uint64_t max) {
    return ts_ring_pop(ring, out, max);
}

static void test_new_accept_cancel(void) {
    rig r;
    rig_init(&r, 2, 64, 32, 64);
    ts_risk_limits l = no_limits();
    CHECK_EQ(ts_gateway_set_account(r.gw, 5, &l), TS_GW_OK);
    client c = rig_client(&r, 5, 64);
    CHECK(c.id >= 0);
    ts_command n = rig_new(42, 2, TS_SIDE_SELL, 1000, 7);
    n.account_id = 999;
    CHECK_EQ(ts_ring_push(c.in, &n, 1), 1);
    CHECK_EQ(ts_gateway_poll_at(r.gw, 0, 1), 1);
    ts_command got[8];
    CHECK_EQ(pop_cmds(r.cmd[0], got, 8), 0);
    CHECK_EQ(pop_cmds(r.cmd[1], got, 8), 1);
    CHECK_EQ(got[0].account_id, 5);
    CHECK_EQ(got[0].order_id, (3ull << TS_GW_EPOCH_SHIFT) + 1);
    ts_event e = rig_event(&r, TS_EV_ACCEPTED, &got[0], 7, 7, 0);
    e.contra_order_id = 77;
    CHECK_EQ(ts_ring_push(r.evt[1], &e, 1), 1);
    ts_gateway_poll_at(r.gw, 0, 2);
    ts_event back;
    CHECK_EQ(ts_ring_pop(c.out, &back, 1), 1);
    CHECK_EQ(back.kind, TS_EV_ACCEPTED);
    CHECK_EQ(back.order_id, 42);
    CHECK_EQ(back.contra_order_id, 0);
    ts_command x = {.kind = TS_CMD_CANCEL, .order_id = 42};
    ts_ring_push(c.in, &x, 1);
    ts_gateway_poll_at(r.gw, 0, 3);
    CHECK_EQ(pop_cmds(r.cmd[1], got + 1, 8), 1);
    CHECK_EQ(got[1].kind, TS_CMD_CANCEL);
    CHECK_EQ(got[1].order_id, got[0].order_id);
    CHECK_EQ(got[1].symbol_id, 2);
    e = rig_event(&r, TS_EV_CANCELLED, &got[0], 7, 0, TS_EVF_DONE);
    e.reason = TS_CXL_USER;
    ts_ring_push(r.evt[1], &e, 1);
    ts_gateway_poll_at(r.gw, 0, 4);
    CHECK_EQ(ts_ring_pop(c.out, &back, 1), 1);
    CHECK_EQ(back.kind, TS_EV_CANCELLED);
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.live_orders, 0);
    CHECK_EQ(st.events_routed, 2);
    ts_account_state a;
    CHECK_EQ(ts_gateway_account_state(r.gw, 5, &a), TS_GW_OK);
    CHECK_EQ(a.open_orders, 0);
    CHECK_EQ(a.open_notional, 0);
    rig_free(&r);
}

static void test_rejects_never_reach_a_shard(void) {
    rig r;
    rig_init(&r, 1, 64, 32, 64);
    ts_risk_limits l = no_limits();
    l.max_order_qty = 10;
    l.price_collar_bps = 100;
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 64);
    ts_command cmds[4] = {rig_new(1, 1, TS_SIDE_BUY, 1000, 11), rig_new(2, 1, TS_SIDE_BUY, 1011, 1),
                          rig_new(3, 9, TS_SIDE_BUY, 1000, 1), rig_new(4, 1, TS_SIDE_BUY, 1010, 10)};
    ts_ring_push(c.in, cmds, 4);
    ts_gateway_poll_at(r.gw, 0, 1);
    ts_command got[8];
    CHECK_EQ(pop_cmds(r.cmd[0], got, 8), 1);
    CHECK_EQ(got[0].quantity, 10);
    ts_event ev[4];
    CHECK_EQ(ts_ring_pop(c.out, ev, 4), 3);
    CHECK_EQ(ev[0].reason, TS_REJ_MAX_ORDER_QTY);
    CHECK_EQ(ev[1].reason, TS_REJ_PRICE_COLLAR);
    CHECK_EQ(ev[2].reason, TS_REJ_UNKNOWN_SYMBOL);
    CHECK_EQ(ev[0].order_id, 1);
    rig_free(&r);
}

/* A colocated client shares its inbound ring with the pump: an order (and a replace)
 * rewritten in its slot after the risk check read it reaches the shard as checked, the
 * limit unbroken, never as rewritten. */
static void test_a_slot_rewritten_after_its_check_changes_nothing(void) {
    rig r;
    rig_init(&r, 1, 64, 32, 64);
    ts_risk_limits l = no_limits();
    l.max_order_qty = 10;
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 64);
    ts_command order = rig_new(1, 1, TS_SIDE_BUY, 1000, 5);
    g_rewrite = c.in;
    ts_ring_push(c.in, &order, 1);
    ts_gateway_poll_at(r.gw, 0, 1);
    ts_command got[4];
    CHECK_EQ(pop_cmds(r.cmd[0], got, 4), 1);
    CHECK_EQ(got[0].kind, TS_CMD_NEW_ORDER);
    CHECK_EQ(got[0].quantity, 5);
    CHECK_EQ(got[0].price, 1000);
    CHECK_EQ(got[0].account_id, 1);
    ts_command replace = order;
    replace.kind = TS_CMD_REPLACE;
    replace.quantity = 8;
    ts_ring_push(c.in, &replace, 1);
    ts_gateway_poll_at(r.gw, 0, 1);
    CHECK_EQ(pop_cmds(r.cmd[0], got, 4), 1);
    CHECK_EQ(got[0].kind, TS_CMD_REPLACE);
    CHECK_EQ(got[0].quantity, 8);
    CHECK_EQ(got[0].price, 1000);
    g_rewrite = NULL;
    rig_free(&r);
}

/* Many live orders finishing in a random order: every event reaches its client id, and
 * afterwards the tables are empty (the client ids can be used again). */
static void test_table_churn(void) {
    enum { N = 3000 };
    rig r;
    rig_init(&r, 1, 4096, 256, 4096);
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 4096);
    static ts_command sent[N];
    static ts_command in[N];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) in[i] = rig_new(1000 + i, 1, TS_SIDE_BUY, 1000, 1);
        uint64_t pushed = 0, got = 0;
        while (got < N) {
            pushed += ts_ring_push(c.in, in + pushed, N - pushed);
            ts_gateway_poll_at(r.gw, 0, 1);
            got += pop_cmds(r.cmd[0], sent + got, N - got);
        }
        uint64_t s = 12345 + round;
        for (int i = N - 1; i > 0; i--) { /* Fisher-Yates */
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            int j = (int)((s >> 33) % (uint64_t)(i + 1));
            ts_command t = sent[i];
            sent[i] = sent[j];
            sent[j] = t;
        }
        uint64_t done = 0, back = 0;
        while (back < N) {
            if (done < N) {
                ts_event e = rig_event(&r, TS_EV_CANCELLED, &sent[done], 1, 0, TS_EVF_DONE);
                if (ts_ring_push(r.evt[0], &e, 1)) done++;
            }
            ts_gateway_poll_at(r.gw, 0, 1);
            ts_event ev;
            while (ts_ring_pop(c.out, &ev, 1)) {
                CHECK_EQ(ev.order_id, 1000 + ((sent[back].order_id & 0xffffffffff) - 1) % N);
                back++;
            }
        }
        ts_gateway_stats st;
        ts_gateway_get_stats(r.gw, &st);
        CHECK_EQ(st.live_orders, 0);
    }
    rig_free(&r);
}

/* The operator's phase controls: a HALT for symbol 2 reaches its shard (1 of 2) after
 * the order already sent and before one still in its session's ring (as a kill switch's
 * MASS_CANCEL does); one for every symbol (0) reaches both shards; a symbol the
 * gateway does not route, and the pump's own CLOCK_TICK or an unknown code, are refused
 * and send nothing. */
static void test_market_control(void) {
    rig r;
    rig_init(&r, 2, 64, 32, 64);
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 64);
    ts_command n = rig_new(1, 2, TS_SIDE_BUY, 1000, 1);
    ts_ring_push(c.in, &n, 1);
    ts_gateway_poll_at(r.gw, 0, 1); /* the order is sent (staged, pushed) */
    n.order_id = 2;
    ts_ring_push(c.in, &n, 1); /* and one more waits in the session's ring */
    CHECK_EQ(ts_gateway_market_control(r.gw, 2, TS_CTL_HALT), TS_GW_OK);
    ts_gateway_poll_at(r.gw, 0, 1);
    ts_command got[4];
    CHECK_EQ(pop_cmds(r.cmd[1], got, 4), 3);
    CHECK_EQ(got[0].kind, TS_CMD_NEW_ORDER); /* sent before the control */
    CHECK_EQ(got[1].kind, TS_CMD_CONTROL);   /* then the control, ahead of the intake */
    CHECK_EQ(got[1].control, TS_CTL_HALT);
    CHECK_EQ(got[1].symbol_id, 2);
    CHECK_EQ(got[2].kind, TS_CMD_NEW_ORDER);
    CHECK_EQ(pop_cmds(r.cmd[0], got, 4), 0);
    CHECK_EQ(ts_gateway_market_control(r.gw, 0, TS_CTL_RESUME), TS_GW_OK);
    ts_gateway_poll_at(r.gw, 0, 2);
    for (int shard = 0; shard < 2; shard++) {
        CHECK_EQ(pop_cmds(r.cmd[shard], got, 4), 1);
        CHECK(got[0].kind == TS_CMD_CONTROL && got[0].control == TS_CTL_RESUME);
        CHECK_EQ(got[0].symbol_id, 0);
    }
    CHECK_EQ(ts_gateway_market_control(r.gw, 99, TS_CTL_HALT), TS_GW_ERR_UNKNOWN);
    CHECK_EQ(ts_gateway_market_control(r.gw, 1, TS_CTL_CLOCK_TICK), TS_GW_ERR_ARGUMENT);
    CHECK_EQ(ts_gateway_market_control(r.gw, 1, 8), TS_GW_ERR_ARGUMENT);
    ts_gateway_poll_at(r.gw, 0, 3);
    CHECK_EQ(pop_cmds(r.cmd[0], got, 4) + pop_cmds(r.cmd[1], got, 4), 0);
    rig_free(&r);
}

static void test_kill_and_disconnect(void) {
    rig r;
    rig_init(&r, 2, 64, 32, 64);
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 64);
    ts_command cmds[2] = {rig_new(1, 1, TS_SIDE_BUY, 1000, 1), rig_new(2, 2, TS_SIDE_BUY, 1000, 1)};
    ts_ring_push(c.in, cmds, 2);
    ts_gateway_poll_at(r.gw, 0, 1);
    CHECK_EQ(ts_gateway_kill(r.gw, 1, 1), TS_GW_OK);
    CHECK_EQ(ts_gateway_kill(r.gw, 9, 1), TS_GW_ERR_UNKNOWN);
    ts_ring_push(c.in, cmds, 1);
    ts_gateway_poll_at(r.gw, 0, 2);
    ts_command got[8];
    for (int s = 0; s < 2; s++) {
        CHECK_EQ(pop_cmds(r.cmd[s], got, 8), 2);
        CHECK_EQ(got[0].kind, TS_CMD_NEW_ORDER);
        CHECK_EQ(got[1].kind, TS_CMD_MASS_CANCEL);
        CHECK_EQ(got[1].account_id, 1);
    }
    ts_event ev[4];
    CHECK_EQ(ts_ring_pop(c.out, ev, 4), 1);
    CHECK_EQ(ev[0].reason, TS_REJ_KILL_SWITCH);
    /* disconnect: both orders are still live for the gateway, so both get a CANCEL */
    CHECK_EQ(ts_gateway_remove_session(r.gw, c.id), TS_GW_OK);
    CHECK_EQ(ts_gateway_remove_session(r.gw, c.id), TS_GW_ERR_UNKNOWN);
    ts_gateway_poll_at(r.gw, 0, 3);
    for (int s = 0; s < 2; s++) {
        CHECK_EQ(pop_cmds(r.cmd[s], got, 8), 1);
        CHECK_EQ(got[0].kind, TS_CMD_CANCEL);
    }
    rig_free(&r);
}

/* A shard ring of 16 and a client ring of 16: nothing is lost, order is kept. */
static void test_backpressure(void) {
    enum { N = 500 };
    rig r;
    rig_init(&r, 1, 1024, 64, 16);
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 16);
    uint64_t pushed = 0, got = 0, answered = 0, back = 0;
    ts_command sent[N];
    while (back < N) {
        if (pushed < N) {
            ts_command n = rig_new(pushed + 1, 1, TS_SIDE_BUY, 1000, 1);
            pushed += ts_ring_push(c.in, &n, 1);
        }
        ts_gateway_poll_at(r.gw, 0, 1);
        if (got < N) got += pop_cmds(r.cmd[0], sent + got, got % 3 ? 1 : 5);
        while (answered < got) {
            ts_event e = rig_event(&r, TS_EV_CANCELLED, &sent[answered], 1, 0, TS_EVF_DONE);
            if (!ts_ring_push(r.evt[0], &e, 1)) break;
            answered++;
        }
        ts_event ev;
        if (ts_ring_pop(c.out, &ev, 1)) {
            CHECK_EQ(ev.order_id, back + 1);
            back++;
        }
    }
    for (uint64_t i = 0; i < N; i++) CHECK_EQ(sent[i].order_id & 0xffffffffff, i + 1);
    rig_free(&r);
}

/* A command the gateway answers itself leaves the session's inbound ring only with its
 * answer in the session's event ring: a client whose event ring is full (it does not
 * read) has its next command left where it sent it, and a gateway that died now would
 * leave nothing owed in its own memory. Once the client reads, the command is taken and
 * answered in the same pass. */
static void test_a_reject_leaves_the_inbound_ring_only_once_answered(void) {
    rig r;
    rig_init(&r, 1, 64, 32, 64);
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 8);
    ts_command bad[9];
    for (int i = 0; i < 9; i++) {
        bad[i] = rig_new((uint64_t)i + 1, 1, TS_SIDE_BUY, 1000, 1);
        bad[i].kind = 99; /* no kind: the gateway's own INVALID_COMMAND */
    }
    CHECK_EQ(ts_ring_push(c.in, bad, 8), 8);
    ts_gateway_poll_at(r.gw, 0, 1);
    CHECK_EQ(ts_ring_writable(c.out), 0); /* 8 answers: the client's ring is full */
    CHECK_EQ(ts_ring_push(c.in, &bad[8], 1), 1);
    for (int i = 0; i < 3; i++) ts_gateway_poll_at(r.gw, 0, 2 + i);
    CHECK_EQ(ts_ring_writable(c.in), 7); /* not taken: no room for its answer */
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.rejects[TS_REJ_INVALID_COMMAND], 8);
    ts_event ev[8];
    CHECK_EQ(ts_ring_pop(c.out, ev, 1), 1);
    ts_gateway_poll_at(r.gw, 0, 9);
    CHECK_EQ(ts_ring_writable(c.in), 8);
    CHECK_EQ(ts_ring_pop(c.out, ev, 8), 8); /* 7 older answers, then the 9th command's */
    CHECK_EQ(ev[7].order_id & 0xffffffffff, 9);
    CHECK_EQ(ev[7].reason, TS_REJ_INVALID_COMMAND);
    CHECK_EQ(pop_cmds(r.cmd[0], (ts_command[8]){0}, 8), 0); /* none reached the shard */
    rig_free(&r);
}

static void test_pool_limit(void) {
    rig r;
    rig_init(&r, 1, 2, 32, 64);
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 64);
    ts_command cmds[3] = {rig_new(1, 1, TS_SIDE_BUY, 1000, 1), rig_new(2, 1, TS_SIDE_BUY, 1000, 1),
                          rig_new(3, 1, TS_SIDE_BUY, 1000, 1)};
    ts_ring_push(c.in, cmds, 3);
    ts_gateway_poll_at(r.gw, 0, 1);
    ts_event ev;
    CHECK_EQ(ts_ring_pop(c.out, &ev, 1), 1);
    CHECK_EQ(ev.reason, TS_REJ_GATEWAY_CAPACITY);
    CHECK_EQ(ev.order_id, 3);
    rig_free(&r);
}

typedef struct runner {
    ts_gateway *gw;
    int32_t stop;
} runner;

static void wait_for_parks(ts_gateway *gw, uint64_t n);

static void *run_thread(void *arg) {
    runner *rn = arg;
    ts_gateway_run(rn->gw, &rn->stop);
    return NULL;
}

/* The run loop parks when idle and a client's push wakes it. */
static void test_run_parks_and_wakes(void) {
    rig r;
    rig_init(&r, 1, 64, 32, 64);
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 64);
    runner rn = {r.gw, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run_thread, &rn) == 0);
    ts_wait_strategy w = {TS_WAIT_SPIN_PARK, 64, 4, 0};
    for (int i = 1; i <= 5; i++) {
        wait_for_parks(r.gw, (uint64_t)i); /* let the pump go idle and park first */
        ts_command n = rig_new(i, 1, TS_SIDE_BUY, 1000, 1);
        ts_ring_push(c.in, &n, 1);
        ts_command got;
        CHECK_EQ(ts_ring_pop_wait(r.cmd[0], &got, 1, &w, 5000000000LL), 1);
        CHECK_EQ(got.quantity, 1);
    }
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK(st.parks >= 1);
    __atomic_store_n(&rn.stop, 1, __ATOMIC_RELEASE);
    ts_gateway_wake(r.gw);
    pthread_join(t, NULL);
    rig_free(&r);
}

static void wait_for_parks(ts_gateway *gw, uint64_t n) {
    ts_gateway_stats st;
    for (int k = 0; k < 1000000; k++) {
        ts_gateway_get_stats(gw, &st);
        if (st.parks >= n) return;
        sched_yield();
    }
}

/* A session removed while the pump sleeps, and its ring freed at once: the pump must not
 * touch it when it wakes (ASan would see it), and it goes on serving the others. */
static void test_remove_while_parked(void) {
    rig r;
    rig_init(&r, 1, 64, 32, 64);
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    client keep = rig_client(&r, 1, 64);
    size_t size = ts_ring_bytes_needed(TS_RECORD_SIZE, 64);
    void *in_mem = aligned_alloc(128, size), *out_mem = aligned_alloc(128, size);
    ts_ring_init(in_mem, size, TS_RECORD_SIZE, 64, TS_LAYOUT_VERSION, 1, 0);
    ts_ring_init(out_mem, size, TS_RECORD_SIZE, 64, TS_LAYOUT_VERSION, 1, 0);
    int64_t gone = ts_gateway_add_session(r.gw, 1, in_mem, out_mem, -1, 0);
    CHECK(gone >= 0);
    runner rn = {r.gw, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run_thread, &rn) == 0);
    wait_for_parks(r.gw, 1);
    CHECK_EQ(ts_gateway_remove_session(r.gw, gone), TS_GW_OK);
    free(in_mem);
    free(out_mem);
    ts_command n = rig_new(1, 1, TS_SIDE_BUY, 1000, 1), got;
    ts_ring_push(keep.in, &n, 1);
    ts_wait_strategy w = {TS_WAIT_SPIN_PARK, 64, 4, 0};
    CHECK_EQ(ts_ring_pop_wait(r.cmd[0], &got, 1, &w, 5000000000LL), 1);
    __atomic_store_n(&rn.stop, 1, __ATOMIC_RELEASE);
    ts_gateway_wake(r.gw);
    pthread_join(t, NULL);
    rig_free(&r);
}

/* The hot path allocates nothing: once set up, thousands of orders with every check on,
 * their events, cancels and replaces, and an ORDER_STATUS each round, go through without
 * one malloc. */
static void test_no_allocation_per_order(void) {
    const int64_t BASE_NS = 1000000000000000LL; /* past the sessions' start (real clock) */
    rig r;
    rig_init(&r, 2, 1024, 64, 1024);
    ts_risk_limits l = {.max_order_qty = 100,
                        .max_order_notional = 1 << 30,
                        .price_collar_bps = 1000,
                        .max_open_orders = 1000,
                        .max_position = 1 << 30,
                        .credit_limit = 1LL << 40,
                        .throttle_per_s = 1000000,
                        .throttle_burst = 1000,
                        .account_throttle_per_s = 1000000,
                        .account_throttle_burst = 1000};
    ts_gateway_set_account(r.gw, 1, &l);
    /* with the ledger the restart reads (client ids and positions written per order) */
    uint64_t ledger_size = ts_gateway_ledger_size(r.gw);
    void *ledger = aligned_alloc(64, (ledger_size + 63) & ~(uint64_t)63);
    CHECK(ledger != NULL);
    memset(ledger, 0, ledger_size); /* no earlier test's ledger left in reused heap */
    CHECK_EQ(ts_gateway_attach_ledger(r.gw, ledger, ledger_size, 7), 0);
    client c = rig_client(&r, 1, 1024);
    ts_gateway_poll_at(r.gw, 0, 1); /* a first pass, as after start-up */
    uint64_t before = g_allocs;
    ts_command got[64];
    for (uint64_t round = 0; round < 200; round++) {
        ts_command cmds[41];
        for (int i = 0; i < 20; i++) {
            cmds[i] = rig_new(round * 20 + i + 1, (uint32_t)(i % 4) + 1, TS_SIDE_BUY, 1000, 2);
            ts_command x = {.kind = i % 2 ? TS_CMD_CANCEL : TS_CMD_REPLACE,
                            .order_id = round * 20 + i + 1, .price = 1001, .quantity = 3};
            cmds[20 + i] = x;
        }
        cmds[40] = (ts_command){.kind = TS_CMD_ORDER_STATUS, .order_id = round + 1};
        ts_ring_push(c.in, cmds, 41);
        ts_gateway_poll_at(r.gw, 0, BASE_NS + (int64_t)round * 1000000);
        for (int s = 0; s < 2; s++) {
            uint64_t k = pop_cmds(r.cmd[s], got, 64);
            for (uint64_t i = 0; i < k; i++) {
                ts_event e;
                if (got[i].kind == TS_CMD_NEW_ORDER) {
                    e = rig_event(&r, TS_EV_TRADE, &got[i], 1, 1, 0);
                } else if (got[i].kind == TS_CMD_REPLACE) {
                    e = rig_event(&r, TS_EV_REPLACED, &got[i], 3, 2, 0);
                    ts_ring_push(r.evt[s], &e, 1);
                    e = rig_event(&r, TS_EV_CANCELLED, &got[i], 2, 0, TS_EVF_DONE);
                } else {
                    e = rig_event(&r, TS_EV_CANCELLED, &got[i], 1, 0, TS_EVF_DONE);
                    e.reason = TS_CXL_USER;
                }
                ts_ring_push(r.evt[s], &e, 1);
            }
        }
        ts_gateway_poll_at(r.gw, 0, BASE_NS + (int64_t)round * 1000000 + 1);
        ts_event ev[256];
        while (ts_ring_pop(c.out, ev, 256)) {
        }
    }
    CHECK_EQ(g_allocs - before, 0);
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.commands_in, 200 * 41);
    CHECK_EQ(st.status_requests, 200);
    CHECK_EQ(st.status_orders, 200 * 20); /* each round's 20 orders, all still pending */
    CHECK_EQ(st.live_orders, 0);
    ts_position_state pos;
    int64_t bought = 0;
    for (uint32_t sym = 1; sym <= 4; sym++) {
        CHECK_EQ(ts_gateway_position(r.gw, 1, sym, &pos), 0);
        bought += pos.position;
    }
    CHECK_EQ(bought, 200 * 20); /* one lot filled per order, each trade counted once */
    rig_free(&r);
    free(ledger);
}

/* Any int64 a client sends is counted exactly (UBSan would flag a wrap): two orders of
 * 2^62 lots at 2^40 leave the account's sums beyond int64, read out clamped, and a credit
 * limit set afterwards still sees them whole. */
static void test_huge_values_do_not_wrap(void) {
    rig r;
    rig_init(&r, 1, 64, 32, 64);
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 64);
    ts_command cmds[2] = {rig_new(1, 1, TS_SIDE_BUY, 1LL << 40, 1LL << 62),
                          rig_new(2, 1, TS_SIDE_BUY, 1LL << 40, 1LL << 62)};
    ts_ring_push(c.in, cmds, 2);
    ts_gateway_poll_at(r.gw, 0, 1);
    ts_command got[2];
    CHECK_EQ(pop_cmds(r.cmd[0], got, 2), 2);
    for (int i = 0; i < 2; i++) {
        ts_event e = rig_event(&r, TS_EV_TRADE, &got[i], 1LL << 61, 1LL << 61, 0);
        ts_ring_push(r.evt[0], &e, 1);
    }
    ts_gateway_poll_at(r.gw, 0, 2);
    ts_account_state a;
    ts_gateway_account_state(r.gw, 1, &a);
    CHECK_EQ(a.open_notional, INT64_MAX);
    CHECK_EQ(a.filled_notional, INT64_MAX);
    ts_position_state p;
    ts_gateway_position(r.gw, 1, 1, &p);
    CHECK_EQ(p.position, 1LL << 62);
    CHECK_EQ(p.open_buy, 1LL << 62);
    l.credit_limit = INT64_MAX;
    ts_gateway_set_account(r.gw, 1, &l);
    ts_command small = rig_new(3, 1, TS_SIDE_BUY, 1, 1);
    ts_ring_push(c.in, &small, 1);
    ts_gateway_poll_at(r.gw, 0, 3);
    ts_event ev[4];
    uint64_t n = ts_ring_pop(c.out, ev, 4);
    CHECK_EQ(n, 3);
    CHECK_EQ(ev[2].reason, TS_REJ_CREDIT_LIMIT);
    rig_free(&r);
}

/* Two sessions flooding one shard through a stage of 8: both get through, interleaved,
 * rather than the first slot's session taking every pass. */
static void test_sessions_share_the_pump(void) {
    rig r;
    rig_init(&r, 1, 1024, 8, 1024);
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    ts_gateway_set_account(r.gw, 2, &l);
    client a = rig_client(&r, 1, 256), b = rig_client(&r, 2, 256);
    ts_command cmds[100];
    for (int i = 0; i < 100; i++) cmds[i] = rig_new(i + 1, 1, TS_SIDE_BUY, 1000, 1);
    CHECK_EQ(ts_ring_push(a.in, cmds, 100), 100);
    CHECK_EQ(ts_ring_push(b.in, cmds, 100), 100);
    uint64_t from_b_in_first_half = 0, got = 0;
    ts_command out[16];
    while (got < 200) {
        ts_gateway_poll_at(r.gw, 0, 1);
        uint64_t k = pop_cmds(r.cmd[0], out, 16);
        for (uint64_t i = 0; i < k; i++, got++)
            if (got < 100 && out[i].account_id == 2) from_b_in_first_half++;
    }
    CHECK(from_b_in_first_half >= 40);
    rig_free(&r);
}

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* The rig's gateway dies and a successor takes over its rings: one shard, symbols 1..4,
 * accounts 1..n_accounts with limits l. */
static void rig_successor(rig *r, uint32_t max_accounts, uint32_t max_instruments, uint32_t epoch,
                          const ts_risk_limits *l, uint32_t n_accounts) {
    ts_gateway_free(r->gw);
    ts_gateway_config cfg = {.max_sessions = 8, .max_accounts = max_accounts,
                             .max_instruments = max_instruments, .max_batch = 32,
                             .max_orders = 64, .epoch = epoch, .wait = rig_wait};
    r->gw = ts_gateway_new(&cfg);
    CHECK(r->gw != NULL);
    ts_gateway_add_shard(r->gw, 0, r->cmd[0], r->evt[0]);
    for (uint32_t sym = 1; sym <= 4; sym++) ts_gateway_add_instrument(r->gw, sym, 0, 1000);
    for (uint32_t a = 1; a <= n_accounts; a++) ts_gateway_set_account(r->gw, a, l);
}

/* A one-account rig (its ledger run 9's) whose order 42, a buy of 10, was accepted and
 * bought 4: `got` is the order as its shard received it, `evs` those two events. */
static void rig_with_one_trade(rig *r, const ts_risk_limits *l, void **ledger, uint64_t *size,
                               ts_command *got, ts_event evs[2]) {
    rig_init(r, 1, 64, 32, 64);
    ts_gateway_set_account(r->gw, 1, l);
    *size = ts_gateway_ledger_size(r->gw);
    *ledger = aligned_alloc(64, (*size + 63) & ~(uint64_t)63);
    CHECK(*ledger != NULL);
    CHECK_EQ(ts_gateway_attach_ledger(r->gw, *ledger, *size, 9), 0);
    client c = rig_client(r, 1, 64);
    ts_command cmd = rig_new(42, 1, TS_SIDE_BUY, 1000, 10);
    ts_ring_push(c.in, &cmd, 1);
    ts_gateway_poll(r->gw, 0);
    CHECK_EQ(pop_cmds(r->cmd[0], got, 1), 1);
    evs[0] = rig_event(r, TS_EV_ACCEPTED, got, 10, 10, 0);
    evs[1] = rig_event(r, TS_EV_TRADE, got, 4, 6, 0);
    ts_ring_push(r->evt[0], evs, 2);
    ts_gateway_poll(r->gw, 0);
}

/* A gateway dies between two passes and another takes over on the same rings and ledger:
 * an unreleased trade is counted once, the live order comes back from the image with its
 * client id, the events of the downtime go to the account's next session first, and that
 * session cancels the order by its client id. */
static void test_restart_from_ledger_and_image(void) {
    rig r;
    ts_risk_limits l = {.cancel_on_disconnect = 0};
    uint64_t size;
    ts_command got;
    ts_event evs[2];
    void *ledger = NULL;
    rig_with_one_trade(&r, &l, &ledger, &size, &got, evs);
    /* the successor: the same config, rings and ledger; the trade comes again (its event
     * was not released, say) and one more comes while no gateway runs */
    rig_successor(&r, 8, 8, 4, &l, 1);
    CHECK_EQ(ts_gateway_attach_ledger(r.gw, ledger, size, 9), 1);
    ts_event again[2] = {evs[1], rig_event(&r, TS_EV_TRADE, &got, 1, 5, 0)};
    ts_ring_push(r.evt[0], again, 2);
    CHECK_EQ(ts_gateway_drain(r.gw, 64), 2);
    ts_position_state pos;
    ts_gateway_position(r.gw, 1, 1, &pos);
    CHECK_EQ(pos.position, 5);
    ts_live_order image = {.order_id = got.order_id, .symbol_id = 1, .account_id = 1,
                           .side = TS_SIDE_BUY, .price = 1000, .quantity = 10, .leaves_qty = 5};
    CHECK_EQ(ts_gateway_restore(r.gw, &image, 1), 1);
    CHECK_EQ(ts_gateway_hold_drained(r.gw), 2);
    ts_account_state st;
    ts_gateway_account_state(r.gw, 1, &st);
    CHECK_EQ(st.open_orders, 1);
    CHECK_EQ(st.open_notional, 5000);
    client d = rig_client(&r, 1, 64);
    ts_command cxl = {.kind = TS_CMD_CANCEL, .order_id = 42};
    ts_ring_push(d.in, &cxl, 1);
    ts_gateway_poll(r.gw, 0);
    CHECK_EQ(pop_cmds(r.cmd[0], &got, 1), 1);
    CHECK_EQ(got.kind, TS_CMD_CANCEL);
    CHECK_EQ(got.order_id, image.order_id);
    ts_event out[4];
    CHECK_EQ(ts_ring_pop(d.out, out, 4), 2); /* the two drained trades, client id 42 */
    CHECK_EQ(out[0].order_id, 42);
    CHECK_EQ(out[1].quantity, 1);
    rig_free(&r);
    free(ledger);
}

/* A run that died whole hands its ledger to the next run (ts_gateway_ledger_adopt): the
 * next run's gateway carries the position over; a ledger of any other run is not handed
 * over, and a new run that adopts nothing starts flat. */
static void test_ledger_adopted_by_the_next_run(void) {
    rig r;
    uint64_t zeros[8] = {0};
    CHECK_EQ(ts_gateway_ledger_adopt(zeros, sizeof zeros, 0, 10), 0); /* not a ledger */
    CHECK_EQ(ts_gateway_ledger_run(zeros, sizeof zeros), 0);
    ts_risk_limits l = {.cancel_on_disconnect = 0};
    uint64_t size;
    ts_command got;
    ts_event evs[2];
    void *ledger = NULL;
    rig_with_one_trade(&r, &l, &ledger, &size, &got, evs);
    ts_position_state pos;
    ts_gateway_position(r.gw, 1, 1, &pos);
    CHECK_EQ(pos.position, 4);
    /* run 9 is killed whole; run 10 adopts its ledger, and its gateway carries it over */
    CHECK_EQ(ts_gateway_ledger_run(ledger, size), 9);
    CHECK_EQ(ts_gateway_ledger_run(ledger, 16), 0); /* too short to be one */
    CHECK_EQ(ts_gateway_ledger_adopt(ledger, size, 8, 10), 0); /* not run 8's */
    CHECK_EQ(ts_gateway_ledger_adopt(ledger, size, 9, 10), 1);
    CHECK_EQ(ts_gateway_ledger_run(ledger, size), 10);
    rig_successor(&r, 8, 8, 4, &l, 1);
    CHECK_EQ(ts_gateway_attach_ledger(r.gw, ledger, size, 10), 1);
    ts_gateway_position(r.gw, 1, 1, &pos);
    CHECK_EQ(pos.position, 4);
    /* run 11 starts as a new trading day: nothing adopted, a new ledger, flat */
    rig_successor(&r, 8, 8, 4, &l, 1);
    CHECK_EQ(ts_gateway_attach_ledger(r.gw, ledger, size, 11), 0);
    ts_gateway_position(r.gw, 1, 1, &pos);
    CHECK_EQ(pos.position, 0);
    CHECK_EQ(ts_gateway_ledger_adopt(ledger, size, 10, 12), 0); /* run 10's is gone */
    rig_free(&r);
    free(ledger);
}

/* Pages of [p, p + bytes) mapped in. */
static uint64_t resident_pages(const void *p, uint64_t bytes) {
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), n = (bytes + page - 1) / page;
    unsigned char *vec = malloc(n);
    if (!vec || mincore((void *)p, bytes, vec) != 0) abort();
    uint64_t in = 0;
    for (uint64_t i = 0; i < n; i++) in += vec[i] & 1;
    free(vec);
    return in;
}

/* A NEW of `client_id` from c, taken by the pump, filled for 4 of 10 (exec ids from the
 * rig's count); *position: the account's position the gateway then has. */
static void order_filled_4(rig *r, client *c, uint32_t account, uint64_t client_id,
                           int64_t *position) {
    ts_command cmd = rig_new(client_id, 1, TS_SIDE_BUY, 1000, 10), got;
    ts_ring_push(c->in, &cmd, 1);
    ts_gateway_poll(r->gw, 0);
    CHECK_EQ(pop_cmds(r->cmd[0], &got, 1), 1);
    ts_event evs[2] = {rig_event(r, TS_EV_ACCEPTED, &got, 10, 10, 0),
                       rig_event(r, TS_EV_TRADE, &got, 4, 6, 0)};
    ts_ring_push(r->evt[0], evs, 2);
    ts_gateway_poll(r->gw, 0);
    ts_event out[2];
    ts_ring_pop(c->out, out, 2);
    ts_position_state pos;
    CHECK_EQ(ts_gateway_position(r->gw, account, 1, &pos), TS_GW_OK);
    *position = pos.position;
}

/* Memory per account that trades, not per account configured: a ledger for 256 accounts
 * x 1 024 symbols is formatted without touching its cells; an account's row is made
 * resident by its first session, before its first order reaches the pump; a new run
 * reads zeros where an earlier run's figures (with higher exec ids) lie, and a carried
 * one loads the rows its accounts used, and only those. */
static void test_rows_resident_per_live_account(void) {
    rig r;
    rig_init(&r, 1, 64, 32, 64);
    ts_risk_limits l = {.cancel_on_disconnect = 0};
    rig_successor(&r, 256, 1024, 4, &l, 256);
    const uint64_t size = ts_gateway_ledger_size(r.gw), row = 1024 * 80 / 4096;
    void *ledger = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ledger != MAP_FAILED);
    madvise(ledger, size, MADV_NOHUGEPAGE); /* pages counted one by one, whatever the host */
    CHECK_EQ(ts_gateway_attach_ledger(r.gw, ledger, size, 9), 0);
    const uint64_t formatted = resident_pages(ledger, size);
    CHECK(formatted < 16); /* header, order slots, accounts, symbols: not 5 120 pages */
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.accounts_live, 0);
    ts_position_state pos = {.position = 7};
    CHECK_EQ(ts_gateway_position(r.gw, 200, 1, &pos), TS_GW_OK); /* zeros, nothing faulted */
    CHECK_EQ(pos.position, 0);
    client c = rig_client(&r, 3, 64);
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.accounts_live, 1);
    const uint64_t with_row = resident_pages(ledger, size);
    CHECK(with_row >= formatted + row && with_row <= formatted + row + 1);
    int64_t position = 0;
    order_filled_4(&r, &c, 3, 42, &position);
    CHECK_EQ(position, 4);
    CHECK_EQ(resident_pages(ledger, size), with_row); /* the order and its fill: no fault */
    /* a new run over the same memory: account 3's row holds exec id 2, the new run's
     * first trade is exec id 1 */
    rig_successor(&r, 256, 1024, 5, &l, 256);
    CHECK_EQ(ts_gateway_attach_ledger(r.gw, ledger, size, 10), 0);
    ts_gateway_position(r.gw, 3, 1, &pos);
    CHECK_EQ(pos.position, 0);
    r.exec_id = 0;
    client d = rig_client(&r, 3, 64);
    order_filled_4(&r, &d, 3, 43, &position);
    CHECK_EQ(position, 4);
    /* and a restart within it: account 3's figures back, live before any session */
    rig_successor(&r, 256, 1024, 6, &l, 256);
    CHECK_EQ(ts_gateway_attach_ledger(r.gw, ledger, size, 10), 1);
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.accounts_live, 1);
    ts_gateway_position(r.gw, 3, 1, &pos);
    CHECK_EQ(pos.position, 4);
    rig_free(&r);
    munmap(ledger, size);
}

/* Push n TRADE events of order c (leaves counting down from *leaves) through the pump. */
static void trades_through(rig *r, const ts_command *c, int64_t *leaves, uint64_t n) {
    ts_event batch[256];
    while (n) {
        uint64_t k = n < 256 ? n : 256;
        for (uint64_t i = 0; i < k; i++) {
            *leaves -= 1;
            batch[i] = rig_event(r, TS_EV_TRADE, c, 1, *leaves, 0);
        }
        CHECK_EQ(ts_ring_push(r->evt[0], batch, k), k);
        while (ts_ring_readable(r->evt[0])) ts_gateway_poll(r->gw, 0);
        n -= k;
    }
}

/* The held-events log (gateway_held.c): account 1 keeps 100 events waiting while account
 * 2 holds and takes batch after batch, far more than a half of the log holds: the log is
 * compacted (account 2's delivered records dropped, account 1's kept) and then emptied
 * once account 1 takes its own; a successor finds exactly what is undelivered. The pump
 * allocates nothing for it. */
static void test_held_log_compacts_and_empties(void) {
    rig r;
    rig_init(&r, 1, 64, 256, 1024);
    ts_risk_limits l = {.cancel_on_disconnect = 0};
    ts_gateway_set_account(r.gw, 1, &l);
    ts_gateway_set_account(r.gw, 2, &l);
    uint64_t size = ts_gateway_held_size(r.gw);
    void *log = aligned_alloc(64, (size + 63) & ~(uint64_t)63);
    CHECK(log != NULL);
    memset(log, 0xa5, size); /* garbage: formatted */
    CHECK_EQ(ts_gateway_attach_held(r.gw, log, size), 0);
    CHECK_EQ(ts_gateway_attach_held(r.gw, log, size), TS_GW_ERR_ARGUMENT); /* once */
    ts_command got[2];
    int64_t leaves[2] = {1000000000, 1000000000};
    client c1 = rig_client(&r, 1, 1024), c2 = rig_client(&r, 2, 4096);
    ts_command n1 = rig_new(11, 1, TS_SIDE_SELL, 1000, leaves[0]);
    ts_command n2 = rig_new(22, 1, TS_SIDE_SELL, 1000, leaves[1]);
    ts_ring_push(c1.in, &n1, 1);
    ts_ring_push(c2.in, &n2, 1);
    ts_gateway_poll(r.gw, 0);
    CHECK_EQ(pop_cmds(r.cmd[0], got, 2), 2);
    ts_gateway_remove_session(r.gw, c1.id);
    trades_through(&r, got[0].account_id == 1 ? &got[0] : &got[1], &leaves[0], 100);
    const ts_command *o2 = got[0].account_id == 2 ? &got[0] : &got[1];
    ts_event out[4096];
    uint64_t allocs = 0, rounds = (2 * TS_GW_HELD_LOG) / 4000 + 1;
    for (uint64_t round = 0; round < rounds; round++) {
        ts_gateway_remove_session(r.gw, c2.id);
        uint64_t before = g_allocs;
        trades_through(&r, o2, &leaves[1], 4000);
        allocs += g_allocs - before;
        c2.id = ts_gateway_add_session(r.gw, 2, c2.in, c2.out, -1, -1);
        before = g_allocs;
        ts_gateway_poll(r.gw, 0);
        allocs += g_allocs - before;
        uint64_t n = ts_ring_pop(c2.out, out, 4096);
        CHECK_EQ(n, 4000);
        CHECK_EQ(out[0].order_id, 22);
        CHECK_EQ(out[3999].leaves_qty, leaves[1]);
    }
    CHECK_EQ(allocs, 0);
    ts_gateway_stats st;
    ts_gateway_get_stats(r.gw, &st);
    CHECK_EQ(st.events_held, 100 + rounds * 4000);
    CHECK_EQ(st.events_held_volatile, 0);
    /* a successor: account 1's 100, nothing of account 2's */
    ts_gateway_free(r.gw);
    ts_gateway_config cfg = {.max_sessions = 8, .max_accounts = 8, .max_instruments = 8,
                             .max_batch = 256, .max_orders = 64, .epoch = 4, .wait = rig_wait};
    r.gw = ts_gateway_new(&cfg);
    CHECK(r.gw != NULL);
    ts_gateway_add_shard(r.gw, 0, r.cmd[0], r.evt[0]);
    for (uint32_t sym = 1; sym <= 4; sym++) ts_gateway_add_instrument(r.gw, sym, 0, 1000);
    ts_gateway_set_account(r.gw, 2, &l); /* another order of accounts */
    ts_gateway_set_account(r.gw, 1, &l);
    CHECK_EQ(ts_gateway_attach_held(r.gw, log, size), 100);
    CHECK_EQ(ts_gateway_hold_drained(r.gw), 100);
    client d2 = rig_client(&r, 2, 64), d1 = rig_client(&r, 1, 1024);
    ts_gateway_poll(r.gw, 0);
    CHECK_EQ(ts_ring_pop(d2.out, out, 64), 0);
    CHECK_EQ(ts_ring_pop(d1.out, out, 1024), 100);
    CHECK_EQ(out[0].order_id, 11);
    CHECK_EQ(out[0].leaves_qty, 1000000000 - 1);
    CHECK_EQ(out[99].leaves_qty, leaves[0]);
    for (int i = 1; i < 100; i++) CHECK(out[i].exec_id > out[i - 1].exec_id);
    /* all delivered: the log is empty for the next one */
    ts_gateway_free(r.gw);
    r.gw = ts_gateway_new(&cfg);
    CHECK(r.gw != NULL);
    ts_gateway_set_account(r.gw, 1, &l);
    CHECK_EQ(ts_gateway_attach_held(r.gw, log, size), 0);
    rig_free(&r);
    free(log);
}

/* A shard marked down: every command for its symbols -- a cancel naming the order alone
 * (symbol 0) too -- is answered SHARD_UNAVAILABLE and staged nowhere; its full commands
 * ring holds back no other shard; marked up, what it had taken before goes first. */
static void test_a_down_shard_is_answered_and_holds_back_no_other(void) {
    rig r;
    rig_init(&r, 2, 64, 8, 8); /* symbol 2 on shard 1; a stage of 8, rings of 8 */
    ts_risk_limits l = no_limits();
    ts_gateway_set_account(r.gw, 1, &l);
    client c = rig_client(&r, 1, 64);
    ts_command rest = rig_new(1, 2, TS_SIDE_BUY, 1000, 1);
    ts_ring_push(c.in, &rest, 1);
    ts_gateway_poll_at(r.gw, 0, 1);
    ts_command got[32];
    CHECK_EQ(pop_cmds(r.cmd[1], got, 32), 1);
    ts_event e = rig_event(&r, TS_EV_ACCEPTED, &got[0], 1, 1, 0);
    ts_ring_push(r.evt[1], &e, 1);
    ts_gateway_poll_at(r.gw, 0, 2);
    ts_event ev[64];
    CHECK_EQ(ts_ring_pop(c.out, ev, 64), 1);
    /* shard 1 stops reading: its ring (8) and then its stage fill */
    for (uint64_t i = 0; i < 20; i++) {
        ts_command n = rig_new(10 + i, 2, TS_SIDE_BUY, 1000, 1);
        ts_ring_push(c.in, &n, 1);
        ts_gateway_poll_at(r.gw, 0, 3 + (int64_t)i);
    }
    ts_command acme = rig_new(100, 1, TS_SIDE_BUY, 1000, 1);
    ts_ring_push(c.in, &acme, 1);
    ts_gateway_poll_at(r.gw, 0, 30);
    CHECK_EQ(pop_cmds(r.cmd[0], got, 32), 0); /* held back behind shard 1's full stage */
    ts_account_state a;
    ts_gateway_account_state(r.gw, 1, &a);
    const int64_t taken = a.open_orders - 1; /* the rest wait in the session's ring */
    CHECK(taken > 8 && taken < 20);
    CHECK_EQ(ts_gateway_set_shard_down(r.gw, 7, 1), TS_GW_ERR_UNKNOWN);
    CHECK_EQ(ts_gateway_set_shard_down(r.gw, 1, 1), TS_GW_OK);
    ts_command cancel0 = {.kind = TS_CMD_CANCEL, .order_id = 1}; /* symbol 0: the order's */
    ts_command more = rig_new(200, 2, TS_SIDE_BUY, 1000, 1);
    ts_command all = {.kind = TS_CMD_MASS_CANCEL};
    ts_command cmds[3] = {cancel0, more, all};
    ts_ring_push(c.in, cmds, 3);
    ts_gateway_poll_at(r.gw, 0, 31);
    CHECK_EQ(pop_cmds(r.cmd[0], got, 32), 1); /* ACME went */
    CHECK_EQ(got[0].symbol_id, 1);
    uint64_t n_ev = ts_ring_pop(c.out, ev, 64);
    uint64_t unavailable = 0;
    for (uint64_t i = 0; i < n_ev; i++) unavailable += ev[i].reason == TS_REJ_SHARD_UNAVAILABLE;
    CHECK_EQ(unavailable, (uint64_t)(20 - taken) + 3); /* untaken ones are answered too */
    ts_gateway_account_state(r.gw, 1, &a);
    CHECK_EQ(a.open_orders, 1 + taken + 1); /* the resting one, those taken, ACME */
    /* up again: shard 1's ring drains, and what was taken before follows */
    CHECK_EQ(ts_gateway_set_shard_down(r.gw, 1, 0), TS_GW_OK);
    uint64_t drained = 0;
    for (int64_t t = 40; t < 80 && drained < (uint64_t)taken; t++) {
        uint64_t k = pop_cmds(r.cmd[1], got, 32);
        for (uint64_t i = 0; i < k; i++) drained += got[i].kind == TS_CMD_NEW_ORDER;
        ts_gateway_poll_at(r.gw, 0, t);
    }
    CHECK_EQ(drained, (uint64_t)taken);
    rig_free(&r);
}

int main(void) {
    const test_case tests[] = {
        {"new_accept_cancel", test_new_accept_cancel},
        {"rejects_never_reach_a_shard", test_rejects_never_reach_a_shard},
        {"a_slot_rewritten_after_its_check_changes_nothing",
         test_a_slot_rewritten_after_its_check_changes_nothing},
        {"table_churn", test_table_churn},
        {"kill_and_disconnect", test_kill_and_disconnect},
        {"market_control", test_market_control},
        {"backpressure", test_backpressure},
        {"a_reject_leaves_the_inbound_ring_only_once_answered",
         test_a_reject_leaves_the_inbound_ring_only_once_answered},
        {"pool_limit", test_pool_limit},
        {"run_parks_and_wakes", test_run_parks_and_wakes},
        {"remove_while_parked", test_remove_while_parked},
        {"no_allocation_per_order", test_no_allocation_per_order},
        {"huge_values_do_not_wrap", test_huge_values_do_not_wrap},
        {"sessions_share_the_pump", test_sessions_share_the_pump},
        {"restart_from_ledger_and_image", test_restart_from_ledger_and_image},
        {"ledger_adopted_by_the_next_run", test_ledger_adopted_by_the_next_run},
        {"rows_resident_per_live_account", test_rows_resident_per_live_account},
        {"held_log_compacts_and_empties", test_held_log_compacts_and_empties},
        {"a_down_shard_is_answered_and_holds_back_no_other",
         test_a_down_shard_is_answered_and_holds_back_no_other},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++) {
        g_test_failed = 0;
        tests[i].fn();
        printf("%s %s\n", g_test_failed ? "FAIL" : "ok  ", tests[i].name);
        failed += g_test_failed;
    }
    printf("test_gateway: %d failed\n", failed);
    return failed != 0;
}
