/*
 * test_ring.c — the C ring's own tests, runnable without Python (see native/Makefile).
 *
 *   test_ring [--records=N] [--seed=S] [NAME...]
 *
 * --records sets how many records each multi-process stress run moves (default 10M;
 * also TS_RING_STRESS_RECORDS); --seed seeds every PRNG (also TS_RING_SEED) so a
 * failure can be replayed; NAME arguments run only the tests whose name contains one.
 *
 * No framework: CHECK/CHECK_EQ print file:line and the failed expression and end the
 * current test; the last line is always "N passed, M failed", exit status 1 on failure.
 * Single-process tests put each ring in a heap block of exactly ts_ring_bytes_needed
 * bytes, so under AddressSanitizer any copy past the last slot is caught.
 */
#define _GNU_SOURCE
#include "../ring.h"
#include "../wire.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- checks ------------------------------------------------------------------------ */

#include "check.h"

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t g_seed = 0x5eed2024u;
static uint64_t g_stress_records = 10000000u;

/* Heap blocks a test takes, freed by the runner after the test even when it failed. */
#define MAX_BLOCKS 256
static void *g_blocks[MAX_BLOCKS];
static int g_nblocks;

static void *block(size_t size) {
    void *p = NULL;
    if (g_nblocks == MAX_BLOCKS || posix_memalign(&p, 128, size) != 0) {
        fprintf(stderr, "test harness: out of blocks or memory\n");
        exit(2);
    }
    memset(p, 0, size);
    g_blocks[g_nblocks++] = p;
    return p;
}

static void free_blocks(void) {
    while (g_nblocks) free(g_blocks[--g_nblocks]);
}

/* An initialised ring in a block of exactly the bytes it needs. */
static ts_ring *new_ring(uint32_t slot_size, uint64_t capacity) {
    size_t size = ts_ring_bytes_needed(slot_size, capacity);
    void *mem = block(size);
    if (ts_ring_init(mem, size, slot_size, capacity, TS_LAYOUT_VERSION, 1, 2) != TS_RING_OK) {
        fprintf(stderr, "test harness: ts_ring_init(%u, %llu) failed\n", slot_size,
                (unsigned long long)capacity);
        exit(2);
    }
    return mem;
}

