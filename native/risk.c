/*
 * risk.c — the gateway's pre-trade checks and the account state kept from events.
 *
 * Each check returns the reject reason of the first rule an order breaks (0 = passes) and
 * changes nothing; booking happens only once an order is sure to be sent. The rules, in
 * order, are listed in README.md ("Pre-trade risk") and mirrored by the reference model in
 * tradsys/gateway/reference.py, which the property tests hold this file to.
 *
 * Exposure is counted at the worst case the engine could still reach: an order holds
 * (res_qty, res_notional) in its account's open totals from the moment it is sent — its
 * leaves at its risk price, or, while a replace is in flight, the larger of the old and
 * the new figures — and gives them back as fills and cancels come in. Notionals, sums and
 * limit checks are exact 128-bit integers (gw_wide), so no input can wrap one.
 */
#include "gateway_internal.h"

#define TOKEN 1000000000LL /* one throttle token in the bucket's 1e-9 units */

static inline gw_wide notional(int64_t price, int64_t qty) { return (gw_wide)price * qty; }

static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static inline gw_wide max_wide(gw_wide a, gw_wide b) { return a > b ? a : b; }

static inline int64_t reference_of(const gw_instrument *in) {
    return in->last_trade ? in->last_trade : in->reference;
}

static inline int market_type(uint8_t type) { return type == TS_ORD_MARKET || type == TS_ORD_STOP; }

/* Where a market-type order is judged from: the reference; for a stop (a market order
 * once it triggers) the higher of its stop price and the reference, so that a buy stop
 * set below the market, which triggers at once, is not valued at next to nothing. */
static inline int64_t market_base(const gw_instrument *in, int64_t stop_price) {
    return stop_price > 0 ? max64(stop_price, reference_of(in)) : reference_of(in);
}

/* What an order's exposure is counted at: a limit order's price; a market-type order's
 * base or, when higher, its protection price (a buy can trade up to it). */
int64_t gw_risk_price(const gw_instrument *in, uint8_t type, int64_t price, int64_t stop_price) {
    if (market_type(type)) return max64(price, market_base(in, stop_price));
    return price > 0 ? price : market_base(in, stop_price);
}

/* Where a market-type order will trade, which its protection price is set and collared
 * around: the reference; for a STOP the side it triggers on -- a buy stop trades at or
 * above the higher of its stop price and the reference, a sell stop at or below the
 * lower (a sell stop-loss below the market must be able to sell below the reference). */
static int64_t protection_base(const gw_instrument *in, uint8_t type, uint8_t side,
                               int64_t stop_price) {
    const int64_t ref = reference_of(in);
    if (type != TS_ORD_STOP || stop_price <= 0) return ref;
    if (side == TS_SIDE_BUY) return max64(stop_price, ref);
    return ref > 0 && ref < stop_price ? ref : stop_price;
}

/* Market-order protection: the price a market-type order without one is sent with, the
 * edge of the account's price collar on the far side of its base, so that a market order
 * on a thin book cannot walk past the prices the collar allows a limit order (and its
 * notional stays bounded). 0 (none) without a collar or a reference. */
static int64_t protection_price(const ts_risk_limits *lim, const gw_instrument *in,
                                const ts_command *c) {
    if (!market_type(c->order_type) || c->price != 0 || !lim->price_collar_bps) return 0;
    const int64_t base = protection_base(in, c->order_type, c->side, c->stop_price);
    if (base <= 0) return 0;
    const __int128 room = (__int128)base * lim->price_collar_bps / 10000;
    if (c->side == TS_SIDE_BUY) {
        const __int128 p = base + room;
        return p > INT64_MAX ? INT64_MAX : (int64_t)p;
    }
    return base - room > 0 ? (int64_t)(base - room) : 1;
}

/* ---- throttle ---------------------------------------------------------------------------- */

static inline int64_t bucket_depth(const ts_risk_limits *lim) {
    int64_t burst = lim->throttle_burst ? lim->throttle_burst : lim->throttle_per_s;
    return burst * TOKEN;
}

