/*
 * test_journal.c — the journal, snapshot files and worker loop, tested without Python
 * (see native/Makefile).
 *
 *   test_journal [--seed=S] [--bench=N] [NAME...]
 *
 * --bench=N journals N venue-like commands and times their replay into a fresh engine
 * (the recovery rate), instead of running the tests. NAME arguments run only the tests
 * whose name contains one. Each test works in its own temporary directory, removed after
 * it. The last line is always "N passed, M failed"; exit status 1 on failure.
 */
#define _GNU_SOURCE
#include "../book.h"
#include "../journal.h"
#include "../ring.h"
#include "../snapshot_file.h"
#include "../snapshot_writer.h"
#include "../wire.h"
#include "../worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- checks ------------------------------------------------------------------------ */

#include "check.h"
#include "engine1.h"
#include "tmpdir.h"

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t g_seed = 0x10adc0de;
static char g_dir[256];

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void make_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/tsj-test-XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void remove_dir(void) { tmpdir_remove(g_dir); }

static void seg_path(char *out, size_t cap, uint64_t first_seq) {
    snprintf(out, cap, "%s/journal-007-%020llu.tsj", g_dir, (unsigned long long)first_seq);
}

static int64_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static void flip_byte(const char *path, uint64_t offset) {
    int fd = open(path, O_RDWR);
    unsigned char b;
    if (fd < 0 || pread(fd, &b, 1, (off_t)offset) != 1) exit(2);
    b ^= 0x40;
    if (pwrite(fd, &b, 1, (off_t)offset) != 1) exit(2);
    close(fd);
}

static int count_files(const char *prefix) {
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *ent;
    while (d && (ent = readdir(d)) != NULL)
        if (strncmp(ent->d_name, prefix, strlen(prefix)) == 0) n++;
    if (d) closedir(d);
    return n;
}

/* A venue-like stream on symbol 1: limits near a drifting mid, cancels of orders that
 * were sent (some already gone: those get rejected, which is fine), IOCs, replaces. */
static ts_command *make_stream(uint64_t n, uint64_t seed) {
    ts_command *c = calloc(n, sizeof *c);
    uint64_t *sent = malloc(n * sizeof *sent);
    uint32_t *owner = malloc(n * sizeof *owner);
    if (!c || !sent || !owner) exit(2);
    uint64_t s = seed | 1, next_id = 1, n_sent = 0;
    int64_t mid = 100000;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = xorshift(&s);
        unsigned roll = (unsigned)(r % 100);
        if ((r >> 8) % 64 == 0) mid += (r >> 16) & 1 ? 1 : -1;
        ts_command *x = &c[i];
        x->symbol_id = 1;
        if (roll < 45 || n_sent < 50) {
            x->kind = TS_CMD_NEW_ORDER;
            x->side = (r >> 20) & 1 ? TS_SIDE_BUY : TS_SIDE_SELL;
            x->order_type = TS_ORD_LIMIT;
            x->tif = TS_TIF_GTC;
            int64_t dist = (int64_t)((r >> 24) % 8);
            x->price = x->side == TS_SIDE_BUY ? mid - dist : mid + dist;
            x->quantity = (int64_t)(1 + (r >> 32) % 20) * 100;
            x->account_id = (uint32_t)(1 + (r >> 40) % 50);
            x->order_id = next_id++;
            owner[n_sent] = x->account_id;
            sent[n_sent++] = x->order_id;
        } else if (roll < 80) {
            uint64_t k = (r >> 24) % n_sent;
            x->kind = TS_CMD_CANCEL;
            x->order_id = sent[k];
            x->account_id = owner[k];
        } else if (roll < 92) {
            x->kind = TS_CMD_NEW_ORDER;
            x->side = (r >> 20) & 1 ? TS_SIDE_BUY : TS_SIDE_SELL;
            x->order_type = TS_ORD_LIMIT;
            x->tif = TS_TIF_IOC;
            x->price = x->side == TS_SIDE_BUY ? mid + 2 : mid - 2;
            x->quantity = (int64_t)(1 + (r >> 32) % 10) * 100;
            x->account_id = (uint32_t)(1 + (r >> 40) % 50);
            x->order_id = next_id++;
        } else {
            uint64_t k = (r >> 24) % n_sent;
            x->kind = TS_CMD_REPLACE;
            x->order_id = sent[k];
            x->account_id = owner[k];
            x->price = mid + (int64_t)((r >> 36) % 5) - 2;
            x->quantity = (int64_t)(1 + (r >> 44) % 20) * 100;
        }
    }
    free(sent);
    free(owner);
    return c;
}

static ts_journal_config cfg_of(int durability, uint64_t segment_bytes) {
    ts_journal_config cfg = {.shard_id = 7, .durability = durability,
                             .segment_bytes = segment_bytes, .group_commit_ns = 1000000};
    return cfg;
}

/* Journal n commands in batches of `batch`; 0 on success. */
static int journal_stream(const ts_command *cmds, uint64_t n, uint64_t batch,
                          uint64_t segment_bytes, int durability) {
    ts_journal_error err;
    ts_journal_config cfg = cfg_of(durability, segment_bytes);
    ts_journal *j = ts_journal_open(g_dir, &cfg, 1, &err);
    if (!j) {
        fprintf(stderr, "open: %s\n", err.message);
        return -1;
    }
    for (uint64_t i = 0; i < n; i += batch) {
        uint64_t k = n - i < batch ? n - i : batch;
        if (ts_journal_append(j, 0, i, cmds + i, k, &err)) {
            fprintf(stderr, "append: %s\n", err.message);
            return -1;
        }
    }
    return ts_journal_close(j, &err);
}

/* Snapshot bytes of an engine (malloc'ed) and their length. */
static unsigned char *snap_of(const ts_engine *e, uint64_t *len) {
    *len = ts_engine_snapshot_size(e);
    unsigned char *b = malloc(*len);
    if (!b || ts_engine_snapshot(e, b, *len) != *len) exit(2);
    return b;
}

static int same_state(const ts_engine *a, const ts_engine *b) {
    uint64_t la, lb;
    unsigned char *sa = snap_of(a, &la), *sb = snap_of(b, &lb);
    int same = la == lb && memcmp(sa, sb, la) == 0;
    free(sa);
    free(sb);
    return same;
}

/* ---- crc ------------------------------------------------------------------------------ */

