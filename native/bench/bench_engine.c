/*
 * bench_engine.c — the matching engine's per-command throughput and its memory per
 * resting order, measured without Python in the loop (perf/engine_bench.py drives it).
 *
 *   bench_engine run FILE [--reps=N] [--limit=N] [--batch=N]
 *       Load a workload file; per rep: a fresh engine, the file's instruments, the
 *       untimed prefix (book building, in batches of 4096), then the timed commands
 *       ONE per ts_engine_process call, reading the output counts and clearing the
 *       output after each, as a shard worker's loop does. --limit times only the first
 *       N commands after the prefix (a slice, for callgrind); --batch=N hands N
 *       commands to each call instead (the C side of the batch API, for comparison).
 *   bench_engine memory N [--levels=L] [--accounts=A] [--seed=S]
 *       N non-crossing resting orders (bids below 100000, asks above, power-law
 *       distances over L levels a side, A accounts), added in batches of 4096: the
 *       bytes the engine holds and the resident-set growth.
 *
 * Both print one JSON object on stdout. The timed stretch of `run` lies between calls
 * of bench_timed_begin() and bench_timed_end() (never inlined), so callgrind can count
 * just it: --zero-before=bench_timed_begin --dump-before=bench_timed_end.
 *
 * Workload file, little-endian, written by perf/_engine_workloads.py:
 *   header (64 bytes): magic "TSENGBN1", u32 version (1), u32 n_instruments,
 *                      u64 n_prefix, u64 n_commands (prefix included), 32 bytes zero
 *   n_instruments ts_instrument records (64 bytes each, book.h)
 *   n_commands ts_command records (64 bytes each, wire.h)
 */
#define _GNU_SOURCE
#include "../book.h"
#include "../wire.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILE_MAGIC "TSENGBN1"
#define FILE_VERSION 1u
#define PREFIX_BATCH 4096u
#define MAX_REPS 64

typedef struct file_header {
    char magic[8];
    uint32_t version;
    uint32_t n_instruments;
    uint64_t n_prefix;
    uint64_t n_commands;
    uint8_t _pad[32];
} file_header;

_Static_assert(sizeof(file_header) == 64, "the file header is 64 bytes");
_Static_assert(sizeof(ts_instrument) == 64, "ts_instrument is 64 bytes");
_Static_assert(sizeof(ts_command) == 64, "ts_command is 64 bytes");

/* Markers for callgrind; the empty asm keeps the calls from being optimised away. */
__attribute__((noinline)) void bench_timed_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void bench_timed_end(void) { __asm__ volatile("" ::: "memory"); }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int fail(const char *what, const char *detail) {
    fprintf(stderr, "bench_engine: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return 2;
}

static ts_engine *engine_with(const ts_instrument *ins, uint32_t n) {
    ts_engine *e = ts_engine_new();
    if (!e) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (ts_engine_add_instrument(e, &ins[i]) != TS_ENG_OK) {
            fprintf(stderr, "bench_engine: instrument %u (symbol %u) refused\n", i,
                    ins[i].symbol_id);
            ts_engine_free(e);
            return NULL;
        }
    }
    return e;
}

/* Apply commands in batches, discarding the output (untimed). */
static int apply_batched(ts_engine *e, const ts_command *c, uint64_t n) {
    for (uint64_t i = 0; i < n; i += PREFIX_BATCH) {
        uint64_t k = n - i < PREFIX_BATCH ? n - i : PREFIX_BATCH;
        if (ts_engine_process(e, c + i, k) != k) return -1;
        ts_engine_clear_output(e);
    }
    return 0;
}

/* ---- run: the per-command path over a workload file -------------------------------- */

