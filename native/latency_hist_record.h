/*
 * latency_hist_record.h — ts_lat_record's body as a static inline, for the hot loops
 * that record per batch (worker.c): the call and its argument shuffling cost more than
 * the recording itself. C only (cffi reads latency_hist.h, never this file).
 */
#ifndef TRADSYS_LATENCY_HIST_RECORD_H
#define TRADSYS_LATENCY_HIST_RECORD_H

#include "latency_hist.h"

#define TS_LAT_HALF_MAG_ TS_LAT_SUB_BUCKET_HALF_COUNT_MAGNITUDE
#define TS_LAT_RELAXED_ADD_(field, v) \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (v), __ATOMIC_RELAXED)

/* HdrHistogram's counts index of v <= TS_LAT_HIGHEST (lowest 1: no unit shift). */
static inline uint32_t ts_lat_index_of_(uint64_t v) {
    /* v | mask is never 0, so clzll is defined */
    int bucket = 64 - __builtin_clzll(v | (uint64_t)(TS_LAT_SUB_BUCKET_COUNT - 1)) -
                 (TS_LAT_HALF_MAG_ + 1);
    uint64_t sub = v >> bucket;
    return (uint32_t)(((uint64_t)(bucket + 1) << TS_LAT_HALF_MAG_) +
                      (sub - (1u << TS_LAT_HALF_MAG_)));
}

/* Record `count` values of value_ns each; one writer per histogram (latency_hist.h). */
static inline void ts_lat_record_inline(ts_lat_hist *h, int64_t value_ns, uint64_t count) {
    uint64_t v = value_ns < 0 ? 0 : (uint64_t)value_ns;
    uint32_t i;
    if (__builtin_expect(v > (uint64_t)TS_LAT_HIGHEST, 0)) {
        i = ts_lat_index_of_((uint64_t)TS_LAT_HIGHEST);
        TS_LAT_RELAXED_ADD_(h->overflow, count);
    } else {
        i = ts_lat_index_of_(v);
    }
    TS_LAT_RELAXED_ADD_(h->counts[i], count);
    TS_LAT_RELAXED_ADD_(h->total, count);
    TS_LAT_RELAXED_ADD_(h->sum_ns, v * count);
    if (v < __atomic_load_n(&h->min_ns, __ATOMIC_RELAXED))
        __atomic_store_n(&h->min_ns, v, __ATOMIC_RELAXED);
    if (v > __atomic_load_n(&h->max_ns, __ATOMIC_RELAXED))
        __atomic_store_n(&h->max_ns, v, __ATOMIC_RELAXED);
}

#endif /* TRADSYS_LATENCY_HIST_RECORD_H */
