/*
 * gateway_ledger.c — what a gateway leaves for its successor, and the restart that reads
 * it; see gateway.h ("restart").
 *
 * The ledger is one block of caller memory (a MAP_SHARED file mapping: it outlives a
 * process killed at any instruction). Layout, all sized by the gateway's maximums:
 *
 *   header (64 B)                     magic last, so a half-formatted block is refused
 *   order slots [max_orders]          per pool index: client id, then exchange id
 *   accounts [max_accounts]           which account each slot is, its kill switch, whether
 *                                     this run has used its row of cells
 *   instruments [max_instruments]     symbol id and last trade price per index
 *   cells [max_accounts × max_instr]  position and filled notional per account × symbol
 *
 * The cells are most of it (max_accounts × max_instruments × 80 B), so only the rows of
 * accounts that trade are touched: a new run formats everything before the cells and
 * leaves the cells as they are (an earlier run's figures, or a fresh file's zeros); an
 * account's row is faulted in and zeroed by the control call that first makes it
 * reachable to the pump (gw_ledger_open_row, from gw_account_live), which then marks the
 * account's slot `used` with a release store. A successor loads the rows marked used and
 * no other: the rest were never written in this run.
 *
 * Crash consistency, rule by rule:
 *   - an order slot is written (client id, then the exchange id with a release store)
 *     before the order is staged for its shard, so every order a shard can hold has its
 *     slot; a slot torn by a crash names an exchange id that never reached a shard, or
 *     one already finished — the restart only looks up ids the workers report live;
 *   - a cell holds two copies of its figures and a commit word, (exec id << 1) | copy:
 *     a trade writes the other copy, then publishes it with one release store of the
 *     commit word, so a reader sees the figures before or after a trade, never half; a
 *     trade whose exec id is not above the cell's was counted already (its event was
 *     left unreleased in the event ring by a gateway that died) and is skipped — exec
 *     ids grow strictly per shard, and each symbol, so each cell, has one shard;
 *   - ids and last trade prices are single aligned stores.
 * The live orders themselves are not kept here: the engines are their source of truth
 * (order_image.h), read once at start.
 */
#define _GNU_SOURCE
#include "gateway_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEDGER_MAGIC 0x3152474c57475354ULL /* "TSGWLGR1" */
#define LEDGER_VERSION 2 /* 2: accounts[].used; cells zeroed per row */

typedef struct gw_ledger_header {
    uint64_t magic;
    uint32_t version;
    uint32_t max_accounts;
    uint64_t run_id;
    uint64_t max_orders;
    uint32_t max_instruments;
    uint32_t n_accounts; /* account ids recorded */
    uint32_t n_instr;    /* instruments recorded */
    uint32_t global_kill;
    uint64_t _pad1[2];
} gw_ledger_header;

typedef struct gw_ledger_order {
    uint64_t client_id;
    uint64_t exch_id; /* written last: the slot's tag */
} gw_ledger_order;

typedef struct gw_ledger_account {
    uint32_t id;
    uint32_t killed;
    uint32_t used; /* its row of cells is this run's (zeroed, then written by trades) */
    uint32_t _pad0;
} gw_ledger_account;

typedef struct gw_ledger_instr {
    uint32_t symbol_id;
    uint32_t _pad0;
    int64_t last_trade;
} gw_ledger_instr;

typedef struct gw_ledger_cell {
    uint64_t commit; /* (exec id of the last trade counted << 1) | the current copy */
    uint64_t _pad0;
    gw_wide position[2];
    gw_wide filled[2];
} gw_ledger_cell;

struct gw_ledger {
    gw_ledger_header *h;
    gw_ledger_order *orders;
    gw_ledger_account *accounts;
    gw_ledger_instr *instr;
    gw_ledger_cell *cells;
};

_Static_assert(sizeof(gw_ledger_header) == 64, "ledger header");
_Static_assert(sizeof(gw_ledger_cell) == 80, "ledger cell");

static uint64_t align64(uint64_t n) { return (n + 63) & ~(uint64_t)63; }

static uint64_t orders_off(void) { return sizeof(gw_ledger_header); }
static uint64_t accounts_off(const ts_gateway *gw) {
    return align64(orders_off() + gw->cfg.max_orders * sizeof(gw_ledger_order));
}
static uint64_t instr_off(const ts_gateway *gw) {
    return align64(accounts_off(gw) + (uint64_t)gw->cfg.max_accounts * sizeof(gw_ledger_account));
}
static uint64_t cells_off(const ts_gateway *gw) {
    return align64(instr_off(gw) + (uint64_t)gw->cfg.max_instruments * sizeof(gw_ledger_instr));
}

