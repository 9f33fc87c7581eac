/*
 * book.h — the matching engine: price-time order books for one shard's symbols.
 *
 * The rules are written down in docs/matching.md; this file is the C API and the
 * snapshot layout. An engine is single-threaded and deterministic: the same commands
 * give the same events, market data and snapshot bytes, whatever the machine. Its only
 * notion of time is the clock moved by CLOCK_TICK commands.
 *
 * Output is appended to buffers the engine owns (one command can produce any number of
 * events: a sweep, a mass cancel); read them with ts_engine_events / ts_engine_md and
 * then ts_engine_clear_output.
 *
 * Declarations only (cffi reads this file); the definitions are in book.c.
 */
#ifndef TRADSYS_BOOK_H
#define TRADSYS_BOOK_H

#include <stdint.h>

#include "wire.h"

#define TS_SNAPSHOT_MAGIC 0x3130504e53535354
#define TS_SNAPSHOT_VERSION 2 /* 2: ts_snap_symbol.status_seq */
/* The matching rules an engine applies (docs/matching.md). A journal records the version
 * its commands were processed under and is replayed under it, so that a journal written
 * before a rule changed rebuilds the books its clients were told of.
 *   0: a MARKET or STOP order's price must be 0
 *   1: it may be a protection price (rule 8) */
#define TS_RULES_VERSION 1
/* The largest quantity of one order (docs/matching.md, rule 7): 31 bits, as the share
 * fields of OUCH or iLink. With fewer than 2^32 orders, no sum of resting quantities (a
 * level, a side) can overflow int64. tradsys.matching.instrument.QTY_MAX is the same. */
#define TS_QTY_MAX 2147483647LL

/* A symbol's trading phase (docs/matching.md "Phases and controls"); on the wire in
 * TS_MD_STATUS records. There is no "closed" phase: SESSION_CLOSE expires DAY orders
 * and leaves the phase as it is. */
enum ts_phase {
    TS_PHASE_CONTINUOUS = 1, /* continuous trading */
    TS_PHASE_HALTED = 2,     /* no order entry, no matching; cancels accepted */
    TS_PHASE_AUCTION = 3     /* call phase: limit orders rest, may cross, nothing trades */
};

/* ts_md.order_count of a TS_MD_STATUS record: what changed the phase. The values of
 * the control codes are those of ts_control_code; CLOCK_TICK means a volatility
 * auction's reopening time passed. */
enum ts_md_status_reason {
    TS_MDS_REOPEN_TIMER = 1,     /* = TS_CTL_CLOCK_TICK */
    TS_MDS_SESSION_OPEN = 2,     /* = TS_CTL_SESSION_OPEN (leaves HALTED or AUCTION) */
    TS_MDS_HALT = 4,             /* = TS_CTL_HALT */
    TS_MDS_RESUME = 5,           /* = TS_CTL_RESUME */
    TS_MDS_AUCTION_START = 6,    /* = TS_CTL_AUCTION_START */
    TS_MDS_AUCTION_UNCROSS = 7,  /* = TS_CTL_AUCTION_UNCROSS */
    TS_MDS_BREAKER = 8           /* a trade beyond breaker_bps tripped a volatility auction */
};

enum ts_engine_status {
    TS_ENG_OK = 0,
    TS_ENG_ERR_DUPLICATE_SYMBOL = -1,
    TS_ENG_ERR_BAD_INSTRUMENT = -2, /* a field out of range; see docs/matching.md */
    TS_ENG_ERR_NO_MEMORY = -3,
    TS_ENG_ERR_BAD_SNAPSHOT = -4,   /* wrong magic, version, length or content */
    TS_ENG_ERR_UNKNOWN_SYMBOL = -5,
    TS_ENG_ERR_RULES = -6           /* a rules version this build does not know */
};

/* One instrument's configuration (64 bytes; also a snapshot record). */
typedef struct ts_instrument {
    uint32_t symbol_id;       /* 0  > 0 */
    uint32_t band_bps;        /* 4  order price band around the static reference, 0 = off */
    uint32_t breaker_bps;     /* 8  volatility band around the dynamic reference, 0 = off */
    uint32_t _pad0;           /* 12 */
    int64_t tick_size;        /* 16 > 0 */
    int64_t lot_size;         /* 24 > 0 */
    int64_t min_qty;          /* 32 >= 0 */
    int64_t max_qty;          /* 40 0 = no maximum, else >= min_qty */
    int64_t reference_price;  /* 48 static reference, 0 = none */
    int64_t breaker_halt_ns;  /* 56 >= 0: length of a tripped breaker's call phase */
} ts_instrument;

typedef struct ts_level {
    int64_t price;
    int64_t quantity;     /* displayed aggregate */
    uint32_t order_count;
    uint32_t _pad0;
} ts_level;

typedef struct ts_bbo {
    int64_t bid_price;    /* 0 with quantity 0 when the side is empty */
    int64_t bid_quantity;
    int64_t ask_price;
    int64_t ask_quantity;
} ts_bbo;

/* ---- snapshot layout: header, then per symbol (instrument, state, orders) ---- */

