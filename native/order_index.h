/*
 * order_index.h — order id -> order-pool index, for O(1) cancel and replace.
 *
 * Two tables, every id in exactly one of them:
 *
 *  - a DIRECT table, a power-of-two array of u32 pool indices at slot `id & dmask`. The
 *    gateway assigns ids in ascending order (docs/matching.md: each strictly greater
 *    than the last), so the orders a burst of cancels names — mostly recent ones — sit
 *    in neighbouring slots: a lookup is one access to a line that is usually already in
 *    cache, where a hashed slot is a cache (and TLB) miss of its own before the order's
 *    line can even be asked for. At 4 bytes a slot it is also half the size of a hash
 *    slot. The key is not stored: a lookup confirms it against the pool record, which
 *    the caller is about to touch anyway.
 *  - an OVERFLOW hash for the ids that collide in the direct table (ids more than its
 *    capacity apart; after a snapshot restore, or from a gateway whose ids leave gaps):
 *    open addressing with linear probing over 8-byte slots, the low 32 bits of the id (a
 *    tag) and the pool index. On a collision the greater id keeps the direct slot and
 *    the smaller moves to the hash: new orders are the ones cancels name most.
 *
 * The direct table grows (doubling) before the ids it holds fill half its slots, so the
 * ids can move on by twice the number of live orders before a new one lands on a slot
 * an old one still holds; old long-lived orders end up in the hash once they have moved
 * on by a table's length. At 4 bytes a slot that is 8 to 16 bytes per live order, about
 * what the hash alone took. Any id sequence is correct, only the speed depends on it.
 *
 * Hash deletion shifts the following run back instead of leaving tombstones, so heavy
 * cancel traffic never degrades it and never needs a rehash to clean up. Its hash is
 * Fibonacci hashing of the tag (multiply by 2^32/phi, keep the top bits).
 *
 * The pool is any array whose records start with their u64 key (ts_order does);
 * lookups, inserts and deletes are inline (every command's hot path), growth lives in
 * order_index.c. Internal to the C core: not part of the cffi API.
 */
#ifndef TRADSYS_ORDER_INDEX_H
#define TRADSYS_ORDER_INDEX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TS_OIX_EMPTY UINT32_MAX

typedef struct ts_oix_slot {
    uint32_t tag; /* low 32 bits of the key */
    uint32_t val; /* pool index, TS_OIX_EMPTY = free slot */
} ts_oix_slot;

typedef struct ts_order_index {
    uint32_t *direct; /* pool index at key & dmask, TS_OIX_EMPTY = free */
    uint32_t dmask;   /* direct capacity - 1 */
    uint64_t dcount;  /* entries in the direct table */
    ts_oix_slot *slots; /* the overflow hash */
    uint32_t mask;  /* hash capacity - 1 */
    uint32_t shift; /* 32 - log2(hash capacity) */
    uint64_t count; /* entries in the hash */
    uint64_t limit; /* grow the hash before count exceeds this (3/4 of capacity) */
} ts_order_index;

/* The direct table starts with at least `capacity` slots (a power of two); the hash
 * starts small. Returns 0 on success. */
int ts_oix_init(ts_order_index *ix, uint64_t capacity);
void ts_oix_free(ts_order_index *ix);
/* Make room for `more` inserts; 0 on success, -1 when out of memory or past 2^31. The
 * pool is read for the keys of the direct table's entries when it grows. */
int ts_oix_grow_for(ts_order_index *ix, uint64_t more, const void *pool, size_t stride);
uint64_t ts_oix_bytes(const ts_order_index *ix);

static inline uint64_t ts_oix_size(const ts_order_index *ix) { return ix->dcount + ix->count; }

static inline uint32_t ts_oix_home(const ts_order_index *ix, uint32_t tag) {
    return (uint32_t)((uint64_t)(tag * 0x9E3779B1u) >> ix->shift) & ix->mask;
}

static inline uint32_t *ts_oix_direct_slot(const ts_order_index *ix, uint64_t key) {
    return &ix->direct[(uint32_t)key & ix->dmask];
}

/* Room for `more` inserts: each adds at most one hash entry (the new key, or the one it
 * displaces from the direct table), and the direct table should stay at least twice as
 * big as the number of ids held. */
static inline int ts_oix_reserve(ts_order_index *ix, uint64_t more, const void *pool,
                                 size_t stride) {
    const uint64_t direct_wanted = 2 * (ts_oix_size(ix) + more);
    if (ix->count + more <= ix->limit && direct_wanted <= (uint64_t)ix->dmask + 1) return 0;
    return ts_oix_grow_for(ix, more, pool, stride);
}

static inline uint64_t ts_oix_key_at(const void *pool, size_t stride, uint32_t val) {
    uint64_t k;
    memcpy(&k, (const char *)pool + (size_t)val * stride, sizeof k);
    return k;
}

/* ---- the overflow hash ---- */