uint64_t ts_gateway_ledger_size(const ts_gateway *gw) {
    return cells_off(gw) +
           (uint64_t)gw->cfg.max_accounts * gw->cfg.max_instruments * sizeof(gw_ledger_cell);
}

static gw_ledger_cell *row_of(const ts_gateway *gw, uint32_t account) {
    return &gw->ledger->cells[(uint64_t)gw->accounts[account].lslot * gw->cfg.max_instruments];
}

static gw_ledger_cell *cell_of(const ts_gateway *gw, uint32_t account, uint32_t instr) {
    return &row_of(gw, account)[gw->instr[instr].lslot];
}

static int row_used(const ts_gateway *gw, uint32_t account) {
    const gw_ledger_account *la = &gw->ledger->accounts[gw->accounts[account].lslot];
    return (int)__atomic_load_n(&la->used, __ATOMIC_ACQUIRE);
}

#define STORE_RELEASE(field, value) __atomic_store_n(&(field), (value), __ATOMIC_RELEASE)

void gw_ledger_open_row(ts_gateway *gw, uint32_t account) {
    if (gw->accounts[account].lslot == GW_NONE) return;
    gw_ledger_cell *row = row_of(gw, account);
    const size_t bytes = (size_t)gw->cfg.max_instruments * sizeof *row;
    gw_populate(row, bytes);
    if (row_used(gw, account)) return;
    /* another run's figures, or a crash's half-zeroed row: zero before it is marked */
    memset(row, 0, bytes);
    STORE_RELEASE(gw->ledger->accounts[gw->accounts[account].lslot].used, 1);
}

void gw_ledger_note_order(ts_gateway *gw, uint32_t idx) {
    gw_ledger_order *slot = &gw->ledger->orders[idx];
    const gw_order *o = &gw->orders[idx];
    if (slot->exch_id == o->exch_id && slot->client_id == o->client_id) return;
    slot->client_id = o->client_id;
    STORE_RELEASE(slot->exch_id, o->exch_id);
}

/* Load one account × symbol cell into the gateway's figures. */
static void load_cell(ts_gateway *gw, uint32_t account, uint32_t instr) {
    const gw_ledger_cell *c = cell_of(gw, account, instr);
    unsigned cur = (unsigned)(c->commit & 1);
    gw_account *acc = &gw->accounts[account];
    acc->pos[instr].position = c->position[cur];
    acc->filled_notional += c->filled[cur];
}

/* The ledger keeps accounts and symbols by id in slots of their own, appended as they
 * come (a write of the id, then of the count): a successor whose config lists them in
 * another order, or adds some, finds each one's figures by id. An account or symbol that
 * finds no free slot is not kept (GW_NONE: its figures live in memory only). */
void gw_ledger_note_account(ts_gateway *gw, uint32_t account) {
    struct gw_ledger *l = gw->ledger;
    gw_account *acc = &gw->accounts[account];
    uint32_t slot = GW_NONE;
    for (uint32_t i = 0; i < l->h->n_accounts && slot == GW_NONE; i++)
        if (l->accounts[i].id == acc->id) slot = i;
    if (slot == GW_NONE && l->h->n_accounts < gw->cfg.max_accounts) {
        slot = l->h->n_accounts;
        l->accounts[slot].id = acc->id;
        l->accounts[slot].killed = (uint32_t)acc->killed;
        l->accounts[slot].used = 0;
        STORE_RELEASE(l->h->n_accounts, slot + 1);
        acc->lslot = slot; /* a new slot: zero figures, as in memory */
        if (acc->live) gw_ledger_open_row(gw, account);
        return;
    }
    acc->lslot = slot;
    if (slot == GW_NONE) return;
    /* a known account (this run): the figures it had */
    acc->killed = (int32_t)l->accounts[slot].killed;
    /* and its account throttle starts empty, refilling at its rate from now: the dead
     * gateway's bucket was at most full, so over any span of time across the restart the
     * account is granted no more than its burst plus the rate (a full bucket would have
     * been a second burst); its level is not kept, which spares the pump a ledger store
     * per order */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    acc->tokens = 0;
    acc->last_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    acc->filled_notional = 0;
    if (!row_used(gw, account)) { /* no trade of it this run: zeros */
        if (acc->live) gw_ledger_open_row(gw, account);
        return;
    }
    gw_account_live(gw, account); /* it traded: likely to again */
    for (uint32_t k = 0; k < gw->n_instr; k++)
        if (gw->instr[k].lslot != GW_NONE) load_cell(gw, account, k);
}

