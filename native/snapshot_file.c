/*
 * snapshot_file.c — writing, checking and loading snapshot files (snapshot_file.h).
 *
 * Write order, and why: payload into a buffer (the engine's canonical bytes: serialize),
 * crc, header; then one writev to "<name>.tmp", fsync (write_tmp); rename over nothing
 * (names carry the seq, so a rename never replaces a good snapshot) and fsync of the
 * directory so the rename itself survives a power loss (publish). The steps are separate
 * functions because the worker serializes on its own thread (the state must be the one at
 * seq N) and leaves the rest to its background writer (snapshot_writer.h), which renames
 * only once the journal through N is durable.
 */
#define _GNU_SOURCE
#include "snapshot_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "journal_internal.h"

_Static_assert(sizeof(ts_snapfile_header) == TS_SNAPFILE_HEADER_SIZE, "snapshot header size");
_Static_assert(offsetof(ts_snapfile_header, header_crc) == 60, "snapshot header crc offset");

static uint32_t snap_header_crc(const ts_snapfile_header *h) {
    return ts_crc32c(0, h, offsetof(ts_snapfile_header, header_crc));
}

static int write_all(int fd, struct iovec *iov, int n) {
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? errno : ENOSPC;
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

int ts_snapfile_path(char *out, size_t cap, const char *dir, uint32_t shard_id, uint64_t seq,
                     int tmp) {
    if (!dir || shard_id > 999) return -1;
    int n = snprintf(out, cap, "%s/snapshot-%03u-%020llu.tss%s", dir, shard_id,
                     (unsigned long long)seq, tmp ? ".tmp" : "");
    /* the name without ".tmp" must fit an error's path too */
    size_t plain = (size_t)n - (tmp ? 4 : 0);
    return n > 0 && (size_t)n < cap && plain < TS_JOURNAL_PATH_MAX ? 0 : -1;
}

static int bad_arguments(const char *dir, ts_journal_error *err) {
    return ts_jn_fail(err, TS_JOURNAL_ERR_ARGUMENT, 0, dir ? dir : "", 0,
                      "bad snapshot arguments (shard 0..999, a directory path that fits)");
}

int ts_snapfile_serialize(const ts_engine *e, void **payload, uint64_t *size,
                          ts_journal_error *err) {
    ts_jn_clear_error(err);
    *payload = NULL;
    *size = 0;
    uint64_t n = ts_engine_snapshot_size(e);
    void *buf = malloc(n ? n : 1);
    if (!buf)
        return ts_jn_fail(err, TS_JOURNAL_ERR_NO_MEMORY, ENOMEM, "", 0,
                          "out of memory for a %llu-byte snapshot", (unsigned long long)n);
    if (ts_engine_snapshot(e, buf, n) != n) {
        free(buf);
        return ts_jn_fail(err, TS_JOURNAL_ERR_ENGINE, 0, "", 0, "the engine snapshot failed");
    }
    *payload = buf;
    *size = n;
    return TS_JOURNAL_OK;
}

int ts_snapfile_write_tmp(const char *dir, uint32_t shard_id, uint64_t seq, uint64_t md_count,
                          const void *payload, uint64_t size, ts_journal_error *err) {
    ts_jn_clear_error(err);
    char tmp[TS_JOURNAL_PATH_MAX + 8];
    if (ts_snapfile_path(tmp, sizeof tmp, dir, shard_id, seq, 1) != 0)
        return bad_arguments(dir, err);
    ts_snapfile_header h;
    memset(&h, 0, sizeof h);
    h.magic = TS_SNAPFILE_MAGIC;
    h.version = TS_SNAPFILE_VERSION;
    h.shard_id = shard_id;
    h.seq = seq;
    h.payload_bytes = size;
    h.payload_crc = ts_crc32c(0, payload, size);
    h.layout_version = TS_LAYOUT_VERSION;
    h.md_count = md_count;
    h.created_ns = ts_jn_real_ns();
    h.header_crc = snap_header_crc(&h);

    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, tmp, 0, "cannot create %s: %s", tmp,
                          strerror(errno));
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)payload, size}};
    int e_ = write_all(fd, iov, 2);
    if (!e_ && fsync(fd) != 0) e_ = errno;
    if (close(fd) != 0 && !e_) e_ = errno;
    if (e_) {
        unlink(tmp);
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, e_, tmp, 0, "cannot write snapshot %s: %s",
                          tmp, strerror(e_));
    }
    return TS_JOURNAL_OK;
}

int ts_snapfile_publish(const char *dir, uint32_t shard_id, uint64_t seq, ts_journal_error *err) {
    ts_jn_clear_error(err);
    char path[TS_JOURNAL_PATH_MAX], tmp[TS_JOURNAL_PATH_MAX + 8];
    if (ts_snapfile_path(path, sizeof path, dir, shard_id, seq, 0) != 0 ||
        ts_snapfile_path(tmp, sizeof tmp, dir, shard_id, seq, 1) != 0)
        return bad_arguments(dir, err);
    if (rename(tmp, path) != 0) {
        int e_ = errno;
        unlink(tmp);
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, e_, path, 0, "cannot rename %s into place: %s",
                          tmp, strerror(e_));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        int e_ = errno;
        if (dfd >= 0) close(dfd);
        return ts_jn_fail(err, TS_JOURNAL_ERR_IO, e_, dir, 0, "fsync of directory %s failed: %s",
                          dir, strerror(e_));
    }
    close(dfd);
    return TS_JOURNAL_OK;
}

