/*
 * gateway_held.c — the held-events log: the events a gateway keeps for an account that
 * has no session (see ts_gateway_remove_session in gateway.h) outlive the process.
 *
 * Like the ledger (gateway_ledger.c) it is a block of caller memory, a MAP_SHARED file
 * mapping, so every store a gateway made is there for its successor whatever instruction
 * it died at. Layout:
 *
 *   header (64 B)              magic last; the commit word names the active half
 *   marks [max_accounts]       per account: the seq of the last record delivered
 *   half 0, half 1             TS_GW_HELD_LOG records of 96 B each
 *
 * A record is the event as the client will get it (its client order id), the account,
 * a sequence number that grows across the whole log, the generation of the half it was
 * written in, and a crc32c of all of that. Crash consistency, rule by rule:
 *   - appending writes one record past the last one; a gateway killed halfway leaves a
 *     record whose crc does not match, and a reader stops at the first record that is
 *     torn, of another generation (left from an earlier use of the half) or not above
 *     the previous sequence number: the valid records are a prefix;
 *   - delivering is one release store of the account's mark (the last seq handed to a
 *     session, in order): a record at or below its account's mark is delivered. The
 *     store follows the push to the session's ring, so a gateway killed between the two
 *     hands the record to the next session again (the client tells it by its exec_id);
 *     it is never lost;
 *   - a session that ends with events its client did not read puts them ahead of the
 *     account's pending held events: the whole pending list is appended again as one
 *     batch (gw_held_rewrite) whose last record commits it; a reader ignores a batch
 *     without that record (torn) and, for one with it, every earlier record of its
 *     account (repeated in the batch), and the mark store that follows says the same;
 *   - emptying the log (all held events delivered) and compacting it (the active half is
 *     full) write the other half, then switch halves with one release store of the
 *     commit word (generation << 1 | half), as a ledger cell commits a trade: a reader
 *     sees the log before or after, never between.
 * Only control calls allocate (attach); appending and delivering, done by the pump,
 * write into the mapping and nothing else. They run only for held events, the rare path
 * (an account without a session), never for an event routed to a live session.
 */
#define _GNU_SOURCE
#include "gateway_internal.h"
#include "journal.h" /* ts_crc32c */

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define HELD_MAGIC 0x31444c4857475354ULL /* "TSGWHLD1" */
#define HELD_VERSION 1
#define REC_RAW 1u /* drained: a REJECTED's DONE flag is settled by the restore; the
                    * exchange order id rides in contra_order_id */
#define REC_BATCH 2u  /* one of a batch written by gw_held_rewrite ... */
#define REC_COMMIT 4u /* ... its last record, which makes it count (`batch`: its size) */

typedef struct gw_held_header {
    uint64_t magic;
    uint32_t version;
    uint32_t capacity; /* records per half */
    uint64_t commit;   /* (generation << 1) | the active half */
    uint32_t mark_slots;
    uint32_t _pad0;
    uint64_t base_seq; /* no record of the active half is at or below it */
    uint64_t _pad1[3];
} gw_held_header;

typedef struct gw_held_mark {
    uint32_t account_id; /* 0 = free */
    uint32_t _pad0;
    uint64_t delivered; /* seq of the last record of the account handed to a session */
} gw_held_mark;

typedef struct gw_held_record {
    uint32_t crc; /* crc32c of bytes 4..95 */
    uint32_t account_id;
    uint64_t gen;
    uint64_t seq;
    uint32_t flags; /* REC_RAW, REC_BATCH, REC_COMMIT */
    uint32_t batch; /* REC_COMMIT: the records of its batch, itself included */
    ts_event ev;
} gw_held_record;

_Static_assert(sizeof(gw_held_header) == 64, "held header");
_Static_assert(sizeof(gw_held_record) == 96, "held record");

