/*
 * book.c — the matching engine's life cycle, memory, market-data flush and queries.
 *
 * The rest of the engine: book_orders.c (new orders, matching, cancel, replace, mass
 * cancel, stops; the command loop), book_session.c (controls, the clock, expiry,
 * auctions), book_snapshot.c (snapshot and restore). Data structures: book_internal.h.
 *
 * Memory discipline: every structure a command can grow is grown *before* the command
 * mutates anything (ts_eng_reserve_book / ts_eng_reserve_all), so running out of memory
 * leaves the engine exactly as it was after the previous command. Only the output
 * buffers grow during a command, since their need is not known in advance; if one
 * cannot grow, the command still completes (the state stays consistent), the record is
 * dropped, and ts_engine_process stops after that command.
 */
#include <stdlib.h>

#include "book_internal.h"
#include "huge_alloc.h"

/* The fuzz targets build with tiny ones (native/Makefile), so that pools grow -- and
 * move -- in the middle of the commands they throw at the engine. */
#ifndef TS_INITIAL_ORDERS
#define TS_INITIAL_ORDERS 1024u
#endif
#ifndef TS_INITIAL_LEVELS
#define TS_INITIAL_LEVELS 256u
#endif
/* account table slots (a power of two) */
#ifndef TS_INITIAL_ACCOUNTS
#define TS_INITIAL_ACCOUNTS 64u
#endif
#define INITIAL_ORDERS TS_INITIAL_ORDERS
#define INITIAL_LEVELS TS_INITIAL_LEVELS
#define INITIAL_OUTPUT 1024u
/* A sort buffer bigger than this (in ts_seq_ref entries) is freed after the command that
 * needed it: a session close of a huge book must not hold its memory for good. */
#define SCRATCH_KEEP 4096u

static int grow_array(void **p, uint64_t *cap, uint64_t need, size_t size) {
    if (need <= *cap) return 0;
    uint64_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * size);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* The order pool's two arrays, huge-page backed (huge_alloc.h); blocks from it are
 * page-aligned, so the hot records are TS_ORDER_ALIGN-aligned. */
static size_t hot_bytes(uint64_t n) { return (size_t)n * sizeof(ts_order); }
static size_t cold_bytes(uint64_t n) { return (size_t)n * sizeof(ts_order_cold); }

ts_engine *ts_engine_new(void) {
    ts_engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->rules = TS_RULES_VERSION;
    e->ord_free = TS_NIL;
    e->lvl_free = TS_NIL;
    e->orders = ts_huge_alloc(hot_bytes(INITIAL_ORDERS));
    e->cold = ts_huge_alloc(cold_bytes(INITIAL_ORDERS));
    e->ord_cap = e->cold_cap = INITIAL_ORDERS; /* ts_engine_free frees by capacity */
    e->lvls = malloc(INITIAL_LEVELS * sizeof *e->lvls);
    e->touches = malloc(INITIAL_LEVELS * sizeof *e->touches);
    e->ev = malloc(INITIAL_OUTPUT * sizeof *e->ev);
    e->md = malloc(INITIAL_OUTPUT * sizeof *e->md);
    int ix = ts_oix_init(&e->index, 2 * INITIAL_ORDERS);
    if (!e->orders || !e->cold || !e->lvls || !e->touches || !e->ev || !e->md || ix != 0 ||
        ts_eng_grow_accounts(e) != 0) {
        ts_engine_free(e);
        return NULL;
    }
    e->lvl_cap = INITIAL_LEVELS;
    e->touches_cap = INITIAL_LEVELS;
    e->ev_cap = INITIAL_OUTPUT;
    e->md_cap = INITIAL_OUTPUT;
    return e;
}

void ts_engine_free(ts_engine *e) {
    if (!e) return;
    for (uint32_t i = 0; i < e->n_books; i++) {
        free(e->books[i].side[0].keys);
        free(e->books[i].side[0].lvls);
        free(e->books[i].side[1].keys);
        free(e->books[i].side[1].lvls);
    }
    free(e->books);
    free(e->by_id);
    free(e->sym_keys);
    free(e->sym_vals);
    ts_huge_free(e->orders, hot_bytes(e->ord_cap));
    ts_huge_free(e->cold, cold_bytes(e->cold_cap));
    free(e->lvls);
    ts_oix_free(&e->index);
    free(e->heap);
    free(e->ev);
    free(e->md);
    free(e->touches);
    free(e->tsyms);
    free(e->merge);
    free(e->accts);
    free(e->scratch);
    free(e);
}

