/*
 * journal_common.c — the journal helpers shared by the writer (journal.c) and the reader
 * (journal_read.c); declared in journal_internal.h.
 */
#define _GNU_SOURCE
#include "journal_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint32_t ts_jn_record_crc(const ts_journal_record *r) {
    return ts_crc32c(0, (const unsigned char *)r + 4, REC - 4);
}

uint32_t ts_jn_header_crc(const ts_journal_header *h) {
    return ts_crc32c(0, h, offsetof(ts_journal_header, header_crc));
}

/* ---- errors, time, names -------------------------------------------------------------- */

int ts_jn_fail(ts_journal_error *err, int status, int sys_errno, const char *path,
                uint64_t offset, const char *fmt, ...) {
    if (!err) return status;
    err->status = status;
    err->sys_errno = sys_errno;
    err->offset = offset;
    snprintf(err->path, sizeof err->path, "%s", path ? path : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return status;
}

void ts_jn_clear_error(ts_journal_error *err) {
    if (!err) return;
    err->status = TS_JOURNAL_OK;
    err->sys_errno = 0;
    err->offset = 0;
    err->path[0] = 0;
    err->message[0] = 0;
}

int64_t ts_jn_real_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int ts_jn_segment_path(char *out, size_t cap, const char *dir, uint32_t shard, uint64_t seq) {
    int n = snprintf(out, cap, "%s/journal-%03u-%020llu.tsj", dir, shard, (unsigned long long)seq);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* "journal-SSS-QQQQQQQQQQQQQQQQQQQQ.tsj" → shard and first seq; 0 if it is one. */
int ts_jn_parse_segment_name(const char *name, uint32_t *shard, uint64_t *seq) {
    static const char prefix[] = "journal-";
    if (strlen(name) != 36 || strncmp(name, prefix, 8) != 0 || name[11] != '-' ||
        strcmp(name + 32, ".tsj") != 0)
        return -1;
    uint32_t s = 0;
    for (int i = 8; i < 11; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        s = s * 10 + (uint32_t)(name[i] - '0');
    }
    uint64_t q = 0;
    for (int i = 12; i < 32; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (q > (UINT64_MAX - d) / 10) return -1;
        q = q * 10 + d;
    }
    *shard = s;
    *seq = q;
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The first seqs of shard's segments in dir, ascending (malloc'ed; *count of them). */
int ts_jn_list_segments(const char *dir, uint32_t shard, uint64_t **out, uint32_t *count,
                         ts_journal_error *err) {
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return TS_JOURNAL_OK;
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, dir, 0, "cannot list journal directory %s: %s",
                    dir, strerror(errno));
    }
    uint64_t *seqs = NULL;
    uint32_t n = 0, cap = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        uint32_t s;
        uint64_t q;
        if (ts_jn_parse_segment_name(ent->d_name, &s, &q) != 0 || s != shard) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *grown = realloc(seqs, cap * sizeof *seqs);
            if (!grown) {
                free(seqs);
                closedir(d);
                return ts_jn_fail(err, TS_JOURNAL_ERR_NO_MEMORY, ENOMEM, dir, 0,
                            "out of memory listing %s", dir);
            }
            seqs = grown;
        }
        seqs[n++] = q;
    }
    closedir(d);
    if (n > 1) qsort(seqs, n, sizeof *seqs, cmp_u64);
    *out = seqs;
    *count = n;
    return TS_JOURNAL_OK;
}

int ts_jn_is_all_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

/* Check a header read from `path`; name_seq is the first seq its file name states. */
int ts_jn_check_header(const ts_journal_header *h, const char *path, int32_t expect_shard,
                        int has_name_seq, uint64_t name_seq, ts_journal_error *err) {
    if (h->magic != (uint64_t)TS_JOURNAL_MAGIC)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 0,
                    "%s is not a TradSys journal segment (bad magic at offset 0)", path);
    if (ts_jn_header_crc(h) != h->header_crc)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 60,
                    "%s: the segment header's checksum does not match (offset 60): the header "
                    "is damaged", path);
    if (h->version != TS_JOURNAL_VERSION)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 8,
                    "%s: journal format version %u, this build reads version %u", path,
                    h->version, TS_JOURNAL_VERSION);
    if (h->record_size != REC)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 24,
                    "%s: %u-byte records, this build expects %u", path, h->record_size, REC);
    if (h->layout_version != TS_LAYOUT_VERSION)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 28,
                    "%s: commands in wire layout %u, this build uses layout %u", path,
                    h->layout_version, TS_LAYOUT_VERSION);
    if (h->rules_version > TS_RULES_VERSION)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 40,
                    "%s: commands processed under matching rules version %u, this build "
                    "knows up to version %u: replay it with the build that wrote it", path,
                    h->rules_version, TS_RULES_VERSION);
    if (expect_shard >= 0 && h->shard_id != (uint32_t)expect_shard)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 12,
                    "%s belongs to shard %u, not shard %d", path, h->shard_id, expect_shard);
    if (h->first_seq == 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 16,
                    "%s: first seq 0 in the header (seqs start at 1)", path);
    if (has_name_seq && h->first_seq != name_seq)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 16,
                    "%s: the header says first seq %llu, the file name %llu", path,
                    (unsigned long long)h->first_seq, (unsigned long long)name_seq);
    return TS_JOURNAL_OK;
}