static uint64_t mix64(uint64_t z) { /* splitmix64 finaliser */
    z += 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

typedef struct { uint64_t s; } prng;
static uint64_t prng_next(prng *p) { return mix64(p->s++); }
static uint64_t prng_range(prng *p, uint64_t lo, uint64_t hi) { /* inclusive */
    return lo + prng_next(p) % (hi - lo + 1);
}

/* Fill a slot of `slot_size` bytes with a pattern determined by seq; slot_size % 8 == 0. */
static void fill_slot(unsigned char *slot, uint32_t slot_size, uint64_t seq) {
    for (uint32_t i = 0; i < slot_size; i += 8) {
        uint64_t w = i == 0 ? seq : mix64(seq * 4099 + i);
        memcpy(slot + i, &w, 8);
    }
}

static int slot_is(const unsigned char *slot, uint32_t slot_size, uint64_t seq) {
    for (uint32_t i = 0; i < slot_size; i += 8) {
        uint64_t w, want = i == 0 ? seq : mix64(seq * 4099 + i);
        memcpy(&w, slot + i, 8);
        if (w != want) return 0;
    }
    return 1;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const ts_wait_strategy W_BUSY = {TS_WAIT_BUSY_SPIN, 64, 0, 0};
static const ts_wait_strategy W_YIELD = {TS_WAIT_SPIN_YIELD, 64, 0, 0};
/* Few spins and yields, so parking happens often and its path is really exercised. */
static const ts_wait_strategy W_PARK = {TS_WAIT_SPIN_PARK, 64, 4, 0};

static const char *strategy_name(const ts_wait_strategy *w) {
    if (w->kind == TS_WAIT_BUSY_SPIN) return "BUSY_SPIN";
    return w->kind == TS_WAIT_SPIN_YIELD ? "SPIN_YIELD" : "SPIN_PARK";
}

/* ---- multi-process plumbing --------------------------------------------------------- */

/* Control block at the start of each shared mapping; the ring follows at CTL_SIZE. */
typedef struct {
    _Atomic uint32_t about_to_park; /* set by the side that is about to block */
} shared_ctl;

#define CTL_SIZE 4096

static volatile pid_t g_child; /* killed by the watchdog */
static const char *volatile g_current = "";
static volatile int g_passed, g_failed; /* for the watchdog's closing line */

static void write_str(int fd, const char *s) {
    ssize_t ignored = write(fd, s, strlen(s));
    (void)ignored;
}

static void write_int(int fd, int v) { /* async-signal-safe; v >= 0 */
    char buf[16], *p = buf + sizeof buf;
    *--p = 0;
    do *--p = (char)('0' + v % 10);
    while ((v /= 10) && p > buf);
    write_str(fd, p);
}

/* A hang (say, a lost wake-up with no time limit) becomes a named failure. */
static void on_watchdog(int sig) {
    (void)sig;
    if (g_child > 0) kill(g_child, SIGKILL);
    write_str(2, "watchdog: test hung, killed it: ");
    write_str(2, g_current);
    write_str(2, "\n");
    write_str(1, "FAIL ");
    write_str(1, g_current);
    write_str(1, " (watchdog)\n");
    write_int(1, g_passed);
    write_str(1, " passed, ");
    write_int(1, g_failed + 1);
    write_str(1, " failed\n");
    _exit(1);
}

static void *map_shared(size_t ring_bytes) {
    void *p = mmap(NULL, CTL_SIZE + ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return p;
}

/* Reap the child; returns its exit status, or -1 if it did not exit normally. */
static int reap(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    g_child = 0;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    fprintf(stderr, "child %d died of signal %d\n", (int)pid,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return -1;
}

static void kill_and_reap(pid_t pid) {
    kill(pid, SIGKILL);
    reap(pid);
}

/* State letter of /proc/<pid>/stat ('R', 'S', ...), or 0 if unreadable. */
static char proc_state(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *close = strrchr(buf, ')'); /* the command name may itself hold spaces or ')' */
    return close && close[1] == ' ' ? close[2] : 0;
}

/* Bounded spin until `flag` is set; 1 when it is, 0 after `limit_ns`. */
static int spin_on_flag(_Atomic uint32_t *flag, int64_t limit_ns) {
    int64_t end = now_ns() + limit_ns;
    while (!atomic_load_explicit(flag, memory_order_acquire)) {
        if (now_ns() > end) return 0;
        sched_yield();
    }
    return 1;
}

/* Bounded poll until `pid` is asleep (state S: for the peer here, only a futex wait
 * puts it there); 1 when seen, 0 after `limit_ns`. */
static int spin_until_asleep(pid_t pid, int64_t limit_ns) {
    int64_t end = now_ns() + limit_ns;
    while (proc_state(pid) != 'S') {
        if (now_ns() > end) return 0;
        sched_yield();
    }
    return 1;
}

/* ---- identity, init, check ---------------------------------------------------------- */

static void test_bytes_needed(void) {
    CHECK_EQ(TS_RING_HEADER_SIZE, 512);
    CHECK_EQ(ts_ring_bytes_needed(64, 64), 512 + 64 * 64);
    CHECK_EQ(ts_ring_bytes_needed(8, 1), 520);
    CHECK_EQ(ts_ring_bytes_needed(24, 16), 512 + 24 * 16);
    CHECK_EQ(ts_ring_bytes_needed(TS_RECORD_SIZE, 1u << 20), 512 + (64u << 20));
    /* a size that does not fit in size_t saturates rather than wrapping to something small */
    CHECK(ts_ring_bytes_needed(64, 1ull << 58) == SIZE_MAX);
    CHECK(ts_ring_bytes_needed(UINT32_MAX, UINT64_MAX) == SIZE_MAX);
    CHECK(ts_ring_bytes_needed(8, (SIZE_MAX - 512) / 8) == 512 + (SIZE_MAX - 512) / 8 * 8);
}

static void test_init_argument_errors(void) {
    size_t size = ts_ring_bytes_needed(64, 16);
    unsigned char *mem = block(size);
    memset(mem, 0xA5, size);
    static const uint64_t bad_caps[] = {0, 3, 6, 12, 100, (1ull << 63) + 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof bad_caps / sizeof bad_caps[0]; i++)
        CHECK_EQ(ts_ring_init(mem, size, 64, bad_caps[i], 1, 1, 1), TS_RING_ERR_CAPACITY);
    static const uint32_t bad_slots[] = {0, 1, 4, 12, 60, 65};
    for (size_t i = 0; i < sizeof bad_slots / sizeof bad_slots[0]; i++)
        CHECK_EQ(ts_ring_init(mem, size, bad_slots[i], 16, 1, 1, 1), TS_RING_ERR_ARGUMENT);
    CHECK_EQ(ts_ring_init(mem, size - 1, 64, 16, 1, 1, 1), TS_RING_ERR_TOO_SMALL);
    CHECK_EQ(ts_ring_init(mem, 0, 64, 16, 1, 1, 1), TS_RING_ERR_TOO_SMALL);
    CHECK_EQ(ts_ring_init(mem, size, 64, 32, 1, 1, 1), TS_RING_ERR_TOO_SMALL);
    /* capacities whose byte size overflows size_t must not be accepted into a small block */
    CHECK_EQ(ts_ring_init(mem, size, 64, 1ull << 58, 1, 1, 1), TS_RING_ERR_TOO_SMALL);
    CHECK_EQ(ts_ring_init(mem, size, 8, 1ull << 61, 1, 1, 1), TS_RING_ERR_TOO_SMALL);
    /* a refused init changes nothing */
    for (size_t i = 0; i < size; i++) CHECK_EQ(mem[i], 0xA5);
    CHECK_EQ(ts_ring_check(mem, size, 1, 64, 16), TS_RING_ERR_MAGIC);
    /* the exact size is enough, and a larger block too */
    CHECK_EQ(ts_ring_init(mem, size, 64, 16, 1, 1, 1), TS_RING_OK);
    CHECK_EQ(ts_ring_init(mem, size, 64, 8, 1, 1, 1), TS_RING_OK);
    CHECK_EQ(ts_ring_init(mem, size, 8, 1, 1, 1, 1), TS_RING_OK);
}

static void test_check_errors(void) {
    const uint32_t ver = TS_LAYOUT_VERSION;
    size_t size = ts_ring_bytes_needed(64, 16);
    unsigned char *mem = block(size);
    CHECK_EQ(ts_ring_check(mem, size, ver, 64, 16), TS_RING_ERR_MAGIC); /* zeroed: not a ring */
    CHECK_EQ(ts_ring_init(mem, size, 64, 16, ver, 1, 1), TS_RING_OK);
    CHECK_EQ(ts_ring_check(mem, size, ver, 64, 16), TS_RING_OK);
    CHECK_EQ(ts_ring_check(mem, size, ver, 64, 0), TS_RING_OK); /* 0 = any capacity */
    CHECK_EQ(ts_ring_check(mem, size + 4096, ver, 64, 16), TS_RING_OK);
    CHECK_EQ(ts_ring_check(mem, size, ver + 1, 64, 16), TS_RING_ERR_VERSION);
    CHECK_EQ(ts_ring_check(mem, size, 0, 64, 16), TS_RING_ERR_VERSION);
    CHECK_EQ(ts_ring_check(mem, size, ver, 56, 16), TS_RING_ERR_SLOT_SIZE);
    CHECK_EQ(ts_ring_check(mem, size, ver, 128, 16), TS_RING_ERR_SLOT_SIZE);
    CHECK_EQ(ts_ring_check(mem, size, ver, 64, 8), TS_RING_ERR_CAPACITY);
    CHECK_EQ(ts_ring_check(mem, size, ver, 64, 32), TS_RING_ERR_CAPACITY);
    CHECK_EQ(ts_ring_check(mem, size - 1, ver, 64, 16), TS_RING_ERR_TOO_SMALL);
    CHECK_EQ(ts_ring_check(mem, size - 1, ver, 64, 0), TS_RING_ERR_TOO_SMALL);
    CHECK_EQ(ts_ring_check(mem, TS_RING_HEADER_SIZE, ver, 64, 16), TS_RING_ERR_TOO_SMALL);
    CHECK_EQ(ts_ring_check(mem, TS_RING_HEADER_SIZE - 1, ver, 64, 16), TS_RING_ERR_TOO_SMALL);
    CHECK_EQ(ts_ring_check(mem, 0, ver, 64, 16), TS_RING_ERR_TOO_SMALL);
    /* the magic is the first word of the header (ring.h: the block starts with identity) */
    mem[3] ^= 0x01;
    CHECK_EQ(ts_ring_check(mem, size, ver, 64, 16), TS_RING_ERR_MAGIC);
    mem[3] ^= 0x01;
    CHECK_EQ(ts_ring_check(mem, size, ver, 64, 16), TS_RING_OK);
}

static void test_read_info(void) {
    size_t size = ts_ring_bytes_needed(64, 16);
    void *mem = block(size);
    CHECK_EQ(ts_ring_init(mem, size, 64, 16, 7, 1234, 5678901234ull), TS_RING_OK);
    ts_ring_info info;
    memset(&info, 0xFF, sizeof info);
    ts_ring_read_info(mem, &info);
    CHECK(info.magic == TS_RING_MAGIC);
    CHECK_EQ(info.layout_version, 7);
    CHECK_EQ(info.slot_size, 64);
    CHECK_EQ(info.capacity, 16);
    CHECK_EQ(info.creator_pid, 1234);
    CHECK_EQ(info.producer_pid, 0);
    CHECK_EQ(info.consumer_pid, 0);
    CHECK_EQ(info._pad0, 0);
    CHECK_EQ(info.creator_start_us, 5678901234ull);
    CHECK_EQ(info.head, 0);
    CHECK_EQ(info.tail, 0);

    ts_ring *r = mem;
    ts_ring_set_producer(r, 11);
    ts_ring_set_consumer(r, 22);
    unsigned char rec[3 * 64];
    for (int i = 0; i < 3; i++) fill_slot(rec + 64 * i, 64, (uint64_t)i);
    CHECK_EQ(ts_ring_push(r, rec, 3), 3);
    CHECK_EQ(ts_ring_pop(r, rec, 1), 1);
    ts_ring_read_info(mem, &info);
    CHECK_EQ(info.producer_pid, 11);
    CHECK_EQ(info.consumer_pid, 22);
    CHECK_EQ(info.head, 3);
    CHECK_EQ(info.tail, 1);
}

/* ---- single-process data path ------------------------------------------------------- */

static void test_push_pop_single(void) {
    ts_ring *r = new_ring(64, 8);
    unsigned char *in = block(64), *out = block(64);
    fill_slot(in, 64, 42);
    CHECK_EQ(ts_ring_push(r, in, 1), 1);
    CHECK_EQ(ts_ring_readable(r), 1);
    CHECK_EQ(ts_ring_pop(r, out, 1), 1);
    CHECK(memcmp(in, out, 64) == 0);
    CHECK_EQ(ts_ring_readable(r), 0);
    /* a zero-record push or pop is a no-op */
    CHECK_EQ(ts_ring_push(r, in, 0), 0);
    CHECK_EQ(ts_ring_pop(r, out, 0), 0);
    CHECK_EQ(ts_ring_readable(r), 0);
}

static void test_push_full_no_overwrite(void) {
    enum { CAP = 16, SZ = 64 };
    ts_ring *r = new_ring(SZ, CAP);
    unsigned char *in = block(CAP * SZ), *out = block(CAP * SZ), *extra = block(5 * SZ);
    for (int i = 0; i < CAP; i++) fill_slot(in + i * SZ, SZ, (uint64_t)i);
    for (int i = 0; i < 5; i++) fill_slot(extra + i * SZ, SZ, 1000u + (uint64_t)i);
    CHECK_EQ(ts_ring_push(r, in, CAP), CAP);
    CHECK_EQ(ts_ring_writable(r), 0);
    CHECK_EQ(ts_ring_push(r, extra, 1), 0);
    CHECK_EQ(ts_ring_push(r, extra, 5), 0);
    CHECK_EQ(ts_ring_push_one(r, (const char *)extra), 0);
    ts_ring_info info;
    ts_ring_read_info(r, &info);
    CHECK_EQ(info.head, CAP);
    CHECK_EQ(ts_ring_pop(r, out, CAP + 5), CAP);
    for (int i = 0; i < CAP; i++) CHECK(slot_is(out + i * SZ, SZ, (uint64_t)i));
    /* after a full lap the ring is usable again, from the right place */
    CHECK_EQ(ts_ring_push(r, extra, 5), 5);
    CHECK_EQ(ts_ring_pop(r, out, CAP), 5);
    for (int i = 0; i < 5; i++) CHECK(slot_is(out + i * SZ, SZ, 1000u + (uint64_t)i));
}

static void test_partial_batch(void) {
    enum { CAP = 8, SZ = 24 };
    ts_ring *r = new_ring(SZ, CAP);
    unsigned char *in = block(20 * SZ), *out = block(20 * SZ);
    for (int i = 0; i < 20; i++) fill_slot(in + i * SZ, SZ, (uint64_t)i);
    CHECK_EQ(ts_ring_push(r, in, 5), 5);
    CHECK_EQ(ts_ring_push(r, in + 5 * SZ, 5), 3); /* only 3 of 5 fit */
    CHECK_EQ(ts_ring_pop(r, out, 2), 2);
    CHECK_EQ(ts_ring_push(r, in + 8 * SZ, 12), 2); /* wraps; takes exactly what was freed */
    CHECK_EQ(ts_ring_pop(r, out + 2 * SZ, 20), CAP);
    for (int i = 0; i < CAP + 2; i++) CHECK(slot_is(out + i * SZ, SZ, (uint64_t)i));
    /* a batch larger than the whole ring takes one ring's worth */
    CHECK_EQ(ts_ring_push(r, in, 20), CAP);
    CHECK_EQ(ts_ring_pop(r, out, 20), CAP);
    for (int i = 0; i < CAP; i++) CHECK(slot_is(out + i * SZ, SZ, (uint64_t)i));
}

static void test_pop_empty(void) {
    ts_ring *r = new_ring(64, 8);
    unsigned char *out = block(4 * 64);
    memset(out, 0xAB, 4 * 64);
    CHECK_EQ(ts_ring_pop(r, out, 4), 0);
    CHECK_EQ(ts_ring_pop_one(r, (char *)out), 0);
    for (int i = 0; i < 4 * 64; i++) CHECK_EQ(out[i], 0xAB); /* untouched */
    unsigned char in[64];
    fill_slot(in, 64, 9);
    CHECK_EQ(ts_ring_push(r, in, 1), 1);
    CHECK_EQ(ts_ring_pop(r, out, 4), 1);
    CHECK_EQ(ts_ring_pop(r, out, 4), 0);
    void *first = NULL;
    CHECK_EQ(ts_ring_peek(r, &first), 0);
}

/* Many rounds of random-size batches on small rings, so batches keep straddling the end;
 * every record's every byte is checked, and the counts against a model. */
static void test_wraparound_random(void) {
    static const uint32_t sizes[] = {8, 24, 64, 136};
    static const uint64_t caps[] = {1, 2, 16, 64};
    prng rng = {g_seed ^ 0x77};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            const uint32_t sz = sizes[s];
            const uint64_t cap = caps[c], maxb = 2 * cap + 3;
            ts_ring *r = new_ring(sz, cap);
            unsigned char *in = block(maxb * sz), *out = block(maxb * sz);
            uint64_t pushed = 0, popped = 0, straddles = 0;
            for (int round = 0; round < 20000; round++) {
                uint64_t n = prng_range(&rng, 1, maxb);
                for (uint64_t i = 0; i < n; i++) fill_slot(in + i * sz, sz, pushed + i);
                uint64_t room = cap - (pushed - popped);
                uint64_t want = n < room ? n : room;
                if (want && (pushed % cap) + want > cap) straddles++;
                CHECK_EQ(ts_ring_writable(r), room);
                CHECK_EQ(ts_ring_push(r, in, n), want);
                pushed += want;
                CHECK_EQ(ts_ring_readable(r), pushed - popped);

                uint64_t m = prng_range(&rng, 1, maxb);
                uint64_t have = pushed - popped;
                uint64_t take = m < have ? m : have;
                if (take && (popped % cap) + take > cap) straddles++;
                CHECK_EQ(ts_ring_pop(r, out, m), take);
                for (uint64_t i = 0; i < take; i++) CHECK(slot_is(out + i * sz, sz, popped + i));
                popped += take;
            }
            ts_ring_info info;
            ts_ring_read_info(r, &info);
            CHECK_EQ(info.head, pushed);
            CHECK_EQ(info.tail, popped);
            if (cap > 1) CHECK(straddles > 1000);
        }
    }
}

static void test_peek_release(void) {
    enum { CAP = 8, SZ = 64 };
    ts_ring *r = new_ring(SZ, CAP);
    unsigned char *in = block(16 * SZ), *out = block(16 * SZ);
    for (int i = 0; i < 16; i++) fill_slot(in + i * SZ, SZ, (uint64_t)i);
    void *first = NULL;
    CHECK_EQ(ts_ring_peek(r, &first), 0);
    CHECK_EQ(ts_ring_push(r, in, 6), 6);
    CHECK_EQ(ts_ring_pop(r, out, 5), 5); /* tail at slot 5 */
    CHECK_EQ(ts_ring_push(r, in + 6 * SZ, 6), 6); /* head wraps to slot 4 */
    /* only the contiguous part up to the end is offered: slots 5..7 = seq 5..7 */
    CHECK_EQ(ts_ring_peek(r, &first), 3);
    for (int i = 0; i < 3; i++)
        CHECK(slot_is((unsigned char *)first + i * SZ, SZ, 5u + (uint64_t)i));
    CHECK_EQ(ts_ring_peek(r, &first), 3); /* peeking again consumes nothing */
    ts_ring_release(r, 2);
    CHECK_EQ(ts_ring_readable(r), 5);
    CHECK_EQ(ts_ring_writable(r), 3);
    CHECK_EQ(ts_ring_peek(r, &first), 1);
    CHECK(slot_is(first, SZ, 7));
    ts_ring_release(r, 1);
    /* then from the start of the slots: seq 8..11 */
    CHECK_EQ(ts_ring_peek(r, &first), 4);
    for (int i = 0; i < 4; i++)
        CHECK(slot_is((unsigned char *)first + i * SZ, SZ, 8u + (uint64_t)i));
    ts_ring_release(r, 4);
    CHECK_EQ(ts_ring_peek(r, &first), 0);
    CHECK_EQ(ts_ring_readable(r), 0);
    CHECK_EQ(ts_ring_writable(r), CAP);
    /* peek and pop interleave: pop continues where release left off */
    CHECK_EQ(ts_ring_push(r, in, 3), 3);
    CHECK_EQ(ts_ring_peek(r, &first), 3);
    ts_ring_release(r, 1);
    CHECK_EQ(ts_ring_pop(r, out, 8), 2);
    CHECK(slot_is(out, SZ, 1));
    CHECK(slot_is(out + SZ, SZ, 2));
}

/* peek_copy reads past `skip` without consuming, across the ring's end; release then
 * gives back exactly what it says, and a push fits only into released slots. */
static void test_peek_copy_skip(void) {
    enum { CAP = 8, SZ = 64 };
    ts_ring *r = new_ring(SZ, CAP);
    unsigned char *in = block(16 * SZ), *out = block(16 * SZ);
    for (int i = 0; i < 16; i++) fill_slot(in + i * SZ, SZ, (uint64_t)i);
    CHECK_EQ(ts_ring_peek_copy(r, out, 0, 4), 0);
    CHECK_EQ(ts_ring_push(r, in, 6), 6);
    CHECK_EQ(ts_ring_pop(r, out, 5), 5);          /* tail at slot 5 */
    CHECK_EQ(ts_ring_push(r, in + 6 * SZ, 7), 7); /* seq 6..12: full, head wraps */
    CHECK_EQ(ts_ring_push(r, in, 1), 0);
    /* from the tail across the end: seq 5..12 */
    memset(out, 0xAB, 16 * SZ);
    CHECK_EQ(ts_ring_peek_copy(r, out, 0, 16), CAP);
    for (int i = 0; i < CAP; i++) CHECK(slot_is(out + i * SZ, SZ, 5u + (uint64_t)i));
    CHECK_EQ(out[CAP * SZ], 0xAB); /* nothing copied past the count */
    /* skipping what was read already, bounded by max */
    CHECK_EQ(ts_ring_peek_copy(r, out, 2, 3), 3);
    for (int i = 0; i < 3; i++) CHECK(slot_is(out + i * SZ, SZ, 7u + (uint64_t)i));
    CHECK_EQ(ts_ring_peek_copy(r, out, 7, 4), 1);
    CHECK(slot_is(out, SZ, 12));
    CHECK_EQ(ts_ring_peek_copy(r, out, CAP, 4), 0);
    CHECK_EQ(ts_ring_peek_copy(r, out, CAP + 3, 4), 0);
    /* nothing was consumed */
    CHECK_EQ(ts_ring_readable(r), CAP);
    CHECK_EQ(ts_ring_writable(r), 0);
    ts_ring_release(r, 3);
    CHECK_EQ(ts_ring_writable(r), 3);
    CHECK_EQ(ts_ring_peek_copy(r, out, 0, 1), 1);
    CHECK(slot_is(out, SZ, 8));
    CHECK_EQ(ts_ring_push(r, in + 13 * SZ, 3), 3); /* seq 13..15 into the released slots */
    CHECK_EQ(ts_ring_peek_copy(r, out, 4, 16), 4);
    for (int i = 0; i < 4; i++) CHECK(slot_is(out + i * SZ, SZ, 12u + (uint64_t)i));
    CHECK_EQ(ts_ring_pop(r, out, 16), CAP);
    for (int i = 0; i < CAP; i++) CHECK(slot_is(out + i * SZ, SZ, 8u + (uint64_t)i));
}

/* peek_from: the contiguous run `skip` records past the tail, wrapping to the slots'
 * start, releasing nothing; park_consumer_past: parks while no more than `skip` records
 * are readable (a push then moves the futex word), returns the records past them. */
static void test_peek_from_and_park_past(void) {
    enum { CAP = 8, SZ = 64 };
    ts_ring *r = new_ring(SZ, CAP);
    unsigned char *in = block(16 * SZ), *out = block(16 * SZ);
    for (int i = 0; i < 16; i++) fill_slot(in + i * SZ, SZ, (uint64_t)i);
    void *first = NULL;
    CHECK_EQ(ts_ring_peek_from(r, 0, &first), 0);
    CHECK_EQ(ts_ring_push(r, in, 6), 6);
    CHECK_EQ(ts_ring_pop(r, out, 5), 5); /* tail at slot 5 */
    CHECK_EQ(ts_ring_push(r, in + 6 * SZ, 6), 6); /* seq 5..7 in slots 5..7, 8..11 in 0..3 */
    static const struct {
        uint64_t skip, n, seq;
    } want[] = {{0, 3, 5}, {2, 1, 7}, {3, 4, 8}, {5, 2, 10}, {7, 0, 0}, {9, 0, 0}};
    for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
        CHECK_EQ(ts_ring_peek_from(r, want[k].skip, &first), want[k].n);
        for (uint64_t i = 0; i < want[k].n; i++)
            CHECK(slot_is((unsigned char *)first + i * SZ, SZ, want[k].seq + i));
    }
    CHECK_EQ(ts_ring_readable(r), 7); /* nothing released */
    uint32_t *word = NULL, seen = 0;
    CHECK_EQ(ts_ring_park_consumer_past(r, 7, &word, &seen), 0); /* parked past all 7 */
    CHECK_EQ(ts_ring_push(r, in + 12 * SZ, 1), 1);
    CHECK(*word != seen); /* the push saw the mark and woke the word */
    ts_ring_unpark_consumer(r);
    CHECK_EQ(ts_ring_park_consumer_past(r, 7, &word, &seen), 1); /* seq 12: not parked */
    ts_ring_release(r, 1);
    CHECK_EQ(ts_ring_push(r, in + 13 * SZ, 1), 1);
    CHECK_EQ(*word, seen); /* the mark was withdrawn: no wake-up */
    CHECK_EQ(ts_ring_peek_from(r, 6, &first), 2); /* seq 12, 13 */
    CHECK(slot_is(first, SZ, 12));
}

/* A release of records the consumer never looked at (its cached head still behind):
 * a pop or peek_copy after it sees exactly what is left, not a wrapped-around count. */
static void test_release_unseen_then_pop(void) {
    enum { CAP = 8, SZ = 64 };
    ts_ring *r = new_ring(SZ, CAP);
    unsigned char *in = block(4 * SZ), *out = block(CAP * SZ);
    for (int i = 0; i < 4; i++) fill_slot(in + i * SZ, SZ, (uint64_t)i);
    CHECK_EQ(ts_ring_push(r, in, 1), 1);
    ts_ring_release(r, 1);
    CHECK_EQ(ts_ring_pop(r, out, CAP), 0);
    CHECK_EQ(ts_ring_peek_copy(r, out, 0, CAP), 0);
    CHECK_EQ(ts_ring_push(r, in + SZ, 3), 3);
    ts_ring_release(r, 1);
    CHECK_EQ(ts_ring_pop(r, out, CAP), 2);
    CHECK(slot_is(out, SZ, 2));
    CHECK(slot_is(out + SZ, SZ, 3));
}

/* Random pushes, peek_copy(skip) reads and releases against a model (the next seq in the
 * ring and the count released), on small rings so reads keep straddling the end. */
static void test_peek_copy_random(void) {
    static const uint64_t caps[] = {1, 2, 16, 64};
    enum { SZ = 24 };
    prng rng = {g_seed ^ 0x9e};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        const uint64_t cap = caps[c], maxb = 2 * cap + 3;
        ts_ring *r = new_ring(SZ, cap);
        unsigned char *in = block(maxb * SZ), *out = block((maxb + 1) * SZ);
        uint64_t pushed = 0, released = 0, straddles = 0;
        for (int round = 0; round < 20000; round++) {
            uint64_t n = prng_range(&rng, 1, maxb);
            for (uint64_t i = 0; i < n; i++) fill_slot(in + i * SZ, SZ, pushed + i);
            uint64_t room = cap - (pushed - released);
            uint64_t want = n < room ? n : room;
            CHECK_EQ(ts_ring_push(r, in, n), want);
            pushed += want;
            uint64_t have = pushed - released;
            uint64_t skip = prng_range(&rng, 0, have + 1), max = prng_range(&rng, 1, maxb);
            uint64_t expect = skip >= have ? 0 : (have - skip < max ? have - skip : max);
            if (expect && ((released + skip) % cap) + expect > cap) straddles++;
            memset(out + max * SZ, 0xCD, SZ);
            CHECK_EQ(ts_ring_peek_copy(r, out, skip, max), expect);
            for (uint64_t i = 0; i < expect; i++)
                CHECK(slot_is(out + i * SZ, SZ, released + skip + i));
            CHECK_EQ(out[max * SZ], 0xCD);
            CHECK_EQ(ts_ring_readable(r), have);
            uint64_t k = prng_range(&rng, 0, have);
            ts_ring_release(r, k);
            released += k;
        }
        ts_ring_info info;
        ts_ring_read_info(r, &info);
        CHECK_EQ(info.head, pushed);
        CHECK_EQ(info.tail, released);
        if (cap > 1) CHECK(straddles > 1000);
    }
}

