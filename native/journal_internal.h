/*
 * journal_internal.h — what the journal's C files share: names of segment files, the
 * header check, checksums of headers and records, and error reporting. Internal to the
 * C core; the API is journal.h.
 */
#ifndef TRADSYS_JOURNAL_INTERNAL_H
#define TRADSYS_JOURNAL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "journal.h"

#define REC TS_JOURNAL_RECORD_SIZE
#define HDR TS_JOURNAL_HEADER_SIZE

_Static_assert(sizeof(ts_journal_header) == TS_JOURNAL_HEADER_SIZE, "journal header size");
_Static_assert(sizeof(ts_journal_record) == TS_JOURNAL_RECORD_SIZE, "journal record size");
_Static_assert(offsetof(ts_journal_record, cmd) == 24, "command offset in a record");
_Static_assert(offsetof(ts_journal_header, header_crc) == 60, "header crc offset");

/* crc32c of a record's bytes after its crc field; of a header's bytes before its crc. */
uint32_t ts_jn_record_crc(const ts_journal_record *r);
uint32_t ts_jn_header_crc(const ts_journal_header *h);

/* Fill *err (if not NULL) and return status. */
int ts_jn_fail(ts_journal_error *err, int status, int sys_errno, const char *path,
               uint64_t offset, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void ts_jn_clear_error(ts_journal_error *err);

int64_t ts_jn_real_ns(void);

/* dir/journal-SSS-QQQ...Q.tsj; -1 if it does not fit in cap. */
int ts_jn_segment_path(char *out, size_t cap, const char *dir, uint32_t shard, uint64_t seq);
/* A segment's file name (no directory) → shard and first seq; 0 if it is one. */
int ts_jn_parse_segment_name(const char *name, uint32_t *shard, uint64_t *seq);
/* The first seqs of shard's segments in dir, ascending (malloc'ed; free it). A missing
 * directory is an empty journal. */
int ts_jn_list_segments(const char *dir, uint32_t shard, uint64_t **out, uint32_t *count,
                        ts_journal_error *err);
int ts_jn_is_all_zero(const void *p, size_t n);
/* Check a segment header; name_seq is the first seq the file name states (if known). */
int ts_jn_check_header(const ts_journal_header *h, const char *path, int32_t expect_shard,
                       int has_name_seq, uint64_t name_seq, ts_journal_error *err);

#endif /* TRADSYS_JOURNAL_INTERNAL_H */
