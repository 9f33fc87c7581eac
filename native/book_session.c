/*
 * book_session.c — "Phases and controls" and "Uncross" of docs/matching.md: the clock
 * and GTD expiry, session open and close, halts, auctions and the uncross.
 */
#include "book_internal.h"

/* ---- uncross ---- */

/* The uncross price into *price; returns 0 when the executable volume is 0 (nothing can
 * trade). Candidates are walked in ascending price: bids are stored ascending (keys =
 * price), asks descending (keys = -price), so the asks are read from the end. */
static int uncross_price(const ts_engine *e, const ts_book *b, int64_t *price) {
    const ts_ladder *bids = &b->side[0], *asks = &b->side[1];
    if (bids->n == 0 || asks->n == 0) return 0;
    /* 128-bit sums: a side's total can exceed int64 where a level's cannot */
    __int128 bid_total = 0;
    for (uint32_t i = 0; i < bids->n; i++) bid_total += e->lvls[bids->lvls[i]].total;
    const int64_t ref = b->static_ref;
    __int128 best_vol = 0, best_imb = 0, best_dist = 0;
    int64_t best_p = 0;
    __int128 bid_below = 0; /* bids priced below p */
    __int128 ask_upto = 0;  /* asks priced at or below p */
    uint32_t i = 0, j = asks->n;
    while (i < bids->n || j > 0) {
        /* which sides have a level at the candidate price p: decided by the indices, not
         * by a sentinel price, since INT64_MAX is itself a valid price */
        const int has_b = i < bids->n, has_a = j > 0;
        const int64_t pb = has_b ? e->lvls[bids->lvls[i]].price : 0;
        const int64_t pa = has_a ? e->lvls[asks->lvls[j - 1]].price : 0;
        const int64_t p = !has_a ? pb : !has_b ? pa : pb < pa ? pb : pa;
        const int at_b = has_b && pb == p;
        if (has_a && pa == p) ask_upto += e->lvls[asks->lvls[--j]].total;
        __int128 bid_at = bid_total - bid_below;
        __int128 vol = bid_at < ask_upto ? bid_at : ask_upto;
        __int128 imb = bid_at > ask_upto ? bid_at - ask_upto : ask_upto - bid_at;
        __int128 dist = p > ref ? (__int128)p - ref : (__int128)ref - p;
        /* ascending walk: keeping the first of equals picks the lower price */
        if (vol > 0 && (vol > best_vol || (vol == best_vol && imb < best_imb) ||
                        (vol == best_vol && imb == best_imb && ref > 0 && dist < best_dist))) {
            best_vol = vol;
            best_imb = imb;
            best_dist = dist;
            best_p = p;
        }
        if (at_b) bid_below += e->lvls[bids->lvls[i++]].total;
    }
    *price = best_p;
    return best_vol > 0;
}

/* One fill at the uncross price between the two queue heads (taker = later seq). */
static void uncross_fill(ts_engine *e, ts_book *b, uint32_t ti, uint32_t mi, int64_t p) {
    ts_order *t = &e->orders[ti], *m = &e->orders[mi];
    const uint32_t sym = b->cfg.symbol_id;
    const int64_t q = ts_min64(t->visible, m->visible);
    ts_touch(e, b, t->level, t->side);
    ts_touch(e, b, m->level, m->side);
    ts_order *both[2] = {t, m};
    for (int k = 0; k < 2; k++) {
        ts_order *o = both[k];
        ts_lvl *L = &e->lvls[o->level];
        o->leaves -= q;
        o->visible -= q;
        L->shown -= q;
        L->total -= q;
    }
    ts_emit(e, TS_EV_TRADE, t, sym, 0, t->leaves ? TS_EVF_TAKER : TS_EVF_TAKER | TS_EVF_DONE,
            m->order_id, p, q, t->leaves);
    ts_emit(e, TS_EV_TRADE, m, sym, 0, m->leaves ? TS_EVF_MAKER : TS_EVF_MAKER | TS_EVF_DONE,
            t->order_id, p, q, m->leaves);
    ts_md_trade(e, b, t->side, p, q);
    b->last_trade = p;
    b->stops_dirty = 1;
    uint32_t idx[2] = {ti, mi};
    for (int k = 0; k < 2; k++) {
        ts_order *o = &e->orders[idx[k]];
        uint32_t li = o->level;
        ts_lvl *L = &e->lvls[li];
        if (o->leaves == 0) {
            ts_level_unlink(e, L, o);
            L->count--;
            if (L->count == 0) ts_level_drop(e, b, o->side, li);
            ts_retire(e, b, idx[k]);
        } else if (o->visible == 0) {
            int64_t v = ts_min64(e->cold[idx[k]].peak, o->leaves);
            o->visible = v;
            L->shown += v;
            if (L->count > 1) {
                ts_level_unlink(e, L, o);
                ts_level_append(e, L, li, idx[k]);
            }
        }
    }
}

