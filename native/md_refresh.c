/*
 * md_refresh.c — the L2 refresh image of an engine; see md_refresh.h. It reads the
 * books directly (book_internal.h) because the image needs each symbol's md sequence
 * numbers, which the public queries do not expose.
 */
#include "md_refresh.h"

#include "book_internal.h"

#include <string.h>

uint64_t ts_md_refresh_size(const ts_engine *e) {
    uint64_t n = 0;
    for (uint32_t i = 0; i < e->n_books; i++)
        n += 2u + e->books[i].side[0].n + e->books[i].side[1].n;
    return n;
}

uint64_t ts_md_refresh_image(const ts_engine *e, ts_md *out, uint64_t cap, int64_t time_ns) {
    if (cap < ts_md_refresh_size(e)) return 0;
    uint64_t k = 0;
    for (uint32_t i = 0; i < e->n_books; i++) {
        const ts_book *b = &e->books[e->by_id[i]];
        uint64_t levels = (uint64_t)b->side[0].n + b->side[1].n;
        ts_md *r = &out[k++];
        memset(r, 0, sizeof *r);
        r->kind = TS_MD_L2_REFRESH_BEGIN;
        r->symbol_id = b->cfg.symbol_id;
        r->seq = b->l2_seq;
        r->quantity = (int64_t)levels;
        r->ask_price = (int64_t)b->trade_seq;
        r->ask_quantity = (int64_t)b->bbo_seq;
        r->price = (int64_t)b->status_seq;
        r->order_count = b->phase;
        r->time_ns = time_ns;
        for (int s = 0; s < 2; s++) {
            const ts_ladder *L = &b->side[s];
            for (uint32_t j = L->n; j-- > 0;) { /* best (last key) first */
                const ts_lvl *lv = &e->lvls[L->lvls[j]];
                r = &out[k++];
                memset(r, 0, sizeof *r);
                r->kind = TS_MD_L2_REFRESH_LEVEL;
                r->side = (uint8_t)(s == 0 ? TS_SIDE_BUY : TS_SIDE_SELL);
                r->symbol_id = b->cfg.symbol_id;
                r->seq = b->l2_seq;
                r->price = lv->price;
                r->quantity = lv->shown;
                r->order_count = lv->count;
                r->time_ns = time_ns;
            }
        }
        r = &out[k++];
        memset(r, 0, sizeof *r);
        r->kind = TS_MD_L2_REFRESH_END;
        r->symbol_id = b->cfg.symbol_id;
        r->seq = b->l2_seq;
        r->quantity = (int64_t)levels;
        r->price = b->reopen_ns;
        r->time_ns = time_ns;
    }
    return k;
}
