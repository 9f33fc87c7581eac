/*
 * gateway_status.c — ORDER_STATUS: a session asks for its account's live orders, and the
 * pump answers from its own tables, in the session's event stream: one ORDER_STATUS
 * event per order, by client order id, then a closing one (TS_EVF_LAST).
 *
 * Why the pump answers it, and in the stream: a client that restarts without its own
 * state (or doubts it) needs the orders the exchange holds for it, and needs to know
 * which of the events it reads next came after that picture. Answered between two
 * events of the stream, the answer is exact at its place: every event before it is in
 * it, every event after it is news. It is written straight into the session's ring, all
 * of it in one pass, or not yet (the command waits in the inbound ring, as any command
 * whose answers find no room), so no stage or list of the pump's ever holds it. A
 * gateway that dies while pushing it (in chunks) may leave part of it; its successor
 * drops answer records it reads back (gw_hold_ahead: a picture of an earlier time) and
 * answers the request, still in the inbound ring, GATEWAY_RESTARTED.
 *
 * Called under gw->lock by the pump's intake. Allocates nothing: the orders' sort keys go
 * into a scratch array made at setup, sorted in place.
 */
#include "gateway_internal.h"

#include <string.h>
#include <unistd.h>

enum { STATUS_CHUNK = 64 }; /* records built on the stack per ring push */

/* Whether the order belongs in the answer: live, and on the symbol asked for (GW_NONE:
 * any). */
static inline int listed(const gw_order *o, uint32_t instr) {
    return o->state != GW_DONE && (instr == GW_NONE || o->instr == instr);
}

/* The account's live orders (every one is on a list of one of its sessions, or among
 * its orphans: gateway_owner.c) into out[] as sort keys, at most max; returns how many
 * there are. */
static uint64_t collect(const ts_gateway *gw, uint32_t account, uint32_t instr,
                        gw_status_key *out, uint64_t max) {
    uint64_t n = 0;
    for (uint32_t slot = 0; slot <= gw->cfg.max_sessions; slot++) {
        uint32_t idx;
        if (slot < gw->cfg.max_sessions) {
            const gw_session *s = &gw->sessions[slot];
            if (!s->active || s->account != account) continue;
            idx = s->head;
        } else {
            idx = gw->accounts[account].orphans;
        }
        for (; idx != GW_NONE; idx = gw->orders[idx].sess_next) {
            const gw_order *o = &gw->orders[idx];
            if (!listed(o, instr)) continue;
            if (n < max) out[n] = (gw_status_key){.client_id = o->client_id, .idx = idx};
            n++;
        }
    }
    return n;
}

/* By client order id; restored orders whose client id the ledger lacked (0) by exchange
 * id among themselves, so the answer's order never depends on the lists' order. The keys
 * are contiguous copies: sorting them touches no order slot but on a tie. */
static inline int before(const gw_order *orders, const gw_status_key *x,
                         const gw_status_key *y) {
    if (x->client_id != y->client_id) return x->client_id < y->client_id;
    return orders[x->idx].exch_id < orders[y->idx].exch_id;
}

static void sift_down(const gw_order *orders, gw_status_key *v, uint64_t root, uint64_t n) {
    for (;;) {
        uint64_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && before(orders, &v[child], &v[child + 1])) child++;
        if (!before(orders, &v[root], &v[child])) return;
        gw_status_key t = v[root];
        v[root] = v[child];
        v[child] = t;
        root = child;
    }
}

/* Heapsort: in place, no allocation (glibc's qsort may allocate), O(n log n). First the
 * common case in O(n): one client numbering its orders upwards, whose session's list is
 * newest first, gives keys in reverse order (or, read back, in order). */
static void sort_keys(const gw_order *orders, gw_status_key *v, uint64_t n) {
    uint64_t up = 1, down = 1;
    for (uint64_t i = 1; i < n && (up || down); i++) {
        if (before(orders, &v[i], &v[i - 1])) up = 0;
        else down = 0;
    }
    if (up) return;
    if (down) {
        for (uint64_t i = 0, j = n - 1; i < j; i++, j--) {
            gw_status_key t = v[i];
            v[i] = v[j];
            v[j] = t;
        }
        return;
    }
    for (uint64_t i = n / 2; i-- > 0;) sift_down(orders, v, i, n);
    for (uint64_t end = n; end > 1; end--) {
        gw_status_key t = v[0];
        v[0] = v[end - 1];
        v[end - 1] = t;
        sift_down(orders, v, 0, end - 1);
    }
}

static uint8_t state_of(const gw_order *o) {
    if (o->state == GW_PENDING_NEW) return TS_OST_PENDING_NEW;
    if (o->pending || o->given_up) return TS_OST_AMENDING;
    return TS_OST_OPEN;
}

int gw_take_status(ts_gateway *gw, gw_session *s, const ts_command *c, uint64_t *out_room) {
    uint32_t instr = GW_NONE;
    if (c->symbol_id) {
        instr = gw_keymap_get(&gw->instr_map, c->symbol_id);
        if (instr == GW_NONE) return TS_REJ_UNKNOWN_SYMBOL;
    }
    const gw_account *acc = &gw->accounts[s->account];
    ts_ring_info info;
    ts_ring_read_info(s->out, &info);
    const uint64_t n = collect(gw, s->account, instr, gw->status_keys, gw->cfg.max_orders);
    /* at most half the ring: a client may hold up to half of it unreleased (events it read
     * and keeps for later, tradsys/client/orders.py), so a bigger answer could wait for
     * room forever -- and every command behind it with it */
    if (n + 1 > info.capacity / 2) return TS_REJ_STATUS_TOO_LARGE;
    /* events held for this session go first: they are older than the tables the answer
     * is read from (replayed after it, they would move an order back in the client's
     * eyes), so they go now, all of them, or the request waits */
    const uint64_t held = acc->replay_to != GW_NONE && &gw->sessions[acc->replay_to] == s
                              ? acc->held_n - acc->held_sent
                              : 0;
    if (held + n + 1 > *out_room) return GW_STATUS_WAIT; /* until the client reads */
    if (held) {
        gw_replay_account(gw, s->account);
        *out_room -= held;
    }
    sort_keys(gw->orders, gw->status_keys, n);
    ts_event buf[STATUS_CHUNK];
    const uint32_t account_id = acc->id;
    for (uint64_t i = 0; i <= n;) {
        uint64_t k = 0;
        for (; k < STATUS_CHUNK && i <= n; k++, i++) {
            ts_event *e = &buf[k];
            memset(e, 0, sizeof *e);
            e->kind = TS_EV_ORDER_STATUS;
            e->account_id = account_id;
            e->contra_order_id = c->order_id; /* the request's id, on every record */
            if (i == n) { /* the closing record: how many came */
                e->flags = TS_EVF_LAST;
                e->symbol_id = c->symbol_id;
                e->order_id = c->order_id;
                e->quantity = (int64_t)n;
                continue;
            }
            const gw_order *o = &gw->orders[gw->status_keys[i].idx];
            e->side = o->side;
            e->reason = state_of(o);
            e->symbol_id = gw->instr[o->instr].symbol_id;
            e->order_id = o->client_id;
            e->price = o->limit;
            e->quantity = o->qty;
            e->leaves_qty = o->leaves;
        }
        ts_ring_push(s->out, buf, k); /* fits: n + 1 <= the room counted */
    }
    *out_room -= n + 1;
    gw->st.status_requests++;
    gw->st.status_orders += n;
    if (s->notify_fd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(s->notify_fd, &one, sizeof one); /* EAGAIN: a wake-up is due */
        (void)w;
    }
    return 0;
}