static int crossed_at(const ts_engine *e, const ts_book *b, int64_t p) {
    const ts_ladder *bids = &b->side[0], *asks = &b->side[1];
    return bids->n && asks->n && e->lvls[bids->lvls[bids->n - 1]].price >= p &&
           e->lvls[asks->lvls[asks->n - 1]].price <= p;
}

static int crossed(const ts_engine *e, const ts_book *b) {
    const ts_ladder *bids = &b->side[0], *asks = &b->side[1];
    return bids->n && asks->n &&
           e->lvls[bids->lvls[bids->n - 1]].price >= e->lvls[asks->lvls[asks->n - 1]].price;
}

/* reason: what ends the call or halt (ts_md_status_reason) */
static void uncross(ts_engine *e, ts_book *b, uint32_t reason) {
    for (;;) {
        int64_t p = 0;
        if (uncross_price(e, b, &p) == 0) break;
        while (crossed_at(e, b, p)) {
            uint32_t bi = e->lvls[b->side[0].lvls[b->side[0].n - 1]].head;
            uint32_t ai = e->lvls[b->side[1].lvls[b->side[1].n - 1]].head;
            uint32_t ti = e->cold[bi].seq > e->cold[ai].seq ? bi : ai;
            uint32_t mi = ti == bi ? ai : bi;
            if (e->orders[ti].account_id == e->orders[mi].account_id) {
                uint8_t stp = e->orders[ti].stp ? e->orders[ti].stp : TS_STP_CANCEL_INCOMING;
                if (stp != TS_STP_CANCEL_INCOMING)
                    ts_eng_cancel_order(e, b, mi, TS_CXL_SELF_TRADE);
                if (stp != TS_STP_CANCEL_RESTING) ts_eng_cancel_order(e, b, ti, TS_CXL_SELF_TRADE);
                continue;
            }
            uncross_fill(e, b, ti, mi, p);
        }
        b->static_ref = p;
        if (!crossed(e, b)) break;
    }
    b->reopen_ns = -1;
    ts_set_phase(e, b, TS_PHASE_CONTINUOUS, reason);
    ts_eng_check_stops(e, b);
}

/* ---- controls ---- */

static void expire_gtd(ts_engine *e) {
    while (e->heap_n > 0 && e->heap[0].expire_ns <= e->clock) {
        ts_gtd g = e->heap[0];
        ts_eng_heap_pop(e);
        ts_order *o = &e->orders[g.order];
        if ((o->state == TS_ST_RESTING || o->state == TS_ST_PENDING) &&
            e->cold[g.order].seq == g.seq)
            ts_eng_cancel_order(e, &e->books[o->book], g.order, TS_CXL_EXPIRED);
    }
}

/* The book's DAY orders in seq order: collected from its levels and stops and sorted
 * (the sort buffer was reserved by ts_eng_control), O(n log n) in the book's orders
 * only, so closing every symbol costs what they hold. */