static void test_crc32c_vectors(void) {
    /* RFC 3720 (iSCSI) B.4 and the common check value */
    unsigned char buf[32];
    CHECK_EQ(ts_crc32c(0, "123456789", 9), 0xE3069283u);
    memset(buf, 0, 32);
    CHECK_EQ(ts_crc32c(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, 32);
    CHECK_EQ(ts_crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) buf[i] = (unsigned char)i;
    CHECK_EQ(ts_crc32c(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) buf[i] = (unsigned char)(31 - i);
    CHECK_EQ(ts_crc32c(0, buf, 32), 0x113FDB5Cu);
    CHECK_EQ(ts_crc32c(0, "", 0), 0);
    /* chaining equals one pass, at every split and alignment */
    unsigned char big[100];
    for (int i = 0; i < 100; i++) big[i] = (unsigned char)(i * 37 + 11);
    uint32_t whole = ts_crc32c(0, big, 100);
    for (int split = 0; split <= 100; split++)
        CHECK_EQ(ts_crc32c(ts_crc32c(0, big, (size_t)split), big + split, (size_t)(100 - split)),
                 whole);
    for (int off = 1; off < 8; off++) {
        uint32_t a = ts_crc32c(0, big + off, 50);
        unsigned char copy[50];
        memcpy(copy, big + off, 50);
        CHECK_EQ(ts_crc32c(0, copy, 50), a);
    }
}

/* ---- journal --------------------------------------------------------------------------- */

static void test_append_scan(void) {
    ts_command *cmds = make_stream(1000, g_seed);
    CHECK_EQ(journal_stream(cmds, 1000, 37, 1 << 30, TS_DURABILITY_FSYNC), 0);
    char path[512];
    seg_path(path, sizeof path, 1);
    CHECK_EQ(file_size(path), TS_JOURNAL_HEADER_SIZE + 1000 * TS_JOURNAL_RECORD_SIZE);
    ts_journal_scan *scan = malloc(sizeof *scan);
    CHECK_EQ(ts_journal_scan_file(path, 7, 1, scan), TS_JOURNAL_OK);
    CHECK_EQ(scan->records, 1000);
    CHECK_EQ(scan->first_seq, 1);
    CHECK_EQ(scan->last_seq, 1000);
    CHECK_EQ(scan->last_ring_index, 999);
    CHECK_EQ(scan->shard_id, 7);
    /* the wrong shard is refused with the header offset of the field */
    CHECK_EQ(ts_journal_scan_file(path, 3, 1, scan), TS_JOURNAL_ERR_HEADER);
    CHECK_EQ(scan->error.offset, 12);
    free(scan);
    free(cmds);
}

static void test_reopen_continues(void) {
    ts_command *cmds = make_stream(300, g_seed);
    ts_journal_error err;
    ts_journal_config cfg = cfg_of(TS_DURABILITY_NONE, 1 << 30);
    ts_journal *j = ts_journal_open(g_dir, &cfg, 1, &err);
    CHECK(j);
    CHECK_EQ(ts_journal_append(j, 0, 0, cmds, 100, &err), 0);
    CHECK_EQ(ts_journal_close(j, &err), 0);
    /* asking for the wrong next seq is refused, the right one continues the segment */
    CHECK(!ts_journal_open(g_dir, &cfg, 50, &err));
    CHECK_EQ(err.status, TS_JOURNAL_ERR_STATE);
    j = ts_journal_open(g_dir, &cfg, 101, &err);
    CHECK(j);
    CHECK_EQ(ts_journal_append(j, 0, 100, cmds + 100, 200, &err), 0);
    CHECK_EQ(ts_journal_next_seq(j), 301);
    CHECK_EQ(ts_journal_close(j, &err), 0);
    CHECK_EQ(count_files("journal-"), 1);
    ts_engine *a = engine1(), *b = engine1();
    ts_journal_replay_result *res = malloc(sizeof *res);
    CHECK_EQ(ts_journal_replay(g_dir, 7, 0, 0, a, 0, NULL, NULL, 0, res), TS_JOURNAL_OK);
    CHECK_EQ(res->replayed, 300);
    CHECK_EQ(ts_engine_process(b, cmds, 300), 300);
    CHECK(same_state(a, b));
    ts_engine_free(a);
    ts_engine_free(b);
    free(res);
    free(cmds);
}

static void test_torn_tail(void) {
    ts_command *cmds = make_stream(500, g_seed);
    CHECK_EQ(journal_stream(cmds, 500, 64, 1 << 30, TS_DURABILITY_NONE), 0);
    char path[512];
    seg_path(path, sizeof path, 1);
    uint64_t full = TS_JOURNAL_HEADER_SIZE + 500 * TS_JOURNAL_RECORD_SIZE;
    /* cut the last record short: a torn tail in the last segment, corruption elsewhere */
    CHECK_EQ(truncate(path, (off_t)(full - 30)), 0);
    ts_journal_scan *scan = malloc(sizeof *scan);
    CHECK_EQ(ts_journal_scan_file(path, 7, 1, scan), TS_JOURNAL_TORN_TAIL);
    CHECK_EQ(scan->records, 499);
    CHECK_EQ(scan->valid_bytes, full - TS_JOURNAL_RECORD_SIZE);
    CHECK_EQ(scan->error.offset, full - TS_JOURNAL_RECORD_SIZE);
    CHECK_EQ(ts_journal_scan_file(path, 7, 0, scan), TS_JOURNAL_ERR_CORRUPT);
    /* replay takes the 499 valid ones and reports the tail; append refuses to continue */
    ts_engine *a = engine1(), *b = engine1();
    ts_journal_replay_result *res = malloc(sizeof *res);
    CHECK_EQ(ts_journal_replay(g_dir, 7, 0, 0, a, 0, NULL, NULL, 0, res), TS_JOURNAL_TORN_TAIL);
    CHECK_EQ(res->replayed, 499);
    CHECK_EQ(res->last_seq, 499);
    CHECK_EQ(res->tail_valid_bytes, full - TS_JOURNAL_RECORD_SIZE);
    CHECK(strstr(res->error.path, "journal-007-00000000000000000001.tsj") != NULL);
    ts_journal_error err;
    ts_journal_config cfg = cfg_of(TS_DURABILITY_NONE, 1 << 30);
    CHECK(!ts_journal_open(g_dir, &cfg, 500, &err));
    CHECK_EQ(err.status, TS_JOURNAL_ERR_STATE);
    /* after the truncation everything is clean, and appending goes on from seq 500 */
    CHECK_EQ(ts_journal_truncate(path, res->tail_valid_bytes, &err), 0);
    CHECK_EQ(ts_journal_scan_file(path, 7, 1, scan), TS_JOURNAL_OK);
    ts_journal *j = ts_journal_open(g_dir, &cfg, 500, &err);
    CHECK(j);
    CHECK_EQ(ts_journal_append(j, 0, 499, cmds + 499, 1, &err), 0);
    CHECK_EQ(ts_journal_close(j, &err), 0);
    CHECK_EQ(ts_journal_replay(g_dir, 7, 0, 0, a, 0, NULL, NULL, 0, res), TS_JOURNAL_OK);
    CHECK_EQ(ts_engine_process(b, cmds, 500), 500);
    ts_engine_free(a);
    a = engine1();
    CHECK_EQ(ts_journal_replay(g_dir, 7, 0, 0, a, 0, NULL, NULL, 0, res), TS_JOURNAL_OK);
    CHECK(same_state(a, b));
    /* whole garbage records running to EOF are a torn tail too */
    int fd = open(path, O_WRONLY | O_APPEND);
    unsigned char junk[3 * TS_JOURNAL_RECORD_SIZE];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 7 + 1);
    CHECK_EQ(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    CHECK_EQ(ts_journal_scan_file(path, 7, 1, scan), TS_JOURNAL_TORN_TAIL);
    CHECK_EQ(scan->records, 500);
    ts_engine_free(a);
    ts_engine_free(b);
    free(res);
    free(scan);
    free(cmds);
}

static void test_flipped_byte(void) {
    ts_command *cmds = make_stream(400, g_seed);
    CHECK_EQ(journal_stream(cmds, 400, 100, 1 << 30, TS_DURABILITY_NONE), 0);
    char path[512];
    seg_path(path, sizeof path, 1);
    uint64_t rec = 200; /* a record in the middle: valid records follow it */
    uint64_t off = TS_JOURNAL_HEADER_SIZE + rec * TS_JOURNAL_RECORD_SIZE;
    flip_byte(path, off + 40);
    ts_journal_scan *scan = malloc(sizeof *scan);
    CHECK_EQ(ts_journal_scan_file(path, 7, 1, scan), TS_JOURNAL_ERR_CORRUPT);
    CHECK_EQ(scan->error.offset, off);
    CHECK_EQ(scan->records, rec);
    char want[64];
    snprintf(want, sizeof want, "offset %llu", (unsigned long long)off);
    CHECK(strstr(scan->error.message, want) != NULL);
    ts_engine *a = engine1();
    ts_journal_replay_result *res = malloc(sizeof *res);
    CHECK_EQ(ts_journal_replay(g_dir, 7, 0, 0, a, 0, NULL, NULL, 0, res), TS_JOURNAL_ERR_CORRUPT);
    CHECK_EQ(res->error.offset, off);
    /* a flipped header byte is refused at the header */
    flip_byte(path, off + 40);
    flip_byte(path, 20);
    CHECK_EQ(ts_journal_scan_file(path, 7, 1, scan), TS_JOURNAL_ERR_HEADER);
    ts_engine_free(a);
    free(res);
    free(scan);
    free(cmds);
}

static void test_seq_gap(void) {
    ts_command *cmds = make_stream(100, g_seed);
    CHECK_EQ(journal_stream(cmds, 100, 100, 1 << 30, TS_DURABILITY_NONE), 0);
    char path[512];
    seg_path(path, sizeof path, 1);
    /* rewrite record 50 with seq 60 and a correct crc: a gap, not a checksum failure */
    uint64_t off = TS_JOURNAL_HEADER_SIZE + 50 * TS_JOURNAL_RECORD_SIZE;
    ts_journal_record r;
    int fd = open(path, O_RDWR);
    CHECK_EQ(pread(fd, &r, sizeof r, (off_t)off), (ssize_t)sizeof r);
    r.seq = 60;
    r.crc = ts_crc32c(0, (unsigned char *)&r + 4, sizeof r - 4);
    CHECK_EQ(pwrite(fd, &r, sizeof r, (off_t)off), (ssize_t)sizeof r);
    close(fd);
    ts_journal_scan *scan = malloc(sizeof *scan);
    CHECK_EQ(ts_journal_scan_file(path, 7, 1, scan), TS_JOURNAL_ERR_GAP);
    CHECK_EQ(scan->error.offset, off);
    free(scan);
    free(cmds);
}

static void test_rotation(void) {
    const uint64_t n = 5000;
    ts_command *cmds = make_stream(n, g_seed);
    /* ~100 records per segment */
    uint64_t seg = TS_JOURNAL_HEADER_SIZE + 100 * TS_JOURNAL_RECORD_SIZE;
    CHECK_EQ(journal_stream(cmds, n, 33, seg, TS_DURABILITY_GROUP), 0);
    int files = count_files("journal-007-");
    CHECK(files >= 30); /* rotation happens at the batch that passes the size */
    ts_engine *a = engine1(), *b = engine1();
    ts_journal_replay_result *res = malloc(sizeof *res);
    CHECK_EQ(ts_journal_replay(g_dir, 7, 0, 0, a, 128, NULL, NULL, 0, res), TS_JOURNAL_OK);
    CHECK_EQ(res->replayed, n);
    CHECK_EQ(res->segments, (uint64_t)files);
    CHECK_EQ(res->last_seq, n);
    CHECK_EQ(res->last_ring_index, n - 1);
    CHECK_EQ(ts_engine_process(b, cmds, n), n);
    CHECK(same_state(a, b));
    /* a flipped byte in a middle segment's LAST record is corruption, not a torn tail */
    char path[512];
    seg_path(path, sizeof path, 1);
    int64_t size = file_size(path);
    flip_byte(path, (uint64_t)size - 10);
    ts_engine_free(a);
    a = engine1();
    CHECK_EQ(ts_journal_replay(g_dir, 7, 0, 0, a, 0, NULL, NULL, 0, res), TS_JOURNAL_ERR_CORRUPT);
    CHECK_EQ(res->error.offset, (uint64_t)size - TS_JOURNAL_RECORD_SIZE);
    flip_byte(path, (uint64_t)size - 10);
    /* a missing middle segment is a gap */
    char second[512];
    DIR *d = opendir(g_dir);
    struct dirent *ent;
    uint64_t first_after_1 = UINT64_MAX;
    while ((ent = readdir(d)) != NULL) {
        unsigned long long q;
        unsigned s;
        if (sscanf(ent->d_name, "journal-%3u-%20llu.tsj", &s, &q) == 2 && q > 1 &&
            q < first_after_1)
            first_after_1 = q;
    }
    closedir(d);
    CHECK(first_after_1 != UINT64_MAX);
    seg_path(second, sizeof second, first_after_1);
    CHECK_EQ(unlink(second), 0);
    ts_engine_free(a);
    a = engine1();
    CHECK_EQ(ts_journal_replay(g_dir, 7, 0, 0, a, 0, NULL, NULL, 0, res), TS_JOURNAL_ERR_GAP);
    /* with the first segment gone too, the error names where the journal now starts
     * (read before the list of segments was freed: ASan saw the old code read it after) */
    seg_path(second, sizeof second, 1);
    CHECK_EQ(unlink(second), 0);
    uint64_t starts = UINT64_MAX;
    d = opendir(g_dir);
    while ((ent = readdir(d)) != NULL) {
        unsigned long long q;
        unsigned s;
        if (sscanf(ent->d_name, "journal-%3u-%20llu.tsj", &s, &q) == 2 && q < starts) starts = q;
    }
    closedir(d);
    char want[96];
    snprintf(want, sizeof want, "the journal starts at seq %llu but", (unsigned long long)starts);
    ts_engine_free(a);
    a = engine1();
    CHECK_EQ(ts_journal_replay(g_dir, 7, 0, 0, a, 0, NULL, NULL, 0, res), TS_JOURNAL_ERR_GAP);
    CHECK(strstr(res->error.message, want) != NULL);
    ts_engine_free(a);
    ts_engine_free(b);
    free(res);
    free(cmds);
}

static void test_snapshot_and_tail(void) {
    const uint64_t n = 6000, at = 3500;
    ts_command *cmds = make_stream(n, g_seed);
    uint64_t seg = TS_JOURNAL_HEADER_SIZE + 700 * TS_JOURNAL_RECORD_SIZE;
    CHECK_EQ(journal_stream(cmds, n, 100, seg, TS_DURABILITY_NONE), 0);
    ts_engine *a = engine1();
    CHECK_EQ(ts_engine_process(a, cmds, at), at);
    ts_engine_clear_output(a);
    ts_journal_error err;
    CHECK_EQ(ts_snapfile_write(g_dir, 7, at, 1234, a, &err), 0);
    char spath[512];
    snprintf(spath, sizeof spath, "%s/snapshot-007-%020llu.tss", g_dir, (unsigned long long)at);
    ts_snapfile_header h;
    uint64_t last_exec = 0;
    ts_engine *r = ts_snapfile_load(spath, 7, &h, &last_exec, &err);
    CHECK(r);
    CHECK_EQ(h.seq, at);
    CHECK_EQ(h.md_count, 1234);
    CHECK(last_exec > 0);
    CHECK(same_state(a, r));
    ts_journal_replay_result *res = malloc(sizeof *res);
    CHECK_EQ(ts_journal_replay(g_dir, 7, at, 0, r, 0, NULL, NULL, 0, res), TS_JOURNAL_OK);
    CHECK_EQ(res->replayed, n - at);
    CHECK_EQ(res->first_replayed_seq, at + 1);
    ts_engine *full = engine1();
    CHECK_EQ(ts_journal_replay(g_dir, 7, 0, 0, full, 0, NULL, NULL, 0, res), TS_JOURNAL_OK);
    CHECK(same_state(full, r));
    /* damage in a segment wholly covered by the snapshot does not matter to the tail */
    char path[512];
    seg_path(path, sizeof path, 1);
    flip_byte(path, 200);
    ts_engine_free(r);
    r = ts_snapfile_load(spath, 7, &h, &last_exec, &err);
    CHECK_EQ(ts_journal_replay(g_dir, 7, at, 0, r, 0, NULL, NULL, 0, res), TS_JOURNAL_OK);
    CHECK(same_state(full, r));
    /* a damaged snapshot payload is refused with its offset */
    flip_byte(spath, TS_SNAPFILE_HEADER_SIZE + 100);
    CHECK(!ts_snapfile_load(spath, 7, &h, &last_exec, &err));
    CHECK_EQ(err.status, TS_JOURNAL_ERR_CORRUPT);
    CHECK_EQ(err.offset, TS_SNAPFILE_HEADER_SIZE);
    CHECK(!ts_snapfile_load(spath, 8, &h, &last_exec, &err));
    ts_engine_free(a);
    ts_engine_free(r);
    ts_engine_free(full);
    free(res);
    free(cmds);
}

static void test_group_commit(void) {
    ts_command *cmds = make_stream(10, g_seed);
    ts_journal_error err;
    ts_journal_config cfg = cfg_of(TS_DURABILITY_GROUP, 1 << 30);
    cfg.group_commit_ns = 3600ll * 1000000000ll; /* an hour: only the first sync is due */
    ts_journal *j = ts_journal_open(g_dir, &cfg, 1, &err);
    CHECK(j);
    CHECK_EQ(ts_journal_sync_due_ns(j), INT64_MAX);
    CHECK_EQ(ts_journal_append(j, 0, 0, cmds, 5, &err), 0);
    CHECK_EQ(ts_journal_written_seq(j), 5);
    CHECK_EQ(ts_journal_synced_seq(j), 0);
    CHECK_EQ(ts_journal_sync_if_due(j, now_ns(), &err), 1); /* never synced: due at once */
    CHECK_EQ(ts_journal_synced_seq(j), 5);
    CHECK_EQ(ts_journal_append(j, 0, 5, cmds + 5, 5, &err), 0);
    CHECK_EQ(ts_journal_sync_if_due(j, now_ns(), &err), 0);
    CHECK(ts_journal_sync_due_ns(j) > now_ns());
    CHECK_EQ(ts_journal_synced_seq(j), 5);
    CHECK_EQ(ts_journal_sync(j, &err), 0);
    CHECK_EQ(ts_journal_synced_seq(j), 10);
    CHECK_EQ(ts_journal_close(j, &err), 0);
    free(cmds);
}

/* ---- worker ------------------------------------------------------------------------------ */

typedef struct rig {
    ts_ring *in, *ev, *md;
    ts_worker_control *ctl;
} rig;

static ts_ring *heap_ring(uint64_t capacity) {
    size_t size = ts_ring_bytes_needed(TS_RECORD_SIZE, capacity);
    void *mem = NULL;
    if (posix_memalign(&mem, 128, size) != 0) exit(2);
    if (ts_ring_init(mem, size, TS_RECORD_SIZE, capacity, TS_LAYOUT_VERSION, 1, 2)) exit(2);
    return mem;
}

static rig rig_new(void) {
    rig r = {heap_ring(1 << 14), heap_ring(1 << 16), heap_ring(1 << 16), NULL};
    if (posix_memalign((void **)&r.ctl, 128, sizeof *r.ctl) != 0) exit(2);
    ts_worker_control_init(r.ctl, 7);
    return r;
}

static void rig_free(rig *r) {
    free(r->in);
    free(r->ev);
    free(r->md);
    free(r->ctl);
}

/* One worker incarnation: recover from the journal alone (no snapshot), open it. */
static ts_worker *incarnation(rig *r, ts_engine *e, int durability, uint64_t group_ns,
                              ts_journal **j_out, ts_journal_replay_result *res) {
    ts_worker_config wc = {.shard_id = 7, .max_batch = 64,
                           .wait = {TS_WAIT_SPIN_YIELD, 16, 0, 0}};
    ts_worker *w = ts_worker_new(&wc, e, r->in, r->ev, r->md, r->ctl);
    if (!w) exit(2);
    if (ts_worker_recover(w, g_dir, 0, 0, 0, durability != TS_DURABILITY_NONE, res) < 0) {
        fprintf(stderr, "recover: %s\n", res->error.message);
        exit(2);
    }
    ts_journal_error err;
    ts_journal_config cfg = cfg_of(durability, 1 << 20);
    cfg.group_commit_ns = group_ns;
    *j_out = ts_journal_open(g_dir, &cfg, ts_worker_seq(w) + 1, &err);
    if (!*j_out) {
        fprintf(stderr, "open: %s\n", err.message);
        exit(2);
    }
    ts_worker_set_journal(w, *j_out);
    return w;
}

static uint64_t drain(ts_ring *r, ts_event *out, uint64_t at, uint64_t cap) {
    uint64_t k;
    while (at < cap && (k = ts_ring_pop(r, out + at, cap - at)) > 0) at += k;
    return at;
}

static void test_worker_matches_engine(void) {
    const uint64_t n = 20000;
    ts_command *cmds = make_stream(n, g_seed);
    ts_engine *ref = engine1();
    CHECK_EQ(ts_engine_process(ref, cmds, n), n);
    const ts_event *ref_ev;
    const ts_md *ref_md;
    uint64_t n_ev = ts_engine_events(ref, &ref_ev), n_md = ts_engine_md(ref, &ref_md);
    rig r = rig_new();
    ts_engine *e = engine1();
    ts_journal *j;
    ts_journal_replay_result *res = malloc(sizeof *res);
    ts_worker *w = incarnation(&r, e, TS_DURABILITY_GROUP, 200000, &j, res);
    CHECK_EQ(r.ctl->base_set, 1);
    ts_event *got = malloc((n_ev + 16) * sizeof *got);
    ts_md *got_md = malloc((n_md + 16) * sizeof *got_md);
    uint64_t pushed = 0, n_got = 0, n_got_md = 0;
    int64_t give_up = now_ns() + 20000000000ll;
    while ((n_got < n_ev || n_got_md < n_md) && now_ns() < give_up) {
        if (pushed < n) pushed += ts_ring_push(r.in, cmds + pushed, n - pushed);
        CHECK(ts_worker_run(w, 1000000) >= 0);
        n_got = drain(r.ev, got, n_got, n_ev + 16);
        n_got_md = drain(r.md, (ts_event *)got_md, n_got_md, n_md + 16);
    }
    CHECK_EQ(n_got, n_ev);
    CHECK_EQ(n_got_md, n_md);
    CHECK(memcmp(got, ref_ev, n_ev * sizeof *got) == 0);
    CHECK(memcmp(got_md, ref_md, n_md * sizeof *got_md) == 0);
    CHECK_EQ(r.ctl->processed_seq, n);
    CHECK_EQ(r.ctl->acked_seq, n);
    /* a stop: drained, synced, a final snapshot that equals the reference */
    r.ctl->stop_requested = 1;
    int st;
    while ((st = ts_worker_run(w, 1000000)) == TS_WORKER_SLICE_END) {
    }
    CHECK_EQ(st, TS_WORKER_STOP);
    CHECK_EQ(ts_worker_snapshot(w, g_dir), 0);
    CHECK_EQ(r.ctl->synced_seq, n);
    char spath[512];
    snprintf(spath, sizeof spath, "%s/snapshot-007-%020llu.tss", g_dir, (unsigned long long)n);
    ts_snapfile_header h;
    uint64_t last_exec;
    ts_journal_error err;
    ts_engine *snap = ts_snapfile_load(spath, 7, &h, &last_exec, &err);
    CHECK(snap);
    CHECK_EQ(h.md_count, n_md);
    CHECK_EQ(last_exec, ref_ev[n_ev - 1].exec_id);
    CHECK(same_state(snap, ref));
    ts_engine_free(snap);
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);
    ts_engine_free(ref);
    rig_free(&r);
    free(got);
    free(got_md);
    free(res);
    free(cmds);
}

/*
 * The two crash windows, made deterministic:
 *  A. output held for a group commit that never came (an hour's interval), then the
 *     process "dies": the next incarnation must re-emit exactly those events and md;
 *  B. commands journaled but not yet released from the ring (as if killed between the
 *     write and the release): the next incarnation must skip them in the ring, and emit
 *     their events from the replay.
 */
static void test_worker_crash_windows(void) {
    const uint64_t n = 3000;
    ts_command *cmds = make_stream(n, g_seed ^ 0x55);
    ts_engine *ref = engine1();
    CHECK_EQ(ts_engine_process(ref, cmds, n), n);
    const ts_event *ref_ev;
    const ts_md *ref_md;
    uint64_t n_ev = ts_engine_events(ref, &ref_ev), n_md = ts_engine_md(ref, &ref_md);
    rig r = rig_new();
    ts_journal_replay_result *res = malloc(sizeof *res);
    ts_event *got = malloc((n_ev + 16) * sizeof *got);
    ts_md *got_md = malloc((n_md + 16) * sizeof *got_md);
    uint64_t n_got = 0, n_got_md = 0;
    ts_journal_error err;

    /* incarnation 1 runs the first 1000 normally (GROUP, a short interval) */
    ts_engine *e = engine1();
    ts_journal *j;
    ts_worker *w = incarnation(&r, e, TS_DURABILITY_GROUP, 1000, &j, res);
    CHECK_EQ(ts_ring_push(r.in, cmds, 1000), 1000);
    while (r.ctl->acked_seq < 1000) CHECK(ts_worker_run(w, 1000000) >= 0);
    n_got = drain(r.ev, got, n_got, n_ev);
    n_got_md = drain(r.md, (ts_event *)got_md, n_got_md, n_md);
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);

    /* incarnation 2: an hour's group interval; its output after the first sync is held */
    e = engine1();
    w = incarnation(&r, e, TS_DURABILITY_GROUP, 3600ll * 1000000000ll, &j, res);
    CHECK_EQ(res->replayed, 1000);
    CHECK_EQ(r.ctl->reemitted_events, 0);
    CHECK_EQ(ts_ring_push(r.in, cmds + 1000, 1), 1);
    while (r.ctl->processed_seq < 1001) CHECK(ts_worker_run(w, 1000000) >= 0);
    CHECK_EQ(ts_ring_push(r.in, cmds + 1001, 999), 999);
    while (r.ctl->processed_seq < 2000) CHECK(ts_worker_run(w, 1000000) >= 0);
    CHECK(r.ctl->acked_seq < 2000);
    n_got = drain(r.ev, got, n_got, n_ev);
    n_got_md = drain(r.md, (ts_event *)got_md, n_got_md, n_md);
    /* "killed": nothing more of it runs (its journal fd is simply dropped) */
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);

    /* B: 500 commands pushed and journaled by "someone" that dies before releasing them */
    CHECK_EQ(ts_ring_push(r.in, cmds + 2000, 1000), 1000);
    ts_journal_config cfg = cfg_of(TS_DURABILITY_NONE, 1 << 20);
    j = ts_journal_open(g_dir, &cfg, 2001, &err);
    CHECK(j);
    CHECK_EQ(ts_journal_append(j, 0, 2000, cmds + 2000, 500, &err), 0);
    ts_journal_close(j, &err);

    /* incarnation 3 re-emits the held output and B's, skips B in the ring, takes the rest */
    e = engine1();
    w = incarnation(&r, e, TS_DURABILITY_FSYNC, 0, &j, res);
    CHECK_EQ(res->replayed, 2500);
    CHECK_EQ(r.ctl->intake_skipped, 500);
    CHECK(r.ctl->reemitted_events > 0);
    while (r.ctl->acked_seq < n) {
        CHECK(ts_worker_run(w, 1000000) >= 0);
        n_got = drain(r.ev, got, n_got, n_ev + 16);
        n_got_md = drain(r.md, (ts_event *)got_md, n_got_md, n_md + 16);
    }
    n_got = drain(r.ev, got, n_got, n_ev + 16);
    n_got_md = drain(r.md, (ts_event *)got_md, n_got_md, n_md + 16);
    CHECK_EQ(n_got, n_ev);
    CHECK_EQ(n_got_md, n_md);
    for (uint64_t i = 0; i < n_got; i++) CHECK_EQ(got[i].exec_id, i + 1);
    CHECK(memcmp(got, ref_ev, n_ev * sizeof *got) == 0);
    CHECK(memcmp(got_md, ref_md, n_md * sizeof *got_md) == 0);
    CHECK(same_state(e, ref));
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);
    ts_engine_free(ref);
    rig_free(&r);
    free(got);
    free(got_md);
    free(res);
    free(cmds);
}

