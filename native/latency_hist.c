/*
 * latency_hist.c — HdrHistogram's index arithmetic over counts in shared memory; see
 * latency_hist.h for the layout and why.
 *
 * With lowest = 1 the unit magnitude is 0, so the HdrHistogram formulas lose their unit
 * shifts: bucket = (bits needed by value | sub_bucket_mask) - (half-count magnitude + 1),
 * sub-bucket = value >> bucket, index = ((bucket + 1) << half-count magnitude) +
 * (sub-bucket - half count).
 */
#include "latency_hist.h"
#include "latency_hist_record.h"

#include <stddef.h>
#include <string.h>

#define HALF_MAG TS_LAT_SUB_BUCKET_HALF_COUNT_MAGNITUDE
#define HALF_COUNT (1u << HALF_MAG)
#define SUB_BUCKET_MASK ((uint64_t)TS_LAT_SUB_BUCKET_COUNT - 1)

_Static_assert(sizeof(ts_lat_segment) == TS_LAT_HEADER_SIZE, "segment header size");
_Static_assert(offsetof(ts_lat_segment, handoff_seq) == 128, "hand-off slot on its own lines");
_Static_assert(offsetof(ts_lat_hist, counts) == 64, "counts after one line of totals");
_Static_assert(TS_LAT_SUB_BUCKET_COUNT == 2 * HALF_COUNT, "sub-bucket count");
/* 2 significant digits: 2 * 10^2 = 200 values at unit resolution need 2^8 sub-buckets */
_Static_assert(TS_LAT_SIGNIFICANT_DIGITS == 2 && TS_LAT_SUB_BUCKET_COUNT == 256, "digits");
/* the buckets must reach past the highest value, and one bucket fewer must not */
_Static_assert(((uint64_t)TS_LAT_SUB_BUCKET_COUNT << (TS_LAT_BUCKET_COUNT - 1)) >
                       (uint64_t)TS_LAT_HIGHEST &&
                   ((uint64_t)TS_LAT_SUB_BUCKET_COUNT << (TS_LAT_BUCKET_COUNT - 2)) <=
                       (uint64_t)TS_LAT_HIGHEST,
               "bucket count");
_Static_assert(TS_LAT_COUNTS_LEN == (TS_LAT_BUCKET_COUNT + 1) * HALF_COUNT, "counts length");

uint64_t ts_lat_segment_size(uint32_t n_hists) {
    return TS_LAT_HEADER_SIZE + (uint64_t)n_hists * sizeof(ts_lat_hist);
}

int ts_lat_segment_init(void *mem, uint64_t size, uint32_t n_hists, uint32_t role, uint32_t id,
                        int32_t creator_pid, uint64_t creator_start_us) {
    if (!mem || n_hists == 0 || n_hists > TS_LAT_MAX_HISTS || size < ts_lat_segment_size(n_hists))
        return -1;
    memset(mem, 0, ts_lat_segment_size(n_hists));
    ts_lat_segment *seg = mem;
    seg->version = TS_LAT_VERSION;
    seg->n_hists = n_hists;
    seg->role = role;
    seg->id = id;
    seg->creator_pid = creator_pid;
    seg->creator_start_us = creator_start_us;
    seg->lowest = TS_LAT_LOWEST;
    seg->highest = (uint64_t)TS_LAT_HIGHEST;
    seg->significant_digits = TS_LAT_SIGNIFICANT_DIGITS;
    seg->counts_len = TS_LAT_COUNTS_LEN;
    for (uint32_t i = 0; i < n_hists; i++) ts_lat_segment_hist(seg, i)->min_ns = UINT64_MAX;
    __atomic_store_n(&seg->magic, (uint64_t)TS_LAT_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

int ts_lat_segment_check(const void *mem, uint64_t size) {
    if (!mem || size < TS_LAT_HEADER_SIZE) return -1;
    const ts_lat_segment *seg = mem;
    if (__atomic_load_n(&seg->magic, __ATOMIC_ACQUIRE) != (uint64_t)TS_LAT_MAGIC) return -1;
    if (seg->version != TS_LAT_VERSION || seg->n_hists == 0 || seg->n_hists > TS_LAT_MAX_HISTS)
        return -1;
    if (seg->lowest != TS_LAT_LOWEST || seg->highest != (uint64_t)TS_LAT_HIGHEST ||
        seg->significant_digits != TS_LAT_SIGNIFICANT_DIGITS ||
        seg->counts_len != TS_LAT_COUNTS_LEN)
        return -1;
    if (size < ts_lat_segment_size(seg->n_hists)) return -1;
    return (int)seg->n_hists;
}

ts_lat_hist *ts_lat_segment_hist(ts_lat_segment *seg, uint32_t i) {
    return (ts_lat_hist *)((unsigned char *)seg + TS_LAT_HEADER_SIZE + (size_t)i * sizeof(ts_lat_hist));
}

#define index_of ts_lat_index_of_

uint32_t ts_lat_index(int64_t value_ns) {
    if (value_ns < 0) value_ns = 0;
    if (value_ns > TS_LAT_HIGHEST) value_ns = TS_LAT_HIGHEST;
    return index_of((uint64_t)value_ns);
}

int64_t ts_lat_index_value(uint32_t index) {
    int bucket = (int)(index >> HALF_MAG) - 1;
    uint64_t sub = (index & (HALF_COUNT - 1)) + HALF_COUNT;
    if (bucket < 0) {
        sub -= HALF_COUNT;
        bucket = 0;
    }
    return (int64_t)(sub << bucket);
}

int64_t ts_lat_index_value_highest(uint32_t index) {
    uint64_t v = (uint64_t)ts_lat_index_value(index);
    int bucket = 64 - __builtin_clzll(v | SUB_BUCKET_MASK) - (HALF_MAG + 1);
    return (int64_t)(v + (1ull << bucket) - 1);
}

void ts_lat_record(ts_lat_hist *h, int64_t value_ns, uint64_t count) {
    ts_lat_record_inline(h, value_ns, count);
}

/* Seqlock, one writer: odd while writing. The reader retries never — a sample missed
 * because the gateway was mid-write is simply not taken. */
void ts_lat_handoff_stamp(ts_lat_segment *seg, uint64_t index_end, int64_t stamp_ns) {
    uint64_t s = __atomic_load_n(&seg->handoff_seq, __ATOMIC_RELAXED);
    __atomic_store_n(&seg->handoff_seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&seg->handoff_index, index_end, __ATOMIC_RELAXED);
    __atomic_store_n(&seg->handoff_ns, stamp_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&seg->handoff_seq, s + 2, __ATOMIC_RELEASE);
}

int ts_lat_handoff_read(const ts_lat_segment *seg, uint64_t *index_end, int64_t *stamp_ns) {
    uint64_t s1 = __atomic_load_n(&seg->handoff_seq, __ATOMIC_ACQUIRE);
    if (s1 == 0 || (s1 & 1)) return 0;
    uint64_t idx = __atomic_load_n(&seg->handoff_index, __ATOMIC_RELAXED);
    int64_t ns = __atomic_load_n(&seg->handoff_ns, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&seg->handoff_seq, __ATOMIC_RELAXED) != s1) return 0;
    *index_end = idx;
    *stamp_ns = ns;
    return 1;
}
