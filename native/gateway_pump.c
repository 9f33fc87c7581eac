/*
 * gateway_pump.c — one pass of the gateway, and the loop that runs passes; see gateway.h.
 *
 * A pass, under gw->lock:
 *   1. push what earlier passes or control calls left for the shards (stage, then backlog)
 *   2. intake: each session's inbound commands, read in place (peek/release), checked and
 *      staged per shard; rejects are staged for the session (the round of the sessions
 *      starts one further each pass, so a busy session cannot starve the others)
 *   3. push each shard's stage in one batch
 *   4. each shard's events, read in place: accounted, rewritten to the client's ids and
 *      staged for the owning session
 *   5. push each session's stage in one batch; ring its eventfd
 *   6. release from each shard's event ring the events that have left the gateway's
 *      memory (gw_release_routed): all it took, unless a session's ring was full and its
 *      stage still keeps some, then those before the oldest kept. Until it is pushed, a
 *      staged event exists nowhere else, and a gateway that died would lose it: left in
 *      the shard's ring, it is drained by the successor (tradsys/gateway/recovery.py).
 * Intake takes no more than every stage can hold, so a full shard or client ring stops
 * the intake (backpressure) instead of losing a record. A control call's backlog (kill,
 * disconnect cancels) goes after the stage it found and before any later intake, so a
 * kill's MASS_CANCEL reaches each shard after every order sent before the kill.
 *
 * The engine's clock: it moves only by CLOCK_TICK commands in each shard's command stream,
 * so a replay of the journal sees the very times the live run saw. The pump is every
 * shard's sequencer, so it keeps the time: before the first command of a pass for a shard
 * it stages a CLOCK_TICK with CLOCK_REALTIME when the last one is clock_tick_us old, and
 * one on its own when a shard has had none for IDLE_TICK_NS, so GTD orders expire and
 * halted books reopen in a quiet market too (an idle park is bounded by IDLE_TICK_NS for
 * this). Ticks never go backwards, whatever the wall clock does.
 *
 * Idle wait (ts_gateway_run): a short spin (a tenth of the strategy's spin_iters passes),
 * then a sched_yield per pass up to spin_iters + yield_iters passes, then park with
 * futex_waitv on every inbound ring's and event ring's data futex plus the control
 * doorbell, so any producer's push (ts_ring_push wakes a parked consumer) or any control
 * call wakes the pump. Why yield so soon: on a 2-core host the pump shares its CPU with a
 * colocated client, and a spinning pump keeps that CPU until it parks (the scheduler lets
 * the running task finish its slice) while the client waits to read the events the pump
 * has just routed to it; a yield per pass hands the CPU over at once and still looks for
 * work every pass. Measured on the e2e bench (2 shared vCPUs): p50 order -> ack 25-52 µs
 * with 200 spinning passes, 14-23 µs with 20 then yields, from 100 k/s to 1 M/s. On a
 * core of its own a yield returns at once and costs a syscall.
 * Hand-off (yield_every_us): a pump that always finds a little work -- events trickling
 * in from a busy shard -- never reaches its idle yields, and on a CPU it shares with a
 * colocated client it then keeps the CPU for a whole scheduler slice while the client
 * waits to send and to read what the pump routed to it (seen with perf sched: the pump
 * running 1.3-2.5 ms stretches with the client runnable, at 1 M orders/s). So the pump
 * also yields once it has run yield_every_us since its last yield, busy or not: the
 * client waits at most about that long. On a core of its own the yield returns at once.
 * While a stage holds records for a full ring, the pump parks the same way but for at
 * most PENDING_PARK_NS: a shard that takes a batch pushes its events right after, which
 * wakes the pump through the event ring, and the bound covers a batch that makes no event
 * or a client ring that a slow client empties. With more rings than futex_waitv takes
 * (128), or a kernel without it, the park becomes a 200 µs futex wait on the doorbell.
 */
#define _GNU_SOURCE
#include "gateway_internal.h"
#include "mono_clock.h"
#include "latency_hist_record.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#define WAITV_MAX 128
#define FALLBACK_PARK_NS 200000
#define PENDING_PARK_NS 50000

struct gw_waitv {
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#define IDLE_TICK_NS 100000000LL

static int64_t real_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- the session slots in use ------------------------------------------------------------ */

/* A pass, the idle check and the park each look at every session slot, and with the
 * default 256 slots of which a bench uses one, those scans made an idle pass cost about
 * a microsecond -- the pump's spin phase of 200 passes ran ~200 µs, and every hop through
 * the pump waited a pass. A session takes the lowest free slot, so the active ones lie
 * below a bound kept in n_sessions_used: counting the active slots below it finds one
 * added above it (fewer than st.sessions), and then all slots are scanned once to move it
 * (a scan that is only ever wrong on the slow side). Called under the lock. */
static uint32_t session_bound(ts_gateway *gw) {
    uint32_t bound = gw->n_sessions_used;
    if (bound > gw->cfg.max_sessions) bound = gw->cfg.max_sessions;
    while (bound && !gw->sessions[bound - 1].active) bound--;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < bound; i++) seen += gw->sessions[i].active != 0;
    if (seen != gw->st.sessions) {
        bound = 0;
        for (uint32_t i = 0; i < gw->cfg.max_sessions; i++)
            if (gw->sessions[i].active) bound = i + 1;
    }
    gw->n_sessions_used = bound;
    return bound;
}

