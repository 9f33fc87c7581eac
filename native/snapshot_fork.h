/*
 * snapshot_fork.h — the "fork" snapshot mode's child: a process forked from the shard
 * worker at a batch boundary, which serializes its copy-on-write image of the engine (the
 * state at seq N, frozen by the fork itself) into a MAP_SHARED buffer and _exits; the
 * writer thread then writes, crcs and fsyncs the .tmp from that buffer (snapshot_writer.h).
 * The child does not write the file itself because every page the worker writes while the
 * child lives is copied first (~2.2 µs per 4 KiB page here: make -C native bench-cow), so
 * the child lives only as long as the walk, not the write and fsync too.
 *
 * Why a process and not the writer thread: serializing a deep book (a linked-list walk of
 * every resting order) takes 0.4-0.9 s per million orders, and only a consistent engine
 * can be serialized — on the worker's thread that stopped matching for as long. fork()
 * gives another CPU a consistent image for the price of copying page tables; the worker
 * then pays one copy-on-write fault per page it writes while the child runs.
 *
 * The worker's process is multi-threaded (the writer thread, Python's), so the child may
 * only do what is safe after fork there: it is started with _Fork (glibc >= 2.34: no
 * atfork handlers run on the worker's thread, no library locks taken) and calls nothing
 * but system calls and pure code — no malloc (its buffer was mapped before the fork), no
 * stdio, no strerror, no Python, no lock. It reports through a MAP_SHARED page the writer made
 * (done flag, failing stage and errno, timings); the writer thread formats any message.
 * It moves itself to the writer thread's CPUs (the housekeeping cores of a pinned
 * worker), SCHED_BATCH and nice +10 — or SCHED_IDLE where it shares the worker's core
 * (a pinned worker with no housekeeping core: ts_snapwriter_share_core) — ignores
 * SIGINT/SIGTERM/SIGHUP (its parent decides its fate) and dies with the thread that
 * forked it (PR_SET_PDEATHSIG), so a worker
 * killed mid-snapshot leaves no file at all (a worker killed while its writer thread writes
 * the .tmp leaves that .tmp, which recovery ignores and pruning removes).
 *
 * Not part of the cffi interface: snapshot_writer.h steers it.
 */
#ifndef TRADSYS_SNAPSHOT_FORK_H
#define TRADSYS_SNAPSHOT_FORK_H

#include <sched.h> /* cpu_set_t: the including file defines _GNU_SOURCE first */
#include <stdint.h>
#include <sys/types.h>

#include "book.h"
#include "journal.h"

/* Exit codes of the child (0: the .tmp is written and fsynced). */
#define TS_SNAPFORK_EXIT_IO 1     /* the walk did not fill the buffer: the report says so */
#define TS_SNAPFORK_EXIT_ORPHAN 3 /* the parent was gone before the child began */
#define TS_SNAPFORK_EXIT_TEST 4   /* the failure test hook */

enum ts_snapfork_stage {
    TS_SNAPFORK_STAGE_NONE = 0,
    TS_SNAPFORK_STAGE_MAP = 1 /* the engine's snapshot did not fill the buffer */
};

/* Written by the child only, read by the parent only after the child has exited. */
typedef struct ts_snapfork_report {
    int32_t done;          /* 1: the buffer holds the engine's snapshot */
    int32_t stage;         /* ts_snapfork_stage that failed */
    int32_t sys_errno;
    int32_t started;       /* 1 once the child runs (it passed the orphan check) */
    int64_t serialize_ns;  /* the engine walk into the buffer */
    uint64_t payload_bytes;
} ts_snapfork_report;

typedef struct ts_snapfork_args {
    const ts_engine *e;
    void *buf;             /* MAP_SHARED, `size` bytes: ts_engine_snapshot_size at the fork */
    uint64_t size;
#ifdef __linux__
    cpu_set_t cpus;        /* where the child runs */
#endif
    int have_cpus;
    int nice;              /* added to the child's nice value (not with idle) */
    int idle;              /* SCHED_IDLE instead of SCHED_BATCH + nice: the child shares
                            * the worker's core, so it may only use that core's idle time */
    const char *hold_path; /* test hook: while this file exists, wait before exiting */
    int fail;              /* test hook: exit TS_SNAPFORK_EXIT_TEST instead of reporting */
    ts_snapfork_report *report;
} ts_snapfork_args;

/* 1 where the fork mode works (Linux), else 0: the caller falls back to the thread. */
int ts_snapfork_supported(void);
/* Fork the child: its pid in the parent, or -errno if fork failed (nothing started).
 * The child runs ts_snapfork_args' job and never returns. */
pid_t ts_snapfork_start(const ts_snapfork_args *a);

#endif /* TRADSYS_SNAPSHOT_FORK_H */
