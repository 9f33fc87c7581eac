/*
 * gateway_owner.c — orders belong to their account (see ts_gateway_remove_session in
 * gateway.h): the lists that say which session gets an order's events, taking orders
 * over, parking them with the account while it has no session, and the events held for
 * the session that comes next. Called under gw->lock, by the pump or a control call; only
 * control calls allocate (gw_link_orphan); the pump frees an account's held-event buffer
 * once it has handed all of it over and the account has no order without a session.
 */
#include "gateway_internal.h"

#include <stdlib.h>
#include <string.h>

/* Out of the list it is on: its session's, or its account's orphans. */
void gw_session_unlink(ts_gateway *gw, uint32_t idx) {
    gw_order *o = &gw->orders[idx];
    uint32_t *head;
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
    if (!acc->held) acc->held = malloc(TS_GW_HELD_EVENTS * sizeof *acc->held);
}

int gw_hold_event(ts_gateway *gw, const gw_order *o, const ts_event *ev) {
    gw_account *acc = &gw->accounts[o->account];
    if (!acc->held || acc->held_n == TS_GW_HELD_EVENTS) return 0;
    ts_event *e = &acc->held[acc->held_n++];
    *e = *ev;
    e->order_id = o->client_id;
    e->contra_order_id = 0;
    if (ev->kind == TS_EV_REJECTED && o->state != GW_DONE) e->flags &= ~TS_EVF_DONE;
    gw->st.events_held++;
    return 1;
}

/* Move held events into the stage of the session that took the account's orders, as room
 * allows; an account whose held events are all out routes directly again. */
uint64_t gw_replay_held(ts_gateway *gw) {
    uint64_t moved = 0;
    for (uint32_t a = 0; a < gw->n_accounts; a++) {
        gw_account *acc = &gw->accounts[a];
        if (acc->replay_to == GW_NONE) continue;
        gw_session *s = &gw->sessions[acc->replay_to];
        uint32_t room = gw->cfg.max_batch - s->staged;
        uint32_t n = acc->held_n - acc->held_sent;
        if (n > room) n = room;
        memcpy(s->stage + s->staged, acc->held + acc->held_sent, (size_t)n * sizeof *s->stage);
        s->staged += n;
        acc->held_sent += n;
        gw->st.events_routed += n;
        moved += n;
        if (acc->held_sent == acc->held_n) {
            acc->held_n = acc->held_sent = 0;
            acc->replay_to = GW_NONE;
            gw->replays_due--;
            if (acc->orphans == GW_NONE) { /* rare: give the buffer back until needed */
                free(acc->held);
                acc->held = NULL;
            }
        }
    }
    return moved;
}
