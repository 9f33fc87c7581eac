"""Order-entry commands as the 64 bytes a client sends: NEW_ORDER from friendly arguments
(side and time in force by name, the order type from the prices), CANCEL/REPLACE, and
where a client's order ids start. No I/O: :mod:`tradsys.client.orders` sends them.

Each command is packed with ``struct`` (``wire.COMMAND_FORMAT``), not as a one-record
numpy array: a client sending one order at a time pays ~0.1 µs here instead of ~4 µs.
"""

from __future__ import annotations

import secrets
import struct
import time
from typing import Any

import numpy as np

from tradsys import wire
from tradsys.client.transport import Records
from tradsys.wire import CommandKind, OrderFlag, OrderType, Side, TimeInForce

__all__ = ["command_bytes", "first_client_id", "order_bytes", "order_record"]

SideLike = Side | str | int
TifLike = TimeInForce | str | int

# by name (any case) and by value: a dict hit is the common case on the per-order path
_SIDES: dict[str | int, int] = {s.name.lower(): int(s) for s in Side}
_SIDES.update({int(s): int(s) for s in Side})
_TIFS: dict[str | int, int] = {t.name.lower(): int(t) for t in TimeInForce}
_TIFS.update({int(t): int(t) for t in TimeInForce})


def _side(side: SideLike) -> int:
    found = _SIDES.get(side.lower() if isinstance(side, str) else side)
    if found is None:
        if isinstance(side, str):
            raise ValueError(f"side {side!r}: use 'buy' or 'sell'")
        return int(Side(side))  # raises, naming the value
    return found


def _tif(tif: TifLike) -> int:
    found = _TIFS.get(tif.lower() if isinstance(tif, str) else tif)
    if found is None:
        if isinstance(tif, str):
            names = ", ".join(t.name.lower() for t in TimeInForce)
            raise ValueError(f"time in force {tif!r}: use one of {names}")
        return int(TimeInForce(tif))  # raises, naming the value
    return found


def order_record(
    order_id: int, symbol_id: int, side: SideLike, quantity: int, price: int | None = None,
    **kw: Any,
) -> Records:  # fmt: skip
    """:func:`order_bytes` as a one-record ``COMMAND_DTYPE`` array (writable), for
    building batches."""
    return _as_records(order_bytes(order_id, symbol_id, side, quantity, price, **kw))


def order_bytes(
    order_id: int,
    symbol_id: int,
    side: SideLike,
    quantity: int,
    price: int | None = None,
    *,
    tif: TifLike | None = None,
    post_only: bool = False,
    stop_price: int | None = None,
    display_qty: int | None = None,
    order_type: OrderType | None = None,
) -> bytes:
    """One NEW_ORDER command as its 64 wire bytes, what the clients send for one order.
    The order type follows from the prices unless given: no price is MARKET, a stop price
    makes it STOP (or STOP_LIMIT with a price); a ``display_qty`` makes it an iceberg;
    ``tif="ioc"``/``"fok"``; ``post_only``. With no ``tif``, a MARKET order is IOC (the
    engine takes no other but FOK) and every other order GTC."""
    if order_type is None:
        if stop_price:
            order_type = OrderType.STOP_LIMIT if price else OrderType.STOP
        else:
            order_type = OrderType.LIMIT if price else OrderType.MARKET
    if tif is None:
        tif = TimeInForce.IOC if order_type == OrderType.MARKET else TimeInForce.GTC
    return _pack(
        CommandKind.NEW_ORDER,
        order_id,
        symbol_id,
        side=_side(side),
        order_type=int(order_type),
        tif=_tif(tif),
        flags=int(OrderFlag.POST_ONLY) if post_only else 0,
        price=price or 0,
        quantity=quantity,
        stop_price=stop_price or 0,
        display_qty=display_qty or 0,
    )


def _pack(
    kind: CommandKind,
    order_id: int,
    symbol_id: int,
    *,
    side: int = 0,
    order_type: int = 0,
    tif: int = 0,
    flags: int = 0,
    price: int = 0,
    quantity: int = 0,
    stop_price: int = 0,
    display_qty: int = 0,
) -> bytes:
    """One command's bytes (``wire.COMMAND_FORMAT``): a client sending orders one at a
    time pays ~0.1 µs here instead of ~4 µs for a one-record numpy array. The gateway
    fills in the account; a value that is not a whole number within its field's range is
    refused here, by name, before anything is sent."""
    try:
        return wire.COMMAND_FORMAT.pack(
            kind, side, order_type, tif, flags, 0, 0, symbol_id, 0, order_id,
            price, quantity, stop_price, display_qty, 0,
        )  # fmt: skip
    except struct.error as exc:
        fields = {
            "order_id": order_id, "symbol_id": symbol_id, "price": price,
            "quantity": quantity, "stop_price": stop_price, "display_qty": display_qty,
        }  # fmt: skip
        bad = [f"{k}={v!r}" for k, v in fields.items() if not _fits(v, k)]
        raise ValueError(
            f"{kind.name.lower()}: {', '.join(bad) or exc} is not a whole number in its "
            "field's range"
        ) from None


_RANGES = {"order_id": (0, 2**64 - 1), "symbol_id": (0, 2**32 - 1)}


def _fits(value: object, field: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return False
    lo, hi = _RANGES.get(field, (-(2**63), 2**63 - 1))
    return lo <= int(value) <= hi


def _as_records(record: bytes) -> Records:
    """A writable one-record ``COMMAND_DTYPE`` array of these bytes."""
    return np.frombuffer(bytearray(record), wire.COMMAND_DTYPE)


def command_bytes(kind: CommandKind, order_id: int, symbol_id: int, **fields: int) -> bytes:
    """Any command's 64 bytes (CANCEL, REPLACE, MASS_CANCEL: the fields it takes)."""
    return _pack(kind, order_id, symbol_id, **fields)


START_SPREAD = 1 << 19  # a client's first id is this far into its start millisecond, at most


def first_client_id(now_ns: int | None = None, spread: int | None = None) -> int:
    """Where a new client's order ids start: its start time in ms since the epoch, << 20
    (below 2^63 until the year 2248), plus a random ``spread`` below 2^19. Two clients of
    one account started a millisecond apart are about 2^20 ids apart, so the older one
    would have to send that many more orders than the younger before their ids could
    meet. Two started in the same millisecond (a firm starting its strategies at once)
    began at the same id before -- every order of the second refused DUPLICATE_CLIENT_ID,
    and its cancels reaching the first's orders, as ids are the account's; now they are
    a random distance apart, on average 2^18 ids, and meet only if one sends that many
    orders. Clients that share an account at such rates should choose their ids."""
    now = time.time_ns() if now_ns is None else now_ns
    offset = secrets.randbelow(START_SPREAD) if spread is None else spread
    return ((now // 1_000_000) << 20) + offset
