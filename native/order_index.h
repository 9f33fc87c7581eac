/*
 * order_index.h — order id -> order-pool index, for O(1) cancel and replace.
 *
 * Open addressing with linear probing over a power-of-two table of 8-byte slots: the
 * low 32 bits of the id (a tag) and the u32 pool index (TS_OIX_EMPTY when free). The
 * full id is not stored: a lookup confirms a tag match against the pool record, which
 * the caller is about to touch anyway, and a delete names the pool index it removes.
 * Half the bytes of a (u64, u32) slot keep the index near 13 bytes per live order at
 * 10 M orders and put eight slots in each cache line.
 *
 * Deletion shifts the following run back instead of leaving tombstones, so heavy cancel
 * traffic never degrades the table and never needs a rehash to clean up. The hash is
 * Fibonacci hashing of the tag (multiply by 2^32/phi, keep the top bits): gateway ids
 * are mostly consecutive, and consecutive keys land far apart, so runs stay short.
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
    ts_oix_slot *slots;
    uint32_t mask;  /* capacity - 1 */
    uint32_t shift; /* 32 - log2(capacity) */
    uint64_t count;
    uint64_t limit; /* grow before count exceeds this (3/4 of capacity) */
} ts_order_index;

/* capacity is rounded up to a power of two >= 16. Returns 0 on success. */
int ts_oix_init(ts_order_index *ix, uint64_t capacity);
void ts_oix_free(ts_order_index *ix);
/* Make room for `more` inserts; 0 on success, -1 when out of memory or past 2^31. */
int ts_oix_grow_for(ts_order_index *ix, uint64_t more);
uint64_t ts_oix_bytes(const ts_order_index *ix);

static inline uint32_t ts_oix_home(const ts_order_index *ix, uint32_t tag) {
    return (uint32_t)((uint64_t)(tag * 0x9E3779B1u) >> ix->shift) & ix->mask;
}

static inline int ts_oix_reserve(ts_order_index *ix, uint64_t more) {
    return ix->count + more <= ix->limit ? 0 : ts_oix_grow_for(ix, more);
}

static inline uint64_t ts_oix_key_at(const void *pool, size_t stride, uint32_t val) {
    uint64_t k;
    memcpy(&k, (const char *)pool + (size_t)val * stride, sizeof k);
    return k;
}

/* The pool index holding `key`, or TS_OIX_EMPTY. */
static inline uint32_t ts_oix_get(const ts_order_index *ix, uint64_t key, const void *pool,
                                  size_t stride) {
    const uint32_t tag = (uint32_t)key;
    for (uint32_t i = ts_oix_home(ix, tag);; i = (i + 1) & ix->mask) {
        const ts_oix_slot s = ix->slots[i];
        if (s.val == TS_OIX_EMPTY) return TS_OIX_EMPTY;
        if (s.tag == tag && ts_oix_key_at(pool, stride, s.val) == key) return s.val;
    }
}

/* The key must be absent and room reserved (ts_oix_reserve). */
static inline void ts_oix_put(ts_order_index *ix, uint64_t key, uint32_t val) {
    const uint32_t tag = (uint32_t)key;
    uint32_t i = ts_oix_home(ix, tag);
    while (ix->slots[i].val != TS_OIX_EMPTY) i = (i + 1) & ix->mask;
    ix->slots[i].tag = tag;
    ix->slots[i].val = val;
    ix->count++;
}

/* Remove the entry of `key` that points at pool index `val` (it must be present).
 * Backward shift: walk the run after the hole and move back every entry whose home is
 * not cyclically inside (hole, its slot]. */
static inline void ts_oix_del(ts_order_index *ix, uint64_t key, uint32_t val) {
    const uint32_t tag = (uint32_t)key;
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

#endif /* TRADSYS_ORDER_INDEX_H */
