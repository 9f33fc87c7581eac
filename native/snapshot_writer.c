/*
 * snapshot_writer.c — the background snapshot writer (snapshot_writer.h).
 *
 * Hand-off: a mutex and a condition variable guard the one job slot; the thread sleeps on
 * the condition while idle. `done` is also an atomic flag, so the worker's loop can ask
 * "finished?" every turn without taking the mutex. The gates (pushed / durable seq) are
 * written by the worker thread with plain atomic stores; they are polled here with a
 * short sleep, which only this background thread pays.
 *
 * Fork mode: the job's child (snapshot_fork.c) serializes into the job's shared buffer;
 * the thread blocks in waitid(WNOWAIT) until it exits, reaps it under mu, then writes the
 * .tmp from the buffer as for a background job. Reaping under the mutex is what
 * lets ts_snapwriter_free kill the child by pid without racing a reuse of that pid: until
 * the thread reaps it, the pid is still the zombie's.
 */
#define _GNU_SOURCE
#include "snapshot_writer.h"
#include "mono_clock.h"

#include "huge_alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "journal_internal.h"
#include "snapshot_file.h"
#include "snapshot_fork.h"

#define GATE_POLL_NS 100000L /* 100 µs between looks at the gates */

struct ts_snapwriter {
    char dir[TS_JOURNAL_PATH_MAX];
    uint32_t shard_id;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int has_job;       /* a job is in the slot (taken or not); guarded by mu */
    int done;          /* its result waits to be collected; atomic (written under mu) */
    int cancel;        /* atomic */
    int hold;          /* atomic; test hook */
    int phase;         /* atomic; ts_snapwriter_phase */
    ts_snapwriter_job job;
    ts_snapwriter_result result;
    /* fork mode */
    int32_t child;               /* the child not yet reaped (0: none); atomic, set under mu */
    int32_t *published_child;    /* a status field mirroring child (NULL: none); set under mu */
    ts_snapfork_report *report;  /* MAP_SHARED page the child writes (NULL: not mapped yet) */
#ifdef __linux__
    cpu_set_t cpus;              /* the creator's mask: where children run */
#endif
    int have_cpus;
    int idle;                    /* shares the worker's core: SCHED_IDLE (share_core) */
    ts_snapfork_args fork_args;  /* the next child's (4 KiB of path: kept off the stack) */
    char *hold_path;             /* test hooks (ts_snapwriter_child_hooks) */
    int fail_children;
};

static int gate_open(const ts_snapwriter *sw, const ts_snapwriter_job *job) {
    if (__atomic_load_n(&sw->hold, __ATOMIC_ACQUIRE)) return 0;
    if (__atomic_load_n(job->pushed_seq, __ATOMIC_ACQUIRE) < job->seq) return 0;
    return !job->durable_seq || __atomic_load_n(job->durable_seq, __ATOMIC_ACQUIRE) >= job->seq;
}

/* NONE durability: make the journal through `seq` durable ourselves (see the header).
 * fdatasync through a file descriptor of our own flushes the same file's pages the
 * worker wrote through its own. Segments are synced up to the one holding `seq`. */
static int sync_journal_through(ts_snapwriter *sw, uint64_t seq, ts_journal_error *err) {
    uint64_t *seqs = NULL;
    uint32_t n = 0;
    int rc = ts_jn_list_segments(sw->dir, sw->shard_id, &seqs, &n, err);
    if (rc) return rc;
    char path[TS_JOURNAL_PATH_MAX];
    for (uint32_t i = 0; i < n && rc == TS_JOURNAL_OK && seqs[i] <= seq; i++) {
        if (ts_jn_segment_path(path, sizeof path, sw->dir, sw->shard_id, seqs[i]) != 0) {
            rc = ts_jn_fail(err, TS_JOURNAL_ERR_ARGUMENT, 0, sw->dir, 0, "journal path too long");
            break;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) continue; /* pruned meanwhile: nothing to sync */
        if (fd < 0 || fdatasync(fd) != 0) {
            int e = errno;
            if (fd >= 0) close(fd);
            rc = ts_jn_fail(err, TS_JOURNAL_ERR_IO, e, path, 0,
                            "fdatasync of journal segment %s before a snapshot failed: %s", path,
                            strerror(e));
            break;
        }
        close(fd);
    }
    free(seqs);
    return rc;
}

/* Wait for the job's child and reap it; OK once it reported the engine's snapshot in the
 * job's shared buffer (job->payload). Otherwise the result says why: a walk that did not
 * fill the buffer (a failure like a failed serialization), or a child that died without
 * finishing (child_failed: killed, out of memory, the test hook — a retry may work). */
