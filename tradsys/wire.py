"""Record layouts: the Python half of the one definition of every message.

Each dtype mirrors a struct of ``native/wire.h`` byte for byte (``tests/test_wire.py``
proves it through cffi), so a numpy structured array of these records can be handed to
C, written to a ring or a journal, and read back without any conversion. Every record is
64 bytes, little-endian; prices are int64 ticks, quantities int64 lots.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag

import numpy as np

LAYOUT_VERSION = 1
RECORD_SIZE = 64


def _layout(fields: list[tuple[str, str, int]]) -> np.dtype[np.void]:
    """A packed little-endian struct dtype with explicit offsets, padded to 64 bytes."""
    return np.dtype(
        {
            "names": [name for name, _, _ in fields],
            "formats": [fmt for _, fmt, _ in fields],
            "offsets": [offset for _, _, offset in fields],
            "itemsize": RECORD_SIZE,
        }
    )


class CommandKind(IntEnum):
    NEW_ORDER = 1
    CANCEL = 2
    REPLACE = 3
    MASS_CANCEL = 4
    CONTROL = 5
    ORDER_STATUS = 6  # the account's live orders, answered by the gateway itself


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2
    STOP = 3
    STOP_LIMIT = 4


class TimeInForce(IntEnum):
    GTC = 1
    DAY = 2
    IOC = 3
    FOK = 4
    GTD = 5


class OrderFlag(IntFlag):
    POST_ONLY = 1  # NEW_ORDER: never takes liquidity
    DISCONNECT = 2  # CANCEL: the gateway's cancel-on-disconnect (reason DISCONNECT)
    KILL_SWITCH = 4  # MASS_CANCEL: an operator's kill switch (reason KILL_SWITCH)


class StpMode(IntEnum):
    NONE = 0
    CANCEL_RESTING = 1
    CANCEL_INCOMING = 2
    CANCEL_BOTH = 3


class ControlCode(IntEnum):
    CLOCK_TICK = 1
    SESSION_OPEN = 2
    SESSION_CLOSE = 3
    HALT = 4
    RESUME = 5
    AUCTION_START = 6
    AUCTION_UNCROSS = 7


class EventKind(IntEnum):
    ACCEPTED = 1
    REJECTED = 2
    TRADE = 3
    CANCELLED = 4
    REPLACED = 5
    TRIGGERED = 6
    ORDER_STATUS = 7  # one live order (or, flag LAST, the end), answering ORDER_STATUS


class OrderState(IntEnum):
    """Where an order stands, in the ``reason`` of an ORDER_STATUS event."""

    PENDING_NEW = 1
    OPEN = 2
    AMENDING = 3


class RejectReason(IntEnum):
    NONE = 0
    UNKNOWN_SYMBOL = 1
    INVALID_SIDE = 2
    INVALID_ORDER_TYPE = 3
    INVALID_TIF = 4
    INVALID_PRICE = 5
    INVALID_QUANTITY = 6
    PRICE_BAND = 7
    DUPLICATE_ORDER_ID = 8
    UNKNOWN_ORDER = 9
    NOT_OWNER = 10
    POST_ONLY_WOULD_TAKE = 11
    FOK_UNFILLABLE = 12
    HALTED = 13
    INVALID_COMMAND = 14
    RISK = 15
    THROTTLED = 16
    PHASE = 17
    # the gateway's pre-trade risk and session checks
    MAX_ORDER_QTY = 18
    MAX_NOTIONAL = 19
    PRICE_COLLAR = 20
    MAX_OPEN_ORDERS = 21
    MAX_POSITION = 22
    CREDIT_LIMIT = 23
    DUPLICATE_CLIENT_ID = 24
    KILL_SWITCH = 25
    UNKNOWN_CLIENT_ID = 26
    GATEWAY_CAPACITY = 27
    ACCOUNT_THROTTLED = 28
    GATEWAY_RESTARTED = 29
    SHARD_UNAVAILABLE = 30
    STATUS_TOO_LARGE = 31


GATEWAY_ONLY_REJECTS = frozenset(
    {
        RejectReason.RISK,
        RejectReason.THROTTLED,
        *(r for r in RejectReason if r >= RejectReason.MAX_ORDER_QTY),
    }
)
"""Reasons only the gateway's checks give; the engine never does (it may give the rest)."""

