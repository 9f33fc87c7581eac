/*
 * ring.c — SPSC ring over shared memory; see ring.h for the contract.
 *
 * Memory-order notes:
 *  - head is written only by the producer, tail only by the consumer. Each side reads
 *    its own index relaxed and the other's with acquire, and publishes with release, so
 *    the slot bytes copied before a release are visible after the matching acquire.
 *  - Each side keeps a cached copy of the other's index on its own cache line and only
 *    re-reads the shared one when the cache says "no room" / "nothing to read". That
 *    keeps the lines from bouncing between cores on every record.
 *  - Parking uses a Dekker-style handshake: the waiter stores its "parked" flag
 *    (seq_cst) then re-checks the index; the publisher stores the index then issues a
 *    seq_cst fence and reads the flag. At least one of them sees the other, so a wake-up
 *    is never lost. The futex word is a counter, so a wake between the waiter's check and
 *    its futex_wait makes the wait return at once (value changed).
 */
#define _GNU_SOURCE
#include "ring.h"
#include "mono_clock.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Two 64-byte lines per hot field: adjacent-line prefetchers fetch pairs. */
#define TS_LINE 128

struct ts_ring {
    /* identity: written once by ts_ring_init, read-only afterwards */
    alignas(TS_LINE) _Atomic uint64_t magic;
    uint32_t layout_version;
    uint32_t slot_size;
    uint64_t capacity;
    uint64_t mask;
    int32_t creator_pid;
    _Atomic int32_t producer_pid;
    _Atomic int32_t consumer_pid;
    uint32_t _pad0;
    uint64_t creator_start_us;

    /* producer-owned */
    alignas(TS_LINE) _Atomic uint64_t head;
    uint64_t cached_tail;

    /* consumer-owned */
    alignas(TS_LINE) _Atomic uint64_t tail;
    uint64_t cached_head;

    /* parking: data side (consumer waits) then space side (producer waits) */
    alignas(64) _Atomic uint32_t data_futex;
    _Atomic uint32_t consumer_parked;
    alignas(64) _Atomic uint32_t space_futex;
    _Atomic uint32_t producer_parked;
};

_Static_assert(sizeof(struct ts_ring) == TS_RING_HEADER_SIZE, "ring header size");
_Static_assert(TS_RING_HEADER_SIZE % TS_LINE == 0, "slots start on a line boundary");

static inline unsigned char *slots(ts_ring *r) { return (unsigned char *)r + TS_RING_HEADER_SIZE; }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

size_t ts_ring_bytes_needed(uint32_t slot_size, uint64_t capacity) {
    /* saturate instead of wrapping: no block can be SIZE_MAX bytes, so an oversized
     * capacity fails the size checks of init and check instead of passing them */
    if (slot_size != 0 && capacity > (SIZE_MAX - TS_RING_HEADER_SIZE) / slot_size) return SIZE_MAX;
    return TS_RING_HEADER_SIZE + (size_t)slot_size * (size_t)capacity;
}

int ts_ring_init(void *mem, size_t mem_size, uint32_t slot_size, uint64_t capacity,
                 uint32_t layout_version, int32_t creator_pid, uint64_t creator_start_us) {
    if (slot_size == 0 || slot_size % 8 != 0) return TS_RING_ERR_ARGUMENT;
    if (!is_pow2(capacity)) return TS_RING_ERR_CAPACITY;
    if (mem_size < ts_ring_bytes_needed(slot_size, capacity)) return TS_RING_ERR_TOO_SMALL;
    ts_ring *r = (ts_ring *)mem;
    memset(r, 0, TS_RING_HEADER_SIZE);
    r->layout_version = layout_version;
    r->slot_size = slot_size;
    r->capacity = capacity;
    r->mask = capacity - 1;
    r->creator_pid = creator_pid;
    r->creator_start_us = creator_start_us;
    atomic_store_explicit(&r->magic, (uint64_t)TS_RING_MAGIC, memory_order_release);
    return TS_RING_OK;
}

