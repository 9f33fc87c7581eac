/*
 * test_snapshot_sched.c — the scheduling policy of a shard's background snapshot work
 * (snapshot_writer.h, snapshot_fork.h), tested without Python (see native/Makefile).
 *
 * A writer that shares its worker's core (ts_snapwriter_share_core) must run its thread,
 * and make its fork-mode children run, at SCHED_IDLE, so the worker preempts them the
 * moment it has work; one that does not keeps the thread's policy and sends its children
 * to SCHED_BATCH at nice +10, as before. The child is held (the writer's hold hook) while
 * its policy is read, and released by removing the hold file: no sleeps, only waits on a
 * condition with a deadline. The last line is "N passed, M failed"; exit status 1 on
 * failure.
 */
#define _GNU_SOURCE
#include "../book.h"
#include "../journal.h"
#include "../snapshot_writer.h"

#include <dirent.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "engine1.h"
#include "tmpdir.h"

#define DEADLINE_NS 10000000000LL /* 10 s for anything the test waits for */

static char g_dir[256];
static char g_hold[300];

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void make_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/tss-sched-XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(g_hold, sizeof g_hold, "%s/hold", g_dir);
}

/* Remove the test directory and whatever the writer left in it (no subdirectories). */
static void remove_dir(void) { tmpdir_remove(g_dir); }

/* The id of this process's thread called `name`, waiting for it to take that name (the
 * writer thread names itself when it starts); 0 if none did by the deadline. */
static pid_t thread_named(const char *name) {
    const int64_t give_up = now_ns() + DEADLINE_NS;
    do {
        DIR *d = opendir("/proc/self/task");
        if (!d) return 0;
        struct dirent *ent;
        pid_t found = 0;
        while (!found && (ent = readdir(d)) != NULL) {
            if (ent->d_name[0] == '.') continue;
            char path[300], comm[32] = {0};
            snprintf(path, sizeof path, "/proc/self/task/%s/comm", ent->d_name);
            FILE *f = fopen(path, "r");
            if (!f) continue;
            if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
            fclose(f);
            if (strcmp(comm, name) == 0) found = (pid_t)atoi(ent->d_name);
        }
        closedir(d);
        if (found) return found;
    } while (now_ns() < give_up);
    return 0;
}

/* Wait until `pid` runs at `policy` with `nice` (a child steps aside itself, after the
 * fork: its policy first, then its nice value), or the deadline passes; what it has then. */
static void wait_for_sched(pid_t pid, int policy, int nice, int *got_policy, int *got_nice) {
    const int64_t give_up = now_ns() + DEADLINE_NS;
    do {
        *got_policy = sched_getscheduler(pid);
        *got_nice = getpriority(PRIO_PROCESS, (id_t)pid);
    } while ((*got_policy != policy || *got_nice != nice) && now_ns() < give_up);
}

static void test_writer_thread_goes_idle_when_it_shares_the_core(void) {
    ts_journal_error err;
    ts_snapwriter *sw = ts_snapwriter_new(g_dir, 7, &err);
    CHECK(sw);
    pid_t tid = thread_named("ts-snapwriter");
    CHECK(tid > 0);
    CHECK_EQ(sched_getscheduler(tid), SCHED_OTHER); /* as it was before: not shared */
    CHECK_EQ(ts_snapwriter_share_core(sw), 0);
    CHECK_EQ(sched_getscheduler(tid), SCHED_IDLE);
    CHECK_EQ(sched_getscheduler(0), SCHED_OTHER); /* the caller (the worker) stays */
    ts_snapwriter_free(sw);
}

static int own_nice_plus(int added) {
    const int nice = getpriority(PRIO_PROCESS, 0) + added;
    return nice > 19 ? 19 : nice;
}

/* Fork a held child, wait until it runs at the policy and nice value expected and return
 * what it has, then release it and check that the snapshot still comes out whole. */
static void fork_child_sched(int shared, int want_policy, int want_nice, int *policy,
                             int *nice) {
    *policy = *nice = -100;
    FILE *f = fopen(g_hold, "w");
    CHECK(f);
    fclose(f);
    ts_engine *e = engine1();
    ts_journal_error err;
    ts_snapwriter *sw = ts_snapwriter_new(g_dir, 7, &err);
    CHECK(sw);
    if (shared) CHECK_EQ(ts_snapwriter_share_core(sw), 0);
    ts_snapwriter_child_hooks(sw, g_hold, 0);
    uint64_t gate = 1;
    ts_snapwriter_job job = {.seq = 1, .pushed_seq = &gate, .durable_seq = &gate};
    int64_t fork_ns = 0;
    CHECK_EQ(ts_snapwriter_fork(sw, e, &job, &fork_ns, &err), 0);
    pid_t child = ts_snapwriter_child(sw);
    CHECK(child > 0);
    wait_for_sched(child, want_policy, want_nice, policy, nice);
    unlink(g_hold);
    ts_snapwriter_result res;
    CHECK_EQ(ts_snapwriter_wait(sw, &res), 1);
    CHECK_EQ(res.status, TS_JOURNAL_OK);
    CHECK_EQ(res.seq, 1);
    ts_snapwriter_free(sw);
    ts_engine_free(e);
}

static void test_fork_child_goes_idle_when_it_shares_the_core(void) {
    int policy, nice;
    /* SCHED_IDLE ignores the nice value: the child leaves it as it was */
    fork_child_sched(1, SCHED_IDLE, own_nice_plus(0), &policy, &nice);
    CHECK_EQ(policy, SCHED_IDLE);
    CHECK_EQ(nice, own_nice_plus(0));
}

static void test_fork_child_stays_batch_and_nice_on_housekeeping_cores(void) {
    int policy, nice;
    fork_child_sched(0, SCHED_BATCH, own_nice_plus(10), &policy, &nice);
    CHECK_EQ(policy, SCHED_BATCH);
    CHECK_EQ(nice, own_nice_plus(10));
}

typedef struct {
    const char *name;
    void (*fn)(void);
} test_case;

int main(void) {
    const test_case tests[] = {
        {"writer_thread_goes_idle_when_it_shares_the_core",
         test_writer_thread_goes_idle_when_it_shares_the_core},
        {"fork_child_goes_idle_when_it_shares_the_core",
         test_fork_child_goes_idle_when_it_shares_the_core},
        {"fork_child_stays_batch_and_nice_on_housekeeping_cores",
         test_fork_child_stays_batch_and_nice_on_housekeeping_cores},
    };
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        make_dir();
        g_test_failed = 0;
        tests[i].fn();
        remove_dir();
        if (g_test_failed) {
            fprintf(stderr, "FAIL %s\n", tests[i].name);
            failed++;
        } else {
            printf("ok   %s\n", tests[i].name);
            passed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
