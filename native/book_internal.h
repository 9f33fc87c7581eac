/*
 * book_internal.h — the matching engine's data structures and the small helpers every
 * part of it shares. Internal to the C core (tests include it to check invariants);
 * the public API is book.h and the rules are docs/matching.md.
 *
 * Layout, and why:
 *  - Orders live in one pool, addressed by u32 index, as two parallel arrays: a 64-byte,
 *    cache-line-aligned hot record (ts_order) and a 32-byte cold one (ts_order_cold),
 *    96 bytes a slot in all, on huge pages where the kernel has them (huge_alloc.h). The
 *    pool grows (doubling up to 1 M slots, then by an eighth, so a big pool wastes
 *    little: ts_eng_grow_orders), so indices stay valid; freed slots go on a free list,
 *    so a steady state of adds and cancels never allocates.
 *  - An order-id index (order_index.h: a table direct-mapped by id, a hash for the ids
 *    that collide in it) maps ids to pool indices: cancel and replace find their order
 *    in O(1), a recent order usually without a cache miss before its own line.
 *  - Each price level (ts_lvl, from a pool of its own) keeps its orders in an intrusive
 *    doubly linked FIFO (u32 prev/next in the order), so removing an order never scans
 *    its level, and the level keeps its displayed and total aggregates up to date.
 *  - Each side of a book is a "ladder" (ts_ladder): a sorted array of level keys and
 *    level indices with the best level at the END: the best level is read, popped and
 *    pushed at O(1); other levels are found by a short scan from the end then a binary
 *    search, and inserted or removed with a memmove. A level is removed the moment it empties, so the best price is always
 *    exact. Keys are price for bids and -price for asks, so "better" is "greater" on
 *    both sides and one search routine serves both.
 *  - Live orders of an ACCOUNT (resting and pending stops, every symbol) are on a list
 *    in acceptance (seq) order, found through a small open-addressing table of the
 *    accounts (ts_acct): an account's mass cancel walks its own orders only, whatever
 *    else rests in the shard. An order joins its list when it goes live, then holding
 *    the greatest seq of any live order, so appending keeps the list in seq order; a
 *    mass cancel of every account merges the lists by seq. What is per symbol (a mass
 *    cancel of any account in one symbol, session close) collects the book's orders
 *    from its levels and stop list and sorts them by seq (ts_eng_collect_book).
 *    Pending stops are on a per-symbol list in seq order; GTD orders are in one
 *    min-heap keyed (expire, seq) with lazy deletion (a popped entry whose order is
 *    gone or reused is skipped).
 *  - Events and market data are appended to growable buffers the engine owns.
 *  - Market data is derived at the end of each command from a "touched levels" list:
 *    each level remembers its index in that list while touched, and the list remembers
 *    each level's state before the command, so an L2 update is emitted only for a level
 *    whose displayed quantity or order count really changed.
 */
#ifndef TRADSYS_BOOK_INTERNAL_H
#define TRADSYS_BOOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "book.h"
#include "order_index.h"

#define TS_NIL UINT32_MAX
#define TS_MAX_BOOKS 65535u

#if defined(__GNUC__)
#define TS_LIKELY(x) __builtin_expect(!!(x), 1)
#define TS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TS_NOINLINE __attribute__((noinline))
#else
#define TS_LIKELY(x) (x)
#define TS_UNLIKELY(x) (x)
#define TS_NOINLINE
#endif

/* Order states. RESTING and PENDING_STOP match ts_order_state (the snapshot values). An
 * order executing as a taker is TAKER when it is new (not yet in the index, the live
 * list or the GTD heap) and TAKER_LIVE when it already is (a replaced order or a
 * triggered stop), so retiring it knows what to unlink. */
enum {
    TS_ST_FREE = 0,
    TS_ST_RESTING = TS_STATE_RESTING,
    TS_ST_PENDING = TS_STATE_PENDING_STOP,
    TS_ST_TAKER = 3,
    TS_ST_TAKER_LIVE = 4
};