static int cmd_run(const char *path, int reps, uint64_t limit, uint64_t batch) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail("cannot open", path);
    file_header h;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, FILE_MAGIC, 8) != 0 ||
        h.version != FILE_VERSION || h.n_prefix > h.n_commands || h.n_instruments == 0) {
        fclose(f);
        return fail("not a version-1 workload file (bad magic, version or counts)", path);
    }
    ts_instrument *ins = malloc(h.n_instruments * sizeof *ins);
    ts_command *cmds = malloc((h.n_commands ? h.n_commands : 1) * sizeof *cmds);
    if (!ins || !cmds) return fail("out of memory loading", path);
    if (fread(ins, sizeof *ins, h.n_instruments, f) != h.n_instruments ||
        fread(cmds, sizeof *cmds, h.n_commands, f) != h.n_commands) {
        fclose(f);
        return fail("workload file shorter than its header says", path);
    }
    fclose(f);

    const ts_command *timed = cmds + h.n_prefix;
    uint64_t n = h.n_commands - h.n_prefix;
    if (limit && limit < n) n = limit;

    double seconds[MAX_REPS];
    uint64_t events = 0, md = 0, live = 0, mem = 0;
    for (int rep = 0; rep < reps; rep++) {
        ts_engine *e = engine_with(ins, h.n_instruments);
        if (!e) return fail("cannot create the engine", NULL);
        if (apply_batched(e, cmds, h.n_prefix) != 0) return fail("out of memory in the prefix", NULL);
        uint64_t ev_n = 0, md_n = 0;
        const ts_event *ev;
        const ts_md *mp;
        bench_timed_begin();
        double t0 = now_s();
        for (uint64_t i = 0; i < n; i += batch) {
            uint64_t k = n - i < batch ? n - i : batch;
            if (ts_engine_process(e, &timed[i], k) != k) return fail("out of memory", NULL);
            ev_n += ts_engine_events(e, &ev);
            md_n += ts_engine_md(e, &mp);
            ts_engine_clear_output(e);
        }
        double t1 = now_s();
        bench_timed_end();
        seconds[rep] = t1 - t0;
        events = ev_n;
        md = md_n;
        live = ts_engine_live_orders(e);
        mem = ts_engine_memory_bytes(e);
        ts_engine_free(e);
    }
    printf("{\"mode\": \"run\", \"prefix\": %llu, \"commands\": %llu, \"batch\": %llu, "
           "\"seconds\": [",
           (unsigned long long)h.n_prefix, (unsigned long long)n, (unsigned long long)batch);
    for (int rep = 0; rep < reps; rep++) printf("%s%.9f", rep ? ", " : "", seconds[rep]);
    printf("], \"events\": %llu, \"md\": %llu, \"live_orders\": %llu, \"memory_bytes\": %llu}\n",
           (unsigned long long)events, (unsigned long long)md, (unsigned long long)live,
           (unsigned long long)mem);
    free(ins);
    free(cmds);
    return 0;
}

