/*
 * worker.h — a shard worker's loop, in C: inbound commands → journal → engine → outbound
 * events and market data, with a control block in shared memory for the supervisor.
 *
 * Python only steers (start, recover, stop, pruning): ts_worker_run loops in C for up to
 * a time slice, and returns early when the control block asks for a stop, so no Python
 * runs per order.
 *
 * Snapshots (periodic, every snapshot_every commands, or requested through
 * snapshot_requests) are written in the background once ts_worker_set_snapshots(w, dir, 1)
 * gave the worker its writer thread (snapshot_writer.h): at the batch boundary where one
 * comes due, the loop serializes the engine (the only part on this thread; the state at
 * seq N), hands the bytes over, and carries on — no quiesce, no fdatasync, no return.
 * The writer renames the file into place only once the output through N is in the rings
 * and the journal through N is durable (GROUP/FSYNC: synced_seq >= N, which the loop's
 * group commits move; NONE: the writer fdatasyncs the segments itself). One write at a
 * time: a snapshot due while one is in flight waits for it (snapshots_deferred counts
 * them). When a write finishes, the loop publishes snapshot_seq, snapshots_taken and
 * snapshots_served (the request seen at hand-off) and returns SNAPSHOT_WRITTEN so that
 * the caller prunes old files (off this thread); a failed write fails the worker
 * (ERR_JOURNAL, the error naming the file) as a failed inline one does. Without a
 * writer (the "inline" mode), a due snapshot quiesces and returns SNAPSHOT_DUE, and the
 * caller writes it with ts_worker_snapshot, as before.
 *
 * The "fork" mode (TS_SNAPSHOTS_FORK) takes even the serialization off the worker's
 * thread: at the batch boundary the loop forks (snapshot_fork.h), the child serializes its
 * copy-on-write image of the engine at seq N, writes and fsyncs the .tmp and exits, and
 * the loop goes on matching at once. The writer thread waits for the child, then applies
 * the same gates and rename as above. What the worker's thread still pays: fork() itself
 * (copying page tables: snapshot_fork_ns) and one copy-on-write fault per page it writes
 * while the child runs (snapshot_cow_faults; fork_batch_max_ns is the longest batch then).
 * A child that dies without finishing (killed, the test hook) is not a journal failure:
 * its .tmp is removed, snapshots_failed counts it, the error text says why, the loop
 * returns SNAPSHOT_FAILED once (the caller logs it) and a request it was serving is served
 * by the next one; after three such children in a row the next snapshot is serialized on
 * the worker's thread instead. The child only serializes (into a shared buffer) and exits,
 * so the copy-on-write window is the walk alone; the writer thread writes the .tmp from
 * the buffer, and a failed write fails the worker as a failed background write does. fork() failing (no memory) falls back to that thread too, and
 * so does a book whose snapshot is under cfg.fork_min_bytes: serializing a few thousand
 * orders costs the loop less than fork() does.
 *
 * One turn of the loop:
 *   1. peek a batch of commands from the inbound ring (zero-copy, ts_ring_peek);
 *   2. stamp them with the next shard seqs and append them to the journal in one write,
 *      each with its ring position (ring_id, ring_index);
 *   3. match them (ts_engine_process) straight out of the ring slots;
 *   4. release the ring slots — only now, after the journal write, so a worker killed
 *      before journaling leaves its commands in the ring for the next incarnation;
 *   5. push the events and market data to the outbound rings, waiting per the wait
 *      strategy while a ring is full (backpressure: nothing is ever dropped). Under
 *      GROUP durability the output waits in the engine's buffers until an fdatasync
 *      covers its commands; NONE and FSYNC (which synced in step 2) push at once.
 *   6. heartbeat and counters into the control block.
 * No new batch is taken while output that may leave is still waiting for room, so a
 * slow consumer slows intake instead of growing memory.
 *
 * Exactly-once across a crash (kill -9 at any instant), with the rings and the control
 * block kept by the supervisor across worker restarts:
 *   - intake: each journal record holds the command's ring index. Recovery sets the
 *     inbound ring's tail just past the last journaled command: commands journaled but
 *     not yet released are not taken twice, commands not journaled are taken again.
 *   - output: events carry exec ids that grow by 1 per event. Recovery reads the exec id
 *     of the last event the previous incarnation pushed (the events ring's slot at
 *     head - 1, if head > 0) and, while replaying the journal tail, re-emits exactly the
 *     replayed events with a greater exec id: they were journaled but never pushed.
 *     Market data has no global id, so the worker counts md records (the count through
 *     a snapshot's seq is in the snapshot file header); the control block remembers the
 *     count at which these rings started (base_md), and recovery re-emits the replayed md
 *     records whose ordinal is >= base_md + the md ring's head.
 *   - the "base" fields of the control block are set once, by the first incarnation
 *     that completes recovery on a fresh control block: what was journaled before
 *     belongs to earlier rings (an earlier run of the system) and is not re-emitted
 *     from them, with one exception:
 *   - a run killed whole (every process at once): its workers' events were not all
 *     pushed, nor were all pushed ones taken. The next run's supervisor carries the dead
 *     events ring's unconsumed records into the new ring before the worker starts and
 *     sets inherited_exec_id to the exec id of the last event the dead run pushed; a
 *     worker on a block without base fields then re-emits the replayed events above it
 *     (or above the new ring's last record, if an earlier incarnation pushed some).
 *     Market data likewise: the dead md ring's unread records are carried into the new
 *     one (inherited_md_carried of them) and inherited_md counts the engine md records
 *     the dead run pushed; the worker re-emits the replayed md records from that
 *     ordinal on (past what an earlier incarnation of this run pushed). At the end of
 *     that recovery base_md is set to what makes the usual rule hold for a later
 *     restart in this run: md_total less the engine records the ring holds.
 *   - a snapshot becomes visible only once everything before it is journaled, synced
 *     and pushed (taken at a quiescent point inline; the background writer waits for
 *     it), so the replayed tail after it holds everything not yet pushed.
 *
 * Market-data refresh (for the md sidecar, which keeps the published L2 book of every
 * symbol and must learn the books a worker recovered before it started): when the
 * sidecar increments md_refresh_requests, the loop quiesces as for a snapshot (journal
 * synced, every output pushed) and pushes, per symbol in id order, L2_REFRESH_BEGIN /
 * LEVEL... / END records (wire.h) built from the engine's depth, then sets
 * md_refreshes_served. Nothing else changes: no journal record, no sequence number,
 * the engine untouched, so determinism and replay are unaffected. Those records are
 * not engine output, so the exactly-once md bookkeeping leaves them out: the block
 * counts them (md_refresh_records), and a refresh cut by a crash is counted from
 * md_refresh_head/len/before at the next recovery (both idempotent) (nothing else is pushed while one is in
 * progress). A request made while no worker runs is served by the next one.
 *
 * Order image (for a restarted gateway, order_image.h): while order_image_requests differs
 * from order_images_served, the loop keeps taking commands until the inbound ring is
 * empty (the dead gateway's last commands included: the new one sends nothing before it
 * has the image), then quiesces as for a snapshot and returns IMAGE_DUE; the caller
 * writes the image and sets order_images_served. Nothing in the engine changes.
 *
 * Several inbound rings (one per gateway, say) are designed for: records carry a ring_id
 * and the loop's intake is per ring; this version runs one (ring_id 0). With more than
 * one, recovery will need each ring's last journaled index, which the snapshot header
 * will have to carry for rings idle since before the snapshot.
 *
 * Declarations only (cffi reads this file); the definitions are in worker.c.
 */
