/*
 * book_snapshot.c — the canonical snapshot (layout in book.h) and restore.
 *
 * The bytes are a pure function of the engine's observable state: symbols in id order,
 * each symbol's orders bids best first (queue order within a level), then asks, then
 * pending stops in seq order; every pad byte zero. Nothing derived is stored: restore
 * rebuilds the index, the levels, the accounts' live lists (by sorting on seq), the GTD heap and
 * the stop screens, and then behaves exactly like the engine that wrote the snapshot.
 *
 * Restore trusts nothing: every record is checked (ranges, pad bytes, ordering,
 * uniqueness, counts), so a corrupt or hand-made snapshot is refused, not half-loaded.
 */
#include <stddef.h>
#include <stdlib.h>

#include "book_internal.h"

_Static_assert(sizeof(ts_snap_header) == 64, "snapshot header");
_Static_assert(sizeof(ts_instrument) == 64, "instrument record");
_Static_assert(sizeof(ts_snap_symbol) == 104, "symbol record");
_Static_assert(sizeof(ts_snap_order) == 96, "order record");

uint64_t ts_engine_snapshot_size(const ts_engine *e) {
    return sizeof(ts_snap_header) +
           (uint64_t)e->n_books * (sizeof(ts_instrument) + sizeof(ts_snap_symbol)) +
           e->n_live * sizeof(ts_snap_order);
}

static void put_order(const ts_engine *e, const ts_book *b, const ts_order *o,
                      ts_snap_order *r) {
    const ts_order_cold *oc = TS_COLD(e, o);
    memset(r, 0, sizeof *r);
    r->order_id = o->order_id;
    r->seq = oc->seq;
    r->price = o->price;
    r->quantity = oc->quantity;
    r->leaves = o->leaves;
    r->visible = o->state == TS_ST_RESTING ? o->visible : 0;
    r->display_qty = ts_display_qty(e, o);
    r->stop_price = ts_stop_price(e, o);
    r->expire_ns = oc->expire_ns;
    r->account_id = o->account_id;
    r->symbol_id = b->cfg.symbol_id;
    r->side = o->side;
    r->order_type = o->type;
    r->tif = o->tif;
    r->flags = o->flags;
    r->stp_mode = o->stp;
    r->state = o->state;
}

uint64_t ts_engine_snapshot(const ts_engine *e, void *buf, uint64_t cap) {
    uint64_t size = ts_engine_snapshot_size(e);
    if (cap < size) return 0;
    unsigned char *p = buf;
    ts_snap_header h;
    memset(&h, 0, sizeof h);
    h.magic = TS_SNAPSHOT_MAGIC;
    h.version = TS_SNAPSHOT_VERSION;
    h.n_symbols = e->n_books;
    h.clock_ns = e->clock;
    h.max_order_id = e->max_order_id;
    h.last_exec_id = e->exec_id;
    h.last_seq = e->seq;
    h.total_orders = e->n_live;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    for (uint32_t k = 0; k < e->n_books; k++) {
        const ts_book *b = &e->books[e->by_id[k]];
        ts_instrument ins = b->cfg;
        ins._pad0 = 0;
        memcpy(p, &ins, sizeof ins);
        p += sizeof ins;
        ts_snap_symbol s;
        memset(&s, 0, sizeof s);
        s.symbol_id = b->cfg.symbol_id;
        s.phase = b->phase;
        s.static_reference = b->static_ref;
        s.last_trade_price = b->last_trade;
        s.reopen_ns = b->reopen_ns;
        s.trade_seq = b->trade_seq;
        s.l2_seq = b->l2_seq;
        s.bbo_seq = b->bbo_seq;
        s.bbo_bid_price = b->bbo_sent.bid_price;
        s.bbo_bid_quantity = b->bbo_sent.bid_quantity;
        s.bbo_ask_price = b->bbo_sent.ask_price;
        s.bbo_ask_quantity = b->bbo_sent.ask_quantity;
        s.n_orders = b->n_live;
        s.status_seq = b->status_seq;
        memcpy(p, &s, sizeof s);
        p += sizeof s;
        ts_snap_order r;
        for (int side = 0; side < 2; side++) {
            const ts_ladder *sd = &b->side[side];
            for (uint32_t i = sd->n; i-- > 0;) {
                for (uint32_t oi = e->lvls[sd->lvls[i]].head; oi != TS_NIL; oi = e->orders[oi].next) {
                    put_order(e, b, &e->orders[oi], &r);
                    memcpy(p, &r, sizeof r);
                    p += sizeof r;
                }
            }
        }
        for (uint32_t oi = b->stop_head; oi != TS_NIL; oi = e->orders[oi].next) {
            put_order(e, b, &e->orders[oi], &r);
            memcpy(p, &r, sizeof r);
            p += sizeof r;
        }
    }
    return size;
}

