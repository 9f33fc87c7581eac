/*
 * journal_read.c — the journal reader: the segment scanner, the replay into an engine,
 * and the truncation of a torn tail. See journal.h for the integrity rules.
 *
 * The replay maps each segment and walks it once: each record's crc is computed once,
 * its command copied into a batch, and the batch handed to the engine. A bad record
 * triggers a look-ahead over the rest of the file to tell a torn tail (nothing valid
 * after it) from corruption (something valid after it). Records wholly covered by the
 * snapshot are skipped without being read, which is what makes a restart cost only its
 * journal tail.
 */
#define _GNU_SOURCE
#include "journal_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_REPLAY_BATCH 4096u

/* ---- reading ---------------------------------------------------------------------------- */

/* A segment mapped read-only. */
typedef struct mapped {
    const unsigned char *base;
    uint64_t size;
    int fd;
} mapped;

static int map_file(const char *path, int sync_first, mapped *m, ts_journal_error *err) {
    m->base = NULL;
    m->size = 0;
    m->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (m->fd < 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, path, 0, "cannot open %s: %s", path,
                    strerror(errno));
    struct stat st;
    if (fstat(m->fd, &st) != 0) {
        int e = errno;
        close(m->fd);
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, e, path, 0, "cannot stat %s: %s", path, strerror(e));
    }
    /* fdatasync through a read-only descriptor is allowed and flushes the file's pages */
    if (sync_first && fdatasync(m->fd) != 0) {
        int e = errno;
        close(m->fd);
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, e, path, 0, "fdatasync of %s failed: %s", path,
                    strerror(e));
    }
    m->size = (uint64_t)st.st_size;
    if (m->size == 0) return TS_JOURNAL_OK;
    void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, m->fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(m->fd);
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, e, path, 0, "cannot map %s: %s", path, strerror(e));
    }
    madvise(p, m->size, MADV_SEQUENTIAL);
    m->base = p;
    return TS_JOURNAL_OK;
}

static void unmap_file(mapped *m) {
    if (m->base) munmap((void *)m->base, m->size);
    if (m->fd >= 0) close(m->fd);
    m->base = NULL;
    m->fd = -1;
}

/* Whether any whole record from byte `from` on has a matching crc. */
static int valid_record_after(const mapped *m, uint64_t from) {
    for (uint64_t off = from; off + REC <= m->size; off += REC) {
        const ts_journal_record *r = (const ts_journal_record *)(m->base + off);
        if (ts_jn_record_crc(r) == r->crc) return 1;
    }
    return 0;
}

/* The walk shared by the scanner and the replay. */
typedef struct walk {
    /* in */
    const char *path;
    int32_t expect_shard;
    int is_last;
    int has_name_seq;
    uint64_t name_seq;
    uint64_t start_seq;        /* walk from this seq (skipping whole records before it) */
    /* per valid record (NULL to only check) */
    int (*on_record)(void *ctx, const ts_journal_record *r);
    void *ctx;
    /* out */
    uint32_t shard_id;
    uint64_t first_seq;
    uint64_t records;          /* records up to and including the last valid one */
    uint64_t last_ring_index;
    uint32_t last_ring_id;
    int have_last;             /* a valid record was seen (so last_ring_* is set) */
    uint64_t valid_bytes;
} walk;