struct gw_held_log {
    gw_held_header *h;
    gw_held_mark *marks;
    gw_held_record *half[2];
    uint32_t n;        /* valid records in the active half */
    uint64_t next_seq;
    uint64_t pending;  /* records held in memory and not yet delivered */
    uint64_t *seen;    /* (shard, exec id) of every record found at attach, and of every
                        * event read back from a dead session's ring: the drained events
                        * that are in the log already (until hold_drained) */
    uint64_t seen_mask;
    uint64_t seen_n;
};

#define STORE_RELEASE(field, value) __atomic_store_n(&(field), (value), __ATOMIC_RELEASE)

static uint64_t marks_off(void) { return sizeof(gw_held_header); }
static uint64_t halves_off(const ts_gateway *gw) {
    return (marks_off() + (uint64_t)gw->cfg.max_accounts * sizeof(gw_held_mark) + 63) &
           ~(uint64_t)63;
}

uint64_t ts_gateway_held_size(const ts_gateway *gw) {
    return halves_off(gw) + 2ull * TS_GW_HELD_LOG * sizeof(gw_held_record);
}

static uint32_t record_crc(const gw_held_record *r) {
    return ts_crc32c(0, (const char *)r + 4, sizeof *r - 4);
}

static uint64_t gen_of(const gw_held_header *h) { return h->commit >> 1; }
static gw_held_record *active(struct gw_held_log *l) { return l->half[l->h->commit & 1]; }

static uint64_t mark_of(const ts_gateway *gw, uint32_t account_id) {
    uint32_t a = gw_keymap_get(&gw->account_map, account_id);
    if (a == GW_NONE || gw->accounts[a].hslot == GW_NONE) return 0; /* keep its records */
    return gw->held_log->marks[gw->accounts[a].hslot].delivered;
}

/* Copy the records that must stay into the other half and switch to it (keep = 0: empty
 * the log). The switch is the one store that matters; a crash before it leaves the old
 * half in force. */
static void switch_half(ts_gateway *gw, int keep) {
    struct gw_held_log *l = gw->held_log;
    gw_held_header *h = l->h;
    unsigned cur = (unsigned)(h->commit & 1), nxt = cur ^ 1;
    uint64_t gen = gen_of(h) + 1;
    uint32_t n = 0;
    for (uint32_t i = 0; keep && i < l->n; i++) {
        const gw_held_record *r = &l->half[cur][i];
        if (r->seq <= mark_of(gw, r->account_id)) continue; /* delivered */
        gw_held_record *w = &l->half[nxt][n++];
        *w = *r;
        w->gen = gen;
        w->crc = record_crc(w);
    }
    /* emptied: whatever the old half held is delivered (or can never be), and a reader
     * that finds the old half still in force after a crash here may drop it too */
    if (!keep) STORE_RELEASE(h->base_seq, l->next_seq - 1);
    STORE_RELEASE(h->commit, (gen << 1) | nxt);
    l->n = n;
}

/* Append one record; its seq, or 0 when it cannot be kept durably (no log, the account
 * has no mark slot, or the log is full of undelivered records). */
static uint64_t append(ts_gateway *gw, uint32_t account, const ts_event *ev, uint32_t flags,
                       uint32_t batch) {
    struct gw_held_log *l = gw->held_log;
    if (!l || gw->accounts[account].hslot == GW_NONE) return 0;
    if (l->n == TS_GW_HELD_LOG) switch_half(gw, 1);
    if (l->n == TS_GW_HELD_LOG) return 0;
    gw_held_record *r = &active(l)[l->n];
    r->account_id = gw->accounts[account].id;
    r->gen = gen_of(l->h);
    r->seq = l->next_seq;
    r->flags = flags;
    r->batch = batch;
    r->ev = *ev;
    r->crc = record_crc(r);
    l->n++;
    return l->next_seq++;
}

uint64_t gw_held_append(ts_gateway *gw, uint32_t account, const ts_event *ev) {
    uint64_t seq = append(gw, account, ev, 0, 0);
    if (!seq && gw->held_log) gw->st.events_held_volatile++;
    return seq;
}

