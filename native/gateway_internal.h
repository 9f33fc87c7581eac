/*
 * gateway_internal.h — the gateway's tables, shared by gateway.c (setup, control, id
 * tables), gateway_owner.c (which session gets an order's events; events held for an
 * account's next session), gateway_ledger.c (what outlives the process; the restart),
 * gateway_held.c (the held events' log, which outlives it too),
 * risk.c (the checks and the accounting from events) and gateway_pump.c (the passes and
 * the wait). Not read by cffi.
 *
 * Everything the hot path touches is allocated at setup: the order pool and its two hash
 * tables, the per-shard command stages and the per-session event stages (an account's
 * held-event buffer by the control call that first parks one of its orders). A pass
 * allocates nothing. The per-account position rows (and their ledger cells) are reserved
 * for max_accounts but faulted in per account by the control call that makes the account
 * reachable to the pump (gw_account_live: its first session, a restored order, a drained
 * trade), so a pass does not fault on them either and idle accounts cost no memory.
 */
#ifndef TRADSYS_GATEWAY_INTERNAL_H
#define TRADSYS_GATEWAY_INTERNAL_H

#include "gateway.h"
#include "latency_hist.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#define GW_NONE UINT32_MAX
/* A session stage record's source (gw_session.stage_src): its shard's index + 1 in the
 * top byte, the event's position in that shard's ring (gw_shard.taken) below. */
#define GW_SRC_POS_MASK ((UINT64_C(1) << 56) - 1)
#define GW_STAGE_SRC(shard, pos) ((((uint64_t)(shard) + 1) << 56) | ((pos) & GW_SRC_POS_MASK))

enum gw_order_state { GW_PENDING_NEW = 1, GW_LIVE = 2, GW_DONE = 3 };

/* Exposure sums are exact 128-bit integers: a client may send any int64 price and
 * quantity, and no sum of those may wrap (the figures are clamped to int64 only when
 * read out). */
typedef __int128 gw_wide;

/* One order the gateway sent and has not seen finish (or whose cancel/replace answers
 * are still due). res_* is what the order holds in its account's open totals. */
typedef struct gw_order {
    uint64_t exch_id;     /* 0 = free slot */
    uint64_t client_id;
    int64_t price;        /* risk price (risk.c, gw_risk_price) */
    int64_t limit;        /* the price the engine holds: a limit, or a market-type order's
                           * protection price (0: none) */
    int64_t stop_price;   /* a stop's trigger price, else 0 */
    int64_t qty;          /* total quantity */
    int64_t leaves;
    int64_t res_qty;      /* held in the account's open same-side quantity */
    int64_t pend_qty;     /* worst case of the replaces in flight (res while pending) */
    int64_t pend_price;   /* the highest risk price they were checked at (risk.c) */
    gw_wide res_notional; /* held in the account's open notional */
    gw_wide pend_notional;
    uint32_t session;     /* slot, GW_NONE once the session is gone */
    uint32_t session_gen;
    uint32_t account;     /* account index */
    uint32_t instr;       /* instrument index */
    uint32_t sess_prev, sess_next; /* the session's list of orders */
    uint32_t next_free;
    uint8_t side;
    uint8_t state;        /* gw_order_state */
    uint16_t pending;     /* cancels/replaces sent and not answered */
    int64_t in_ns;        /* pass that took it, until its first event (stage latency) */
    /* pass that took a CANCEL/REPLACE of it while none was in flight, until the answer
     * (stage latency; 0: none timed) */
    int64_t amend_ns;
    uint8_t indexed;      /* in by_client (not done, and its client id known) */
    uint8_t orphan;       /* in its account's orphan list, waiting for a session */
    /* cancelled on its session's disconnect: no CANCEL or REPLACE reaches it any more,
     * but its client id stays taken until it is done, so a NEW cannot reuse the id while
     * the order's last events (a fill racing the cancel, the CANCELLED) are still due */
    uint8_t given_up;
    uint8_t type;         /* ts_order_type as sent */
    /* IOC or FOK: the engine ends it on its own, so besides its first answer a final one
     * (the CANCELLED of what did not fill, or the fill that completes it) is owed */
    uint8_t ends_on_its_own;
} gw_order;

