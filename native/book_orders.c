/*
 * book_orders.c — the command loop and everything an order command does: validation,
 * continuous matching (price-time, STP, breaker, icebergs), FOK, stops, cancel,
 * replace and mass cancel. The rules, and the order of every event, are those of
 * docs/matching.md; section names below refer to it.
 */
#include "book_internal.h"

enum { EXEC_OK = 0, EXEC_STP = 1, EXEC_TRIPPED = 2 };

void ts_eng_reject(ts_engine *e, const ts_command *c, uint32_t symbol_id, uint8_t reason) {
    ts_event *ev = ts_ev_slot(e);
    *ev = (ts_event){.kind = TS_EV_REJECTED,
                     .side = c->side,
                     .reason = reason,
                     .flags = TS_EVF_DONE,
                     .symbol_id = symbol_id,
                     .account_id = c->account_id,
                     .order_id = c->order_id,
                     .price = c->price,
                     .quantity = c->quantity,
                     .exec_id = ++e->exec_id};
}

/* Append to the account's live list (seq order: an order goes live holding the greatest
 * seq of any live order, so it goes last) and index it. */
void ts_eng_link_live(ts_engine *e, ts_book *b, uint32_t oi) {
    ts_order *o = &e->orders[oi];
    ts_acct *a = ts_acct_get(e, o->account_id);
    o->live_next = TS_NIL;
    o->live_prev = a->tail;
    if (a->tail != TS_NIL) e->orders[a->tail].live_next = oi;
    else a->head = oi;
    a->tail = oi;
    b->n_live++;
    e->n_live++;
    ts_oix_put(&e->index, o->order_id, oi, e->orders, sizeof(ts_order));
    if (o->tif == TS_TIF_GTD) {
        e->gtd_live++;
        ts_eng_heap_push(e, e->cold[oi].expire_ns, e->cold[oi].seq, oi);
    }
}

/* CANCELLED for a live or executing order, then take it out of everything. */
void ts_eng_cancel_order(ts_engine *e, ts_book *b, uint32_t oi, uint8_t reason) {
    ts_order *o = &e->orders[oi];
    ts_prefetch_unlink(e, o);
    ts_emit(e, TS_EV_CANCELLED, o, b->cfg.symbol_id, reason, TS_EVF_DONE, 0, o->price, o->leaves,
            0);
    if (o->state == TS_ST_RESTING) {
        ts_unrest(e, b, o);
    } else if (o->state == TS_ST_PENDING) {
        if (o->prev != TS_NIL) e->orders[o->prev].next = o->next;
        else b->stop_head = o->next;
        if (o->next != TS_NIL) e->orders[o->next].prev = o->prev;
        else b->stop_tail = o->prev;
        b->n_stops--;
        e->n_stops--;
    }
    o->leaves = 0;
    ts_retire(e, b, oi);
}

/* ---- matching ---- */

/* The "Matching (continuous)" loop for taker t (executing, on no level). A market
 * order passes lim_key = INT64_MIN; a limit order the key of its price as seen from the
 * opposite side (a level is acceptable when its key >= lim_key). */