/* An order is split in two records at the same pool index: the HOT record (one cache
 * line, 64-byte aligned) holds everything cancel, matching and the list links touch; the
 * COLD record holds what only accept, replace, iceberg refresh, expiry, stops and the
 * snapshot read. A cancel in a big book then costs one line per order it touches. */
typedef struct ts_order {
    uint64_t order_id;
    int64_t price;
    int64_t leaves;
    int64_t visible; /* displayed part while resting; 0 while a pending stop */
    uint32_t account_id;
    uint32_t level;              /* level pool index while resting */
    uint32_t prev, next;         /* level FIFO, or the pending-stop list; free-list link */
    uint32_t live_prev, live_next; /* the account's live list, seq order */
    uint16_t book;               /* index into ts_engine.books */
    uint8_t side, type, tif, flags, stp, state;
} ts_order;

typedef struct ts_order_cold {
    uint64_t seq;
    int64_t quantity;
    /* display_qty for LIMIT orders, stop_price for STOP and STOP_LIMIT: an iceberg is
     * LIMIT only, so one field holds whichever the type has, and a triggered stop-limit
     * that rests still knows its stop price (the snapshot carries it). */
    int64_t peak;
    int64_t expire_ns; /* GTD only, else 0 */
} ts_order_cold;

#define TS_ORDER_ALIGN 64u
_Static_assert(sizeof(ts_order) == 64, "the hot order record is meant to be one cache line");
_Static_assert(sizeof(ts_order_cold) == 32, "the cold order record is meant to be 32 bytes");
_Static_assert(offsetof(ts_order, order_id) == 0, "the id index reads the key at offset 0");

typedef struct ts_lvl {
    int64_t price;
    int64_t shown; /* sum of visible: what market data shows */
    int64_t total; /* sum of leaves, hidden included: what an uncross or FOK can fill */
    uint32_t count;
    uint32_t head, tail;
    uint32_t touch; /* index in the command's touched list, TS_NIL when untouched */
} ts_lvl;

/* One side of a book (the name ts_side is wire.h's enum of BUY/SELL). */
typedef struct ts_ladder {
    int64_t *keys;  /* ascending; best (greatest) last */
    uint32_t *lvls; /* level pool index per key */
    uint32_t n, cap;
} ts_ladder;

typedef struct ts_book {
    ts_instrument cfg;
    ts_ladder side[2]; /* [0] bids, [1] asks */
    int64_t static_ref;
    int64_t last_trade; /* 0 = no trade yet */
    int64_t reopen_ns;  /* breaker reopening time, -1 = none */
    uint64_t trade_seq, l2_seq, bbo_seq, status_seq;
    ts_bbo bbo_sent;
    /* validation: x is a multiple of size when (x & mask) == 0 for a power-of-two size
     * (no division on the hot path), else x % size == 0; mask -1 = not a power of two */
    int64_t tick_mask, lot_mask;
    uint64_t n_live; /* resting orders and pending stops */
    uint32_t stop_head, stop_tail;
    uint32_t n_stops;
    /* Stop trigger screen: min stop price of pending buys, max of pending sells. Kept
     * as bounds (exact after a scan, only widened by adds), so "last outside both"
     * proves nothing can trigger without scanning. stops_dirty: the last trade price
     * moved or a stop was added since the last scan found nothing triggered. */
    int64_t stop_buy_min, stop_sell_max;
    uint8_t stops_dirty;
    uint8_t phase;
    uint8_t touched; /* on this command's touched-symbol list */
    uint8_t _pad0;
    uint32_t touch_head, touch_tail; /* this symbol's touched levels, first-touch order */
    uint32_t touch_dropped;          /* touched levels removed during this command */
} ts_book;

/* An account's live orders, oldest first; account 0 (never an order's) marks a free
 * slot. Entries are never removed: accounts are few and come back. */
typedef struct ts_acct {
    uint32_t account;
    uint32_t head, tail; /* TS_NIL when the account has no live order */
} ts_acct;

/* An order and its seq, for sorting a book's orders into seq order. */
typedef struct ts_seq_ref {
    uint64_t seq;
    uint32_t order;
    uint32_t _pad0;
} ts_seq_ref;