/* ---- symbols ---- */

static uint32_t sym_hash(uint32_t id, uint32_t mask) { return (id * 0x9E3779B1u) & mask; }

ts_book *ts_eng_find_book(const ts_engine *e, uint32_t symbol_id) {
    if (!e->sym_keys || symbol_id == 0) return NULL;
    for (uint32_t i = sym_hash(symbol_id, e->sym_mask);; i = (i + 1) & e->sym_mask) {
        uint32_t k = e->sym_keys[i];
        if (k == symbol_id) return &e->books[e->sym_vals[i]];
        if (k == 0) return NULL;
    }
}

static int rebuild_symbol_table(ts_engine *e) {
    uint32_t cap = 16;
    while (cap < 2 * e->n_books) cap *= 2;
    uint32_t *keys = calloc(cap, sizeof *keys);
    uint16_t *vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (uint32_t b = 0; b < e->n_books; b++) {
        uint32_t i = sym_hash(e->books[b].cfg.symbol_id, cap - 1);
        while (keys[i]) i = (i + 1) & (cap - 1);
        keys[i] = e->books[b].cfg.symbol_id;
        vals[i] = (uint16_t)b;
    }
    free(e->sym_keys);
    free(e->sym_vals);
    e->sym_keys = keys;
    e->sym_vals = vals;
    e->sym_mask = cap - 1;
    return 0;
}

static int instrument_ok(const ts_instrument *i) {
    return i->symbol_id > 0 && i->tick_size > 0 && i->lot_size > 0 && i->min_qty >= 0 &&
           i->max_qty >= 0 && (i->max_qty == 0 || i->max_qty >= i->min_qty) &&
           i->reference_price >= 0 && i->breaker_halt_ns >= 0 && i->band_bps <= 1000000 &&
           i->breaker_bps <= 1000000;
}

int ts_eng_add_book(ts_engine *e, const ts_instrument *ins) {
    if (!instrument_ok(ins)) return TS_ENG_ERR_BAD_INSTRUMENT;
    if (ts_eng_find_book(e, ins->symbol_id)) return TS_ENG_ERR_DUPLICATE_SYMBOL;
    if (e->n_books >= TS_MAX_BOOKS) return TS_ENG_ERR_NO_MEMORY;
    uint32_t n = e->n_books + 1;
    if (n > e->books_cap) {
        uint32_t cap = e->books_cap ? 2 * e->books_cap : 8;
        if (cap > TS_MAX_BOOKS) cap = TS_MAX_BOOKS;
        ts_book *books = realloc(e->books, cap * sizeof *books);
        if (!books) return TS_ENG_ERR_NO_MEMORY;
        e->books = books;
        uint16_t *by_id = realloc(e->by_id, cap * sizeof *by_id);
        if (!by_id) return TS_ENG_ERR_NO_MEMORY;
        e->by_id = by_id;
        uint16_t *tsyms = realloc(e->tsyms, cap * sizeof *tsyms);
        if (!tsyms) return TS_ENG_ERR_NO_MEMORY;
        e->tsyms = tsyms;
        e->books_cap = cap;
    }
    ts_book *b = &e->books[e->n_books];
    memset(b, 0, sizeof *b);
    b->cfg = *ins;
    b->cfg._pad0 = 0;
    b->static_ref = ins->reference_price;
    b->reopen_ns = -1;
    b->tick_mask = ts_pow2_mask(ins->tick_size);
    b->lot_mask = ts_pow2_mask(ins->lot_size);
    b->stop_head = b->stop_tail = TS_NIL;
    b->stop_buy_min = INT64_MAX;
    b->stop_sell_max = INT64_MIN;
    b->phase = TS_PHASE_CONTINUOUS;
    b->touch_head = b->touch_tail = TS_NIL;
    if (ts_eng_grow_ladder(&b->side[0], 16) || ts_eng_grow_ladder(&b->side[1], 16)) {
        free(b->side[0].keys);
        free(b->side[0].lvls);
        free(b->side[1].keys);
        free(b->side[1].lvls);
        return TS_ENG_ERR_NO_MEMORY;
    }
    e->n_books = n;
    if (rebuild_symbol_table(e) != 0) {
        e->n_books--;
        free(b->side[0].keys);
        free(b->side[0].lvls);
        free(b->side[1].keys);
        free(b->side[1].lvls);
        return TS_ENG_ERR_NO_MEMORY;
    }
    /* keep by_id sorted: insertion, symbols are few and added once */
    uint32_t pos = n - 1;
    while (pos > 0 && e->books[e->by_id[pos - 1]].cfg.symbol_id > ins->symbol_id) {
        e->by_id[pos] = e->by_id[pos - 1];
        pos--;
    }
    e->by_id[pos] = (uint16_t)(n - 1);
    return TS_ENG_OK;
}