static int execute(ts_engine *e, ts_book *b, uint32_t ti, int64_t lim_key) {
    ts_order *t = &e->orders[ti];
    const uint8_t opp_side = ts_other(t->side);
    ts_ladder *opp = ts_ladder_of(b, opp_side);
    const int64_t ref = b->last_trade ? b->last_trade : b->static_ref;
    const uint32_t bps = ref > 0 ? b->cfg.breaker_bps : 0;
    const uint8_t stp = t->stp ? t->stp : TS_STP_CANCEL_INCOMING;
    const uint32_t sym = b->cfg.symbol_id;

    while (t->leaves > 0 && opp->n > 0) {
        uint32_t n = opp->n;
        if (opp->keys[n - 1] < lim_key) break;
        uint32_t li = opp->lvls[n - 1];
        ts_lvl *L = &e->lvls[li];
        uint32_t mi = L->head;
        ts_order *m = &e->orders[mi];
        if (m->leaves <= t->leaves) ts_prefetch_unlink(e, m); /* m will likely go */
        if (TS_UNLIKELY(m->account_id == t->account_id)) {
            if (stp != TS_STP_CANCEL_INCOMING) ts_eng_cancel_order(e, b, mi, TS_CXL_SELF_TRADE);
            if (stp == TS_STP_CANCEL_RESTING) continue;
            ts_emit(e, TS_EV_CANCELLED, t, sym, TS_CXL_SELF_TRADE, TS_EVF_DONE, 0, t->price,
                    t->leaves, 0);
            t->leaves = 0;
            return EXEC_STP;
        }
        const int64_t p = L->price;
        if (TS_UNLIKELY(bps) && ts_outside_bps(p, ref, bps)) {
            /* saturating: a huge halt means "until an operator reopens" */
            if (__builtin_add_overflow(e->clock, b->cfg.breaker_halt_ns, &b->reopen_ns))
                b->reopen_ns = INT64_MAX;
            ts_set_phase(e, b, TS_PHASE_AUCTION, TS_MDS_BREAKER);
            return EXEC_TRIPPED;
        }
        const int64_t q = ts_min64(t->leaves, m->visible);
        ts_touch(e, b, li, opp_side);
        t->leaves -= q;
        m->leaves -= q;
        m->visible -= q;
        L->shown -= q;
        L->total -= q;
        ts_emit(e, TS_EV_TRADE, t, sym, 0, t->leaves ? TS_EVF_TAKER : TS_EVF_TAKER | TS_EVF_DONE,
                m->order_id, p, q, t->leaves);
        ts_emit(e, TS_EV_TRADE, m, sym, 0, m->leaves ? TS_EVF_MAKER : TS_EVF_MAKER | TS_EVF_DONE,
                t->order_id, p, q, m->leaves);
        ts_md_trade(e, b, t->side, p, q);
        b->last_trade = p;
        b->stops_dirty = 1;
        if (m->leaves == 0) {
            ts_level_unlink(e, L, m);
            L->count--;
            if (L->count == 0) ts_level_drop(e, b, opp_side, li);
            ts_retire(e, b, mi);
        } else if (m->visible == 0) {
            /* iceberg refresh: a new peak at the back of the queue */
            int64_t v = ts_min64(e->cold[mi].peak, m->leaves);
            m->visible = v;
            L->shown += v;
            if (L->count > 1) {
                ts_level_unlink(e, L, m);
                ts_level_append(e, L, li, mi);
            }
        }
    }
    return EXEC_OK;
}

/* The worst opposite key the taker may meet: its limit, or a market-type order's
 * protection price; a market-type order without one (price 0) takes any price. */
static inline int64_t limit_key(const ts_order *t) {
    return t->price == 0 ? INT64_MIN : ts_key(ts_other(t->side), t->price);
}

/* After a taker's execution: rest the remainder of a resting-type order, or cancel it
 * with the reason the rules give (HALT after a breaker trip). `rests` says whether the
 * order executes as a LIMIT GTC/DAY/GTD order. */
static void finish_taker(ts_engine *e, ts_book *b, uint32_t ti, int result, int rests,
                         uint8_t remainder_reason) {
    ts_order *t = &e->orders[ti];
    if (t->leaves == 0) {
        ts_retire(e, b, ti);
        return;
    }
    if (rests) {
        if (t->state == TS_ST_TAKER) {
            t->state = TS_ST_RESTING;
            ts_eng_link_live(e, b, ti);
        }
        ts_rest(e, b, ti);
        return;
    }
    ts_eng_cancel_order(e, b, ti, result == EXEC_TRIPPED ? TS_CXL_HALT : remainder_reason);
}

/* ---- stops ---- */

static void fire_stop(ts_engine *e, ts_book *b, uint32_t oi) {
    ts_order *o = &e->orders[oi];
    if (o->prev != TS_NIL) e->orders[o->prev].next = o->next;
    else b->stop_head = o->next;
    if (o->next != TS_NIL) e->orders[o->next].prev = o->prev;
    else b->stop_tail = o->prev;
    b->n_stops--;
    e->n_stops--;
    o->state = TS_ST_TAKER_LIVE;
    ts_emit(e, TS_EV_TRIGGERED, o, b->cfg.symbol_id, 0, 0, 0, o->price, e->cold[oi].quantity,
            o->leaves);
    int market = o->type == TS_ORD_STOP;
    int r = execute(e, b, oi, limit_key(o));
    /* a STOP executes as a MARKET IOC order, a STOP_LIMIT as a LIMIT with its own tif */
    finish_taker(e, b, oi, r, !market, TS_CXL_MARKET_REMAINDER);
}

/* "Stops": while a pending stop of this symbol is triggered, fire the lowest seq. */
void ts_eng_check_stops(ts_engine *e, ts_book *b) {
    while (b->stops_dirty && b->phase == TS_PHASE_CONTINUOUS) {
        const int64_t last = b->last_trade;
        if (b->n_stops == 0 || last == 0 || (last < b->stop_buy_min && last > b->stop_sell_max)) {
            b->stops_dirty = 0;
            return;
        }
        int64_t buy_min = INT64_MAX, sell_max = INT64_MIN;
        uint32_t hit = TS_NIL;
        for (uint32_t i = b->stop_head; i != TS_NIL; i = e->orders[i].next) {
            const ts_order *o = &e->orders[i];
            int64_t sp = e->cold[i].peak;
            if (o->side == TS_SIDE_BUY) {
                if (last >= sp) {
                    hit = i;
                    break;
                }
                if (sp < buy_min) buy_min = sp;
            } else {
                if (last <= sp) {
                    hit = i;
                    break;
                }
                if (sp > sell_max) sell_max = sp;
            }
        }
        if (hit == TS_NIL) {
            b->stop_buy_min = buy_min;
            b->stop_sell_max = sell_max;
            b->stops_dirty = 0;
            return;
        }
        fire_stop(e, b, hit);
    }
}

/* ---- new orders ---- */

static int qty_ok(const ts_book *b, int64_t q) {
    const ts_instrument *c = &b->cfg;
    return q > 0 && q <= TS_QTY_MAX && ts_multiple(q, c->lot_size, b->lot_mask) &&
           q >= c->min_qty && (c->max_qty == 0 || q <= c->max_qty);
}

/* A limit price is on the tick; a market-type order's price is its protection price (0 =
 * none), a bound rather than a price anything rests at, so it may sit between ticks. */
static int price_ok(const ts_engine *e, const ts_book *b, uint8_t type, int64_t price) {
    if (type == TS_ORD_LIMIT || type == TS_ORD_STOP_LIMIT)
        return price > 0 && ts_multiple(price, b->cfg.tick_size, b->tick_mask);
    return e->rules >= 1 ? price >= 0 : price == 0;
}

int ts_engine_set_rules(ts_engine *e, uint32_t version) {
    if (version > TS_RULES_VERSION) return TS_ENG_ERR_RULES;
    e->rules = version;
    return TS_ENG_OK;
}

static int band_ok(const ts_book *b, uint8_t type, int64_t price) {
    if (b->cfg.band_bps == 0 || b->static_ref <= 0) return 1;
    if (type != TS_ORD_LIMIT && type != TS_ORD_STOP_LIMIT) return 1;
    return !ts_outside_bps(price, b->static_ref, b->cfg.band_bps);
}

/* Would a post-only order at this price take liquidity? */
static int would_take(const ts_engine *e, const ts_book *b, uint8_t side, int64_t price) {
    const ts_ladder *opp = &b->side[ts_other(side) - 1];
    if (opp->n == 0) return 0;
    int64_t best = e->lvls[opp->lvls[opp->n - 1]].price;
    return side == TS_SIDE_BUY ? price >= best : price <= best;
}