void gw_ledger_note_instrument(ts_gateway *gw, uint32_t instr) {
    struct gw_ledger *l = gw->ledger;
    gw_instrument *in = &gw->instr[instr];
    uint32_t slot = GW_NONE;
    for (uint32_t i = 0; i < l->h->n_instr && slot == GW_NONE; i++)
        if (l->instr[i].symbol_id == in->symbol_id) slot = i;
    if (slot == GW_NONE && l->h->n_instr < gw->cfg.max_instruments) {
        slot = l->h->n_instr;
        l->instr[slot].symbol_id = in->symbol_id;
        l->instr[slot].last_trade = 0;
        STORE_RELEASE(l->h->n_instr, slot + 1);
        in->lslot = slot;
        return;
    }
    in->lslot = slot;
    if (slot == GW_NONE) return;
    if (l->instr[slot].last_trade > 0) in->last_trade = l->instr[slot].last_trade;
    for (uint32_t a = 0; a < gw->n_accounts; a++)
        if (gw->accounts[a].lslot != GW_NONE && row_used(gw, a)) load_cell(gw, a, instr);
}

void gw_ledger_note_kill(ts_gateway *gw) {
    struct gw_ledger *l = gw->ledger;
    for (uint32_t a = 0; a < gw->n_accounts; a++)
        if (gw->accounts[a].lslot != GW_NONE)
            STORE_RELEASE(l->accounts[gw->accounts[a].lslot].killed,
                          (uint32_t)gw->accounts[a].killed);
    STORE_RELEASE(l->h->global_kill, (uint32_t)gw->global_kill);
}

void gw_ledger_trade(ts_gateway *gw, uint32_t account, uint32_t instr, const ts_event *ev) {
    gw_account *acc = &gw->accounts[account];
    gw_instrument *in = &gw->instr[instr];
    /* never so: every order's account was made live by the call that let it in */
    if (__builtin_expect(!acc->live, 0)) gw_account_live(gw, account);
    gw_position *p = &acc->pos[instr];
    gw_wide n = (gw_wide)ev->price * ev->quantity;
    gw_wide q = ev->side == TS_SIDE_BUY ? ev->quantity : -ev->quantity;
    if (acc->lslot == GW_NONE || in->lslot == GW_NONE) { /* not kept: memory only */
        p->position += q;
        acc->filled_notional += n;
        if (ev->price > 0) in->last_trade = ev->price;
        return;
    }
    gw_ledger_cell *c = cell_of(gw, account, instr);
    uint64_t commit = c->commit;
    if (ev->exec_id <= commit >> 1) return; /* counted before a restart */
    p->position += q;
    acc->filled_notional += n;
    unsigned cur = (unsigned)(commit & 1), nxt = cur ^ 1;
    c->position[nxt] = p->position;
    c->filled[nxt] = c->filled[cur] + n;
    STORE_RELEASE(c->commit, (ev->exec_id << 1) | nxt);
    if (ev->price > 0) {
        in->last_trade = ev->price;
        STORE_RELEASE(gw->ledger->instr[in->lslot].last_trade, ev->price);
    }
}

/* ---- attach -------------------------------------------------------------------------- */

static int same_layout(const ts_gateway *gw, const gw_ledger_header *h) {
    return h->magic == LEDGER_MAGIC && h->version == LEDGER_VERSION &&
           h->max_orders == gw->cfg.max_orders && h->max_accounts == gw->cfg.max_accounts &&
           h->max_instruments == gw->cfg.max_instruments && h->n_accounts <= h->max_accounts &&
           h->n_instr <= h->max_instruments;
}

