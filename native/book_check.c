/*
 * book_check.c — invariant checker for tests and fuzzing; see book_check.h.
 */
#include "book_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "book_internal.h"

static int fail(char *err, size_t n, const char *fmt, ...) {
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            rc = fail(err, errlen, __VA_ARGS__);                                           \
            goto out;                                                                      \
        }                                                                                  \
    } while (0)

int ts_book_crossed(const ts_engine *e, uint32_t symbol_id) {
    const ts_book *b = ts_eng_find_book(e, symbol_id);
    if (!b) return TS_ENG_ERR_UNKNOWN_SYMBOL;
    const ts_ladder *bids = &b->side[0], *asks = &b->side[1];
    if (!bids->n || !asks->n) return 0;
    return e->lvls[bids->lvls[bids->n - 1]].price >= e->lvls[asks->lvls[asks->n - 1]].price;
}

int ts_book_check(const ts_engine *e, char *err, size_t errlen) {
    int rc = 0;
    /* seen[oi]: 1 = reached from a level or stop list, 2 = also from its account list */
    unsigned char *seen = calloc(e->ord_cap ? e->ord_cap : 1, 1);
    uint64_t *per_book = NULL; /* live orders per book, as the account lists hold them */
    if (!seen) return fail(err, errlen, "out of memory in checker");
    uint64_t live_total = 0, gtd_total = 0, stops_total = 0, levels_total = 0;

    CHECK(e->ord_hwm <= e->ord_cap && e->ord_used <= e->ord_hwm, "order pool counters");
    CHECK(e->lvl_hwm <= e->lvl_cap && e->lvl_used <= e->lvl_hwm, "level pool counters");
    CHECK(e->n_tsyms == 0 && e->n_touches == 0, "touched lists not flushed");

    for (uint32_t bi = 0; bi < e->n_books; bi++) {
        const ts_book *b = &e->books[bi];
        const uint32_t sym = b->cfg.symbol_id;
        CHECK(ts_eng_find_book(e, sym) == b, "symbol %u not found by id", sym);
        CHECK(!b->touched, "symbol %u still marked touched", sym);
        CHECK(b->phase >= TS_PHASE_CONTINUOUS && b->phase <= TS_PHASE_AUCTION, "phase");
        CHECK(b->reopen_ns == -1 || b->phase == TS_PHASE_AUCTION,
              "symbol %u: reopening time outside AUCTION", sym);
        uint64_t resting = 0;
        for (int s = 0; s < 2; s++) {
            const ts_ladder *sd = &b->side[s];
            const uint8_t side = (uint8_t)(s + 1);
            CHECK(sd->n <= sd->cap, "ladder overflow");
            for (uint32_t i = 0; i < sd->n; i++) {
                uint32_t li = sd->lvls[i];
                CHECK(li < e->lvl_hwm, "level index out of range");
                const ts_lvl *L = &e->lvls[li];
                levels_total++;
                CHECK(sd->keys[i] == ts_key(side, L->price), "symbol %u: key/price mismatch", sym);
                CHECK(i == 0 || sd->keys[i - 1] < sd->keys[i], "symbol %u side %d: not sorted",
                      sym, side);
                CHECK(L->touch == TS_NIL, "level left touched");
                CHECK(L->count > 0, "symbol %u: empty level %lld left in the ladder", sym,
                      (long long)L->price);
                int64_t shown = 0, total = 0;
                uint32_t count = 0, prev = TS_NIL;
                for (uint32_t oi = L->head; oi != TS_NIL; oi = e->orders[oi].next) {
                    CHECK(oi < e->ord_hwm && !seen[oi], "order reached twice or out of range");
                    seen[oi] = 1;
                    const ts_order *o = &e->orders[oi];
                    CHECK(o->state == TS_ST_RESTING, "order %llu in a level but state %u",
                          (unsigned long long)o->order_id, o->state);
                    CHECK(o->prev == prev, "order %llu: prev link", (unsigned long long)o->order_id);
                    CHECK(o->level == li && o->book == bi && o->side == side && o->price == L->price,
                          "order %llu: level/book/side/price back-pointers",
                          (unsigned long long)o->order_id);
                    CHECK(o->leaves > 0 && o->leaves <= TS_COLD(e, o)->quantity,
                          "order %llu: leaves %lld of %lld", (unsigned long long)o->order_id,
                          (long long)o->leaves, (long long)TS_COLD(e, o)->quantity);
                    CHECK(o->visible > 0 && o->visible <= o->leaves,
                          "order %llu: visible %lld leaves %lld", (unsigned long long)o->order_id,
                          (long long)o->visible, (long long)o->leaves);
                    int64_t d = ts_display_qty(e, o);
                    CHECK(d ? o->visible <= d : o->visible == o->leaves,
                          "order %llu: visible vs display", (unsigned long long)o->order_id);
                    CHECK(o->type == TS_ORD_LIMIT || o->type == TS_ORD_STOP_LIMIT,
                          "resting order type");
                    CHECK(ts_resting_tif(o->tif), "resting order tif");
                    shown += o->visible;
                    total += o->leaves;
                    count++;
                    prev = oi;
                }
                CHECK(L->tail == prev, "symbol %u level %lld: tail link", sym, (long long)L->price);
                CHECK(L->count == count && L->shown == shown && L->total == total,
                      "symbol %u level %lld: aggregates count %u/%u shown %lld/%lld total %lld/%lld",
                      sym, (long long)L->price, L->count, count, (long long)L->shown,
                      (long long)shown, (long long)L->total, (long long)total);
                resting += count;
            }
        }
        /* pending stops */
        uint32_t n_stops = 0, prev = TS_NIL;
        uint64_t prev_seq = 0;
        for (uint32_t oi = b->stop_head; oi != TS_NIL; oi = e->orders[oi].next) {
            CHECK(oi < e->ord_hwm && !seen[oi], "stop reached twice or out of range");
            seen[oi] = 1;
            const ts_order *o = &e->orders[oi];
            CHECK(o->state == TS_ST_PENDING && o->book == bi, "stop state/book");
            CHECK(o->prev == prev, "stop prev link");
            CHECK(TS_COLD(e, o)->seq > prev_seq, "stops not in seq order");
            CHECK(ts_is_stop_type(o->type) && o->visible == 0 && o->leaves == TS_COLD(e, o)->quantity,
                  "stop fields");
            int64_t sp = ts_stop_price(e, o);
            if (o->side == TS_SIDE_BUY) CHECK(sp >= b->stop_buy_min, "buy stop screen");
            else CHECK(sp <= b->stop_sell_max, "sell stop screen");
            if (!b->stops_dirty && b->phase == TS_PHASE_CONTINUOUS && b->last_trade) {
                int hit = o->side == TS_SIDE_BUY ? b->last_trade >= sp : b->last_trade <= sp;
                CHECK(!hit, "symbol %u: stop %llu triggered but not fired", sym,
                      (unsigned long long)o->order_id);
            }
            prev_seq = TS_COLD(e, o)->seq;
            prev = oi;
            n_stops++;
        }
        CHECK(b->stop_tail == prev && b->n_stops == n_stops, "stop list tail/count");
        stops_total += n_stops;
        CHECK(b->n_live == resting + n_stops, "symbol %u: live %llu, resting %llu + stops %u",
              sym, (unsigned long long)b->n_live, (unsigned long long)resting, n_stops);
        live_total += b->n_live;
    }
    /* account lists: every live order on its own account's list exactly once, each list
     * in seq order; the table finds each account at its slot */
    per_book = calloc(e->n_books ? e->n_books : 1, sizeof *per_book);
    CHECK(per_book != NULL, "out of memory in checker");
    uint64_t n_accts = 0, listed = 0;
    CHECK(e->acct_mask + 1 >= 2 && ((e->acct_mask + 1) & e->acct_mask) == 0 &&
              e->n_accts <= e->acct_limit && e->acct_limit < e->acct_mask + 1,
          "account table shape");
    for (uint32_t s = 0; s <= e->acct_mask; s++) {
        const ts_acct *a = &e->accts[s];
        if (a->account == 0) continue;
        n_accts++;
        CHECK(ts_acct_find(e, a->account) == a, "account %u not found at its slot", a->account);
        uint32_t prev = TS_NIL;
        uint64_t prev_seq = 0;
        for (uint32_t oi = a->head; oi != TS_NIL; oi = e->orders[oi].live_next) {
            CHECK(oi < e->ord_hwm && seen[oi] == 1,
                  "account %u: live list holds an order not in a book, or twice", a->account);
            seen[oi] = 2;
            const ts_order *o = &e->orders[oi];
            CHECK(o->account_id == a->account, "order %llu of account %u on account %u's list",
                  (unsigned long long)o->order_id, o->account_id, a->account);
            CHECK(o->live_prev == prev, "live prev link");
            CHECK(TS_COLD(e, o)->seq > prev_seq && TS_COLD(e, o)->seq <= e->seq,
                  "account %u: live list not in seq order", a->account);
            CHECK(o->order_id <= e->max_order_id, "order id above the max accepted");
            CHECK(ts_find_order(e, o->order_id) == oi, "order %llu not indexed",
                  (unsigned long long)o->order_id);
            if (o->tif == TS_TIF_GTD) {
                gtd_total++;
                CHECK(TS_COLD(e, o)->expire_ns > e->clock, "GTD order %llu outlived its expiry",
                      (unsigned long long)o->order_id);
            } else {
                CHECK(TS_COLD(e, o)->expire_ns == 0, "expire set on a non-GTD order");
            }
            per_book[o->book]++;
            prev_seq = TS_COLD(e, o)->seq;
            prev = oi;
            listed++;
        }
        CHECK(a->tail == prev, "account %u: live tail", a->account);
    }
    CHECK(n_accts == e->n_accts, "account table holds %llu, count %u", (unsigned long long)n_accts,
          e->n_accts);
    CHECK(listed == e->n_live, "account lists hold %llu, live %llu", (unsigned long long)listed,
          (unsigned long long)e->n_live);
    for (uint32_t bi = 0; bi < e->n_books; bi++)
        CHECK(per_book[bi] == e->books[bi].n_live, "symbol %u: live %llu, on account lists %llu",
              e->books[bi].cfg.symbol_id, (unsigned long long)e->books[bi].n_live,
              (unsigned long long)per_book[bi]);
    CHECK(live_total == e->n_live, "engine live count");
    CHECK(stops_total == e->n_stops, "engine stop count");
    CHECK(gtd_total == e->gtd_live, "GTD live count %llu vs %llu", (unsigned long long)gtd_total,
          (unsigned long long)e->gtd_live);
    CHECK(ts_oix_size(&e->index) == e->n_live, "index holds %llu, live %llu",
          (unsigned long long)ts_oix_size(&e->index), (unsigned long long)e->n_live);
    CHECK(levels_total == e->lvl_used, "levels in use %u, in ladders %llu", e->lvl_used,
          (unsigned long long)levels_total);
    /* every order slot is live, free or never used */
    uint64_t free_n = 0;
    for (uint32_t oi = e->ord_free; oi != TS_NIL; oi = e->orders[oi].next) {
        CHECK(oi < e->ord_hwm && e->orders[oi].state == TS_ST_FREE && !seen[oi], "free list");
        seen[oi] = 3;
        free_n++;
    }
    CHECK(free_n + e->n_live == e->ord_hwm && e->ord_used == e->n_live,
          "pool: free %llu + live %llu != used slots %u", (unsigned long long)free_n,
          (unsigned long long)e->n_live, e->ord_hwm);
    for (uint32_t oi = 0; oi < e->ord_hwm; oi++) CHECK(seen[oi] >= 2, "order slot %u leaked", oi);
    /* index entries all point at live orders, from the slot of their id, and each live
     * order is found (the counts above then say there is one entry per live order) */
    uint64_t direct_n = 0, hash_n = 0;
    for (uint64_t i = 0; i <= e->index.dmask; i++) {
        const uint32_t v = e->index.direct[i];
        if (v == TS_OIX_EMPTY) continue;
        CHECK(v < e->ord_hwm && seen[v] == 2 &&
                  ((uint32_t)e->orders[v].order_id & e->index.dmask) == i,
              "direct index entry %llu (order %u) is stale", (unsigned long long)i, v);
        direct_n++;
    }
    for (uint64_t i = 0; i <= e->index.mask; i++) {
        const ts_oix_slot *s = &e->index.slots[i];
        if (s->val == TS_OIX_EMPTY) continue;
        CHECK(s->val < e->ord_hwm && seen[s->val] == 2 &&
                  (uint32_t)e->orders[s->val].order_id == s->tag,
              "index entry (tag %u, order %u) is stale", s->tag, s->val);
        hash_n++;
    }
    CHECK(direct_n == e->index.dcount && hash_n == e->index.count,
          "index counts: direct %llu of %llu, hash %llu of %llu", (unsigned long long)direct_n,
          (unsigned long long)e->index.dcount, (unsigned long long)hash_n,
          (unsigned long long)e->index.count);
    for (uint32_t oi = 0; oi < e->ord_hwm; oi++)
        if (seen[oi] == 2)
            CHECK(ts_find_order(e, e->orders[oi].order_id) == oi, "live order %llu not indexed",
                  (unsigned long long)e->orders[oi].order_id);
    /* heap property, and every live GTD order has an entry */
    uint64_t covered = 0;
    for (uint64_t i = 0; i < e->heap_n; i++) {
        const ts_gtd *g = &e->heap[i];
        if (i > 0) {
            const ts_gtd *p = &e->heap[(i - 1) / 2];
            CHECK(p->expire_ns < g->expire_ns ||
                      (p->expire_ns == g->expire_ns && p->seq <= g->seq),
                  "GTD heap order");
        }
        const ts_order *o = &e->orders[g->order];
        if (g->order < e->ord_hwm && seen[g->order] == 2 && TS_COLD(e, o)->seq == g->seq) {
            CHECK(o->tif == TS_TIF_GTD && TS_COLD(e, o)->expire_ns == g->expire_ns, "GTD entry fields");
            covered++;
        }
    }
    CHECK(covered == e->gtd_live, "GTD heap covers %llu of %llu", (unsigned long long)covered,
          (unsigned long long)e->gtd_live);
out:
    free(per_book);
    free(seen);
    return rc;
}

uint64_t ts_book_mass_cancel_visits(const ts_engine *e) { return e->mc_visits; }