/* ---- restore ---- */

static int zero_bytes(const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i]) return 0;
    return 1;
}

/* One order record, against its symbol; state-specific rules below. */
static int order_record_ok(const ts_snap_order *r, const ts_book *b, const ts_snap_header *h) {
    if (!zero_bytes(r->_pad0, sizeof r->_pad0)) return 0;
    if (r->symbol_id != b->cfg.symbol_id) return 0;
    if (r->order_id == 0 || r->order_id > h->max_order_id) return 0;
    if (r->seq == 0 || r->seq > h->last_seq) return 0;
    if (r->account_id == 0) return 0;
    if (r->side != TS_SIDE_BUY && r->side != TS_SIDE_SELL) return 0;
    if (r->flags & ~TS_FLAG_POST_ONLY) return 0;
    if (r->stp_mode > TS_STP_CANCEL_BOTH) return 0;
    if (!ts_resting_tif(r->tif)) return 0;
    if (r->quantity <= 0 || r->leaves <= 0 || r->leaves > r->quantity) return 0;
    if (r->tif == TS_TIF_GTD ? r->expire_ns <= h->clock_ns : r->expire_ns != 0) return 0;
    int stop_type = ts_is_stop_type(r->order_type);
    if (stop_type) {
        if (r->stop_price <= 0 || r->display_qty != 0 || (r->flags & TS_FLAG_POST_ONLY)) return 0;
    } else {
        /* display_qty may exceed quantity: a replace can shrink an iceberg below its peak */
        if (r->order_type != TS_ORD_LIMIT || r->stop_price != 0 || r->display_qty < 0) return 0;
    }
    if (r->state == TS_STATE_RESTING) {
        if (r->order_type != TS_ORD_LIMIT && r->order_type != TS_ORD_STOP_LIMIT) return 0;
        if (r->price <= 0) return 0;
        if (r->visible <= 0 || r->visible > r->leaves) return 0;
        if (r->display_qty ? r->visible > r->display_qty : r->visible != r->leaves) return 0;
    } else if (r->state == TS_STATE_PENDING_STOP) {
        if (!stop_type) return 0;
        if (r->order_type == TS_ORD_STOP ? r->price < 0 : r->price <= 0) return 0;
        if (r->visible != 0 || r->leaves != r->quantity) return 0;
    } else {
        return 0;
    }
    return 1;
}

typedef struct seq_ref {
    uint64_t seq;
    uint32_t order;
    uint32_t _pad0;
} seq_ref;

static int by_seq(const void *a, const void *b) {
    uint64_t x = ((const seq_ref *)a)->seq, y = ((const seq_ref *)b)->seq;
    return (x > y) - (x < y);
}

