/*
 * snapshot_file.h — a shard's snapshot on disk: the engine's canonical snapshot bytes
 * (book.h) behind a small header that says which journal seq the state covers.
 *
 * File name snapshot-<shard:03d>-<seq:020d>.tss. It is written to a .tmp file, synced,
 * renamed into place and the directory synced, so a crash leaves either the old set of
 * snapshots or the new one, never a half-written file under a snapshot's name. The
 * header and the payload each carry a crc32c: a damaged snapshot is refused (and
 * recovery falls back to the next older one) instead of being restored.
 *
 * Declarations only (cffi reads this file).
 */
#ifndef TRADSYS_SNAPSHOT_FILE_H
#define TRADSYS_SNAPSHOT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "book.h"
#include "journal.h"

/* "TSSSSNF1" little-endian */
#define TS_SNAPFILE_MAGIC 0x31464e5353535354
#define TS_SNAPFILE_VERSION 1
#define TS_SNAPFILE_HEADER_SIZE 64

typedef struct ts_snapfile_header {
    uint64_t magic;          /* 0  TS_SNAPFILE_MAGIC */
    uint32_t version;        /* 8  TS_SNAPFILE_VERSION */
    uint32_t shard_id;       /* 12 */
    uint64_t seq;            /* 16 the state after journal commands 1..seq */
    uint64_t payload_bytes;  /* 24 engine snapshot bytes that follow the header */
    uint32_t payload_crc;    /* 32 crc32c of the payload */
    uint32_t layout_version; /* 36 TS_LAYOUT_VERSION */
    uint64_t md_count;       /* 40 market-data records the engine made through seq (the
                              *    worker's position in its md stream; 0 if not tracked) */
    int64_t created_ns;      /* 48 CLOCK_REALTIME */
    uint32_t _pad0;          /* 56 */
    uint32_t header_crc;     /* 60 crc32c of bytes 0..59 */
} ts_snapfile_header;

/* Write the engine's state as shard's snapshot at `seq` into dir (atomically, see
 * above); err names the file on failure. */
int ts_snapfile_write(const char *dir, uint32_t shard_id, uint64_t seq, uint64_t md_count,
                      const ts_engine *e, ts_journal_error *err);

/* The same in two halves, for a writer that is not the engine's thread (snapshot_writer.h):
 * serialize (on the engine's thread, at the seq the snapshot is for) the engine's canonical
 * bytes into *payload (malloc'd: the caller frees it) of *size bytes; then write_payload
 * (anywhere) does the rest. */
int ts_snapfile_serialize(const ts_engine *e, void **payload, uint64_t *size,
                          ts_journal_error *err);
int ts_snapfile_write_payload(const char *dir, uint32_t shard_id, uint64_t seq,
                              uint64_t md_count, const void *payload, uint64_t size,
                              ts_journal_error *err);
/* write_payload itself in two steps: write_tmp writes and fsyncs "<name>.tmp"; publish
 * renames it into place and fsyncs the directory (the snapshot becomes visible); discard
 * removes a .tmp that will not be published. */
int ts_snapfile_write_tmp(const char *dir, uint32_t shard_id, uint64_t seq, uint64_t md_count,
                          const void *payload, uint64_t size, ts_journal_error *err);
int ts_snapfile_publish(const char *dir, uint32_t shard_id, uint64_t seq, ts_journal_error *err);
void ts_snapfile_discard(const char *dir, uint32_t shard_id, uint64_t seq);
/* dir/snapshot-SSS-QQQ...Q.tss (".tmp" appended when tmp); -1 if it does not fit in cap
 * (or shard > 999). */
int ts_snapfile_path(char *out, size_t cap, const char *dir, uint32_t shard_id, uint64_t seq,
                     int tmp);

/* Check a whole snapshot file image in memory: header magic, version, crc, shard (when
 * expect_shard >= 0), length and payload crc. 0 or TS_JOURNAL_ERR_CORRUPT/HEADER. */
int ts_snapfile_check(const void *image, uint64_t len, int32_t expect_shard, const char *path,
                      ts_journal_error *err);

/* Read, check and restore a snapshot file: a new engine (NULL on failure, with err), its
 * header in *out, and the engine's last exec id in *last_exec_id. */
ts_engine *ts_snapfile_load(const char *path, int32_t expect_shard, ts_snapfile_header *out,
                            uint64_t *last_exec_id, ts_journal_error *err);

#endif /* TRADSYS_SNAPSHOT_FILE_H */