uint64_t gw_held_append_drained(ts_gateway *gw, uint32_t account, const ts_event *ev) {
    uint64_t seq = append(gw, account, ev, REC_RAW, 0);
    if (!seq && gw->held_log) gw->st.events_held_volatile++;
    return seq;
}

void gw_held_kept(ts_gateway *gw, uint64_t seq) {
    if (seq && gw->held_log) gw->held_log->pending++;
}

void gw_held_delivered(ts_gateway *gw, uint32_t account, uint64_t last_seq, uint64_t count) {
    struct gw_held_log *l = gw->held_log;
    if (!l) return;
    if (count) {
        uint32_t slot = gw->accounts[account].hslot;
        if (slot != GW_NONE && last_seq) STORE_RELEASE(l->marks[slot].delivered, last_seq);
        l->pending -= count < l->pending ? count : l->pending;
    }
    if (!l->pending && l->n) switch_half(gw, 0); /* everything out: empty the log */
}

/* A session ended with events its client never read (gw_hold_unread): they go ahead of
 * the account's pending held events, whose records are already in the log behind them.
 * Records are delivered in seq order (the mark), so the whole pending list is written
 * again as one contiguous batch and the old records are superseded -- by the mark, and,
 * should the gateway die before that store, by the batch's commit record (see attach). A
 * batch cut short by a crash has no commit and is ignored: the old records stand. The
 * batch never straddles a compaction: its room is made before it starts. */
int gw_held_rewrite(ts_gateway *gw, uint32_t account, const ts_event *evs, uint64_t *seqs,
                    uint32_t n_new, uint32_t n) {
    struct gw_held_log *l = gw->held_log;
    if (!l || !n) return 0;
    uint32_t slot = gw->accounts[account].hslot;
    if (slot != GW_NONE && l->n + n > TS_GW_HELD_LOG) switch_half(gw, 1);
    if (slot == GW_NONE || l->n + n > TS_GW_HELD_LOG) {
        gw->st.events_held_volatile += n_new;
        return 0;
    }
    uint64_t old_durable = 0;
    for (uint32_t i = n_new; i < n; i++) old_durable += seqs[i] != 0;
    const uint64_t first = l->next_seq;
    for (uint32_t i = 0; i < n; i++)
        seqs[i] = append(gw, account, &evs[i], REC_BATCH | (i + 1 == n ? REC_COMMIT : 0),
                         i + 1 == n ? n : 0);
    l->pending += n;
    l->pending -= old_durable < l->pending ? old_durable : l->pending;
    /* every record of the account below the batch is delivered or repeated in it */
    STORE_RELEASE(l->marks[slot].delivered, first - 1);
    return 1;
}

/* A mark slot for the account: its own from an earlier gateway, else a free one. */
void gw_held_note_account(ts_gateway *gw, uint32_t account) {
    struct gw_held_log *l = gw->held_log;
    gw_account *acc = &gw->accounts[account];
    acc->hslot = GW_NONE;
    if (!l) return;
    uint32_t free_slot = GW_NONE;
    for (uint32_t i = 0; i < l->h->mark_slots; i++) {
        if (l->marks[i].account_id == acc->id) {
            acc->hslot = i;
            return;
        }
        if (!l->marks[i].account_id && free_slot == GW_NONE) free_slot = i;
    }
    if (free_slot == GW_NONE) return; /* its held events stay in memory only */
    l->marks[free_slot].delivered = 0;
    STORE_RELEASE(l->marks[free_slot].account_id, acc->id);
    acc->hslot = free_slot;
}

/* ---- attach -------------------------------------------------------------------------- */

static uint64_t seen_key(uint32_t shard, uint64_t exec_id) {
    return (exec_id << 6 | shard) + 1; /* never 0 (the empty key); shards < 64 */
}

static uint64_t seen_hash(uint64_t key) { return key * 0x9E3779B97F4A7C15ULL >> 17; }