/* ---- memory: a big resting book ------------------------------------------------------ */

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static double uniform01(uint64_t *s) { /* (0, 1] */
    return ((double)(xorshift(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

static int cmd_memory(uint64_t n, uint32_t levels, uint32_t accounts, uint64_t seed) {
    const int64_t mid = 100000;
    ts_instrument ins;
    memset(&ins, 0, sizeof ins);
    ins.symbol_id = 1;
    ins.tick_size = 1;
    ins.lot_size = 100;
    ins.min_qty = 100;
    ins.reference_price = mid;
    ts_command *batch = calloc(PREFIX_BATCH, sizeof *batch);
    if (!batch) return fail("out of memory", NULL);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 88172645463325252ull;

    uint64_t rss0 = rss_bytes();
    ts_engine *e = engine_with(&ins, 1);
    if (!e) return fail("cannot create the engine", NULL);
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i += PREFIX_BATCH) {
        uint64_t k = n - i < PREFIX_BATCH ? n - i : PREFIX_BATCH;
        for (uint64_t j = 0; j < k; j++) {
            ts_command *c = &batch[j];
            uint64_t r = xorshift(&s);
            uint8_t side = r & 1 ? TS_SIDE_BUY : TS_SIDE_SELL;
            /* distance from the mid: Pareto(1.2), so the touch is deepest */
            double d = 1.0 + 4.0 * (pow(uniform01(&s), -1.0 / 1.2) - 1.0);
            int64_t dist = d >= (double)levels ? (int64_t)levels : (int64_t)d;
            c->kind = TS_CMD_NEW_ORDER;
            c->side = side;
            c->order_type = TS_ORD_LIMIT;
            c->tif = TS_TIF_GTC;
            c->symbol_id = 1;
            c->account_id = 1 + (uint32_t)((r >> 8) % accounts);
            c->order_id = i + j + 1;
            c->price = side == TS_SIDE_BUY ? mid - dist : mid + dist;
            c->quantity = (int64_t)(1 + (r >> 40) % 20) * 100;
        }
        if (ts_engine_process(e, batch, k) != k) return fail("out of memory", NULL);
        ts_engine_clear_output(e);
    }
    double t1 = now_s();
    uint64_t rss1 = rss_bytes();
    uint64_t live = ts_engine_live_orders(e);
    /* levels on each side: ask for more than there can be */
    uint32_t cap = 2 * levels + 16;
    ts_level *lv = malloc(cap * sizeof *lv);
    int nb = lv ? ts_engine_depth(e, 1, TS_SIDE_BUY, lv, cap) : -1;
    int na = lv ? ts_engine_depth(e, 1, TS_SIDE_SELL, lv, cap) : -1;
    free(lv);
    printf("{\"mode\": \"memory\", \"orders\": %llu, \"live_orders\": %llu, \"memory_bytes\": %llu, "
           "\"rss_growth_bytes\": %llu, \"bid_levels\": %d, \"ask_levels\": %d, "
           "\"accounts\": %u, \"build_seconds\": %.6f}\n",
           (unsigned long long)n, (unsigned long long)live,
           (unsigned long long)ts_engine_memory_bytes(e),
           (unsigned long long)(rss1 > rss0 ? rss1 - rss0 : 0), nb, na, accounts, t1 - t0);
    ts_engine_free(e);
    free(batch);
    return live == n ? 0 : fail("some orders did not rest", NULL);
}

/* ---- main ------------------------------------------------------------------------------ */

static int usage(void) {
    fprintf(stderr,
            "usage: bench_engine run FILE [--reps=N] [--limit=N] [--batch=N]\n"
            "       bench_engine memory N [--levels=L] [--accounts=A] [--seed=S]\n");
    return 1;
}

static int opt_u64(const char *arg, const char *name, uint64_t *out) {
    size_t len = strlen(name);
    if (strncmp(arg, name, len) != 0 || arg[len] != '=') return 0;
    char *end;
    *out = strtoull(arg + len + 1, &end, 10);
    return *end == '\0' ? 1 : -1;
}

int main(int argc, char **argv) {
    if (argc < 3) return usage();
    uint64_t reps = 1, limit = 0, batch = 1, levels = 2000, accounts = 10000, seed = 1;
    for (int i = 3; i < argc; i++) {
        int ok = opt_u64(argv[i], "--reps", &reps) | opt_u64(argv[i], "--limit", &limit) |
                 opt_u64(argv[i], "--batch", &batch) |
                 opt_u64(argv[i], "--levels", &levels) |
                 opt_u64(argv[i], "--accounts", &accounts) | opt_u64(argv[i], "--seed", &seed);
        if (ok != 1) {
            fprintf(stderr, "bench_engine: bad option %s\n", argv[i]);
            return usage();
        }
    }
    if (strcmp(argv[1], "run") == 0) {
        if (reps < 1 || reps > MAX_REPS) return fail("--reps must be 1..64", NULL);
        if (batch < 1) return fail("--batch must be at least 1", NULL);
        return cmd_run(argv[2], (int)reps, limit, batch);
    }
    if (strcmp(argv[1], "memory") == 0) {
        char *end;
        uint64_t n = strtoull(argv[2], &end, 10);
        if (*end || n == 0 || levels == 0 || levels > 1000000 || accounts == 0 ||
            accounts > UINT32_MAX)
            return usage();
        return cmd_memory(n, (uint32_t)levels, (uint32_t)accounts, seed);
    }
    return usage();
}