typedef struct gw_position {
    gw_wide position;
    gw_wide open_buy;
    gw_wide open_sell;
} gw_position;

typedef struct gw_account {
    uint32_t id;
    int32_t killed;
    ts_risk_limits lim;
    int64_t open_orders;
    gw_wide open_notional;
    gw_wide filled_notional;
    gw_position *pos; /* per instrument index */
    int64_t tokens;   /* the account-wide throttle bucket, in 1e-9 tokens */
    int64_t last_ns;
    uint32_t orphans; /* first order waiting for a session (GW_NONE: none) */
    /* events of its orders that came while no session had them, for the next one (in
     * client ids), allocated when the account first has orders without a session */
    ts_event *held;
    uint64_t *held_seq; /* each one's record in the held-events log (0: memory only) */
    uint32_t held_n, held_sent;
    uint32_t replay_to; /* the session slot they go to, GW_NONE until one comes */
    uint32_t lslot;     /* its slot in the ledger (GW_NONE: none) */
    uint32_t hslot;     /* its delivery mark in the held-events log (GW_NONE: none) */
    /* events of its orders dropped instead of held (the cap, or no memory) since a login
     * last took the count (ts_gateway_take_dropped): the next session is told */
    uint64_t dropped;
    /* its rows (pos, and its ledger cells) are resident: made so by the control call that
     * first lets the pump reach them (gw_account_live); 0: they read as zeros */
    uint32_t live;
    uint32_t _pad0;
} gw_account;

typedef struct gw_instrument {
    uint32_t symbol_id;
    uint32_t shard;     /* shard index */
    int64_t reference;  /* configured reference price */
    int64_t last_trade; /* 0 before any trade seen */
    uint32_t lslot;     /* its slot in the ledger (GW_NONE: none) */
} gw_instrument;

/* A growable queue of commands made by control calls (kill, disconnect cancels). */
typedef struct gw_backlog {
    ts_command *cmds;
    uint64_t count, sent, cap;
} gw_backlog;

typedef struct gw_shard {
    uint32_t shard_id;
    ts_ring *cmd, *evt;
    ts_command *stage; /* commands of this pass, pushed in one batch */
    uint32_t staged, stage_sent;
    gw_backlog backlog;
    int64_t tick_ns; /* the time of the last CLOCK_TICK staged for it (CLOCK_REALTIME) */
    ts_lat_segment *lat;  /* stage-latency hand-off (gateway_latency.h); NULL: off */
    uint64_t lat_pushed;  /* commands ring head, counted locally */
    uint64_t lat_stamped; /* the end index last stamped */
    uint64_t lat_taken;   /* the ring's tail (commands taken) when last read */
    uint64_t lat_capacity; /* the commands ring's slots */
    /* Its event ring is read ahead of what is released: an event leaves the ring only
     * once it has left the gateway's memory too (pushed into a session's ring, held
     * through the log, or not routed), so a gateway that dies with events in a session's
     * stage leaves them in the ring for its successor (gw_release_routed). */
    uint64_t taken; /* events taken from its ring since the start, counted locally */
    uint64_t ahead; /* of those, the last ones not yet released */
    /* Its worker has been down longer than the gateway waits (ts_gateway_set_shard_down):
     * commands for it are answered SHARD_UNAVAILABLE, and its full stage holds back no
     * other shard's. */
    uint8_t down;
    uint64_t pin_max; /* a stage holds back at most this many: a client that stops reading
                       * must not fill the shard's ring for every other session */
    /* Orders finished by one of the events not yet released: their pool slots (and so
     * their ledger slots, which a successor names drained events by) are reused only
     * once that event is released. FIFO by position. */
    struct gw_retired {
        uint64_t pos;
        uint32_t idx;
    } *retired;
    uint32_t retired_cap, retired_head, retired_n;
} gw_shard;

