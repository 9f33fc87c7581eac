/*
 * jitter.c — the platform-jitter probe (jitter.h).
 */
#define _GNU_SOURCE
#include "jitter.h"
#include "mono_clock.h"

#include <string.h>
#include <time.h>

static const int64_t CLASS_NS[TS_JITTER_CLASSES] = {5000,  10000,  20000,
                                                    50000, 100000, 1000000};

int64_t ts_jitter_class_ns(int32_t i) {
    return i >= 0 && i < TS_JITTER_CLASSES ? CLASS_NS[i] : -1;
}

void ts_jitter_account(ts_jitter *j, int64_t step_ns) {
    j->reads++;
    if (step_ns <= TS_JITTER_FLOOR_NS) return;
    j->gaps++;
    j->lost_ns += step_ns;
    if (step_ns > j->max_ns) j->max_ns = step_ns;
    for (int i = 0; i < TS_JITTER_CLASSES && step_ns > CLASS_NS[i]; i++) j->over[i]++;
}

void ts_jitter_probe(int64_t run_ns, ts_jitter *j) {
    memset(j, 0, sizeof *j);
    const int64_t start = ts_mono_ns();
    int64_t prev = start;
    for (;;) {
        const int64_t now = ts_mono_ns();
        ts_jitter_account(j, now - prev);
        prev = now;
        if (now - start >= run_ns) break;
    }
    j->run_ns = prev - start;
}
