/*
 * latency_hist.h — latency histograms in shared memory, in HdrHistogram's bucket layout,
 * recorded on the hot path and read by /metrics and `tradsys latency` from outside.
 *
 * Why this layout: HdrHistogram's log-linear buckets keep every value to a fixed relative
 * precision in constant memory, and its counts array is a flat list of integers, so a
 * reader can copy it and hand it to the HdrHistogram code itself (HdrHistogram_py) for
 * percentiles. The parameters are fixed at compile time (one layout for every process):
 *
 *   lowest 1 ns, highest 60 s, 2 significant digits.
 *
 *   - 2 digits: 256 sub-buckets per power of two, so a value is kept to within 1/128
 *     (< 0.8 %) — finer than the noise of any latency figure here — and 1 ns exactly below
 *     256 ns. 3 digits would need 2048 sub-buckets: 8x the memory for a precision nobody
 *     reads from a stage histogram.
 *   - 60 s: a stall (a parked worker, a paused process, a full ring) still lands in range
 *     instead of being clamped; values past it are clamped to it and counted in
 *     `overflow`, so a clamp is never silent.
 *   - the result: 29 buckets, 3840 counters of 8 bytes = 30 KiB per histogram. Recording
 *     touches one counter, so only the few buckets a stage really hits stay in cache.
 *
 * Recording is an index computation (a count-leading-zeros and two shifts) and relaxed
 * stores: every histogram has exactly one writer process (a shard worker, or the gateway
 * pump), so a plain load-add-store is enough (no locked instruction) and a reader sees
 * each counter whole. A reader's copy is not a transaction (a counter may move while the
 * others are copied): these are monitoring figures, as the control block's counters are.
 *
 * A segment (one per process, made by the supervisor: /tradsys.<instance>.lat.<n>) holds
 * a header, a hand-off slot and n histograms:
 *   - shard workers (role 1): TS_LAT_WORKER_STAGES histograms, stamped with
 *     CLOCK_MONOTONIC (one clock in every process, so differences across processes are
 *     meaningful);
 *   - the gateway (role 2): TS_LAT_GATEWAY_STAGES histograms.
 * The hand-off slot of a shard's segment is written by the gateway pump (the ring index
 * just past the commands it pushed to that shard, and when the pass that took them
 * began) and read by the worker, which turns it into a gateway-in → shard-in sample for
 * the batch that holds that last command. A seqlock makes the pair consistent.
 *
 * Declarations only (cffi reads this file); the definitions are in latency_hist.c.
 */
#ifndef TRADSYS_LATENCY_HIST_H
#define TRADSYS_LATENCY_HIST_H

#include <stdint.h>

/* "TSLATHS1" little-endian */
#define TS_LAT_MAGIC 0x31534854414c5354
#define TS_LAT_VERSION 1
#define TS_LAT_LOWEST 1
#define TS_LAT_HIGHEST 60000000000
#define TS_LAT_SIGNIFICANT_DIGITS 2
/* derived from the three above exactly as HdrHistogram does (checked by a test) */
#define TS_LAT_SUB_BUCKET_HALF_COUNT_MAGNITUDE 7
#define TS_LAT_SUB_BUCKET_COUNT 256
#define TS_LAT_BUCKET_COUNT 29
#define TS_LAT_COUNTS_LEN 3840
#define TS_LAT_HEADER_SIZE 256
#define TS_LAT_MAX_HISTS 16

enum ts_lat_role { TS_LAT_ROLE_WORKER = 1, TS_LAT_ROLE_GATEWAY = 2 };

/* A shard worker's histograms (index in its segment). */
enum ts_lat_worker_stage {
    TS_LAT_GATEWAY_TO_SHARD = 0, /* gateway pass began → worker took the batch (sampled) */
    TS_LAT_SHARD_TO_MATCHED = 1, /* worker took the batch → journaled and matched, per command */
    TS_LAT_MATCHED_TO_EVENT = 2, /* matched → its event pushed to the events ring, per event */
    TS_LAT_WORKER_STAGES = 3
};

