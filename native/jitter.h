/*
 * jitter.h — how much of a CPU the platform takes from a thread that never sleeps.
 *
 * An engine thread pinned to a core expects the core to itself. What it gets is what
 * is left after the timer tick, interrupts, kernel threads, other tasks and, in a VM,
 * the hypervisor: each of those stops the thread for a while, and at a high order rate
 * every such gap becomes a queue that every order behind it waits out. The probe spins
 * reading the clock (a vDSO call, ~20 ns apart) and counts every step between two reads
 * that took longer than a floor: the CPU was away for that long. It is the
 * measurement behind `tradsys tune jitter` and the benches' platform line, in the
 * spirit of sysjitter / hiccups; plain C so that the loop itself adds no pauses.
 */
#ifndef TRADSYS_JITTER_H
#define TRADSYS_JITTER_H

#include <stdint.h>

/* Gap classes: a gap over TS_JITTER_FLOOR_NS is counted in every class it exceeds. */
#define TS_JITTER_FLOOR_NS 2000
#define TS_JITTER_CLASSES 6

typedef struct ts_jitter {
    int64_t run_ns;   /* how long the probe ran */
    int64_t reads;    /* clock reads made */
    int64_t gaps;     /* steps over TS_JITTER_FLOOR_NS */
    int64_t lost_ns;  /* their summed length: the time the CPU was taken away */
    int64_t max_ns;   /* the longest */
    int64_t over[TS_JITTER_CLASSES]; /* gaps over ts_jitter_class_ns(i) */
} ts_jitter;

/* The class limits: 5, 10, 20, 50, 100 and 1000 µs (in ns); -1 for a bad index. */
int64_t ts_jitter_class_ns(int32_t i);

/* Count one step of `step_ns` between two clock reads into `j`: the probe's accounting,
 * on its own so that a test can feed it steps it chose. */
void ts_jitter_account(ts_jitter *j, int64_t step_ns);

/* Spin on the calling thread for `run_ns` (pin it first to probe one CPU), filling `j`
 * (zeroed first). Holds the CPU the whole time: callers keep it short. */
void ts_jitter_probe(int64_t run_ns, ts_jitter *j);

#endif