static void test_readable_writable(void) {
    enum { CAP = 16, SZ = 8 };
    ts_ring *r = new_ring(SZ, CAP);
    unsigned char *buf = block(CAP * SZ);
    CHECK_EQ(ts_ring_readable(r), 0);
    CHECK_EQ(ts_ring_writable(r), CAP);
    CHECK_EQ(ts_ring_push(r, buf, 3), 3);
    CHECK_EQ(ts_ring_readable(r), 3);
    CHECK_EQ(ts_ring_writable(r), CAP - 3);
    CHECK_EQ(ts_ring_push(r, buf, CAP), CAP - 3);
    CHECK_EQ(ts_ring_readable(r), CAP);
    CHECK_EQ(ts_ring_writable(r), 0);
    CHECK_EQ(ts_ring_pop(r, buf, 2), 2);
    CHECK_EQ(ts_ring_readable(r), CAP - 2);
    CHECK_EQ(ts_ring_writable(r), 2);
    CHECK_EQ(ts_ring_pop(r, buf, CAP), CAP - 2);
    CHECK_EQ(ts_ring_readable(r), 0);
    CHECK_EQ(ts_ring_writable(r), CAP);
}

static void test_push_one_pop_one(void) {
    enum { CAP = 4, SZ = 64 };
    ts_ring *r = new_ring(SZ, CAP);
    char *in = block(SZ), *out = block(SZ);
    for (uint64_t i = 0; i < CAP; i++) {
        fill_slot((unsigned char *)in, SZ, 100 + i);
        CHECK_EQ(ts_ring_push_one(r, in), 1);
    }
    CHECK_EQ(ts_ring_push_one(r, in), 0);
    for (uint64_t i = 0; i < CAP; i++) {
        CHECK_EQ(ts_ring_pop_one(r, out), 1);
        CHECK(slot_is((unsigned char *)out, SZ, 100 + i));
    }
    CHECK_EQ(ts_ring_pop_one(r, out), 0);
    /* and across the end, many times over */
    for (uint64_t i = 0; i < 1000; i++) {
        fill_slot((unsigned char *)in, SZ, i);
        CHECK_EQ(ts_ring_push_one(r, in), 1);
        CHECK_EQ(ts_ring_pop_one(r, out), 1);
        CHECK(slot_is((unsigned char *)out, SZ, i));
    }
}