/* ---- stages ------------------------------------------------------------------------------ */

/* Push the unsent part of a stage; keep what did not fit at its front (and its records'
 * sources alongside, when the stage has them). */
static uint64_t push_stage(ts_ring *r, void *stage, uint64_t *src, uint32_t *staged,
                           uint32_t *sent) {
    if (*sent == *staged) return 0;
    unsigned char *p = stage;
    uint64_t k = ts_ring_push(r, p + (size_t)*sent * TS_RECORD_SIZE, *staged - *sent);
    *sent += (uint32_t)k;
    if (*sent == *staged) {
        *staged = *sent = 0;
    } else if (*sent) {
        memmove(p, p + (size_t)*sent * TS_RECORD_SIZE, (size_t)(*staged - *sent) * TS_RECORD_SIZE);
        if (src) memmove(src, src + *sent, (size_t)(*staged - *sent) * sizeof *src);
        *staged -= *sent;
        *sent = 0;
    }
    return k;
}

static uint64_t flush_shard(ts_gateway *gw, gw_shard *sh) {
    if (sh->lat && (sh->staged | sh->backlog.count)) /* stage latency: something to push */
        gw_latency_before_push(sh, gw->clock_ns);
    uint64_t k = push_stage(sh->cmd, sh->stage, NULL, &sh->staged, &sh->stage_sent);
    gw_backlog *b = &sh->backlog;
    if (!sh->staged && b->sent < b->count) {
        uint64_t m = ts_ring_push(sh->cmd, b->cmds + b->sent, b->count - b->sent);
        b->sent += m;
        if (b->sent == b->count) b->sent = b->count = 0;
        k += m;
    }
    gw->st.commands_out += k;
    sh->lat_pushed += k; /* stage latency */
    return k;
}

static uint64_t flush_session(gw_session *s) {
    uint64_t k = push_stage(s->out, s->stage, s->stage_src, &s->staged, &s->stage_sent);
    if (!s->staged) s->stalled = 0;
    if (k && s->notify_fd >= 0) {
        uint64_t one = 1;
        /* EAGAIN means the counter is saturated: the reader has a wake-up pending anyway */
        ssize_t w = write(s->notify_fd, &one, sizeof one);
        (void)w;
    }
    return k;
}

/* A leaving session's reject: into the growable list gw_take_leaving returns. */
static ts_event *leaving_reject(gw_leaving *l) {
    if (l->n == l->cap) {
        const uint64_t cap = l->cap ? 2 * l->cap : 64;
        ts_event *grown = realloc(l->rejects, (size_t)cap * sizeof *grown);
        if (!grown) abort(); /* a control call: out of memory here is fatal */
        l->rejects = grown;
        l->cap = cap;
    }
    return &l->rejects[l->n++];
}

static inline void stage_reject(ts_gateway *gw, gw_session *s, const ts_command *c, int reason) {
    ts_event *e;
    if (__builtin_expect(gw->leaving != NULL, 0)) {
        e = leaving_reject(gw->leaving);
    } else {
        s->stage_src[s->staged] = 0; /* the gateway's own answer: no shard's ring holds it */
        e = &s->stage[s->staged++];
    }
    memset(e, 0, sizeof *e);
    e->kind = TS_EV_REJECTED;
    e->side = c->side;
    e->reason = (uint8_t)reason;
    e->flags = c->kind == TS_CMD_NEW_ORDER ? TS_EVF_DONE : 0;
    e->symbol_id = c->symbol_id;
    e->account_id = gw->accounts[s->account].id;
    e->order_id = c->order_id;
    e->price = c->price;
    e->quantity = c->quantity;
    gw->st.rejects[reason & 63]++;
}

/* ---- intake ------------------------------------------------------------------------------ */

static void stage_tick(ts_gateway *gw, gw_shard *sh, int64_t now) {
    if (now < sh->tick_ns) now = sh->tick_ns; /* the wall clock stepped back: hold */
    gw->st.clock_ticks++;
    sh->stage[sh->staged++] = (ts_command){
        .kind = TS_CMD_CONTROL, .control = TS_CTL_CLOCK_TICK, .time_ns = now};
    sh->tick_ns = now;
}