static int walk_segment(const mapped *m, walk *w, ts_journal_error *err) {
    w->records = 0;
    w->have_last = 0;
    w->valid_bytes = 0;
    w->first_seq = w->has_name_seq ? w->name_seq : 0;
    if (m->size < HDR || ts_jn_is_all_zero(m->base, HDR)) {
        /* A segment is made whole under a temporary name and renamed into place
         * (journal.c), so no crash leaves one without its header: a header missing from
         * any segment, the last one too, is damage, and the records it held may have been
         * acknowledged. Refused, never dropped as a torn tail. */
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, w->path, 0,
                    "%s: the segment header is %s (%llu bytes): segments are created whole, "
                    "so this is damage, not a crash's torn tail, and commands it held may "
                    "have been acknowledged (remove the file only if you accept losing them)",
                    w->path, m->size < HDR ? "incomplete" : "all zero bytes",
                    (unsigned long long)m->size);
    }
    const ts_journal_header *h = (const ts_journal_header *)m->base;
    int rc = ts_jn_check_header(h, w->path, w->expect_shard, w->has_name_seq, w->name_seq, err);
    if (rc) return rc;
    w->shard_id = h->shard_id;
    w->first_seq = h->first_seq;
    w->valid_bytes = HDR;
    uint64_t total = (m->size - HDR) / REC;
    uint64_t i = 0;
    if (w->start_seq > h->first_seq) {
        /* skip what the caller does not need, keeping one record back so the last valid
         * record's ring position is known even when nothing after start_seq exists */
        i = w->start_seq - h->first_seq - 1;
        if (i > total) i = total;
        if (i > 0) {
            w->records = i;
            w->valid_bytes = HDR + i * REC;
        }
    }
    for (; i < total; i++) {
        uint64_t off = HDR + i * REC;
        const ts_journal_record *r = (const ts_journal_record *)(m->base + off);
        uint64_t want = h->first_seq + i;
        if (ts_jn_record_crc(r) != r->crc) {
            if (valid_record_after(m, off + REC))
                return ts_jn_fail(err, TS_JOURNAL_ERR_CORRUPT, 0, w->path, off,
                            "%s: record at byte offset %llu (seq %llu) fails its checksum and "
                            "valid records follow it: the journal is corrupt, not torn",
                            w->path, (unsigned long long)off, (unsigned long long)want);
            if (!w->is_last)
                return ts_jn_fail(err, TS_JOURNAL_ERR_CORRUPT, 0, w->path, off,
                            "%s: record at byte offset %llu (seq %llu) fails its checksum in a "
                            "segment that is not the last one", w->path,
                            (unsigned long long)off, (unsigned long long)want);
            return ts_jn_fail(err, TS_JOURNAL_TORN_TAIL, 0, w->path, off,
                        "%s: torn tail from byte offset %llu (%llu bytes, first bad seq %llu)",
                        w->path, (unsigned long long)off, (unsigned long long)(m->size - off),
                        (unsigned long long)want);
        }
        if (r->seq != want)
            return ts_jn_fail(err, TS_JOURNAL_ERR_GAP, 0, w->path, off,
                        "%s: record at byte offset %llu has seq %llu where seq %llu belongs",
                        w->path, (unsigned long long)off, (unsigned long long)r->seq,
                        (unsigned long long)want);
        w->records = i + 1;
        w->valid_bytes = off + REC;
        w->last_ring_index = r->ring_index;
        w->last_ring_id = r->ring_id;
        w->have_last = 1;
        if (w->on_record && r->seq >= w->start_seq) {
            rc = w->on_record(w->ctx, r);
            if (rc) return rc;
        }
    }
    uint64_t end = HDR + total * REC;
    if (end < m->size) {
        if (!w->is_last)
            return ts_jn_fail(err, TS_JOURNAL_ERR_CORRUPT, 0, w->path, end,
                        "%s: partial record at byte offset %llu in a segment that is not the "
                        "last one", w->path, (unsigned long long)end);
        return ts_jn_fail(err, TS_JOURNAL_TORN_TAIL, 0, w->path, end,
                    "%s: torn tail from byte offset %llu (a partial record of %llu bytes)",
                    w->path, (unsigned long long)end, (unsigned long long)(m->size - end));
    }
    return TS_JOURNAL_OK;
}

int ts_journal_scan_file(const char *path, int32_t expect_shard, int is_last,
                         ts_journal_scan *out) {
    memset(out, 0, sizeof *out);
    ts_journal_error *err = &out->error;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    uint32_t name_shard;
    uint64_t name_seq;
    int has_name = ts_jn_parse_segment_name(base, &name_shard, &name_seq) == 0;
    mapped m;
    int rc = map_file(path, 0, &m, err);
    if (rc) return out->status = rc;
    walk w = {.path = path, .expect_shard = expect_shard, .is_last = is_last,
              .has_name_seq = has_name, .name_seq = name_seq};
    rc = walk_segment(&m, &w, err);
    unmap_file(&m);
    out->status = rc;
    out->shard_id = w.shard_id;
    out->first_seq = w.first_seq;
    out->records = w.records;
    out->last_seq = w.first_seq ? w.first_seq + w.records - 1 : 0;
    out->last_ring_index = w.last_ring_index;
    out->last_ring_id = w.last_ring_id;
    out->valid_bytes = w.valid_bytes;
    out->file_bytes = m.size;
    if (rc == TS_JOURNAL_OK) ts_jn_clear_error(err);
    return rc;
}