void ts_snapfile_discard(const char *dir, uint32_t shard_id, uint64_t seq) {
    char tmp[TS_JOURNAL_PATH_MAX + 8];
    if (ts_snapfile_path(tmp, sizeof tmp, dir, shard_id, seq, 1) == 0) unlink(tmp);
}

int ts_snapfile_write_payload(const char *dir, uint32_t shard_id, uint64_t seq,
                              uint64_t md_count, const void *payload, uint64_t size,
                              ts_journal_error *err) {
    int rc = ts_snapfile_write_tmp(dir, shard_id, seq, md_count, payload, size, err);
    return rc ? rc : ts_snapfile_publish(dir, shard_id, seq, err);
}

int ts_snapfile_write(const char *dir, uint32_t shard_id, uint64_t seq, uint64_t md_count,
                      const ts_engine *e, ts_journal_error *err) {
    char path[TS_JOURNAL_PATH_MAX];
    if (ts_snapfile_path(path, sizeof path, dir, shard_id, seq, 0) != 0) {
        ts_jn_clear_error(err);
        return bad_arguments(dir, err);
    }
    void *payload;
    uint64_t size;
    int rc = ts_snapfile_serialize(e, &payload, &size, err);
    if (rc) {
        snprintf(err->path, sizeof err->path, "%s", path);
        return rc;
    }
    rc = ts_snapfile_write_payload(dir, shard_id, seq, md_count, payload, size, err);
    free(payload);
    return rc;
}

int ts_snapfile_check(const void *image, uint64_t len, int32_t expect_shard, const char *path,
                      ts_journal_error *err) {
    ts_jn_clear_error(err);
    if (!path) path = "<snapshot>";
    if (len < TS_SNAPFILE_HEADER_SIZE)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, len,
                          "%s: %llu bytes, shorter than a snapshot header", path,
                          (unsigned long long)len);
    ts_snapfile_header h;
    memcpy(&h, image, sizeof h);
    if (h.magic != (uint64_t)TS_SNAPFILE_MAGIC)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 0,
                          "%s is not a TradSys snapshot (bad magic at offset 0)", path);
    if (snap_header_crc(&h) != h.header_crc)
        return ts_jn_fail(err, TS_JOURNAL_ERR_CORRUPT, 0, path, 60,
                          "%s: the header checksum (offset 60) does not match", path);
    if (h.version != TS_SNAPFILE_VERSION || h.layout_version != TS_LAYOUT_VERSION)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 8,
                          "%s: snapshot format %u / wire layout %u, this build reads %u / %u",
                          path, h.version, h.layout_version, TS_SNAPFILE_VERSION,
                          TS_LAYOUT_VERSION);
    if (expect_shard >= 0 && h.shard_id != (uint32_t)expect_shard)
        return ts_jn_fail(err, TS_JOURNAL_ERR_HEADER, 0, path, 12,
                          "%s belongs to shard %u, not shard %d", path, h.shard_id, expect_shard);
    if (len - TS_SNAPFILE_HEADER_SIZE != h.payload_bytes)
        return ts_jn_fail(err, TS_JOURNAL_ERR_CORRUPT, 0, path, len,
                          "%s: %llu payload bytes where the header says %llu (truncated?)", path,
                          (unsigned long long)(len - TS_SNAPFILE_HEADER_SIZE),
                          (unsigned long long)h.payload_bytes);
    const unsigned char *payload = (const unsigned char *)image + TS_SNAPFILE_HEADER_SIZE;
    if (ts_crc32c(0, payload, h.payload_bytes) != h.payload_crc)
        return ts_jn_fail(err, TS_JOURNAL_ERR_CORRUPT, 0, path, TS_SNAPFILE_HEADER_SIZE,
                          "%s: the payload (from offset %u) fails its checksum", path,
                          TS_SNAPFILE_HEADER_SIZE);
    return TS_JOURNAL_OK;
}

ts_engine *ts_snapfile_load(const char *path, int32_t expect_shard, ts_snapfile_header *out,
                            uint64_t *last_exec_id, ts_journal_error *err) {
    ts_jn_clear_error(err);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, path, 0, "cannot open %s: %s", path,
                   strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, path, 0, "cannot stat %s", path);
        close(fd);
        return NULL;
    }
    uint64_t len = (uint64_t)st.st_size;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) {
        ts_jn_fail(err, TS_JOURNAL_ERR_NO_MEMORY, ENOMEM, path, 0, "out of memory");
        close(fd);
        return NULL;
    }
    uint64_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, buf + got, len - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (uint64_t)r;
    }
    close(fd);
    ts_engine *e = NULL;
    if (got != len) {
        ts_jn_fail(err, TS_JOURNAL_ERR_IO, errno, path, got, "cannot read %s", path);
    } else if (ts_snapfile_check(buf, len, expect_shard, path, err) == TS_JOURNAL_OK) {
        const unsigned char *payload = buf + TS_SNAPFILE_HEADER_SIZE;
        uint64_t plen = len - TS_SNAPFILE_HEADER_SIZE;
        int status = 0;
        e = ts_engine_restore(payload, plen, &status);
        if (!e) {
            ts_jn_fail(err, status == TS_ENG_ERR_NO_MEMORY ? TS_JOURNAL_ERR_NO_MEMORY
                                                           : TS_JOURNAL_ERR_CORRUPT,
                       0, path, TS_SNAPFILE_HEADER_SIZE,
                       "%s: the engine refused the snapshot payload (status %d)", path, status);
        } else {
            if (out) memcpy(out, buf, sizeof *out);
            if (last_exec_id) {
                ts_snap_header sh;
                memcpy(&sh, payload, sizeof sh);
                *last_exec_id = sh.last_exec_id;
            }
        }
    }
    free(buf);
    return e;
}