int ts_gateway_attach_ledger(ts_gateway *gw, void *mem, uint64_t size, uint64_t run_id) {
    if (!mem || ((uintptr_t)mem & 15) || size < ts_gateway_ledger_size(gw))
        return TS_GW_ERR_ARGUMENT;
    struct gw_ledger *l = calloc(1, sizeof *l);
    if (!l) return TS_GW_ERR_NOMEM;
    char *base = mem;
    l->h = mem;
    l->orders = (gw_ledger_order *)(base + orders_off());
    l->accounts = (gw_ledger_account *)(base + accounts_off(gw));
    l->instr = (gw_ledger_instr *)(base + instr_off(gw));
    l->cells = (gw_ledger_cell *)(base + cells_off(gw));
    /* what the pump writes on every order (its order slot) faulted in now, not the cells */
    gw_populate(mem, cells_off(gw));
    pthread_mutex_lock(&gw->lock);
    free(gw->ledger);
    gw->ledger = l;
    int layout = same_layout(gw, l->h);
    int carried = layout && l->h->run_id == run_id;
    if (!carried) {
        /* a new run (or a new layout): nothing counted yet; the client ids of a ledger of
         * the same layout stay, for orders an earlier run left resting; the cells stay
         * too, unread until their account's row is zeroed (gw_ledger_open_row) */
        __atomic_store_n(&l->h->magic, 0, __ATOMIC_RELEASE);
        uint64_t keep = layout ? accounts_off(gw) : orders_off();
        memset(base + keep, 0, cells_off(gw) - keep);
        if (!layout) memset(base, 0, orders_off());
        l->h->version = LEDGER_VERSION;
        l->h->max_orders = gw->cfg.max_orders;
        l->h->max_accounts = gw->cfg.max_accounts;
        l->h->max_instruments = gw->cfg.max_instruments;
        l->h->run_id = run_id;
        l->h->n_accounts = l->h->n_instr = l->h->global_kill = 0;
        STORE_RELEASE(l->h->magic, LEDGER_MAGIC);
    }
    /* slots: instruments first (no account has a slot yet, so nothing loads twice), then
     * the accounts, each loading its cells of every symbol */
    for (uint32_t a = 0; a < gw->n_accounts; a++) gw->accounts[a].lslot = GW_NONE;
    for (uint32_t k = 0; k < gw->n_instr; k++) gw_ledger_note_instrument(gw, k);
    for (uint32_t a = 0; a < gw->n_accounts; a++) gw_ledger_note_account(gw, a);
    if (carried) gw->global_kill = (int32_t)l->h->global_kill;
    pthread_mutex_unlock(&gw->lock);
    return carried;
}

int ts_gateway_ledger_adopt(void *mem, uint64_t size, uint64_t from_run, uint64_t to_run) {
    if (!mem || ((uintptr_t)mem & 7) || size < sizeof(gw_ledger_header)) return 0;
    gw_ledger_header *h = mem;
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != LEDGER_MAGIC ||
        h->version != LEDGER_VERSION || h->run_id != from_run || from_run == to_run)
        return 0;
    STORE_RELEASE(h->run_id, to_run);
    return 1;
}

uint64_t ts_gateway_ledger_run(const void *mem, uint64_t size) {
    if (!mem || ((uintptr_t)mem & 7) || size < sizeof(gw_ledger_header)) return 0;
    const gw_ledger_header *h = mem;
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != LEDGER_MAGIC ||
        h->version != LEDGER_VERSION)
        return 0;
    return h->run_id;
}

/* ---- drain and restore --------------------------------------------------------------- */

int gw_keep_drained(ts_gateway *gw, const ts_event *ev, uint64_t seq, uint32_t raw) {
    if (gw->drained_n == gw->drained_cap) {
        uint64_t cap = gw->drained_cap ? 2 * gw->drained_cap : 1024;
        gw_drained *p = realloc(gw->drained, cap * sizeof *p);
        if (!p) return -1;
        gw->drained = p;
        gw->drained_cap = cap;
    }
    gw->drained[gw->drained_n++] = (gw_drained){.ev = *ev, .seq = seq, .raw = raw};
    return 0;
}

/* The client id the ledger recorded for an exchange id; 0 if none. */
static uint64_t ledger_client(const ts_gateway *gw, uint64_t exch_id) {
    if (!gw->drain_keys) return 0;
    for (uint64_t i = (exch_id * 0x9E3779B97F4A7C15ULL >> 17) & gw->drain_mask;;
         i = (i + 1) & gw->drain_mask) {
        if (!gw->drain_keys[i]) return 0;
        if (gw->drain_keys[i] == exch_id) return gw->drain_vals[i];
    }
}

