/*
 * journal.c — the journal writer: segment files, append with a durability policy,
 * rotation. The scanner and the replay are in journal_read.c; journal.h has the format.
 *
 * Choices worth knowing:
 *  - One pwrite per batch at an offset the writer tracks itself: a failed or short write
 *    is undone with ftruncate to the old size, so a segment never keeps half a batch that
 *    the worker did not acknowledge (a crash mid-write can still leave one: that is the
 *    torn tail the scanner allows in the last segment).
 *  - fdatasync, not fsync: the size change of an appended file is data for fdatasync's
 *    purposes, and the timestamps are not worth a second journal write per sync.
 *  - A new segment is made whole under a temporary name (its header written and, unless
 *    NONE, synced) and linked into place, then the directory fsync'ed, before any record
 *    goes in: no crash leaves a segment without its header, so the scanner refuses one
 *    that lacks it as damage (journal_read.c) instead of dropping it as a torn tail.
 */
#define _GNU_SOURCE
#include "journal_internal.h"
#include "mono_clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- writing ---------------------------------------------------------------------------- */

struct ts_journal {
    char dir[TS_JOURNAL_PATH_MAX];
    char path[TS_JOURNAL_PATH_MAX];  /* the segment being appended to */
    ts_journal_config cfg;
    int fd;
    int dir_fd;
    uint64_t seg_bytes;
    uint64_t seg_first_seq;
    uint64_t next_seq;
    uint64_t written_seq;
    uint64_t synced_seq;
    int64_t last_sync_ns;
    uint64_t segments_opened;
    ts_journal_record *buf;
    uint64_t buf_cap;
};

static int sync_dir(ts_journal *j, ts_journal_error *err) {
    if (fsync(j->dir_fd) != 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, j->dir, 0, "fsync of directory %s failed: %s",
                    j->dir, strerror(errno));
    return TS_JOURNAL_OK;
}

static int create_segment(ts_journal *j, uint64_t first_seq, ts_journal_error *err) {
    if (ts_jn_segment_path(j->path, sizeof j->path, j->dir, j->cfg.shard_id, first_seq) != 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_ARGUMENT, 0, j->dir, 0, "journal path too long: %s",
                    j->dir);
    char tmp[TS_JOURNAL_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", j->path); /* not a segment name: never scanned */
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, j->path, 0,
                    "cannot create journal segment %s: %s", j->path, strerror(errno));
    ts_journal_header h;
    memset(&h, 0, sizeof h);
    h.magic = TS_JOURNAL_MAGIC;
    h.version = TS_JOURNAL_VERSION;
    h.shard_id = j->cfg.shard_id;
    h.first_seq = first_seq;
    h.record_size = REC;
    h.layout_version = TS_LAYOUT_VERSION;
    h.rules_version = TS_RULES_VERSION;
    h.created_ns = ts_jn_real_ns();
    h.header_crc = ts_jn_header_crc(&h);
    ssize_t w = pwrite(fd, &h, sizeof h, 0);
    int e = w == (ssize_t)sizeof h ? 0 : w < 0 ? errno : ENOSPC;
    const char *what = "write the header of";
    if (!e && j->cfg.durability != TS_DURABILITY_NONE && fdatasync(fd) != 0) {
        e = errno;
        what = "sync the header of";
    }
    /* link, not rename: an existing segment of that name is never replaced */
    if (!e && link(tmp, j->path) != 0) {
        e = errno;
        what = "link into place";
    }
    unlink(tmp);
    if (e) {
        close(fd);
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, e, j->path, 0, "cannot %s %s: %s", what,
                    j->path, strerror(e));
    }
    if (j->cfg.durability != TS_DURABILITY_NONE) {
        int rc = sync_dir(j, err);
        if (rc) {
            close(fd);
            return rc;
        }
    }
    j->fd = fd;
    j->seg_bytes = HDR;
    j->seg_first_seq = first_seq;
    j->segments_opened++;
    return TS_JOURNAL_OK;
}

/* Continue the last segment if it ends exactly at next_seq - 1; 1 if it did, 0 if a new
 * segment is needed, < 0 on error. */