/* The gateway's histograms. */
enum ts_lat_gateway_stage {
    TS_LAT_ORDER_TO_ACK = 0, /* gateway pass took an order → its first event routed back */
    TS_LAT_AMEND_TO_ANSWER = 1, /* pass took a CANCEL/REPLACE → its answer routed back */
    TS_LAT_GATEWAY_STAGES = 2
};

typedef struct ts_lat_hist {
    uint64_t total;     /* 0  values recorded (each with its count) */
    uint64_t sum_ns;    /* 8  of the (unclamped) values, for a mean and Prometheus _sum */
    uint64_t min_ns;    /* 16 UINT64_MAX until the first value */
    uint64_t max_ns;    /* 24 the largest value, unclamped */
    uint64_t overflow;  /* 32 values above TS_LAT_HIGHEST (counted at the last index) */
    uint64_t _pad[3];   /* 40 */
    uint64_t counts[TS_LAT_COUNTS_LEN]; /* 64 HdrHistogram's counts array */
} ts_lat_hist;

typedef struct ts_lat_segment {
    uint64_t magic;            /* 0   published last */
    uint32_t version;          /* 8 */
    uint32_t n_hists;          /* 12 */
    uint32_t role;             /* 16  ts_lat_role */
    uint32_t id;               /* 20  shard id (0 for the gateway) */
    int32_t creator_pid;       /* 24  who unlinks it: a dead creator's segment is stale */
    uint32_t _pad0;            /* 28 */
    uint64_t creator_start_us; /* 32 */
    uint64_t lowest;           /* 40  the layout, so a reader checks it and needs no header */
    uint64_t highest;          /* 48 */
    uint32_t significant_digits; /* 56 */
    uint32_t counts_len;       /* 60 */
    uint64_t _pad1[8];         /* 64 */
    /* ---- 128: the hand-off slot (the gateway writes, the shard's worker reads) ---- */
    uint64_t handoff_seq;      /* 128 odd while being written */
    uint64_t handoff_index;    /* 136 commands ring index just past the last push */
    int64_t handoff_ns;        /* 144 CLOCK_MONOTONIC at the start of the pass that took them */
    uint64_t _pad2[13];        /* 152 */
} ts_lat_segment;

/* Bytes of a segment of n histograms. */
uint64_t ts_lat_segment_size(uint32_t n_hists);
/* Format `mem` of `size` bytes (zeroed first); 0, or -1 if n_hists or size do not fit. */
int ts_lat_segment_init(void *mem, uint64_t size, uint32_t n_hists, uint32_t role, uint32_t id,
                        int32_t creator_pid, uint64_t creator_start_us);
/* n_hists if `mem` of `size` bytes holds a segment of this version and layout, else -1. */
int ts_lat_segment_check(const void *mem, uint64_t size);
/* Histogram i of a segment (i < n_hists, unchecked). */
ts_lat_hist *ts_lat_segment_hist(ts_lat_segment *seg, uint32_t i);

/* The counts index of a value in ns (negative → 0; above TS_LAT_HIGHEST → its index). */
uint32_t ts_lat_index(int64_t value_ns);
/* The lowest value an index holds (HdrHistogram's valueFromIndex). */
int64_t ts_lat_index_value(uint32_t index);
/* The highest value an index holds (its highestEquivalentValue). */
int64_t ts_lat_index_value_highest(uint32_t index);

/* Record `count` values of value_ns each. One writer per histogram. */
void ts_lat_record(ts_lat_hist *h, int64_t value_ns, uint64_t count);

/* The gateway's side of the hand-off slot. */
void ts_lat_handoff_stamp(ts_lat_segment *seg, uint64_t index_end, int64_t stamp_ns);
/* The worker's side: 1 with the pair read consistently, 0 if none yet or mid-write. */
int ts_lat_handoff_read(const ts_lat_segment *seg, uint64_t *index_end, int64_t *stamp_ns);

#endif /* TRADSYS_LATENCY_HIST_H */
