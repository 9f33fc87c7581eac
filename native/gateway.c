/*
 * gateway.c — the gateway's tables, setup and control calls; see gateway.h.
 *
 * The pump (gateway_pump.c) holds gw->lock for the length of one pass; every control call
 * here takes it too, so a call sees the tables between passes and the pump never sees a
 * half-made session. A control caller announces itself in gw->waiting so the pump steps
 * aside after its pass instead of re-taking the lock at once, and rings gw->doorbell so a
 * parked pump wakes to push what the call queued (kill and disconnect cancels).
 */
#define _GNU_SOURCE
#include "gateway_internal.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t client_hash(uint32_t account, uint64_t client_id) {
    return mix64(client_id * 0x9E3779B97F4A7C15ULL + account);
}

/* ---- small key maps (accounts, symbols) ---------------------------------------------- */

static int keymap_init(gw_keymap *m, uint64_t n) {
    uint64_t cap = pow2_at_least(2 * n);
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    m->mask = cap - 1;
    return m->keys && m->vals ? 0 : -1;
}

uint32_t gw_keymap_get(const gw_keymap *m, uint32_t key) {
    for (uint64_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) return m->vals[i];
        if (m->keys[i] == 0) return GW_NONE;
    }
}

static void keymap_put(gw_keymap *m, uint32_t key, uint32_t val) {
    uint64_t i = mix64(key) & m->mask;
    while (m->keys[i] != 0 && m->keys[i] != key) i = (i + 1) & m->mask;
    m->keys[i] = key;
    m->vals[i] = val;
}

/* ---- order tables ------------------------------------------------------------------- */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux >= 5.14 */
#endif

/* A hash table's inserts land on random pages, and a large block's pages are only mapped
 * when first written (the zero page is shared until then): faulted in here, none faults on
 * the order path. One madvise; a kernel without MADV_POPULATE_WRITE (or a range it
 * refuses) gets each page read and written back, which changes nothing (the caller holds
 * the lock, or the block is its own). */
void gw_populate(void *p, size_t bytes) {
    if (!bytes) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = (uintptr_t)p & ~(page - 1);
    const uintptr_t hi = ((uintptr_t)p + bytes + page - 1) & ~(page - 1);
    if (madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) == 0) return;
    volatile unsigned char *c = p;
    for (size_t i = 0; i < bytes; i += page) c[i] = c[i];
    c[bytes - 1] = c[bytes - 1];
}

void gw_account_live(ts_gateway *gw, uint32_t account) {
    gw_account *acc = &gw->accounts[account];
    if (acc->live) return;
    gw_populate(acc->pos, (size_t)gw->cfg.max_instruments * sizeof *acc->pos);
    if (gw->ledger) gw_ledger_open_row(gw, account);
    acc->live = 1;
    gw->st.accounts_live++;
}

static int table_init(gw_table *t, uint64_t n) {
    uint64_t cap = pow2_at_least(2 * n);
    t->slots = calloc(cap, sizeof *t->slots);
    t->mask = cap - 1;
    if (t->slots) gw_populate(t->slots, cap * sizeof *t->slots);
    return t->slots ? 0 : -1;
}

static void table_insert(gw_table *t, uint64_t hash, uint32_t idx) {
    uint64_t i = hash & t->mask;
    while (t->slots[i]) i = (i + 1) & t->mask;
    t->slots[i] = idx + 1;
}

/* Remove idx, found at hash's probe run; backward-shift keeps every run unbroken. */
static void table_remove(gw_table *t, uint64_t hash, uint32_t idx,
                         uint64_t (*hash_of)(const ts_gateway *, uint32_t), const ts_gateway *gw) {
    uint64_t i = hash & t->mask;
    while (t->slots[i] != idx + 1) {
        if (!t->slots[i]) return;
        i = (i + 1) & t->mask;
    }
    for (;;) {
        t->slots[i] = 0;
        uint64_t j = i;
        for (;;) {
            j = (j + 1) & t->mask;
            if (!t->slots[j]) return;
            uint64_t home = hash_of(gw, t->slots[j] - 1) & t->mask;
            /* move j back to i unless its home lies cyclically in (i, j] */
            int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays) break;
        }
        t->slots[i] = t->slots[j];
        i = j;
    }
}

static uint64_t exch_hash_of(const ts_gateway *gw, uint32_t idx) {
    return mix64(gw->orders[idx].exch_id);
}

static uint64_t client_hash_of(const ts_gateway *gw, uint32_t idx) {
    const gw_order *o = &gw->orders[idx];
    return client_hash(o->account, o->client_id);
}