/* The ledger's order slots as a table exchange id → client id, made at the first drain
 * (no order is sent before the pump runs, so the slots stay as the dead gateway left
 * them until hold_drained frees it). */
static int drain_table(ts_gateway *gw) {
    if (gw->drain_keys || !gw->ledger) return 0;
    uint64_t cap = 16;
    while (cap < 2 * gw->cfg.max_orders) cap <<= 1;
    gw->drain_keys = calloc(cap, sizeof *gw->drain_keys);
    gw->drain_vals = calloc(cap, sizeof *gw->drain_vals);
    if (!gw->drain_keys || !gw->drain_vals) {
        free(gw->drain_keys);
        free(gw->drain_vals);
        gw->drain_keys = gw->drain_vals = NULL;
        return -1;
    }
    gw->drain_mask = cap - 1;
    for (uint64_t i = 0; i < gw->cfg.max_orders; i++) {
        const gw_ledger_order *slot = &gw->ledger->orders[i];
        uint64_t e = __atomic_load_n(&slot->exch_id, __ATOMIC_ACQUIRE);
        if (!e) continue;
        uint64_t h = (e * 0x9E3779B97F4A7C15ULL >> 17) & gw->drain_mask;
        while (gw->drain_keys[h] && gw->drain_keys[h] != e) h = (h + 1) & gw->drain_mask;
        gw->drain_keys[h] = e;
        gw->drain_vals[h] = slot->client_id;
    }
    return 0;
}

/* Keep a drained event for ts_gateway_hold_drained, in the client's ids and in the
 * held-events log before its ring slot is released (so a gateway that dies during its
 * own start loses it neither). One the log has already (taken by the dead gateway, not
 * released) is not kept again; one no client id names is not kept. Without memory the
 * event is dropped: the figures are counted either way, only the client's copy is lost. */
static void keep_drained(ts_gateway *gw, const ts_event *ev) {
    uint32_t a = gw_keymap_get(&gw->account_map, ev->account_id);
    if (a == GW_NONE) return;
    if (gw_held_seen(gw, ev)) {
        gw->st.recovery_duplicates++;
        return;
    }
    uint64_t client_id = ledger_client(gw, ev->order_id);
    if (!client_id) return; /* nothing to name it by */
    ts_event e = *ev;
    e.order_id = client_id;
    e.contra_order_id = ev->order_id; /* until hold_drained: the exchange id */
    gw_keep_drained(gw, &e, gw_held_append_drained(gw, a, &e), 1);
}

uint64_t ts_gateway_drain(ts_gateway *gw, uint32_t max) {
    pthread_mutex_lock(&gw->lock);
    uint64_t total = 0;
    drain_table(gw); /* without memory, drained events cannot be named: not kept */
    for (uint32_t i = 0; i < gw->n_shards; i++) {
        gw_shard *sh = &gw->shards[i];
        for (int run = 0; run < 2; run++) { /* the readable part may wrap: two runs */
            void *first;
            uint64_t n = ts_ring_peek(sh->evt, &first);
            if (n > max) n = max;
            if (!n) break;
            const ts_event *evs = first;
            for (uint64_t j = 0; j < n; j++) {
                const ts_event *ev = &evs[j];
                keep_drained(gw, ev);
                if (ev->kind != TS_EV_TRADE) continue;
                uint32_t a = gw_keymap_get(&gw->account_map, ev->account_id);
                uint32_t k = gw_keymap_get(&gw->instr_map, ev->symbol_id);
                if (a == GW_NONE || k == GW_NONE) continue;
                gw_account_live(gw, a);
                if (gw->ledger) {
                    gw_ledger_trade(gw, a, k, ev);
                } else {
                    gw_position *p = &gw->accounts[a].pos[k];
                    p->position += ev->side == TS_SIDE_BUY ? ev->quantity : -ev->quantity;
                    gw->accounts[a].filled_notional += (gw_wide)ev->price * ev->quantity;
                    if (ev->price > 0) gw->instr[k].last_trade = ev->price;
                }
            }
            ts_ring_release(sh->evt, n);
            total += n;
        }
    }
    gw->st.recovery_events += total;
    gw->st.events_in += total;
    pthread_mutex_unlock(&gw->lock);
    return total;
}

