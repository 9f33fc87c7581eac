/*
 * gateway.h — the order-entry gateway's pump: client sessions → pre-trade risk → shard
 * command rings, and shard execution events → the session that owns the order.
 *
 * One ts_gateway lives in the gateway process's memory. The pump (ts_gateway_poll or
 * ts_gateway_run, one thread) pops each session's inbound ring of COMMAND records, checks
 * each command (validation, kill switch, throttle, risk), pushes what passes in batches to
 * its shard's command ring and answers what fails with a REJECTED event naming the reason
 * on the session's outbound ring: a rejected command never reaches a shard. The other
 * way, it pops each shard's event ring, keeps the accounts' open orders, notional and
 * positions from the events, and forwards each event to the owning session with the
 * client's own order id.
 *
 * Identities: a client puts its client order id in ts_command.order_id. The gateway
 * assigns the exchange order id, (epoch << TS_GW_EPOCH_SHIFT) | counter, so ids grow
 * strictly (the engine requires it) and a restarted gateway with a larger epoch never
 * reuses a live one. account_id is overwritten with the session's account; on the way
 * back order_id is the client id again and contra_order_id is zeroed.
 *
 * Threads: the control calls (sessions, accounts, kill, stats) may come from any thread
 * while the pump runs; they take the gateway's lock, which the pump holds only during a
 * pass, and ring the pump's doorbell. Setup calls (shards, instruments) come first. Once
 * ts_gateway_remove_session returns, the pump never touches that session's rings or
 * eventfd again (even a pump that was parked on its ring), so they may be freed at once.
 *
 * Declarations only (cffi reads this file); the definitions are in gateway*.c and risk.c.
 */
#ifndef TRADSYS_GATEWAY_H
#define TRADSYS_GATEWAY_H

#include <stdint.h>

#include "order_image.h"
#include "ring.h"
#include "wire.h"

#define TS_GW_EPOCH_SHIFT 40
#define TS_GW_MAX_EPOCH 16777215
#define TS_GW_MAX_SHARDS 64
#define TS_GW_HELD_EVENTS 4096 /* events kept per account while it has no session */
#define TS_GW_HELD_LOG 65536   /* records per half of the held-events log */

/* Status codes of the control calls (>= 0 is success). */
enum ts_gw_status {
    TS_GW_OK = 0,
    TS_GW_ERR_ARGUMENT = -1,  /* a bad value: see the function's comment */
    TS_GW_ERR_FULL = -2,      /* a table is at its configured maximum */
    TS_GW_ERR_UNKNOWN = -3,   /* no such shard, account, symbol or session */
    TS_GW_ERR_EXISTS = -4,    /* already there (shard, instrument) */
    TS_GW_ERR_NOMEM = -5
};

/* An account's pre-trade limits; 0 means "no limit" for each. */
typedef struct ts_risk_limits {
    int64_t max_order_qty;      /* lots per order */
    int64_t max_order_notional; /* price × quantity per order */
    int64_t price_collar_bps;   /* |price − reference| ≤ reference × bps / 10000 */
    int64_t max_open_orders;    /* orders sent and not finished */
    int64_t max_position;       /* |position + open same-side qty + order| per symbol */
    int64_t credit_limit;       /* open notional + filled notional + order notional */
    int64_t throttle_per_s;     /* token bucket of each of the account's sessions */
    int64_t throttle_burst;     /* bucket depth; 0 = throttle_per_s */
    int64_t account_throttle_per_s; /* one token bucket shared by all its sessions */
    int64_t account_throttle_burst; /* its depth; 0 = account_throttle_per_s */
    int32_t cancel_on_disconnect;
    int32_t _pad0;
} ts_risk_limits;

