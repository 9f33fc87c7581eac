/*
 * gateway_rig.h — a gateway in one process for the C tests and the pump bench: rings in
 * heap memory, one or more shards whose side the program plays (it pops the commands
 * and pushes the events), and client sessions whose rings it also holds.
 */
#ifndef TRADSYS_TESTS_GATEWAY_RIG_H
#define TRADSYS_TESTS_GATEWAY_RIG_H

#include "../gateway.h"

#include <stdlib.h>
#include <string.h>

#define RIG_MAX_RINGS 64

typedef struct rig {
    ts_gateway *gw;
    ts_ring *cmd[4], *evt[4];
    void *blocks[RIG_MAX_RINGS];
    int nblocks;
    uint64_t exec_id;
} rig;

static ts_ring *rig_ring(rig *r, uint64_t capacity) {
    size_t size = ts_ring_bytes_needed(TS_RECORD_SIZE, capacity);
    void *mem = aligned_alloc(128, size);
    if (!mem || r->nblocks == RIG_MAX_RINGS) abort();
    ts_ring_init(mem, size, TS_RECORD_SIZE, capacity, TS_LAYOUT_VERSION, 1, 0);
    r->blocks[r->nblocks++] = mem;
    return mem;
}

/* The pump's idle wait in rigs: spin-park, as on a laptop or CI (the bench may change it
 * before rig_init). */
static ts_wait_strategy rig_wait = {TS_WAIT_SPIN_PARK, 64, 4, 0};

/* A gateway with `shards` shards; symbol s (1..) lives on shard (s - 1) % shards, with
 * reference price 1000. */
static void rig_init(rig *r, uint32_t shards, uint64_t max_orders, uint32_t max_batch,
                     uint64_t ring_capacity) {
    memset(r, 0, sizeof *r);
    ts_gateway_config cfg = {.max_sessions = 8,
                             .max_accounts = 8,
                             .max_instruments = 8,
                             .max_batch = max_batch,
                             .max_orders = max_orders,
                             .epoch = 3,
                             .wait = rig_wait};
    r->gw = ts_gateway_new(&cfg);
    if (!r->gw) abort();
    for (uint32_t i = 0; i < shards; i++) {
        r->cmd[i] = rig_ring(r, ring_capacity);
        r->evt[i] = rig_ring(r, ring_capacity);
        ts_gateway_add_shard(r->gw, i, r->cmd[i], r->evt[i]);
    }
    for (uint32_t s = 1; s <= 4; s++) ts_gateway_add_instrument(r->gw, s, (s - 1) % shards, 1000);
}

static void rig_free(rig *r) {
    ts_gateway_free(r->gw);
    for (int i = 0; i < r->nblocks; i++) free(r->blocks[i]);
}

static ts_command rig_new(uint64_t client_id, uint32_t symbol, uint8_t side, int64_t price,
                          int64_t qty) {
    ts_command c = {.kind = TS_CMD_NEW_ORDER,
                    .side = side,
                    .order_type = TS_ORD_LIMIT,
                    .tif = TS_TIF_GTC,
                    .symbol_id = symbol,
                    .order_id = client_id,
                    .price = price,
                    .quantity = qty};
    return c;
}

/* The shard's answer to command c (as the shard received it). */
static ts_event rig_event(rig *r, uint8_t kind, const ts_command *c, int64_t qty, int64_t leaves,
                          uint8_t flags) {
    ts_event e = {.kind = kind,
                  .side = c->side,
                  .flags = flags,
                  .symbol_id = c->symbol_id,
                  .account_id = c->account_id,
                  .order_id = c->order_id,
                  .price = c->price,
                  .quantity = qty,
                  .leaves_qty = leaves,
                  .exec_id = ++r->exec_id};
    return e;
}

#endif /* TRADSYS_TESTS_GATEWAY_RIG_H */
