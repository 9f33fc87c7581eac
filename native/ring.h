/*
 * ring.h — a lock-free single-producer single-consumer ring of fixed-size records
 * living in a caller-provided block of (usually shared) memory.
 *
 * The ring knows nothing of orders: a slot is `slot_size` opaque bytes. The block
 * starts with a header -- identity (bytes 0-127), then the producer's index and cache
 * (128-255) and the consumer's (256-319) each on a cache-line pair of their own, then
 * the wait state: the data side (the consumer's futex word and parked flag, 320-383, on
 * the consumer's pair, in a 64-byte line of its own) and the space side (384-447) --
 * followed by `capacity` slots, capacity a power of two. A producer reads the consumer's
 * parked flag on every push: a line the consumer writes only when it parks.
 *
 * Correctness contract: a record becomes visible to the consumer only after all its
 * bytes are written (release store of the head index after the copy), and a slot is
 * reused only after the consumer has copied it out (release store of the tail). A full
 * ring makes push take fewer records than offered; it never overwrites.
 *
 * Declarations only (cffi reads this file); the definitions are in ring.c.
 */
#ifndef TRADSYS_RING_H
#define TRADSYS_RING_H

#include <stddef.h>
#include <stdint.h>

#define TS_RING_MAGIC 0x474e495253595354
#define TS_RING_HEADER_SIZE 512

/* Status codes of ts_ring_init and ts_ring_check (0 is success). */
enum ts_ring_status {
    TS_RING_OK = 0,
    TS_RING_ERR_MAGIC = -1,      /* not a ring, or not initialised yet */
    TS_RING_ERR_VERSION = -2,    /* built against another wire layout */
    TS_RING_ERR_SLOT_SIZE = -3,  /* slot size differs from the expected one */
    TS_RING_ERR_CAPACITY = -4,   /* capacity not a power of two, or not the expected one */
    TS_RING_ERR_TOO_SMALL = -5,  /* memory block smaller than header + slots */
    TS_RING_ERR_ARGUMENT = -6    /* slot size zero or not a multiple of 8 */
};

/* How a blocked side waits. Every strategy first spins; they differ in what follows. */
enum ts_wait_kind {
    TS_WAIT_BUSY_SPIN = 1,   /* spin until ready: lowest latency, burns the core */
    TS_WAIT_SPIN_YIELD = 2,  /* spin, then sched_yield between checks */
    TS_WAIT_SPIN_PARK = 3    /* spin, yield, then sleep on a futex the other side wakes */
};

typedef struct ts_wait_strategy {
    int32_t kind;           /* ts_wait_kind */
    uint32_t spin_iters;    /* checks with a CPU pause before yielding or parking */
    uint32_t yield_iters;   /* SPIN_PARK: sched_yield rounds before parking */
    uint32_t _pad0;
} ts_wait_strategy;

/* A copy of the header's identity and indices, for checks, errors and monitoring. */
typedef struct ts_ring_info {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t slot_size;
    uint64_t capacity;
    int32_t creator_pid;
    int32_t producer_pid;
    int32_t consumer_pid;
    uint32_t _pad0;
    uint64_t creator_start_us; /* creator's process start time, to tell pid reuse */
    uint64_t head;             /* records ever published */
    uint64_t tail;             /* records ever consumed */
} ts_ring_info;

typedef struct ts_ring ts_ring;

/* Bytes a ring of `capacity` slots of `slot_size` bytes needs (SIZE_MAX if that
 * does not fit in a size_t). */
size_t ts_ring_bytes_needed(uint32_t slot_size, uint64_t capacity);

/* Format `mem` as an empty ring. The magic is published last, so a concurrent
 * ts_ring_check never sees a half-made header. */
int ts_ring_init(void *mem, size_t mem_size, uint32_t slot_size, uint64_t capacity,
                 uint32_t layout_version, int32_t creator_pid, uint64_t creator_start_us);

/* Validate an existing ring: magic, layout version, slot size, capacity (0 = any),
 * and that `mem_size` covers every slot. The layout version is the caller's (for
 * TradSys, TS_LAYOUT_VERSION of wire.h): the ring itself gives records no meaning. */