/* shard_room keeps one record free in each stage for this tick */
static inline void stage_cmd(ts_gateway *gw, gw_shard *sh, const ts_command *c) {
    if (__builtin_expect(gw->leaving != NULL, 0)) { /* after the stage, as a control call's */
        gw_backlog_add(&sh->backlog, c);
        return;
    }
    const uint32_t tick =
        gw->real_ns && gw->real_ns - sh->tick_ns >= (int64_t)gw->cfg.clock_tick_us * 1000;
    if (__builtin_expect(sh->staged + tick + 1 > gw->cfg.max_batch, 0)) {
        /* shard_room leaves room for a tick and this command in every shard but a down
         * one, for which nothing is staged: should one get here anyway, it waits in the
         * backlog, in order, rather than past the stage's end */
        gw_backlog_add(&sh->backlog, c);
        return;
    }
    if (tick) stage_tick(gw, sh, gw->real_ns);
    sh->stage[sh->staged++] = *c;
}

static void take_new(ts_gateway *gw, gw_session *s, uint32_t slot, const ts_command *c) {
    uint32_t k;
    int64_t rp, send_price;
    int reason = gw_check_new(gw, s, c, &k, &rp, &send_price);
    uint32_t idx = GW_NONE;
    if (!reason && (idx = gw_order_alloc(gw, slot)) == GW_NONE) reason = TS_REJ_GATEWAY_CAPACITY;
    if (reason) {
        stage_reject(gw, s, c, reason);
        return;
    }
    gw_order *o = &gw->orders[idx];
    o->client_id = c->order_id;
    o->qty = c->quantity;
    o->side = c->side;
    o->type = c->order_type;
    o->ends_on_its_own = c->tif == TS_TIF_IOC || c->tif == TS_TIF_FOK;
    o->limit = send_price;
    o->stop_price = c->stop_price;
    o->account = s->account;
    o->instr = k;
    o->in_ns = gw->clock_ns; /* stage latency: order in */
    gw_index_client(gw, idx);
    gw_book_new(gw, idx, rp);
    ts_command out = *c;
    out.account_id = gw->accounts[s->account].id;
    out.order_id = o->exch_id;
    out.price = send_price;
    stage_cmd(gw, &gw->shards[gw->instr[k].shard], &out);
}

/* CANCEL and REPLACE name the order by the session's client id. */
static void take_amend(ts_gateway *gw, gw_session *s, uint32_t slot, const ts_command *c) {
    uint32_t idx;
    int reason;
    if (c->kind == TS_CMD_CANCEL) {
        idx = gw_find_amendable_in(gw, s->account, c->order_id, c->symbol_id);
        reason = idx == GW_NONE ? TS_REJ_UNKNOWN_CLIENT_ID : 0;
    } else {
        reason = gw_check_replace(gw, s, c, &idx);
    }
    /* symbol_id 0 names the order alone: its shard is known only now */
    if (!reason && __builtin_expect(gw->n_down != 0, 0) &&
        gw->shards[gw->instr[gw->orders[idx].instr].shard].down)
        reason = TS_REJ_SHARD_UNAVAILABLE;
    if (reason) {
        stage_reject(gw, s, c, reason);
        return;
    }
    gw_take_over(gw, idx, slot); /* orders are the account's: the amending session gets them */
    gw_order *o = &gw->orders[idx];
    /* stage latency: timed when no other amend of the order is in flight, so the answer
     * that comes back is this one's */
    if (!o->pending) o->amend_ns = gw->clock_ns;
    const gw_instrument *in = &gw->instr[o->instr];
    ts_command out = {.kind = c->kind,
                      .side = o->side,
                      .symbol_id = in->symbol_id,
                      .account_id = gw->accounts[s->account].id,
                      .order_id = o->exch_id};
    if (c->kind == TS_CMD_REPLACE) {
        out.price = c->price;
        out.quantity = c->quantity;
        gw_book_replace(gw, idx, c);
    } else {
        o->pending++;
        gw_due_add(gw, o, 1);
    }
    stage_cmd(gw, &gw->shards[in->shard], &out);
}

static void take_mass_cancel(ts_gateway *gw, gw_session *s, const ts_command *c) {
    ts_command out = {.kind = TS_CMD_MASS_CANCEL,
                      .symbol_id = c->symbol_id,
                      .account_id = gw->accounts[s->account].id};
    if (!c->symbol_id) {
        for (uint32_t i = 0; i < gw->n_shards; i++) stage_cmd(gw, &gw->shards[i], &out);
        return;
    }
    uint32_t k = gw_keymap_get(&gw->instr_map, c->symbol_id);
    if (k == GW_NONE) stage_reject(gw, s, c, TS_REJ_UNKNOWN_SYMBOL);
    else stage_cmd(gw, &gw->shards[gw->instr[k].shard], &out);
}

/* `in_ring` is a slot of a ring the client maps and writes: it is read once, into a copy
 * the client cannot reach, and only the copy is checked and forwarded. Checking the slot in
 * place and reading it again to forward it would let a client that rewrites it between the
 * two send an order its risk limits never saw. The barrier keeps the compiler from
 * reloading fields from the slot in place of the copy. */
/* Whether a command would go to a shard marked down (a mass cancel of every symbol: to
 * any). An unknown symbol is not: the usual checks answer it. */