typedef struct gw_session {
    int32_t active;
    uint32_t gen;
    uint32_t account;  /* account index */
    int32_t notify_fd;
    int32_t cancel_on_disconnect;
    int32_t explicit_cod; /* cancel_on_disconnect chosen at add, not from the account */
    ts_ring *in, *out;
    ts_event *stage;   /* events for the client, pushed once per pass */
    uint64_t *stage_src; /* per stage record: GW_STAGE_SRC of its shard event, 0 if none */
    uint32_t staged, stage_sent;
    uint32_t head;     /* first order of its list, GW_NONE if empty */
    int32_t stalled;   /* its full outbound ring held a shard's events back */
    int64_t tokens;    /* throttle bucket, in 1e-9 tokens */
    int64_t last_ns;
    /* answers the shards owe for its orders' commands (gw_due of each order on its list):
     * room its event ring keeps for them, so that a client that sends and never reads
     * stops itself at a full inbound ring instead of overflowing its event ring */
    int64_t due;
} gw_session;

/* Open-addressing table of order indices (linear probing, backward-shift deletion). */
typedef struct gw_table {
    uint32_t *slots; /* order index + 1; 0 = empty */
    uint64_t mask;
} gw_table;

/* Small key → index table (accounts, symbols). */
typedef struct gw_keymap {
    uint32_t *keys; /* 0 = empty (ids are > 0) */
    uint32_t *vals;
    uint64_t mask;
} gw_keymap;

struct ts_gateway {
    ts_gateway_config cfg;
    pthread_mutex_t lock;
    _Atomic uint32_t waiting;  /* control callers waiting for the lock */
    _Atomic uint32_t doorbell; /* futex word the control calls ring */
    int32_t global_kill;
    uint32_t n_shards, n_instr, n_accounts, n_sessions_used;
    uint32_t n_down; /* shards marked down: 0 costs the intake nothing */
    uint64_t next_id;
    uint32_t first_session; /* where the next pass starts its round of the sessions */
    gw_shard shards[TS_GW_MAX_SHARDS];
    gw_instrument *instr;
    gw_keymap instr_map;
    gw_account *accounts;
    gw_keymap account_map;
    /* every account's pos row, max_instruments each, in one anonymous mapping reserved at
     * new: a row costs memory only once gw_account_live faults it in */
    gw_position *pos_rows;
    size_t pos_bytes;
    gw_session *sessions;
    gw_order *orders;
    uint32_t free_head;
    gw_table by_exch, by_client;
    ts_gateway_stats st;
    int64_t clock_ns; /* the time of the current pass */
    int64_t real_ns;  /* CLOCK_REALTIME at the start of the pass (0: ticks are off) */
    ts_lat_hist *lat_ack; /* order → first event routed (gateway_latency.h); NULL: off */
    ts_lat_hist *lat_amend; /* cancel/replace → its answer routed; NULL: off */
    struct gw_ledger *ledger; /* gateway_ledger.c; NULL when none is attached */
    uint32_t replays_due;     /* accounts with held events and a session to take them */
    struct gw_held_log *held_log; /* gateway_held.c; NULL when none is attached */
    struct gw_drained *drained; /* events for ts_gateway_hold_drained (client ids) */
    uint64_t drained_n, drained_cap;
    uint64_t *drain_keys, *drain_vals, drain_mask; /* the ledger's exchange → client ids */
    /* While a leaving session's last commands are taken (gw_take_leaving, a control
     * call): their commands go to the shards' backlogs and their rejects here, not to the
     * stages, which are bounded by the rings' room. NULL otherwise. */
    struct gw_leaving *leaving;
    struct gw_status_key *status_keys; /* gateway_status.c: an answer's orders (max_orders) */
};

/* One order of an ORDER_STATUS answer, as it is sorted (gateway_status.c). */
typedef struct gw_status_key {
    uint64_t client_id;
    uint32_t idx;
    uint32_t _pad0;
} gw_status_key;

