/*
 * snapshot_writer.h — a shard worker's background snapshot writer: one pthread that takes
 * one job at a time (a payload already serialized on the worker's thread, snapshot_file.h)
 * and does the slow part off the hot path: crc, .tmp file, write, fsync, rename, directory
 * fsync. In the fork mode (ts_snapwriter_fork, snapshot_fork.h) the job is a child process
 * that serializes the engine into a shared buffer and exits; the thread waits for it
 * (waitid, blocking: no polling anywhere) and then does the rest exactly as for a payload:
 * the same .tmp write, gates, rename and directory fsync, the same result.
 *
 * Why a thread and not inline: the file write and its fsyncs take tens of milliseconds on
 * a VM; inline they stopped the shard for that long. Serialization stays on the worker's
 * thread because only there is the engine consistent at a batch boundary (seq N).
 *
 * Durability rule (the same one the inline path kept by quiescing): a snapshot at seq N is
 * renamed into place only when
 *   - every output of commands 1..N is in the outbound rings (*pushed_seq >= N): recovery
 *     from that snapshot replays nothing at or before N, so output still held by the dead
 *     worker would be lost; and
 *   - the journal through N is durable: under GROUP and FSYNC, *durable_seq >= N (the
 *     worker's group commits move it, and it keeps committing meanwhile); under NONE
 *     (durable_seq NULL) the writer fdatasyncs the journal's segments through N itself,
 *     here, off the hot path. Without that, an OS crash could leave a snapshot at N ahead
 *     of a journal that ends at M < N: the restarted worker would continue the journal at
 *     N + 1 in a new segment, and the next recovery from that snapshot would start reading
 *     at the old segment and refuse the gap M+1..N (TS_JOURNAL_ERR_GAP).
 * The .tmp is written first (overlapping the wait), then the writer polls the two
 * counters (a background thread: a 100 µs sleep loop costs the worker nothing).
 *
 * Not part of the cffi interface: worker.h steers it.
 */
#ifndef TRADSYS_SNAPSHOT_WRITER_H
#define TRADSYS_SNAPSHOT_WRITER_H

#include <stdint.h>

#include "book.h"
#include "journal.h"

typedef struct ts_snapwriter ts_snapwriter;

typedef struct ts_snapwriter_job {
    uint64_t seq;                /* the state after journal commands 1..seq */
    uint64_t md_count;           /* for the file header */
    void *payload;               /* malloc'd engine snapshot; the writer frees it */
    uint64_t payload_bytes;
    const uint64_t *pushed_seq;  /* rename once *pushed_seq >= seq (atomic loads) */
    const uint64_t *durable_seq; /* and *durable_seq >= seq; NULL: sync the journal here */
    uint32_t tag;                /* the caller's (the snapshot request it serves) */
    int32_t child;               /* set by ts_snapwriter_fork: the child filling payload (a
                                  * shared mapping, unmapped by the writer) */
} ts_snapwriter_job;

typedef struct ts_snapwriter_result {
    uint64_t seq;
    uint32_t tag;
    int32_t status;   /* ts_journal_status: OK, or why the snapshot was not written */
    int64_t write_ns; /* hand-off to visible (or to the failure) */
    int32_t child_failed; /* fork mode: the child died or exited without a report (killed,
                           * out of memory): nothing on disk is wrong, a retry may work */
    int32_t _pad0;
    int64_t child_serialize_ns; /* fork mode: the child's engine walk */
    int64_t collapse_ns; /* fork mode: putting the engine's blocks back on huge pages after
                          * the child exited (ts_huge_recollapse) */
    ts_journal_error err;
} ts_snapwriter_result;

enum ts_snapwriter_phase {
    TS_SNAPWRITER_IDLE = 0,    /* no job, or its result not collected yet */
    TS_SNAPWRITER_WRITING = 1, /* writing the .tmp */
    TS_SNAPWRITER_WAITING = 2, /* .tmp written; waiting for the journal/output (or a hold) */
    TS_SNAPWRITER_PUBLISHING = 3
};

