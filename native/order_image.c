/*
 * order_image.c — the live orders of an engine; see order_image.h. It walks each book's
 * live list (resting orders and pending stops, arrival order) in book_internal.h, as
 * the snapshot writer does.
 */
#include "order_image.h"

#include "book_internal.h"

#include <string.h>

uint64_t ts_order_image_count(const ts_engine *e) {
    uint64_t n = 0;
    for (uint32_t i = 0; i < e->n_books; i++) n += e->books[i].n_live;
    return n;
}

uint64_t ts_order_image(const ts_engine *e, ts_live_order *out, uint64_t cap) {
    if (cap < ts_order_image_count(e)) return 0;
    uint64_t k = 0;
    for (uint32_t i = 0; i < e->n_books; i++) {
        const ts_book *b = &e->books[e->by_id[i]];
        for (uint32_t oi = b->live_head; oi != TS_NIL; oi = e->orders[oi].live_next) {
            const ts_order *o = &e->orders[oi];
            ts_live_order *r = &out[k++];
            memset(r, 0, sizeof *r);
            r->order_id = o->order_id;
            r->symbol_id = b->cfg.symbol_id;
            r->account_id = o->account_id;
            r->side = o->side;
            r->order_type = o->type;
            r->price = o->price;
            r->stop_price = ts_stop_price(e, o);
            r->quantity = TS_COLD(e, o)->quantity;
            r->leaves_qty = o->leaves;
        }
    }
    return k;
}