/* ---- waits and timeouts ------------------------------------------------------------- */

static void wait_timeouts(const ts_wait_strategy *w) {
    enum { CAP = 4, SZ = 64 };
    const int64_t ms = 1000000;
    ts_ring *r = new_ring(SZ, CAP);
    unsigned char *buf = block(8 * SZ);
    for (int i = 0; i < 8; i++) fill_slot(buf + i * SZ, SZ, (uint64_t)i);

    ts_ring_wake_all(r); /* a wake with nothing published is not "ready" */
    int64_t t0 = now_ns();
    CHECK_EQ(ts_ring_wait_readable(r, w, 1 * ms), 0);
    int64_t dt = now_ns() - t0;
    CHECK(dt >= 1 * ms);
    CHECK(dt < 1000 * ms);
    t0 = now_ns();
    CHECK_EQ(ts_ring_pop_wait(r, buf, 1, w, 1 * ms), 0);
    CHECK(now_ns() - t0 >= 1 * ms);
    CHECK_EQ(ts_ring_wait_readable(r, w, 0), 0);
    /* what is available returns at once, whatever the timeout */
    CHECK_EQ(ts_ring_wait_writable(r, w, -1), CAP);
    CHECK_EQ(ts_ring_wait_writable(r, w, 0), CAP);

    /* two free slots: push_all takes them, then times out on the rest */
    CHECK_EQ(ts_ring_push(r, buf, 2), 2);
    t0 = now_ns();
    CHECK_EQ(ts_ring_push_all(r, buf + 2 * SZ, 5, w, 1 * ms), 2);
    CHECK(now_ns() - t0 >= 1 * ms);
    CHECK_EQ(ts_ring_writable(r), 0);

    t0 = now_ns();
    CHECK_EQ(ts_ring_wait_writable(r, w, 1 * ms), 0);
    dt = now_ns() - t0;
    CHECK(dt >= 1 * ms);
    CHECK(dt < 1000 * ms);
    CHECK_EQ(ts_ring_push_all(r, buf, 1, w, 1 * ms), 0);
    CHECK_EQ(ts_ring_push_all(r, buf, 1, w, 0), 0);
    CHECK_EQ(ts_ring_wait_writable(r, w, 0), 0);
    CHECK_EQ(ts_ring_wait_readable(r, w, -1), CAP);
    CHECK_EQ(ts_ring_pop_wait(r, buf, 8, w, -1), CAP);
    for (int i = 0; i < CAP; i++) CHECK(slot_is(buf + i * SZ, SZ, (uint64_t)i));
}

