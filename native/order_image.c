/*
 * order_image.c — the live orders of an engine; see order_image.h. Per book (in symbol
 * id order) it takes the resting orders from the levels and the pending stops from the
 * stop list, then sorts them into arrival (seq) order in the output itself, so the
 * image needs no memory of its own: while sorting, a record carries its order's seq in
 * leaves_qty and its pool index in its pad bytes, both put right afterwards.
 */
#include "order_image.h"

#include "book_internal.h"

#include <stdlib.h>
#include <string.h>

uint64_t ts_order_image_count(const ts_engine *e) {
    uint64_t n = 0;
    for (uint32_t i = 0; i < e->n_books; i++) n += e->books[i].n_live;
    return n;
}

static void put(const ts_engine *e, const ts_book *b, uint32_t oi, ts_live_order *r) {
    const ts_order *o = &e->orders[oi];
    memset(r, 0, sizeof *r);
    r->order_id = o->order_id;
    r->symbol_id = b->cfg.symbol_id;
    r->account_id = o->account_id;
    r->side = o->side;
    r->order_type = o->type;
    r->price = o->price;
    r->stop_price = ts_stop_price(e, o);
    r->quantity = TS_COLD(e, o)->quantity;
    r->leaves_qty = (int64_t)e->cold[oi].seq; /* the sort key for now */
    memcpy(r->_pad0, &oi, sizeof oi);
}

static int by_seq(const void *a, const void *b) {
    uint64_t x = (uint64_t)((const ts_live_order *)a)->leaves_qty;
    uint64_t y = (uint64_t)((const ts_live_order *)b)->leaves_qty;
    return (x > y) - (x < y);
}

_Static_assert(sizeof(((ts_live_order *)0)->_pad0) >= sizeof(uint32_t), "pool index in the pad");

uint64_t ts_order_image(const ts_engine *e, ts_live_order *out, uint64_t cap) {
    if (cap < ts_order_image_count(e)) return 0;
    uint64_t k = 0;
    for (uint32_t i = 0; i < e->n_books; i++) {
        const ts_book *b = &e->books[e->by_id[i]];
        const uint64_t first = k;
        for (int s = 0; s < 2; s++) {
            const ts_ladder *sd = &b->side[s];
            for (uint32_t l = 0; l < sd->n; l++)
                for (uint32_t oi = e->lvls[sd->lvls[l]].head; oi != TS_NIL; oi = e->orders[oi].next)
                    put(e, b, oi, &out[k++]);
        }
        for (uint32_t oi = b->stop_head; oi != TS_NIL; oi = e->orders[oi].next)
            put(e, b, oi, &out[k++]);
        qsort(&out[first], k - first, sizeof *out, by_seq);
        for (uint64_t j = first; j < k; j++) {
            uint32_t oi;
            memcpy(&oi, out[j]._pad0, sizeof oi);
            memset(out[j]._pad0, 0, sizeof out[j]._pad0);
            out[j].leaves_qty = e->orders[oi].leaves;
        }
    }
    return k;
}