static int try_continue(ts_journal *j, uint64_t first_seq, uint64_t next_seq,
                        ts_journal_error *err) {
    char path[TS_JOURNAL_PATH_MAX];
    if (ts_jn_segment_path(path, sizeof path, j->dir, j->cfg.shard_id, first_seq) != 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_ARGUMENT, 0, j->dir, 0, "journal path too long");
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, path, 0, "cannot open %s: %s", path,
                    strerror(errno));
    struct stat st;
    ts_journal_header h;
    if (fstat(fd, &st) != 0 || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
        int e = errno ? errno : EIO;
        close(fd);
        return ts_jn_fail(err, TS_JOURNAL_ERR_STATE, e, path, 0,
                    "%s has no complete header: recover the journal (truncate its torn tail) "
                    "before appending", path);
    }
    int rc = ts_jn_check_header(&h, path, (int32_t)j->cfg.shard_id, 1, first_seq, err);
    if (rc) {
        close(fd);
        return rc;
    }
    uint64_t size = (uint64_t)st.st_size;
    if ((size - HDR) % REC != 0) {
        close(fd);
        return ts_jn_fail(err, TS_JOURNAL_ERR_STATE, 0, path, size,
                    "%s ends with a partial record at offset %llu: recover the journal "
                    "(truncate its torn tail) before appending", path,
                    (unsigned long long)(HDR + (size - HDR) / REC * REC));
    }
    uint64_t last = first_seq + (size - HDR) / REC - 1;
    if (last >= next_seq) {
        close(fd);
        return ts_jn_fail(err, TS_JOURNAL_ERR_STATE, 0, path, size,
                    "%s already holds seqs up to %llu, but appending was asked to start at "
                    "%llu", path, (unsigned long long)last, (unsigned long long)next_seq);
    }
    /* a segment of other matching rules is not appended to: its header says how all of
     * its commands are to be replayed (an upgrade starts a segment of its own) */
    if (last + 1 != next_seq || size >= j->cfg.segment_bytes ||
        h.rules_version != TS_RULES_VERSION) {
        close(fd);
        return 0;
    }
    j->fd = fd;
    j->seg_bytes = size;
    j->seg_first_seq = first_seq;
    memcpy(j->path, path, sizeof path);
    j->segments_opened++;
    return 1;
}

ts_journal *ts_journal_open(const char *dir, const ts_journal_config *cfg, uint64_t next_seq,
                            ts_journal_error *err) {
    ts_jn_clear_error(err);
    if (!dir || !cfg || next_seq == 0 || cfg->shard_id > 999 ||
        cfg->durability < TS_DURABILITY_NONE || cfg->durability > TS_DURABILITY_FSYNC ||
        cfg->segment_bytes < HDR + REC) {
        ts_jn_fail(err, TS_JOURNAL_ERR_ARGUMENT, 0, dir, 0,
             "bad journal arguments: shard 0..999, durability 0..2, segment_bytes >= %u and "
             "next_seq >= 1 are required", HDR + REC);
        return NULL;
    }
    if (strlen(dir) + 40 >= TS_JOURNAL_PATH_MAX) {
        ts_jn_fail(err, TS_JOURNAL_ERR_ARGUMENT, 0, dir, 0, "journal directory path too long");
        return NULL;
    }
    ts_journal *j = calloc(1, sizeof *j);
    if (!j) {
        ts_jn_fail(err, TS_JOURNAL_ERR_NO_MEMORY, ENOMEM, dir, 0, "out of memory");
        return NULL;
    }
    snprintf(j->dir, sizeof j->dir, "%s", dir);
    j->cfg = *cfg;
    j->fd = -1;
    j->next_seq = next_seq;
    j->written_seq = j->synced_seq = next_seq - 1;
    j->last_sync_ns = INT64_MIN / 2;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, dir, 0, "cannot create journal directory %s: %s",
             dir, strerror(errno));
        free(j);
        return NULL;
    }
    j->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dir_fd < 0) {
        ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, dir, 0, "cannot open journal directory %s: %s",
             dir, strerror(errno));
        free(j);
        return NULL;
    }
    uint64_t *seqs;
    uint32_t n;
    int rc = ts_jn_list_segments(dir, cfg->shard_id, &seqs, &n, err);
    if (rc == TS_JOURNAL_OK && n > 0) rc = try_continue(j, seqs[n - 1], next_seq, err);
    if (rc == 0) rc = create_segment(j, next_seq, err);
    free(seqs);
    if (rc < 0) {
        close(j->dir_fd);
        free(j);
        return NULL;
    }
    ts_jn_clear_error(err);
    return j;
}

static int do_sync(ts_journal *j, ts_journal_error *err) {
    if (j->written_seq == j->synced_seq) return TS_JOURNAL_OK;
    if (fdatasync(j->fd) != 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, j->path, j->seg_bytes,
                    "fdatasync of %s failed: %s", j->path, strerror(errno));
    j->synced_seq = j->written_seq;
    j->last_sync_ns = ts_mono_ns();
    return TS_JOURNAL_OK;
}