/* The rejects of a leaving session's last commands, for gw_hold_unread. */
typedef struct gw_leaving {
    ts_event *rejects;
    uint64_t n, cap;
} gw_leaving;

/* An event for an account's next session, found at start: in the held-events log, or
 * drained from a shard ring (raw: a REJECTED's DONE flag is settled once the orders are
 * restored; the exchange order id rides in contra_order_id until then). */
typedef struct gw_drained {
    ts_event ev;
    uint64_t seq; /* its record in the held-events log (0: none) */
    uint32_t raw;
    uint32_t _pad0;
} gw_drained;

/* gateway.c: tables */
uint32_t gw_keymap_get(const gw_keymap *m, uint32_t key);
uint32_t gw_find_exch(const ts_gateway *gw, uint64_t exch_id);
/* client ids are unique per account among its live orders */
uint32_t gw_find_client(const ts_gateway *gw, uint32_t account, uint64_t client_id);
/* the live order a CANCEL or REPLACE may name by its client id: not one given up */
uint32_t gw_find_amendable(const ts_gateway *gw, uint32_t account, uint64_t client_id);
/* ... and live in `symbol_id`: a CANCEL or REPLACE that names another symbol than its
 * order's is UNKNOWN_CLIENT_ID, as the engine's own rule (docs/matching.md); 0 names none
 * (the gateway knows the order's). */
uint32_t gw_find_amendable_in(const ts_gateway *gw, uint32_t account, uint64_t client_id,
                              uint32_t symbol_id);
/* gateway_status.c: answer a session's ORDER_STATUS straight into its event ring, whose
 * room the intake counted in *out_room (less what it uses). Its stage must be empty (the
 * caller pushes it first). 0: answered; GW_STATUS_WAIT: not yet (no room, or held events
 * go first); else a reject reason for the caller to stage. */
#define GW_STATUS_WAIT (-1)
int gw_take_status(ts_gateway *gw, gw_session *s, const ts_command *c, uint64_t *out_room);

/* gateway_owner.c: off the list it is on (its session's, or its account's orphans) */
void gw_session_unlink(ts_gateway *gw, uint32_t idx);

/* The answers a shard owes for an order's commands: its first event while it is new, its
 * final one while an IOC or FOK lives (an IOC answers twice -- ACCEPTED, then CANCELLED or
 * the fill that completes it -- and counting one let a client that sends IOCs and reads
 * nothing fill its event ring with the second answers, holding its shard back until it was
 * ended as a slow consumer), and one per cancel or replace in flight (what gw_apply_event
 * counts down). */
static inline int64_t gw_due(const gw_order *o) {
    const int live = o->state == GW_PENDING_NEW || o->state == GW_LIVE;
    return (o->state == GW_PENDING_NEW) + (live && o->ends_on_its_own) + (int64_t)o->pending;
}

/* An order's owed answers changed by d: its session's count follows. */
static inline void gw_due_add(ts_gateway *gw, const gw_order *o, int64_t d) {
    if (o->session != GW_NONE) gw->sessions[o->session].due += d;
}
/* route the order's events to session `slot` from now on (a cancel/replace from it) */
void gw_take_over(ts_gateway *gw, uint32_t idx, uint32_t slot);
void gw_link_orphan(ts_gateway *gw, uint32_t idx);
void gw_index_exch(ts_gateway *gw, uint32_t idx);
/* held events: an order without a session (or one whose new session has not had the
 * account's held events yet) has its events kept, up to TS_GW_HELD_EVENTS per account */