typedef struct ts_gateway_config {
    uint32_t max_sessions;
    uint32_t max_accounts;
    uint32_t max_instruments;
    uint32_t max_batch;   /* commands taken per session and events per shard per pass */
    uint64_t max_orders;  /* orders tracked at once (sent and not finished) */
    uint32_t epoch;       /* 1..TS_GW_MAX_EPOCH, larger than any earlier incarnation's */
    uint32_t clock_tick_us; /* the engine clock's resolution: a CLOCK_TICK goes before a
                             * shard's commands once the last is this old (0: the pump
                             * sends no ticks; see gateway_pump.c, "the engine's clock") */
    uint32_t yield_every_us; /* ts_gateway_run yields the CPU at least this often, busy or
                              * not (0: only when idle; see gateway_pump.c, "Hand-off") */
    uint32_t _pad1;
    ts_wait_strategy wait; /* what ts_gateway_run does when a pass found nothing */
} ts_gateway_config;

/* Counters, read as a copy. rejects[r] counts gateway rejects of reason r. */
typedef struct ts_gateway_stats {
    uint64_t passes;
    uint64_t commands_in;        /* commands taken from sessions */
    uint64_t commands_out;       /* records pushed to shards (incl. kill / disconnect cancels
                                  * and clock ticks) */
    uint64_t events_in;          /* events taken from shards */
    uint64_t events_routed;      /* events delivered to a session */
    uint64_t events_unknown;     /* events for an order id the gateway does not know: dropped */
    uint64_t events_orphaned;    /* events for an order no session gets: dropped */
    uint64_t events_held;        /* events kept for the account's next session */
    uint64_t event_stalls;       /* passes that left events in a shard ring (a session full) */
    uint64_t parks;              /* times ts_gateway_run slept */
    uint64_t handoff_yields;     /* yields after yield_every_us of running (see the pump) */
    uint64_t sessions;
    uint64_t live_orders;
    uint64_t clock_ticks;        /* CLOCK_TICK commands staged for the shards */
    uint64_t orders_adopted;     /* orders taken over by another session of their account */
    uint64_t orders_restored;    /* orders rebuilt from the workers' images at start */
    uint64_t restore_skipped;    /* image orders of an unknown account or symbol */
    uint64_t restore_no_client_id; /* restored orders whose client id the ledger lacked */
    uint64_t recovery_events;    /* events drained before the restore (ts_gateway_drain) */
    uint64_t events_held_restored; /* held events an earlier gateway left in the log */
    uint64_t events_held_volatile; /* held in memory only: the log was full (or no slot) */
    uint64_t recovery_duplicates;  /* drained events the log held already: not kept again */
    uint64_t events_unread_held;   /* events a session's client had not read when the session
                                    * ended: held for the account's next session */
    uint64_t events_unread_dropped; /* of those, beyond the account's TS_GW_HELD_EVENTS */
    uint64_t events_unpinned; /* released from a shard's ring while a stage still held an
                               * earlier event (the stage had held back pin_max already) */
    uint64_t commands_at_close; /* commands a session's client sent that were taken as its
                                 * session was removed (in commands_in too) */
    uint64_t disconnect_cancel_answers; /* rejects of the gateway's own disconnect cancels
                                         * (the order had ended first): no client's */
    uint64_t status_requests;   /* ORDER_STATUS requests answered (gateway_status.c) */
    uint64_t status_orders;     /* ORDER_STATUS records of orders in those answers */
    uint64_t accounts_live;     /* accounts whose position rows are resident: those given a
                                 * session, a restored order or a drained trade */
    uint64_t rejects[64];
} ts_gateway_stats;

/* An account's risk state, read as a copy (the gateway counts in 128 bits; a figure
 * beyond int64 reads as INT64_MAX / INT64_MIN). */
typedef struct ts_account_state {
    int64_t open_orders;
    int64_t open_notional;
    int64_t filled_notional;
    int32_t killed;
    int32_t _pad0;
} ts_account_state;

/* One symbol of one account: the position from fills and the open quantities. */
typedef struct ts_position_state {
    int64_t position; /* bought − sold, lots */
    int64_t open_buy;
    int64_t open_sell;
} ts_position_state;

/* One row of ts_gateway_figures: an account's risk state (symbol_id 0: a = open orders,
 * b = open notional, c = filled notional) or one of its non-flat positions (a =
 * position, b = open buy, c = open sell). */
typedef struct ts_figure_row {
    uint32_t account_index; /* the account's place in the gateway's table */
    uint32_t account_id;
    uint32_t symbol_id; /* 0: the account's own row */
    int32_t killed;
    int64_t a;
    int64_t b;
    int64_t c;
} ts_figure_row;

typedef struct ts_gateway ts_gateway;

/* NULL on a bad configuration (a zero maximum, an epoch out of range) or no memory. */
ts_gateway *ts_gateway_new(const ts_gateway_config *cfg);
void ts_gateway_free(ts_gateway *gw);

/* Setup, before the pump runs. The gateway produces into `commands` and consumes
 * `events`; the rings stay the caller's and must outlive the gateway. */
int ts_gateway_add_shard(ts_gateway *gw, uint32_t shard_id, ts_ring *commands, ts_ring *events);
int ts_gateway_add_instrument(ts_gateway *gw, uint32_t symbol_id, uint32_t shard_id,
                              int64_t reference_price);

/* Add an account or replace its limits (hot reload; open state is kept, and the
 * throttle of its live sessions follows the new rate). */
int ts_gateway_set_account(ts_gateway *gw, uint32_t account_id, const ts_risk_limits *limits);

/* How many events of the account's orders the gateway dropped instead of keeping them for
 * its next session (past the TS_GW_HELD_EVENTS it keeps per account) since this was last
 * called, and counting starts again: what a login tells the new session (LOGIN_ACCEPTED
 * events_dropped), so that a client knows to ask for ORDER_STATUS. A control call; 0
 * for an unknown account. */
uint64_t ts_gateway_take_dropped(ts_gateway *gw, uint32_t account_id);

/* Put back `n` that ts_gateway_take_dropped gave a login whose client may never have read
 * them (its session ended with nothing heard from it): the next login is told them
 * again. Over-telling costs a client one ORDER_STATUS; under-telling could leave it
 * trading on a stale picture. A control call; nothing for an unknown account. */
void ts_gateway_return_dropped(ts_gateway *gw, uint32_t account_id, uint64_t n);

/* A session trading for `account_id`: the gateway consumes `inbound` (COMMAND records)
 * and produces into `outbound` (EVENT records), writing 8 bytes to notify_fd (an
 * eventfd; -1 = none) after a pass that pushed to it. cancel_on_disconnect: 0, 1, or -1
 * for the account's setting. Returns the session id (>= 0) or a ts_gw_status. */
int64_t ts_gateway_add_session(ts_gateway *gw, uint32_t account_id, ts_ring *inbound,
                               ts_ring *outbound, int32_t notify_fd, int32_t cancel_on_disconnect);

/* Detach a session: its rings are no longer touched once this returns. First, what its
 * client sent and the pump had not taken yet (the inbound ring's records) is taken as
 * a pass would, checked and sent to the shards, an exchange acting on every message it
 * received before a disconnect (commands_at_close); rejects among them are held with its
 * unread events (below). Then, with
 * cancel_on_disconnect each of its live orders gets a CANCEL to its shard (newest first);
 * what such an order does before the cancel lands (a fill racing it) and the CANCELLED
 * go where an order's events go without it (below); a REJECTED answering such a cancel
 * (the order had ended before it landed) goes nowhere: the client sent no cancel
 * (disconnect_cancel_answers). No session can cancel or replace it
 * any more (UNKNOWN_CLIENT_ID), but its client id stays taken until it is done: a NEW
 * reusing the id is DUPLICATE_CLIENT_ID until then. Without it, its
 * orders belong to the account still: the account's other live session takes them over
 * (the one its held events go to, if one does; else the one with the lowest slot), or, if
 * there is none, the account's next session does when it is added; until then their
 * events update the account and are kept (up to TS_GW_HELD_EVENTS, then dropped and
 * counted in events_orphaned) for that session, which gets them first, in order, before
 * any newer event of those orders. A session may also cancel or replace (by client id)
 * any live order of its account, and takes it over by doing so: client order ids are
 * unique per account among its live orders.
 * Unread events: whatever the session's client had not taken from its outbound ring (from
 * the consumer's index to the gateway's), and what the pump had routed to it but not yet
 * pushed, become held events of the account too -- ahead of every event held after them,
 * in their order, through the held-events log like any held event -- whatever the
 * cancel_on_disconnect (the account's other live session gets them, or its next one).
 * Beyond TS_GW_HELD_EVENTS pending for the account, the newest of them are dropped
 * (events_unread_dropped, events_orphaned). A consumer index outside the ring (a client
 * that wrote garbage into it) gives nothing back. */