static int to_down_shard(const ts_gateway *gw, const ts_command *c) {
    if (c->kind == TS_CMD_MASS_CANCEL && !c->symbol_id) return gw->n_down != 0;
    uint32_t k = gw_keymap_get(&gw->instr_map, c->symbol_id);
    return k != GW_NONE && gw->shards[gw->instr[k].shard].down;
}

static inline void take_copied(ts_gateway *gw, gw_session *s, uint32_t slot,
                               const ts_command *c) {
    /* only a leaving session's ORDER_STATUS comes here (take_session answers the others):
     * its client is gone, and an answer held for the account's next session would be a
     * picture of an earlier time */
    if (__builtin_expect(c->kind == TS_CMD_ORDER_STATUS, 0)) return;
    if (__builtin_expect(gw->n_down != 0, 0) && to_down_shard(gw, c)) {
        stage_reject(gw, s, c, TS_REJ_SHARD_UNAVAILABLE);
        return;
    }
    switch (c->kind) {
    case TS_CMD_NEW_ORDER:
        take_new(gw, s, slot, c);
        break;
    case TS_CMD_CANCEL:
    case TS_CMD_REPLACE:
        take_amend(gw, s, slot, c);
        break;
    case TS_CMD_MASS_CANCEL:
        take_mass_cancel(gw, s, c);
        break;
    default:
        stage_reject(gw, s, c, TS_REJ_INVALID_COMMAND);
        break;
    }
}

static inline void take_command(ts_gateway *gw, gw_session *s, uint32_t slot,
                                const ts_command *in_ring) {
    ts_command cmd = *in_ring;
    __asm__ volatile("" ::: "memory");
    take_copied(gw, s, slot, &cmd);
}

/* ORDER_STATUS (gateway_status.c): its answer goes straight into the session's ring,
 * after what this pass staged for it (rejects of the commands before it, whose room is
 * counted), so that is pushed first. 0: it waits in the ring (taken on a later pass). */
static int take_status(ts_gateway *gw, gw_session *s, const ts_command *c, uint64_t *out_room) {
    if (s->staged) flush_session(s);
    if (s->staged) return 0; /* not reached: the stage had its room counted */
    const int r = gw_take_status(gw, s, c, out_room);
    if (r == GW_STATUS_WAIT) return 0;
    if (r) {
        if (*out_room < 1) return 0;
        *out_room -= 1;
        stage_reject(gw, s, c, r);
    }
    return 1;
}

/* The answers a command may owe at once (gw_due): two for an IOC or FOK order (ACCEPTED,
 * then its CANCELLED or completing fill), else one (its answer, or the gateway's reject).
 * Read from the copy the command is taken from, so what it is charged is what it is. */
static inline uint64_t answers_owed(const ts_command *c) {
    return 1 + (c->kind == TS_CMD_NEW_ORDER && (c->tif == TS_TIF_IOC || c->tif == TS_TIF_FOK));
}

/* Room in every shard stage (each command stages at most one record per shard, and one
 * stays free for a clock tick); 0 while a control call's backlog waits, so nothing
 * overtakes it. */
static uint32_t shard_room(const ts_gateway *gw) {
    const uint32_t tick = gw->cfg.clock_tick_us ? 1 : 0;
    uint32_t room = gw->cfg.max_batch;
    for (uint32_t i = 0; i < gw->n_shards; i++) {
        const gw_shard *sh = &gw->shards[i];
        if (sh->down) continue; /* nothing is staged for it: its commands are answered */
        if (sh->backlog.count || sh->staged + tick >= gw->cfg.max_batch) return 0;
        uint32_t r = gw->cfg.max_batch - sh->staged - tick;
        if (r < room) room = r;
    }
    return room;
}

/* A tick for each shard that has had none for IDLE_TICK_NS (see "the engine's clock"). */
static void idle_ticks(ts_gateway *gw) {
    for (uint32_t i = 0; i < gw->n_shards; i++) {
        gw_shard *sh = &gw->shards[i];
        if (!sh->down && !sh->backlog.count && sh->staged < gw->cfg.max_batch &&
            gw->real_ns - sh->tick_ns >= IDLE_TICK_NS)
            stage_tick(gw, sh, gw->real_ns);
    }
}

/* A session's commands. One the gateway answers itself (a reject: risk, throttle, an
 * invalid kind) leaves the session's inbound ring only once its answer is in the
 * session's event ring: taken with no room for the answer, it would wait in the stage,
 * in the pump's memory only, and a gateway that died then would lose it. So a session
 * takes commands only while its event ring has room for the answers each may owe at once
 * (answers_owed: two for an IOC or FOK) -- less the answers the
 * shards still owe it (s->due: commands taken in earlier passes whose answers are on
 * their way, which would otherwise overflow the ring and stall the shard) -- none while its
 * stage still holds events for a full ring -- a client that does not read its events
 * cannot keep sending either (until stalled_session_ms ends it) -- and the answers are
 * pushed before the commands are released. */
