"""The records the reference model reads and writes: a command as Python ints, and
events / market data gathered as tuples in wire-field order and packed once per batch.

Packing goes through ``struct`` into a fresh zeroed buffer, so every padding byte is
zero (numpy's ``copy()`` and ``concatenate`` of these gapped dtypes would not carry
padding bytes over, and the records are compared byte for byte).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import numpy as np

from tradsys.matching.api import Records
from tradsys.wire import COMMAND_DTYPE, EVENT_DTYPE, MD_DTYPE, EventFlag, EventKind, MdKind

# the kinds the engine emits (ORDER_STATUS is the gateway's own)
EV_ACCEPTED, EV_REJECTED, EV_TRADE = (int(k) for k in EventKind if k <= EventKind.TRADE)
EV_CANCELLED, EV_REPLACED, EV_TRIGGERED = (
    int(k) for k in (EventKind.CANCELLED, EventKind.REPLACED, EventKind.TRIGGERED)
)
MAKER, TAKER, DONE = int(EventFlag.MAKER), int(EventFlag.TAKER), int(EventFlag.DONE)
MD_L2, MD_TRADE, MD_BBO = int(MdKind.L2_UPDATE), int(MdKind.TRADE), int(MdKind.BBO)
MD_STATUS = int(MdKind.STATUS)

# ts_event and ts_md as struct formats, pads included (written as zeros)
EVENT_FORMAT = struct.Struct("<BBBBIIIQQqqqQ")
MD_FORMAT = struct.Struct("<BBHIQqqqqIIq")
assert EVENT_FORMAT.size == EVENT_DTYPE.itemsize and MD_FORMAT.size == MD_DTYPE.itemsize


class Command(NamedTuple):
    """One ``COMMAND_DTYPE`` record as Python ints, fields in record order."""

    kind: int
    side: int
    order_type: int
    tif: int
    flags: int
    stp_mode: int
    control: int
    symbol_id: int
    account_id: int
    order_id: int
    price: int
    quantity: int
    stop_price: int
    display_qty: int
    time_ns: int


assert Command._fields == COMMAND_DTYPE.names


def pack_events(rows: list[tuple[int, ...]]) -> Records:
    """EVENT_DTYPE records from tuples laid out like ``EVENT_FORMAT``."""
    return _pack(EVENT_FORMAT, rows, EVENT_DTYPE)


def pack_md(rows: list[tuple[int, ...]]) -> Records:
    """MD_DTYPE records from tuples laid out like ``MD_FORMAT``."""
    return _pack(MD_FORMAT, rows, MD_DTYPE)


def _pack(layout: struct.Struct, rows: list[tuple[int, ...]], dtype: np.dtype[Any]) -> Records:
    data = bytearray(b"".join(layout.pack(*row) for row in rows))
    return np.frombuffer(data, dtype)
