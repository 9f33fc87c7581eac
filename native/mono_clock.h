/*
 * mono_clock.h — CLOCK_MONOTONIC in nanoseconds: the one clock for deadlines, waits and
 * stage timings (never the wall clock, which steps).
 */
#ifndef TRADSYS_MONO_CLOCK_H
#define TRADSYS_MONO_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t ts_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif
