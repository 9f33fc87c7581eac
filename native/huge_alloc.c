/*
 * huge_alloc.c — mmap-backed blocks advised to use transparent huge pages; see
 * huge_alloc.h.
 */
#define _GNU_SOURCE /* MAP_ANONYMOUS, MADV_HUGEPAGE, mremap under -std=c11 */
#include "huge_alloc.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)
#define SMALL_PAGE ((size_t)4096)

/* Under AddressSanitizer the blocks come from the C heap instead, so that ASan still
 * sees the bounds of the pool and the index (it does not watch mmap'd memory). */
#if defined(__SANITIZE_ADDRESS__)
#define TS_HUGE_FROM_HEAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TS_HUGE_FROM_HEAP 1
#endif
#endif

/* Bytes actually mapped for a request: whole pages, and whole huge pages once the block
 * is big enough for one (a partial huge page at the end would be a small-page tail). */
size_t ts_huge_bytes(size_t bytes) {
    if (bytes == 0) bytes = 1;
    size_t unit = bytes >= HUGE_PAGE ? HUGE_PAGE : SMALL_PAGE;
    return (bytes + unit - 1) / unit * unit;
}

#ifdef TS_HUGE_FROM_HEAP

void *ts_huge_alloc(size_t bytes) {
    const size_t n = bytes ? (bytes + 63) / 64 * 64 : 64; /* aligned_alloc wants a multiple */
    void *p = aligned_alloc(64, n);
    if (p) memset(p, 0, n);
    return p;
}

void ts_huge_free(void *p, size_t bytes) {
    (void)bytes;
    free(p);
}

size_t ts_huge_recollapse(void) { return 0; } /* heap blocks: nothing to collapse */

#else

/* The live blocks of a huge page or more, for ts_huge_recollapse: a few per engine (the
 * pool and the index of each), so a small table; a block beyond it is only not
 * recollapsed. */
#define TRACKED 64
static struct {
    void *p;
    size_t n;
} tracked[TRACKED];
static pthread_mutex_t tracked_mu = PTHREAD_MUTEX_INITIALIZER;

static void track(void *p, size_t n) {
    pthread_mutex_lock(&tracked_mu);
    for (int i = 0; i < TRACKED; i++)
        if (!tracked[i].p) {
            tracked[i].p = p;
            tracked[i].n = n;
            break;
        }
    pthread_mutex_unlock(&tracked_mu);
}

static void untrack(void *p) {
    pthread_mutex_lock(&tracked_mu);
    for (int i = 0; i < TRACKED; i++)
        if (tracked[i].p == p) tracked[i].p = NULL;
    pthread_mutex_unlock(&tracked_mu);
}

size_t ts_huge_recollapse(void) {
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1; older kernels refuse it (EINVAL): nothing happens */
#endif
    /* the table is copied and the madvise calls made outside the lock: a collapse takes
     * milliseconds, and the worker may grow or free a block meanwhile */
    struct {
        void *p;
        size_t n;
    } copy[TRACKED];
    pthread_mutex_lock(&tracked_mu);
    memcpy(copy, tracked, sizeof copy);
    pthread_mutex_unlock(&tracked_mu);
    size_t done = 0;
    for (int i = 0; i < TRACKED; i++)
        if (copy[i].p && madvise(copy[i].p, copy[i].n, MADV_COLLAPSE) == 0) done += copy[i].n;
    return done;
}

void *ts_huge_alloc(size_t bytes) {
    const size_t n = ts_huge_bytes(bytes);
    if (n < HUGE_PAGE) {
        void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    /* over-map by a huge page and trim both ends, so the block starts on a 2 MiB
     * boundary and every 2 MiB of it can be one huge page */
    char *raw = mmap(NULL, n + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *p = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    size_t tail = (size_t)(raw + n + HUGE_PAGE - (p + n));
    if (tail) munmap(p + n, tail);
#ifdef MADV_HUGEPAGE
    (void)madvise(p, n, MADV_HUGEPAGE); /* a hint: failing it only costs speed */
#endif
    track(p, n);
    return p;
}

void ts_huge_free(void *p, size_t bytes) {
    if (!p) return;
    if (ts_huge_bytes(bytes) >= HUGE_PAGE) untrack(p);
    munmap(p, ts_huge_bytes(bytes));
}

#endif /* TS_HUGE_FROM_HEAP */

void *ts_huge_grow(void *p, size_t old_bytes, size_t new_bytes, size_t keep_bytes) {
#if defined(MREMAP_MAYMOVE) && !defined(TS_HUGE_FROM_HEAP)
    /* Linux: move the pages rather than copy them; huge pages move whole when the new
     * place keeps their 2 MiB alignment (otherwise the kernel splits them: slower, not
     * wrong), and the new part faults in as huge pages */
    const size_t old_n = ts_huge_bytes(old_bytes), new_n = ts_huge_bytes(new_bytes);
    if (old_n >= HUGE_PAGE) {
        void *q = mremap(p, old_n, new_n, MREMAP_MAYMOVE);
        if (q == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
        (void)madvise(q, new_n, MADV_HUGEPAGE);
#endif
        untrack(p);
        track(q, new_n);
        return q;
    }
#endif
    void *q = ts_huge_alloc(new_bytes);
    if (!q) return NULL;
    memcpy(q, p, keep_bytes);
    ts_huge_free(p, old_bytes);
    return q;
}
