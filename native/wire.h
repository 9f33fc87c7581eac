/*
 * wire.h — the one definition of every record that crosses a process boundary.
 *
 * Every record is 64 bytes (one cache line), little-endian, naturally aligned, with
 * explicit padding so that C, numpy (tradsys/wire.py) and any other language agree
 * field by field. tests/test_wire.py checks each offset and size against the dtypes.
 *
 * Prices are int64 ticks and quantities int64 lots: no floats anywhere on the hot path.
 * Bump TS_LAYOUT_VERSION whenever any layout below changes; rings refuse a peer built
 * against another version.
 *
 * This header holds declarations only, so cffi can read it as it is.
 */
#ifndef TRADSYS_WIRE_H
#define TRADSYS_WIRE_H

#include <stdint.h>

#define TS_LAYOUT_VERSION 1
#define TS_RECORD_SIZE 64

/* ---- command kinds (ts_command.kind) ---- */
enum ts_command_kind {
    TS_CMD_NEW_ORDER = 1,
    TS_CMD_CANCEL = 2,
    TS_CMD_REPLACE = 3,
    TS_CMD_MASS_CANCEL = 4,
    TS_CMD_CONTROL = 5,
    /* a client's request for its account's live orders, answered by the gateway itself
     * (one TS_EV_ORDER_STATUS per order, then one with TS_EVF_LAST); never reaches a
     * shard, whose engine rejects it as INVALID_COMMAND */
    TS_CMD_ORDER_STATUS = 6
};

enum ts_side { TS_SIDE_BUY = 1, TS_SIDE_SELL = 2 };

enum ts_order_type {
    TS_ORD_LIMIT = 1,
    TS_ORD_MARKET = 2,
    TS_ORD_STOP = 3,       /* becomes a market order when triggered */
    TS_ORD_STOP_LIMIT = 4  /* becomes a limit order when triggered */
};

enum ts_time_in_force {
    TS_TIF_GTC = 1,
    TS_TIF_DAY = 2,  /* expired by a session-close control command */
    TS_TIF_IOC = 3,
    TS_TIF_FOK = 4,
    TS_TIF_GTD = 5   /* expired when the command-stream clock passes time_ns */
};

/* ts_command.flags bits */
enum ts_order_flag {
    TS_FLAG_POST_ONLY = 1, /* NEW_ORDER: never takes liquidity */
    TS_FLAG_DISCONNECT = 2, /* CANCEL: the gateway's cancel-on-disconnect (CANCELLED reason
                               TS_CXL_DISCONNECT, so a client tells it from its own) */
    TS_FLAG_KILL_SWITCH = 4 /* MASS_CANCEL: an operator's kill switch (CANCELLED reason
                               TS_CXL_KILL_SWITCH, not the MASS_CANCEL of a client's own) */
};

enum ts_stp_mode {
    TS_STP_NONE = 0,
    TS_STP_CANCEL_RESTING = 1,
    TS_STP_CANCEL_INCOMING = 2,
    TS_STP_CANCEL_BOTH = 3
};

/* ts_command.control for TS_CMD_CONTROL */
enum ts_control_code {
    TS_CTL_CLOCK_TICK = 1,     /* time_ns is the engine's new time */
    TS_CTL_SESSION_OPEN = 2,
    TS_CTL_SESSION_CLOSE = 3,  /* expires DAY orders */
    TS_CTL_HALT = 4,
    TS_CTL_RESUME = 5,
    TS_CTL_AUCTION_START = 6,
    TS_CTL_AUCTION_UNCROSS = 7
};

/*
 * A command into a shard. One layout for every kind, so a ring and a journal hold a
 * single record type; `kind` says which fields are meaningful:
 *   NEW_ORDER   everything but `control`
 *   CANCEL      symbol_id, account_id, order_id
 *   REPLACE     symbol_id, account_id, order_id, price, quantity (the new values)
 *   MASS_CANCEL account_id and/or symbol_id (0 = any)
 *   CONTROL     control, symbol_id (0 = every symbol of the shard), time_ns
 */
typedef struct ts_command {
    uint8_t kind;        /* 0  ts_command_kind */
    uint8_t side;        /* 1  ts_side */
    uint8_t order_type;  /* 2  ts_order_type */
    uint8_t tif;         /* 3  ts_time_in_force */
    uint8_t flags;       /* 4  ts_order_flag bits */
    uint8_t stp_mode;    /* 5  ts_stp_mode */
    uint8_t control;     /* 6  ts_control_code */
    uint8_t _pad0;       /* 7 */
    uint32_t symbol_id;  /* 8 */
    uint32_t account_id; /* 12 */
    uint64_t order_id;   /* 16 unique per shard; assigned by the gateway */
    int64_t price;       /* 24 limit price, ticks */
    int64_t quantity;    /* 32 lots */
    int64_t stop_price;  /* 40 trigger price for stop orders, ticks */
    int64_t display_qty; /* 48 iceberg peak, lots; 0 = fully displayed */
    int64_t time_ns;     /* 56 GTD expiry, or the new clock for CLOCK_TICK */
} ts_command;