int ts_ring_check(const void *mem, size_t mem_size, uint32_t expected_version,
                  uint32_t expected_slot_size, uint64_t expected_capacity);

/* Copy the header; valid on any block of at least TS_RING_HEADER_SIZE bytes. */
void ts_ring_read_info(const void *mem, ts_ring_info *out);

void ts_ring_set_producer(ts_ring *r, int32_t pid);
void ts_ring_set_consumer(ts_ring *r, int32_t pid);

/* Producer side. Copies up to n records; returns how many it took (0 when full). */
uint64_t ts_ring_push(ts_ring *r, const void *records, uint64_t n);
/* Consumer side. Copies up to max records into out; returns how many. */
uint64_t ts_ring_pop(ts_ring *r, void *out, uint64_t max);

/* One record each way, returning 1 or 0. `char *` rather than `void *` so that cffi
 * can hand a Python bytes object straight through without wrapping it. */
int ts_ring_push_one(ts_ring *r, const char *record);
int ts_ring_pop_one(ts_ring *r, char *out);

/* Zero-copy consumer access: the readable records that lie contiguously from the
 * tail (*first points at them), then ts_ring_release(r, k) gives k of them back. */
uint64_t ts_ring_peek(ts_ring *r, void **first);
void ts_ring_release(ts_ring *r, uint64_t k);
/* The same from `skip` records past the tail, for a consumer that reads ahead of what it
 * releases (it keeps the first skip records owed somewhere until it may give them back):
 * 0 when no more than skip are readable. */
uint64_t ts_ring_peek_from(ts_ring *r, uint64_t skip, void **first);

/* Consumer side, reading without consuming: copy up to max records into out, starting
 * `skip` records past the consumer's index (across the ring's end as needed); returns how
 * many (0 when no more than skip are readable). Nothing is released: the slots stay the
 * consumer's until ts_ring_release gives them back, so a consumer that must not lose
 * what it has read but not yet passed on (the TCP edge, until its client acknowledges)
 * leaves it where a successor can find it. */
uint64_t ts_ring_peek_copy(ts_ring *r, void *out, uint64_t skip, uint64_t max);

/* Snapshots; exact for the calling side, a lower bound for the other. */
uint64_t ts_ring_readable(ts_ring *r);
uint64_t ts_ring_writable(ts_ring *r);

/* Block per the strategy until at least one record (slot) is available or timeout_ns
 * passes (negative = no limit). Return the count available, 0 on timeout. */
uint64_t ts_ring_wait_readable(ts_ring *r, const ts_wait_strategy *w, int64_t timeout_ns);
uint64_t ts_ring_wait_writable(ts_ring *r, const ts_wait_strategy *w, int64_t timeout_ns);

/* Push all n records, waiting for space as needed; returns how many were taken
 * before timeout_ns ran out (n unless it did). */
uint64_t ts_ring_push_all(ts_ring *r, const void *records, uint64_t n,
                          const ts_wait_strategy *w, int64_t timeout_ns);
/* Wait for at least one record, then pop up to max; 0 on timeout. */
uint64_t ts_ring_pop_wait(ts_ring *r, void *out, uint64_t max,
                          const ts_wait_strategy *w, int64_t timeout_ns);

/* For a consumer that waits on several rings at once (futex_waitv): mark this ring's
 * consumer parked, then return the records readable (if any, the mark is withdrawn and
 * the caller must not sleep). Otherwise *word and *seen are the futex word and value to
 * wait on: a producer that publishes after this call changes the word and wakes it.
 * Call ts_ring_unpark_consumer after the wait. */
uint64_t ts_ring_park_consumer(ts_ring *r, uint32_t **word, uint32_t *seen);
/* The same for a consumer that reads ahead of its releases: the first skip readable
 * records are already taken, so it parks when no more than those are readable, and
 * returns the records readable past them. */
uint64_t ts_ring_park_consumer_past(ts_ring *r, uint64_t skip, uint32_t **word, uint32_t *seen);
void ts_ring_unpark_consumer(ts_ring *r);

/* Wake a parked peer, e.g. after setting a stop flag it should notice. */
void ts_ring_wake_all(ts_ring *r);

#endif /* TRADSYS_RING_H */
