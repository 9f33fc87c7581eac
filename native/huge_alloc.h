/*
 * huge_alloc.h — memory for the engine's big random-access arrays (the order pool and
 * the order-id index), backed by transparent huge pages where the kernel offers them.
 *
 * A cancel in a big book touches a handful of lines scattered over these arrays; with
 * 4 KiB pages each of those is also a TLB miss (a page walk), since a few thousand TLB
 * entries cover only megabytes. 2 MiB pages make the whole pool's translations fit.
 * So the blocks come straight from mmap, aligned to 2 MiB, with madvise(MADV_HUGEPAGE)
 * (what an exchange engine would otherwise get from hugetlbfs, without reserving
 * memory at boot). Where that is not available (another OS, THP off) they are plain
 * page-aligned anonymous memory: only the speed differs. Under AddressSanitizer they are
 * 64-byte aligned heap blocks, so that ASan keeps checking their bounds.
 *
 * A big block grows by mremap on Linux (its pages move, huge ones whole, rather than
 * being copied; the new part faults in as huge pages); elsewhere, and below one huge
 * page, by a copy into a new block. Internal to the C core.
 */
#ifndef TRADSYS_HUGE_ALLOC_H
#define TRADSYS_HUGE_ALLOC_H

#include <stddef.h>

/* A block of at least `bytes` bytes, zero-filled and page-aligned (so cache-line
 * aligned), or NULL. Free it with ts_huge_free(p, bytes) and the same `bytes`. */
void *ts_huge_alloc(size_t bytes);
void ts_huge_free(void *p, size_t bytes);
/* Grow a block from old_bytes to new_bytes keeping its first keep_bytes (the rest is
 * zero); NULL, and p untouched, when out of memory. */
void *ts_huge_grow(void *p, size_t old_bytes, size_t new_bytes, size_t keep_bytes);
/* The bytes really mapped for a block of `bytes` (whole pages), for memory accounting. */
size_t ts_huge_bytes(size_t bytes);

/* Put every live block of a huge page or more back on huge pages (madvise MADV_COLLAPSE,
 * Linux >= 6.1), synchronously; returns the bytes the kernel collapsed. Why: a fork
 * splits them -- after it, each 4 KiB page the parent writes while the child lives is
 * copied on its own, and the block stays mapped by 4 KiB pages after the child exits,
 * which measured 23-35 % slower random access until khugepaged gets round to it.
 * Call it from a thread other than the one that uses the blocks (the snapshot writer):
 * the copy takes about 0.3 ms per 2 MiB, during which an access to that 2 MiB waits.
 * Safe against blocks freed or moved meanwhile (the kernel then refuses or collapses
 * whatever is there now: either way only the page size changes). */
size_t ts_huge_recollapse(void);

#endif /* TRADSYS_HUGE_ALLOC_H */