typedef struct ts_snap_header {
    uint64_t magic;         /* 0  TS_SNAPSHOT_MAGIC */
    uint32_t version;       /* 8  TS_SNAPSHOT_VERSION */
    uint32_t n_symbols;     /* 12 */
    int64_t clock_ns;       /* 16 */
    uint64_t max_order_id;  /* 24 highest accepted order id */
    uint64_t last_exec_id;  /* 32 */
    uint64_t last_seq;      /* 40 */
    uint64_t total_orders;  /* 48 live orders, all symbols */
    uint64_t _pad0;         /* 56 */
} ts_snap_header;

typedef struct ts_snap_symbol {
    uint32_t symbol_id;        /* 0 */
    uint8_t phase;             /* 4  ts_phase */
    uint8_t _pad0[3];          /* 5 */
    int64_t static_reference;  /* 8 */
    int64_t last_trade_price;  /* 16 0 = no trade yet */
    int64_t reopen_ns;         /* 24 breaker reopening time, -1 = none */
    uint64_t trade_seq;        /* 32 last sequence number used on each md channel */
    uint64_t l2_seq;           /* 40 */
    uint64_t bbo_seq;          /* 48 */
    int64_t bbo_bid_price;     /* 56 the last BBO published */
    int64_t bbo_bid_quantity;  /* 64 */
    int64_t bbo_ask_price;     /* 72 */
    int64_t bbo_ask_quantity;  /* 80 */
    uint64_t n_orders;         /* 88 ts_snap_order records that follow */
    uint64_t status_seq;       /* 96 last sequence number used on the status channel */
} ts_snap_symbol;

enum ts_order_state { TS_STATE_RESTING = 1, TS_STATE_PENDING_STOP = 2 };

/* Orders follow their symbol: bids best first (queue order within a level), then asks
 * best first, then pending stops in seq order. */
typedef struct ts_snap_order {
    uint64_t order_id;     /* 0 */
    uint64_t seq;          /* 8  acceptance sequence */
    int64_t price;         /* 16 limit price (0 for MARKET-type) */
    int64_t quantity;      /* 24 total order quantity (filled = quantity - leaves) */
    int64_t leaves;        /* 32 */
    int64_t visible;       /* 40 displayed part now (0 for pending stops) */
    int64_t display_qty;   /* 48 iceberg peak, 0 = not an iceberg */
    int64_t stop_price;    /* 56 */
    int64_t expire_ns;     /* 64 GTD expiry, 0 otherwise */
    uint32_t account_id;   /* 72 */
    uint32_t symbol_id;    /* 76 */
    uint8_t side;          /* 80 */
    uint8_t order_type;    /* 81 */
    uint8_t tif;           /* 82 */
    uint8_t flags;         /* 83 */
    uint8_t stp_mode;      /* 84 */
    uint8_t state;         /* 85 ts_order_state */
    uint8_t _pad0[10];     /* 86 */
} ts_snap_order;

typedef struct ts_engine ts_engine;

ts_engine *ts_engine_new(void);
void ts_engine_free(ts_engine *e);
/* Add a symbol before any command; returns a ts_engine_status. */
int ts_engine_add_instrument(ts_engine *e, const ts_instrument *instrument);

/* Apply n commands in order, appending their output; returns n (or fewer only when
 * memory runs out, which leaves the engine consistent after the last command applied). */
uint64_t ts_engine_process(ts_engine *e, const ts_command *commands, uint64_t n);

/* The output appended since the last clear. The pointers stay valid until the next
 * process or clear call. */
uint64_t ts_engine_events(const ts_engine *e, const ts_event **out);
uint64_t ts_engine_md(const ts_engine *e, const ts_md **out);
void ts_engine_clear_output(ts_engine *e);

/* Apply an earlier version of the matching rules (0..TS_RULES_VERSION) to the commands
 * processed from now on: journal replay only. A new engine applies TS_RULES_VERSION. */
int ts_engine_set_rules(ts_engine *e, uint32_t version);

/* Queries. Return TS_ENG_ERR_UNKNOWN_SYMBOL (< 0) for an unknown symbol. */
int ts_engine_depth(const ts_engine *e, uint32_t symbol_id, uint8_t side, ts_level *out,
                    uint32_t max_levels); /* levels written, best first */
int ts_engine_bbo(const ts_engine *e, uint32_t symbol_id, ts_bbo *out);
int ts_engine_phase(const ts_engine *e, uint32_t symbol_id);
uint64_t ts_engine_live_orders(const ts_engine *e);
/* Bytes of heap the engine holds (pools, indices, books), for memory accounting. */
uint64_t ts_engine_memory_bytes(const ts_engine *e);

/* Canonical snapshot: size first, then write; 0 if cap is too small. */
uint64_t ts_engine_snapshot_size(const ts_engine *e);
uint64_t ts_engine_snapshot(const ts_engine *e, void *buf, uint64_t cap);
/* A new engine from a snapshot, or NULL with *status set. */
ts_engine *ts_engine_restore(const void *buf, uint64_t len, int *status);

#endif /* TRADSYS_BOOK_H */