static int restore_into(ts_engine *e, const unsigned char *p, uint64_t len) {
    if (len < sizeof(ts_snap_header)) return TS_ENG_ERR_BAD_SNAPSHOT;
    ts_snap_header h;
    memcpy(&h, p, sizeof h);
    if (h.magic != TS_SNAPSHOT_MAGIC || h.version < 1 || h.version > TS_SNAPSHOT_VERSION ||
        h._pad0 != 0 || h.clock_ns < 0 || h.n_symbols > TS_MAX_BOOKS)
        return TS_ENG_ERR_BAD_SNAPSHOT;
    /* version 1 (before the status channel) ends its symbol record before status_seq: a
     * data directory written by an older engine still restores, its status seqs from 0 */
    const size_t sym_size =
        h.version == 1 ? offsetof(ts_snap_symbol, status_seq) : sizeof(ts_snap_symbol);
    /* exact length, checked before trusting any count */
    uint64_t rest = len - sizeof h;
    uint64_t fixed = (uint64_t)h.n_symbols * (sizeof(ts_instrument) + sym_size);
    if (rest < fixed || (rest - fixed) % sizeof(ts_snap_order) != 0 ||
        (rest - fixed) / sizeof(ts_snap_order) != h.total_orders)
        return TS_ENG_ERR_BAD_SNAPSHOT;
    if (h.total_orders >= TS_NIL / 2) return TS_ENG_ERR_NO_MEMORY;
    e->clock = h.clock_ns;
    e->max_order_id = h.max_order_id;
    e->exec_id = h.last_exec_id;
    e->seq = h.last_seq;

    /* room for every order up front; levels and sides grow as orders are placed */
    while (e->ord_cap < h.total_orders + 1)
        if (ts_eng_grow_orders(e)) return TS_ENG_ERR_NO_MEMORY;
    if (ts_oix_reserve(&e->index, h.total_orders + 1, e->orders, sizeof(ts_order)))
        return TS_ENG_ERR_NO_MEMORY;
    seq_ref *all = malloc((h.total_orders + 1) * sizeof *all);
    if (!all) return TS_ENG_ERR_NO_MEMORY;
    uint64_t n_all = 0;
    int status = TS_ENG_OK;
    const unsigned char *q = p + sizeof h;
    uint32_t prev_id = 0;
    uint64_t orders_seen = 0;
#define FAIL(code)                                                                         \
    do {                                                                                   \
        status = (code);                                                                   \
        goto out;                                                                          \
    } while (0)
    for (uint32_t k = 0; k < h.n_symbols; k++) {
        ts_instrument ins;
        memcpy(&ins, q, sizeof ins);
        q += sizeof ins;
        ts_snap_symbol s = {0};
        memcpy(&s, q, sym_size);
        q += sym_size;
        if (ins._pad0 != 0 || ins.symbol_id <= prev_id || s.symbol_id != ins.symbol_id ||
            !zero_bytes(s._pad0, sizeof s._pad0))
            FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
        prev_id = ins.symbol_id;
        int rc = ts_eng_add_book(e, &ins);
        if (rc == TS_ENG_ERR_NO_MEMORY) FAIL(rc);
        if (rc != TS_ENG_OK) FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
        if (s.phase < TS_PHASE_CONTINUOUS || s.phase > TS_PHASE_AUCTION) FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
        if (s.reopen_ns < -1 || (s.reopen_ns >= 0 && s.phase != TS_PHASE_AUCTION))
            FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
        if (s.static_reference < 0 || s.last_trade_price < 0) FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
        if (s.n_orders > h.total_orders - orders_seen) FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
        orders_seen += s.n_orders;
        ts_book *b = &e->books[e->n_books - 1];
        b->phase = s.phase;
        b->static_ref = s.static_reference;
        b->last_trade = s.last_trade_price;
        b->reopen_ns = s.reopen_ns;
        b->trade_seq = s.trade_seq;
        b->l2_seq = s.l2_seq;
        b->bbo_seq = s.bbo_seq;
        b->status_seq = s.status_seq;
        b->bbo_sent = (ts_bbo){s.bbo_bid_price, s.bbo_bid_quantity, s.bbo_ask_price,
                               s.bbo_ask_quantity};
        b->stops_dirty = 1; /* unknown whether a stop is triggered: let the next check scan */

        /* sections in order: bids (state resting, side buy), asks, pending stops */
        int section = 0; /* 0 bids, 1 asks, 2 stops */
        int64_t prev_key = 0;
        int have_level = 0; /* prev_key is the key of the level being filled */
        uint64_t prev_stop_seq = 0;
        for (uint64_t j = 0; j < s.n_orders; j++) {
            ts_snap_order r;
            memcpy(&r, q, sizeof r);
            q += sizeof r;
            if (!order_record_ok(&r, b, &h)) FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
            int want = r.state == TS_STATE_PENDING_STOP ? 2 : r.side == TS_SIDE_BUY ? 0 : 1;
            if (want < section) FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
            if (want > section) {
                section = want;
                have_level = 0;
            }
            if (ts_find_order(e, r.order_id) != TS_NIL) FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
            if (section < 2) {
                if (!(r.price > 0 && r.price % b->cfg.tick_size == 0)) FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
                int64_t key = ts_key(r.side, r.price);
                if (have_level && key > prev_key) FAIL(TS_ENG_ERR_BAD_SNAPSHOT); /* best first */
                if (!have_level || key != prev_key) {
                    if (ts_eng_grow_levels(e, 1)) FAIL(TS_ENG_ERR_NO_MEMORY);
                    ts_ladder *sd = ts_ladder_of(b, r.side);
                    if (ts_eng_grow_ladder(sd, sd->n + 1)) FAIL(TS_ENG_ERR_NO_MEMORY);
                }
            } else {
                if (r.seq <= prev_stop_seq) FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
                prev_stop_seq = r.seq;
            }
            uint32_t oi = ts_order_alloc(e);
            ts_order *o = &e->orders[oi];
            e->cold[oi] = (ts_order_cold){
                .seq = r.seq,
                .quantity = r.quantity,
                .peak = ts_is_stop_type(r.order_type) ? r.stop_price : r.display_qty,
                .expire_ns = r.expire_ns};
            *o = (ts_order){.order_id = r.order_id,
                            .price = r.price,
                            .leaves = r.leaves,
                            .visible = r.visible,
                            .account_id = r.account_id,
                            .level = TS_NIL,
                            .prev = TS_NIL,
                            .next = TS_NIL,
                            .live_prev = TS_NIL,
                            .live_next = TS_NIL,
                            .book = ts_book_ix(e, b),
                            .side = r.side,
                            .type = r.order_type,
                            .tif = r.tif,
                            .flags = r.flags,
                            .stp = r.stp_mode,
                            .state = r.state};
            ts_oix_put(&e->index, r.order_id, oi, e->orders, sizeof(ts_order));
            all[n_all++] = (seq_ref){.seq = r.seq, .order = oi};
            if (section < 2) {
                /* Records come best level first and in queue order, so a new level goes
                 * after every level so far (the arrays are reversed once the side is
                 * done: best last) and each order at the back of its level. */
                ts_ladder *sd = ts_ladder_of(b, r.side);
                int64_t key = ts_key(r.side, r.price);
                if (!have_level || key != prev_key) {
                    uint32_t nl = ts_lvl_alloc(e);
                    e->lvls[nl] = (ts_lvl){.price = r.price, .head = TS_NIL, .tail = TS_NIL,
                                           .touch = TS_NIL};
                    sd->keys[sd->n] = key;
                    sd->lvls[sd->n++] = nl;
                    prev_key = key;
                    have_level = 1;
                }
                uint32_t li = sd->lvls[sd->n - 1];
                ts_lvl *L = &e->lvls[li];
                ts_level_append(e, L, li, oi);
                L->count++;
                L->shown += o->visible;
                L->total += o->leaves;
            } else {
                o->prev = b->stop_tail;
                if (b->stop_tail != TS_NIL) e->orders[b->stop_tail].next = oi;
                else b->stop_head = oi;
                b->stop_tail = oi;
                b->n_stops++;
                e->n_stops++;
                int64_t sp = r.stop_price;
                if (r.side == TS_SIDE_BUY) {
                    if (sp < b->stop_buy_min) b->stop_buy_min = sp;
                } else if (sp > b->stop_sell_max) {
                    b->stop_sell_max = sp;
                }
            }
        }
        for (int side = 0; side < 2; side++) {
            ts_ladder *sd = &b->side[side];
            for (uint32_t lo = 0, hi = sd->n; hi > lo + 1; lo++, hi--) {
                int64_t kk = sd->keys[lo];
                sd->keys[lo] = sd->keys[hi - 1];
                sd->keys[hi - 1] = kk;
                uint32_t ll = sd->lvls[lo];
                sd->lvls[lo] = sd->lvls[hi - 1];
                sd->lvls[hi - 1] = ll;
            }
        }
    }
    /* the accounts' live lists in seq order; seqs must be unique across the engine */
    qsort(all, n_all, sizeof *all, by_seq);
    for (uint64_t j = 0; j < n_all; j++) {
        uint32_t oi = all[j].order;
        ts_order *o = &e->orders[oi];
        if (j > 0 && all[j - 1].seq == all[j].seq) FAIL(TS_ENG_ERR_BAD_SNAPSHOT);
        ts_book *b = &e->books[o->book];
        if (e->n_accts >= e->acct_limit && ts_eng_grow_accounts(e)) FAIL(TS_ENG_ERR_NO_MEMORY);
        ts_acct *a = ts_acct_get(e, o->account_id);
        o->live_next = TS_NIL;
        o->live_prev = a->tail;
        if (a->tail != TS_NIL) e->orders[a->tail].live_next = oi;
        else a->head = oi;
        a->tail = oi;
        b->n_live++;
        e->n_live++;
        if (o->tif == TS_TIF_GTD) {
            e->gtd_live++;
            if (e->heap_n == e->heap_cap && ts_eng_grow_heap(e)) FAIL(TS_ENG_ERR_NO_MEMORY);
            ts_eng_heap_push(e, e->cold[oi].expire_ns, e->cold[oi].seq, oi);
        }
    }
out:
#undef FAIL
    free(all);
    return status;
}

ts_engine *ts_engine_restore(const void *buf, uint64_t len, int *status) {
    int st = TS_ENG_ERR_NO_MEMORY;
    ts_engine *e = ts_engine_new();
    if (e) {
        st = restore_into(e, buf, len);
        if (st != TS_ENG_OK) {
            ts_engine_free(e);
            e = NULL;
        }
    }
    if (status) *status = st;
    return e;
}