/* ---- event kinds (ts_event.kind) ---- */
enum ts_event_kind {
    TS_EV_ACCEPTED = 1,
    TS_EV_REJECTED = 2,
    TS_EV_TRADE = 3,      /* one per side of a match; flags says maker or taker */
    TS_EV_CANCELLED = 4,
    TS_EV_REPLACED = 5,
    TS_EV_TRIGGERED = 6,
    TS_EV_ORDER_STATUS = 7 /* one live order, answering TS_CMD_ORDER_STATUS (gateway.h) */
};

/* ts_event.reason for TS_EV_ORDER_STATUS: where the order stands */
enum ts_order_status_state {
    TS_OST_PENDING_NEW = 1, /* sent to its shard, not yet acknowledged */
    TS_OST_OPEN = 2,        /* acknowledged, resting (or a stop waiting for its trigger) */
    TS_OST_AMENDING = 3     /* a cancel or replace of it is on its way (or the gateway's
                               cancel-on-disconnect) */
};

/* ts_event.reason for TS_EV_REJECTED */
enum ts_reject_reason {
    TS_REJ_NONE = 0,
    TS_REJ_UNKNOWN_SYMBOL = 1,
    TS_REJ_INVALID_SIDE = 2,
    TS_REJ_INVALID_ORDER_TYPE = 3,
    TS_REJ_INVALID_TIF = 4,
    TS_REJ_INVALID_PRICE = 5,     /* not a multiple of the tick, or <= 0 */
    TS_REJ_INVALID_QUANTITY = 6,  /* not a multiple of the lot, or out of min/max */
    TS_REJ_PRICE_BAND = 7,
    TS_REJ_DUPLICATE_ORDER_ID = 8,
    TS_REJ_UNKNOWN_ORDER = 9,
    TS_REJ_NOT_OWNER = 10,
    TS_REJ_POST_ONLY_WOULD_TAKE = 11,
    TS_REJ_FOK_UNFILLABLE = 12,
    TS_REJ_HALTED = 13,
    TS_REJ_INVALID_COMMAND = 14,
    TS_REJ_RISK = 15,
    TS_REJ_THROTTLED = 16,
    TS_REJ_PHASE = 17,            /* order type not accepted in the current phase */
    /* pre-trade risk and session checks of the gateway (docs: README "Pre-trade risk") */
    TS_REJ_MAX_ORDER_QTY = 18,
    TS_REJ_MAX_NOTIONAL = 19,
    TS_REJ_PRICE_COLLAR = 20,     /* too far from the last trade (or reference) price */
    TS_REJ_MAX_OPEN_ORDERS = 21,
    TS_REJ_MAX_POSITION = 22,     /* position + open same-side qty + order over the limit */
    TS_REJ_CREDIT_LIMIT = 23,     /* open + filled + order notional over the limit */
    TS_REJ_DUPLICATE_CLIENT_ID = 24, /* the account has a live order with that client id */
    TS_REJ_KILL_SWITCH = 25,
    TS_REJ_UNKNOWN_CLIENT_ID = 26,   /* cancel/replace of no live order of the session */
    TS_REJ_GATEWAY_CAPACITY = 27,    /* the gateway tracks its maximum of live orders */
    TS_REJ_ACCOUNT_THROTTLED = 28,   /* the account's own rate (all its sessions) is spent */
    TS_REJ_GATEWAY_RESTARTED = 29,   /* sent to a gateway that died before taking it */
    TS_REJ_SHARD_UNAVAILABLE = 30,   /* the symbol's shard worker has been down too long */
    TS_REJ_STATUS_TOO_LARGE = 31     /* ORDER_STATUS: more live orders than half the
                                        session's event ring (ask per symbol) */
};

/* ts_event.reason for TS_EV_CANCELLED */
enum ts_cancel_reason {
    TS_CXL_USER = 1,
    TS_CXL_IOC_REMAINDER = 2,
    TS_CXL_SELF_TRADE = 3,
    TS_CXL_EXPIRED = 4,
    TS_CXL_HALT = 5,
    TS_CXL_MASS_CANCEL = 6,
    TS_CXL_MARKET_REMAINDER = 7,
    TS_CXL_DISCONNECT = 8, /* cancel-on-disconnect: the owning session ended */
    TS_CXL_KILL_SWITCH = 9 /* an operator's kill switch (tradsys admin kill) */
};