/* The record at absolute index `index` of a heap ring, read or not. */
static const ts_event *ring_record(ts_ring *r, uint64_t index) {
    ts_ring_info info;
    ts_ring_read_info(r, &info);
    return (const ts_event *)((const unsigned char *)r + TS_RING_HEADER_SIZE +
                              (index & (info.capacity - 1)) * info.slot_size);
}

/*
 * A run killed whole: its rings and its control block die with it. Its worker pushed
 * events that the consumer read only in part, then held output for a group commit that
 * never came. The next run's rings are new; what its supervisor carries over (the unread
 * records, and the exec id of the last event pushed) must let the next worker complete
 * the stream: every event once, in exec-id order, as the reference made them.
 */
static void test_worker_after_a_run_killed_whole(void) {
    const uint64_t n = 3000;
    ts_command *cmds = make_stream(n, g_seed ^ 0x77);
    ts_engine *ref = engine1();
    CHECK_EQ(ts_engine_process(ref, cmds, n), n);
    const ts_event *ref_ev;
    const ts_md *ref_md;
    uint64_t n_ev = ts_engine_events(ref, &ref_ev), n_md = ts_engine_md(ref, &ref_md);
    ts_journal_replay_result *res = malloc(sizeof *res);
    ts_event *got = malloc((n_ev + 16) * sizeof *got);
    ts_md *got_md = malloc((n_md + 16) * sizeof *got_md);
    ts_event *sink = malloc(((uint64_t)1 << 16) * sizeof *sink);
    uint64_t n_got = 0, n_got_md = 0;
    ts_journal_error err;

    /* the dead run: 1000 commands acknowledged, of whose events half are read ... */
    rig dead = rig_new();
    ts_engine *e = engine1();
    ts_journal *j;
    ts_worker *w = incarnation(&dead, e, TS_DURABILITY_GROUP, 1000, &j, res);
    CHECK_EQ(ts_ring_push(dead.in, cmds, 1000), 1000);
    while (dead.ctl->acked_seq < 1000) CHECK(ts_worker_run(w, 1000000) >= 0);
    ts_ring_info info;
    ts_ring_read_info(dead.ev, &info);
    CHECK(info.head > 2);
    n_got = ts_ring_pop(dead.ev, got, info.head / 2);
    ts_ring_read_info(dead.md, &info); /* and its md sidecar about half of the md */
    n_got_md = ts_ring_pop(dead.md, (ts_event *)got_md, info.head / 2);
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);
    /* ... then 1000 more journaled, their output held for a sync that never comes */
    e = engine1();
    w = incarnation(&dead, e, TS_DURABILITY_GROUP, 3600ll * 1000000000ll, &j, res);
    CHECK_EQ(ts_ring_push(dead.in, cmds + 1000, 1), 1);
    while (dead.ctl->processed_seq < 1001) CHECK(ts_worker_run(w, 1000000) >= 0);
    CHECK_EQ(ts_ring_push(dead.in, cmds + 1001, 999), 999);
    while (dead.ctl->processed_seq < 2000) CHECK(ts_worker_run(w, 1000000) >= 0);
    CHECK(dead.ctl->acked_seq < 2000);
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);

    /* the next run's supervisor: new rings and block, the unread records carried */
    rig next = rig_new();
    ts_ring_read_info(dead.ev, &info);
    next.ctl->inherited_exec_id = ring_record(dead.ev, info.head - 1)->exec_id;
    next.ctl->inherited_set = TS_INHERITED_EVENTS;
    uint64_t k = ts_ring_pop(dead.ev, sink, (uint64_t)1 << 16);
    CHECK_EQ(k, info.head - n_got);
    CHECK_EQ(ts_ring_push(next.ev, sink, k), k);
    /* md: the engine records the dead run pushed (no refresh: all of its ring), and the
     * unread ones carried */
    ts_ring_read_info(dead.md, &info);
    next.ctl->inherited_md = info.head;
    k = ts_ring_pop(dead.md, sink, (uint64_t)1 << 16);
    CHECK_EQ(ts_ring_push(next.md, sink, k), k);
    next.ctl->inherited_md_carried = k;
    next.ctl->inherited_set |= TS_INHERITED_MD;

    e = engine1();
    w = incarnation(&next, e, TS_DURABILITY_FSYNC, 0, &j, res);
    CHECK_EQ(res->replayed, 2000);
    CHECK(next.ctl->reemitted_events > 0);
    CHECK(next.ctl->reemitted_md > 0);
    CHECK_EQ(next.ctl->base_set, 1);
    CHECK_EQ(ts_ring_push(next.in, cmds + 2000, n - 2000), n - 2000);
    while (next.ctl->acked_seq < n) {
        CHECK(ts_worker_run(w, 1000000) >= 0);
        n_got = drain(next.ev, got, n_got, n_ev + 16);
        n_got_md = drain(next.md, (ts_event *)got_md, n_got_md, n_md + 16);
    }
    n_got = drain(next.ev, got, n_got, n_ev + 16);
    n_got_md = drain(next.md, (ts_event *)got_md, n_got_md, n_md + 16);
    CHECK_EQ(n_got, n_ev);
    for (uint64_t i = 0; i < n_got; i++) CHECK_EQ(got[i].exec_id, i + 1);
    CHECK(memcmp(got, ref_ev, n_ev * sizeof *got) == 0);
    CHECK_EQ(n_got_md, n_md); /* every md record once, in order */
    CHECK(memcmp(got_md, ref_md, n_md * sizeof *got_md) == 0);
    /* a restart within the next run re-sends nothing more: base_md counts right */
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);
    e = engine1();
    w = incarnation(&next, e, TS_DURABILITY_FSYNC, 0, &j, res);
    CHECK_EQ(next.ctl->reemitted_events, 0);
    CHECK_EQ(next.ctl->reemitted_md, 0);
    CHECK(same_state(e, ref));
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);
    ts_engine_free(ref);
    rig_free(&dead);
    rig_free(&next);
    free(got);
    free(got_md);
    free(sink);
    free(res);
    free(cmds);
}