static void test_wait_timeouts_busy_spin(void) { wait_timeouts(&W_BUSY); }
static void test_wait_timeouts_spin_yield(void) { wait_timeouts(&W_YIELD); }
static void test_wait_timeouts_spin_park(void) { wait_timeouts(&W_PARK); }

/* ---- multi-process ------------------------------------------------------------------ */

enum { STRESS_CAP = 64, STRESS_SZ = 64, STRESS_MAX_BATCH = 100 };

/* Stress records: word 0 the sequence number, words 1..6 derived from it, word 7 a
 * checksum of words 0..6, so a record made of two half-written ones fails the sum. */
static uint64_t record_sum(const uint64_t *w) {
    uint64_t h = 0xcbf29ce484222325u;
    for (int i = 0; i < 7; i++) h = mix64(h ^ w[i]);
    return h;
}

static void make_record(uint64_t *w, uint64_t seq) {
    w[0] = seq;
    for (int i = 1; i < 7; i++) w[i] = mix64(seq * 8 + (uint64_t)i);
    w[7] = record_sum(w);
}

static _Noreturn void stress_producer(ts_ring *r, const ts_wait_strategy *w, uint64_t n) {
    ts_ring_set_producer(r, getpid());
    uint64_t *buf = malloc(STRESS_MAX_BATCH * STRESS_SZ);
    if (!buf) _exit(2);
    prng rng = {g_seed ^ 0x1111};
    for (uint64_t seq = 0; seq < n;) {
        uint64_t b = prng_range(&rng, 1, STRESS_MAX_BATCH);
        if (b > n - seq) b = n - seq;
        for (uint64_t i = 0; i < b; i++) make_record(buf + i * 8, seq + i);
        uint64_t took = ts_ring_push_all(r, buf, b, w, -1);
        if (took != b) {
            fprintf(stderr, "producer: push_all(-1) took %llu of %llu\n", (unsigned long long)took,
                    (unsigned long long)b);
            _exit(3);
        }
        seq += b;
    }
    free(buf);
    _exit(0);
}