static void seen_add(struct gw_held_log *l, uint64_t key) {
    uint64_t i = seen_hash(key) & l->seen_mask;
    while (l->seen[i] && l->seen[i] != key) i = (i + 1) & l->seen_mask;
    l->seen_n += !l->seen[i];
    l->seen[i] = key;
}

void gw_held_note_seen(ts_gateway *gw, const ts_event *evs, uint64_t n) {
    struct gw_held_log *l = gw->held_log;
    if (!l || !l->seen) return;
    if (2 * (l->seen_n + n) > l->seen_mask + 1) { /* keep it at most half full */
        uint64_t cap = l->seen_mask + 1;
        while (cap < 2 * (l->seen_n + n)) cap <<= 1;
        uint64_t *old = l->seen, old_cap = l->seen_mask + 1;
        l->seen = calloc(cap, sizeof *l->seen);
        if (!l->seen) abort(); /* a start-up call: out of memory here is fatal */
        l->seen_mask = cap - 1;
        l->seen_n = 0;
        for (uint64_t i = 0; i < old_cap; i++)
            if (old[i]) seen_add(l, old[i]);
        free(old);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (!evs[i].exec_id) continue; /* the gateway's own answer: no shard drains it */
        uint32_t k = gw_keymap_get(&gw->instr_map, evs[i].symbol_id);
        if (k != GW_NONE) seen_add(l, seen_key(gw->instr[k].shard, evs[i].exec_id));
    }
}

int gw_held_seen(const ts_gateway *gw, const ts_event *ev) {
    const struct gw_held_log *l = gw->held_log;
    if (!l || !l->seen) return 0;
    uint32_t k = gw_keymap_get(&gw->instr_map, ev->symbol_id);
    if (k == GW_NONE) return 0;
    uint64_t key = seen_key(gw->instr[k].shard, ev->exec_id);
    for (uint64_t i = seen_hash(key) & l->seen_mask;; i = (i + 1) & l->seen_mask) {
        if (!l->seen[i]) return 0;
        if (l->seen[i] == key) return 1;
    }
}

void gw_held_forget_seen(ts_gateway *gw) {
    if (!gw->held_log) return;
    free(gw->held_log->seen);
    gw->held_log->seen = NULL;
}

static int valid_header(const ts_gateway *gw, const gw_held_header *h) {
    return h->magic == HELD_MAGIC && h->version == HELD_VERSION &&
           h->capacity == TS_GW_HELD_LOG && h->mark_slots == gw->cfg.max_accounts;
}

