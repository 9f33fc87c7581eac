/*
 * journal.h — a shard's append-only command journal: the sequenced input that event
 * sourcing replays. Plain C (no Python); cffi reads this file as it is.
 *
 * On disk: a directory of segment files named journal-<shard:03d>-<first_seq:020d>.tsj.
 * Each starts with a 64-byte ts_journal_header, then fixed 88-byte ts_journal_record
 * entries whose seq runs +1 from the header's first_seq with no gap, and continues
 * across segments. A record's crc32c covers every byte after the crc field, so a torn or
 * flipped record is caught and its byte offset named.
 *
 * Durability (ts_durability) decides when a journaled command may be acknowledged:
 *   NONE   write() only. The record is in the kernel's page cache: it survives a crash
 *          of the process, not of the OS or the power.
 *   GROUP  write() per batch, fdatasync at most every group_commit_ns. A command is
 *          acknowledged only once a sync covers it (the worker holds its events until
 *          then): after an OS crash nothing acknowledged is lost, at the cost of up to
 *          one group interval of extra latency under load.
 *   FSYNC  fdatasync after every batch, before any of its events leaves the worker.
 *
 * Integrity rules of a scan (ts_journal_scan_file, ts_journal_replay):
 *   - the LAST segment may end torn: a short record at EOF, or bad records that run to
 *     EOF (a crash in the middle of a write). That tail is reported as truncatable
 *     (TS_JOURNAL_TORN_TAIL); the recovery path truncates it and logs that it did.
 *   - anything else is corruption and stops recovery with the file and byte offset: a bad
 *     record followed later by a valid one, any bad or short record in a segment that is
 *     not the last, a bad header, or a seq gap (inside a file or between files).
 */
#ifndef TRADSYS_JOURNAL_H
#define TRADSYS_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "book.h"
#include "wire.h"

/* "TSJRNL01" little-endian */
#define TS_JOURNAL_MAGIC 0x31304c4e524a5354
#define TS_JOURNAL_VERSION 1
#define TS_JOURNAL_HEADER_SIZE 64
#define TS_JOURNAL_RECORD_SIZE 88
#define TS_JOURNAL_PATH_MAX 4096
#define TS_JOURNAL_MESSAGE_MAX 512

enum ts_durability {
    TS_DURABILITY_NONE = 0,
    TS_DURABILITY_GROUP = 1,
    TS_DURABILITY_FSYNC = 2
};

/* Status codes: 0 and TORN_TAIL are not errors; everything negative is. */
enum ts_journal_status {
    TS_JOURNAL_OK = 0,
    TS_JOURNAL_TORN_TAIL = 1,       /* valid up to `offset` of the last segment, torn after */
    TS_JOURNAL_ERR_IO = -1,         /* a system call failed; sys_errno says why */
    TS_JOURNAL_ERR_HEADER = -2,     /* not a journal segment, or not this shard's / layout's */
    TS_JOURNAL_ERR_CORRUPT = -3,    /* a bad record before the tail */
    TS_JOURNAL_ERR_GAP = -4,        /* a seq missing inside or between segments */
    TS_JOURNAL_ERR_ARGUMENT = -5,
    TS_JOURNAL_ERR_NO_MEMORY = -6,
    TS_JOURNAL_ERR_ENGINE = -7,     /* the engine ran out of memory during a replay */
    TS_JOURNAL_ERR_STATE = -8       /* the directory does not match what the caller said */
};