int ts_ring_check(const void *mem, size_t mem_size, uint32_t expected_version,
                  uint32_t expected_slot_size, uint64_t expected_capacity) {
    if (mem_size < TS_RING_HEADER_SIZE) return TS_RING_ERR_TOO_SMALL;
    ts_ring *r = (ts_ring *)mem;
    if (atomic_load_explicit(&r->magic, memory_order_acquire) != (uint64_t)TS_RING_MAGIC)
        return TS_RING_ERR_MAGIC;
    if (r->layout_version != expected_version) return TS_RING_ERR_VERSION;
    if (r->slot_size != expected_slot_size) return TS_RING_ERR_SLOT_SIZE;
    if (!is_pow2(r->capacity) || (expected_capacity != 0 && r->capacity != expected_capacity))
        return TS_RING_ERR_CAPACITY;
    if (mem_size < ts_ring_bytes_needed(r->slot_size, r->capacity)) return TS_RING_ERR_TOO_SMALL;
    return TS_RING_OK;
}

void ts_ring_read_info(const void *mem, ts_ring_info *out) {
    ts_ring *r = (ts_ring *)mem;
    out->magic = atomic_load_explicit(&r->magic, memory_order_acquire);
    out->layout_version = r->layout_version;
    out->slot_size = r->slot_size;
    out->capacity = r->capacity;
    out->creator_pid = r->creator_pid;
    out->producer_pid = atomic_load_explicit(&r->producer_pid, memory_order_relaxed);
    out->consumer_pid = atomic_load_explicit(&r->consumer_pid, memory_order_relaxed);
    out->_pad0 = 0;
    out->creator_start_us = r->creator_start_us;
    out->head = atomic_load_explicit(&r->head, memory_order_acquire);
    out->tail = atomic_load_explicit(&r->tail, memory_order_acquire);
}

void ts_ring_set_producer(ts_ring *r, int32_t pid) {
    atomic_store_explicit(&r->producer_pid, pid, memory_order_release);
}

void ts_ring_set_consumer(ts_ring *r, int32_t pid) {
    atomic_store_explicit(&r->consumer_pid, pid, memory_order_release);
}

static inline void futex_wake(_Atomic uint32_t *word) {
    atomic_fetch_add_explicit(word, 1, memory_order_release);
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Called by the side that just published; cheap unless the peer is parked. */
static inline void wake_if_parked(_Atomic uint32_t *parked, _Atomic uint32_t *word) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(parked, memory_order_relaxed)) futex_wake(word);
}

static inline uint64_t free_slots(ts_ring *r, uint64_t head) {
    uint64_t free = r->capacity - (head - r->cached_tail);
    if (free == 0) {
        r->cached_tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        free = r->capacity - (head - r->cached_tail);
    }
    return free;
}

static inline uint64_t used_slots(ts_ring *r, uint64_t tail) {
    uint64_t used = r->cached_head - tail;
    if (used == 0) {
        r->cached_head = atomic_load_explicit(&r->head, memory_order_acquire);
        used = r->cached_head - tail;
    }
    return used;
}

uint64_t ts_ring_push(ts_ring *r, const void *records, uint64_t n) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t free = free_slots(r, head);
    if (free < n && free < r->capacity) {
        /* the cache may be stale by more than "full": refresh once before settling */
        r->cached_tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        free = r->capacity - (head - r->cached_tail);
    }
    uint64_t k = n < free ? n : free;
    if (k == 0) return 0;
    size_t sz = r->slot_size;
    uint64_t start = head & r->mask;
    uint64_t first = r->capacity - start;
    if (first > k) first = k;
    memcpy(slots(r) + start * sz, records, first * sz);
    if (k > first) memcpy(slots(r), (const unsigned char *)records + first * sz, (k - first) * sz);
    atomic_store_explicit(&r->head, head + k, memory_order_release);
    wake_if_parked(&r->consumer_parked, &r->data_futex);
    return k;
}

