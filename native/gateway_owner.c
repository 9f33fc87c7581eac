/*
 * gateway_owner.c — orders belong to their account (see ts_gateway_remove_session in
 * gateway.h): the lists that say which session gets an order's events, taking orders
 * over, parking them with the account while it has no session, and the events held for
 * the session that comes next. Called under gw->lock, by the pump or a control call; only
 * control calls allocate (gw_link_orphan); the pump frees an account's held-event buffer
 * once it has handed all of it over and the account has no order without a session.
 * Held events are also written to the held-events log when one is attached
 * (gateway_held.c), so a gateway that dies does not take them along.
 */
#include "gateway_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Out of the list it is on: its session's, or its account's orphans. */
void gw_session_unlink(ts_gateway *gw, uint32_t idx) {
    gw_order *o = &gw->orders[idx];
    uint32_t *head;
    gw_due_add(gw, o, -gw_due(o)); /* its owed answers leave with it */
    if (o->session != GW_NONE) head = &gw->sessions[o->session].head;
    else if (o->orphan) head = &gw->accounts[o->account].orphans;
    else return;
    if (o->sess_prev != GW_NONE) gw->orders[o->sess_prev].sess_next = o->sess_next;
    else *head = o->sess_next;
    if (o->sess_next != GW_NONE) gw->orders[o->sess_next].sess_prev = o->sess_prev;
    o->session = GW_NONE;
    o->orphan = 0;
    o->sess_prev = o->sess_next = GW_NONE;
}

static void link_front(gw_order *orders, uint32_t *head, uint32_t idx) {
    gw_order *o = &orders[idx];
    o->sess_prev = GW_NONE;
    o->sess_next = *head;
    if (*head != GW_NONE) orders[*head].sess_prev = idx;
    *head = idx;
}

void gw_take_over(ts_gateway *gw, uint32_t idx, uint32_t slot) {
    gw_order *o = &gw->orders[idx];
    if (o->session == slot) return;
    gw_session_unlink(gw, idx);
    gw_session *s = &gw->sessions[slot];
    link_front(gw->orders, &s->head, idx);
    o->session = slot;
    o->session_gen = s->gen;
    gw_due_add(gw, o, gw_due(o));
    gw->st.orders_adopted++;
}

/* Park an order (on no list) with its account until a session of it comes. A control
 * call: the account's held-event buffer is made here, never in the pump (without memory
 * its events are dropped and counted). */
void gw_link_orphan(ts_gateway *gw, uint32_t idx) {
    gw_order *o = &gw->orders[idx];
    gw_account *acc = &gw->accounts[o->account];
    link_front(gw->orders, &acc->orphans, idx);
    o->session = GW_NONE;
    o->orphan = 1;
    gw_held_buffer(acc);
}

int gw_held_buffer(gw_account *acc) {
    if (!acc->held) acc->held = malloc(TS_GW_HELD_EVENTS * sizeof *acc->held);
    if (!acc->held_seq) acc->held_seq = malloc(TS_GW_HELD_EVENTS * sizeof *acc->held_seq);
    if (acc->held && acc->held_seq) return 1;
    free(acc->held);
    free(acc->held_seq);
    acc->held = NULL;
    acc->held_seq = NULL;
    return 0;
}

int gw_keep_held(ts_gateway *gw, uint32_t account, const ts_event *ev, uint64_t seq) {
    gw_account *acc = &gw->accounts[account];
    if (!acc->held || acc->held_n == TS_GW_HELD_EVENTS) {
        acc->dropped++;
        return 0;
    }
    acc->held[acc->held_n] = *ev;
    acc->held_seq[acc->held_n++] = seq;
    gw_held_kept(gw, seq);
    gw->st.events_held++;
    return 1;
}

/* The pump's rare path: an event of an order without a session, in the client's ids,
 * into the log (gateway_held.c) and then the account's buffer. */