static inline int64_t account_depth(const ts_risk_limits *lim) {
    int64_t burst =
        lim->account_throttle_burst ? lim->account_throttle_burst : lim->account_throttle_per_s;
    return burst * TOKEN;
}

void gw_throttle_reset(gw_session *s, const ts_risk_limits *lim, int64_t now) {
    s->tokens = bucket_depth(lim);
    s->last_ns = now;
}

void gw_account_throttle_reset(gw_account *acc, int64_t now) {
    acc->tokens = account_depth(&acc->lim);
    acc->last_ns = now;
}

/* Refill a bucket of `rate` tokens/s from the pass's clock, up to `depth`. */
static inline void bucket_refill(int64_t *tokens, int64_t *last_ns, int64_t rate, int64_t depth,
                                 int64_t now) {
    if (now > *last_ns) {
        __int128 t = (__int128)(now - *last_ns) * rate + *tokens;
        *tokens = t > depth ? depth : (int64_t)t;
        *last_ns = now;
    }
}

/* The session's bucket, then the account's (shared by all its sessions): the reject
 * reason with no token taken from either, or 0 with a token taken from each. */
static inline int throttle_take(gw_session *s, gw_account *acc, int64_t now) {
    const ts_risk_limits *lim = &acc->lim;
    const int64_t rate = lim->throttle_per_s, acc_rate = lim->account_throttle_per_s;
    if (rate) bucket_refill(&s->tokens, &s->last_ns, rate, bucket_depth(lim), now);
    if (acc_rate) bucket_refill(&acc->tokens, &acc->last_ns, acc_rate, account_depth(lim), now);
    if (rate && s->tokens < TOKEN) return TS_REJ_THROTTLED;
    if (acc_rate && acc->tokens < TOKEN) return TS_REJ_ACCOUNT_THROTTLED;
    if (rate) s->tokens -= TOKEN;
    if (acc_rate) acc->tokens -= TOKEN;
    return 0;
}

/* ---- checks ------------------------------------------------------------------------------ */

/* A price outside the collar around `ref`: the reference for a limit price, the
 * protection base for a market-type order's protection price. */
static int collar_breached(const ts_risk_limits *lim, int64_t ref, int64_t price) {
    if (!lim->price_collar_bps || price <= 0) return 0;
    if (ref <= 0) return 0;
    __int128 diff = (__int128)price - ref;
    if (diff < 0) diff = -diff;
    return diff * 10000 > (__int128)ref * lim->price_collar_bps;
}

/* Position rule: the side's worst case once this order holds `held` lots (instead of
 * `was`) of its open quantity. */
static int position_breached(const ts_risk_limits *lim, const gw_position *p, uint8_t side,
                             int64_t was, int64_t held) {
    if (!lim->max_position) return 0;
    gw_wide worst = side == TS_SIDE_BUY ? p->position + p->open_buy - was + held
                                        : p->open_sell - was + held - p->position;
    return worst > lim->max_position;
}

static int credit_breached(const ts_risk_limits *lim, const gw_account *acc, gw_wide was,
                           gw_wide held) {
    if (!lim->credit_limit) return 0;
    return acc->open_notional - was + held + acc->filled_notional > lim->credit_limit;
}

static inline int64_t collar_ref(const gw_instrument *in, uint8_t type, uint8_t side,
                                 int64_t stop_price) {
    return market_type(type) ? protection_base(in, type, side, stop_price) : reference_of(in);
}