uint64_t ts_ring_pop(ts_ring *r, void *out, uint64_t max) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t used = used_slots(r, tail);
    if (used < max) {
        r->cached_head = atomic_load_explicit(&r->head, memory_order_acquire);
        used = r->cached_head - tail;
    }
    uint64_t k = max < used ? max : used;
    if (k == 0) return 0;
    size_t sz = r->slot_size;
    uint64_t start = tail & r->mask;
    uint64_t first = r->capacity - start;
    if (first > k) first = k;
    memcpy(out, slots(r) + start * sz, first * sz);
    if (k > first) memcpy((unsigned char *)out + first * sz, slots(r), (k - first) * sz);
    atomic_store_explicit(&r->tail, tail + k, memory_order_release);
    wake_if_parked(&r->producer_parked, &r->space_futex);
    return k;
}

int ts_ring_push_one(ts_ring *r, const char *record) {
    return (int)ts_ring_push(r, record, 1);
}

int ts_ring_pop_one(ts_ring *r, char *out) { return (int)ts_ring_pop(r, out, 1); }

uint64_t ts_ring_peek(ts_ring *r, void **first) { return ts_ring_peek_from(r, 0, first); }

uint64_t ts_ring_peek_from(ts_ring *r, uint64_t skip, void **first) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    r->cached_head = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t used = r->cached_head - tail;
    uint64_t start = (tail + skip) & r->mask;
    uint64_t contiguous = r->capacity - start;
    *first = slots(r) + start * r->slot_size;
    if (used <= skip) return 0;
    return used - skip < contiguous ? used - skip : contiguous;
}

uint64_t ts_ring_peek_copy(ts_ring *r, void *out, uint64_t skip, uint64_t max) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    /* the cache may lag behind a tail that release moved past it (it then wraps to a
     * huge count): refresh on that too, not only when it offers too little */
    uint64_t used = r->cached_head - tail;
    if (used > r->capacity || used <= skip || used - skip < max) {
        r->cached_head = atomic_load_explicit(&r->head, memory_order_acquire);
        used = r->cached_head - tail;
    }
    if (used <= skip) return 0;
    uint64_t k = used - skip < max ? used - skip : max;
    size_t sz = r->slot_size;
    uint64_t start = (tail + skip) & r->mask;
    uint64_t first = r->capacity - start;
    if (first > k) first = k;
    memcpy(out, slots(r) + start * sz, first * sz);
    if (k > first) memcpy((unsigned char *)out + first * sz, slots(r), (k - first) * sz);
    return k;
}

void ts_ring_release(ts_ring *r, uint64_t k) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed) + k;
    /* keep the cached head at or past the tail: records released without a look that
     * refreshed it (ts_ring_peek_copy may not) would make pop's count wrap around */
    if ((int64_t)(r->cached_head - tail) < 0) r->cached_head = tail;
    atomic_store_explicit(&r->tail, tail, memory_order_release);
    wake_if_parked(&r->producer_parked, &r->space_futex);
}

uint64_t ts_ring_readable(ts_ring *r) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    return atomic_load_explicit(&r->head, memory_order_acquire) - tail;
}

uint64_t ts_ring_writable(ts_ring *r) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    return r->capacity - (head - atomic_load_explicit(&r->tail, memory_order_acquire));
}

/* ---- waiting ---- */

typedef uint64_t (*ready_fn)(ts_ring *);

static void futex_park(_Atomic uint32_t *word, uint32_t seen, int64_t max_ns) {
    struct timespec ts, *tsp = NULL;
    if (max_ns >= 0) {
        ts.tv_sec = max_ns / 1000000000LL;
        ts.tv_nsec = max_ns % 1000000000LL;
        tsp = &ts;
    }
    /* EAGAIN (word changed), EINTR and ETIMEDOUT all mean "look again" */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, seen, tsp, NULL, 0);
}