static void stress(const ts_wait_strategy *w) {
    const uint64_t n = g_stress_records;
    size_t bytes = ts_ring_bytes_needed(STRESS_SZ, STRESS_CAP);
    unsigned char *map = map_shared(bytes);
    ts_ring *r = (ts_ring *)(map + CTL_SIZE);
    CHECK_EQ(ts_ring_init(r, bytes, STRESS_SZ, STRESS_CAP, TS_LAYOUT_VERSION, getpid(), 0),
             TS_RING_OK);
    ts_ring_set_consumer(r, getpid());
    uint64_t *buf = block(STRESS_MAX_BATCH * STRESS_SZ);

    int64_t t0 = now_ns();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) stress_producer(r, w, n);
    g_child = pid;

    /* A 5 s stall with the producer alive means a lost wake-up (both sides parked):
     * the timeout is only there to turn such a hang into a named failure. */
    const int64_t stall_ns = 5000000000LL;
    prng rng = {g_seed ^ 0x2222};
    uint64_t expect = 0, batches = 0;
    const char *fail = NULL;
    while (expect < n && !fail) {
        uint64_t m = prng_range(&rng, 1, STRESS_MAX_BATCH);
        uint64_t k = ts_ring_pop_wait(r, buf, m, w, stall_ns);
        if (k == 0) {
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                g_child = 0;
                fail = "producer exited early";
            } else {
                fail = "consumer stalled 5 s: lost wake-up?";
            }
            break;
        }
        if (k > m) {
            fail = "pop_wait returned more than asked";
            break;
        }
        batches++;
        for (uint64_t i = 0; i < k; i++, expect++) {
            const uint64_t *rec = buf + i * 8;
            if (rec[0] != expect) {
                fprintf(stderr, "  record %llu has sequence %llu\n", (unsigned long long)expect,
                        (unsigned long long)rec[0]);
                fail = rec[0] < expect ? "duplicate or reordered record" : "lost record";
                break;
            }
            if (rec[7] != record_sum(rec)) {
                fprintf(stderr, "  record %llu fails its checksum\n", (unsigned long long)expect);
                fail = "torn record";
                break;
            }
        }
    }
    if (fail) {
        fprintf(stderr, "  %s stress: %s after %llu records\n", strategy_name(w), fail,
                (unsigned long long)expect);
        if (g_child) kill_and_reap(pid);
        munmap(map, CTL_SIZE + bytes);
        CHECK(!fail);
    }
    int status = reap(pid);
    double secs = (double)(now_ns() - t0) / 1e9;
    ts_ring_info info;
    ts_ring_read_info(r, &info);
    uint64_t left = ts_ring_readable(r);
    munmap(map, CTL_SIZE + bytes);
    CHECK_EQ(status, 0);
    CHECK_EQ(left, 0);
    CHECK_EQ(info.head, n);
    CHECK_EQ(info.tail, n);
    printf("    %-10s %llu records in %.2f s (%.1f M/s, mean pop batch %.1f)\n", strategy_name(w),
           (unsigned long long)n, secs, (double)n / secs / 1e6,
           batches ? (double)n / (double)batches : 0.0);
}

