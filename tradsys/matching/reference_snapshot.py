"""The reference model's canonical snapshot: encoding its state into the bytes described
in native/book.h (through the dtypes of :mod:`tradsys.matching.snapshot_layout`), and
decoding and checking such bytes for a restore.

Layout: one header; then per symbol in ascending id order its instrument record, its
state record and its orders (bids best first in queue order, asks best first in queue
order, then pending stops in seq order). Every padding byte is zero.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tradsys.matching.instrument import Instrument
from tradsys.matching.reference_book import (
    AUCTION,
    BUY,
    CONTINUOUS,
    NO_REOPEN,
    SELL,
    STATE_PENDING_STOP,
    STATE_RESTING,
    Order,
    SymbolBook,
)
from tradsys.matching.snapshot_layout import (
    INSTRUMENT_DTYPE,
    SNAP_HEADER_DTYPE,
    SNAP_ORDER_DTYPE,
    SNAP_SYMBOL_DTYPE,
    SNAP_SYMBOL_V1_DTYPE,
    SNAPSHOT_MAGIC,
    SNAPSHOT_VERSION,
)

_INSTRUMENT_FIELDS = INSTRUMENT_DTYPE.names or ()
_ORDER_FIELDS = SNAP_ORDER_DTYPE.names or ()
# SymbolBook attributes that the state record carries (besides symbol_id and n_orders)
_STATE_FIELDS = (
    "phase",
    "static_reference",
    "last_trade_price",
    "reopen_ns",
    "trade_seq",
    "l2_seq",
    "bbo_seq",
    "status_seq",
)
_BBO_FIELDS = ("bbo_bid_price", "bbo_bid_quantity", "bbo_ask_price", "bbo_ask_quantity")


def _record(dtype: np.dtype[Any], values: dict[str, int]) -> bytes:
    rec = np.zeros(1, dtype)
    for name, value in values.items():
        rec[name] = value
    return rec.tobytes()


def _orders_block(orders: list[Order]) -> bytes:
    out = np.zeros(len(orders), SNAP_ORDER_DTYPE)
    if orders:
        for name in _ORDER_FIELDS:
            out[name] = [getattr(o, name) for o in orders]
    return out.tobytes()


def encode(
    *, clock_ns: int, max_order_id: int, last_exec_id: int, last_seq: int, books: list[SymbolBook]
) -> bytes:
    """The snapshot of an engine whose symbols' books are ``books`` (ascending id)."""
    per_symbol = [(book, list(book.orders_in_snapshot_order())) for book in books]
    parts = [
        _record(
            SNAP_HEADER_DTYPE,
            {
                "magic": SNAPSHOT_MAGIC,
                "version": SNAPSHOT_VERSION,
                "n_symbols": len(books),
                "clock_ns": clock_ns,
                "max_order_id": max_order_id,
                "last_exec_id": last_exec_id,
                "last_seq": last_seq,
                "total_orders": sum(len(orders) for _, orders in per_symbol),
            },
        )
    ]
    for book, orders in per_symbol:
        ins = book.instrument
        parts.append(_record(INSTRUMENT_DTYPE, {n: getattr(ins, n) for n in _INSTRUMENT_FIELDS}))
        state = {name: getattr(book, name) for name in _STATE_FIELDS}
        state.update(zip(_BBO_FIELDS, book.last_bbo, strict=True))
        parts.append(
            _record(
                SNAP_SYMBOL_DTYPE, {"symbol_id": book.symbol_id, "n_orders": len(orders), **state}
            )
        )
        parts.append(_orders_block(orders))
    return b"".join(parts)


@dataclass
class RestoredSymbol:
    instrument: Instrument
    fields: dict[str, Any]  # SymbolBook attributes to set
    orders: list[Order]  # in snapshot order


@dataclass
class RestoredEngine:
    clock_ns: int
    max_order_id: int
    last_exec_id: int
    last_seq: int
    symbols: list[RestoredSymbol] = field(default_factory=list)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, dtype: np.dtype[Any], count: int = 1) -> Any:
        size = dtype.itemsize * count
        if self.offset + size > len(self.data):
            raise ValueError(f"bad snapshot: truncated at byte {self.offset}")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return np.frombuffer(chunk, dtype, count)