/* Open-addressing set of image indices keyed by exchange id (restore only). */
static uint32_t image_find(const uint32_t *slots, uint64_t mask, const ts_live_order *orders,
                           uint64_t exch_id) {
    for (uint64_t i = (exch_id * 0x9E3779B97F4A7C15ULL >> 17) & mask;; i = (i + 1) & mask) {
        if (!slots[i]) return GW_NONE;
        if (orders[slots[i] - 1].order_id == exch_id) return slots[i] - 1;
    }
}

/* Make pool slot idx (free) the restored order r. */
static void restore_one(ts_gateway *gw, uint32_t idx, const ts_live_order *r, uint32_t a,
                        uint32_t k, uint64_t client_id) {
    gw_order *o = &gw->orders[idx];
    memset(o, 0, sizeof *o);
    o->exch_id = r->order_id;
    o->client_id = client_id;
    o->account = a;
    o->instr = k;
    o->side = r->side;
    o->type = r->order_type;
    o->limit = r->price;
    o->stop_price = r->stop_price;
    o->qty = r->quantity;
    o->leaves = r->leaves_qty;
    o->session = GW_NONE;
    o->sess_prev = o->sess_next = GW_NONE;
    gw_index_exch(gw, idx);
    gw_account_live(gw, a); /* the pump will count its fills */
    uint32_t dup = client_id ? gw_find_client(gw, a, client_id) : GW_NONE;
    if (client_id && dup == GW_NONE) gw_index_client(gw, idx);
    else gw->st.restore_no_client_id++;
    gw_book_restored(gw, idx, gw_risk_price(&gw->instr[k], r->order_type, r->price, r->stop_price));
    gw_link_orphan(gw, idx);
    gw->st.live_orders++;
    gw->st.orders_restored++;
}

int64_t ts_gateway_restore(ts_gateway *gw, const ts_live_order *orders, uint64_t n) {
    if (n && !orders) return TS_GW_ERR_ARGUMENT;
    pthread_mutex_lock(&gw->lock);
    int64_t rc = 0;
    uint64_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    uint32_t *slots = calloc(cap, sizeof *slots);
    uint8_t *done = calloc(n ? n : 1, 1);
    uint8_t *used = calloc(gw->cfg.max_orders, 1);
    if (!slots || !done || !used) {
        rc = TS_GW_ERR_NOMEM;
        goto out;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t h = (orders[i].order_id * 0x9E3779B97F4A7C15ULL >> 17) & (cap - 1);
        while (slots[h]) h = (h + 1) & (cap - 1);
        slots[h] = (uint32_t)(i + 1);
    }
    /* the slots in use are those of orders already tracked (an earlier restore) */
    for (uint64_t i = 0; i < gw->cfg.max_orders; i++) used[i] = gw->orders[i].exch_id != 0;
    /* 1. orders whose ledger slot names them go back to that same pool slot: nothing is
     *    rewritten, so a restart that dies here leaves the ledger as it found it */
    for (uint64_t i = 0; gw->ledger && i < gw->cfg.max_orders; i++) {
        uint64_t e = __atomic_load_n(&gw->ledger->orders[i].exch_id, __ATOMIC_ACQUIRE);
        if (!e || used[i]) continue;
        uint32_t j = image_find(slots, cap - 1, orders, e);
        if (j == GW_NONE || done[j] || gw_find_exch(gw, e) != GW_NONE) continue;
        uint32_t a = gw_keymap_get(&gw->account_map, orders[j].account_id);
        uint32_t k = gw_keymap_get(&gw->instr_map, orders[j].symbol_id);
        done[j] = 1;
        if (a == GW_NONE || k == GW_NONE) {
            gw->st.restore_skipped++;
            continue;
        }
        used[i] = 1;
        restore_one(gw, (uint32_t)i, &orders[j], a, k, gw->ledger->orders[i].client_id);
        rc++;
    }
    /* 2. the rest (no ledger slot): any free slot, no client id */
    uint64_t free_at = 0;
    for (uint64_t j = 0; j < n; j++) {
        if (done[j] || gw_find_exch(gw, orders[j].order_id) != GW_NONE) continue;
        uint32_t a = gw_keymap_get(&gw->account_map, orders[j].account_id);
        uint32_t k = gw_keymap_get(&gw->instr_map, orders[j].symbol_id);
        if (a == GW_NONE || k == GW_NONE) {
            gw->st.restore_skipped++;
            continue;
        }
        while (free_at < gw->cfg.max_orders && used[free_at]) free_at++;
        if (free_at == gw->cfg.max_orders) {
            rc = TS_GW_ERR_FULL;
            goto out;
        }
        used[free_at] = 1;
        restore_one(gw, (uint32_t)free_at, &orders[j], a, k, 0);
        rc++;
    }
out:
    if (used) {
        /* the free list: every slot not holding an order, in index order */
        gw->free_head = GW_NONE;
        for (uint64_t i = gw->cfg.max_orders; i-- > 0;) {
            if (gw->orders[i].exch_id) continue;
            gw->orders[i].next_free = gw->free_head;
            gw->free_head = (uint32_t)i;
        }
    }
    free(slots);
    free(done);
    free(used);
    pthread_mutex_unlock(&gw->lock);
    return rc;
}