/* ---- background snapshots ------------------------------------------------------------ */

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

static void snap_paths(char *path, char *tmp, size_t cap, uint64_t seq) {
    ts_snapfile_path(path, cap, g_dir, 7, seq, 0);
    ts_snapfile_path(tmp, cap, g_dir, 7, seq, 1);
}

/* Wait (with a deadline, never a fixed sleep) until the writer reaches `phase`. */
static int wait_phase(ts_snapwriter *sw, int phase) {
    int64_t give_up = now_ns() + 10000000000ll;
    while (ts_snapwriter_phase(sw) != phase)
        if (now_ns() > give_up) return 0;
    return 1;
}

static void test_snapwriter_gates(void) {
    ts_engine *a = engine1();
    ts_command *cmds = make_stream(500, g_seed);
    CHECK_EQ(ts_engine_process(a, cmds, 500), 500);
    ts_engine_clear_output(a);
    ts_journal_error err;
    ts_snapwriter *sw = ts_snapwriter_new(g_dir, 7, &err);
    CHECK(sw);
    uint64_t pushed = 0, durable = 0;
    ts_snapwriter_job job = {.seq = 500, .md_count = 42, .pushed_seq = &pushed,
                             .durable_seq = &durable, .tag = 3};
    CHECK_EQ(ts_snapfile_serialize(a, &job.payload, &job.payload_bytes, &err), 0);
    CHECK_EQ(ts_snapwriter_submit(sw, &job), 0);
    /* a second job while one is in flight is refused; its payload stays ours */
    ts_snapwriter_job other = job;
    other.payload = NULL;
    CHECK_EQ(ts_snapwriter_submit(sw, &other), -1);
    CHECK(!ts_snapwriter_idle(sw));
    char path[512], tmp[512];
    snap_paths(path, tmp, sizeof path, 500);
    /* the .tmp is written, but nothing is renamed before both gates reach seq 500 */
    CHECK(wait_phase(sw, TS_SNAPWRITER_WAITING));
    CHECK(file_exists(tmp));
    CHECK(!file_exists(path));
    __atomic_store_n(&pushed, 500, __ATOMIC_RELEASE);
    __atomic_store_n(&durable, 499, __ATOMIC_RELEASE);
    ts_snapwriter_result res;
    CHECK_EQ(ts_snapwriter_poll(sw, &res), 0);
    CHECK(!file_exists(path));
    __atomic_store_n(&durable, 500, __ATOMIC_RELEASE);
    CHECK_EQ(ts_snapwriter_wait(sw, &res), 1);
    CHECK_EQ(res.status, TS_JOURNAL_OK);
    CHECK_EQ(res.seq, 500);
    CHECK_EQ(res.tag, 3);
    CHECK(res.write_ns > 0);
    CHECK(file_exists(path));
    CHECK(!file_exists(tmp));
    CHECK(ts_snapwriter_idle(sw));
    CHECK_EQ(ts_snapwriter_wait(sw, &res), 0); /* nothing in flight */
    ts_snapfile_header h;
    uint64_t last_exec;
    ts_engine *r = ts_snapfile_load(path, 7, &h, &last_exec, &err);
    CHECK(r);
    CHECK_EQ(h.seq, 500);
    CHECK_EQ(h.md_count, 42);
    CHECK(same_state(a, r));
    ts_engine_free(r);

    /* a job whose gate never opens: free cancels it, removes its .tmp, renames nothing */
    job.seq = 600;
    CHECK_EQ(ts_snapfile_serialize(a, &job.payload, &job.payload_bytes, &err), 0);
    CHECK_EQ(ts_snapwriter_submit(sw, &job), 0);
    snap_paths(path, tmp, sizeof path, 600);
    CHECK(wait_phase(sw, TS_SNAPWRITER_WAITING));
    CHECK(file_exists(tmp));
    ts_snapwriter_free(sw);
    CHECK(!file_exists(tmp));
    CHECK(!file_exists(path));
    ts_engine_free(a);
    free(cmds);
}