int ts_engine_add_instrument(ts_engine *e, const ts_instrument *instrument) {
    return ts_eng_add_book(e, instrument);
}

/* ---- growth and reservation ---- */

/*
 * The order pool doubles up to ORDERS_DOUBLING_LIMIT slots, then grows by an eighth at a
 * time: a doubled pool can stand up to half empty, which at millions of 96-byte orders
 * is most of the engine's memory (10 M orders in a 16.7 M-slot pool: 161 bytes of pool
 * per order), while +1/8 wastes at most 12 bytes an order. Growing that big a block
 * remaps its pages rather than copying them (ts_huge_grow); and even copying would cost
 * only about 9 copies of each order over the pool's life. Indices stay valid.
 */
#define ORDERS_DOUBLING_LIMIT (1u << 20)

int ts_eng_grow_orders(ts_engine *e) {
    uint64_t cap = e->ord_cap;
    const uint64_t max = TS_NIL / 2; /* u32 indices, TS_NIL reserved */
    if (cap >= max) return -1;
    uint64_t n = cap < 16 ? 16 : cap < ORDERS_DOUBLING_LIMIT ? 2 * cap : cap + cap / 8;
    if (n > max) n = max;
    /* the cold array first, keeping its own capacity: if the hot one then cannot grow,
     * the cold one is just ahead, and the next attempt finds it big enough */
    if (e->cold_cap < n) {
        ts_order_cold *cold = ts_huge_grow(e->cold, cold_bytes(e->cold_cap), cold_bytes(n),
                                           cold_bytes(e->ord_hwm));
        if (!cold) return -1;
        e->cold = cold;
        e->cold_cap = (uint32_t)n;
    }
    ts_order *hot = ts_huge_grow(e->orders, hot_bytes(cap), hot_bytes(n), hot_bytes(e->ord_hwm));
    if (!hot) return -1;
    e->orders = hot;
    e->ord_cap = (uint32_t)n;
    return 0;
}

int ts_eng_grow_levels(ts_engine *e, uint32_t free_needed) {
    uint64_t cap = e->lvl_cap;
    uint64_t need = (uint64_t)e->lvl_used + free_needed;
    if (need >= TS_NIL / 2) return -1;
    /* free slots are the free list plus the never-used tail; the free list holds
     * cap_used - used entries, so growing the tail by the shortfall is enough */
    if (grow_array((void **)&e->lvls, &cap, need, sizeof *e->lvls)) return -1;
    /* A command touches at most every level there is plus the ones it creates, which
     * come from the free part of the pool: lvl_cap bounds the touched list, so any
     * command (a mass cancel too, which reserves no level) always has room. */
    if (ts_eng_grow_touches(e, (uint32_t)cap)) return -1;
    e->lvl_cap = (uint32_t)cap;
    return 0;
}

int ts_eng_grow_ladder(ts_ladder *s, uint32_t need) {
    if (need <= s->cap) return 0;
    uint32_t cap = s->cap ? s->cap : 16;
    while (cap < need) cap *= 2;
    int64_t *keys = realloc(s->keys, (size_t)cap * sizeof *keys);
    if (!keys) return -1;
    s->keys = keys;
    uint32_t *lvls = realloc(s->lvls, (size_t)cap * sizeof *lvls);
    if (!lvls) return -1;
    s->lvls = lvls;
    s->cap = cap;
    return 0;
}

