/*
 * order_index.c — allocation and growth of the order-id index; see order_index.h.
 */
#include "order_index.h"

#include <stdlib.h>

static int alloc_table(ts_order_index *ix, uint64_t capacity) {
    unsigned bits = 4;
    while ((1ull << bits) < capacity) bits++;
    if (bits > 31) return -1; /* u32 slot indices; TS_OIX_EMPTY must stay out of range */
    uint64_t cap = 1ull << bits;
    ts_oix_slot *slots = malloc(cap * sizeof *slots);
    if (!slots) return -1;
    memset(slots, 0xff, cap * sizeof *slots); /* val = TS_OIX_EMPTY everywhere */
    ix->slots = slots;
    ix->mask = (uint32_t)(cap - 1);
    ix->shift = 32 - bits;
    ix->count = 0;
    ix->limit = cap - cap / 4;
    return 0;
}

int ts_oix_init(ts_order_index *ix, uint64_t capacity) { return alloc_table(ix, capacity); }

void ts_oix_free(ts_order_index *ix) {
    free(ix->slots);
    ix->slots = NULL;
    ix->count = 0;
}

int ts_oix_grow_for(ts_order_index *ix, uint64_t more) {
    uint64_t need = ix->count + more;
    uint64_t cap = (uint64_t)ix->mask + 1;
    while (need > cap - cap / 4) cap *= 2;
    ts_order_index bigger;
    if (alloc_table(&bigger, cap) != 0) return -1;
    /* the tags are all a rehash needs: the home slot is a function of the tag */
    for (uint64_t i = 0; i <= ix->mask; i++) {
        const ts_oix_slot s = ix->slots[i];
        if (s.val == TS_OIX_EMPTY) continue;
        uint32_t j = ts_oix_home(&bigger, s.tag);
        while (bigger.slots[j].val != TS_OIX_EMPTY) j = (j + 1) & bigger.mask;
        bigger.slots[j] = s;
        bigger.count++;
    }
    free(ix->slots);
    *ix = bigger;
    return 0;
}

uint64_t ts_oix_bytes(const ts_order_index *ix) {
    return ((uint64_t)ix->mask + 1) * sizeof(ts_oix_slot);
}