static void test_snapwriter_failure_and_none(void) {
    ts_engine *a = engine1();
    ts_journal_error err;
    /* NONE: no durable gate; the writer syncs the segments itself, then publishes */
    ts_command *cmds = make_stream(300, g_seed);
    CHECK_EQ(journal_stream(cmds, 300, 50, 1 << 20, TS_DURABILITY_NONE), 0);
    CHECK_EQ(ts_engine_process(a, cmds, 300), 300);
    ts_engine_clear_output(a);
    ts_snapwriter *sw = ts_snapwriter_new(g_dir, 7, &err);
    CHECK(sw);
    uint64_t pushed = 300;
    ts_snapwriter_job job = {.seq = 300, .pushed_seq = &pushed};
    CHECK_EQ(ts_snapfile_serialize(a, &job.payload, &job.payload_bytes, &err), 0);
    CHECK_EQ(ts_snapwriter_submit(sw, &job), 0);
    ts_snapwriter_result res;
    CHECK_EQ(ts_snapwriter_wait(sw, &res), 1);
    CHECK_EQ(res.status, TS_JOURNAL_OK);
    char path[512], tmp[512];
    snap_paths(path, tmp, sizeof path, 300);
    CHECK(file_exists(path));
    ts_snapwriter_free(sw);
    /* a directory that cannot take the file: the failure names the .tmp */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no-such-dir", g_dir);
    sw = ts_snapwriter_new(missing, 7, &err);
    CHECK(sw);
    job.seq = 301;
    CHECK_EQ(ts_snapfile_serialize(a, &job.payload, &job.payload_bytes, &err), 0);
    CHECK_EQ(ts_snapwriter_submit(sw, &job), 0);
    CHECK_EQ(ts_snapwriter_wait(sw, &res), 1);
    CHECK_EQ(res.status, TS_JOURNAL_ERR_IO);
    CHECK(strstr(res.err.message, "no-such-dir/snapshot-007-00000000000000000301.tss.tmp"));
    ts_snapwriter_free(sw);
    ts_engine_free(a);
    free(cmds);
}