int ts_eng_grow_touches(ts_engine *e, uint32_t need) {
    uint64_t cap = e->touches_cap;
    if (grow_array((void **)&e->touches, &cap, need, sizeof *e->touches)) return -1;
    e->touches_cap = (uint32_t)cap;
    return 0;
}

int ts_eng_grow_events(ts_engine *e) {
    if (grow_array((void **)&e->ev, &e->ev_cap, e->ev_n + 1, sizeof *e->ev)) {
        e->oom = 1;
        return -1;
    }
    return 0;
}

int ts_eng_grow_md(ts_engine *e) {
    if (grow_array((void **)&e->md, &e->md_cap, e->md_n + 1, sizeof *e->md)) {
        e->oom = 1;
        return -1;
    }
    return 0;
}

/* The account table: doubled (TS_INITIAL_ACCOUNTS slots the first time), entries
 * rehashed; the merge heap of a mass cancel keeps one slot per table slot. Nothing
 * changes unless both arrays could be had. */
int ts_eng_grow_accounts(ts_engine *e) {
    const uint64_t old_cap = e->accts ? (uint64_t)e->acct_mask + 1 : 0;
    const uint64_t cap = old_cap ? 2 * old_cap : TS_INITIAL_ACCOUNTS;
    if (cap > (1ull << 31)) return -1;
    ts_acct *t = calloc(cap, sizeof *t);
    if (!t) return -1;
    uint32_t *merge = realloc(e->merge, cap * sizeof *merge);
    if (!merge) {
        free(t);
        return -1;
    }
    e->merge = merge;
    uint32_t log2 = 0;
    while ((1ull << log2) < cap) log2++;
    ts_acct *old = e->accts;
    e->accts = t;
    e->acct_mask = (uint32_t)(cap - 1);
    e->acct_shift = 32 - log2;
    e->acct_limit = (uint32_t)(cap * 3 / 4); /* < cap: a probe always meets a free slot */
    for (uint64_t i = 0; i < old_cap; i++) {
        if (old[i].account == 0) continue;
        uint32_t j = ts_acct_home(e, old[i].account);
        while (t[j].account) j = (j + 1) & e->acct_mask;
        t[j] = old[i];
    }
    free(old);
    return 0;
}

/* ---- sorting a book's orders by seq (mass cancel of a symbol, session close) ---- */

/* Room to collect and sort `orders` orders: twice that, the sort's second buffer. */
int ts_eng_reserve_scratch(ts_engine *e, uint64_t orders) {
    const uint64_t need = 2 * orders;
    if (need <= e->scratch_cap) return 0;
    ts_seq_ref *p = realloc(e->scratch, need * sizeof *p);
    if (!p) return -1;
    e->scratch = p;
    e->scratch_cap = need;
    return 0;
}

void ts_eng_scratch_done(ts_engine *e) {
    if (e->scratch_cap <= SCRATCH_KEEP) return;
    free(e->scratch);
    e->scratch = NULL;
    e->scratch_cap = 0;
}

/* The book's live orders (or only its DAY orders) into e->scratch, in no particular
 * order: every level of both sides, then the pending stops. Returns how many; room for
 * b->n_live was reserved. */
uint64_t ts_eng_collect_book(const ts_engine *e, const ts_book *b, int day_only) {
    ts_seq_ref *out = e->scratch;
    uint64_t n = 0;
    for (int s = 0; s < 2; s++) {
        const ts_ladder *sd = &b->side[s];
        for (uint32_t i = 0; i < sd->n; i++)
            for (uint32_t oi = e->lvls[sd->lvls[i]].head; oi != TS_NIL; oi = e->orders[oi].next)
                if (!day_only || e->orders[oi].tif == TS_TIF_DAY)
                    out[n++] = (ts_seq_ref){.seq = e->cold[oi].seq, .order = oi};
    }
    for (uint32_t oi = b->stop_head; oi != TS_NIL; oi = e->orders[oi].next)
        if (!day_only || e->orders[oi].tif == TS_TIF_DAY)
            out[n++] = (ts_seq_ref){.seq = e->cold[oi].seq, .order = oi};
    return n;
}