REJECT_TEXT: dict[RejectReason, str] = {
    RejectReason.NONE: "",
    RejectReason.UNKNOWN_SYMBOL: "unknown symbol",
    RejectReason.INVALID_SIDE: "side must be BUY or SELL",
    RejectReason.INVALID_ORDER_TYPE: "order type not allowed here",
    RejectReason.INVALID_TIF: "time in force not allowed here",
    RejectReason.INVALID_PRICE: "price not allowed (tick, sign, or type)",
    RejectReason.INVALID_QUANTITY: "quantity not allowed (lot, min/max, or sign)",
    RejectReason.PRICE_BAND: "price outside the instrument's band",
    RejectReason.DUPLICATE_ORDER_ID: "order id not above every earlier one",
    RejectReason.UNKNOWN_ORDER: "no such live order",
    RejectReason.NOT_OWNER: "the order belongs to another account",
    RejectReason.POST_ONLY_WOULD_TAKE: "post-only order would take liquidity",
    RejectReason.FOK_UNFILLABLE: "fill-or-kill order cannot fill completely",
    RejectReason.HALTED: "the symbol is halted",
    RejectReason.INVALID_COMMAND: "malformed command",
    RejectReason.RISK: "pre-trade risk",
    RejectReason.THROTTLED: "message rate over the session's throttle",
    RejectReason.PHASE: "order type not accepted in this trading phase",
    RejectReason.MAX_ORDER_QTY: "quantity over the account's max_order_qty",
    RejectReason.MAX_NOTIONAL: "price x quantity over the account's max_order_notional",
    RejectReason.PRICE_COLLAR: "price outside the collar around the last trade",
    RejectReason.MAX_OPEN_ORDERS: "the account has max_open_orders open",
    RejectReason.MAX_POSITION: "worst-case position would pass max_position",
    RejectReason.CREDIT_LIMIT: "open + filled notional would pass credit_limit",
    RejectReason.DUPLICATE_CLIENT_ID: "the account has a live order with this client order id",
    RejectReason.KILL_SWITCH: "kill switch on",
    RejectReason.UNKNOWN_CLIENT_ID: "no live order of the account with this client order id",
    RejectReason.GATEWAY_CAPACITY: "the gateway tracks its maximum of live orders",
    RejectReason.ACCOUNT_THROTTLED: "the account's order rate (all its sessions) is spent",
    RejectReason.GATEWAY_RESTARTED: "sent to a gateway that died before taking it",
    RejectReason.SHARD_UNAVAILABLE: "the symbol's shard worker is down; nothing changed",
    RejectReason.STATUS_TOO_LARGE: "more live orders than half the session's ring: ask per symbol",
}
"""A short text per reject reason, for protocols and logs that carry one."""


class CancelReason(IntEnum):
    USER = 1
    IOC_REMAINDER = 2
    SELF_TRADE = 3
    EXPIRED = 4
    HALT = 5
    MASS_CANCEL = 6
    MARKET_REMAINDER = 7
    DISCONNECT = 8  # cancel-on-disconnect: the owning session ended
    KILL_SWITCH = 9  # an operator's kill switch (tradsys admin kill)


class EventFlag(IntFlag):
    MAKER = 1
    TAKER = 2
    DONE = 4
    LAST = 8  # ORDER_STATUS: the answer's closing record


class MdKind(IntEnum):
    L2_UPDATE = 1
    TRADE = 2
    BBO = 3
    L2_REFRESH_BEGIN = 4
    L2_REFRESH_LEVEL = 5
    L2_REFRESH_END = 6
    STATUS = 7  # a symbol's trading phase changed (tradsys.matching.Phase, StatusReason)


COMMAND_DTYPE = _layout(
    [
        ("kind", "u1", 0),
        ("side", "u1", 1),
        ("order_type", "u1", 2),
        ("tif", "u1", 3),
        ("flags", "u1", 4),
        ("stp_mode", "u1", 5),
        ("control", "u1", 6),
        ("symbol_id", "<u4", 8),
        ("account_id", "<u4", 12),
        ("order_id", "<u8", 16),
        ("price", "<i8", 24),
        ("quantity", "<i8", 32),
        ("stop_price", "<i8", 40),
        ("display_qty", "<i8", 48),
        ("time_ns", "<i8", 56),
    ]
)
"""``struct ts_command``: every command into a shard (``kind`` selects the fields)."""

COMMAND_FORMAT = struct.Struct("<7BxIIQ5q")
"""``COMMAND_DTYPE`` as a ``struct`` format (the pad byte after ``control`` written as
zero), for code that makes one command at a time: a pack is ~0.1 µs where filling a
one-record numpy array field by field is ~4 µs."""
assert COMMAND_FORMAT.size == COMMAND_DTYPE.itemsize

EVENT_DTYPE = _layout(
    [
        ("kind", "u1", 0),
        ("side", "u1", 1),
        ("reason", "u1", 2),
        ("flags", "u1", 3),
        ("symbol_id", "<u4", 4),
        ("account_id", "<u4", 8),
        ("order_id", "<u8", 16),
        ("contra_order_id", "<u8", 24),
        ("price", "<i8", 32),
        ("quantity", "<i8", 40),
        ("leaves_qty", "<i8", 48),
        ("exec_id", "<u8", 56),
    ]
)
"""``struct ts_event``: execution events addressed to the owner of ``order_id``."""

MD_DTYPE = _layout(
    [
        ("kind", "u1", 0),
        ("side", "u1", 1),
        ("symbol_id", "<u4", 4),
        ("seq", "<u8", 8),
        ("price", "<i8", 16),
        ("quantity", "<i8", 24),
        ("ask_price", "<i8", 32),
        ("ask_quantity", "<i8", 40),
        ("order_count", "<u4", 48),
        ("time_ns", "<i8", 56),
    ]
)
"""``struct ts_md``: market-data records (L2 level, trade print, BBO)."""

C_STRUCTS: dict[str, np.dtype[np.void]] = {
    "ts_command": COMMAND_DTYPE,
    "ts_event": EVENT_DTYPE,
    "ts_md": MD_DTYPE,
}
"""Which C struct each dtype mirrors; the layout test walks this table."""