/* ---- replay ------------------------------------------------------------------------------ */

typedef struct replayer {
    ts_engine *engine;
    ts_command *batch;
    uint64_t cap;
    uint64_t n;
    uint64_t batch_first_seq;
    uint64_t upto_seq;
    uint64_t replayed;
    uint64_t first_replayed;
    ts_replay_batch_fn on_batch;
    void *ctx;
    ts_journal_error *err;
    const char *path;
    uint32_t seg_rules;   /* the rules version of the segment being read */
    uint32_t batch_rules; /* ... and of the commands batched (a batch never mixes two) */
} replayer;

static int flush_batch(replayer *rp) {
    if (rp->n == 0) return TS_JOURNAL_OK;
    ts_engine_set_rules(rp->engine, rp->batch_rules); /* checked with the segment header */
    uint64_t done = ts_engine_process(rp->engine, rp->batch, rp->n);
    if (done != rp->n)
        return ts_jn_fail(rp->err, TS_JOURNAL_ERR_ENGINE, ENOMEM, rp->path, 0,
                    "the engine ran out of memory replaying seq %llu",
                    (unsigned long long)(rp->batch_first_seq + done));
    if (rp->on_batch) rp->on_batch(rp->ctx, rp->engine, rp->batch_first_seq, rp->n);
    ts_engine_clear_output(rp->engine);
    rp->replayed += rp->n;
    rp->n = 0;
    return TS_JOURNAL_OK;
}

static int replay_record(void *ctx, const ts_journal_record *r) {
    replayer *rp = ctx;
    if (rp->upto_seq && r->seq > rp->upto_seq) return TS_JOURNAL_OK;
    if (rp->n && rp->batch_rules != rp->seg_rules) {
        int rc = flush_batch(rp);
        if (rc) return rc;
    }
    rp->batch_rules = rp->seg_rules;
    if (rp->n == 0) rp->batch_first_seq = r->seq;
    if (!rp->first_replayed) rp->first_replayed = r->seq;
    memcpy(&rp->batch[rp->n++], &r->cmd, sizeof(ts_command));
    return rp->n == rp->cap ? flush_batch(rp) : TS_JOURNAL_OK;
}