uint32_t gw_find_exch(const ts_gateway *gw, uint64_t exch_id) {
    const gw_table *t = &gw->by_exch;
    for (uint64_t i = mix64(exch_id) & t->mask;; i = (i + 1) & t->mask) {
        uint32_t s = t->slots[i];
        if (!s) return GW_NONE;
        if (gw->orders[s - 1].exch_id == exch_id) return s - 1;
    }
}

uint32_t gw_find_client(const ts_gateway *gw, uint32_t account, uint64_t client_id) {
    const gw_table *t = &gw->by_client;
    for (uint64_t i = client_hash(account, client_id) & t->mask;; i = (i + 1) & t->mask) {
        uint32_t s = t->slots[i];
        if (!s) return GW_NONE;
        const gw_order *o = &gw->orders[s - 1];
        if (o->client_id == client_id && o->account == account) return s - 1;
    }
}

uint32_t gw_find_amendable(const ts_gateway *gw, uint32_t account, uint64_t client_id) {
    uint32_t idx = gw_find_client(gw, account, client_id);
    return idx != GW_NONE && gw->orders[idx].given_up ? GW_NONE : idx;
}

uint32_t gw_find_amendable_in(const ts_gateway *gw, uint32_t account, uint64_t client_id,
                              uint32_t symbol_id) {
    uint32_t idx = gw_find_amendable(gw, account, client_id);
    if (idx == GW_NONE || !symbol_id) return idx; /* 0: whichever symbol the order is in */
    return gw->instr[gw->orders[idx].instr].symbol_id == symbol_id ? idx : GW_NONE;
}

/* Index the order by its client id (and record it in the ledger before the order can be
 * pushed to its shard, so a successor gateway knows it). */
void gw_index_client(ts_gateway *gw, uint32_t idx) {
    gw_order *o = &gw->orders[idx];
    table_insert(&gw->by_client, client_hash(o->account, o->client_id), idx);
    o->indexed = 1;
    if (gw->ledger) gw_ledger_note_order(gw, idx);
}

void gw_unindex_client(ts_gateway *gw, uint32_t idx) {
    gw_order *o = &gw->orders[idx];
    if (!o->indexed) return;
    table_remove(&gw->by_client, client_hash(o->account, o->client_id), idx, client_hash_of, gw);
    o->indexed = 0;
}

/* A free order slot with a fresh exchange id, indexed by it and linked into the
 * session's list; GW_NONE when the pool is exhausted. */
uint32_t gw_order_alloc(ts_gateway *gw, uint32_t session) {
    uint32_t idx = gw->free_head;
    if (idx == GW_NONE) return GW_NONE;
    gw_order *o = &gw->orders[idx];
    gw->free_head = o->next_free;
    memset(o, 0, sizeof *o);
    o->exch_id = gw->next_id++;
    o->session = session;
    gw_session *s = &gw->sessions[session];
    o->session_gen = s->gen;
    o->sess_prev = GW_NONE;
    o->sess_next = s->head;
    if (s->head != GW_NONE) gw->orders[s->head].sess_prev = idx;
    s->head = idx;
    table_insert(&gw->by_exch, mix64(o->exch_id), idx);
    gw->st.live_orders++;
    return idx;
}

void gw_index_exch(ts_gateway *gw, uint32_t idx) {
    table_insert(&gw->by_exch, mix64(gw->orders[idx].exch_id), idx);
}

/* Forget an order: out of the exchange-id table and its session's list (the client-id
 * table lost it when it finished). Its pool slot is not free yet: gw_order_recycle. */
void gw_order_forget(ts_gateway *gw, uint32_t idx) {
    gw_order *o = &gw->orders[idx];
    table_remove(&gw->by_exch, mix64(o->exch_id), idx, exch_hash_of, gw);
    if (o->indexed) gw_unindex_client(gw, idx); /* finish() did it for a finished order */
    if (o->session != GW_NONE) { /* the usual case, inline: off its session's list */
        gw_due_add(gw, o, -gw_due(o)); /* a late answer finds no order: routed nowhere */
        if (o->sess_prev != GW_NONE) gw->orders[o->sess_prev].sess_next = o->sess_next;
        else gw->sessions[o->session].head = o->sess_next;
        if (o->sess_next != GW_NONE) gw->orders[o->sess_next].sess_prev = o->sess_prev;
    } else {
        gw_session_unlink(gw, idx);
    }
    o->exch_id = 0;
    gw->st.live_orders--;
}

void gw_backlog_add(gw_backlog *b, const ts_command *c) {
    if (b->count == b->cap) {
        uint64_t cap = b->cap ? 2 * b->cap : 64;
        ts_command *p = realloc(b->cmds, cap * sizeof *p);
        if (!p) abort(); /* a control call: out of memory here is fatal */
        b->cmds = p;
        b->cap = cap;
    }
    b->cmds[b->count++] = *c;
}

/* ---- life cycle ---------------------------------------------------------------------- */