/* Run the worker until `cond` holds (a deadline, no sleeps); fails on SNAPSHOT_DUE. */
#define RUN_UNTIL(w, cond)                                                                  \
    do {                                                                                    \
        int64_t give_up_ = now_ns() + 20000000000ll;                                        \
        while (!(cond)) {                                                                   \
            int st_ = ts_worker_run((w), 1000000);                                          \
            CHECK(st_ >= 0);                                                                \
            CHECK(st_ != TS_WORKER_SNAPSHOT_DUE);                                           \
            if (st_ == TS_WORKER_SNAPSHOT_WRITTEN) written++;                               \
            drain(r.ev, sink, 0, 1 << 14);                                                  \
            drain(r.md, sink, 0, 1 << 14);                                                  \
            CHECK(now_ns() < give_up_);                                                     \
        }                                                                                   \
    } while (0)

/* The worker keeps taking commands while its writer is held; the held snapshot is not
 * visible; released, it is published; a stop waits for one in flight, then writes its own. */
static void test_worker_background_snapshot(void) {
    const uint64_t n = 5000;
    ts_command *cmds = make_stream(n, g_seed ^ 0x77);
    ts_engine *ref = engine1();
    CHECK_EQ(ts_engine_process(ref, cmds, n), n);
    rig r = rig_new();
    ts_engine *e = engine1();
    ts_journal *j;
    ts_journal_replay_result *res = malloc(sizeof *res);
    ts_event *sink = malloc((1 << 14) * sizeof *sink);
    ts_worker_config wc = {.shard_id = 7, .max_batch = 64, .snapshot_every = 1000,
                           .wait = {TS_WAIT_SPIN_YIELD, 16, 0, 0}};
    ts_worker *w = ts_worker_new(&wc, e, r.in, r.ev, r.md, r.ctl);
    CHECK(w);
    CHECK_EQ(ts_worker_recover(w, g_dir, 0, 0, 0, 1, res), 0);
    ts_journal_error err;
    ts_journal_config cfg = cfg_of(TS_DURABILITY_GROUP, 1 << 20);
    cfg.group_commit_ns = 100000;
    j = ts_journal_open(g_dir, &cfg, 1, &err);
    CHECK(j);
    ts_worker_set_journal(w, j);
    CHECK_EQ(ts_worker_set_snapshots(w, g_dir, 1), 0);
    ts_worker_snapshot_hold(w, 1);
    int written = 0;
    uint64_t pushed = 0;
    while (pushed < 3000) {
        pushed += ts_ring_push(r.in, cmds + pushed, 3000 - pushed);
        RUN_UNTIL(w, r.ctl->processed_seq >= pushed);
    }
    char path[512], tmp[512];
    uint64_t first = r.ctl->snapshot_seq; /* 0: none yet */
    CHECK_EQ(first, 0);
    CHECK_EQ(written, 0);
    /* the one handed off at seq ~1000 is held; the ones due since waited for it */
    RUN_UNTIL(w, ts_worker_snapshot_phase(w) == TS_SNAPWRITER_WAITING);
    CHECK(r.ctl->snapshots_deferred >= 1);
    CHECK(r.ctl->snapshot_serialize_ns > 0);
    CHECK_EQ(r.ctl->snapshots_taken, 0);
    /* released: it becomes visible, the loop says so, and hands off the next one */
    ts_worker_snapshot_hold(w, 0);
    RUN_UNTIL(w, written >= 1);
    uint64_t s1 = r.ctl->snapshot_seq;
    CHECK(s1 >= 1000 && s1 < 1100);
    snap_paths(path, tmp, sizeof path, s1);
    CHECK(file_exists(path));
    CHECK_EQ(r.ctl->snapshots_taken, 1);
    /* a requested snapshot is served in the background too */
    RUN_UNTIL(w, ts_worker_snapshot_phase(w) == TS_SNAPWRITER_IDLE && r.ctl->snapshots_taken == 2);
    ts_worker_snapshot_hold(w, 1);
    __atomic_store_n(&r.ctl->snapshot_requests, 1u, __ATOMIC_RELEASE);
    CHECK_EQ(ts_ring_push(r.in, cmds + pushed, 1), 1);
    pushed++;
    RUN_UNTIL(w, ts_worker_snapshot_phase(w) == TS_SNAPWRITER_WAITING);
    uint64_t req_seq = r.ctl->processed_seq;
    CHECK_EQ(r.ctl->snapshots_served, 0);
    /* more commands while it is held, then a stop: it waits for the write, then its own */
    while (pushed < n) {
        pushed += ts_ring_push(r.in, cmds + pushed, n - pushed);
        RUN_UNTIL(w, r.ctl->processed_seq >= pushed);
    }
    CHECK(r.ctl->processed_seq > req_seq);
    ts_worker_snapshot_hold(w, 0);
    r.ctl->stop_requested = 1;
    int st;
    int64_t give_up = now_ns() + 20000000000ll;
    while ((st = ts_worker_run(w, 1000000)) != TS_WORKER_STOP) {
        CHECK(st >= 0 && st != TS_WORKER_SNAPSHOT_DUE);
        drain(r.ev, sink, 0, 1 << 14);
        drain(r.md, sink, 0, 1 << 14);
        CHECK(now_ns() < give_up);
    }
    CHECK_EQ(ts_worker_snapshot(w, g_dir), 0);
    CHECK_EQ(r.ctl->snapshots_served, 1);
    CHECK_EQ(r.ctl->snapshot_seq, n);
    snap_paths(path, tmp, sizeof path, n);
    CHECK(file_exists(path));
    ts_snapfile_header h;
    uint64_t last_exec;
    ts_engine *snap = ts_snapfile_load(path, 7, &h, &last_exec, &err);
    CHECK(snap);
    CHECK(same_state(snap, ref));
    ts_engine_free(snap);
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);
    ts_engine_free(ref);
    rig_free(&r);
    free(sink);
    free(res);
    free(cmds);
}