static uint64_t take_session(ts_gateway *gw, uint32_t slot, uint32_t max_batch) {
    gw_session *s = &gw->sessions[slot];
    if (s->staged) return 0;
    uint64_t room = shard_room(gw);
    uint64_t out_room = ts_ring_writable(s->out);
    /* less the room kept for the answers the shards still owe it */
    out_room = s->due <= 0 ? out_room : out_room > (uint64_t)s->due ? out_room - s->due : 0;
    if (max_batch < room) room = max_batch;
    uint64_t taken = 0;
    /* the readable records may wrap around the ring's end: two runs at most */
    for (int run = 0; run < 2 && taken < room; run++) {
        void *first;
        uint64_t n = ts_ring_peek(s->in, &first);
        if (n > room - taken) n = room - taken;
        if (!n) break;
        const ts_command *cmds = first;
        uint64_t i = 0;
        for (; i < n; i++) {
            ts_command cmd = cmds[i];
            __asm__ volatile("" ::: "memory");
            if (__builtin_expect(cmd.kind == TS_CMD_ORDER_STATUS, 0)) {
                if (!take_status(gw, s, &cmd, &out_room)) break; /* waits in the ring */
                continue;
            }
            const uint64_t owed = answers_owed(&cmd);
            if (owed > out_room) break; /* no room for its answers: it waits in the ring */
            out_room -= owed;
            take_copied(gw, s, slot, &cmd);
        }
        if (s->staged) flush_session(s); /* fits: no more taken than the ring had room */
        ts_ring_release(s->in, i);
        taken += i;
        if (i < n) break;
    }
    gw->st.commands_in += taken;
    return taken;
}

/* What a client sent before its session ended is taken as if the session went on: an
 * exchange acts on every message it received before a disconnect, then cancels what the
 * session leaves resting if it is cancel-on-disconnect (the caller does that next). Only
 * the routing differs: with no room to wait for, commands go to the shards' backlogs
 * (after whatever the stages and backlogs hold, as a control call's) and rejects to
 * `out`, to be held for the account's next session. What the ring held when this began is
 * taken, at most its capacity: a client still writing into it cannot keep the control
 * call going. A control call, under the lock. */
void gw_take_leaving(ts_gateway *gw, uint32_t slot, const ts_command *more, uint64_t n_more,
                     gw_leaving *out) {
    gw_session *s = &gw->sessions[slot];
    /* checked at the time of the last pass, as the session's last commands would have
     * been (throttles, stage latency); before any pass, now */
    if (!gw->clock_ns) gw->clock_ns = ts_mono_ns();
    gw->leaving = out;
    ts_ring_info info;
    ts_ring_read_info(s->in, &info);
    uint64_t budget = ts_ring_readable(s->in), taken = 0; /* what was sent when it ended */
    if (budget > info.capacity) budget = info.capacity;   /* indices the client garbled */
    while (taken < budget) {
        void *first;
        uint64_t n = ts_ring_peek(s->in, &first);
        if (n > budget - taken) n = budget - taken;
        if (!n) break;
        const ts_command *cmds = first;
        for (uint64_t i = 0; i < n; i++) take_command(gw, s, slot, &cmds[i]);
        ts_ring_release(s->in, n);
        taken += n;
    }
    for (uint64_t i = 0; i < n_more; i++) take_command(gw, s, slot, &more[i]);
    gw->leaving = NULL;
    gw->st.commands_in += taken + n_more;
    gw->st.commands_at_close += taken + n_more;
}

/* ---- events ------------------------------------------------------------------------------ */

static void note_trade(ts_gateway *gw, const ts_event *ev) {
    uint32_t k = gw_keymap_get(&gw->instr_map, ev->symbol_id);
    if (k != GW_NONE && ev->price > 0) gw->instr[k].last_trade = ev->price;
}

/* A finished order leaves the gateway's tables at once, but its pool slot waits in the
 * shard's FIFO until the event that finished it is released (gw_release_routed). */
static void retire(ts_gateway *gw, gw_shard *sh, uint32_t idx, uint64_t pos) {
    gw_order_forget(gw, idx);
    if (sh->retired_n == sh->retired_cap) { /* not reached: see retired_cap */
        gw_order_recycle(gw, idx);
        return;
    }
    uint32_t at = sh->retired_head + sh->retired_n++;
    if (at >= sh->retired_cap) at -= sh->retired_cap;
    struct gw_retired *r = &sh->retired[at];
    r->pos = pos;
    r->idx = idx;
}

/* One contiguous run of a shard's events, up to max; fewer (a stall) when an event's
 * session has no room even after pushing its stage, with *stalled set. The run is taken,
 * not released: gw_release_routed gives the ring back what has left the gateway. */