static void test_stress_busy_spin(void) { stress(&W_BUSY); }
static void test_stress_spin_yield(void) { stress(&W_YIELD); }
static void test_stress_spin_park(void) { stress(&W_PARK); }

/* A consumer parked with no time limit is woken by the producer's push. The child
 * pushes only once the parent has said it is about to wait and is seen asleep. */
static void test_park_wakes_consumer(void) {
    enum { CAP = 8, SZ = 64 };
    const ts_wait_strategy w = {TS_WAIT_SPIN_PARK, 16, 2, 0};
    size_t bytes = ts_ring_bytes_needed(SZ, CAP);
    unsigned char *map = map_shared(bytes);
    shared_ctl *ctl = (shared_ctl *)map;
    ts_ring *r = (ts_ring *)(map + CTL_SIZE);
    CHECK_EQ(ts_ring_init(r, bytes, SZ, CAP, TS_LAYOUT_VERSION, getpid(), 0), TS_RING_OK);

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        unsigned char rec[SZ];
        fill_slot(rec, SZ, 4242);
        int ok = spin_on_flag(&ctl->about_to_park, 10000000000LL) &&
                 spin_until_asleep(getppid(), 10000000000LL);
        if (!ok) fprintf(stderr, "  child: parent never seen parked\n");
        int pushed = ts_ring_push_one(r, (const char *)rec);
        _exit(!ok ? 4 : pushed == 1 ? 0 : 5);
    }
    g_child = pid;
    unsigned char out[SZ];
    atomic_store_explicit(&ctl->about_to_park, 1, memory_order_release);
    uint64_t k = ts_ring_pop_wait(r, out, 1, &w, -1);
    int status = reap(pid);
    munmap(map, CTL_SIZE + bytes);
    CHECK_EQ(k, 1);
    CHECK(slot_is(out, SZ, 4242));
    CHECK_EQ(status, 0);
}