/* A writer for shard's snapshots in dir (its thread starts now). NULL with err on failure. */
ts_snapwriter *ts_snapwriter_new(const char *dir, uint32_t shard_id, ts_journal_error *err);
/* Stop the thread and free everything. A job still waiting is cancelled: its .tmp is
 * removed and nothing is renamed (a gate that would never open cannot hang this). */
void ts_snapwriter_free(ts_snapwriter *sw);

/* Hand over a job: 0, or -1 if the writer is busy (a job in flight or a result not yet
 * collected) — the payload then stays the caller's. */
int ts_snapwriter_submit(ts_snapwriter *sw, const ts_snapwriter_job *job);
/* 1 if no job is in flight and no result waits to be collected. */
int ts_snapwriter_idle(ts_snapwriter *sw);
/* Collect a finished job's result: 1 (and *out) if there was one, else 0. Cheap when
 * there is none (one atomic load), so the worker's loop may call it every turn. */
int ts_snapwriter_poll(ts_snapwriter *sw, ts_snapwriter_result *out);
/* Wait for the job in flight to finish and collect it: 1 (and *out), or 0 if none. */
int ts_snapwriter_wait(ts_snapwriter *sw, ts_snapwriter_result *out);

/* Fork mode: fork a child that serializes `e` as it is now (the caller's thread must hold
 * it still: the worker's loop at a batch boundary), writes and fsyncs job->seq's .tmp and
 * exits; then hand the writer a job that waits for the child and publishes as usual. The
 * child runs on the CPUs this writer was created on (ts_snapwriter_new's caller's mask:
 * the housekeeping cores of a pinned worker) at SCHED_BATCH, nice +10 (SCHED_IDLE after
 * ts_snapwriter_share_core). 0, with *fork_ns the time fork() took on the caller's
 * thread; -1 if busy; or a ts_journal_status with err if fork failed (nothing started:
 * the caller may serialize itself instead). */
int ts_snapwriter_fork(ts_snapwriter *sw, const ts_engine *e, const ts_snapwriter_job *job,
                       int64_t *fork_ns, ts_journal_error *err);
/* The writer shares its worker's core (a pinned worker with no housekeeping core to send
 * it to): from now on its thread, and the fork mode's children from their start, run at
 * SCHED_IDLE instead of the normal policy (the children: instead of SCHED_BATCH, nice
 * +10). The worker then preempts them the moment it has work, and they use only the
 * time the core would sit idle: a file write, fsync or MADV_COLLAPSE (tens to hundreds
 * of ms of kernel work) no longer holds the core while the worker is runnable. Call it
 * before the first job. 0, or the errno of setting the thread's policy (the children
 * still go idle); elsewhere than Linux 0 and nothing changes. */
int ts_snapwriter_share_core(ts_snapwriter *sw);
/* The child now writing (0: none). */
int32_t ts_snapwriter_child(ts_snapwriter *sw);
/* Mirror that pid into *field (0 once reaped) for status readers. It is written where
 * the fork and the reaping happen, so it stays true while the caller's thread idles in a
 * wait and would not look at the child until its next batch. NULL: stop mirroring. */
void ts_snapwriter_publish_child(ts_snapwriter *sw, int32_t *field);
/* Test hooks for the fork mode: children forked while hold_path is set wait, after the
 * walk, for as long as that file exists; the next `fail` children exit non-zero at that
 * point instead of reporting. */
void ts_snapwriter_child_hooks(ts_snapwriter *sw, const char *hold_path, int fail);

/* Test hook: while held, a job stops before its rename (phase WAITING). */
void ts_snapwriter_hold(ts_snapwriter *sw, int hold);
int ts_snapwriter_phase(ts_snapwriter *sw);

#endif /* TRADSYS_SNAPSHOT_WRITER_H */
