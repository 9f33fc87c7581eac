"""Readable builders and views for the matching scenarios.

Expected events and market-data records are written as named tuples with every field
(but the exec id, checked on its own), so a scenario states exactly what the engine
must say, field by field.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from tradsys.matching import Instrument, Output
from tradsys.matching.commands import batch, new_order
from tradsys.matching.snapshot_layout import (
    INSTRUMENT_DTYPE,
    SNAP_HEADER_DTYPE,
    SNAP_ORDER_DTYPE,
    SNAP_SYMBOL_DTYPE,
)
from tradsys.wire import (
    CancelReason,
    EventFlag,
    EventKind,
    MdKind,
    OrderType,
    RejectReason,
    Side,
    StpMode,
    TimeInForce,
)

Records = np.ndarray[Any, np.dtype[np.void]]
BUY, SELL = Side.BUY, Side.SELL

ACME = Instrument("ACME", 1, tick_size=1, lot_size=1, min_qty=1, reference_price=100)
"""The default symbol: no band, no breaker, reference 100."""


class Ev(NamedTuple):
    kind: int
    side: int
    reason: int
    flags: int
    symbol_id: int
    account_id: int
    order_id: int
    contra_order_id: int
    price: int
    quantity: int
    leaves_qty: int


class Md(NamedTuple):
    kind: int
    side: int
    symbol_id: int
    seq: int
    price: int
    quantity: int
    ask_price: int
    ask_quantity: int
    order_count: int
    time_ns: int


def events(out: Output) -> list[Ev]:
    """The events of an output without their exec ids."""
    return [Ev(*row[:11]) for row in out.events.tolist()]


def md(out: Output) -> list[Md]:
    return [Md(*row) for row in out.md.tolist()]


# ---- expected events -----------------------------------------------------------------


def accepted(oid: int, side: int, price: int, qty: int, acct: int = 1, sym: int = 1) -> Ev:
    return Ev(EventKind.ACCEPTED, side, 0, 0, sym, acct, oid, 0, price, qty, qty)


def rejected(
    oid: int,
    reason: RejectReason,
    *,
    side: int = 0,
    price: int = 0,
    qty: int = 0,
    acct: int = 1,
    sym: int = 1,
) -> Ev:
    return Ev(EventKind.REJECTED, side, reason, EventFlag.DONE, sym, acct, oid, 0, price, qty, 0)


def trade(
    oid: int,
    side: int,
    contra: int,
    price: int,
    qty: int,
    leaves: int,
    *,
    taker: bool,
    acct: int = 1,
    sym: int = 1,
) -> Ev:
    flags = (EventFlag.TAKER if taker else EventFlag.MAKER) | (EventFlag.DONE if leaves == 0 else 0)
    return Ev(EventKind.TRADE, side, 0, flags, sym, acct, oid, contra, price, qty, leaves)


def fill(
    taker: tuple[int, int, int],
    maker: tuple[int, int, int],
    price: int,
    qty: int,
    taker_leaves: int,
    maker_leaves: int,
    sym: int = 1,
) -> list[Ev]:
    """Both TRADE events of one fill; taker and maker given as (order id, side, account)."""
    (t_oid, t_side, t_acct), (m_oid, m_side, m_acct) = taker, maker
    return [
        trade(t_oid, t_side, m_oid, price, qty, taker_leaves, taker=True, acct=t_acct, sym=sym),
        trade(m_oid, m_side, t_oid, price, qty, maker_leaves, taker=False, acct=m_acct, sym=sym),
    ]


def cancelled(
    oid: int, side: int, price: int, qty: int, reason: CancelReason, acct: int = 1, sym: int = 1
) -> Ev:
    return Ev(EventKind.CANCELLED, side, reason, EventFlag.DONE, sym, acct, oid, 0, price, qty, 0)


def replaced(
    oid: int, side: int, price: int, qty: int, leaves: int, acct: int = 1, sym: int = 1
) -> Ev:
    return Ev(EventKind.REPLACED, side, 0, 0, sym, acct, oid, 0, price, qty, leaves)


def triggered(
    oid: int, side: int, price: int, qty: int, leaves: int, acct: int = 1, sym: int = 1
) -> Ev:
    return Ev(EventKind.TRIGGERED, side, 0, 0, sym, acct, oid, 0, price, qty, leaves)


# ---- expected market data ------------------------------------------------------------


def l2(side: int, price: int, qty: int, count: int, seq: int, sym: int = 1, t: int = 0) -> Md:
    return Md(MdKind.L2_UPDATE, side, sym, seq, price, qty, 0, 0, count, t)


def printed(side: int, price: int, qty: int, seq: int, sym: int = 1, t: int = 0) -> Md:
    return Md(MdKind.TRADE, side, sym, seq, price, qty, 0, 0, 0, t)


def bbo(bid: int, bid_qty: int, ask: int, ask_qty: int, seq: int, sym: int = 1, t: int = 0) -> Md:
    return Md(MdKind.BBO, 0, sym, seq, bid, bid_qty, ask, ask_qty, 0, t)


def status(
    phase: int, before: int, reason: int, seq: int, reopen_ns: int = -1, sym: int = 1, t: int = 0
) -> Md:
    """A STATUS record: the new phase, the one before, reopen_ns, the reason."""
    return Md(MdKind.STATUS, 0, sym, seq, phase, before, reopen_ns, 0, reason, t)


# ---- commands ------------------------------------------------------------------------


def buy(oid: int, qty: int, price: int = 0, acct: int = 1, sym: int = 1, **kw: Any) -> Records:
    return new_order(oid, sym, acct, BUY, qty, price, **kw)


def sell(oid: int, qty: int, price: int = 0, acct: int = 1, sym: int = 1, **kw: Any) -> Records:
    return new_order(oid, sym, acct, SELL, qty, price, **kw)


def market(side: int, oid: int, qty: int, acct: int = 1, sym: int = 1, **kw: Any) -> Records:
    kw.setdefault("tif", TimeInForce.IOC)
    return new_order(oid, sym, acct, Side(side), qty, 0, OrderType.MARKET, **kw)


def stop(
    side: int, oid: int, qty: int, stop_price: int, acct: int = 1, sym: int = 1, **kw: Any
) -> Records:
    return new_order(
        oid, sym, acct, Side(side), qty, 0, OrderType.STOP, stop_price=stop_price, **kw
    )


def stop_limit(
    side: int,
    oid: int,
    qty: int,
    price: int,
    stop_price: int,
    acct: int = 1,
    sym: int = 1,
    **kw: Any,
) -> Records:
    return new_order(
        oid, sym, acct, Side(side), qty, price, OrderType.STOP_LIMIT, stop_price=stop_price, **kw
    )


STP = StpMode
TIF = TimeInForce


# ---- engines ---------------------------------------------------------------------------


class Harness:
    """An engine with its instruments, and short ways to drive and inspect it."""

    def __init__(self, engine_cls: type, *instruments: Instrument) -> None:
        self.engine = engine_cls()
        for ins in instruments or (ACME,):
            self.engine.add_instrument(ins)

    def send(self, *commands: Records) -> Output:
        out: Output = self.engine.process(batch(*commands))
        return out

    def ev(self, *commands: Records) -> list[Ev]:
        return events(self.send(*commands))

    def book(self, sym: int = 1) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(bids, asks) as (price, displayed quantity, order count), best first."""
        return (
            [tuple(r) for r in self.engine.depth(sym, BUY, 100).tolist()],
            [tuple(r) for r in self.engine.depth(sym, SELL, 100).tolist()],
        )

    def state(self) -> bytes:
        """The snapshot with the exec-id counter masked: what a reject must not change."""
        return mask_exec_id(self.engine.snapshot())

    def last_exec_id(self) -> int:
        return int(np.frombuffer(self.engine.snapshot()[:64], SNAP_HEADER_DTYPE)[0]["last_exec_id"])