static inline uint32_t ts_oix_hash_get(const ts_order_index *ix, uint64_t key, const void *pool,
                                       size_t stride) {
    const uint32_t tag = (uint32_t)key;
    for (uint32_t i = ts_oix_home(ix, tag);; i = (i + 1) & ix->mask) {
        const ts_oix_slot s = ix->slots[i];
        if (s.val == TS_OIX_EMPTY) return TS_OIX_EMPTY;
        if (s.tag == tag && ts_oix_key_at(pool, stride, s.val) == key) return s.val;
    }
}

static inline void ts_oix_hash_put(ts_order_index *ix, uint32_t tag, uint32_t val) {
    uint32_t i = ts_oix_home(ix, tag);
    while (ix->slots[i].val != TS_OIX_EMPTY) i = (i + 1) & ix->mask;
    ix->slots[i].tag = tag;
    ix->slots[i].val = val;
    ix->count++;
}

/* Backward shift: walk the run after the hole and move back every entry whose home is
 * not cyclically inside (hole, its slot]. */
static inline void ts_oix_hash_del(ts_order_index *ix, uint32_t tag, uint32_t val) {
    uint32_t hole = ts_oix_home(ix, tag);
    while (ix->slots[hole].val != val) hole = (hole + 1) & ix->mask;
    for (uint32_t j = (hole + 1) & ix->mask;; j = (j + 1) & ix->mask) {
        const ts_oix_slot s = ix->slots[j];
        if (s.val == TS_OIX_EMPTY) break;
        uint32_t home = ts_oix_home(ix, s.tag);
        if (((j - home) & ix->mask) >= ((j - hole) & ix->mask)) {
            ix->slots[hole] = s;
            hole = j;
        }
    }
    ix->slots[hole].tag = 0;
    ix->slots[hole].val = TS_OIX_EMPTY;
    ix->count--;
}

/* ---- the index ---- */

/* The pool index holding `key`, or TS_OIX_EMPTY. */
static inline uint32_t ts_oix_get(const ts_order_index *ix, uint64_t key, const void *pool,
                                  size_t stride) {
    const uint32_t v = *ts_oix_direct_slot(ix, key);
    if (v != TS_OIX_EMPTY && ts_oix_key_at(pool, stride, v) == key) return v;
    /* absent from the direct table: in the hash, if anywhere (the hash is usually empty) */
    return ix->count ? ts_oix_hash_get(ix, key, pool, stride) : TS_OIX_EMPTY;
}

/* The key must be absent and room reserved (ts_oix_reserve). */
static inline void ts_oix_put(ts_order_index *ix, uint64_t key, uint32_t val, const void *pool,
                              size_t stride) {
    uint32_t *d = ts_oix_direct_slot(ix, key);
    if (*d == TS_OIX_EMPTY) {
        *d = val;
        ix->dcount++;
        return;
    }
    const uint64_t held = ts_oix_key_at(pool, stride, *d);
    if (held > key) {
        ts_oix_hash_put(ix, (uint32_t)key, val);
        return;
    }
    ts_oix_hash_put(ix, (uint32_t)held, *d);
    *d = val;
}

/* Remove the entry of `key` that points at pool index `val` (it must be present). */
static inline void ts_oix_del(ts_order_index *ix, uint64_t key, uint32_t val) {
    uint32_t *d = ts_oix_direct_slot(ix, key);
    if (*d == val) {
        *d = TS_OIX_EMPTY;
        ix->dcount--;
        return;
    }
    ts_oix_hash_del(ix, (uint32_t)key, val);
}

#if defined(__GNUC__)
#define TS_OIX_PREFETCH(p) __builtin_prefetch((p), 1)
/* A function whose only effect is a prefetch is taken for one with no effect by GCC (12
 * at -O1 and up) when it is not inlined early: the call is deleted, hint and all. Forced
 * inline, the builtin lands in its caller, where it stays. */
#define TS_PREFETCH_FN static inline __attribute__((always_inline))
#else
#define TS_OIX_PREFETCH(p) ((void)(p))
#define TS_PREFETCH_FN static inline
#endif

/* Ask for the line a lookup or delete of `key` reads first. A hint only. */
TS_PREFETCH_FN void ts_oix_prefetch(const ts_order_index *ix, uint64_t key) {
    TS_OIX_PREFETCH(ts_oix_direct_slot(ix, key));
}

/* Before a put of `key`: ask for the pool record of the order whose direct slot it would
 * take (a put reads that order's key), while the caller does other work. A hint only. */
TS_PREFETCH_FN void ts_oix_prefetch_put(const ts_order_index *ix, uint64_t key, const void *pool,
                                       size_t stride) {
    const uint32_t v = *ts_oix_direct_slot(ix, key);
    if (v != TS_OIX_EMPTY) TS_OIX_PREFETCH((const char *)pool + (size_t)v * stride);
}

#endif /* TRADSYS_ORDER_INDEX_H */