int gw_check_new(ts_gateway *gw, gw_session *s, const ts_command *c, uint32_t *instr_out,
                 int64_t *risk_price_out, int64_t *send_price_out) {
    gw_account *acc = &gw->accounts[s->account];
    const ts_risk_limits *lim = &acc->lim;
    if (c->order_id == 0) return TS_REJ_INVALID_COMMAND;
    if (gw->global_kill || acc->killed) return TS_REJ_KILL_SWITCH;
    int thr = throttle_take(s, acc, gw->clock_ns);
    if (thr) return thr;
    if (gw_find_client(gw, s->account, c->order_id) != GW_NONE) return TS_REJ_DUPLICATE_CLIENT_ID;
    uint32_t k = gw_keymap_get(&gw->instr_map, c->symbol_id);
    if (k == GW_NONE) return TS_REJ_UNKNOWN_SYMBOL;
    if (c->side != TS_SIDE_BUY && c->side != TS_SIDE_SELL) return TS_REJ_INVALID_SIDE;
    if (c->quantity <= 0) return TS_REJ_INVALID_QUANTITY;
    if (c->price < 0 || c->stop_price < 0) return TS_REJ_INVALID_PRICE;
    /* a limit at 0 would be valued as a market order (at its protection base) and refused
     * for that valuation's sake, when what is wrong is its price (docs/matching.md rule 8) */
    if (c->price == 0 && (c->order_type == TS_ORD_LIMIT || c->order_type == TS_ORD_STOP_LIMIT))
        return TS_REJ_INVALID_PRICE;
    const gw_instrument *in = &gw->instr[k];
    const int64_t protect = protection_price(lim, in, c);
    const int64_t send_price = protect ? protect : c->price;
    int64_t rp = gw_risk_price(in, c->order_type, send_price, c->stop_price);
    gw_wide n = notional(rp, c->quantity);
    if (lim->max_order_qty && c->quantity > lim->max_order_qty) return TS_REJ_MAX_ORDER_QTY;
    if (lim->max_order_notional && (rp == 0 || n > lim->max_order_notional))
        return TS_REJ_MAX_NOTIONAL;
    if (collar_breached(lim, collar_ref(in, c->order_type, c->side, c->stop_price), c->price))
        return TS_REJ_PRICE_COLLAR;
    if (lim->max_open_orders && acc->open_orders >= lim->max_open_orders)
        return TS_REJ_MAX_OPEN_ORDERS;
    if (position_breached(lim, &acc->pos[k], c->side, 0, c->quantity)) return TS_REJ_MAX_POSITION;
    if (lim->credit_limit && (rp == 0 || credit_breached(lim, acc, 0, n)))
        return TS_REJ_CREDIT_LIMIT;
    *instr_out = k;
    *risk_price_out = rp;
    *send_price_out = send_price;
    return 0;
}

/* What an order holds while replaces are in flight (pend_*) or not. */
static void reserve_target(const gw_order *o, int64_t *rq, gw_wide *rn) {
    *rq = o->leaves;
    *rn = notional(o->price, o->leaves);
    if (o->pending && o->pend_qty) {
        *rq = max64(*rq, o->pend_qty);
        *rn = max_wide(*rn, o->pend_notional);
    }
}

/* A replace's risk price: its new price (for a STOP, 0 keeps its protection price) valued
 * as a new order's would be. */
static int64_t replace_risk_price(const gw_instrument *in, const gw_order *o,
                                  const ts_command *c) {
    return gw_risk_price(in, o->type, c->price > 0 ? c->price : o->limit, o->stop_price);
}

/* The replace's worst case: its new leaves (new total − filled) at its new risk price,
 * which it returns. */
static int64_t replace_figures(const gw_instrument *in, const gw_order *o,
                               const ts_command *c, int64_t *est, gw_wide *est_n) {
    int64_t rp = replace_risk_price(in, o, c);
    int64_t e = c->quantity - (o->qty - o->leaves);
    *est = e > 0 ? e : 0;
    *est_n = notional(rp, *est);
    return rp;
}