/* A REJECTED of a CANCEL or REPLACE to an order the engine no longer has. */
static int rejects_dead_amend(const ts_event *ev) {
    return ev->kind == TS_EV_REJECTED &&
           (ev->reason == TS_REJ_UNKNOWN_ORDER || ev->reason == TS_REJ_NOT_OWNER);
}

/* Per drained event: whether it is a raw REJECTED that answers its order's NEW, and so
 * keeps the engine's DONE; a raw REJECTED answering a CANCEL or REPLACE loses it, as the
 * pump routes it (gw_answers_amend), whatever became of the order. The pump tells them
 * by the order's state; here the order may be gone, so by the drained events themselves:
 * the engine answers a NEW before any amend of it and a rejected NEW has no other event,
 * so a REJECTED answers the NEW only if it is the first drained event of its exchange
 * id, its order is not restored (alive), its reason is one a NEW can get, and whatever
 * follows it of the id rejects amends of a dead order. A start-up call: out of memory
 * here is fatal. */
static uint8_t *rejects_of_new(const ts_gateway *gw) {
    const uint64_t n = gw->drained_n;
    uint64_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    uint8_t *ends = calloc(n ? n : 1, 1);
    uint64_t *keys = calloc(cap, sizeof *keys); /* exchange id; 0 = empty */
    uint64_t *first = calloc(cap, sizeof *first);
    if (!ends || !keys || !first) abort();
    for (uint64_t j = 0; j < n; j++) {
        const gw_drained *d = &gw->drained[j];
        if (!d->raw) continue; /* settled by the gateway that held it */
        const uint64_t e = d->ev.contra_order_id;
        uint64_t h = (e * 0x9E3779B97F4A7C15ULL >> 17) & (cap - 1);
        while (keys[h] && keys[h] != e) h = (h + 1) & (cap - 1);
        if (!keys[h]) {
            keys[h] = e;
            first[h] = j;
            ends[j] = d->ev.kind == TS_EV_REJECTED && !rejects_dead_amend(&d->ev) &&
                      gw_find_exch(gw, e) == GW_NONE;
        } else if (!rejects_dead_amend(&d->ev)) {
            ends[first[h]] = 0; /* the order did more: its first event was no NEW's reject */
        }
    }
    free(keys);
    free(first);
    return ends;
}

int64_t ts_gateway_hold_drained(ts_gateway *gw) {
    pthread_mutex_lock(&gw->lock);
    int64_t held = 0;
    uint8_t *ends = rejects_of_new(gw);
    for (uint64_t j = 0; j < gw->drained_n; j++) {
        const gw_drained *d = &gw->drained[j];
        uint32_t a = gw_keymap_get(&gw->account_map, d->ev.account_id);
        if (a == GW_NONE) continue;
        ts_event e = d->ev;
        if (d->raw) {
            if (e.kind == TS_EV_REJECTED && !ends[j]) e.flags &= ~TS_EVF_DONE;
            e.contra_order_id = 0;
        }
        gw_account *acc = &gw->accounts[a];
        if (!gw_held_buffer(acc)) continue;
        held += gw_keep_held(gw, a, &e, d->seq);
    }
    free(ends);
    free(gw->drained);
    gw->drained = NULL;
    gw->drained_n = gw->drained_cap = 0;
    free(gw->drain_keys);
    free(gw->drain_vals);
    gw->drain_keys = gw->drain_vals = NULL;
    gw_held_forget_seen(gw);
    gw_held_delivered(gw, 0, 0, 0); /* nothing held: the log starts empty */
    pthread_mutex_unlock(&gw->lock);
    return held;
}