int gw_hold_event(ts_gateway *gw, const gw_order *o, const ts_event *ev, int answers_amend) {
    gw_account *acc = &gw->accounts[o->account];
    if (!acc->held || acc->held_n == TS_GW_HELD_EVENTS) {
        acc->dropped++;
        return 0;
    }
    ts_event e = *ev;
    e.order_id = o->client_id;
    e.contra_order_id = 0;
    if (answers_amend) e.flags &= ~TS_EVF_DONE; /* as routed (gw_answers_amend) */
    return gw_keep_held(gw, o->account, &e, gw_held_append(gw, o->account, &e));
}

/* Push what the session's stage holds (this pass's rejects: they go first, as always);
 * 0 if some of it found no room. *pushed: how many went. */
static int push_stage_first(gw_session *s, uint64_t *pushed) {
    if (s->stage_sent == s->staged) return 1;
    uint64_t k = ts_ring_push(s->out, s->stage + s->stage_sent, s->staged - s->stage_sent);
    *pushed = k;
    s->stage_sent += (uint32_t)k;
    if (s->stage_sent != s->staged) return 0; /* the pass's flush keeps the rest in order */
    s->staged = s->stage_sent = 0;
    s->stalled = 0; /* as flush_session does: its ring took everything it had */
    return 1;
}

/* Push held events to the session that took the account's orders, as its ring has room,
 * after what its stage holds and before any newer event (those of the held orders are
 * held until this is done), then mark them delivered in the log; an account whose held
 * events are all out routes directly again. The push is direct, not through the stage,
 * so the mark follows exactly the events that reached the ring. */
uint64_t gw_replay_held(ts_gateway *gw) {
    uint64_t moved = 0;
    for (uint32_t a = 0; a < gw->n_accounts; a++)
        if (gw->accounts[a].replay_to != GW_NONE) moved += gw_replay_account(gw, a);
    return moved;
}

uint64_t gw_replay_account(ts_gateway *gw, uint32_t a) {
    gw_account *acc = &gw->accounts[a];
    gw_session *s = &gw->sessions[acc->replay_to];
    uint64_t k = 0, first = 0;
    if (push_stage_first(s, &first))
        k = ts_ring_push(s->out, acc->held + acc->held_sent, acc->held_n - acc->held_sent);
    if (k) {
        uint64_t durable = 0, last = 0;
        for (uint64_t i = acc->held_sent; i < acc->held_sent + k; i++)
            if (acc->held_seq[i]) {
                durable++;
                last = acc->held_seq[i];
            }
        gw_held_delivered(gw, a, last, durable);
    }
    if ((k || first) && s->notify_fd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(s->notify_fd, &one, sizeof one); /* EAGAIN: one is due */
        (void)w;
    }
    acc->held_sent += (uint32_t)k;
    gw->st.events_routed += k;
    if (acc->held_sent == acc->held_n) {
        acc->held_n = acc->held_sent = 0;
        acc->replay_to = GW_NONE;
        gw->replays_due--;
        if (acc->orphans == GW_NONE) { /* rare: give the buffer back until needed */
            free(acc->held);
            free(acc->held_seq);
            acc->held = NULL;
            acc->held_seq = NULL;
        }
    }
    return k;
}

/* The records of a session's outbound ring its client has not taken (the consumer's
 * index to ours): the gateway produced them and the ring is its memory, so it can read
 * them back. A client whose session the gateway ends while it still runs may take some
 * of them now or later (its mapping of the ring outlives the session): those come twice,
 * with the same exec_id. */
uint64_t gw_ring_unread(ts_ring *out, ts_event *dst, uint64_t max, int count_only) {
    ts_ring_info info;
    ts_ring_read_info(out, &info);
    const uint64_t n = info.head - info.tail;
    /* a tail outside [head - capacity, head]: the client wrote garbage into its index */
    if (info.tail > info.head || n > info.capacity || info.slot_size != sizeof(ts_event)) return 0;
    if (count_only) return n;
    const ts_event *slots = (const ts_event *)((const char *)out + TS_RING_HEADER_SIZE);
    const uint64_t k = n < max ? n : max;
    for (uint64_t i = 0; i < k; i++) dst[i] = slots[(info.tail + i) & (info.capacity - 1)];
    return k;
}

