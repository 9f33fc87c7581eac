/*
 * order_image.h — a shard engine's live orders as plain records, for a restarted gateway.
 *
 * The engine is the source of truth for which orders still rest (or wait as stops): a
 * gateway that died lost its table of them, and rebuilds it from this image, which the
 * shard worker writes on the gateway's request at a quiescent point (worker.h: every
 * command taken, every event pushed), so the image is exact as of the last event in
 * the worker's event ring. A query: the engine is not changed.
 *
 * Declarations only (cffi reads this file); the definitions are in order_image.c.
 */
#ifndef TRADSYS_ORDER_IMAGE_H
#define TRADSYS_ORDER_IMAGE_H

#include <stdint.h>

#include "book.h"

/* One live order as the engine holds it. 56 bytes, no implicit padding. */
typedef struct ts_live_order {
    uint64_t order_id;   /* the exchange id the gateway assigned */
    uint32_t symbol_id;
    uint32_t account_id;
    uint8_t side;        /* ts_side */
    uint8_t order_type;  /* ts_order_type: a STOP's price is a protection price */
    uint8_t _pad0[6];
    int64_t price;       /* limit price; a STOP's protection price (0: none) */
    int64_t stop_price;  /* pending stops only, else 0 */
    int64_t quantity;    /* total quantity (after replaces) */
    int64_t leaves_qty;  /* what is still open */
} ts_live_order;

/* Header of an image file: the records follow it. */
#define TS_ORDER_IMAGE_MAGIC 0x31474d4944524f54ULL /* "TORDIMG1" */
typedef struct ts_order_image_header {
    uint64_t magic;
    uint32_t shard_id;
    uint32_t request;      /* the order_image_requests value it answers */
    uint64_t last_exec_id; /* exec id of the last event pushed before the image */
    uint64_t count;        /* records that follow */
    uint64_t _pad0[4];
} ts_order_image_header;

/* Live orders of every symbol: resting orders and pending stops. */
uint64_t ts_order_image_count(const ts_engine *e);

/* Write up to cap records (symbols in id order, each symbol's orders in arrival order);
 * returns the records written, or 0 if cap < ts_order_image_count(e). */
uint64_t ts_order_image(const ts_engine *e, ts_live_order *out, uint64_t cap);

#endif /* TRADSYS_ORDER_IMAGE_H */
