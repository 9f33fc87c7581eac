/*
 * stall_watch.h — when a whole CPU, or the whole machine, stopped running its threads.
 *
 * The jitter probe (jitter.h) spins, so it owns its CPU and cannot run beside the engine.
 * This watch sleeps instead: it asks to be woken every `period_ns` (an absolute deadline
 * each time, so one late wake-up does not shift the rest) and records every wake-up that
 * came more than `floor_ns` after its deadline. Run at a real-time priority it is woken
 * ahead of any ordinary task, so what is left is time the CPU itself was not running
 * threads: interrupts, kernel work that cannot be preempted, and, in a virtual machine,
 * the host not running the vCPU. A stall seen at the same moment on every CPU means the
 * whole machine stopped: in a VM, the host. A thousand wake-ups a second cost a CPU a
 * few milliseconds, so it can watch a running engine.
 */
#ifndef TRADSYS_STALL_WATCH_H
#define TRADSYS_STALL_WATCH_H

#include <stdint.h>

typedef struct ts_stall {
    int64_t due_ns;  /* CLOCK_MONOTONIC: the wake-up's deadline */
    int64_t late_ns; /* how long after it the thread ran */
} ts_stall;

typedef struct ts_stall_watch {
    int64_t run_ns;      /* how long the watch ran */
    int64_t wakeups;     /* wake-ups seen */
    int64_t stalls;      /* of them, later than the floor */
    int64_t late_ns;     /* the stalls' summed lateness */
    int64_t max_late_ns; /* the latest */
    int32_t kept;        /* stalls written to the caller's array (at most its capacity) */
    int32_t _pad0;
} ts_stall_watch;

/* Count one wake-up `late_ns` after its deadline `due_ns` into `w`, keeping it in `out`
 * (capacity `cap`) when it is a stall: the watch's accounting, on its own so that a test
 * can feed it wake-ups it chose. */
void ts_stall_account(ts_stall_watch *w, ts_stall *out, int32_t cap, int64_t floor_ns,
                      int64_t due_ns, int64_t late_ns);

/* Watch the calling thread's CPU (pin it first) for `run_ns`, waking every `period_ns`;
 * `w` is zeroed first. Sleeps between wake-ups: it holds no CPU. */
void ts_stall_watch_run(int64_t run_ns, int64_t period_ns, int64_t floor_ns, ts_stall *out,
                        int32_t cap, ts_stall_watch *w);

#endif