static uint64_t wait_until(ts_ring *r, ready_fn ready, _Atomic uint32_t *parked,
                           _Atomic uint32_t *word, const ts_wait_strategy *w, int64_t timeout_ns) {
    uint64_t avail = ready(r);
    if (avail) return avail;
    const int64_t deadline = timeout_ns < 0 ? INT64_MAX : ts_mono_ns() + timeout_ns;
    uint32_t spins = w->spin_iters ? w->spin_iters : 1;
    uint32_t yields = 0;
    for (uint64_t round = 0;; round++) {
        /* spin phase: a pause per check keeps the sibling hyperthread fed */
        for (uint32_t i = 0; i < spins; i++) {
            if ((avail = ready(r))) return avail;
            cpu_relax();
        }
        int64_t now = ts_mono_ns();
        if (now >= deadline) return ready(r);
        if (w->kind == TS_WAIT_BUSY_SPIN) continue;
        if (w->kind == TS_WAIT_SPIN_YIELD || yields < w->yield_iters) {
            yields++;
            sched_yield();
            continue;
        }
        /* park: publish "parked", re-check, then sleep until woken or timed out */
        uint32_t seen = atomic_load_explicit(word, memory_order_acquire);
        atomic_store_explicit(parked, 1, memory_order_seq_cst);
        /* the re-check is an acquire load, which may move before the store above (C11;
         * ARMv8.3 LDAPR): the fence pairs with wake_if_parked's so one side sees the other */
        atomic_thread_fence(memory_order_seq_cst);
        if ((avail = ready(r))) {
            atomic_store_explicit(parked, 0, memory_order_relaxed);
            return avail;
        }
        int64_t left = timeout_ns < 0 ? -1 : deadline - now;
        futex_park(word, seen, left);
        atomic_store_explicit(parked, 0, memory_order_relaxed);
        (void)round;
    }
}

uint64_t ts_ring_wait_readable(ts_ring *r, const ts_wait_strategy *w, int64_t timeout_ns) {
    return wait_until(r, ts_ring_readable, &r->consumer_parked, &r->data_futex, w, timeout_ns);
}

uint64_t ts_ring_wait_writable(ts_ring *r, const ts_wait_strategy *w, int64_t timeout_ns) {
    return wait_until(r, ts_ring_writable, &r->producer_parked, &r->space_futex, w, timeout_ns);
}

uint64_t ts_ring_push_all(ts_ring *r, const void *records, uint64_t n,
                          const ts_wait_strategy *w, int64_t timeout_ns) {
    const unsigned char *p = records;
    const int64_t deadline = timeout_ns < 0 ? INT64_MAX : ts_mono_ns() + timeout_ns;
    uint64_t done = 0;
    while (done < n) {
        uint64_t k = ts_ring_push(r, p + done * r->slot_size, n - done);
        done += k;
        if (done == n) break;
        int64_t left = timeout_ns < 0 ? -1 : deadline - ts_mono_ns();
        if (timeout_ns >= 0 && left <= 0) break;
        if (k == 0 && ts_ring_wait_writable(r, w, left) == 0) break;
    }
    return done;
}

uint64_t ts_ring_pop_wait(ts_ring *r, void *out, uint64_t max, const ts_wait_strategy *w,
                          int64_t timeout_ns) {
    if (ts_ring_wait_readable(r, w, timeout_ns) == 0) return 0;
    return ts_ring_pop(r, out, max);
}

uint64_t ts_ring_park_consumer(ts_ring *r, uint32_t **word, uint32_t *seen) {
    return ts_ring_park_consumer_past(r, 0, word, seen);
}

uint64_t ts_ring_park_consumer_past(ts_ring *r, uint64_t skip, uint32_t **word, uint32_t *seen) {
    /* the same handshake as wait_until's park, minus the sleep, which the caller does */
    *word = (uint32_t *)&r->data_futex;
    *seen = atomic_load_explicit(&r->data_futex, memory_order_acquire);
    atomic_store_explicit(&r->consumer_parked, 1, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t n = ts_ring_readable(r);
    n = n > skip ? n - skip : 0;
    if (n) atomic_store_explicit(&r->consumer_parked, 0, memory_order_relaxed);
    return n;
}

void ts_ring_unpark_consumer(ts_ring *r) {
    atomic_store_explicit(&r->consumer_parked, 0, memory_order_relaxed);
}

void ts_ring_wake_all(ts_ring *r) {
    futex_wake(&r->data_futex);
    futex_wake(&r->space_futex);
}