#ifndef TRADSYS_WORKER_H
#define TRADSYS_WORKER_H

#include <stdint.h>

#include "book.h"
#include "journal.h"
#include "latency_hist.h"
#include "ring.h"

/* "TSKWCTL1" little-endian */
#define TS_WORKER_CONTROL_MAGIC 0x314c5443574b5354
#define TS_WORKER_CONTROL_VERSION 2
#define TS_WORKER_CONTROL_SIZE 2048

enum ts_worker_state {
    TS_WORKER_EMPTY = 0,      /* control block made, no worker yet */
    TS_WORKER_STARTING = 1,   /* process up, attaching */
    TS_WORKER_RECOVERING = 2, /* loading the snapshot, replaying the journal */
    TS_WORKER_RUNNING = 3,
    TS_WORKER_STOPPING = 4,   /* draining the inbound ring, syncing, final snapshot */
    TS_WORKER_STOPPED = 5,    /* clean exit */
    TS_WORKER_FAILED = 6      /* exit after an error; `error` says what */
};

/* What ts_worker_run returns. */
enum ts_worker_run_status {
    TS_WORKER_SLICE_END = 0,    /* max_ns passed */
    TS_WORKER_STOP = 1,         /* stop requested: inbound drained, synced, all pushed */
    TS_WORKER_SNAPSHOT_DUE = 2, /* requested, or snapshot_every reached: quiescent now */
    TS_WORKER_IMAGE_DUE = 3,    /* an order image is asked for: quiescent, inbound empty */
    TS_WORKER_SNAPSHOT_WRITTEN = 4, /* a background snapshot became visible: prune now */
    TS_WORKER_SNAPSHOT_FAILED = 5,  /* a fork-mode child died unfinished: log the error text */
    TS_WORKER_ERR_JOURNAL = -1, /* the journal failed; ts_worker_error says how */
    TS_WORKER_ERR_ENGINE = -2,  /* the engine ran out of memory */
    TS_WORKER_ERR_STATE = -3    /* misuse, or rings and journal that do not agree */
};