ts_gateway *ts_gateway_new(const ts_gateway_config *cfg) {
    if (!cfg || !cfg->max_sessions || !cfg->max_accounts || !cfg->max_instruments ||
        !cfg->max_batch || !cfg->max_orders || cfg->max_orders >= GW_NONE || !cfg->epoch ||
        cfg->epoch > TS_GW_MAX_EPOCH)
        return NULL;
    ts_gateway *gw = calloc(1, sizeof *gw);
    if (!gw) return NULL;
    gw->cfg = *cfg;
    pthread_mutex_init(&gw->lock, NULL);
    gw->next_id = ((uint64_t)cfg->epoch << TS_GW_EPOCH_SHIFT) + 1;
    gw->instr = calloc(cfg->max_instruments, sizeof *gw->instr);
    gw->accounts = calloc(cfg->max_accounts, sizeof *gw->accounts);
    gw->sessions = calloc(cfg->max_sessions, sizeof *gw->sessions);
    gw->orders = calloc(cfg->max_orders, sizeof *gw->orders);
    /* untouched (unmapped) until an ORDER_STATUS answer lists that many orders */
    gw->status_keys = calloc(cfg->max_orders, sizeof *gw->status_keys);
    /* address space only (MAP_NORESERVE): an account's row is faulted in when it becomes
     * live, so max_accounts x max_instruments costs memory per account that trades; no
     * huge pages, which would make one live account's row cost its neighbours' too */
    size_t pos_bytes;
    if (!__builtin_mul_overflow((size_t)cfg->max_accounts * sizeof(gw_position),
                                (size_t)cfg->max_instruments, &pos_bytes)) {
        void *rows = mmap(NULL, pos_bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (rows != MAP_FAILED) {
            madvise(rows, pos_bytes, MADV_NOHUGEPAGE);
            gw->pos_rows = rows;
            gw->pos_bytes = pos_bytes;
        }
    }
    if (!gw->pos_rows || !gw->instr || !gw->accounts || !gw->sessions || !gw->orders || !gw->status_keys ||
        keymap_init(&gw->instr_map, cfg->max_instruments) ||
        keymap_init(&gw->account_map, cfg->max_accounts) ||
        table_init(&gw->by_exch, cfg->max_orders) || table_init(&gw->by_client, cfg->max_orders)) {
        ts_gateway_free(gw);
        return NULL;
    }
    for (uint64_t i = 0; i < cfg->max_orders; i++)
        gw->orders[i].next_free = i + 1 < cfg->max_orders ? (uint32_t)(i + 1) : GW_NONE;
    gw->free_head = 0;
    return gw;
}

void ts_gateway_free(ts_gateway *gw) {
    if (!gw) return;
    for (uint32_t i = 0; i < gw->n_shards; i++) {
        free(gw->shards[i].stage);
        free(gw->shards[i].retired);
        free(gw->shards[i].backlog.cmds);
    }
    if (gw->sessions)
        for (uint32_t i = 0; i < gw->cfg.max_sessions; i++) {
            free(gw->sessions[i].stage);
            free(gw->sessions[i].stage_src);
        }
    if (gw->accounts)
        for (uint32_t i = 0; i < gw->n_accounts; i++) {
            free(gw->accounts[i].held);
            free(gw->accounts[i].held_seq);
        }
    free(gw->instr);
    free(gw->instr_map.keys);
    free(gw->instr_map.vals);
    free(gw->accounts);
    if (gw->pos_rows) munmap(gw->pos_rows, gw->pos_bytes);
    free(gw->account_map.keys);
    free(gw->account_map.vals);
    free(gw->sessions);
    free(gw->orders);
    free(gw->status_keys);
    free(gw->by_exch.slots);
    free(gw->by_client.slots);
    free(gw->ledger);
    gw_held_free(gw);
    free(gw->drained);
    free(gw->drain_keys);
    free(gw->drain_vals);
    pthread_mutex_destroy(&gw->lock);
    free(gw);
}

/* ---- control: lock, doorbell --------------------------------------------------------- */

static void control_lock(ts_gateway *gw) {
    atomic_fetch_add_explicit(&gw->waiting, 1, memory_order_seq_cst);
    pthread_mutex_lock(&gw->lock);
}

static void control_unlock(ts_gateway *gw) {
    atomic_fetch_sub_explicit(&gw->waiting, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&gw->lock);
    ts_gateway_wake(gw);
}

void ts_gateway_wake(ts_gateway *gw) {
    atomic_fetch_add_explicit(&gw->doorbell, 1, memory_order_seq_cst);
    syscall(SYS_futex, (uint32_t *)&gw->doorbell, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static int64_t mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- setup --------------------------------------------------------------------------- */

int ts_gateway_add_shard(ts_gateway *gw, uint32_t shard_id, ts_ring *commands, ts_ring *events) {
    if (!commands || !events) return TS_GW_ERR_ARGUMENT;
    control_lock(gw);
    int rc = TS_GW_OK;
    for (uint32_t i = 0; i < gw->n_shards; i++)
        if (gw->shards[i].shard_id == shard_id) rc = TS_GW_ERR_EXISTS;
    if (rc == TS_GW_OK && gw->n_shards == TS_GW_MAX_SHARDS) rc = TS_GW_ERR_FULL;
    if (rc == TS_GW_OK) {
        gw_shard *sh = &gw->shards[gw->n_shards];
        ts_ring_info info;
        ts_ring_read_info(events, &info);
        /* a quarter of the ring, at most 4 096: the pin stays a short-term buffer */
        sh->pin_max = info.capacity / 4 < 4096 ? info.capacity / 4 : 4096;
        /* every retired order's event is among the unreleased: pin_max + one pass */
        sh->retired_cap = (uint32_t)sh->pin_max + gw->cfg.max_batch;
        sh->stage = calloc(gw->cfg.max_batch, sizeof *sh->stage);
        sh->retired = calloc(sh->retired_cap, sizeof *sh->retired);
        if (!sh->stage || !sh->retired) {
            free(sh->stage);
            free(sh->retired);
            memset(sh, 0, sizeof *sh);
            rc = TS_GW_ERR_NOMEM;
        } else {
            sh->shard_id = shard_id;
            sh->cmd = commands;
            sh->evt = events;
            gw->n_shards++;
        }
    }
    control_unlock(gw);
    return rc;
}

int ts_gateway_add_instrument(ts_gateway *gw, uint32_t symbol_id, uint32_t shard_id,
                              int64_t reference_price) {
    if (!symbol_id || reference_price < 0) return TS_GW_ERR_ARGUMENT;
    control_lock(gw);
    int rc = TS_GW_OK;
    uint32_t shard = GW_NONE;
    for (uint32_t i = 0; i < gw->n_shards; i++)
        if (gw->shards[i].shard_id == shard_id) shard = i;
    if (shard == GW_NONE) rc = TS_GW_ERR_UNKNOWN;
    else if (gw_keymap_get(&gw->instr_map, symbol_id) != GW_NONE) rc = TS_GW_ERR_EXISTS;
    else if (gw->n_instr == gw->cfg.max_instruments) rc = TS_GW_ERR_FULL;
    if (rc == TS_GW_OK) {
        gw_instrument *in = &gw->instr[gw->n_instr];
        in->symbol_id = symbol_id;
        in->shard = shard;
        in->reference = reference_price;
        in->lslot = GW_NONE;
        keymap_put(&gw->instr_map, symbol_id, gw->n_instr++);
        if (gw->ledger) gw_ledger_note_instrument(gw, gw->n_instr - 1);
    }
    control_unlock(gw);
    return rc;
}

static int limits_valid(const ts_risk_limits *l) {
    return l->max_order_qty >= 0 && l->max_order_notional >= 0 && l->price_collar_bps >= 0 &&
           l->max_open_orders >= 0 && l->max_position >= 0 && l->credit_limit >= 0 &&
           l->throttle_per_s >= 0 && l->throttle_per_s <= 1000000000 &&
           l->throttle_burst >= 0 && l->throttle_burst <= 1000000000 &&
           l->account_throttle_per_s >= 0 && l->account_throttle_per_s <= 1000000000 &&
           l->account_throttle_burst >= 0 && l->account_throttle_burst <= 1000000000;
}

int ts_gateway_set_account(ts_gateway *gw, uint32_t account_id, const ts_risk_limits *limits) {
    if (!account_id || !limits || !limits_valid(limits)) return TS_GW_ERR_ARGUMENT;
    control_lock(gw);
    int rc = TS_GW_OK;
    uint32_t a = gw_keymap_get(&gw->account_map, account_id);
    if (a == GW_NONE) {
        if (gw->n_accounts == gw->cfg.max_accounts) {
            rc = TS_GW_ERR_FULL;
        } else {
            gw_account *acc = &gw->accounts[gw->n_accounts];
            acc->pos = gw->pos_rows + (size_t)gw->n_accounts * gw->cfg.max_instruments;
            acc->id = account_id;
            acc->lim = *limits;
            acc->orphans = acc->replay_to = acc->lslot = acc->hslot = GW_NONE;
            gw_account_throttle_reset(acc, mono_now());
            keymap_put(&gw->account_map, account_id, gw->n_accounts++);
            if (gw->ledger) gw_ledger_note_account(gw, gw->n_accounts - 1);
            if (gw->held_log) gw_held_note_account(gw, gw->n_accounts - 1);
        }
    } else {
        gw_account *acc = &gw->accounts[a];
        int rate_changed = acc->lim.throttle_per_s != limits->throttle_per_s ||
                           acc->lim.throttle_burst != limits->throttle_burst;
        int acc_rate_changed = acc->lim.account_throttle_per_s != limits->account_throttle_per_s ||
                               acc->lim.account_throttle_burst != limits->account_throttle_burst;
        acc->lim = *limits;
        int64_t now = mono_now();
        if (acc_rate_changed) gw_account_throttle_reset(acc, now);
        for (uint32_t i = 0; i < gw->cfg.max_sessions; i++) {
            gw_session *s = &gw->sessions[i];
            if (!s->active || s->account != a) continue;
            if (rate_changed) gw_throttle_reset(s, limits, now);
            if (!s->explicit_cod) s->cancel_on_disconnect = limits->cancel_on_disconnect;
        }
    }
    control_unlock(gw);
    return rc;
}

/* ---- sessions ------------------------------------------------------------------------ */

uint64_t ts_gateway_take_dropped(ts_gateway *gw, uint32_t account_id) {
    control_lock(gw);
    uint32_t a = gw_keymap_get(&gw->account_map, account_id);
    uint64_t n = 0;
    if (a != GW_NONE) {
        n = gw->accounts[a].dropped;
        gw->accounts[a].dropped = 0;
    }
    control_unlock(gw);
    return n;
}

void ts_gateway_return_dropped(ts_gateway *gw, uint32_t account_id, uint64_t n) {
    control_lock(gw);
    uint32_t a = gw_keymap_get(&gw->account_map, account_id);
    if (a != GW_NONE) gw->accounts[a].dropped += n;
    control_unlock(gw);
}

int64_t ts_gateway_add_session(ts_gateway *gw, uint32_t account_id, ts_ring *inbound,
                               ts_ring *outbound, int32_t notify_fd, int32_t cancel_on_disconnect) {
    if (!inbound || !outbound || cancel_on_disconnect < -1 || cancel_on_disconnect > 1)
        return TS_GW_ERR_ARGUMENT;
    control_lock(gw);
    int64_t rc = TS_GW_ERR_FULL;
    uint32_t a = gw_keymap_get(&gw->account_map, account_id);
    if (a == GW_NONE) rc = TS_GW_ERR_UNKNOWN;
    for (uint32_t i = 0; a != GW_NONE && i < gw->cfg.max_sessions; i++) {
        gw_session *s = &gw->sessions[i];
        if (s->active) continue;
        if (!s->stage) s->stage = calloc(gw->cfg.max_batch, sizeof *s->stage);
        if (!s->stage_src) s->stage_src = calloc(gw->cfg.max_batch, sizeof *s->stage_src);
        if (!s->stage || !s->stage_src) {
            rc = TS_GW_ERR_NOMEM;
            break;
        }
        gw_account_live(gw, a); /* before the pump can take an order of it */
        s->gen++;
        s->account = a;
        s->in = inbound;
        s->out = outbound;
        s->notify_fd = notify_fd;
        s->explicit_cod = cancel_on_disconnect >= 0;
        s->cancel_on_disconnect = s->explicit_cod ? cancel_on_disconnect
                                                  : gw->accounts[a].lim.cancel_on_disconnect;
        s->staged = s->stage_sent = 0;
        s->stalled = 0;
        s->due = 0;
        s->head = GW_NONE;
        gw_throttle_reset(s, &gw->accounts[a].lim, mono_now());
        s->active = 1;
        gw->st.sessions++;
        /* the account's orders that have no session come to this one, their held events
         * first */
        gw_account *acc = &gw->accounts[a];
        while (acc->orphans != GW_NONE) gw_take_over(gw, acc->orphans, i);
        if (acc->held_n != acc->held_sent && acc->replay_to == GW_NONE) {
            acc->replay_to = i;
            gw->replays_due++;
        }
        rc = (int64_t)s->gen << 32 | i;
        break;
    }
    control_unlock(gw);
    return rc;
}

static gw_session *session_of(ts_gateway *gw, int64_t session_id, uint32_t *slot) {
    if (session_id < 0) return NULL;
    uint32_t i = (uint32_t)(session_id & 0xffffffff);
    if (i >= gw->cfg.max_sessions) return NULL;
    gw_session *s = &gw->sessions[i];
    if (!s->active || s->gen != (uint32_t)(session_id >> 32)) return NULL;
    *slot = i;
    return s;
}

static int newer_first(const void *a, const void *b, void *orders) {
    const gw_order *o = orders;
    uint64_t x = o[*(const uint32_t *)a].exch_id, y = o[*(const uint32_t *)b].exch_id;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The account's other live session with the lowest slot, GW_NONE if none. */
static uint32_t heir_of(const ts_gateway *gw, uint32_t account, uint32_t leaving) {
    for (uint32_t i = 0; i < gw->cfg.max_sessions; i++) {
        const gw_session *s = &gw->sessions[i];
        if (i != leaving && s->active && s->account == account) return i;
    }
    return GW_NONE;
}

int ts_gateway_remove_session(ts_gateway *gw, int64_t session_id) {
    return ts_gateway_remove_session_with(gw, session_id, NULL, 0, NULL, 0);
}

int ts_gateway_remove_session_unread(ts_gateway *gw, int64_t session_id, const ts_event *taken,
                                     uint64_t n) {
    return ts_gateway_remove_session_with(gw, session_id, taken, n, NULL, 0);
}

int ts_gateway_remove_session_with(ts_gateway *gw, int64_t session_id, const ts_event *taken,
                                   uint64_t n, const ts_command *unsent, uint64_t n_unsent) {
    if ((n && !taken) || (n_unsent && !unsent)) return TS_GW_ERR_ARGUMENT;
    control_lock(gw);
    uint32_t slot;
    gw_session *s = session_of(gw, session_id, &slot);
    int rc = s ? TS_GW_OK : TS_GW_ERR_UNKNOWN;
    gw_account *acc = s ? &gw->accounts[s->account] : NULL;
    /* first what its client sent: its orders and their answers go where the session's go */
    gw_leaving last = {0};
    if (s) gw_take_leaving(gw, slot, unsent, n_unsent, &last);
    /* who gets the account's held events and the session's orders: the other session
     * the held events already go to, else the one with the lowest slot (so an order's
     * events, held or not, go to one session) */
    uint32_t heir = GW_NONE;
    if (acc) {
        heir = acc->replay_to != GW_NONE && acc->replay_to != slot ? acc->replay_to
                                                                   : heir_of(gw, s->account, slot);
        const int was_due = acc->replay_to != GW_NONE;
        /* what its client never read goes ahead of anything held after it */
        gw_hold_unread(gw, slot, taken, n, last.rejects, last.n);
        acc->replay_to = acc->held_n != acc->held_sent ? heir : GW_NONE;
        gw->replays_due += (acc->replay_to != GW_NONE) - was_due;
    }
    if (s && s->cancel_on_disconnect) {
        /* cancels newest first, whatever order the list got into through take-overs */
        uint64_t n = 0;
        for (uint32_t idx = s->head; idx != GW_NONE; idx = gw->orders[idx].sess_next) n++;
        uint32_t *list = n ? malloc(n * sizeof *list) : NULL;
        if (n && !list) abort(); /* a control call: out of memory here is fatal */
        n = 0;
        for (uint32_t idx = s->head; idx != GW_NONE; idx = gw->orders[idx].sess_next)
            list[n++] = idx;
        qsort_r(list, n, sizeof *list, newer_first, gw->orders);
        for (uint64_t k = 0; k < n; k++) {
            uint32_t idx = list[k];
            gw_order *o = &gw->orders[idx];
            if (o->state != GW_DONE) {
                const gw_instrument *in = &gw->instr[o->instr];
                ts_command c = {.kind = TS_CMD_CANCEL,
                                .flags = TS_FLAG_DISCONNECT,
                                .symbol_id = in->symbol_id,
                                .account_id = gw->accounts[o->account].id,
                                .order_id = o->exch_id};
                gw_backlog_add(&gw->shards[in->shard].backlog, &c);
                o->pending++;
                gw_due_add(gw, o, 1);
                /* out of reach of amends, but its client id stays taken until it is done
                 * (finish() frees it): a NEW reusing the id now would share it with this
                 * order's last events */
                o->given_up = 1;
            }
            /* what the order still does before the cancel lands (a fill racing it) and
             * the cancel itself are the account's: its other session, or its next one,
             * gets them, as for an order left resting */
            if (heir != GW_NONE) {
                gw_take_over(gw, idx, heir);
            } else {
                gw_session_unlink(gw, idx);
                gw_link_orphan(gw, idx);
            }
        }
        free(list);
    } else if (s) {
        /* the orders stay the account's: its other session, or its next one, takes them */
        while (s->head != GW_NONE) {
            uint32_t idx = s->head;
            if (heir != GW_NONE) {
                gw_take_over(gw, idx, heir);
            } else {
                gw_session_unlink(gw, idx);
                gw_link_orphan(gw, idx);
            }
        }
    }
    if (s) {
        s->head = GW_NONE;
        s->active = 0;
        ts_ring_unpark_consumer(s->in); /* a parked pump may have marked it */
        s->in = s->out = NULL;
        gw->st.sessions--;
    }
    free(last.rejects);
    control_unlock(gw);
    return rc;
}

/* ---- kill switch --------------------------------------------------------------------- */

static void mass_cancel_everywhere(ts_gateway *gw, uint32_t account_id, uint8_t flags) {
    ts_command c = {.kind = TS_CMD_MASS_CANCEL, .account_id = account_id, .flags = flags};
    for (uint32_t i = 0; i < gw->n_shards; i++) gw_backlog_add(&gw->shards[i].backlog, &c);
}

int ts_gateway_kill(ts_gateway *gw, uint32_t account_id, int32_t on) {
    control_lock(gw);
    int rc = TS_GW_OK;
    if (account_id) {
        uint32_t a = gw_keymap_get(&gw->account_map, account_id);
        if (a == GW_NONE) rc = TS_GW_ERR_UNKNOWN;
        else gw->accounts[a].killed = on != 0;
    } else {
        gw->global_kill = on != 0;
    }
    if (rc == TS_GW_OK && gw->ledger) gw_ledger_note_kill(gw);
    if (rc == TS_GW_OK && on) mass_cancel_everywhere(gw, account_id, TS_FLAG_KILL_SWITCH);
    control_unlock(gw);
    return rc;
}

int ts_gateway_mass_cancel(ts_gateway *gw, uint32_t account_id) {
    control_lock(gw);
    int rc = TS_GW_OK;
    if (account_id && gw_keymap_get(&gw->account_map, account_id) == GW_NONE)
        rc = TS_GW_ERR_UNKNOWN;
    else
        mass_cancel_everywhere(gw, account_id, 0);
    control_unlock(gw);
    return rc;
}

int ts_gateway_set_shard_down(ts_gateway *gw, uint32_t shard_id, int32_t down) {
    control_lock(gw);
    int rc = TS_GW_ERR_UNKNOWN;
    for (uint32_t i = 0; i < gw->n_shards; i++) {
        gw_shard *sh = &gw->shards[i];
        if (sh->shard_id != shard_id) continue;
        const uint8_t now = down != 0;
        if (sh->down != now) gw->n_down += now ? 1u : (uint32_t)-1;
        sh->down = now;
        rc = TS_GW_OK;
    }
    control_unlock(gw);
    return rc;
}

int ts_gateway_market_control(ts_gateway *gw, uint32_t symbol_id, uint8_t control) {
    /* the pump keeps the clock (CLOCK_TICK); the rest is the operator's */
    if (control < TS_CTL_SESSION_OPEN || control > TS_CTL_AUCTION_UNCROSS)
        return TS_GW_ERR_ARGUMENT;
    control_lock(gw);
    int rc = TS_GW_OK;
    ts_command c = {.kind = TS_CMD_CONTROL, .control = control, .symbol_id = symbol_id};
    if (symbol_id) {
        uint32_t k = gw_keymap_get(&gw->instr_map, symbol_id);
        if (k == GW_NONE) rc = TS_GW_ERR_UNKNOWN;
        else gw_backlog_add(&gw->shards[gw->instr[k].shard].backlog, &c);
    } else {
        for (uint32_t i = 0; i < gw->n_shards; i++) gw_backlog_add(&gw->shards[i].backlog, &c);
    }
    control_unlock(gw);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------- */

static int64_t clamp64(gw_wide v) {
    return v > INT64_MAX ? INT64_MAX : v < INT64_MIN ? INT64_MIN : (int64_t)v;
}

void ts_gateway_get_stats(ts_gateway *gw, ts_gateway_stats *out) {
    control_lock(gw);
    *out = gw->st;
    control_unlock(gw);
}

uint32_t ts_gateway_check_due(ts_gateway *gw, int64_t *total) {
    control_lock(gw);
    uint32_t wrong = 0;
    int64_t sum = 0;
    for (uint32_t i = 0; i < gw->cfg.max_sessions; i++) {
        const gw_session *s = &gw->sessions[i];
        if (!s->active) continue;
        int64_t due = 0;
        for (uint32_t idx = s->head; idx != GW_NONE; idx = gw->orders[idx].sess_next)
            due += gw_due(&gw->orders[idx]);
        wrong += due != s->due;
        sum += s->due;
    }
    control_unlock(gw);
    *total = sum;
    return wrong;
}

uint32_t ts_gateway_stalled_sessions(ts_gateway *gw, int64_t *out, uint32_t max) {
    control_lock(gw);
    uint32_t n = 0;
    for (uint32_t i = 0; i < gw->cfg.max_sessions && n < max; i++) {
        const gw_session *s = &gw->sessions[i];
        /* the one a shard's events stopped at, and every other whose ring has no room for
         * the events it has waiting: all of them measured at once, so that several clients
         * that stopped reading are ended together, not one stall after another */
        if (s->active && (s->stalled || (s->staged && !ts_ring_writable(s->out))))
            out[n++] = (int64_t)s->gen << 32 | i;
    }
    control_unlock(gw);
    return n;
}

int ts_gateway_account_state(ts_gateway *gw, uint32_t account_id, ts_account_state *out) {
    control_lock(gw);
    uint32_t a = gw_keymap_get(&gw->account_map, account_id);
    if (a != GW_NONE) {
        const gw_account *acc = &gw->accounts[a];
        memset(out, 0, sizeof *out);
        out->open_orders = acc->open_orders;
        out->open_notional = clamp64(acc->open_notional);
        out->filled_notional = clamp64(acc->filled_notional);
        out->killed = acc->killed || gw->global_kill;
    }
    control_unlock(gw);
    return a == GW_NONE ? TS_GW_ERR_UNKNOWN : TS_GW_OK;
}

uint32_t ts_gateway_figures(ts_gateway *gw, uint32_t *cursor, uint64_t budget, ts_figure_row *out,
                            uint32_t cap) {
    uint32_t n = 0;
    uint64_t looked = 0;
    uint32_t a = *cursor;
    for (;; a++) {
        control_lock(gw);
        const uint32_t n_accounts = gw->n_accounts, n_instr = gw->n_instr;
        if (a >= n_accounts) {
            control_unlock(gw);
            a = 0;
            break;
        }
        if ((looked && looked + n_instr > budget) || cap - n < n_instr + 1) {
            control_unlock(gw);
            break;
        }
        const gw_account *acc = &gw->accounts[a];
        ts_figure_row *own = &out[n];
        memset(own, 0, sizeof *own);
        own->account_index = a;
        own->account_id = acc->id;
        own->killed = acc->killed || gw->global_kill;
        own->a = acc->open_orders;
        own->b = clamp64(acc->open_notional);
        own->c = clamp64(acc->filled_notional);
        uint32_t rows = 1;
        for (uint32_t k = 0; acc->live && k < n_instr; k++) { /* not live: all flat */
            const gw_position *p = &acc->pos[k];
            if (!p->position && !p->open_buy && !p->open_sell) continue;
            ts_figure_row *r = &out[n + rows++];
            *r = *own;
            r->symbol_id = gw->instr[k].symbol_id;
            r->a = clamp64(p->position);
            r->b = clamp64(p->open_buy);
            r->c = clamp64(p->open_sell);
        }
        looked += acc->live ? n_instr : 1;
        control_unlock(gw);
        if (rows > 1 || own->killed || own->a || own->b || own->c) n += rows;
    }
    *cursor = a;
    return n;
}

int ts_gateway_position(ts_gateway *gw, uint32_t account_id, uint32_t symbol_id,
                        ts_position_state *out) {
    control_lock(gw);
    uint32_t a = gw_keymap_get(&gw->account_map, account_id);
    uint32_t k = gw_keymap_get(&gw->instr_map, symbol_id);
    if (a != GW_NONE && k != GW_NONE) {
        static const gw_position flat;
        const gw_position *p = gw->accounts[a].live ? &gw->accounts[a].pos[k] : &flat;
        out->position = clamp64(p->position);
        out->open_buy = clamp64(p->open_buy);
        out->open_sell = clamp64(p->open_sell);
    }
    control_unlock(gw);
    return a == GW_NONE || k == GW_NONE ? TS_GW_ERR_UNKNOWN : TS_GW_OK;
}

int64_t ts_gateway_hold_stale_ring(ts_gateway *gw, ts_ring *out) {
    if (!out) return TS_GW_ERR_ARGUMENT;
    control_lock(gw);
    const uint64_t n = gw_ring_unread(out, NULL, 0, 1);
    ts_event *evs = n ? malloc((size_t)n * sizeof *evs) : NULL;
    if (n && !evs) abort(); /* a control call: out of memory here is fatal */
    const uint64_t got = n ? gw_ring_unread(out, evs, n, 0) : 0;
    /* a session serves one account: its ring's events are that account's (the gateway's
     * own REJECTED answers included), in the order they were routed */
    uint32_t id = 0;
    for (uint64_t i = 0; i < got && !id; i++) id = evs[i].account_id;
    uint64_t m = 0;
    for (uint64_t i = 0; i < got; i++)
        if (evs[i].account_id == id || evs[i].account_id == 0) evs[m++] = evs[i];
    const uint32_t a = id ? gw_keymap_get(&gw->account_map, id) : GW_NONE;
    int64_t kept = 0;
    if (a == GW_NONE) { /* no account, or one no longer configured: nobody to give them to */
        gw->st.events_unread_dropped += got;
        gw->st.events_orphaned += got;
    } else {
        kept = (int64_t)gw_hold_ahead(gw, a, evs, m, got); /* another account's: dropped */
        /* the dead gateway may not have released them from the shard's ring yet (it
         * releases an event once nothing before it waits in a stage): drained, they are
         * these */
        gw_held_note_seen(gw, evs, (uint64_t)kept);
    }
    free(evs);
    control_unlock(gw);
    return kept;
}