static void session_close(ts_engine *e, ts_book *b) {
    const uint64_t n = ts_eng_collect_book(e, b, 1);
    const ts_seq_ref *r = ts_eng_sort_scratch(e, n);
    for (uint64_t k = 0; k < n; k++) ts_eng_cancel_order(e, b, r[k].order, TS_CXL_EXPIRED);
}

/* One symbol's share of a control command (not CLOCK_TICK, which is engine-wide). */
static void control_one(ts_engine *e, ts_book *b, const ts_command *c) {
    switch (c->control) {
    case TS_CTL_SESSION_OPEN:
        /* leaving AUCTION or HALTED always goes through an uncross: a book left crossed
         * by a halted call phase must not reopen crossed */
        if (b->phase != TS_PHASE_CONTINUOUS) uncross(e, b, TS_MDS_SESSION_OPEN);
        break;
    case TS_CTL_SESSION_CLOSE:
        session_close(e, b);
        break;
    case TS_CTL_HALT:
        b->reopen_ns = -1;
        ts_set_phase(e, b, TS_PHASE_HALTED, TS_MDS_HALT);
        break;
    case TS_CTL_RESUME:
        if (b->phase != TS_PHASE_HALTED) ts_eng_reject(e, c, b->cfg.symbol_id, TS_REJ_INVALID_COMMAND);
        else uncross(e, b, TS_MDS_RESUME);
        break;
    case TS_CTL_AUCTION_START:
        if (b->phase == TS_PHASE_AUCTION)
            ts_eng_reject(e, c, b->cfg.symbol_id, TS_REJ_INVALID_COMMAND);
        else ts_set_phase(e, b, TS_PHASE_AUCTION, TS_MDS_AUCTION_START);
        break;
    case TS_CTL_AUCTION_UNCROSS:
        if (b->phase != TS_PHASE_AUCTION)
            ts_eng_reject(e, c, b->cfg.symbol_id, TS_REJ_INVALID_COMMAND);
        else uncross(e, b, TS_MDS_AUCTION_UNCROSS);
        break;
    }
}

static void clock_tick(ts_engine *e, const ts_command *c) {
    if (c->time_ns < e->clock) {
        ts_eng_reject(e, c, c->symbol_id, TS_REJ_INVALID_COMMAND);
        return;
    }
    e->clock = c->time_ns;
    expire_gtd(e);
    for (uint32_t k = 0; k < e->n_books; k++) {
        ts_book *b = &e->books[e->by_id[k]];
        if (b->phase == TS_PHASE_AUCTION && b->reopen_ns >= 0 && b->reopen_ns <= e->clock)
            uncross(e, b, TS_MDS_REOPEN_TIMER);
    }
}

int ts_eng_control(ts_engine *e, const ts_command *c) {
    ts_book *b = NULL;
    if (c->symbol_id != 0) {
        b = ts_eng_find_book(e, c->symbol_id);
        if (!b) {
            ts_eng_reject(e, c, c->symbol_id, TS_REJ_UNKNOWN_SYMBOL);
            return 0;
        }
    }
    if (c->control < TS_CTL_CLOCK_TICK || c->control > TS_CTL_AUCTION_UNCROSS) {
        ts_eng_reject(e, c, c->symbol_id, TS_REJ_INVALID_COMMAND);
        return 0;
    }
    if (c->control == TS_CTL_CLOCK_TICK) {
        clock_tick(e, c);
        return 0;
    }
    if (c->control == TS_CTL_SESSION_CLOSE) {
        /* room to sort the biggest book closed, before anything changes */
        uint64_t most = 0;
        for (uint32_t k = 0; k < e->n_books; k++)
            if ((!b || b == &e->books[k]) && e->books[k].n_live > most) most = e->books[k].n_live;
        if (ts_eng_reserve_scratch(e, most)) return -1;
    }
    if (b) control_one(e, b, c);
    else
        for (uint32_t k = 0; k < e->n_books; k++) control_one(e, &e->books[e->by_id[k]], c);
    ts_eng_scratch_done(e);
    return 0;
}