/* Hold evs[0..n) (in client ids, oldest first) for the account ahead of its pending held
 * events (which came after them), up to TS_GW_HELD_EVENTS pending in all; the newest of
 * them beyond that are dropped and counted (as are total - n that could not be read). In
 * the log, the whole pending list is written again as one batch. Returns how many were
 * kept, moved to the front of evs. ORDER_STATUS records (an answer the client did not
 * read) are not held and not counted: a picture of an earlier time, which in the next
 * session would only take the place of events it needs. */
uint64_t gw_hold_ahead(ts_gateway *gw, uint32_t account, ts_event *evs, uint64_t n,
                       uint64_t total) {
    uint64_t events_n = 0;
    for (uint64_t i = 0; i < n; i++)
        if (evs[i].kind != TS_EV_ORDER_STATUS) evs[events_n++] = evs[i];
    total -= n - events_n;
    n = events_n;
    gw_account *acc = &gw->accounts[account];
    const uint32_t pending = acc->held_n - acc->held_sent;
    const uint64_t room = TS_GW_HELD_EVENTS - pending;
    const uint32_t keep = (uint32_t)(n < room ? n : room);
    if (!keep || !gw_held_buffer(acc)) { /* the cap is full, or no memory for a buffer */
        acc->dropped += total;
        gw->st.events_unread_dropped += total;
        gw->st.events_orphaned += total;
        return 0;
    }
    const uint32_t m = keep + pending;
    ts_event *all = malloc((size_t)m * sizeof *all);
    uint64_t *seqs = malloc((size_t)m * sizeof *seqs);
    if (!all || !seqs) abort(); /* a control call: out of memory here is fatal */
    memcpy(all, evs, (size_t)keep * sizeof *all);
    memset(seqs, 0, (size_t)keep * sizeof *seqs);
    memcpy(all + keep, acc->held + acc->held_sent, (size_t)pending * sizeof *all);
    memcpy(seqs + keep, acc->held_seq + acc->held_sent, (size_t)pending * sizeof *seqs);
    gw_held_rewrite(gw, account, all, seqs, keep, m); /* else: the new ones in memory only,
                                                         * counted */
    memcpy(acc->held, all, (size_t)m * sizeof *all);
    memcpy(acc->held_seq, seqs, (size_t)m * sizeof *seqs);
    acc->held_sent = 0;
    acc->held_n = m;
    gw->st.events_held += keep;
    gw->st.events_unread_held += keep;
    acc->dropped += total - keep;
    gw->st.events_unread_dropped += total - keep;
    gw->st.events_orphaned += total - keep;
    free(all);
    free(seqs);
    return keep;
}

/* What a leaving session's client never got -- the caller's `taken` (drained from the
 * ring, never delivered), the ring's unread records, the stage the pump could not push,
 * then `after` (the rejects of the commands it left: gw_take_leaving), in that order,
 * which is the order they were routed in -- becomes the account's held
 * events ahead of those pending (which were routed after them, or are the account's
 * other orders'). A control call under the lock (remove_session): the pump, which routes
 * only inside a pass, sees the session and then the held events, never both. */
void gw_hold_unread(ts_gateway *gw, uint32_t slot, const ts_event *taken, uint64_t n_taken,
                    const ts_event *after, uint64_t n_after) {
    gw_session *s = &gw->sessions[slot];
    const uint64_t in_ring = gw_ring_unread(s->out, NULL, 0, 1);
    const uint64_t staged = s->staged - s->stage_sent;
    const uint64_t total = n_taken + in_ring + staged + n_after;
    if (!total) return;
    ts_event *evs = malloc((size_t)total * sizeof *evs);
    if (!evs) abort(); /* a control call: out of memory here is fatal */
    if (n_taken) memcpy(evs, taken, n_taken * sizeof *evs);
    /* fewer than in_ring only if the client moved its index back meanwhile */
    uint64_t k = n_taken + gw_ring_unread(s->out, evs + n_taken, in_ring, 0);
    if (staged) memcpy(evs + k, s->stage + s->stage_sent, staged * sizeof *evs);
    k += staged;
    if (n_after) memcpy(evs + k, after, n_after * sizeof *evs);
    k += n_after;
    gw_hold_ahead(gw, s->account, evs, k, total);
    s->staged = s->stage_sent = 0;
    free(evs);
}