/*
 * Sort the first n entries of e->scratch by seq (unique) and return where the sorted
 * run is (the scratch or its second half). An LSD radix sort on 11-bit digits, as many
 * as the engine's greatest seq has: O(n) and no allocation (a book of a million orders
 * is three passes while seqs stay below 2^33), insertion sort for a handful.
 */
const ts_seq_ref *ts_eng_sort_scratch(ts_engine *e, uint64_t n) {
    ts_seq_ref *a = e->scratch, *tmp = e->scratch + n;
    if (n < 32) {
        for (uint64_t i = 1; i < n; i++) {
            ts_seq_ref x = a[i];
            uint64_t j = i;
            for (; j > 0 && a[j - 1].seq > x.seq; j--) a[j] = a[j - 1];
            a[j] = x;
        }
        return a;
    }
    enum { BITS = 11, RADIX = 1 << BITS };
    uint64_t count[RADIX];
    for (unsigned shift = 0; shift < 64 && (e->seq >> shift) != 0; shift += BITS) {
        memset(count, 0, sizeof count);
        for (uint64_t i = 0; i < n; i++) count[(a[i].seq >> shift) & (RADIX - 1)]++;
        uint64_t sum = 0;
        for (uint32_t d = 0; d < RADIX; d++) {
            uint64_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (uint64_t i = 0; i < n; i++) tmp[count[(a[i].seq >> shift) & (RADIX - 1)]++] = a[i];
        ts_seq_ref *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

/* ---- GTD heap: (expire, seq) min-heap with lazy deletion ---- */

static int gtd_less(const ts_gtd *a, const ts_gtd *b) {
    return a->expire_ns < b->expire_ns || (a->expire_ns == b->expire_ns && a->seq < b->seq);
}

static void heap_sift_down(ts_gtd *h, uint64_t n, uint64_t i) {
    ts_gtd x = h[i];
    for (;;) {
        uint64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && gtd_less(&h[c + 1], &h[c])) c++;
        if (!gtd_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

void ts_eng_heap_push(ts_engine *e, int64_t expire_ns, uint64_t seq, uint32_t oi) {
    ts_gtd x = {.expire_ns = expire_ns, .seq = seq, .order = oi};
    uint64_t i = e->heap_n++;
    while (i > 0) {
        uint64_t p = (i - 1) / 2;
        if (!gtd_less(&x, &e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = x;
}

void ts_eng_heap_pop(ts_engine *e) {
    if (--e->heap_n > 0) {
        e->heap[0] = e->heap[e->heap_n];
        heap_sift_down(e->heap, e->heap_n, 0);
    }
}

static int heap_entry_live(const ts_engine *e, const ts_gtd *g) {
    const ts_order *o = &e->orders[g->order];
    return (o->state == TS_ST_RESTING || o->state == TS_ST_PENDING) &&
           e->cold[g->order].seq == g->seq;
}

/* Drop stale entries (cancelled or filled GTD orders) and re-heapify. */
static void heap_compact(ts_engine *e) {
    uint64_t k = 0;
    for (uint64_t i = 0; i < e->heap_n; i++)
        if (heap_entry_live(e, &e->heap[i])) e->heap[k++] = e->heap[i];
    e->heap_n = k;
    for (uint64_t i = k / 2; i-- > 0;) heap_sift_down(e->heap, k, i);
}

int ts_eng_grow_heap(ts_engine *e) {
    if (e->heap_n < e->heap_cap) return 0;
    if (e->heap_n >= 64 && e->heap_n >= 2 * e->gtd_live) {
        heap_compact(e);
        if (e->heap_n < e->heap_cap) return 0;
    }
    return grow_array((void **)&e->heap, &e->heap_cap, e->heap_n + 1, sizeof *e->heap);
}

/*
 * Everything one order command can need: one order slot, one index entry, one GTD heap
 * entry, an account table entry, and a level, a side slot and a touched-list entry for the order itself and for
 * every pending stop of the book (each triggered stop-limit may rest at a new price).
 */
int ts_eng_reserve_book(ts_engine *e, ts_book *b) {
    if (e->ord_free == TS_NIL && e->ord_hwm == e->ord_cap && ts_eng_grow_orders(e)) return -1;
    if (e->n_accts >= e->acct_limit && ts_eng_grow_accounts(e)) return -1;
    if (ts_oix_reserve(&e->index, 1, e->orders, sizeof(ts_order))) return -1;
    if (e->heap_n == e->heap_cap && ts_eng_grow_heap(e)) return -1;
    uint32_t extra = 2 + b->n_stops;
    if (e->lvl_cap - e->lvl_used < extra && ts_eng_grow_levels(e, extra)) return -1;
    for (int s = 0; s < 2; s++)
        if (b->side[s].cap < b->side[s].n + extra &&
            ts_eng_grow_ladder(&b->side[s], b->side[s].n + extra))
            return -1;
    return 0;
}

/* For controls, which may uncross any book and fire any book's stops. */
int ts_eng_reserve_all(ts_engine *e) {
    uint32_t extra = 2 + e->n_stops;
    if (e->lvl_cap - e->lvl_used < extra && ts_eng_grow_levels(e, extra)) return -1;
    for (uint32_t i = 0; i < e->n_books; i++)
        if (ts_eng_reserve_book(e, &e->books[i])) return -1;
    return 0;
}

/* ---- market data ---- */

void ts_eng_touch_register(ts_engine *e, ts_book *b, uint32_t li, uint8_t side) {
    ts_lvl *L = &e->lvls[li];
    if (!b->touched) {
        b->touched = 1;
        b->touch_head = b->touch_tail = TS_NIL;
        b->touch_dropped = 0;
        e->tsyms[e->n_tsyms++] = ts_book_ix(e, b);
    }
    uint32_t t = e->n_touches++;
    e->touches[t] = (ts_touched){.price = L->price,
                               .before_shown = L->shown,
                               .before_count = L->count,
                               .level = li,
                               .next = TS_NIL,
                               .side = side};
    if (b->touch_tail != TS_NIL) e->touches[b->touch_tail].next = t;
    else b->touch_head = t;
    b->touch_tail = t;
    L->touch = t;
}

/* A level was just created: if a level at this price was touched and removed earlier
 * in the same command, this is the same L2 level again (its "before" stands). */
void ts_eng_touch_new_level(ts_engine *e, ts_book *b, uint32_t li, uint8_t side) {
    ts_lvl *L = &e->lvls[li];
    if (b->touched && b->touch_dropped) {
        for (uint32_t t = b->touch_head; t != TS_NIL; t = e->touches[t].next) {
            ts_touched *T = &e->touches[t];
            if (T->level == TS_NIL && T->side == side && T->price == L->price) {
                T->level = li;
                L->touch = t;
                b->touch_dropped--;
                return;
            }
        }
    }
    ts_eng_touch_register(e, b, li, side);
}

static void book_bbo(const ts_engine *e, const ts_book *b, ts_bbo *out) {
    const ts_ladder *bids = &b->side[0], *asks = &b->side[1];
    if (bids->n) {
        const ts_lvl *L = &e->lvls[bids->lvls[bids->n - 1]];
        out->bid_price = L->price;
        out->bid_quantity = L->shown;
    } else {
        out->bid_price = out->bid_quantity = 0;
    }
    if (asks->n) {
        const ts_lvl *L = &e->lvls[asks->lvls[asks->n - 1]];
        out->ask_price = L->price;
        out->ask_quantity = L->shown;
    } else {
        out->ask_price = out->ask_quantity = 0;
    }
}

/* End of a command: per touched symbol (first-touch order) its changed levels
 * (first-touch order), then its BBO if it differs from the last one sent. */
void ts_eng_flush_md(ts_engine *e) {
    for (uint32_t s = 0; s < e->n_tsyms; s++) {
        ts_book *b = &e->books[e->tsyms[s]];
        for (uint32_t t = b->touch_head; t != TS_NIL; t = e->touches[t].next) {
            const ts_touched *T = &e->touches[t];
            int64_t shown = 0;
            uint32_t count = 0;
            if (T->level != TS_NIL) {
                ts_lvl *L = &e->lvls[T->level];
                shown = L->shown;
                count = L->count;
                L->touch = TS_NIL;
            }
            if (shown == T->before_shown && count == T->before_count) continue;
            ts_md *m = ts_md_slot(e);
            *m = (ts_md){.kind = TS_MD_L2_UPDATE,
                         .side = T->side,
                         .symbol_id = b->cfg.symbol_id,
                         .seq = ++b->l2_seq,
                         .price = T->price,
                         .quantity = shown,
                         .order_count = count,
                         .time_ns = e->clock};
        }
        ts_bbo now;
        book_bbo(e, b, &now);
        if (memcmp(&now, &b->bbo_sent, sizeof now) != 0) {
            ts_md *m = ts_md_slot(e);
            *m = (ts_md){.kind = TS_MD_BBO,
                         .symbol_id = b->cfg.symbol_id,
                         .seq = ++b->bbo_seq,
                         .price = now.bid_price,
                         .quantity = now.bid_quantity,
                         .ask_price = now.ask_price,
                         .ask_quantity = now.ask_quantity,
                         .time_ns = e->clock};
            b->bbo_sent = now;
        }
        b->touched = 0;
        b->touch_head = b->touch_tail = TS_NIL;
        b->touch_dropped = 0;
    }
    e->n_tsyms = 0;
    e->n_touches = 0;
}

/* ---- output and queries ---- */

uint64_t ts_engine_events(const ts_engine *e, const ts_event **out) {
    *out = e->ev;
    return e->ev_n;
}

uint64_t ts_engine_md(const ts_engine *e, const ts_md **out) {
    *out = e->md;
    return e->md_n;
}

void ts_engine_clear_output(ts_engine *e) {
    e->ev_n = 0;
    e->md_n = 0;
    e->oom = 0;
}

int ts_engine_depth(const ts_engine *e, uint32_t symbol_id, uint8_t side, ts_level *out,
                    uint32_t max_levels) {
    const ts_book *b = ts_eng_find_book(e, symbol_id);
    if (!b) return TS_ENG_ERR_UNKNOWN_SYMBOL;
    if (side != TS_SIDE_BUY && side != TS_SIDE_SELL) return 0;
    const ts_ladder *s = &b->side[side - 1];
    uint32_t k = 0;
    for (uint32_t i = s->n; i-- > 0 && k < max_levels; k++) {
        const ts_lvl *L = &e->lvls[s->lvls[i]];
        out[k] = (ts_level){.price = L->price, .quantity = L->shown, .order_count = L->count};
    }
    return (int)k;
}

int ts_engine_bbo(const ts_engine *e, uint32_t symbol_id, ts_bbo *out) {
    const ts_book *b = ts_eng_find_book(e, symbol_id);
    if (!b) return TS_ENG_ERR_UNKNOWN_SYMBOL;
    book_bbo(e, b, out);
    return TS_ENG_OK;
}

int ts_engine_phase(const ts_engine *e, uint32_t symbol_id) {
    const ts_book *b = ts_eng_find_book(e, symbol_id);
    return b ? b->phase : TS_ENG_ERR_UNKNOWN_SYMBOL;
}

uint64_t ts_engine_live_orders(const ts_engine *e) { return e->n_live; }

uint64_t ts_engine_memory_bytes(const ts_engine *e) {
    uint64_t n = sizeof *e;
    n += ts_huge_bytes(hot_bytes(e->ord_cap)) + ts_huge_bytes(cold_bytes(e->cold_cap));
    n += (uint64_t)e->lvl_cap * sizeof *e->lvls;
    n += ts_oix_bytes(&e->index);
    n += (uint64_t)e->books_cap * (sizeof *e->books + sizeof *e->by_id + sizeof *e->tsyms);
    n += ((uint64_t)e->acct_mask + 1) * (sizeof *e->accts + sizeof *e->merge);
    n += e->scratch_cap * sizeof *e->scratch;
    n += (uint64_t)(e->sym_mask + 1) * (sizeof *e->sym_keys + sizeof *e->sym_vals);
    for (uint32_t i = 0; i < e->n_books; i++)
        for (int s = 0; s < 2; s++)
            n += (uint64_t)e->books[i].side[s].cap * (sizeof(int64_t) + sizeof(uint32_t));
    n += e->heap_cap * sizeof *e->heap;
    n += e->ev_cap * sizeof *e->ev + e->md_cap * sizeof *e->md;
    n += (uint64_t)e->touches_cap * sizeof *e->touches;
    return n;
}