int ts_gateway_remove_session(ts_gateway *gw, int64_t session_id);

/* ts_gateway_remove_session for a caller that consumes the outbound ring itself and had
 * taken n events out of it that its client never got (a TCP connection that broke before
 * they were written): they are held first, ahead of what the ring still holds. */
int ts_gateway_remove_session_unread(ts_gateway *gw, int64_t session_id, const ts_event *taken,
                                     uint64_t n);

/* ts_gateway_remove_session_unread for a caller that also keeps commands its client sent
 * that found no room in the session's inbound ring (a TCP session's backlog): they are
 * taken after what the ring holds. */
int ts_gateway_remove_session_with(ts_gateway *gw, int64_t session_id, const ts_event *taken,
                                   uint64_t n, const ts_command *unsent, uint64_t n_unsent);

/* Kill switch of one account (account_id > 0) or of all (0): on = 1 blocks new orders
 * and replaces (KILL_SWITCH) and sends MASS_CANCEL for the account (0 = every account)
 * to every shard; on = 0 lifts the block. */
int ts_gateway_kill(ts_gateway *gw, uint32_t account_id, int32_t on);

/* Send MASS_CANCEL for one account (0 = every account) to every shard, after anything
 * already sent; blocks nothing (see ts_gateway_kill for that). */
int ts_gateway_mass_cancel(ts_gateway *gw, uint32_t account_id);

/* Mark a shard's worker down (down = 1) or running again (0). While it is down, every
 * command for its symbols -- new order, replace, cancel, a mass cancel that reaches it --
 * is answered SHARD_UNAVAILABLE and changes nothing, instead of waiting unanswered in a
 * ring no worker reads (and, once the pump's stage for it is full, holding back every
 * other shard's commands too). What the pump had taken for it before stays queued for
 * the worker's return. The gateway process decides when a worker has been down too long. */
int ts_gateway_set_shard_down(ts_gateway *gw, uint32_t shard_id, int32_t down);

/* The operator's trading-phase control for one symbol (symbol_id > 0) or for every
 * symbol of every shard (0): control is a ts_control_code from SESSION_OPEN to
 * AUCTION_UNCROSS (HALT, RESUME, AUCTION_START, ...; CLOCK_TICK is the pump's own). The
 * CONTROL command reaches the symbol's shard after every command already sent; the engine
 * answers with its STATUS market data, or rejects a control its phase does not allow.
 * TS_GW_ERR_UNKNOWN for a symbol the gateway does not route, ARGUMENT for another code. */
int ts_gateway_market_control(ts_gateway *gw, uint32_t symbol_id, uint8_t control);

/* One pass over every session and shard; returns the records moved (0 = idle). Reads
 * CLOCK_MONOTONIC once, for the throttles. _at takes the time from the caller (tests). */
uint64_t ts_gateway_poll(ts_gateway *gw, uint32_t max_batch);
uint64_t ts_gateway_poll_at(ts_gateway *gw, uint32_t max_batch, int64_t now_ns);