static uint64_t take_event_run(ts_gateway *gw, gw_shard *sh, uint64_t max, int *stalled) {
    void *first;
    uint64_t n = ts_ring_peek_from(sh->evt, sh->ahead, &first);
    const uint32_t shard = (uint32_t)(sh - gw->shards);
    if (n > max) n = max;
    const ts_event *evs = first;
    int64_t now = 0; /* stage latency: read once per run, when an order's first event comes */
    uint64_t i = 0;
    for (; i < n; i++) {
        const ts_event *ev = &evs[i];
        uint32_t idx = gw_find_exch(gw, ev->order_id);
        if (idx == GW_NONE) {
            if (ev->kind == TS_EV_TRADE) note_trade(gw, ev);
            gw->st.events_unknown++;
            continue;
        }
        gw_order *o = &gw->orders[idx];
        gw_session *s = o->session == GW_NONE ? NULL : &gw->sessions[o->session];
        int hold = gw_must_hold(gw, o); /* gateway.c: held for the account's next session */
        if (hold) s = NULL;
        if (s && s->staged == gw->cfg.max_batch) {
            flush_session(s);
            if (s->staged == gw->cfg.max_batch) {
                gw->st.event_stalls++;
                s->stalled = 1;
                *stalled = 1;
                break;
            }
        }
        if (ev->kind == TS_EV_TRADE) note_trade(gw, ev);
        const int answers_amend = gw_answers_amend(o, ev); /* before the event moves it */
        /* a given-up order's last command is the gateway's disconnect cancel, so with one
         * amend pending a reject answers that cancel, which no client sent */
        const int own_cancel = answers_amend && o->given_up && o->pending == 1;
        const uint16_t pending_before = o->pending;
        gw_apply_event(gw, idx, ev);
        if (own_cancel) {
            gw->st.disconnect_cancel_answers++;
        } else if (s) {
            s->stage_src[s->staged] = GW_STAGE_SRC(shard, sh->taken + i);
            ts_event *e = &s->stage[s->staged++];
            *e = *ev;
            e->order_id = o->client_id;
            e->contra_order_id = 0;
            if (answers_amend) e->flags &= ~TS_EVF_DONE;
            gw->st.events_routed++;
            if (gw->lat_ack && o->in_ns) { /* stage latency: the order's first event */
                if (!now) now = ts_mono_ns();
                ts_lat_record_inline(gw->lat_ack, now - o->in_ns, 1);
                o->in_ns = 0;
            }
            if (o->amend_ns && o->pending < pending_before) { /* it answered an amend */
                if (gw->lat_amend) {
                    if (!now) now = ts_mono_ns();
                    ts_lat_record_inline(gw->lat_amend, now - o->amend_ns, 1);
                }
                o->amend_ns = 0;
            }
        } else if (!hold || !gw_hold_event(gw, o, ev, answers_amend)) {
            gw->st.events_orphaned++;
        }
        if (gw_order_done(gw, idx)) retire(gw, sh, idx, sh->taken + i);
    }
    sh->taken += i;
    sh->ahead += i;
    gw->st.events_in += i;
    return i;
}

void gw_release_routed(ts_gateway *gw) {
    uint64_t keep_from[TS_GW_MAX_SHARDS]; /* the oldest position still in a stage */
    for (uint32_t i = 0; i < gw->n_shards; i++) keep_from[i] = gw->shards[i].taken;
    /* only a session whose ring was full still stages anything after the pass's flush */
    for (uint32_t slot = 0; slot < gw->n_sessions_used; slot++) {
        const gw_session *s = &gw->sessions[slot];
        if (!s->active) continue;
        /* a stage keeps each shard's events in their order: its first one of a shard is
         * its oldest, and the scan ends once it has seen every shard */
        uint64_t seen = 0;
        const uint64_t every = gw->n_shards == 64 ? ~UINT64_C(0) : (UINT64_C(1) << gw->n_shards) - 1;
        for (uint32_t j = s->stage_sent; j < s->staged && seen != every; j++) {
            const uint64_t src = s->stage_src[j];
            if (!src) continue;
            const uint32_t shard = (uint32_t)(src >> 56) - 1;
            if (seen & (UINT64_C(1) << shard)) continue;
            seen |= UINT64_C(1) << shard;
            const uint64_t pos = src & GW_SRC_POS_MASK;
            if (pos < (keep_from[shard] & GW_SRC_POS_MASK)) keep_from[shard] = pos;
        }
    }
    for (uint32_t i = 0; i < gw->n_shards; i++) {
        gw_shard *sh = &gw->shards[i];
        /* positions compare within the mask: 2^56 events per shard before they wrap */
        const uint64_t pinned = (sh->taken - keep_from[i]) & GW_SRC_POS_MASK;
        const uint64_t keep = pinned < sh->pin_max ? pinned : sh->pin_max;
        if (keep < pinned) { /* count what goes past the oldest staged event, once */
            const uint64_t oldest = sh->taken - pinned, before = sh->taken - sh->ahead;
            const uint64_t from = before > oldest ? before : oldest;
            if (sh->taken - keep > from) gw->st.events_unpinned += sh->taken - keep - from;
        }
        if (sh->ahead > keep) {
            ts_ring_release(sh->evt, sh->ahead - keep);
            sh->ahead = keep;
        }
        const uint64_t released = sh->taken - sh->ahead; /* every position below it */
        while (sh->retired_n && sh->retired[sh->retired_head].pos < released) {
            gw_order_recycle(gw, sh->retired[sh->retired_head].idx);
            sh->retired_head = sh->retired_head + 1 == sh->retired_cap ? 0 : sh->retired_head + 1;
            sh->retired_n--;
        }
    }
}