static inline int gw_must_hold(const ts_gateway *gw, const gw_order *o) {
    if (o->orphan) return 1;
    if (!gw->replays_due) return 0; /* the usual case: one load */
    const gw_account *acc = &gw->accounts[o->account];
    return acc->held_n != acc->held_sent && acc->replay_to != GW_NONE &&
           o->session == acc->replay_to;
}
/* 0: no room; answers_amend: gw_answers_amend of the event, taken before it was applied */
int gw_hold_event(ts_gateway *gw, const gw_order *o, const ts_event *ev, int answers_amend);
/* keep an event already in client ids (and in the log as `seq`, 0 if not) */
int gw_keep_held(ts_gateway *gw, uint32_t account, const ts_event *ev, uint64_t seq);
int gw_held_buffer(gw_account *acc); /* the account's held-event buffer; 0: no memory */
uint64_t gw_replay_held(ts_gateway *gw);
/* One account's held events to the session in its replay_to (not GW_NONE), as its ring
 * has room; returns how many went. */
uint64_t gw_replay_account(ts_gateway *gw, uint32_t a);
/* a leaving session's unread events (the caller's `taken`, its ring, its stage) become
 * the account's held events, ahead of those pending (remove_session, a control call) */
void gw_hold_unread(ts_gateway *gw, uint32_t slot, const ts_event *taken, uint64_t n_taken,
                    const ts_event *after, uint64_t n_after);
/* gateway_pump.c: a leaving session's last commands -- what its inbound ring holds, then
 * `more` (sent by its client, kept by the caller for want of room) -- checked and sent as
 * if the session went on; their rejects are returned in *out (the caller frees
 * out->rejects) and held after its unread events */
void gw_take_leaving(ts_gateway *gw, uint32_t slot, const ts_command *more, uint64_t n_more,
                     gw_leaving *out);
/* Release from each shard's event ring what the gateway no longer holds in memory: every
 * event taken up to the oldest one still waiting in a session's stage (gateway_pump.c). */
void gw_release_routed(ts_gateway *gw);
/* evs[0..n) of one account (client ids, oldest first) held ahead of those pending, up to
 * the cap (ORDER_STATUS answers left out); total - kept are counted dropped. Returns how
 * many were kept, moved to the front of evs. */
uint64_t gw_hold_ahead(ts_gateway *gw, uint32_t account, ts_event *evs, uint64_t n,
                       uint64_t total);
/* the unread records of a session's outbound ring (consumer to producer index), up to max
 * into dst; with count_only, just how many; 0 if the indexes are garbage */
uint64_t gw_ring_unread(ts_ring *out, ts_event *dst, uint64_t max, int count_only);
void gw_index_client(ts_gateway *gw, uint32_t idx);
void gw_unindex_client(ts_gateway *gw, uint32_t idx);
uint32_t gw_order_alloc(ts_gateway *gw, uint32_t session);
/* Fault [p, p + bytes) in writable, contents kept (MADV_POPULATE_WRITE, else a touch of
 * each page): a control or setup call, so that the pump does not fault there. */
void gw_populate(void *p, size_t bytes);
/* Make the account's rows resident before the pump can reach them (a control call;
 * idempotent): its pos row, and its ledger row (zeroed first if this run never used it). */
void gw_account_live(ts_gateway *gw, uint32_t account);
void gw_backlog_add(gw_backlog *b, const ts_command *c);

/* gateway_ledger.c: what outlives the process (see gateway.h) */
void gw_ledger_note_order(ts_gateway *gw, uint32_t idx);
/* count a trade into the account's position and filled notional, once per exec id */
void gw_ledger_trade(ts_gateway *gw, uint32_t account, uint32_t instr, const ts_event *ev);
void gw_ledger_note_account(ts_gateway *gw, uint32_t account);
void gw_ledger_note_kill(ts_gateway *gw);
void gw_ledger_note_instrument(ts_gateway *gw, uint32_t instr);
/* the account's row of cells resident, and zeroed if this run has not used it yet */
void gw_ledger_open_row(ts_gateway *gw, uint32_t account);

/* gateway_held.c: the held-events log (see gateway.h); every call is a no-op without one */
uint64_t gw_held_append(ts_gateway *gw, uint32_t account, const ts_event *ev); /* its seq */
uint64_t gw_held_append_drained(ts_gateway *gw, uint32_t account, const ts_event *ev);
void gw_held_kept(ts_gateway *gw, uint64_t seq); /* a record now held in memory */
/* `count` held events of the account, the last with log seq `last_seq`, were pushed
 * (count 0: only empty the log if nothing in it is waiting) */