int ts_journal_sync(ts_journal *j, ts_journal_error *err) { return do_sync(j, err); }

int ts_journal_sync_if_due(ts_journal *j, int64_t now_ns, ts_journal_error *err) {
    if (j->written_seq == j->synced_seq) return 0;
    if (now_ns - j->last_sync_ns < (int64_t)j->cfg.group_commit_ns) return 0;
    int rc = do_sync(j, err);
    return rc ? rc : 1;
}

int64_t ts_journal_sync_due_ns(const ts_journal *j) {
    if (j->cfg.durability != TS_DURABILITY_GROUP || j->written_seq == j->synced_seq)
        return INT64_MAX;
    return j->last_sync_ns + (int64_t)j->cfg.group_commit_ns;
}

uint64_t ts_journal_next_seq(const ts_journal *j) { return j->next_seq; }
uint64_t ts_journal_written_seq(const ts_journal *j) { return j->written_seq; }
uint64_t ts_journal_synced_seq(const ts_journal *j) { return j->synced_seq; }
uint64_t ts_journal_segments_opened(const ts_journal *j) { return j->segments_opened; }
int32_t ts_journal_durability(const ts_journal *j) { return j->cfg.durability; }

static int rotate(ts_journal *j, ts_journal_error *err) {
    if (j->cfg.durability != TS_DURABILITY_NONE) {
        int rc = do_sync(j, err);
        if (rc) return rc;
    }
    close(j->fd);
    j->fd = -1;
    return create_segment(j, j->next_seq, err);
}

int ts_journal_append(ts_journal *j, uint16_t ring_id, uint64_t first_ring_index,
                      const ts_command *cmds, uint64_t n, ts_journal_error *err) {
    if (n == 0) return TS_JOURNAL_OK;
    if (j->fd < 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_STATE, 0, j->dir, 0,
                    "the journal has no open segment after an earlier failure");
    if (j->seg_bytes >= j->cfg.segment_bytes && j->seg_bytes > HDR) {
        int rc = rotate(j, err);
        if (rc) return rc;
    }
    if (n > j->buf_cap) {
        uint64_t cap = j->buf_cap ? j->buf_cap : 256;
        while (cap < n) cap *= 2;
        ts_journal_record *grown = realloc(j->buf, cap * sizeof *grown);
        if (!grown)
            return ts_jn_fail(err, TS_JOURNAL_ERR_NO_MEMORY, ENOMEM, j->path, 0,
                        "out of memory for a batch of %llu records", (unsigned long long)n);
        j->buf = grown;
        j->buf_cap = cap;
    }
    for (uint64_t i = 0; i < n; i++) {
        ts_journal_record *r = &j->buf[i];
        r->ring_id = ring_id;
        r->_pad0 = 0;
        r->seq = j->next_seq + i;
        r->ring_index = first_ring_index + i;
        memcpy(&r->cmd, &cmds[i], sizeof r->cmd);
        r->crc = ts_jn_record_crc(r);
    }
    const unsigned char *p = (const unsigned char *)j->buf;
    size_t left = (size_t)n * REC;
    uint64_t off = j->seg_bytes;
    while (left) {
        ssize_t w = pwrite(j->fd, p, left, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            /* undo the partial batch so the segment still ends on a whole record */
            if (ftruncate(j->fd, (off_t)j->seg_bytes) != 0) {
                close(j->fd);
                j->fd = -1;
            }
            return ts_jn_fail(err, TS_JOURNAL_ERR_IO, e, j->path, j->seg_bytes,
                        "journal write to %s at offset %llu failed: %s; nothing of this batch "
                        "is journaled", j->path, (unsigned long long)j->seg_bytes, strerror(e));
        }
        p += w;
        off += (uint64_t)w;
        left -= (size_t)w;
    }
    j->seg_bytes = off;
    j->next_seq += n;
    j->written_seq = j->next_seq - 1;
    if (j->cfg.durability == TS_DURABILITY_FSYNC) return do_sync(j, err);
    return TS_JOURNAL_OK;
}

int ts_journal_close(ts_journal *j, ts_journal_error *err) {
    if (!j) return TS_JOURNAL_OK;
    ts_jn_clear_error(err);
    int rc = TS_JOURNAL_OK;
    if (j->fd >= 0) {
        if (j->cfg.durability != TS_DURABILITY_NONE) rc = do_sync(j, err);
        close(j->fd);
    }
    close(j->dir_fd);
    free(j->buf);
    free(j);
    return rc;
}