/* Route up to max_batch events of one shard (the readable ones may wrap around the
 * ring's end: two runs at most). */
static uint64_t take_events(ts_gateway *gw, gw_shard *sh, uint32_t max_batch) {
    uint64_t total = 0;
    int stalled = 0;
    for (int run = 0; run < 2 && total < max_batch && !stalled; run++) {
        uint64_t i = take_event_run(gw, sh, max_batch - total, &stalled);
        if (!i) break;
        total += i;
    }
    return total;
}

/* ---- the pass ---------------------------------------------------------------------------- */

static uint64_t pass(ts_gateway *gw, uint32_t max_batch, int64_t now) {
    if (!max_batch || max_batch > gw->cfg.max_batch) max_batch = gw->cfg.max_batch;
    gw->clock_ns = now;
    gw->real_ns = gw->cfg.clock_tick_us ? real_ns() : 0;
    gw->st.passes++;
    uint64_t work = 0;
    for (uint32_t i = 0; i < gw->n_shards; i++) work += flush_shard(gw, &gw->shards[i]);
    /* each pass starts one session further: a session that fills the shard stages on its
     * own cannot keep the ones after it waiting */
    const uint32_t n_slots = session_bound(gw);
    const uint32_t start = gw->first_session < n_slots ? gw->first_session : 0;
    int first = 1;
    for (uint32_t k = 0; k < n_slots; k++) {
        uint32_t slot = start + k < n_slots ? start + k : start + k - n_slots;
        if (!gw->sessions[slot].active) continue;
        if (first) { /* the next pass begins after this one */
            gw->first_session = slot + 1 < n_slots ? slot + 1 : 0;
            first = 0;
        }
        work += take_session(gw, slot, max_batch);
    }
    if (gw->real_ns) idle_ticks(gw);
    for (uint32_t i = 0; i < gw->n_shards; i++) flush_shard(gw, &gw->shards[i]);
    if (gw->replays_due) work += gw_replay_held(gw); /* before newer events of those orders */
    for (uint32_t i = 0; i < gw->n_shards; i++) work += take_events(gw, &gw->shards[i], max_batch);
    for (uint32_t slot = 0; slot < n_slots; slot++) {
        gw_session *s = &gw->sessions[slot];
        if (s->active && s->staged) flush_session(s);
    }
    gw_release_routed(gw);
    return work;
}

uint64_t ts_gateway_poll_at(ts_gateway *gw, uint32_t max_batch, int64_t now_ns) {
    pthread_mutex_lock(&gw->lock);
    uint64_t work = pass(gw, max_batch, now_ns);
    pthread_mutex_unlock(&gw->lock);
    return work;
}

uint64_t ts_gateway_poll(ts_gateway *gw, uint32_t max_batch) {
    return ts_gateway_poll_at(gw, max_batch, ts_mono_ns());
}

/* ---- waiting ----------------------------------------------------------------------------- */

/* Whether some stage or backlog still holds records for a full ring (after a pass:
 * n_sessions_used is current). */
static int output_pending(const ts_gateway *gw) {
    for (uint32_t i = 0; i < gw->n_shards; i++)
        if (gw->shards[i].staged || gw->shards[i].backlog.count) return 1;
    for (uint32_t slot = 0; slot < gw->n_sessions_used; slot++)
        if (gw->sessions[slot].active && gw->sessions[slot].staged) return 1;
    return 0;
}

static int waitv_supported = 1;

/* Sleep until a producer pushes to any ring the pump reads or a control call rings the
 * doorbell. Called under the lock (the rings are stable); the lock is dropped for the
 * sleep itself. */