/* Poll until *stop becomes non-zero, waiting per the configured strategy when idle.
 * After setting *stop, call ts_gateway_wake so a parked pump sees it. */
void ts_gateway_run(ts_gateway *gw, const int32_t *stop);
void ts_gateway_wake(ts_gateway *gw);

/* ---- restart (gateway_ledger.c) -----------------------------------------------------
 * A gateway process may die at any instruction; its successor rebuilds the state of the
 * orders it had sent from two sources that outlive it:
 *   - the ledger, a caller-provided block of memory (a file mapping) the gateway keeps
 *     as it runs: the client id of every order it sends (written before the order is
 *     pushed), and per account and symbol the position and filled notional (each cell
 *     double-buffered and committed by one store of the exec id of the last trade it
 *     holds, so a torn update is never seen and a trade seen twice counts once);
 *   - the workers' order images (order_image.h): which orders still live, with leaves.
 * Order at start: accounts and instruments, ts_gateway_attach_ledger, ts_gateway_drain
 * until every image is served and the event rings are empty, ts_gateway_restore with
 * each image, ts_gateway_hold_drained, and only then sessions and the pump. */

/* Bytes of ledger memory this gateway needs (its maximums fix the layout). */
uint64_t ts_gateway_ledger_size(const ts_gateway *gw);

/* Use mem (size bytes, 16-byte aligned, to stay mapped until ts_gateway_free) as the
 * ledger. A ledger of the same run_id and layout whose accounts and symbols agree is
 * carried over: positions, filled notional, last trade prices and the kill switches are
 * loaded (returns 1).
 * Otherwise it is formatted (returns 0), keeping the client ids of a ledger of the same
 * layout (exchange ids never repeat). TS_GW_ERR_ARGUMENT: too small or misaligned. */
int ts_gateway_attach_ledger(ts_gateway *gw, void *mem, uint64_t size, uint64_t run_id);

/* Hand a ledger over from one run to the next: if mem holds a ledger of run `from_run`,
 * make it `to_run`'s (one store), so the next run's gateway carries it over (returns 1;
 * 0 when it is another run's, not a ledger, or too short). A run continues the ledger
 * of the run before it, stopped or killed, unless it is started as a new trading day
 * (tradsys.cores.supervisor). No gateway may run. */
int ts_gateway_ledger_adopt(void *mem, uint64_t size, uint64_t from_run, uint64_t to_run);

/* The run whose ledger mem holds (its run_id), or 0 when it holds no ledger of this
 * layout version, or is too short. */
uint64_t ts_gateway_ledger_run(const void *mem, uint64_t size);

/* Before the pump runs: take up to max events from each shard's event ring and count
 * their trades into positions and filled notional (through the ledger, so a trade the
 * dead gateway had counted is not counted again); nothing is routed. Returns the events
 * taken. */
uint64_t ts_gateway_drain(ts_gateway *gw, uint32_t max);

/* After the restores: keep the events ts_gateway_drain took, in their client ids (from
 * the restored orders, or the ledger for orders that ended meanwhile), as held events for
 * each account's next session (see ts_gateway_remove_session). Events the dead gateway had
 * routed but not yet released come again this way: a client tells them by exec_id. As
 * routed by the pump, a REJECTED keeps the engine's DONE flag only when it answers a NEW,
 * never when it answers a CANCEL or REPLACE. Returns how many were kept. */
int64_t ts_gateway_hold_drained(ts_gateway *gw);

/* Before any session: the events a dead gateway had routed to one of its sessions and
 * that session's client never read -- the outbound ring `out`, which outlives the dead
 * gateway in /dev/shm, from the consumer's index to the producer's -- become held events
 * of the session's account, ahead of those already held (from the held-events log: they
 * were routed later), through the log, up to TS_GW_HELD_EVENTS; the rest, and events of
 * an account this gateway does not know, are dropped and counted (events_unread_dropped).
 * The ring is only read. A client still alive may have read some of them meanwhile: they
 * come again, with their exec_id. Returns how many were kept. */