int64_t ts_gateway_attach_held(ts_gateway *gw, void *mem, uint64_t size) {
    if (!mem || ((uintptr_t)mem & 15) || size < ts_gateway_held_size(gw))
        return TS_GW_ERR_ARGUMENT;
    struct gw_held_log *l = calloc(1, sizeof *l);
    if (!l) return TS_GW_ERR_NOMEM;
    pthread_mutex_lock(&gw->lock);
    int64_t rc = 0;
    if (gw->held_log || gw->drained_n) {
        rc = TS_GW_ERR_ARGUMENT; /* once, and before ts_gateway_drain */
        free(l);
        goto out;
    }
    char *base = mem;
    l->h = mem;
    l->marks = (gw_held_mark *)(base + marks_off());
    l->half[0] = (gw_held_record *)(base + halves_off(gw));
    l->half[1] = l->half[0] + TS_GW_HELD_LOG;
    if (!valid_header(gw, l->h)) {
        /* a new log (or one of another layout: its records cannot be read). Only the
         * header and the marks are cleared, not the 12 MB of records (a new file stays
         * sparse): the generation starts above the one the header last named, so no
         * record left from before counts (a fresh file: 0, so generation 1) */
        uint64_t gen = ((l->h->commit >> 1) + 1) & ((1ull << 62) - 1);
        __atomic_store_n(&l->h->magic, 0, __ATOMIC_RELEASE);
        /* the new generation first: a format torn after it still starts above it */
        STORE_RELEASE(l->h->commit, (gen ? gen : 1) << 1); /* half 0 */
        l->h->version = HELD_VERSION;
        l->h->capacity = TS_GW_HELD_LOG;
        memset(base + offsetof(gw_held_header, mark_slots), 0,
               halves_off(gw) - offsetof(gw_held_header, mark_slots)); /* the rest, marks */
        memset(&l->half[0][0], 0, sizeof(gw_held_record));
        memset(&l->half[1][0], 0, sizeof(gw_held_record));
        l->h->mark_slots = gw->cfg.max_accounts;
        STORE_RELEASE(l->h->magic, HELD_MAGIC);
    }
    gw->held_log = l;
    for (uint32_t a = 0; a < gw->n_accounts; a++) gw_held_note_account(gw, a);
    /* the valid prefix of the active half */
    const gw_held_record *recs = active(l);
    uint64_t gen = gen_of(l->h), last = l->h->base_seq;
    uint32_t n = 0;
    while (n < TS_GW_HELD_LOG && recs[n].gen == gen && recs[n].seq > last &&
           recs[n].crc == record_crc(&recs[n]))
        last = recs[n++].seq;
    for (uint32_t i = 0; i < l->h->mark_slots; i++)
        if (l->marks[i].delivered > last) last = l->marks[i].delivered;
    /* next_seq is above every valid record, also those of a torn batch dropped next: a
     * record written over one of them has a larger seq than those left behind it, so a
     * reader stops there */
    l->next_seq = last + 1;
    /* a batch without its commit record (the gateway died writing it) does not count */
    uint32_t open = GW_NONE;
    for (uint32_t i = 0; i < n; i++) {
        if (!(recs[i].flags & REC_BATCH)) continue;
        if (open == GW_NONE) open = i;
        if (recs[i].flags & REC_COMMIT) open = GW_NONE;
    }
    if (open != GW_NONE) n = open;
    l->n = n;
    /* a committed batch repeats every undelivered record of its account before it */
    uint32_t *cut = calloc(gw->n_accounts ? gw->n_accounts : 1, sizeof *cut);
    if (!cut) {
        rc = TS_GW_ERR_NOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!(recs[i].flags & REC_COMMIT)) continue;
        uint32_t a = gw_keymap_get(&gw->account_map, recs[i].account_id);
        if (a != GW_NONE) cut[a] = i + 1 >= recs[i].batch ? i + 1 - recs[i].batch : 0;
    }
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)n) cap <<= 1;
    l->seen = calloc(cap, sizeof *l->seen);
    l->seen_mask = cap - 1;
    l->seen_n = 0;
    if (!l->seen) {
        free(cut);
        rc = TS_GW_ERR_NOMEM;
        goto out;
    }
    /* every record names an event its gateway took from a shard ring: one drained again
     * (taken but not released when it died) is that record, not a new event */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = gw_keymap_get(&gw->instr_map, recs[i].ev.symbol_id);
        if (k != GW_NONE) seen_add(l, seen_key(gw->instr[k].shard, recs[i].ev.exec_id));
    }
    /* the undelivered ones go first to their accounts' next sessions, in order, before
     * any event drained now (ts_gateway_hold_drained keeps them) */
    for (uint32_t i = 0; i < n; i++) {
        const gw_held_record *r = &recs[i];
        if (r->seq <= mark_of(gw, r->account_id)) continue;
        uint32_t a = gw_keymap_get(&gw->account_map, r->account_id);
        if (a == GW_NONE || i < cut[a]) continue;
        if (gw_keep_drained(gw, &r->ev, r->seq, r->flags & REC_RAW) < 0) {
            free(cut);
            rc = TS_GW_ERR_NOMEM;
            goto out;
        }
        rc++;
    }
    free(cut);
    gw->st.events_held_restored += (uint64_t)rc;
out:
    pthread_mutex_unlock(&gw->lock);
    return rc;
}

void gw_held_free(ts_gateway *gw) {
    if (!gw->held_log) return;
    free(gw->held_log->seen);
    free(gw->held_log);
    gw->held_log = NULL;
}