static void park(ts_gateway *gw, const int32_t *stop) {
    struct gw_waitv wv[WAITV_MAX];
    /* what was parked: a session slot and generation (GW_NONE for a shard's ring), so a
     * session removed during the sleep — its ring maybe unmapped since — is not touched */
    struct {
        ts_ring *ring;
        uint32_t slot, gen;
    } parked[WAITV_MAX];
    uint32_t n = 0, np = 0;
    uint32_t bell = atomic_load_explicit(&gw->doorbell, memory_order_acquire);
    wv[n++] = (struct gw_waitv){.val = bell, .uaddr = (uintptr_t)&gw->doorbell, .flags = FUTEX_32};
    enum { SLEEP, AGAIN, TIMED } how = SLEEP;
    if (!waitv_supported) how = TIMED;
    /* records wait for room in a full ring: nothing signals room, so sleep bounded */
    /* an idle park wakes in time for the next idle clock tick (when ticks are on) */
    const int64_t idle_ns = gw->cfg.clock_tick_us ? IDLE_TICK_NS : 1000000000LL;
    const int64_t max_ns = output_pending(gw) ? PENDING_PARK_NS : idle_ns;
    /* while pending, a ring that holds records is left out of the wait: the pass that just
     * ran could not take them (they wait for the same room), so they must not wake us; one
     * whose first records came after that pass waits at most PENDING_PARK_NS */
    const uint32_t n_slots = session_bound(gw); /* one added since the pass is waited on too */
    for (uint32_t i = 0; how == SLEEP && i < gw->n_shards + n_slots; i++) {
        ts_ring *r;
        uint32_t slot = GW_NONE, gen = 0;
        if (i < gw->n_shards) {
            r = gw->shards[i].evt;
        } else {
            slot = i - gw->n_shards;
            gw_session *s = &gw->sessions[slot];
            if (!s->active) continue;
            r = s->in;
            gen = s->gen;
        }
        if (n == WAITV_MAX) {
            how = TIMED; /* more rings than one futex_waitv takes */
            break;
        }
        uint32_t *word, seen;
        /* a shard's ring still holds the events taken but not yet released: not new */
        const uint64_t taken = i < gw->n_shards ? gw->shards[i].ahead : 0;
        if (ts_ring_park_consumer_past(r, taken, &word, &seen)) {
            if (max_ns == PENDING_PARK_NS) continue; /* blocked behind the full ring */
            how = AGAIN; /* a record arrived while parking */
            break;
        }
        parked[np].ring = r;
        parked[np].slot = slot;
        parked[np++].gen = gen;
        wv[n++] = (struct gw_waitv){.val = seen, .uaddr = (uintptr_t)word, .flags = FUTEX_32};
    }
    if (how == SLEEP) gw->st.parks++;
    pthread_mutex_unlock(&gw->lock);
    if (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
        if (how == SLEEP) {
            /* absolute timeout: a safety net only when idle (every producer and control
             * call wakes us), the room check while output is pending */
            int64_t until = ts_mono_ns() + max_ns;
            struct timespec deadline = {.tv_sec = until / 1000000000LL,
                                        .tv_nsec = until % 1000000000LL};
            long rc = syscall(SYS_futex_waitv, wv, n, 0, &deadline, CLOCK_MONOTONIC);
            if (rc < 0 && errno == ENOSYS) waitv_supported = 0;
        } else if (how == TIMED) {
            struct timespec ts = {0, FALLBACK_PARK_NS};
            syscall(SYS_futex, (uint32_t *)&gw->doorbell, FUTEX_WAIT, bell, &ts, NULL, 0);
        }
    }
    pthread_mutex_lock(&gw->lock);
    for (uint32_t i = 0; i < np; i++) {
        uint32_t slot = parked[i].slot;
        if (slot != GW_NONE &&
            (!gw->sessions[slot].active || gw->sessions[slot].gen != parked[i].gen))
            continue; /* removed meanwhile: remove_session withdrew the mark */
        ts_ring_unpark_consumer(parked[i].ring);
    }
}

void ts_gateway_run(ts_gateway *gw, const int32_t *stop) {
    const ts_wait_strategy *w = &gw->cfg.wait;
    const int64_t yield_every = (int64_t)gw->cfg.yield_every_us * 1000;
    uint64_t idle = 0;
    int64_t last_yield = ts_mono_ns();
    pthread_mutex_lock(&gw->lock);
    while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
        const int64_t now = ts_mono_ns();
        if (yield_every && now - last_yield >= yield_every) {
            pthread_mutex_unlock(&gw->lock);
            sched_yield();
            pthread_mutex_lock(&gw->lock);
            gw->st.handoff_yields++;
            last_yield = ts_mono_ns();
        }
        uint64_t work = pass(gw, gw->cfg.max_batch, now);
        if (atomic_load_explicit(&gw->waiting, memory_order_relaxed)) {
            /* a control call waits: let it in before the next pass */
            pthread_mutex_unlock(&gw->lock);
            while (atomic_load_explicit(&gw->waiting, memory_order_relaxed)) sched_yield();
            pthread_mutex_lock(&gw->lock);
        }
        if (work) {
            idle = 0;
            continue;
        }
        idle++;
        /* a pause per idle pass for the first tenth of spin_iters, then a yield per pass
         * (see the top) up to spin_iters + yield_iters, then park */
        if (idle <= w->spin_iters / 10 || w->kind == TS_WAIT_BUSY_SPIN) {
            cpu_relax();
            continue;
        }
        if (w->kind == TS_WAIT_SPIN_YIELD || idle <= (uint64_t)w->spin_iters + w->yield_iters) {
            pthread_mutex_unlock(&gw->lock);
            sched_yield();
            pthread_mutex_lock(&gw->lock);
            last_yield = ts_mono_ns();
            continue;
        }
        park(gw, stop);
        last_yield = ts_mono_ns();
    }
    pthread_mutex_unlock(&gw->lock);
}