int64_t ts_gateway_hold_stale_ring(ts_gateway *gw, ts_ring *out);

/* Before any session: rebuild n live orders from a worker's image. Each belongs to its
 * account (taken over by the account's first session), holds its exposure as a live
 * order does, and gets its client id back from the ledger (without one it is reachable
 * only by mass cancel and the kill switch). Returns how many were restored. */
int64_t ts_gateway_restore(ts_gateway *gw, const ts_live_order *orders, uint64_t n);

/* ---- held events that outlive the process (gateway_held.c) --------------------------
 * Events held for an account without a session are also written to a log in caller
 * memory (a file mapping, like the ledger), each record crc'd, and marked delivered once
 * pushed to a session's ring; the log is emptied when everything in it is delivered.
 * A successor that attaches the log gets the undelivered ones back, in order, ahead of
 * anything it drains, for each account's next session. The guarantee: a held event
 * reaches a session ring of its account, and is lost to no crash of the gateway process;
 * it comes a second time (with the same exec_id) only if the gateway died in the moment
 * between pushing it and marking it. A session that ends before its client read its ring
 * gives the unread events back (ts_gateway_remove_session): the account's pending held
 * events are then written again as one batch, the unread first, and the batch supersedes
 * the records it repeats only once it is whole. A gateway that dies while its client has
 * not read its ring takes those events with it (the ring is the client's copy).
 * Order at start: after ts_gateway_attach_ledger and before ts_gateway_drain. */

/* Bytes of held-events log this gateway needs (max_accounts fixes the layout). */
uint64_t ts_gateway_held_size(const ts_gateway *gw);

/* Use mem (size bytes, 16-byte aligned, mapped until ts_gateway_free) as the held-events
 * log; a log of another layout, or none, is formatted. Returns the undelivered events
 * found (kept for ts_gateway_hold_drained), TS_GW_ERR_ARGUMENT (too small, misaligned,
 * attached already or after a drain) or TS_GW_ERR_NOMEM. */
int64_t ts_gateway_attach_held(ts_gateway *gw, void *mem, uint64_t size);

void ts_gateway_get_stats(ts_gateway *gw, ts_gateway_stats *out);
/* Sessions whose outbound ring is full with events waiting for it: the pump holds the
 * shard's later events back for them (for every session of that shard), so the caller
 * should disconnect such a client. Writes up to max session ids; returns how many. */
uint32_t ts_gateway_stalled_sessions(ts_gateway *gw, int64_t *out, uint32_t max);

/* A self-check for tests: the sessions whose count of answers the shards owe them (the
 * room their event rings keep for those) differs from what their orders say; *total is
 * the sum of the counts. Walks every session's orders: not for the hot path. */
uint32_t ts_gateway_check_due(ts_gateway *gw, int64_t *total);
int ts_gateway_account_state(ts_gateway *gw, uint32_t account_id, ts_account_state *out);
int ts_gateway_position(ts_gateway *gw, uint32_t account_id, uint32_t symbol_id,
                        ts_position_state *out);

/* The figures of the accounts that are not idle, for the stats file: from account index
 * *cursor on, each account with open orders, notional, a kill or a non-flat position
 * gets its own row, then one row per non-flat position. Stops before an account once
 * `budget` positions were looked at (an account whose rows the pump never reached -- no
 * session, restored order or drained fill -- is flat without a look: it counts one) or
 * fewer than (instruments + 1) rows are left in
 * out (so an account's rows are never split), and sets *cursor to where the next call
 * goes on (0 once the last account was done). Takes the control lock one account at a
 * time, so the pump waits at most for one account's scan. Returns the rows written. */
uint32_t ts_gateway_figures(ts_gateway *gw, uint32_t *cursor, uint64_t budget, ts_figure_row *out,
                            uint32_t cap);

#endif /* TRADSYS_GATEWAY_H */