/* A level touched during the current command, with its state when first touched. */
typedef struct ts_touched {
    int64_t price;
    int64_t before_shown;
    uint32_t before_count;
    uint32_t level; /* the level now at this price, TS_NIL while there is none */
    uint32_t next;  /* next touched level of the same symbol */
    uint8_t side;
    uint8_t _pad0[3];
} ts_touched;

typedef struct ts_gtd {
    int64_t expire_ns;
    uint64_t seq;
    uint32_t order; /* pool index; stale when the order there has another seq */
    uint32_t _pad0;
} ts_gtd;

struct ts_engine {
    /* pools */
    ts_order *orders;      /* hot records, TS_ORDER_ALIGN-aligned (huge_alloc.h) */
    ts_order_cold *cold;   /* cold records, same indices */
    uint32_t ord_cap, ord_hwm, ord_free, ord_used;
    uint32_t cold_cap;     /* >= ord_cap (ts_eng_grow_orders grows it first) */
    ts_lvl *lvls;
    uint32_t lvl_cap, lvl_hwm, lvl_free, lvl_used;
    ts_order_index index;

    /* symbols: books in the order added; by_id sorts them by symbol id; sym_* is a
     * small open-addressing table symbol_id -> book */
    ts_book *books;
    uint32_t n_books, books_cap;
    uint16_t *by_id;
    uint32_t *sym_keys;
    uint16_t *sym_vals;
    uint32_t sym_mask;

    /* accounts: open addressing, Fibonacci hashing, linear probing; grown (doubled)
     * before a command could push it past 3/4 full (ts_eng_reserve_book) */
    ts_acct *accts;
    uint32_t acct_mask, acct_shift; /* capacity - 1; 32 - log2(capacity) */
    uint32_t n_accts, acct_limit;   /* entries; most entries before growing */

    /* GTD expiry */
    ts_gtd *heap;
    uint64_t heap_n, heap_cap;
    uint64_t gtd_live;

    /* output */
    ts_event *ev;
    uint64_t ev_n, ev_cap;
    ts_md *md;
    uint64_t md_n, md_cap;
    ts_event ev_sink; /* written instead when an output buffer cannot grow */
    ts_md md_sink;
    int oom;

    /* per-command scratch */
    ts_touched *touches;
    uint32_t n_touches, touches_cap;
    uint16_t *tsyms; /* touched symbols, first-touch order */
    uint32_t n_tsyms;
    uint32_t *merge;        /* mass-cancel merge heap, one slot per account slot */
    ts_seq_ref *scratch;    /* a book's orders being sorted by seq (and the sort's buffer) */
    uint64_t scratch_cap;   /* ts_seq_ref entries */

    /* counters (docs/matching.md "Units and identities") */
    int64_t clock;
    uint64_t max_order_id;
    uint64_t exec_id;
    uint64_t seq;
    uint64_t n_live;
    uint32_t n_stops; /* pending stops, all symbols */
    uint32_t rules;   /* TS_RULES_VERSION, or an older one while a journal replays */
    uint64_t mc_visits; /* orders a mass cancel looked at, for tests (book_check.h) */
};

/* ---- engine internals shared between the book*.c files ---- */

