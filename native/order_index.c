/*
 * order_index.c — allocation and growth of the order-id index; see order_index.h.
 */
#include "order_index.h"

#include "huge_alloc.h"

#define MIN_BITS 4
#define MAX_BITS 31 /* u32 slot indices; TS_OIX_EMPTY must stay out of range */
#define HASH_INITIAL 16u

static unsigned bits_for(uint64_t capacity) {
    unsigned bits = MIN_BITS;
    while ((1ull << bits) < capacity) bits++;
    return bits;
}

static int alloc_hash(ts_order_index *ix, uint64_t capacity) {
    unsigned bits = bits_for(capacity);
    if (bits > MAX_BITS) return -1;
    uint64_t cap = 1ull << bits;
    ts_oix_slot *slots = ts_huge_alloc(cap * sizeof *slots);
    if (!slots) return -1;
    memset(slots, 0xff, cap * sizeof *slots); /* val = TS_OIX_EMPTY everywhere */
    ix->slots = slots;
    ix->mask = (uint32_t)(cap - 1);
    ix->shift = 32 - bits;
    ix->count = 0;
    ix->limit = cap - cap / 4;
    return 0;
}

static size_t hash_bytes(uint32_t mask) { return ((size_t)mask + 1) * sizeof(ts_oix_slot); }
static size_t direct_bytes(uint32_t mask) { return ((size_t)mask + 1) * sizeof(uint32_t); }

static uint32_t *alloc_direct(uint64_t cap) {
    uint32_t *d = ts_huge_alloc(cap * sizeof *d);
    if (d) memset(d, 0xff, cap * sizeof *d);
    return d;
}

int ts_oix_init(ts_order_index *ix, uint64_t capacity) {
    memset(ix, 0, sizeof *ix);
    unsigned bits = bits_for(capacity);
    if (bits > MAX_BITS) return -1;
    ix->direct = alloc_direct(1ull << bits);
    if (!ix->direct) return -1;
    ix->dmask = (uint32_t)((1ull << bits) - 1);
    if (alloc_hash(ix, HASH_INITIAL) != 0) {
        ts_oix_free(ix);
        return -1;
    }
    return 0;
}

void ts_oix_free(ts_order_index *ix) {
    if (ix->direct) ts_huge_free(ix->direct, direct_bytes(ix->dmask));
    if (ix->slots) ts_huge_free(ix->slots, hash_bytes(ix->mask));
    ix->direct = NULL;
    ix->slots = NULL;
    ix->dcount = ix->count = 0;
}

/* Replace the hash by one of at least `capacity` slots holding its entries, but those
 * that moved to the direct table `direct` (NULL: none did). */
static int rehash(ts_order_index *ix, uint64_t capacity, const uint32_t *direct) {
    ts_order_index bigger;
    if (alloc_hash(&bigger, capacity) != 0) return -1;
    /* the tags are all a rehash needs: the home slot is a function of the tag */
    for (uint64_t i = 0; i <= ix->mask; i++) {
        const ts_oix_slot s = ix->slots[i];
        if (s.val == TS_OIX_EMPTY) continue;
        if (direct && direct[s.tag & ix->dmask] == s.val) continue;
        ts_oix_hash_put(&bigger, s.tag, s.val);
    }
    ts_huge_free(ix->slots, hash_bytes(ix->mask));
    ix->slots = bigger.slots;
    ix->mask = bigger.mask;
    ix->shift = bigger.shift;
    ix->count = bigger.count;
    ix->limit = bigger.limit;
    return 0;
}

/* Widen the direct table to 2^bits slots. Its entries are re-placed by their keys (read
 * from the pool: the table keeps none); keys in distinct slots stay in distinct slots
 * under a wider mask. Then hash entries whose slot is free move over: a slot index is
 * below 2^31, so the tag (the key's low 32 bits) is enough to place them. */
static int grow_direct(ts_order_index *ix, unsigned bits, const void *pool, size_t stride) {
    const uint64_t cap = 1ull << bits;
    uint32_t *d = alloc_direct(cap);
    if (!d) return -1;
    const uint32_t mask = (uint32_t)(cap - 1);
    for (uint64_t i = 0; i <= ix->dmask; i++) {
        const uint32_t v = ix->direct[i];
        if (v != TS_OIX_EMPTY) d[(uint32_t)ts_oix_key_at(pool, stride, v) & mask] = v;
    }
    ts_huge_free(ix->direct, direct_bytes(ix->dmask));
    ix->direct = d;
    ix->dmask = mask;
    if (ix->count == 0) return 0;
    uint64_t moved = 0;
    for (uint64_t i = 0; i <= ix->mask; i++) {
        const ts_oix_slot s = ix->slots[i];
        if (s.val == TS_OIX_EMPTY || d[s.tag & mask] != TS_OIX_EMPTY) continue;
        d[s.tag & mask] = s.val;
        moved++;
    }
    if (moved == 0) return 0;
    /* the entries moved are now in both tables: rebuild the hash without them */
    if (rehash(ix, (uint64_t)ix->mask + 1, d) != 0) {
        /* out of memory: put the direct table back as it was (drop the moved ones) */
        for (uint64_t i = 0; i <= ix->mask; i++) {
            const ts_oix_slot s = ix->slots[i];
            if (s.val != TS_OIX_EMPTY && d[s.tag & mask] == s.val) d[s.tag & mask] = TS_OIX_EMPTY;
        }
        return -1;
    }
    ix->dcount += moved;
    return 0;
}

int ts_oix_grow_for(ts_order_index *ix, uint64_t more, const void *pool, size_t stride) {
    const uint64_t need = 2 * (ts_oix_size(ix) + more); /* direct slots: see order_index.h */
    if (need > (uint64_t)ix->dmask + 1) {
        unsigned bits = bits_for(need);
        if (bits > MAX_BITS) bits = MAX_BITS; /* past that, ids share slots: the hash takes them */
        if ((1ull << bits) > (uint64_t)ix->dmask + 1 && grow_direct(ix, bits, pool, stride) != 0)
            return -1;
    }
    if (ix->count + more > ix->limit) {
        uint64_t cap = (uint64_t)ix->mask + 1;
        while (ix->count + more > cap - cap / 4) cap *= 2;
        if (rehash(ix, cap, NULL) != 0) return -1;
    }
    return 0;
}

uint64_t ts_oix_bytes(const ts_order_index *ix) {
    return ts_huge_bytes(direct_bytes(ix->dmask)) + ts_huge_bytes(hash_bytes(ix->mask));
}
