/*
 * stall_watch.c — the sleeping stall watch (stall_watch.h).
 */
#define _GNU_SOURCE
#include "stall_watch.h"
#include "mono_clock.h"

#include <errno.h>
#include <string.h>
#include <time.h>

void ts_stall_account(ts_stall_watch *w, ts_stall *out, int32_t cap, int64_t floor_ns,
                      int64_t due_ns, int64_t late_ns) {
    w->wakeups++;
    if (late_ns <= floor_ns) return;
    w->stalls++;
    w->late_ns += late_ns;
    if (late_ns > w->max_late_ns) w->max_late_ns = late_ns;
    if (w->kept < cap) out[w->kept++] = (ts_stall){due_ns, late_ns};
}

void ts_stall_watch_run(int64_t run_ns, int64_t period_ns, int64_t floor_ns, ts_stall *out,
                        int32_t cap, ts_stall_watch *w) {
    memset(w, 0, sizeof *w);
    if (period_ns <= 0) period_ns = 1;
    const int64_t start = ts_mono_ns();
    int64_t due = start + period_ns;
    while (due - start <= run_ns) {
        struct timespec t = {.tv_sec = due / 1000000000LL, .tv_nsec = due % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {
        }
        const int64_t woke = ts_mono_ns();
        ts_stall_account(w, out, cap, floor_ns, due, woke - due);
        /* the next deadline after now: a long stall is one stall, not a burst of them */
        due += period_ns;
        if (due <= woke) due += ((woke - due) / period_ns + 1) * period_ns;
    }
    w->run_ns = ts_mono_ns() - start;
}