/* "FOK": walk the opposite side as matching would and add what it could fill. Within a
 * level matching first meets each order's visible part in queue order; an iceberg's
 * hidden part comes back only behind the whole level, so it counts only once the level
 * is walked -- after any own-account order in it, which would end the fill. */
static int fok_fillable(const ts_engine *e, const ts_book *b, const ts_command *c) {
    const ts_ladder *opp = &b->side[ts_other(c->side) - 1];
    int64_t lim = c->price == 0 ? INT64_MIN : ts_key(ts_other(c->side), c->price);
    const int64_t ref = b->last_trade ? b->last_trade : b->static_ref;
    const uint32_t bps = ref > 0 ? b->cfg.breaker_bps : 0;
    const uint8_t stp = c->stp_mode ? c->stp_mode : TS_STP_CANCEL_INCOMING;
    int64_t need = c->quantity;
    for (uint32_t i = opp->n; i-- > 0;) {
        if (opp->keys[i] < lim) break;
        const ts_lvl *L = &e->lvls[opp->lvls[i]];
        int in_band = !bps || !ts_outside_bps(L->price, ref, bps);
        int64_t hidden = 0;
        for (uint32_t oi = L->head; oi != TS_NIL; oi = e->orders[oi].next) {
            const ts_order *o = &e->orders[oi];
            if (o->account_id == c->account_id) {
                if (stp != TS_STP_CANCEL_RESTING) return 0;
                continue;
            }
            if (in_band) {
                if (o->visible >= need) return 1;
                need -= o->visible;
                hidden += o->leaves - o->visible;
            }
        }
        if (hidden >= need) return 1;
        need -= hidden;
    }
    return 0;
}

/* "Validation of a new order": the first failing rule's reason, or 0. */
static uint8_t validate_new(const ts_engine *e, const ts_command *c, const ts_book *b) {
    if (!b) return TS_REJ_UNKNOWN_SYMBOL;
    if (c->account_id == 0) return TS_REJ_INVALID_COMMAND;
    if (c->side != TS_SIDE_BUY && c->side != TS_SIDE_SELL) return TS_REJ_INVALID_SIDE;
    const uint8_t type = c->order_type, tif = c->tif;
    if (type < TS_ORD_LIMIT || type > TS_ORD_STOP_LIMIT) return TS_REJ_INVALID_ORDER_TYPE;
    if (tif < TS_TIF_GTC || tif > TS_TIF_GTD) return TS_REJ_INVALID_TIF;
    if ((c->flags & ~TS_FLAG_POST_ONLY) || c->stp_mode > TS_STP_CANCEL_BOTH)
        return TS_REJ_INVALID_COMMAND;
    if (type == TS_ORD_MARKET && tif != TS_TIF_IOC && tif != TS_TIF_FOK) return TS_REJ_INVALID_TIF;
    if (ts_is_stop_type(type) && !ts_resting_tif(tif)) return TS_REJ_INVALID_TIF;
    if (c->flags & TS_FLAG_POST_ONLY) {
        if (type != TS_ORD_LIMIT) return TS_REJ_INVALID_ORDER_TYPE;
        if (!ts_resting_tif(tif)) return TS_REJ_INVALID_TIF;
    }
    if (c->display_qty != 0) {
        if (type != TS_ORD_LIMIT) return TS_REJ_INVALID_ORDER_TYPE;
        if (!ts_resting_tif(tif)) return TS_REJ_INVALID_TIF;
    }
    if (!qty_ok(b, c->quantity)) return TS_REJ_INVALID_QUANTITY;
    if (c->display_qty != 0 &&
        !(c->display_qty > 0 && ts_multiple(c->display_qty, b->cfg.lot_size, b->lot_mask) &&
          c->display_qty <= c->quantity))
        return TS_REJ_INVALID_QUANTITY;
    if (!price_ok(e, b, type, c->price)) return TS_REJ_INVALID_PRICE;
    if (ts_is_stop_type(type)) {
        if (!(c->stop_price > 0 && ts_multiple(c->stop_price, b->cfg.tick_size, b->tick_mask)))
            return TS_REJ_INVALID_PRICE;
    } else if (c->stop_price != 0) {
        return TS_REJ_INVALID_PRICE;
    }
    if (!band_ok(b, type, c->price)) return TS_REJ_PRICE_BAND;
    if (tif == TS_TIF_GTD && c->time_ns <= e->clock) return TS_REJ_INVALID_TIF;
    if (c->order_id <= e->max_order_id) return TS_REJ_DUPLICATE_ORDER_ID;
    if (b->phase == TS_PHASE_HALTED) return TS_REJ_HALTED;
    if (b->phase == TS_PHASE_AUCTION) {
        if (type != TS_ORD_LIMIT || !ts_resting_tif(tif)) return TS_REJ_PHASE;
        return 0;
    }
    if ((c->flags & TS_FLAG_POST_ONLY) && would_take(e, b, c->side, c->price))
        return TS_REJ_POST_ONLY_WOULD_TAKE;
    if (tif == TS_TIF_FOK && !fok_fillable(e, b, c)) return TS_REJ_FOK_UNFILLABLE;
    return 0;
}