int gw_check_replace(ts_gateway *gw, gw_session *s, const ts_command *c, uint32_t *order_out) {
    gw_account *acc = &gw->accounts[s->account];
    const ts_risk_limits *lim = &acc->lim;
    if (gw->global_kill || acc->killed) return TS_REJ_KILL_SWITCH;
    int thr = throttle_take(s, acc, gw->clock_ns);
    if (thr) return thr;
    uint32_t idx = gw_find_amendable_in(gw, s->account, c->order_id, c->symbol_id);
    if (idx == GW_NONE) return TS_REJ_UNKNOWN_CLIENT_ID;
    const gw_order *o = &gw->orders[idx];
    if (c->quantity <= 0) return TS_REJ_INVALID_QUANTITY;
    if (c->price < 0) return TS_REJ_INVALID_PRICE;
    const gw_instrument *in = &gw->instr[o->instr];
    int64_t rp = replace_risk_price(in, o, c);
    if (lim->max_order_qty && c->quantity > lim->max_order_qty) return TS_REJ_MAX_ORDER_QTY;
    if (lim->max_order_notional && (rp == 0 || notional(rp, c->quantity) > lim->max_order_notional))
        return TS_REJ_MAX_NOTIONAL;
    if (collar_breached(lim, collar_ref(in, o->type, o->side, o->stop_price), c->price))
        return TS_REJ_PRICE_COLLAR;
    int64_t est;
    gw_wide est_n;
    replace_figures(in, o, c, &est, &est_n);
    int64_t rq = max64(o->res_qty, est);
    gw_wide rn = max_wide(o->res_notional, est_n);
    if (position_breached(lim, &acc->pos[o->instr], o->side, o->res_qty, rq))
        return TS_REJ_MAX_POSITION;
    if (credit_breached(lim, acc, o->res_notional, rn)) return TS_REJ_CREDIT_LIMIT;
    *order_out = idx;
    return 0;
}

/* ---- accounting -------------------------------------------------------------------------- */

static void set_reserve(ts_gateway *gw, gw_order *o, int64_t rq, gw_wide rn) {
    gw_account *acc = &gw->accounts[o->account];
    gw_position *p = &acc->pos[o->instr];
    if (o->side == TS_SIDE_BUY) p->open_buy += rq - o->res_qty;
    else p->open_sell += rq - o->res_qty;
    acc->open_notional += rn - o->res_notional;
    o->res_qty = rq;
    o->res_notional = rn;
}

static void rereserve(ts_gateway *gw, gw_order *o) {
    int64_t rq;
    gw_wide rn;
    reserve_target(o, &rq, &rn);
    set_reserve(gw, o, rq, rn);
}

void gw_book_new(ts_gateway *gw, uint32_t idx, int64_t risk_price) {
    gw_order *o = &gw->orders[idx];
    o->price = risk_price;
    o->leaves = o->qty;
    o->state = GW_PENDING_NEW;
    gw_due_add(gw, o, gw_due(o)); /* a fresh slot owed nothing */
    gw->accounts[o->account].open_orders++;
    rereserve(gw, o);
}

/* A live order rebuilt from a worker's image (gateway_ledger.c): qty and leaves set. */
void gw_book_restored(ts_gateway *gw, uint32_t idx, int64_t risk_price) {
    gw_order *o = &gw->orders[idx];
    o->price = risk_price;
    o->state = GW_LIVE;
    gw->accounts[o->account].open_orders++;
    rereserve(gw, o);
}

void gw_book_replace(ts_gateway *gw, uint32_t idx, const ts_command *c) {
    gw_order *o = &gw->orders[idx];
    int64_t est;
    gw_wide est_n;
    const int64_t rp = replace_figures(&gw->instr[o->instr], o, c, &est, &est_n);
    if (!o->pending) {
        o->pend_qty = 0;
        o->pend_notional = 0;
        o->pend_price = 0;
    }
    o->pend_qty = max64(o->pend_qty, est);
    o->pend_notional = max_wide(o->pend_notional, est_n);
    o->pend_price = max64(o->pend_price, rp);
    o->pending++;
    gw_due_add(gw, o, 1);
    int64_t rq;
    gw_wide rn;
    reserve_target(o, &rq, &rn);
    set_reserve(gw, o, max64(rq, o->res_qty), max_wide(rn, o->res_notional));
}