/* GROUP with an hour's interval: the snapshot waits for a sync that never comes; the
 * worker still takes commands, and ts_worker_free does not hang (the .tmp is removed). */
static void test_worker_free_cancels_a_waiting_write(void) {
    const uint64_t n = 400;
    ts_command *cmds = make_stream(n, g_seed ^ 0x99);
    rig r = rig_new();
    ts_engine *e = engine1();
    ts_journal *j;
    ts_journal_replay_result *res = malloc(sizeof *res);
    ts_event *sink = malloc((1 << 14) * sizeof *sink);
    ts_worker_config wc = {.shard_id = 7, .max_batch = 64, .snapshot_every = 100,
                           .wait = {TS_WAIT_SPIN_YIELD, 16, 0, 0}};
    ts_worker *w = ts_worker_new(&wc, e, r.in, r.ev, r.md, r.ctl);
    CHECK(w);
    CHECK_EQ(ts_worker_recover(w, g_dir, 0, 0, 0, 1, res), 0);
    ts_journal_error err;
    ts_journal_config cfg = cfg_of(TS_DURABILITY_GROUP, 1 << 20);
    cfg.group_commit_ns = 3600ll * 1000000000ll;
    j = ts_journal_open(g_dir, &cfg, 1, &err);
    CHECK(j);
    ts_worker_set_journal(w, j);
    CHECK_EQ(ts_worker_set_snapshots(w, g_dir, 1), 0);
    /* the first sync is due at once (never synced): take one command and let it pass */
    CHECK_EQ(ts_ring_push(r.in, cmds, 1), 1);
    int written = 0;
    RUN_UNTIL(w, r.ctl->synced_seq == 1);
    CHECK_EQ(ts_ring_push(r.in, cmds + 1, n - 1), n - 1);
    RUN_UNTIL(w, r.ctl->processed_seq == n);
    CHECK_EQ(r.ctl->synced_seq, 1);
    RUN_UNTIL(w, ts_worker_snapshot_phase(w) == TS_SNAPWRITER_WAITING);
    CHECK_EQ(written, 0);
    CHECK_EQ(count_files("snapshot-"), 1); /* its .tmp only */
    ts_worker_free(w);
    CHECK_EQ(count_files("snapshot-"), 0);
    ts_journal_close(j, &err);
    ts_engine_free(e);
    rig_free(&r);
    free(sink);
    free(res);
    free(cmds);
}

/* ---- fork-mode snapshots ------------------------------------------------------------- */

/* RUN_UNTIL, also counting SNAPSHOT_FAILED returns into `failed` */
#define FORK_RUN_UNTIL(w, cond)                                                             \
    do {                                                                                    \
        int64_t give_up_ = now_ns() + 20000000000ll;                                        \
        while (!(cond)) {                                                                   \
            int st_ = ts_worker_run((w), 1000000);                                          \
            CHECK(st_ >= 0);                                                                \
            CHECK(st_ != TS_WORKER_SNAPSHOT_DUE);                                           \
            if (st_ == TS_WORKER_SNAPSHOT_WRITTEN) written++;                               \
            if (st_ == TS_WORKER_SNAPSHOT_FAILED) failed++;                                 \
            drain(r.ev, sink, 0, 1 << 14);                                                  \
            drain(r.md, sink, 0, 1 << 14);                                                  \
            CHECK(now_ns() < give_up_);                                                     \
        }                                                                                   \
    } while (0)

static unsigned char *read_file(const char *path, uint64_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (uint64_t)n;
    return b;
}

/* A child of this process is gone for good (reaped: no zombie left behind). */
static int reaped(pid_t pid) {
    return waitpid(pid, NULL, WNOHANG) < 0 && errno == ECHILD;
}

/* A fork-mode worker for 7 under GROUP (100 µs commits) with snapshot_every 1000. */
static ts_worker *fork_worker(rig *r, ts_engine *e, ts_journal **j,
                              ts_journal_replay_result *res) {
    ts_worker_config wc = {.shard_id = 7, .max_batch = 64, .snapshot_every = 1000,
                           .wait = {TS_WAIT_SPIN_YIELD, 16, 0, 0}};
    ts_worker *w = ts_worker_new(&wc, e, r->in, r->ev, r->md, r->ctl);
    if (!w || ts_worker_recover(w, g_dir, 0, 0, 0, 1, res) != 0) exit(2);
    ts_journal_error err;
    ts_journal_config cfg = cfg_of(TS_DURABILITY_GROUP, 1 << 20);
    cfg.group_commit_ns = 100000;
    *j = ts_journal_open(g_dir, &cfg, 1, &err);
    if (!*j) exit(2);
    ts_worker_set_journal(w, *j);
    if (ts_worker_set_snapshots(w, g_dir, TS_SNAPSHOTS_FORK) != 0) exit(2);
    return w;
}

/* The child is held after its walk while the worker matches on; released, the
 * snapshot is published, byte for byte the file the inline path writes at that seq (but
 * the creation time and the header crc over it); the child is reaped. */
static void test_worker_fork_snapshot(void) {
    const uint64_t n = 4000;
    ts_command *cmds = make_stream(n, g_seed ^ 0x55);
    rig r = rig_new();
    ts_engine *e = engine1();
    ts_journal *j;
    ts_journal_replay_result *res = malloc(sizeof *res);
    ts_event *sink = malloc((1 << 14) * sizeof *sink);
    ts_worker *w = fork_worker(&r, e, &j, res);
    char hold[600];
    snprintf(hold, sizeof hold, "%s/hold", g_dir);
    FILE *hf = fopen(hold, "w");
    CHECK(hf);
    fclose(hf);
    ts_worker_snapshot_child_hooks(w, hold, 0);
    int written = 0, failed = 0;
    uint64_t pushed = 0;
    while (pushed < 1100) {
        pushed += ts_ring_push(r.in, cmds + pushed, 1100 - pushed);
        FORK_RUN_UNTIL(w, r.ctl->processed_seq >= pushed);
    }
    FORK_RUN_UNTIL(w, r.ctl->snapshot_child_pid != 0);
    const pid_t child = r.ctl->snapshot_child_pid;
    CHECK(r.ctl->snapshot_fork_ns > 0);
    /* held: the worker goes on matching while the child has not finished */
    while (pushed < 3000) {
        pushed += ts_ring_push(r.in, cmds + pushed, 3000 - pushed);
        FORK_RUN_UNTIL(w, r.ctl->processed_seq >= pushed);
    }
    CHECK_EQ(r.ctl->snapshot_child_pid, child);
    CHECK_EQ(written, 0);
    CHECK_EQ(r.ctl->snapshots_taken, 0);
    CHECK_EQ(count_files("snapshot-"), 0); /* the child writes no file */
    /* released: it is published, and the next one (due since) is forked after it */
    unlink(hold);
    FORK_RUN_UNTIL(w, written >= 1);
    CHECK_EQ(failed, 0);
    uint64_t s1 = r.ctl->snapshot_seq;
    CHECK(s1 >= 1000 && s1 < 1100);
    CHECK(r.ctl->snapshot_child_ns > 0);
    CHECK(reaped(child));
    char path[512], tmp[512];
    snap_paths(path, tmp, sizeof path, s1);
    uint64_t flen, ilen;
    unsigned char *fbytes = read_file(path, &flen);
    CHECK(fbytes);
    /* the inline path's file at s1, from an engine fed the same commands */
    ts_engine *ref = engine1();
    CHECK_EQ(ts_engine_process(ref, cmds, s1), s1);
    char idir[600];
    snprintf(idir, sizeof idir, "%s/inline", g_dir);
    CHECK_EQ(mkdir(idir, 0700), 0);
    ts_journal_error err;
    CHECK_EQ(ts_snapfile_write(idir, 7, s1, 0, ref, &err), 0);
    char ipath[700], itmp[700];
    ts_snapfile_path(ipath, sizeof ipath, idir, 7, s1, 0);
    ts_snapfile_path(itmp, sizeof itmp, idir, 7, s1, 1);
    unsigned char *ibytes = read_file(ipath, &ilen);
    CHECK(ibytes);
    CHECK_EQ(flen, ilen);
    /* header bytes 0..39 (magic .. layout) equal; md_count is the worker's own count */
    CHECK_EQ(memcmp(fbytes, ibytes, 40), 0);
    CHECK_EQ(memcmp(fbytes + TS_SNAPFILE_HEADER_SIZE, ibytes + TS_SNAPFILE_HEADER_SIZE,
                    flen - TS_SNAPFILE_HEADER_SIZE), 0);
    unlink(ipath);
    rmdir(idir);
    /* the rest flows; the stop waits for a child in flight, then writes its own */
    while (pushed < n) {
        pushed += ts_ring_push(r.in, cmds + pushed, n - pushed);
        FORK_RUN_UNTIL(w, r.ctl->processed_seq >= pushed);
    }
    r.ctl->stop_requested = 1;
    int st;
    int64_t give_up = now_ns() + 20000000000ll;
    while ((st = ts_worker_run(w, 1000000)) != TS_WORKER_STOP) {
        CHECK(st >= 0 && st != TS_WORKER_SNAPSHOT_DUE);
        drain(r.ev, sink, 0, 1 << 14);
        drain(r.md, sink, 0, 1 << 14);
        CHECK(now_ns() < give_up);
    }
    CHECK_EQ(ts_worker_snapshot(w, g_dir), 0);
    CHECK_EQ(r.ctl->snapshot_child_pid, 0);
    CHECK_EQ(r.ctl->snapshots_failed, 0);
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);
    ts_engine_free(ref);
    rig_free(&r);
    free(fbytes);
    free(ibytes);
    free(sink);
    free(res);
    free(cmds);
}