static int wait_child(ts_snapwriter *sw, const ts_snapwriter_job *job, ts_snapwriter_result *res) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int werr = 0;
    while (waitid(P_PID, (id_t)job->child, &si, WEXITED | WNOWAIT) != 0) {
        if (errno == EINTR) continue;
        werr = errno; /* ECHILD: SIGCHLD ignored, the kernel reaped it; the report tells */
        break;
    }
    int status = 0;
    pthread_mutex_lock(&sw->mu);
    if (!werr)
        while (waitpid(job->child, &status, 0) < 0 && errno == EINTR) {
        }
    __atomic_store_n(&sw->child, 0, __ATOMIC_RELEASE);
    if (sw->published_child) __atomic_store_n(sw->published_child, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&sw->mu);
    /* the child is gone: the blocks its fork split back to huge pages, here, off the
     * worker's thread (ts_huge_recollapse says why and what it costs) */
    struct timespec c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &c0);
    ts_huge_recollapse();
    clock_gettime(CLOCK_MONOTONIC, &c1);
    res->collapse_ns = (c1.tv_sec - c0.tv_sec) * 1000000000LL + (c1.tv_nsec - c0.tv_nsec);
    const ts_snapfork_report *r = sw->report;
    res->child_serialize_ns = r->serialize_ns;
    if (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) return TS_JOURNAL_OK;
    char tmp[TS_JOURNAL_PATH_MAX + 8];
    ts_snapfile_path(tmp, sizeof tmp, sw->dir, sw->shard_id, job->seq, 1);
    if (r->stage != TS_SNAPFORK_STAGE_NONE)
        return ts_jn_fail(&res->err, TS_JOURNAL_ERR_ENGINE, 0, tmp, 0,
                          "snapshot child %d: the engine's snapshot for %s did not fill its "
                          "%llu-byte buffer", (int)job->child, tmp,
                          (unsigned long long)job->payload_bytes);
    res->child_failed = 1;
    char how[64];
    if (werr)
        snprintf(how, sizeof how, "its exit status is unknown: %s", strerror(werr));
    else if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(status));
    return ts_jn_fail(&res->err, TS_JOURNAL_ERR_STATE, 0, tmp, 0,
                      "snapshot child %d for %s ended without finishing it (%s); nothing was "
                      "written and the next snapshot is tried as usual",
                      (int)job->child, tmp, how);
}

/* A payload is malloc'd (background) or the fork child's shared mapping. */
static void free_payload(ts_snapwriter_job *job) {
    if (job->child > 0 && job->payload)
        munmap(job->payload, job->payload_bytes ? job->payload_bytes : 1);
    else
        free(job->payload);
    job->payload = NULL;
}

static void run_job(ts_snapwriter *sw, ts_snapwriter_job *job, ts_snapwriter_result *res) {
    const int64_t t0 = ts_mono_ns();
    memset(res, 0, sizeof *res);
    res->seq = job->seq;
    res->tag = job->tag;
    __atomic_store_n(&sw->phase, TS_SNAPWRITER_WRITING, __ATOMIC_RELEASE);
    int rc = job->child > 0 ? wait_child(sw, job, res) : TS_JOURNAL_OK;
    if (rc == TS_JOURNAL_OK)
        rc = ts_snapfile_write_tmp(sw->dir, sw->shard_id, job->seq, job->md_count, job->payload,
                                   job->payload_bytes, &res->err);
    free_payload(job);
    if (rc == TS_JOURNAL_OK) {
        __atomic_store_n(&sw->phase, TS_SNAPWRITER_WAITING, __ATOMIC_RELEASE);
        const struct timespec pause = {0, GATE_POLL_NS};
        while (!gate_open(sw, job) && !__atomic_load_n(&sw->cancel, __ATOMIC_ACQUIRE))
            nanosleep(&pause, NULL);
        if (__atomic_load_n(&sw->cancel, __ATOMIC_ACQUIRE)) {
            ts_snapfile_discard(sw->dir, sw->shard_id, job->seq);
            char tmp[TS_JOURNAL_PATH_MAX + 8];
            ts_snapfile_path(tmp, sizeof tmp, sw->dir, sw->shard_id, job->seq, 1);
            rc = ts_jn_fail(&res->err, TS_JOURNAL_ERR_STATE, 0, tmp, 0,
                            "snapshot %s cancelled: the worker stopped before the journal "
                            "through seq %llu was durable",
                            tmp, (unsigned long long)job->seq);
        } else {
            __atomic_store_n(&sw->phase, TS_SNAPWRITER_PUBLISHING, __ATOMIC_RELEASE);
            if (!job->durable_seq) rc = sync_journal_through(sw, job->seq, &res->err);
            if (rc == TS_JOURNAL_OK)
                rc = ts_snapfile_publish(sw->dir, sw->shard_id, job->seq, &res->err);
            else
                ts_snapfile_discard(sw->dir, sw->shard_id, job->seq);
        }
    }
    res->status = rc;
    res->write_ns = ts_mono_ns() - t0;
}