int ts_eng_grow_orders(ts_engine *e);
int ts_eng_grow_levels(ts_engine *e, uint32_t free_needed);
int ts_eng_grow_ladder(ts_ladder *s, uint32_t need);
int ts_eng_grow_touches(ts_engine *e, uint32_t need);
int ts_eng_grow_heap(ts_engine *e);
int ts_eng_grow_events(ts_engine *e);
int ts_eng_grow_md(ts_engine *e);
int ts_eng_grow_accounts(ts_engine *e);
int ts_eng_reserve_book(ts_engine *e, ts_book *b);
int ts_eng_reserve_all(ts_engine *e);
int ts_eng_reserve_scratch(ts_engine *e, uint64_t orders);
void ts_eng_scratch_done(ts_engine *e);
uint64_t ts_eng_collect_book(const ts_engine *e, const ts_book *b, int day_only);
const ts_seq_ref *ts_eng_sort_scratch(ts_engine *e, uint64_t n);
void ts_eng_flush_md(ts_engine *e);
void ts_eng_touch_register(ts_engine *e, ts_book *b, uint32_t li, uint8_t side);
void ts_eng_touch_new_level(ts_engine *e, ts_book *b, uint32_t li, uint8_t side);
ts_book *ts_eng_find_book(const ts_engine *e, uint32_t symbol_id);
void ts_eng_heap_push(ts_engine *e, int64_t expire_ns, uint64_t seq, uint32_t oi);
void ts_eng_heap_pop(ts_engine *e);
int ts_eng_add_book(ts_engine *e, const ts_instrument *ins);

/* book_orders.c */
void ts_eng_cancel_order(ts_engine *e, ts_book *b, uint32_t oi, uint8_t reason);
void ts_eng_check_stops(ts_engine *e, ts_book *b);
void ts_eng_reject(ts_engine *e, const ts_command *c, uint32_t symbol_id, uint8_t reason);
void ts_eng_link_live(ts_engine *e, ts_book *b, uint32_t oi);

/* book_session.c; returns -1 only when memory could not be reserved (nothing done) */
int ts_eng_control(ts_engine *e, const ts_command *c);

/* ---- small inline helpers ---- */

static inline int ts_is_stop_type(uint8_t type) {
    return type == TS_ORD_STOP || type == TS_ORD_STOP_LIMIT;
}
/* The cold record of hot record o (o points into e->orders). */
#define TS_COLD(e, o) (&(e)->cold[(o) - (e)->orders])

static inline int64_t ts_display_qty(const ts_engine *e, const ts_order *o) {
    return ts_is_stop_type(o->type) ? 0 : TS_COLD(e, o)->peak;
}
static inline int64_t ts_stop_price(const ts_engine *e, const ts_order *o) {
    return ts_is_stop_type(o->type) ? TS_COLD(e, o)->peak : 0;
}
static inline int ts_resting_tif(uint8_t tif) {
    return tif == TS_TIF_GTC || tif == TS_TIF_DAY || tif == TS_TIF_GTD;
}
static inline int64_t ts_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int ts_multiple(int64_t x, int64_t size, int64_t mask) {
    return mask >= 0 ? (x & mask) == 0 : x % size == 0;
}
static inline int64_t ts_pow2_mask(int64_t size) {
    return size > 0 && (size & (size - 1)) == 0 ? size - 1 : -1;
}

/* |p - ref| * 10000 > ref * bps, without overflow (the Python model has big ints). */
static inline int ts_outside_bps(int64_t p, int64_t ref, uint32_t bps) {
    __int128 d = (__int128)p - ref;
    if (d < 0) d = -d;
    return d * 10000 > (__int128)ref * bps;
}

static inline ts_ladder *ts_ladder_of(ts_book *b, uint8_t side) { return &b->side[side - 1]; }
static inline int64_t ts_key(uint8_t side, int64_t price) {
    return side == TS_SIDE_BUY ? price : -price;
}
static inline uint8_t ts_other(uint8_t side) {
    return side == TS_SIDE_BUY ? TS_SIDE_SELL : TS_SIDE_BUY;
}
static inline uint16_t ts_book_ix(const ts_engine *e, const ts_book *b) {
    return (uint16_t)(b - e->books);
}

/* ---- accounts ---- */

static inline uint32_t ts_acct_home(const ts_engine *e, uint32_t account) {
    return (uint32_t)((uint64_t)(account * 0x9E3779B1u) >> e->acct_shift) & e->acct_mask;
}

/* The account's entry, NULL if it never had a live order. */
static inline ts_acct *ts_acct_find(const ts_engine *e, uint32_t account) {
    for (uint32_t i = ts_acct_home(e, account);; i = (i + 1) & e->acct_mask) {
        ts_acct *a = &e->accts[i];
        if (a->account == account) return a;
        if (a->account == 0) return NULL;
    }
}