/* ts_worker_control.inherited_set bits (a run killed whole, see above) */
enum { TS_INHERITED_EVENTS = 1, TS_INHERITED_MD = 2 };

/*
 * The control block, one per shard, in its own shared-memory segment. The supervisor
 * writes the steering fields; the worker writes everything else. Fields are plain
 * integers for cffi; C accesses them with atomic builtins (single writer each). Groups
 * written at different rates sit on separate 128-byte line pairs.
 */
typedef struct ts_worker_control {
    /* ---- 0: identity, steering, life cycle ---- */
    uint64_t magic;             /* 0   TS_WORKER_CONTROL_MAGIC, published last */
    uint32_t version;           /* 8 */
    uint32_t shard_id;          /* 12 */
    uint32_t stop_requested;    /* 16  supervisor: 1 = drain, sync, snapshot, exit */
    uint32_t snapshot_requests; /* 20  supervisor increments it to ask for a snapshot */
    int32_t state;              /* 24  ts_worker_state */
    int32_t pid;                /* 28  the worker process now attached */
    uint64_t start_us;          /* 32  its start time: pid + start time name a process */
    uint32_t incarnations;      /* 40  worker processes that attached so far */
    int32_t exit_code;          /* 44  of the last worker that exited on its own */
    uint64_t base_seq;          /* 48  journal seq when these rings started */
    uint64_t base_exec_id;      /* 56  last exec id then */
    uint64_t base_md;           /* 64  md records made by then */
    uint32_t base_set;          /* 72  1 once the base fields are valid */
    uint32_t md_refresh_requests; /* 76 md sidecar increments it to ask for a refresh */
    uint32_t order_image_requests; /* 80 a (re)starting gateway asks for an order image */
    uint32_t order_images_served;  /* 84 the request last answered (written by Python) */
    uint64_t inherited_exec_id; /* 88  supervisor: the last event a dead run pushed (below) */
    uint32_t inherited_set;     /* 96  TS_INHERITED_* bits the supervisor has set */
    uint32_t _pad0b;            /* 100 */
    uint64_t inherited_md;      /* 104 supervisor: engine md records the dead run pushed */
    uint64_t inherited_md_carried; /* 112 of them, how many it carried into the md ring */
    uint64_t _pad1[1];          /* 120 */
    /* ---- 128: heartbeat and counters, written by the worker every batch ---- */
    int64_t heartbeat_ns;       /* 128 CLOCK_MONOTONIC */
    uint64_t processed_seq;     /* 136 last seq matched */
    uint64_t journaled_seq;     /* 144 last seq written to the journal */
    uint64_t synced_seq;        /* 152 last seq covered by an fdatasync */
    uint64_t acked_seq;         /* 160 last seq whose output is all pushed */
    uint64_t commands;          /* 168 commands this incarnation took */
    uint64_t batches;           /* 176 */
    uint64_t events_out;        /* 184 events the shard's workers pushed (re-emitted too) */
    uint64_t md_out;            /* 192 md records they pushed (re-emitted, refreshes too) */
    uint64_t last_exec_id;      /* 200 of the last event pushed */
    uint64_t in_fill;           /* 208 inbound records waiting, at the last batch */
    uint64_t events_fill;       /* 216 outbound records not yet consumed */
    uint64_t md_fill;           /* 224 */
    uint64_t out_waits;         /* 232 times the worker waited for room in an out ring */
    uint64_t idle_waits;        /* 240 times it waited for commands */
    uint64_t busy_ns;           /* 248 time spent not waiting, this incarnation */
    /* ---- 256: recovery and snapshots, written rarely ---- */
    uint64_t snapshot_seq;      /* 256 seq of the last snapshot written */
    uint32_t snapshots_served;  /* 264 the snapshot_requests value last answered */
    uint32_t snapshots_taken;   /* 268 by this incarnation */
    uint64_t recovered_from_seq;/* 272 seq of the snapshot recovery started from */
    uint64_t replayed;          /* 280 journal commands replayed at start-up */
    uint64_t reemitted_events;  /* 288 replayed events pushed (never pushed before) */
    uint64_t reemitted_md;      /* 296 */
    int64_t recovery_ns;        /* 304 run_worker entry to RUNNING (set by the process) */
    uint64_t intake_skipped;    /* 312 ring commands found journaled already at start */
    uint64_t truncated_bytes;   /* 320 torn tail cut at start-up */
    uint64_t md_refresh_records;/* 328 refresh records pushed to the md ring, all runs */
    uint64_t md_refresh_head;   /* 336 md ring head where the refresh being pushed began */
    uint64_t md_refresh_len;    /* 344 its length; 0 = none in progress */
    uint64_t md_refresh_before; /* 352 md_refresh_records when it began */
    uint32_t md_refreshes_served;/* 360 the md_refresh_requests value last answered */
    uint32_t snapshots_deferred;/* 364 due snapshots that waited for the writer to finish */
    uint64_t snapshot_serialize_ns; /* 368 last background snapshot: serialization (on the
                                 *     worker's thread: the only part that stalls it) */
    uint64_t snapshot_write_ns; /* 376 its write, hand-off to visible (writer thread) */
    /* ---- 384: the last error, a sentence for `tradsys status` ---- */
    char error[512];            /* 384 */
    int64_t batch_gap_max_ns;   /* 896 longest time, this incarnation, from the end of one
                                 *     batch to the start of the next while commands waited
                                 *     in the ring (a stall: snapshot, sync, return to Python) */
    /* ---- 904: the fork mode (TS_SNAPSHOTS_FORK) ---- */
    uint64_t snapshot_fork_ns;  /* 904 last fork() on the worker's thread */
    uint64_t snapshot_child_ns; /* 912 its child's serialization of the engine */
    uint64_t snapshot_cow_faults; /* 920 minor faults of the worker's thread while that child
                                 *     ran (copy-on-write copies, mostly) */
    int64_t fork_batch_max_ns;  /* 928 longest batch (match + push), this incarnation, while
                                 *     a child ran: what the copy-on-write faults cost */
    int32_t snapshot_child_pid; /* 936 the child now writing (0: none) */
    uint32_t snapshots_failed;  /* 940 children that died unfinished, this incarnation */
    int64_t batch_max_ns;       /* 944 longest batch (match + push), this incarnation: the
                                 *     floor fork_batch_max_ns is read against */
    uint64_t snapshot_collapse_ns; /* 952 the writer thread putting the engine's blocks back
                                 *     on huge pages after the last child (a fork splits them) */
    uint8_t _reserved[64];      /* 960 */
    /* ---- 1024: execution events this incarnation pushed, by kind (for /metrics) ---- */
    uint64_t accepted_out;      /* 1024 */
    uint64_t trades_out;        /* 1032 fills, counted once (on the taker's event) */
    uint64_t cancelled_out;     /* 1040 */
    uint64_t replaced_out;      /* 1048 */
    uint64_t triggered_out;     /* 1056 */
    uint64_t rejected_out;      /* 1064 */
    uint64_t _pad4[2];          /* 1072 */
    uint64_t rejects_by_reason[64]; /* 1088 indexed by ts_reject_reason */
    uint8_t _reserved2[448];    /* 1600 */
} ts_worker_control;