static void *writer_main(void *arg) {
    ts_snapwriter *sw = arg;
    pthread_setname_np(pthread_self(), "ts-snapwriter"); /* for ps, perf and the tests */
    pthread_mutex_lock(&sw->mu);
    for (;;) {
        while (!(sw->has_job && !sw->done) && !__atomic_load_n(&sw->cancel, __ATOMIC_ACQUIRE))
            pthread_cond_wait(&sw->cv, &sw->mu);
        if (__atomic_load_n(&sw->cancel, __ATOMIC_ACQUIRE)) break;
        ts_snapwriter_job job = sw->job;
        pthread_mutex_unlock(&sw->mu);
        ts_snapwriter_result res;
        run_job(sw, &job, &res);
        pthread_mutex_lock(&sw->mu);
        sw->job.payload = NULL; /* freed by run_job */
        sw->result = res;
        __atomic_store_n(&sw->phase, TS_SNAPWRITER_IDLE, __ATOMIC_RELEASE);
        __atomic_store_n(&sw->done, 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&sw->cv);
    }
    pthread_mutex_unlock(&sw->mu);
    return NULL;
}

ts_snapwriter *ts_snapwriter_new(const char *dir, uint32_t shard_id, ts_journal_error *err) {
    ts_jn_clear_error(err);
    if (!dir || shard_id > 999 || strlen(dir) + 48 >= TS_JOURNAL_PATH_MAX) {
        ts_jn_fail(err, TS_JOURNAL_ERR_ARGUMENT, 0, dir ? dir : "", 0,
                   "bad snapshot writer arguments (shard 0..999, a directory path that fits)");
        return NULL;
    }
    ts_snapwriter *sw = calloc(1, sizeof *sw);
    if (!sw) {
        ts_jn_fail(err, TS_JOURNAL_ERR_NO_MEMORY, ENOMEM, dir, 0, "out of memory");
        return NULL;
    }
    snprintf(sw->dir, sizeof sw->dir, "%s", dir);
    sw->shard_id = shard_id;
#ifdef __linux__
    /* the caller's mask now (tradsys.cores.worker starts the writer with the housekeeping
     * cores as its mask): the thread inherits it, and the fork mode's children get it */
    sw->have_cpus = sched_getaffinity(0, sizeof sw->cpus, &sw->cpus) == 0;
#endif
    pthread_mutex_init(&sw->mu, NULL);
    pthread_cond_init(&sw->cv, NULL);
    int e = pthread_create(&sw->thread, NULL, writer_main, sw);
    if (e) {
        pthread_cond_destroy(&sw->cv);
        pthread_mutex_destroy(&sw->mu);
        free(sw);
        ts_jn_fail(err, TS_JOURNAL_ERR_IO, e, dir, 0,
                   "cannot start the snapshot writer thread: %s", strerror(e));
        return NULL;
    }
    return sw;
}

