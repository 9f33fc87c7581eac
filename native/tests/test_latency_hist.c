/*
 * test_latency_hist.c — the shared-memory latency histogram's index arithmetic and
 * recording (latency_hist.h), without Python. The equivalence with HdrHistogram itself
 * on random values is tested from Python (tests/metrics/test_latency_hist.py), against
 * the HdrHistogram_py package.
 */
#include "../latency_hist.h"
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void test_index_edges(void) {
    /* unit resolution below 256 ns */
    for (int64_t v = 0; v < 256; v++) CHECK_EQ(ts_lat_index(v), v);
    /* 256..511 ns in steps of 2 */
    CHECK_EQ(ts_lat_index(256), 256);
    CHECK_EQ(ts_lat_index(257), 256);
    CHECK_EQ(ts_lat_index(258), 257);
    CHECK_EQ(ts_lat_index(-5), 0);
    CHECK_EQ(ts_lat_index(TS_LAT_HIGHEST), ts_lat_index(TS_LAT_HIGHEST + 1));
    CHECK(ts_lat_index(TS_LAT_HIGHEST) < TS_LAT_COUNTS_LEN);
    CHECK_EQ(ts_lat_index(INT64_MAX), ts_lat_index(TS_LAT_HIGHEST));
    /* every index's value range maps back to it, and ranges tile the line */
    int64_t next = 0;
    for (uint32_t i = 0; i <= ts_lat_index(TS_LAT_HIGHEST); i++) {
        int64_t lo = ts_lat_index_value(i), hi = ts_lat_index_value_highest(i);
        CHECK_EQ(lo, next);
        CHECK(hi >= lo);
        CHECK_EQ(ts_lat_index(lo), i);
        CHECK_EQ(ts_lat_index(hi), i);
        /* 2 significant digits: a range is at most 1/128 of its values */
        CHECK(lo < 256 || (hi - lo + 1) * 128 <= lo);
        next = hi + 1;
    }
}

static void test_record_and_overflow(void) {
    uint64_t size = ts_lat_segment_size(TS_LAT_WORKER_STAGES);
    void *mem = calloc(1, size);
    CHECK(mem);
    CHECK_EQ(ts_lat_segment_check(mem, size), -1); /* not formatted yet */
    CHECK_EQ(ts_lat_segment_init(mem, size - 1, TS_LAT_WORKER_STAGES, TS_LAT_ROLE_WORKER, 0, 1, 2), -1);
    CHECK_EQ(ts_lat_segment_init(mem, size, 0, TS_LAT_ROLE_WORKER, 0, 1, 2), -1);
    CHECK_EQ(ts_lat_segment_init(mem, size, TS_LAT_WORKER_STAGES, TS_LAT_ROLE_WORKER, 3, 1, 2), 0);
    CHECK_EQ(ts_lat_segment_check(mem, size), TS_LAT_WORKER_STAGES);
    CHECK_EQ(ts_lat_segment_check(mem, size - 1), -1);
    ts_lat_segment *seg = mem;
    ts_lat_hist *h = ts_lat_segment_hist(seg, 1);
    CHECK(h->min_ns == UINT64_MAX);
    ts_lat_record(h, 1000, 3);
    ts_lat_record(h, 0, 1);
    ts_lat_record(h, TS_LAT_HIGHEST + 5, 1);
    ts_lat_record(h, -7, 1); /* a clock step back: counted as 0 */
    CHECK_EQ(h->total, 6);
    CHECK_EQ(h->overflow, 1);
    CHECK_EQ(h->min_ns, 0);
    CHECK_EQ(h->max_ns, TS_LAT_HIGHEST + 5);
    CHECK_EQ(h->counts[ts_lat_index(1000)], 3);
    CHECK_EQ(h->counts[0], 2);
    CHECK_EQ(h->counts[ts_lat_index(TS_LAT_HIGHEST)], 1);
    CHECK(h->sum_ns == (uint64_t)3000 + (uint64_t)TS_LAT_HIGHEST + 5);
    /* the other histograms are untouched */
    CHECK_EQ(ts_lat_segment_hist(seg, 0)->total, 0);
    CHECK_EQ(ts_lat_segment_hist(seg, 2)->total, 0);
    free(mem);
}

static void test_handoff(void) {
    uint64_t size = ts_lat_segment_size(1);
    void *mem = calloc(1, size);
    CHECK(mem);
    CHECK_EQ(ts_lat_segment_init(mem, size, 1, TS_LAT_ROLE_WORKER, 0, 1, 2), 0);
    uint64_t idx = 0;
    int64_t ns = 0;
    CHECK_EQ(ts_lat_handoff_read(mem, &idx, &ns), 0); /* nothing stamped yet */
    ts_lat_handoff_stamp(mem, 42, 1234);
    CHECK_EQ(ts_lat_handoff_read(mem, &idx, &ns), 1);
    CHECK_EQ(idx, 42);
    CHECK_EQ(ns, 1234);
    ((ts_lat_segment *)mem)->handoff_seq++; /* as if a write were in progress */
    CHECK_EQ(ts_lat_handoff_read(mem, &idx, &ns), 0);
    free(mem);
}

int main(void) {
    test_index_edges();
    test_record_and_overflow();
    test_handoff();
    if (g_test_failed) return 1;
    printf("test_latency_hist: ok\n");
    return 0;
}