/* The account's entry, added if new: room for one more was reserved before the command
 * (ts_eng_reserve_book). account > 0. */
static inline ts_acct *ts_acct_get(ts_engine *e, uint32_t account) {
    for (uint32_t i = ts_acct_home(e, account);; i = (i + 1) & e->acct_mask) {
        ts_acct *a = &e->accts[i];
        if (a->account == account) return a;
        if (a->account == 0) {
            *a = (ts_acct){.account = account, .head = TS_NIL, .tail = TS_NIL};
            e->n_accts++;
            return a;
        }
    }
}

/* Smallest i with keys[i] >= key. Most activity is at the top of the book, which is the
 * end of the array, so look at the last few keys before bisecting the rest. */
static inline uint32_t ts_ladder_lower_bound(const ts_ladder *s, int64_t key) {
    const int64_t *k = s->keys;
    uint32_t i = s->n;
    uint32_t stop = i > 8 ? i - 8 : 0;
    while (i > stop && k[i - 1] >= key) i--;
    if (i > stop || stop == 0) return i;
    uint32_t lo = 0, hi = stop; /* keys[stop] >= key: the answer is in [0, stop] */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (k[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

_Static_assert(TS_NIL == TS_OIX_EMPTY, "the index answers TS_NIL for a missing id");

static inline uint32_t ts_find_order(const ts_engine *e, uint64_t order_id) {
    return ts_oix_get(&e->index, order_id, e->orders, sizeof(ts_order));
}

/* ---- prefetch ----
 * In a big book most orders, and their index slots, are out of cache. Taking an order
 * out writes the links of up to four other orders (level FIFO and live list neighbours)
 * and its index slot: asking for those lines together, as soon as the order is known,
 * lets their misses overlap instead of queueing up one after the other. Hints only: no
 * effect on behaviour. */
#if defined(__GNUC__)
#define TS_PREFETCH_W(p) __builtin_prefetch((p), 1)
#else
#define TS_PREFETCH_W(p) ((void)(p))
#endif

TS_PREFETCH_FN void ts_prefetch_unlink(const ts_engine *e, const ts_order *o) {
    if (o->prev != TS_NIL) TS_PREFETCH_W(&e->orders[o->prev].prev);
    if (o->next != TS_NIL) TS_PREFETCH_W(&e->orders[o->next].prev);
    if (o->live_prev != TS_NIL) TS_PREFETCH_W(&e->orders[o->live_prev].live_prev);
    if (o->live_next != TS_NIL) TS_PREFETCH_W(&e->orders[o->live_next].live_prev);
    ts_oix_prefetch(&e->index, o->order_id);
}

/* ---- output ---- */

static inline ts_event *ts_ev_slot(ts_engine *e) {
    if (TS_UNLIKELY(e->ev_n == e->ev_cap) && ts_eng_grow_events(e) != 0) return &e->ev_sink;
    return &e->ev[e->ev_n++];
}

static inline void ts_emit(ts_engine *e, uint8_t kind, const ts_order *o, uint32_t symbol_id,
                           uint8_t reason, uint8_t flags, uint64_t contra, int64_t price,
                           int64_t quantity, int64_t leaves) {
    ts_event *ev = ts_ev_slot(e);
    *ev = (ts_event){.kind = kind,
                     .side = o->side,
                     .reason = reason,
                     .flags = flags,
                     .symbol_id = symbol_id,
                     .account_id = o->account_id,
                     .order_id = o->order_id,
                     .contra_order_id = contra,
                     .price = price,
                     .quantity = quantity,
                     .leaves_qty = leaves,
                     .exec_id = ++e->exec_id};
}

static inline ts_md *ts_md_slot(ts_engine *e) {
    if (TS_UNLIKELY(e->md_n == e->md_cap) && ts_eng_grow_md(e) != 0) return &e->md_sink;
    return &e->md[e->md_n++];
}

static inline void ts_md_trade(ts_engine *e, ts_book *b, uint8_t side, int64_t price,
                               int64_t quantity) {
    ts_md *m = ts_md_slot(e);
    *m = (ts_md){.kind = TS_MD_TRADE,
                 .side = side,
                 .symbol_id = b->cfg.symbol_id,
                 .seq = ++b->trade_seq,
                 .price = price,
                 .quantity = quantity,
                 .time_ns = e->clock};
}

/* Move the symbol to phase p; a change is a TS_MD_STATUS record, emitted at once (so in
 * order with the trade prints before and after it), with why it happened. Every phase
 * change goes through here: a phase written elsewhere would go unpublished. */
static inline void ts_set_phase(ts_engine *e, ts_book *b, uint8_t p, uint32_t reason) {
    const uint8_t before = b->phase;
    b->phase = p;
    if (before == p) return;
    ts_md *m = ts_md_slot(e);
    *m = (ts_md){.kind = TS_MD_STATUS,
                 .symbol_id = b->cfg.symbol_id,
                 .seq = ++b->status_seq,
                 .price = p,
                 .quantity = before,
                 .ask_price = b->reopen_ns,
                 .order_count = reason,
                 .time_ns = e->clock};
}

/* ---- pools ---- */

/* Room was reserved before the command (ts_eng_reserve_book). */
static inline uint32_t ts_order_alloc(ts_engine *e) {
    uint32_t oi = e->ord_free;
    if (oi != TS_NIL) e->ord_free = e->orders[oi].next;
    else oi = e->ord_hwm++;
    e->ord_used++;
    return oi;
}

static inline void ts_order_release(ts_engine *e, uint32_t oi) {
    ts_order *o = &e->orders[oi];
    /* no need to clear the cold seq: a GTD heap entry is live only while the slot's
     * state is RESTING or PENDING, and a reused slot gets a new seq */
    o->state = TS_ST_FREE;
    /* the free list is LIFO: this slot is the next order's, whose cold record a cancel
     * did not touch; ask for its line now, while it is out of the way */
    TS_PREFETCH_W(&e->cold[oi]);
    o->next = e->ord_free;
    e->ord_free = oi;
    e->ord_used--;
}

static inline uint32_t ts_lvl_alloc(ts_engine *e) {
    uint32_t li = e->lvl_free;
    if (li != TS_NIL) e->lvl_free = e->lvls[li].head;
    else li = e->lvl_hwm++;
    e->lvl_used++;
    return li;
}

static inline void ts_lvl_release(ts_engine *e, uint32_t li) {
    e->lvls[li].head = e->lvl_free;
    e->lvl_free = li;
    e->lvl_used--;
}

/* ---- touches (market data) ---- */

/* Call before changing anything on a level, so its "before" state is recorded. */
static inline void ts_touch(ts_engine *e, ts_book *b, uint32_t li, uint8_t side) {
    if (TS_LIKELY(e->lvls[li].touch != TS_NIL)) return;
    ts_eng_touch_register(e, b, li, side);
}

/* ---- levels ---- */

/* The level at price on side, created (and touched, with an empty "before") if absent.
 * Capacity for one more level and key was reserved before the command. */
static inline uint32_t ts_level_get(ts_engine *e, ts_book *b, uint8_t side, int64_t price) {
    ts_ladder *s = ts_ladder_of(b, side);
    int64_t key = ts_key(side, price);
    uint32_t i = ts_ladder_lower_bound(s, key);
    if (i < s->n && s->keys[i] == key) {
        uint32_t li = s->lvls[i];
        ts_touch(e, b, li, side);
        return li;
    }
    uint32_t li = ts_lvl_alloc(e);
    ts_lvl *L = &e->lvls[li];
    L->price = price;
    L->shown = 0;
    L->total = 0;
    L->count = 0;
    L->head = L->tail = TS_NIL;
    L->touch = TS_NIL;
    uint32_t tail = s->n - i;
    if (tail) {
        memmove(&s->keys[i + 1], &s->keys[i], tail * sizeof *s->keys);
        memmove(&s->lvls[i + 1], &s->lvls[i], tail * sizeof *s->lvls);
    }
    s->keys[i] = key;
    s->lvls[i] = li;
    s->n++;
    ts_eng_touch_new_level(e, b, li, side);
    return li;
}

/* Remove an empty level (already touched) from its side and free it. */
static inline void ts_level_drop(ts_engine *e, ts_book *b, uint8_t side, uint32_t li) {
    ts_ladder *s = ts_ladder_of(b, side);
    ts_lvl *L = &e->lvls[li];
    uint32_t n = s->n;
    if (TS_LIKELY(s->lvls[n - 1] == li)) {
        s->n = n - 1;
    } else {
        uint32_t i = ts_ladder_lower_bound(s, ts_key(side, L->price));
        uint32_t tail = n - i - 1;
        memmove(&s->keys[i], &s->keys[i + 1], tail * sizeof *s->keys);
        memmove(&s->lvls[i], &s->lvls[i + 1], tail * sizeof *s->lvls);
        s->n = n - 1;
    }
    if (L->touch != TS_NIL) {
        e->touches[L->touch].level = TS_NIL;
        b->touch_dropped++;
    }
    ts_lvl_release(e, li);
}

static inline void ts_level_append(ts_engine *e, ts_lvl *L, uint32_t li, uint32_t oi) {
    ts_order *o = &e->orders[oi];
    o->level = li;
    o->next = TS_NIL;
    o->prev = L->tail;
    if (L->tail != TS_NIL) e->orders[L->tail].next = oi;
    else L->head = oi;
    L->tail = oi;
}

static inline void ts_level_unlink(ts_engine *e, ts_lvl *L, ts_order *o) {
    if (o->prev != TS_NIL) e->orders[o->prev].next = o->next;
    else L->head = o->next;
    if (o->next != TS_NIL) e->orders[o->next].prev = o->prev;
    else L->tail = o->prev;
}

/* Take a resting order off its level (touching it), dropping the level if it empties. */
static inline void ts_unrest(ts_engine *e, ts_book *b, ts_order *o) {
    uint32_t li = o->level;
    ts_lvl *L = &e->lvls[li];
    ts_touch(e, b, li, o->side);
    ts_level_unlink(e, L, o);
    L->count--;
    L->shown -= o->visible;
    L->total -= o->leaves;
    if (L->count == 0) ts_level_drop(e, b, o->side, li);
}

/* Put an order at the back of the queue at its price: visible refreshed from its peak. */
static inline void ts_rest(ts_engine *e, ts_book *b, uint32_t oi) {
    ts_order *o = &e->orders[oi];
    int64_t d = ts_display_qty(e, o);
    o->visible = d ? ts_min64(d, o->leaves) : o->leaves;
    uint32_t li = ts_level_get(e, b, o->side, o->price);
    ts_lvl *L = &e->lvls[li];
    ts_level_append(e, L, li, oi);
    L->count++;
    L->shown += o->visible;
    L->total += o->leaves;
    o->state = TS_ST_RESTING;
}

/* Take an order out of the live structures (index, live list, counters) and free its
 * slot; it must already be off its level or stop list. Only an order at an end of its
 * account's list needs the account's entry. */
static inline void ts_retire(ts_engine *e, ts_book *b, uint32_t oi) {
    ts_order *o = &e->orders[oi];
    if (o->state != TS_ST_TAKER) {
        ts_oix_del(&e->index, o->order_id, oi);
        const uint32_t prev = o->live_prev, next = o->live_next;
        if (prev != TS_NIL) e->orders[prev].live_next = next;
        if (next != TS_NIL) e->orders[next].live_prev = prev;
        if (prev == TS_NIL || next == TS_NIL) {
            ts_acct *a = ts_acct_find(e, o->account_id);
            if (prev == TS_NIL) a->head = next;
            if (next == TS_NIL) a->tail = prev;
        }
        b->n_live--;
        e->n_live--;
        if (o->tif == TS_TIF_GTD) e->gtd_live--;
    }
    ts_order_release(e, oi);
}

#endif /* TRADSYS_BOOK_INTERNAL_H */