void ts_snapwriter_free(ts_snapwriter *sw) {
    if (!sw) return;
    pthread_mutex_lock(&sw->mu);
    __atomic_store_n(&sw->cancel, 1, __ATOMIC_RELEASE);
    /* a child still writing is killed: the thread's waitid returns and it reaps it */
    if (sw->child > 0) kill(sw->child, SIGKILL);
    pthread_cond_broadcast(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
    pthread_join(sw->thread, NULL);
    if (sw->child > 0) /* a job the thread never took: reap its child here */
        while (waitpid(sw->child, NULL, 0) < 0 && errno == EINTR) {
        }
    free_payload(&sw->job); /* a job the thread never took */
    if (sw->report) munmap(sw->report, sizeof *sw->report);
    free(sw->hold_path);
    pthread_cond_destroy(&sw->cv);
    pthread_mutex_destroy(&sw->mu);
    free(sw);
}

int ts_snapwriter_submit(ts_snapwriter *sw, const ts_snapwriter_job *job) {
    pthread_mutex_lock(&sw->mu);
    if (sw->has_job) {
        pthread_mutex_unlock(&sw->mu);
        return -1;
    }
    sw->job = *job;
    sw->has_job = 1;
    __atomic_store_n(&sw->done, 0, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
    return 0;
}

int ts_snapwriter_idle(ts_snapwriter *sw) {
    pthread_mutex_lock(&sw->mu);
    int idle = !sw->has_job;
    pthread_mutex_unlock(&sw->mu);
    return idle;
}

/* Under mu, with done set: hand the result over and free the slot. */
static void collect(ts_snapwriter *sw, ts_snapwriter_result *out) {
    *out = sw->result;
    sw->has_job = 0;
    __atomic_store_n(&sw->done, 0, __ATOMIC_RELEASE);
}

int ts_snapwriter_poll(ts_snapwriter *sw, ts_snapwriter_result *out) {
    if (!__atomic_load_n(&sw->done, __ATOMIC_ACQUIRE)) return 0;
    pthread_mutex_lock(&sw->mu);
    int got = sw->done;
    if (got) collect(sw, out);
    pthread_mutex_unlock(&sw->mu);
    return got;
}

int ts_snapwriter_wait(ts_snapwriter *sw, ts_snapwriter_result *out) {
    pthread_mutex_lock(&sw->mu);
    while (sw->has_job && !sw->done) pthread_cond_wait(&sw->cv, &sw->mu);
    int got = sw->has_job;
    if (got) collect(sw, out);
    pthread_mutex_unlock(&sw->mu);
    return got;
}

int ts_snapwriter_fork(ts_snapwriter *sw, const ts_engine *e, const ts_snapwriter_job *job,
                       int64_t *fork_ns, ts_journal_error *err) {
    ts_jn_clear_error(err);
    *fork_ns = 0;
    if (!ts_snapwriter_idle(sw)) return -1;
    if (!sw->report) { /* mapped once, at the first fork: the child writes, we read */
        void *page = mmap(NULL, sizeof *sw->report, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED)
            return ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, sw->dir, 0,
                              "cannot map the snapshot child's report page: %s",
                              strerror(errno));
        sw->report = page;
    }
    ts_snapfork_args *a = &sw->fork_args;
    memset(a, 0, sizeof *a);
    a->e = e;
    a->size = ts_engine_snapshot_size(e);
    /* shared with the child, which fills it; its pages are faulted in there, not here */
    a->buf = mmap(NULL, a->size ? a->size : 1, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (a->buf == MAP_FAILED)
        return ts_jn_fail(err, TS_JOURNAL_ERR_NO_MEMORY, errno, sw->dir, 0,
                          "cannot map %llu bytes for a snapshot child: %s",
                          (unsigned long long)a->size, strerror(errno));
#ifdef __linux__
    a->cpus = sw->cpus;
#endif
    a->have_cpus = sw->have_cpus;
    a->nice = 10;
    a->idle = sw->idle;
    a->hold_path = sw->hold_path;
    if (sw->fail_children > 0) {
        a->fail = 1;
        sw->fail_children--;
    }
    a->report = sw->report;
    const int64_t t0 = ts_mono_ns();
    pid_t pid = ts_snapfork_start(a);
    *fork_ns = ts_mono_ns() - t0;
    if (pid < 0) {
        munmap(a->buf, a->size ? a->size : 1);
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, (int)-pid, sw->dir, 0,
                          "cannot fork a child to write shard %u's snapshot at seq %llu: %s",
                          sw->shard_id, (unsigned long long)job->seq, strerror((int)-pid));
    }
    pthread_mutex_lock(&sw->mu);
    sw->job = *job;
    sw->job.payload = a->buf;
    sw->job.payload_bytes = a->size;
    sw->job.child = pid;
    __atomic_store_n(&sw->child, pid, __ATOMIC_RELEASE);
    if (sw->published_child) __atomic_store_n(sw->published_child, pid, __ATOMIC_RELEASE);
    sw->has_job = 1;
    __atomic_store_n(&sw->done, 0, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
    return 0;
}

int ts_snapwriter_share_core(ts_snapwriter *sw) {
    sw->idle = 1;
#ifdef __linux__
    /* on the thread itself, from here: it waits on its condition until the first job, so
     * no work of it runs before this returns */
    struct sched_param sp = {0};
    return pthread_setschedparam(sw->thread, SCHED_IDLE, &sp);
#else
    return 0;
#endif
}

void ts_snapwriter_publish_child(ts_snapwriter *sw, int32_t *field) {
    pthread_mutex_lock(&sw->mu);
    sw->published_child = field;
    pthread_mutex_unlock(&sw->mu);
}

int32_t ts_snapwriter_child(ts_snapwriter *sw) {
    return __atomic_load_n(&sw->child, __ATOMIC_ACQUIRE);
}

void ts_snapwriter_child_hooks(ts_snapwriter *sw, const char *hold_path, int fail) {
    free(sw->hold_path);
    sw->hold_path = hold_path && *hold_path ? strdup(hold_path) : NULL;
    sw->fail_children = fail > 0 ? fail : 0;
}

void ts_snapwriter_hold(ts_snapwriter *sw, int hold) {
    __atomic_store_n(&sw->hold, hold ? 1 : 0, __ATOMIC_RELEASE);
}

int ts_snapwriter_phase(ts_snapwriter *sw) {
    return __atomic_load_n(&sw->phase, __ATOMIC_ACQUIRE);
}