/* A producer parked on a full ring with no time limit is woken by the consumer's pop. */
static void test_park_wakes_producer(void) {
    enum { CAP = 8, SZ = 64 };
    const ts_wait_strategy w = {TS_WAIT_SPIN_PARK, 16, 2, 0};
    size_t bytes = ts_ring_bytes_needed(SZ, CAP);
    unsigned char *map = map_shared(bytes);
    shared_ctl *ctl = (shared_ctl *)map;
    ts_ring *r = (ts_ring *)(map + CTL_SIZE);
    CHECK_EQ(ts_ring_init(r, bytes, SZ, CAP, TS_LAYOUT_VERSION, getpid(), 0), TS_RING_OK);

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        unsigned char rec[(CAP + 1) * SZ];
        for (int i = 0; i <= CAP; i++) fill_slot(rec + i * SZ, SZ, (uint64_t)i);
        if (ts_ring_push(r, rec, CAP) != CAP) _exit(6);
        atomic_store_explicit(&ctl->about_to_park, 1, memory_order_release);
        _exit(ts_ring_push_all(r, rec + CAP * SZ, 1, &w, -1) == 1 ? 0 : 7);
    }
    g_child = pid;
    int flagged = spin_on_flag(&ctl->about_to_park, 10000000000LL);
    int asleep = flagged && spin_until_asleep(pid, 10000000000LL);
    unsigned char out[(CAP + 1) * SZ];
    uint64_t first = ts_ring_pop(r, out, 1); /* frees a slot: must wake the producer */
    int status = reap(pid);
    uint64_t rest = ts_ring_pop(r, out + SZ, CAP);
    munmap(map, CTL_SIZE + bytes);
    CHECK(flagged);
    CHECK(asleep);
    CHECK_EQ(first, 1);
    CHECK_EQ(status, 0);
    CHECK_EQ(rest, CAP);
    for (int i = 0; i <= CAP; i++) CHECK(slot_is(out + i * SZ, SZ, (uint64_t)i));
}

/* ---- runner ------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    void (*fn)(void);
    unsigned watchdog_s; /* 0: single-process, cannot hang */
} test_case;

#define T(fn) {#fn, fn, 0}
#define T_MP(fn, s) {#fn, fn, s}

static const test_case TESTS[] = {
    T(test_bytes_needed),
    T(test_init_argument_errors),
    T(test_check_errors),
    T(test_read_info),
    T(test_push_pop_single),
    T(test_push_full_no_overwrite),
    T(test_partial_batch),
    T(test_pop_empty),
    T(test_wraparound_random),
    T(test_peek_release),
    T(test_peek_copy_skip),
    T(test_peek_from_and_park_past),
    T(test_release_unseen_then_pop),
    T(test_peek_copy_random),
    T(test_readable_writable),
    T(test_push_one_pop_one),
    T(test_wait_timeouts_busy_spin),
    T(test_wait_timeouts_spin_yield),
    T(test_wait_timeouts_spin_park),
    T_MP(test_park_wakes_consumer, 30),
    T_MP(test_park_wakes_producer, 30),
    T_MP(test_stress_busy_spin, 600),
    T_MP(test_stress_spin_yield, 600),
    T_MP(test_stress_spin_park, 600),
};

static int selected(const char *name, int argc, char **argv) {
    int any_filter = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        any_filter = 1;
        if (strstr(name, argv[i])) return 1;
    }
    return !any_filter;
}

static uint64_t parse_u64(const char *s, const char *what) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end) {
        fprintf(stderr, "bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *env;
    if ((env = getenv("TS_RING_STRESS_RECORDS")))
        g_stress_records = parse_u64(env, "TS_RING_STRESS_RECORDS");
    if ((env = getenv("TS_RING_SEED"))) g_seed = parse_u64(env, "TS_RING_SEED");
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--records=", 10)) {
            g_stress_records = parse_u64(argv[i] + 10, "--records");
        } else if (!strncmp(argv[i], "--seed=", 7)) {
            g_seed = parse_u64(argv[i] + 7, "--seed");
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--records=N] [--seed=S] [NAME...]\n", argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_watchdog);
    printf("test_ring: seed 0x%llx, %llu stress records\n", (unsigned long long)g_seed,
           (unsigned long long)g_stress_records);

    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++) {
        const test_case *t = &TESTS[i];
        if (!selected(t->name, argc, argv)) continue;
        g_current = t->name;
        g_test_failed = 0;
        if (t->watchdog_s) alarm(t->watchdog_s);
        int64_t t0 = now_ns();
        t->fn();
        double ms = (double)(now_ns() - t0) / 1e6;
        alarm(0);
        free_blocks();
        if (g_test_failed) g_failed++;
        else g_passed++;
        printf("%s %s (%.0f ms)\n", g_test_failed ? "FAIL" : "ok  ", t->name, ms);
    }
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