/* Returns -1 only when memory for the command could not be reserved (nothing done). */
static int cmd_new(ts_engine *e, const ts_command *c) {
    /* what indexing an accepted order reads: fetched while the order is validated */
    ts_oix_prefetch_put(&e->index, c->order_id, e->orders, sizeof(ts_order));
    ts_book *b = ts_eng_find_book(e, c->symbol_id);
    uint8_t reason = validate_new(e, c, b);
    if (reason) {
        ts_eng_reject(e, c, c->symbol_id, reason);
        return 0;
    }
    if (ts_eng_reserve_book(e, b)) return -1;
    uint32_t oi = ts_order_alloc(e);
    ts_order *o = &e->orders[oi];
    const uint8_t type = c->order_type;
    e->cold[oi] = (ts_order_cold){.seq = ++e->seq,
                                  .quantity = c->quantity,
                                  .peak = ts_is_stop_type(type) ? c->stop_price : c->display_qty,
                                  .expire_ns = c->tif == TS_TIF_GTD ? c->time_ns : 0};
    *o = (ts_order){.order_id = c->order_id,
                    .price = c->price,
                    .leaves = c->quantity,
                    .account_id = c->account_id,
                    .level = TS_NIL,
                    .prev = TS_NIL,
                    .next = TS_NIL,
                    .live_prev = TS_NIL,
                    .live_next = TS_NIL,
                    .book = ts_book_ix(e, b),
                    .side = c->side,
                    .type = type,
                    .tif = c->tif,
                    .flags = c->flags,
                    .stp = c->stp_mode,
                    .state = TS_ST_TAKER};
    e->max_order_id = c->order_id;
    ts_emit(e, TS_EV_ACCEPTED, o, b->cfg.symbol_id, 0, 0, 0, o->price, c->quantity, o->leaves);

    if (ts_is_stop_type(type)) {
        o->state = TS_ST_PENDING;
        o->prev = b->stop_tail;
        if (b->stop_tail != TS_NIL) e->orders[b->stop_tail].next = oi;
        else b->stop_head = oi;
        b->stop_tail = oi;
        b->n_stops++;
        e->n_stops++;
        if (c->side == TS_SIDE_BUY) {
            if (c->stop_price < b->stop_buy_min) b->stop_buy_min = c->stop_price;
        } else if (c->stop_price > b->stop_sell_max) {
            b->stop_sell_max = c->stop_price;
        }
        b->stops_dirty = 1;
        ts_eng_link_live(e, b, oi);
    } else if (b->phase == TS_PHASE_AUCTION) {
        o->state = TS_ST_RESTING;
        ts_eng_link_live(e, b, oi);
        ts_rest(e, b, oi);
    } else {
        const int market = type == TS_ORD_MARKET;
        int r = execute(e, b, oi, limit_key(o));
        const int rests = !market && ts_resting_tif(c->tif);
        finish_taker(e, b, oi, r, rests,
                     market ? TS_CXL_MARKET_REMAINDER : TS_CXL_IOC_REMAINDER);
    }
    ts_eng_check_stops(e, b);
    return 0;
}