void gw_held_delivered(ts_gateway *gw, uint32_t account, uint64_t last_seq, uint64_t count);
void gw_held_note_account(ts_gateway *gw, uint32_t account);
/* write the account's whole pending list evs[0..n) again as one batch that supersedes
 * its undelivered records (the first n_new are new: seqs[n_new..n) are the old records');
 * 1 with seqs[] the new records, 0 when it cannot be written (seqs untouched) */
int gw_held_rewrite(ts_gateway *gw, uint32_t account, const ts_event *evs, uint64_t *seqs,
                    uint32_t n_new, uint32_t n);
int gw_held_seen(const ts_gateway *gw, const ts_event *ev); /* a drained event in the log */
void gw_held_forget_seen(ts_gateway *gw);
/* Events read back from a dead session's ring (held again): a drained copy is not new. */
void gw_held_note_seen(ts_gateway *gw, const ts_event *evs, uint64_t n);
void gw_held_free(ts_gateway *gw);
/* gateway_ledger.c: one more event for ts_gateway_hold_drained; -1: no memory */
int gw_keep_drained(ts_gateway *gw, const ts_event *ev, uint64_t seq, uint32_t raw);

/* risk.c: the checks (return a reject reason or 0) and the accounting */
void gw_throttle_reset(gw_session *s, const ts_risk_limits *lim, int64_t now);
void gw_account_throttle_reset(gw_account *acc, int64_t now);
void gw_book_restored(ts_gateway *gw, uint32_t idx, int64_t risk_price);
int64_t gw_risk_price(const gw_instrument *in, uint8_t type, int64_t price, int64_t stop_price);
/* a NEW that passes gets its instrument, its risk price and the price it is sent with (its
 * own, or the market-order protection price risk.c gives a market-type order) */
int gw_check_new(ts_gateway *gw, gw_session *s, const ts_command *c, uint32_t *instr_out,
                 int64_t *risk_price_out, int64_t *send_price_out);
int gw_check_replace(ts_gateway *gw, gw_session *s, const ts_command *c, uint32_t *order_out);
void gw_book_new(ts_gateway *gw, uint32_t idx, int64_t risk_price);
void gw_book_replace(ts_gateway *gw, uint32_t idx, const ts_command *c);
/* apply one shard event to its order (found by exchange id); the caller routes it, then
 * calls gw_finish_if_done, which frees the order once nothing more can come for it */
void gw_apply_event(ts_gateway *gw, uint32_t idx, const ts_event *ev);
void gw_order_forget(ts_gateway *gw, uint32_t idx); /* out of every table and list */

/* Whether the engine's event is a REJECTED answering a CANCEL or REPLACE of the order
 * rather than its NEW (the engine answers the NEW first: until then the order is pending
 * new). Asked before the event is applied. The engine marks every reject DONE, but such
 * a reject ends nothing the client can count on: it reaches the client without DONE even
 * when a fill has finished the order meanwhile and freed its client id, which a NEW may
 * already have reused. */
static inline int gw_answers_amend(const gw_order *o, const ts_event *ev) {
    return ev->kind == TS_EV_REJECTED && o->state != GW_PENDING_NEW;
}

/* finished, nothing pending (inline: twice per order on the pump's path) */
static inline int gw_order_done(const ts_gateway *gw, uint32_t idx) {
    const gw_order *o = &gw->orders[idx];
    return o->state == GW_DONE && o->pending == 0;
}

/* back to the pool's free list */
static inline void gw_order_recycle(ts_gateway *gw, uint32_t idx) {
    gw->orders[idx].next_free = gw->free_head;
    gw->free_head = idx;
}

/* gateway_latency.c: stamp a shard's hand-off slot before pushing what it holds */
void gw_latency_before_push(gw_shard *sh, int64_t pass_ns);

#endif /* TRADSYS_GATEWAY_INTERNAL_H */