/* The first 64 bytes of every segment. */
typedef struct ts_journal_header {
    uint64_t magic;           /* 0  TS_JOURNAL_MAGIC */
    uint32_t version;         /* 8  TS_JOURNAL_VERSION */
    uint32_t shard_id;        /* 12 */
    uint64_t first_seq;       /* 16 seq of the first record (seqs start at 1) */
    uint32_t record_size;     /* 24 TS_JOURNAL_RECORD_SIZE */
    uint32_t layout_version;  /* 28 TS_LAYOUT_VERSION of the commands inside */
    int64_t created_ns;       /* 32 CLOCK_REALTIME, for people reading a directory */
    uint32_t rules_version;   /* 40 TS_RULES_VERSION the commands were processed under
                               *    (0 in segments written before it was recorded) */
    uint8_t _pad0[16];        /* 44 */
    uint32_t header_crc;      /* 60 crc32c of bytes 0..59 */
} ts_journal_header;

/* One sequenced command. ring_id/ring_index say where it was taken from, so a restarted
 * worker can set its inbound ring's tail just past the last journaled command (exactly-
 * once intake: nothing lost, nothing taken twice). */
typedef struct ts_journal_record {
    uint32_t crc;             /* 0  crc32c of bytes 4..87 */
    uint16_t ring_id;         /* 4  which inbound ring */
    uint16_t _pad0;           /* 6 */
    uint64_t seq;             /* 8  shard sequence number, +1 per command, from 1 */
    uint64_t ring_index;      /* 16 the command's absolute index in that ring */
    ts_command cmd;           /* 24 */
} ts_journal_record;

/* What a failure was and where: every journal function that can fail fills one. */
typedef struct ts_journal_error {
    int32_t status;           /* ts_journal_status */
    int32_t sys_errno;        /* for TS_JOURNAL_ERR_IO */
    uint64_t offset;          /* byte offset in `path` of the bad header or record */
    char path[4096];
    char message[512];        /* a whole sentence: what, where, and what to do */
} ts_journal_error;

/* crc32c (Castagnoli, reflected 0x82F63B78), software slice-by-8. Chain calls by passing
 * the previous result: ts_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t ts_crc32c(uint32_t crc, const void *data, size_t n);

/* ---- writing ------------------------------------------------------------------------ */

typedef struct ts_journal_config {
    uint32_t shard_id;        /* 0..999 */
    int32_t durability;       /* ts_durability */
    uint64_t segment_bytes;   /* rotate once a segment reaches this size */
    uint64_t group_commit_ns; /* GROUP: the minimum time between two fdatasyncs */
} ts_journal_config;

typedef struct ts_journal ts_journal;

/* Open `dir` (created if missing) for appending from `next_seq` (1 for a new journal).
 * The last segment must be clean (a torn tail truncated by the recovery first): when it
 * ends at next_seq - 1 and is below the rotation size, appending continues in it; else
 * a new segment starts at next_seq. NULL with *err filled on failure. */
ts_journal *ts_journal_open(const char *dir, const ts_journal_config *cfg, uint64_t next_seq,
                            ts_journal_error *err);
/* Sync (unless NONE) and close. Returns a status; the journal is freed either way. */
int ts_journal_close(ts_journal *j, ts_journal_error *err);

/* Append n commands taken from ring `ring_id` at ring indices first_ring_index.. as
 * seqs next_seq.. in ONE write() (rotating first if the segment is full). FSYNC syncs
 * before returning. On a failed or short write the segment is cut back to its previous
 * size and an error returned: the caller must stop, nothing was journaled. */
int ts_journal_append(ts_journal *j, uint16_t ring_id, uint64_t first_ring_index,
                      const ts_command *cmds, uint64_t n, ts_journal_error *err);
/* fdatasync now if anything written is not yet synced. */
int ts_journal_sync(ts_journal *j, ts_journal_error *err);
/* GROUP: sync if something is unsynced and group_commit_ns has passed since the last
 * sync; returns 1 if it synced, 0 if not (yet), < 0 on error. now_ns: CLOCK_MONOTONIC. */
int ts_journal_sync_if_due(ts_journal *j, int64_t now_ns, ts_journal_error *err);
/* Monotonic time at which an unsynced GROUP journal should sync (INT64_MAX if nothing is
 * unsynced or the policy is not GROUP): the longest a waiting worker may sleep. */