/* ---- cancel, replace, mass cancel ---- */

/* The order a cancel or replace names: live, in that symbol, owned by the account. */
static uint32_t find_owned(ts_engine *e, const ts_command *c, ts_book **pb, uint8_t *reason) {
    uint32_t oi = ts_find_order(e, c->order_id);
    if (oi == TS_NIL || e->books[e->orders[oi].book].cfg.symbol_id != c->symbol_id) {
        *reason = TS_REJ_UNKNOWN_ORDER;
        return TS_NIL;
    }
    if (e->orders[oi].account_id != c->account_id) {
        *reason = TS_REJ_NOT_OWNER;
        return TS_NIL;
    }
    *pb = &e->books[e->orders[oi].book];
    return oi;
}

static void cmd_cancel(ts_engine *e, const ts_command *c) {
    ts_book *b = NULL;
    uint8_t reason = 0;
    uint32_t oi = find_owned(e, c, &b, &reason);
    if (oi == TS_NIL) {
        ts_eng_reject(e, c, c->symbol_id, reason);
        return;
    }
    ts_eng_cancel_order(e, b, oi,
                        (c->flags & TS_FLAG_DISCONNECT) ? TS_CXL_DISCONNECT : TS_CXL_USER);
}

static int cmd_replace(ts_engine *e, const ts_command *c) {
    ts_book *b = NULL;
    uint8_t reason = 0;
    uint32_t oi = find_owned(e, c, &b, &reason);
    if (oi == TS_NIL) {
        ts_eng_reject(e, c, c->symbol_id, reason);
        return 0;
    }
    ts_order *o = &e->orders[oi];
    ts_order_cold *oc = &e->cold[oi];
    /* a stop's protection price can be changed but not dropped: 0 keeps it */
    const int64_t price = c->price == 0 && o->type == TS_ORD_STOP ? o->price : c->price;
    const int64_t qty = c->quantity;
    if (b->phase == TS_PHASE_HALTED) reason = TS_REJ_HALTED;
    else if (!qty_ok(b, qty)) reason = TS_REJ_INVALID_QUANTITY;
    else if (!price_ok(e, b, o->type, price)) reason = TS_REJ_INVALID_PRICE;
    else if (!band_ok(b, o->type, price)) reason = TS_REJ_PRICE_BAND;
    else if ((o->flags & TS_FLAG_POST_ONLY) && b->phase == TS_PHASE_CONTINUOUS &&
             would_take(e, b, o->side, price))
        reason = TS_REJ_POST_ONLY_WOULD_TAKE;
    if (reason) {
        ts_eng_reject(e, c, c->symbol_id, reason);
        return 0;
    }
    if (ts_eng_reserve_book(e, b)) return -1;
    /* the reserve may have grown (moved) the order pool: the pointers are taken again */
    o = &e->orders[oi];
    oc = &e->cold[oi];
    const int64_t filled = oc->quantity - o->leaves;
    if (qty <= filled) {
        ts_eng_cancel_order(e, b, oi, TS_CXL_USER);
        ts_eng_check_stops(e, b);
        return 0;
    }
    const int64_t leaves = qty - filled;
    ts_emit(e, TS_EV_REPLACED, o, b->cfg.symbol_id, 0, 0, 0, price, qty, leaves);
    if (o->state == TS_ST_PENDING) {
        o->price = price;
        oc->quantity = qty;
        o->leaves = leaves;
    } else if (price == o->price && qty <= oc->quantity) {
        /* keeps its place in the queue */
        ts_lvl *L = &e->lvls[o->level];
        ts_touch(e, b, o->level, o->side);
        int64_t visible = ts_min64(o->visible, leaves);
        L->shown += visible - o->visible;
        L->total += leaves - o->leaves;
        o->visible = visible;
        oc->quantity = qty;
        o->leaves = leaves;
    } else {
        /* loses its place: off the level, match if it now crosses, rest what remains */
        ts_unrest(e, b, o);
        o->price = price;
        oc->quantity = qty;
        o->leaves = leaves;
        int r = EXEC_OK;
        if (b->phase == TS_PHASE_CONTINUOUS) {
            o->state = TS_ST_TAKER_LIVE;
            r = execute(e, b, oi, limit_key(o));
        }
        finish_taker(e, b, oi, r, 1, TS_CXL_USER);
    }
    ts_eng_check_stops(e, b);
    return 0;
}

