/*
 * snapshot_fork.c — the fork-mode snapshot child (snapshot_fork.h).
 *
 * Everything after the fork is a system call or pure computation over the engine's
 * copy-on-write image: see the header for why (a multi-threaded parent). The child only
 * serializes (into a MAP_SHARED buffer its parent mapped) and exits: while it lives, every
 * page the worker writes is copied first (~2.2 µs a 4 KiB page here: make -C native
 * bench-cow), so it lives no longer than the walk; the writer thread then writes the file
 * from the buffer, as it does for a background snapshot.
 */
#define _GNU_SOURCE
#include "snapshot_fork.h"
#include "mono_clock.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/prctl.h>
#include <sys/resource.h>
#endif

#define HOLD_POLL_NS 1000000L /* the test hook's look at its file, every 1 ms */

#if defined(__linux__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define TS_HAVE_UNDERSCORE_FORK 1
#endif

int ts_snapfork_supported(void) {
#ifdef __linux__
    return 1;
#else
    return 0;
#endif
}

static __attribute__((noreturn)) void fail(ts_snapfork_report *r, int stage, int e) {
    r->stage = stage;
    r->sys_errno = e;
    _exit(TS_SNAPFORK_EXIT_IO);
}

/* Leave the worker's core, class and priority behind: this is background work. On the
 * worker's own core even SCHED_BATCH at nice +10 takes slices from a runnable worker;
 * SCHED_IDLE runs only when the worker sleeps or parks. */
static void step_aside(const ts_snapfork_args *a) {
#ifdef __linux__
    if (a->have_cpus) (void)sched_setaffinity(0, sizeof a->cpus, &a->cpus);
    struct sched_param sp = {0};
    if (a->idle) {
        (void)sched_setscheduler(0, SCHED_IDLE, &sp);
        return;
    }
    /* the nice first: the class is the last change, so one who sees it sees both */
    (void)setpriority(PRIO_PROCESS, 0, getpriority(PRIO_PROCESS, 0) + a->nice);
    (void)sched_setscheduler(0, SCHED_BATCH, &sp);
#else
    (void)a;
#endif
}

static __attribute__((noreturn)) void child_main(const ts_snapfork_args *a, pid_t parent) {
    ts_snapfork_report *r = a->report;
#ifdef __linux__
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    if (getppid() != parent) _exit(TS_SNAPFORK_EXIT_ORPHAN); /* died before the prctl */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGINT, &ign, NULL);
    sigaction(SIGTERM, &ign, NULL);
    sigaction(SIGHUP, &ign, NULL);
    r->started = 1;
    step_aside(a);

    const int64_t t0 = ts_mono_ns();
    if (ts_engine_snapshot(a->e, a->buf, a->size) != a->size)
        fail(r, TS_SNAPFORK_STAGE_MAP, EINVAL); /* cannot be: sized at the fork */
    r->serialize_ns = ts_mono_ns() - t0;
    r->payload_bytes = a->size;
    if (a->hold_path) {
        const struct timespec pause = {0, HOLD_POLL_NS};
        while (access(a->hold_path, F_OK) == 0) nanosleep(&pause, NULL);
    }
    if (a->fail) _exit(TS_SNAPFORK_EXIT_TEST);
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    _exit(0); /* no atexit handlers, no stdio flush, no LeakSanitizer: nothing of the parent's */
}

pid_t ts_snapfork_start(const ts_snapfork_args *a) {
    memset(a->report, 0, sizeof *a->report);
    const pid_t parent = getpid();
#ifdef TS_HAVE_UNDERSCORE_FORK
    pid_t pid = _Fork();
#else
    pid_t pid = fork();
#endif
    if (pid < 0) return -errno;
    if (pid == 0) child_main(a, parent);
    return pid;
}