/* ts_event.flags bits */
enum ts_event_flag {
    TS_EVF_MAKER = 1, /* TRADE: this side was resting */
    TS_EVF_TAKER = 2, /* TRADE: this side was incoming */
    TS_EVF_DONE = 4,  /* the order is finished: nothing of it rests any more */
    TS_EVF_LAST = 8   /* ORDER_STATUS: the answer's closing record (no order) */
};

/*
 * An execution event out of a shard, addressed to the owner of `order_id`.
 * A match produces two TRADE events, one per side, linked by contra_order_id.
 */
typedef struct ts_event {
    uint8_t kind;             /* 0  ts_event_kind */
    uint8_t side;             /* 1  ts_side of order_id */
    uint8_t reason;           /* 2  reject or cancel reason */
    uint8_t flags;            /* 3  ts_event_flag bits */
    uint32_t symbol_id;       /* 4 */
    uint32_t account_id;      /* 8 */
    uint32_t _pad0;           /* 12 */
    uint64_t order_id;        /* 16 */
    uint64_t contra_order_id; /* 24 TRADE: the other side's order */
    int64_t price;            /* 32 TRADE: execution price; else the order's price */
    int64_t quantity;         /* 40 TRADE: executed; CANCELLED: cancelled lots */
    int64_t leaves_qty;       /* 48 what remains open after this event */
    uint64_t exec_id;         /* 56 per-shard, strictly increasing */
} ts_event;

/* ---- market-data kinds (ts_md.kind) ---- */
enum ts_md_kind {
    TS_MD_L2_UPDATE = 1, /* a price level's new aggregate (0 = level gone) */
    TS_MD_TRADE = 2,     /* a trade print; side is the aggressor's */
    TS_MD_BBO = 3,       /* best bid and offer after a change */
    /* A market-data refresh: a symbol's whole displayed book, emitted by the shard
     * worker when the md sidecar asks (worker.h). Not engine output: no journal, no
     * sequence number consumed; `seq` is the symbol's current L2 seq the image is valid
     * at. BEGIN and END frame the symbol's LEVEL records (bids best first, then asks). */
    TS_MD_L2_REFRESH_BEGIN = 4, /* quantity = levels that follow, ask_price = trade seq,
                                   ask_quantity = BBO seq, price = status seq,
                                   order_count = the current trading phase (ts_phase,
                                   book.h) */
    TS_MD_L2_REFRESH_LEVEL = 5, /* side, price, quantity, order_count */
    TS_MD_L2_REFRESH_END = 6,   /* quantity = levels sent, price = reopen_ns (as STATUS) */
    /* The symbol's trading phase changed (engine output, like TRADE: emitted at the
     * moment of the change, in order with the trade prints around it; the command's L2
     * and BBO records follow at its end). Its own per-symbol sequence. The phase and
     * reason values are book.h's enum ts_phase and enum ts_md_status_reason. */
    TS_MD_STATUS = 7
};

/*
 *  A market-data record out of a shard. Field use by kind:
 *   L2_UPDATE  side, price, quantity (aggregate), order_count
 *   TRADE      side (aggressor), price, quantity
 *   BBO        price/quantity = best bid, ask_price/ask_quantity = best offer
 *              (a missing side has quantity 0)
 *   STATUS     seq = status seq, price = the new phase, quantity = the phase before
 *              (book.h ts_phase: 1 continuous, 2 halted, 3 auction call),
 *              ask_price = reopen_ns (when a volatility auction ends by itself, engine
 *              clock; -1 = only by a command), order_count = ts_md_status_reason (book.h)
 */
typedef struct ts_md {
    uint8_t kind;         /* 0  ts_md_kind */
    uint8_t side;         /* 1 */
    uint16_t _pad0;       /* 2 */
    uint32_t symbol_id;   /* 4 */
    uint64_t seq;         /* 8  per symbol and channel */
    int64_t price;        /* 16 */
    int64_t quantity;     /* 24 */
    int64_t ask_price;    /* 32 */
    int64_t ask_quantity; /* 40 */
    uint32_t order_count; /* 48 */
    uint32_t _pad1;       /* 52 */
    int64_t time_ns;      /* 56 engine timestamp, CLOCK_REALTIME ns */
} ts_md;

#endif /* TRADSYS_WIRE_H */