/* Mass cancel of one account, in one book or (b NULL) in all: its list is in seq
 * order, so this costs the account's own orders, whatever else rests. */
static void mass_cancel_account(ts_engine *e, uint32_t account, const ts_book *only,
                                uint8_t reason) {
    const ts_acct *a = ts_acct_find(e, account);
    if (!a) return;
    for (uint32_t i = a->head; i != TS_NIL;) {
        const ts_order *o = &e->orders[i];
        const uint32_t next = o->live_next;
        e->mc_visits++;
        if (!only || &e->books[o->book] == only)
            ts_eng_cancel_order(e, &e->books[o->book], i, reason);
        i = next;
    }
}

/* Mass cancel of every account in every symbol: the accounts' lists are each in seq
 * order, so a min-heap of their cursors (orders, keyed by seq) yields the cancels in
 * global seq order without scanning or allocating (e->merge has a slot per account). */
static uint64_t order_seq(const ts_engine *e, uint32_t oi) { return e->cold[oi].seq; }

static void merge_sift_down(const ts_engine *e, uint32_t *h, uint32_t n, uint32_t i) {
    uint32_t x = h[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && order_seq(e, h[c + 1]) < order_seq(e, h[c])) c++;
        if (order_seq(e, h[c]) >= order_seq(e, x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void mass_cancel_everything(ts_engine *e, uint8_t reason) {
    uint32_t *h = e->merge, n = 0;
    for (uint32_t s = 0; s <= e->acct_mask; s++)
        if (e->accts[s].account && e->accts[s].head != TS_NIL) h[n++] = e->accts[s].head;
    for (uint32_t i = n / 2; i-- > 0;) merge_sift_down(e, h, n, i);
    while (n > 0) {
        uint32_t oi = h[0];
        uint32_t next = e->orders[oi].live_next;
        e->mc_visits++;
        ts_eng_cancel_order(e, &e->books[e->orders[oi].book], oi, reason);
        if (next != TS_NIL) h[0] = next;
        else h[0] = h[--n];
        if (n > 0) merge_sift_down(e, h, n, 0);
    }
}

/* Returns -1 only when the sort buffer of a symbol's mass cancel could not be reserved
 * (nothing done). */
static int cmd_mass_cancel(ts_engine *e, const ts_command *c) {
    const uint32_t account = c->account_id;
    const uint8_t reason =
        (c->flags & TS_FLAG_KILL_SWITCH) ? TS_CXL_KILL_SWITCH : TS_CXL_MASS_CANCEL;
    if (c->symbol_id == 0) {
        if (account) mass_cancel_account(e, account, NULL, reason);
        else mass_cancel_everything(e, reason);
        return 0;
    }
    ts_book *b = ts_eng_find_book(e, c->symbol_id);
    if (!b) {
        ts_eng_reject(e, c, c->symbol_id, TS_REJ_UNKNOWN_SYMBOL);
        return 0;
    }
    if (account) {
        mass_cancel_account(e, account, b, reason);
        return 0;
    }
    /* every account in one symbol: the book's orders, sorted by seq */
    if (ts_eng_reserve_scratch(e, b->n_live)) return -1;
    const uint64_t n = ts_eng_collect_book(e, b, 0);
    const ts_seq_ref *r = ts_eng_sort_scratch(e, n);
    e->mc_visits += n;
    for (uint64_t k = 0; k < n; k++) ts_eng_cancel_order(e, b, r[k].order, reason);
    ts_eng_scratch_done(e);
    return 0;
}

/* ---- the command loop ---- */

/* Lookahead. A cancel storm in a big book is memory-bound: a cancel's direct-table slot,
 * its order's line and its neighbours' lines are each a cache miss, and each is known
 * only once the one before it is in, so a cancel taken alone waits for them one after
 * the other. A batch knows its next commands: the loop asks for those lines a few
 * commands ahead, a step at a time as each becomes known -- the slot, then (the slot in
 * cache by then) the order, then (the order in cache) its neighbours and its level -- so
 * that the misses of several commands overlap. Hints only: the commands in between may
 * change any of it, and each command looks its order up again when its turn comes.
 * In a small book every line is in cache already and the lookahead would only cost
 * instructions (a few percent of a 50 ns command), so it starts with a big one: past
 * LOOK_MIN_LIVE live orders, whose hot records (64 bytes each) outgrow a core's L2. */
enum { LOOK_SLOT = 12, LOOK_ORDER = 8, LOOK_LINKS = 4, LOOK_MIN_LIVE = 32768 };

static inline int names_an_order(const ts_command *c) {
    return c->kind == TS_CMD_CANCEL || c->kind == TS_CMD_REPLACE;
}

TS_PREFETCH_FN void look_ahead(const ts_engine *e, const ts_command *commands, uint64_t i,
                              uint64_t n) {
    const ts_order_index *ix = &e->index;
    if (i + LOOK_SLOT < n && names_an_order(&commands[i + LOOK_SLOT]))
        ts_oix_prefetch(ix, commands[i + LOOK_SLOT].order_id);
    if (i + LOOK_ORDER < n && names_an_order(&commands[i + LOOK_ORDER])) {
        const uint32_t v = *ts_oix_direct_slot(ix, commands[i + LOOK_ORDER].order_id);
        if (v != TS_OIX_EMPTY) TS_PREFETCH_W(&e->orders[v]);
    }
    if (i + LOOK_LINKS < n && names_an_order(&commands[i + LOOK_LINKS])) {
        const uint64_t id = commands[i + LOOK_LINKS].order_id;
        const uint32_t v = *ts_oix_direct_slot(ix, id);
        if (v == TS_OIX_EMPTY || e->orders[v].order_id != id) return;
        const ts_order *o = &e->orders[v];
        ts_prefetch_unlink(e, o);
        if (o->state == TS_ST_RESTING) TS_PREFETCH_W(&e->lvls[o->level]);
    }
}

uint64_t ts_engine_process(ts_engine *e, const ts_command *commands, uint64_t n) {
    const int look = n > LOOK_LINKS && e->n_live >= LOOK_MIN_LIVE;
    for (uint64_t i = 0; i < n; i++) {
        const ts_command *c = &commands[i];
        if (look) look_ahead(e, commands, i, n);
        int rc = 0;
        switch (c->kind) {
        case TS_CMD_NEW_ORDER:
            rc = cmd_new(e, c);
            break;
        case TS_CMD_CANCEL:
            cmd_cancel(e, c);
            break;
        case TS_CMD_REPLACE:
            rc = cmd_replace(e, c);
            break;
        case TS_CMD_MASS_CANCEL:
            rc = cmd_mass_cancel(e, c);
            break;
        case TS_CMD_CONTROL:
            rc = ts_eng_reserve_all(e) ? -1 : ts_eng_control(e, c);
            break;
        default:
            ts_eng_reject(e, c, c->symbol_id, TS_REJ_INVALID_COMMAND);
            break;
        }
        if (TS_UNLIKELY(rc)) return i;
        if (e->n_tsyms) ts_eng_flush_md(e);
        if (TS_UNLIKELY(e->oom)) return i + 1;
    }
    return n;
}