def mask_exec_id(snapshot: bytes) -> bytes:
    offset = SNAP_HEADER_DTYPE.fields["last_exec_id"][1]  # type: ignore[index]
    return snapshot[:offset] + bytes(8) + snapshot[offset + 8 :]


class ParsedSnapshot(NamedTuple):
    header: dict[str, int]
    symbols: list[tuple[dict[str, int], dict[str, int], list[dict[str, int]]]]


def parse_snapshot(data: bytes) -> ParsedSnapshot:
    """An independent reading of the snapshot layout of native/book.h."""

    def as_dict(rec: np.void) -> dict[str, int]:
        return {n: int(rec[n]) for n in rec.dtype.names or ()}

    pos = 0

    def take(dtype: np.dtype[Any], count: int = 1) -> Records:
        nonlocal pos
        arr = np.frombuffer(data, dtype, count, pos)
        pos += dtype.itemsize * count
        return arr

    header = as_dict(take(SNAP_HEADER_DTYPE)[0])
    symbols = []
    for _ in range(header["n_symbols"]):
        ins = as_dict(take(INSTRUMENT_DTYPE)[0])
        state = as_dict(take(SNAP_SYMBOL_DTYPE)[0])
        orders = [as_dict(r) for r in take(SNAP_ORDER_DTYPE, state["n_orders"])]
        symbols.append((ins, state, orders))
    assert pos == len(data), "trailing bytes after the last symbol"
    return ParsedSnapshot(header, symbols)