/* A child that exits non-zero: an error result naming it, no file left, the worker goes
 * on, and the next snapshot is written. */
static void test_worker_fork_child_failure(void) {
    const uint64_t n = 2600;
    ts_command *cmds = make_stream(n, g_seed ^ 0x56);
    rig r = rig_new();
    ts_engine *e = engine1();
    ts_journal *j;
    ts_journal_replay_result *res = malloc(sizeof *res);
    ts_event *sink = malloc((1 << 14) * sizeof *sink);
    ts_worker *w = fork_worker(&r, e, &j, res);
    ts_worker_snapshot_child_hooks(w, NULL, 1);
    int written = 0, failed = 0;
    uint64_t pushed = 0;
    while (pushed < 1100) {
        pushed += ts_ring_push(r.in, cmds + pushed, 1100 - pushed);
        FORK_RUN_UNTIL(w, r.ctl->processed_seq >= pushed);
    }
    FORK_RUN_UNTIL(w, failed == 1);
    CHECK_EQ(r.ctl->snapshots_failed, 1);
    CHECK(strstr(r.ctl->error, "ended without finishing it (exit status 4)"));
    CHECK(strstr(r.ctl->error, ".tss.tmp"));
    CHECK_EQ(count_files("snapshot-"), 0);
    CHECK_EQ(r.ctl->snapshot_child_pid, 0);
    CHECK_EQ(written, 0);
    /* the next periodic one works */
    while (pushed < n) {
        pushed += ts_ring_push(r.in, cmds + pushed, n - pushed);
        FORK_RUN_UNTIL(w, r.ctl->processed_seq >= pushed);
    }
    FORK_RUN_UNTIL(w, written == 1);
    CHECK_EQ(failed, 1);
    CHECK(r.ctl->snapshot_seq >= 2000);
    char path[512], tmp[512];
    snap_paths(path, tmp, sizeof path, r.ctl->snapshot_seq);
    CHECK(file_exists(path));
    ts_snapfile_header h;
    uint64_t last_exec;
    ts_journal_error err;
    ts_engine *snap = ts_snapfile_load(path, 7, &h, &last_exec, &err);
    CHECK(snap);
    ts_engine *ref = engine1();
    CHECK_EQ(ts_engine_process(ref, cmds, h.seq), h.seq);
    CHECK(same_state(snap, ref));
    ts_engine_free(snap);
    ts_engine_free(ref);
    ts_worker_free(w);
    ts_journal_close(j, &err);
    ts_engine_free(e);
    rig_free(&r);
    free(sink);
    free(res);
    free(cmds);
}

/* ts_worker_free while a child is held: it is killed and reaped, no file is left. */
static void test_worker_free_kills_a_held_child(void) {
    ts_command *cmds = make_stream(1100, g_seed ^ 0x57);
    rig r = rig_new();
    ts_engine *e = engine1();
    ts_journal *j;
    ts_journal_replay_result *res = malloc(sizeof *res);
    ts_event *sink = malloc((1 << 14) * sizeof *sink);
    ts_worker *w = fork_worker(&r, e, &j, res);
    char hold[600];
    snprintf(hold, sizeof hold, "%s/hold", g_dir);
    FILE *hf = fopen(hold, "w");
    CHECK(hf);
    fclose(hf);
    ts_worker_snapshot_child_hooks(w, hold, 0);
    int written = 0, failed = 0;
    uint64_t pushed = 0;
    while (pushed < 1100) {
        pushed += ts_ring_push(r.in, cmds + pushed, 1100 - pushed);
        FORK_RUN_UNTIL(w, r.ctl->processed_seq >= pushed);
    }
    FORK_RUN_UNTIL(w, r.ctl->snapshot_child_pid != 0);
    const pid_t child = r.ctl->snapshot_child_pid;
    CHECK(!reaped(child));
    ts_worker_free(w);
    CHECK(reaped(child));
    CHECK_EQ(count_files("snapshot-"), 0);
    unlink(hold);
    ts_journal_error err;
    ts_journal_close(j, &err);
    ts_engine_free(e);
    rig_free(&r);
    free(sink);
    free(res);
    free(cmds);
}

/* ---- bench ------------------------------------------------------------------------------ */

static int bench(uint64_t n) {
    make_dir();
    ts_command *cmds = make_stream(n, g_seed);
    int64_t t0 = now_ns();
    if (journal_stream(cmds, n, 256, 64ull << 20, TS_DURABILITY_NONE)) return 2;
    double append_s = (double)(now_ns() - t0) / 1e9;
    double best = 1e30, best_proc = 1e30;
    for (int round = 0; round < 3; round++) {
        ts_engine *e = engine1();
        ts_journal_replay_result res;
        t0 = now_ns();
        if (ts_journal_replay(g_dir, 7, 0, 0, e, 0, NULL, NULL, 0, &res) != 0) return 2;
        double s = (double)(now_ns() - t0) / 1e9;
        if (s < best) best = s;
        ts_engine_free(e);
        e = engine1();
        t0 = now_ns();
        for (uint64_t i = 0; i < n; i += 4096) {
            ts_engine_process(e, cmds + i, n - i < 4096 ? n - i : 4096);
            ts_engine_clear_output(e);
        }
        s = (double)(now_ns() - t0) / 1e9;
        if (s < best_proc) best_proc = s;
        ts_engine_free(e);
    }
    printf("bench: %llu commands journaled in %.3f s (%.2f M/s, durability none)\n",
           (unsigned long long)n, append_s, (double)n / append_s / 1e6);
    printf("bench: replay best of 3: %.3f s, %.2f M commands/s (engine alone: %.2f M/s)\n",
           best, (double)n / best / 1e6, (double)n / best_proc / 1e6);
    remove_dir();
    free(cmds);
    return 0;
}

/* ---- runner ------------------------------------------------------------------------------ */

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

static const test_case TESTS[] = {
    {"crc32c_vectors", test_crc32c_vectors},
    {"append_scan", test_append_scan},
    {"reopen_continues", test_reopen_continues},
    {"torn_tail", test_torn_tail},
    {"flipped_byte", test_flipped_byte},
    {"seq_gap", test_seq_gap},
    {"rotation", test_rotation},
    {"snapshot_and_tail", test_snapshot_and_tail},
    {"group_commit", test_group_commit},
    {"worker_matches_engine", test_worker_matches_engine},
    {"worker_crash_windows", test_worker_crash_windows},
    {"worker_after_a_run_killed_whole", test_worker_after_a_run_killed_whole},
    {"snapwriter_gates", test_snapwriter_gates},
    {"snapwriter_failure_and_none", test_snapwriter_failure_and_none},
    {"worker_background_snapshot", test_worker_background_snapshot},
    {"worker_free_cancels_a_waiting_write", test_worker_free_cancels_a_waiting_write},
    {"worker_fork_snapshot", test_worker_fork_snapshot},
    {"worker_fork_child_failure", test_worker_fork_child_failure},
    {"worker_free_kills_a_held_child", test_worker_free_kills_a_held_child},
};

static int selected(const char *name, int argc, char **argv) {
    int any = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        any = 1;
        if (strstr(name, argv[i])) return 1;
    }
    return !any;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--seed=", 7)) {
            g_seed = strtoull(argv[i] + 7, NULL, 0);
        } else if (!strncmp(argv[i], "--bench", 7)) {
            uint64_t n = argv[i][7] == '=' ? strtoull(argv[i] + 8, NULL, 0) : 5000000;
            return bench(n);
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--seed=S] [--bench[=N]] [NAME...]\n", argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("test_journal: seed 0x%llx\n", (unsigned long long)g_seed);
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++) {
        const test_case *t = &TESTS[i];
        if (!selected(t->name, argc, argv)) continue;
        make_dir();
        g_test_failed = 0;
        int64_t t0 = now_ns();
        t->fn();
        double ms = (double)(now_ns() - t0) / 1e6;
        remove_dir();
        if (g_test_failed) failed++;
        else passed++;
        printf("%s %s (%.0f ms)\n", g_test_failed ? "FAIL" : "ok  ", t->name, ms);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