int64_t ts_journal_sync_due_ns(const ts_journal *j);

uint64_t ts_journal_next_seq(const ts_journal *j);    /* seq the next command gets */
uint64_t ts_journal_written_seq(const ts_journal *j); /* last seq handed to write() */
uint64_t ts_journal_synced_seq(const ts_journal *j);  /* last seq covered by a sync */
uint64_t ts_journal_segments_opened(const ts_journal *j);
int32_t ts_journal_durability(const ts_journal *j);    /* ts_durability */

/* ---- reading ------------------------------------------------------------------------ */

/* What one segment holds, as far as it is valid. */
typedef struct ts_journal_scan {
    int32_t status;           /* OK, TORN_TAIL, or an error (error.* says where) */
    uint32_t shard_id;
    uint64_t first_seq;
    uint64_t records;         /* valid records */
    uint64_t last_seq;        /* first_seq + records - 1 (first_seq - 1 when empty) */
    uint64_t last_ring_index; /* of the last valid record */
    uint32_t last_ring_id;
    uint32_t _pad0;
    uint64_t valid_bytes;     /* header + records * record size: where a torn tail starts */
    uint64_t file_bytes;
    ts_journal_error error;   /* for TORN_TAIL: path and offset of the torn tail */
} ts_journal_scan;

/* Validate one segment file: header (and its shard when expect_shard >= 0), every
 * record's crc and seq continuity. is_last says whether a torn tail is allowed. */
int ts_journal_scan_file(const char *path, int32_t expect_shard, int is_last,
                         ts_journal_scan *out);

/* Called by ts_journal_replay after each batch went through the engine, before the
 * engine's output is cleared: a worker re-emits the events its previous incarnation
 * never pushed from here. seq of the batch's first command, n commands. */
typedef void (*ts_replay_batch_fn)(void *ctx, ts_engine *e, uint64_t first_seq, uint64_t n);

typedef struct ts_journal_replay_result {
    int32_t status;           /* OK, TORN_TAIL (all valid records replayed), or an error */
    uint32_t segments;        /* segment files read */
    uint64_t replayed;        /* commands fed to the engine */
    uint64_t first_replayed_seq;
    uint64_t last_seq;        /* last valid seq in the journal (0 if it is empty) */
    uint64_t last_ring_index; /* of that record, when last_ring_known */
    uint32_t last_ring_id;
    uint32_t last_ring_known; /* 0 when the journal is empty or ends in an empty segment */
    uint64_t tail_valid_bytes; /* TORN_TAIL: truncate error.path to this size */
    uint64_t tail_file_bytes;
    ts_journal_error error;   /* TORN_TAIL: the torn segment and offset; else the error */
} ts_journal_replay_result;

/* Replay shard `shard_id`'s journal in `dir` into `e`: every valid record with
 * after_seq < seq <= upto_seq (0 = no upper bound), in batches of up to `batch`
 * commands (0 = a default). Segments wholly before after_seq are skipped unread; the
 * rest are checked as ts_journal_scan_file checks them, and their seqs must join up with
 * after_seq and with each other. The files are mapped, not copied, and each record's crc
 * is computed once. Nothing is truncated here: a torn tail is reported (TORN_TAIL) for
 * the caller to cut. `on_batch` may be NULL. When `sync_first` is set every segment read
 * is fdatasync'ed before its records are replayed, so what a worker re-emits from them
 * is durable. */
int ts_journal_replay(const char *dir, uint32_t shard_id, uint64_t after_seq, uint64_t upto_seq,
                      ts_engine *e, uint64_t batch, ts_replay_batch_fn on_batch, void *ctx,
                      int sync_first, ts_journal_replay_result *out);

/* Cut a segment to `size` bytes and fdatasync it (the recovery path, for a torn tail). */
int ts_journal_truncate(const char *path, uint64_t size, ts_journal_error *err);

#endif /* TRADSYS_JOURNAL_H */