int ts_journal_replay(const char *dir, uint32_t shard_id, uint64_t after_seq, uint64_t upto_seq,
                      ts_engine *e, uint64_t batch, ts_replay_batch_fn on_batch, void *ctx,
                      int sync_first, ts_journal_replay_result *out) {
    memset(out, 0, sizeof *out);
    ts_journal_error *err = &out->error;
    if (!dir || !e)
        return out->status = ts_jn_fail(err, TS_JOURNAL_ERR_ARGUMENT, 0, dir, 0,
                                  "replay needs a directory and an engine");
    uint64_t *seqs;
    uint32_t n;
    int rc = ts_jn_list_segments(dir, shard_id, &seqs, &n, err);
    if (rc) return out->status = rc;
    if (n == 0) {
        free(seqs);
        return out->status = TS_JOURNAL_OK;
    }
    /* Start at the newest segment that holds record after_seq itself (so the position of
     * the last record is known even when nothing follows it), or at the first segment
     * when it starts right after after_seq; earlier segments are covered already. */
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (seqs[i] <= after_seq) k = i;
    char path[TS_JOURNAL_PATH_MAX];
    if (seqs[k] > after_seq + 1) {
        const uint64_t starts = seqs[k]; /* named before seqs is freed */
        ts_jn_segment_path(path, sizeof path, dir, shard_id, starts);
        free(seqs);
        return out->status = ts_jn_fail(err, TS_JOURNAL_ERR_GAP, 0, path, 0,
                                  "%s: the journal starts at seq %llu but seqs from %llu are "
                                  "needed (the state before it covers up to %llu): segments "
                                  "are missing",
                                  path, (unsigned long long)starts,
                                  (unsigned long long)(after_seq + 1),
                                  (unsigned long long)after_seq);
    }
    replayer rp = {.engine = e, .cap = batch ? batch : DEFAULT_REPLAY_BATCH,
                   .upto_seq = upto_seq, .on_batch = on_batch, .ctx = ctx, .err = err};
    rp.batch = malloc(rp.cap * sizeof(ts_command));
    if (!rp.batch) {
        free(seqs);
        return out->status = ts_jn_fail(err, TS_JOURNAL_ERR_NO_MEMORY, ENOMEM, dir, 0, "out of memory");
    }
    uint64_t expect_first = 0; /* 0: the first segment read may start anywhere <= after+1 */
    rc = TS_JOURNAL_OK;
    for (uint32_t i = k; i < n && rc == TS_JOURNAL_OK; i++) {
        ts_jn_segment_path(path, sizeof path, dir, shard_id, seqs[i]);
        rp.path = path;
        if (expect_first && seqs[i] != expect_first) {
            rc = ts_jn_fail(err, TS_JOURNAL_ERR_GAP, 0, path, 0,
                      "%s starts at seq %llu, but the segment before it ends at seq %llu: "
                      "seqs are missing between them", path, (unsigned long long)seqs[i],
                      (unsigned long long)(expect_first - 1));
            break;
        }
        mapped m;
        rc = map_file(path, sync_first, &m, err);
        if (rc) break;
        /* its commands replay under the rules they were processed under (the header is
         * checked, that version included, before the walk hands out any record) */
        rp.seg_rules = m.size >= HDR ? ((const ts_journal_header *)m.base)->rules_version : 0;
        walk w = {.path = path, .expect_shard = (int32_t)shard_id, .is_last = i == n - 1,
                  .has_name_seq = 1, .name_seq = seqs[i], .start_seq = after_seq + 1,
                  .on_record = replay_record, .ctx = &rp};
        rc = walk_segment(&m, &w, err);
        unmap_file(&m);
        out->segments++;
        if (w.have_last) {
            out->last_seq = w.first_seq + w.records - 1;
            out->last_ring_index = w.last_ring_index;
            out->last_ring_id = w.last_ring_id;
            out->last_ring_known = 1;
        } else if (w.first_seq > out->last_seq + 1) {
            /* an empty segment still says where the seqs stand, not where the ring does */
            out->last_seq = w.first_seq - 1;
            out->last_ring_known = 0;
        }
        expect_first = w.first_seq + w.records;
        if (rc == TS_JOURNAL_TORN_TAIL) {
            out->tail_valid_bytes = w.valid_bytes;
            out->tail_file_bytes = m.size;
        }
    }
    if (rc >= 0) {
        int frc = flush_batch(&rp);
        if (frc) rc = frc;
    }
    ts_engine_set_rules(e, TS_RULES_VERSION); /* what it processes live */
    free(rp.batch);
    free(seqs);
    out->replayed = rp.replayed;
    out->first_replayed_seq = rp.first_replayed;
    out->status = rc;
    if (rc == TS_JOURNAL_OK) ts_jn_clear_error(err);
    return rc;
}

int ts_journal_truncate(const char *path, uint64_t size, ts_journal_error *err) {
    ts_jn_clear_error(err);
    if (size < HDR) {
        /* nothing of the segment is valid, not even its header: remove the file */
        if (unlink(path) != 0 && errno != ENOENT)
            return ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, path, 0, "cannot remove %s: %s", path,
                        strerror(errno));
        return TS_JOURNAL_OK;
    }
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, path, size, "cannot open %s: %s", path,
                    strerror(errno));
    if (ftruncate(fd, (off_t)size) != 0 || fdatasync(fd) != 0) {
        int e = errno;
        close(fd);
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, e, path, size, "cannot truncate %s to %llu bytes: %s",
                    path, (unsigned long long)size, strerror(e));
    }
    close(fd);
    return TS_JOURNAL_OK;
}