/* A replaced order's risk price. A market-type order's follows the reference, which a
 * trade may have moved since its replace was checked: it keeps the price the replace was
 * checked at, as an exchange's risk gate reserves what it checked (revalued when the
 * REPLACED comes, it would hold a figure no check saw: past the credit limit, or short of
 * what was reserved). Which of several replaces in flight the event answers is not
 * tracked, so it takes the highest price they were checked at: never less than the one
 * that took effect, at worst more until its next replace. A REPLACED that answers no
 * replace booked here (sent before a restart) is valued at the reference now, as the
 * restored order was. A limit order's risk price is its limit. */
static int64_t replaced_risk_price(const ts_gateway *gw, const gw_order *o, int booked) {
    if (market_type(o->type) && booked && o->pend_price > 0) return o->pend_price;
    return gw_risk_price(&gw->instr[o->instr], o->type, o->limit, o->stop_price);
}

/* The order can no longer trade: give back what it holds and free its client id. */
static void finish(ts_gateway *gw, uint32_t idx) {
    gw_order *o = &gw->orders[idx];
    if (o->state == GW_DONE) return;
    o->state = GW_DONE;
    o->leaves = 0;
    gw->accounts[o->account].open_orders--;
    set_reserve(gw, o, 0, 0);
    if (o->indexed) gw_unindex_client(gw, idx);
}

static void apply_event(ts_gateway *gw, uint32_t idx, const ts_event *ev);

void gw_apply_event(ts_gateway *gw, uint32_t idx, const ts_event *ev) {
    gw_order *o = &gw->orders[idx];
    const int64_t due = gw_due(o);
    apply_event(gw, idx, ev);
    gw_due_add(gw, o, gw_due(o) - due); /* an answer came: its session owes one fewer */
}

static void apply_event(ts_gateway *gw, uint32_t idx, const ts_event *ev) {
    gw_order *o = &gw->orders[idx];
    switch (ev->kind) {
    case TS_EV_ACCEPTED:
        if (o->state == GW_PENDING_NEW) o->state = GW_LIVE;
        break;
    case TS_EV_REJECTED:
        if (o->state == GW_PENDING_NEW) {
            finish(gw, idx); /* the order itself */
        } else if (o->pending) {
            o->pending--; /* a cancel or replace of it */
            if (o->state != GW_DONE) rereserve(gw, o);
        }
        break;
    case TS_EV_TRADE: {
        if (gw->ledger) {
            gw_ledger_trade(gw, o->account, o->instr, ev);
        } else {
            gw_account *acc = &gw->accounts[o->account];
            gw_position *p = &acc->pos[o->instr];
            p->position += o->side == TS_SIDE_BUY ? ev->quantity : -ev->quantity;
            acc->filled_notional += notional(ev->price, ev->quantity);
        }
        if (o->state == GW_DONE) break;
        o->state = GW_LIVE;
        o->leaves = ev->leaves_qty;
        if ((ev->flags & TS_EVF_DONE) || ev->leaves_qty <= 0) finish(gw, idx);
        else rereserve(gw, o);
        break;
    }
    case TS_EV_CANCELLED:
        /* the answer to a cancel the gateway sent: the client's, or its disconnect's */
        if ((ev->reason == TS_CXL_USER || ev->reason == TS_CXL_DISCONNECT) && o->pending)
            o->pending--;
        finish(gw, idx);
        break;
    case TS_EV_REPLACED: {
        const int booked = o->pending > 0;
        if (o->pending) o->pending--;
        if (o->state == GW_DONE) break;
        o->qty = ev->quantity;
        o->leaves = ev->leaves_qty;
        if (ev->price > 0) o->limit = ev->price;
        o->price = replaced_risk_price(gw, o, booked);
        rereserve(gw, o);
        break;
    }
    default: /* TRIGGERED changes nothing the gateway counts */
        break;
    }
}
