"""numpy dtypes mirroring the snapshot records of ``native/book.h``.

The reference model writes its snapshots with these, so that its bytes can be compared
with the C engine's byte for byte; the layout test checks them against the C structs.
"""

from __future__ import annotations

import numpy as np

SNAPSHOT_MAGIC = 0x3130504E53535354
SNAPSHOT_VERSION = 2  # 2: ts_snap_symbol.status_seq


def _struct(fields: list[tuple[str, str, int]], itemsize: int) -> np.dtype[np.void]:
    return np.dtype(
        {
            "names": [f[0] for f in fields],
            "formats": [f[1] for f in fields],
            "offsets": [f[2] for f in fields],
            "itemsize": itemsize,
        }
    )


INSTRUMENT_DTYPE = _struct(
    [
        ("symbol_id", "<u4", 0),
        ("band_bps", "<u4", 4),
        ("breaker_bps", "<u4", 8),
        ("tick_size", "<i8", 16),
        ("lot_size", "<i8", 24),
        ("min_qty", "<i8", 32),
        ("max_qty", "<i8", 40),
        ("reference_price", "<i8", 48),
        ("breaker_halt_ns", "<i8", 56),
    ],
    64,
)

SNAP_HEADER_DTYPE = _struct(
    [
        ("magic", "<u8", 0),
        ("version", "<u4", 8),
        ("n_symbols", "<u4", 12),
        ("clock_ns", "<i8", 16),
        ("max_order_id", "<u8", 24),
        ("last_exec_id", "<u8", 32),
        ("last_seq", "<u8", 40),
        ("total_orders", "<u8", 48),
    ],
    64,
)

_SYMBOL_FIELDS = [
    ("symbol_id", "<u4", 0),
    ("phase", "u1", 4),
    ("static_reference", "<i8", 8),
    ("last_trade_price", "<i8", 16),
    ("reopen_ns", "<i8", 24),
    ("trade_seq", "<u8", 32),
    ("l2_seq", "<u8", 40),
    ("bbo_seq", "<u8", 48),
    ("bbo_bid_price", "<i8", 56),
    ("bbo_bid_quantity", "<i8", 64),
    ("bbo_ask_price", "<i8", 72),
    ("bbo_ask_quantity", "<i8", 80),
    ("n_orders", "<u8", 88),
    ("status_seq", "<u8", 96),
]
SNAP_SYMBOL_DTYPE = _struct(_SYMBOL_FIELDS, 104)

# Version 1 (before the trading-status channel) ended the symbol record before status_seq;
# such files still restore, with every status seq at 0.
SNAP_SYMBOL_V1_DTYPE = _struct([f for f in _SYMBOL_FIELDS if f[0] != "status_seq"], 96)

SNAP_ORDER_DTYPE = _struct(
    [
        ("order_id", "<u8", 0),
        ("seq", "<u8", 8),
        ("price", "<i8", 16),
        ("quantity", "<i8", 24),
        ("leaves", "<i8", 32),
        ("visible", "<i8", 40),
        ("display_qty", "<i8", 48),
        ("stop_price", "<i8", 56),
        ("expire_ns", "<i8", 64),
        ("account_id", "<u4", 72),
        ("symbol_id", "<u4", 76),
        ("side", "u1", 80),
        ("order_type", "u1", 81),
        ("tif", "u1", 82),
        ("flags", "u1", 83),
        ("stp_mode", "u1", 84),
        ("state", "u1", 85),
    ],
    96,
)

LEVEL_DTYPE = _struct([("price", "<i8", 0), ("quantity", "<i8", 8), ("order_count", "<u4", 16)], 24)

C_STRUCTS: dict[str, np.dtype[np.void]] = {
    "ts_instrument": INSTRUMENT_DTYPE,
    "ts_snap_header": SNAP_HEADER_DTYPE,
    "ts_snap_symbol": SNAP_SYMBOL_DTYPE,
    "ts_snap_order": SNAP_ORDER_DTYPE,
    "ts_level": LEVEL_DTYPE,
}