/* Format a block as a fresh control block (zeroes it; the magic is published last). */
void ts_worker_control_init(ts_worker_control *ctl, uint32_t shard_id);
/* 0 if `mem` of `size` bytes holds a control block of this version, else -1. */
int ts_worker_control_check(const void *mem, uint64_t size);

typedef struct ts_worker_config {
    uint32_t shard_id;
    uint32_t max_batch;         /* commands per batch at most (0 = 1024) */
    uint64_t snapshot_every;    /* a snapshot after this many commands; 0 = never */
    ts_wait_strategy wait;      /* waiting for commands and for room in the out rings */
    uint64_t fork_min_bytes;    /* fork mode: books whose snapshot is smaller are serialized
                                 * on the loop's thread (cheaper than fork() itself, which
                                 * copies the process's page tables: ~1 ms here) */
    uint32_t background_idle;   /* 1: the snapshot writer thread and fork children share
                                 * this worker's core (pinned, no housekeeping core): they
                                 * run at SCHED_IDLE (ts_snapwriter_share_core) */
    uint32_t discard_md;        /* 1: no one reads the md ring ([md] enabled = false and no
                                 * external reader): market data is dropped, never pushed
                                 * (a full ring would hold the worker back for good) */
} ts_worker_config;

typedef struct ts_worker ts_worker;

/* A worker over borrowed parts (it frees none of them): the engine, the inbound
 * commands ring (this process its consumer), the events and md rings (producer), and
 * the control block. The journal comes after recovery, ts_worker_set_journal. */