def decode(data: bytes) -> RestoredEngine:
    """Parse and check a snapshot; ValueError (starting "bad snapshot") names what is
    wrong with it."""
    reader = _Reader(bytes(data))
    header = reader.take(SNAP_HEADER_DTYPE)[0]
    _check(int(header["magic"]) == SNAPSHOT_MAGIC, "wrong magic")
    version = int(header["version"])
    _check(1 <= version <= SNAPSHOT_VERSION, f"version {version}")
    symbol_dtype = SNAP_SYMBOL_V1_DTYPE if version == 1 else SNAP_SYMBOL_DTYPE
    _check(int(header["clock_ns"]) >= 0, "negative clock")
    out = RestoredEngine(
        clock_ns=int(header["clock_ns"]),
        max_order_id=int(header["max_order_id"]),
        last_exec_id=int(header["last_exec_id"]),
        last_seq=int(header["last_seq"]),
    )
    seen_ids: set[int] = set()
    previous_symbol = 0
    for _ in range(int(header["n_symbols"])):
        ins_rec = reader.take(INSTRUMENT_DTYPE)[0]
        values = {n: int(ins_rec[n]) for n in _INSTRUMENT_FIELDS}
        sym = values["symbol_id"]
        instrument = Instrument(symbol=f"#{sym}", **values)
        problems = instrument.problems()
        _check(not problems, "; ".join(problems))
        _check(sym > previous_symbol, f"symbol {sym} out of order")
        previous_symbol = sym
        state = reader.take(symbol_dtype)[0]
        _check(int(state["symbol_id"]) == sym, f"state record of {state['symbol_id']} after {sym}")
        names = symbol_dtype.names or ()
        fields: dict[str, Any] = {n: int(state[n]) if n in names else 0 for n in _STATE_FIELDS}
        fields["last_bbo"] = tuple(int(state[name]) for name in _BBO_FIELDS)
        _check(CONTINUOUS <= fields["phase"] <= AUCTION, f"symbol {sym}: phase {fields['phase']}")
        _check(
            fields["reopen_ns"] == NO_REOPEN or fields["phase"] == AUCTION,
            f"symbol {sym}: a reopening time outside the auction",
        )
        n_orders = int(state["n_orders"])
        records = reader.take(SNAP_ORDER_DTYPE, n_orders)
        orders = [_order(rec, sym, out, seen_ids) for rec in records.tolist()]
        _check_order_sequence(orders, sym)
        out.symbols.append(RestoredSymbol(instrument, fields, orders))
    _check(reader.offset == len(reader.data), f"{len(reader.data) - reader.offset} trailing bytes")
    total = sum(len(s.orders) for s in out.symbols)
    _check(int(header["total_orders"]) == total, f"total_orders says {header['total_orders']}")
    return out


def _order(values: tuple[int, ...], sym: int, engine: RestoredEngine, seen: set[int]) -> Order:
    order = Order(**dict(zip(_ORDER_FIELDS, values, strict=True)))
    oid = order.order_id
    _check(order.symbol_id == sym, f"order {oid} of symbol {order.symbol_id} under {sym}")
    _check(0 < oid <= engine.max_order_id and oid not in seen, f"order id {oid}")
    seen.add(oid)
    _check(0 < order.seq <= engine.last_seq, f"order {oid}: seq {order.seq}")
    _check(order.side in (BUY, SELL), f"order {oid}: side {order.side}")
    _check(0 < order.leaves <= order.quantity, f"order {oid}: leaves {order.leaves}")
    if order.state == STATE_RESTING:
        _check(order.price > 0, f"order {oid}: resting at price {order.price}")
        _check(0 < order.visible <= order.leaves, f"order {oid}: visible {order.visible}")
    else:
        _check(order.state == STATE_PENDING_STOP, f"order {oid}: state {order.state}")
        _check(order.visible == 0 and order.stop_price > 0, f"order {oid}: not a pending stop")
    _check(order.display_qty >= 0, f"order {oid}: display {order.display_qty}")
    return order


def _check_order_sequence(orders: list[Order], sym: int) -> None:
    """Bids by falling price, then asks by rising price, then stops by rising seq."""
    section = [(o.state, o.side) for o in orders]
    ranks = {(STATE_RESTING, BUY): 0, (STATE_RESTING, SELL): 1}
    keys = [ranks.get(s, 2) for s in section]
    _check(keys == sorted(keys), f"symbol {sym}: orders out of section order")
    for a, b in itertools.pairwise(orders):
        if a.state == b.state == STATE_RESTING and a.side == b.side:
            ok = a.price >= b.price if a.side == BUY else a.price <= b.price
            _check(ok, f"symbol {sym}: levels out of price order at order {b.order_id}")
        elif a.state == b.state == STATE_PENDING_STOP:
            _check(a.seq < b.seq, f"symbol {sym}: stops out of seq order at order {b.order_id}")


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"bad snapshot: {what}")