ts_worker *ts_worker_new(const ts_worker_config *cfg, ts_engine *e, ts_ring *commands,
                         ts_ring *events, ts_ring *md, ts_worker_control *ctl);
void ts_worker_free(ts_worker *w);

/* Replay shard's journal tail after `snapshot_seq` into the engine (already restored
 * from that snapshot: its md count and last exec id are given), re-emitting what the
 * previous incarnation never pushed, then set the inbound ring's tail just past the last
 * journaled command. `sync_first`: fdatasync the segments before re-emitting from them
 * (GROUP, FSYNC). The result's TORN_TAIL status asks the caller to truncate (and log)
 * before opening the journal for appending at ts_worker_seq(w) + 1. */
int ts_worker_recover(ts_worker *w, const char *dir, uint64_t snapshot_seq,
                      uint64_t snapshot_md_count, uint64_t snapshot_last_exec_id, int sync_first,
                      ts_journal_replay_result *out);
void ts_worker_set_journal(ts_worker *w, ts_journal *j);

/* Run the loop for up to max_ns (see the top of this file); a ts_worker_run_status. */
int ts_worker_run(ts_worker *w, int64_t max_ns);

/* At a quiescent point (after SNAPSHOT_DUE or STOP): sync the journal, wait for a
 * background write in flight (and publish it), then write the snapshot file for the
 * current seq into dir. Returns a ts_journal_status. */
int ts_worker_snapshot(ts_worker *w, const char *dir);

/* Who writes periodic and requested snapshots. */
enum ts_snapshot_mode {
    TS_SNAPSHOTS_INLINE = 0,     /* SNAPSHOT_DUE: the caller writes, the loop stopped */
    TS_SNAPSHOTS_BACKGROUND = 1, /* serialized on the loop's thread, written by the writer */
    TS_SNAPSHOTS_FORK = 2        /* serialized and written by a forked child (Linux) */
};

/* Snapshots into dir in a ts_snapshot_mode (BACKGROUND and FORK start the writer thread;
 * FORK where ts_worker_fork_supported() is 0 runs as BACKGROUND). A ts_journal_status.
 * ts_worker_free stops the thread; a write still waiting then is cancelled (a child still
 * writing is killed and reaped) and its .tmp removed. */
int ts_worker_set_snapshots(ts_worker *w, const char *dir, int mode);
/* 1 where the fork mode works (Linux), else 0. */
int ts_worker_fork_supported(void);
/* Test hooks for the fork mode: while the file hold_path exists (NULL: no hold), children
 * wait after writing their .tmp's header; the next `fail` children exit non-zero there. */
void ts_worker_snapshot_child_hooks(ts_worker *w, const char *hold_path, int fail);
/* Wait for a background write in flight and publish it; a ts_journal_status (the write's
 * failure, with ts_worker_error). It waits on the writer's gates: call it at a quiescent
 * point (ts_worker_snapshot does), or after the loop has had time to open them. */
int ts_worker_snapshot_wait(ts_worker *w);
/* Test hooks: hold the writer before its rename (1) or let it go (0); its phase
 * (ts_snapwriter_phase: 0 idle, 1 writing, 2 waiting, 3 publishing; -1 no writer). */
void ts_worker_snapshot_hold(ts_worker *w, int hold);
int ts_worker_snapshot_phase(ts_worker *w);

/* Ask this worker to stop as the supervisor's stop_requested does, without touching the
 * control block (whose flag would also stop the next incarnation): for a SIGTERM sent to
 * the worker itself. Takes effect at the next ts_worker_run. */
void ts_worker_request_stop(ts_worker *w);

/* Record this worker's stage latencies (latency_hist.h, TS_LAT_WORKER_STAGES histograms)
 * into `seg`, a segment the supervisor made for the shard; NULL stops recording. The cost
 * is one clock read per batch (after matching; shard-in is the loop's own time) and one
 * per push of events, never one per command. */
void ts_worker_set_latency(ts_worker *w, ts_lat_segment *seg);

/* Sync the journal now (the clean stop does, whatever the policy). */
int ts_worker_sync(ts_worker *w);

uint64_t ts_worker_seq(const ts_worker *w);       /* last seq journaled and matched */
uint64_t ts_worker_md_count(const ts_worker *w);  /* md records made through that seq */
uint64_t ts_worker_last_exec_id(const ts_worker *w);
/* The last failure, for logs and the control block's error text. */
const ts_journal_error *ts_worker_error(const ts_worker *w);

#endif /* TRADSYS_WORKER_H */
