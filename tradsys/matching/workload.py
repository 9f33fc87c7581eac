"""Seeded synthetic command streams: one that mixes every command for differential
tests, and one that looks like a real venue for benchmarks.

Both are pure functions of their arguments (``random.Random`` with a seed: much cheaper
per draw than numpy's generator for scalar draws), so a failing run can be replayed
from its seed. Rows are built as dicts and packed into one array at the end, because
assigning fields of a numpy record one by one costs a microsecond each.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from tradsys.matching.instrument import Instrument
from tradsys.wire import (
    COMMAND_DTYPE,
    CommandKind,
    ControlCode,
    OrderType,
    Side,
    TimeInForce,
)

Commands = np.ndarray[Any, np.dtype[np.void]]


def sample_instruments() -> list[Instrument]:
    """Three symbols with different rules, so every validation path gets exercised."""
    return [
        Instrument("PLAIN", 1, tick_size=1, lot_size=1, min_qty=1, reference_price=1000),
        Instrument(
            "LOTS",
            2,
            tick_size=5,
            lot_size=10,
            min_qty=10,
            max_qty=5000,
            reference_price=1000,
            band_bps=2000,
        ),
        Instrument(
            "BRKR",
            3,
            tick_size=1,
            lot_size=1,
            min_qty=1,
            reference_price=1000,
            breaker_bps=300,
            breaker_halt_ns=1_000,
        ),
    ]


def mixed_stream(n: int, seed: int, instruments: list[Instrument] | None = None) -> Commands:
    """``n`` commands mixing every kind, order type, tif, STP mode and control, with a
    sprinkling of invalid fields, over a few accounts trading near a common price."""
    rng = _Rng(seed)
    instruments = instruments or sample_instruments()
    rows: list[dict[str, int]] = []
    next_id = 1
    live: list[tuple[int, int, int]] = []  # (order_id, symbol_id, account_id) ever sent
    clock = 0
    for _ in range(n):
        rec: dict[str, int] = {}
        rows.append(rec)
        ins = instruments[rng.integers(len(instruments))]
        roll = rng.random()
        if roll < 0.55 or not live:
            tick, lot = ins.tick_size, ins.lot_size
            rec["kind"] = CommandKind.NEW_ORDER
            rec["symbol_id"] = ins.symbol_id if rng.random() > 0.01 else 99
            rec["account_id"] = rng.integers(1, 4) if rng.random() > 0.005 else 0
            rec["side"] = rng.integers(1, 3) if rng.random() > 0.005 else 7
            otype = rng.choice([1, 1, 1, 1, 1, 2, 3, 4])
            rec["order_type"] = otype if rng.random() > 0.005 else 9
            rec["tif"] = rng.choice([1, 1, 1, 2, 3, 4, 5])
            if otype in (OrderType.MARKET,):
                rec["tif"] = rng.choice([TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTC])
            if otype in (OrderType.STOP, OrderType.STOP_LIMIT):
                rec["tif"] = rng.choice(
                    [TimeInForce.GTC, TimeInForce.DAY, TimeInForce.GTD, TimeInForce.IOC]
                )
            rec["stp_mode"] = rng.integers(0, 4) if rng.random() > 0.005 else 9
            rec["flags"] = 1 if rng.random() < 0.08 else 0
            qty_lots = int(rng.integers(1, 30))
            rec["quantity"] = qty_lots * lot + (1 if rng.random() < 0.01 else 0)
            price = 1000 + int(rng.integers(-12, 13)) * tick
            if rng.random() < 0.01:
                price += 1  # off-tick for symbols with tick > 1
            if rng.random() < 0.005:
                price = 1000 + 500 * tick  # outside any band
            if otype in (OrderType.LIMIT, OrderType.STOP_LIMIT):
                rec["price"] = price
            if otype in (OrderType.STOP, OrderType.STOP_LIMIT):
                rec["stop_price"] = 1000 + int(rng.integers(-6, 7)) * tick
            if otype == OrderType.LIMIT and rng.random() < 0.08:
                rec["display_qty"] = max(1, qty_lots // 3) * lot
            rec["time_ns"] = clock + int(rng.integers(-50, 400))
            dup = rng.random() < 0.01 and next_id > 1
            rec["order_id"] = int(rng.integers(1, next_id)) if dup else next_id
            if not dup:
                live.append((next_id, int(rec["symbol_id"]), int(rec["account_id"])))
                next_id += 1
        elif roll < 0.78:
            oid, sym, acct = live[rng.integers(len(live))]
            rec["kind"] = CommandKind.CANCEL
            rec["order_id"] = oid if rng.random() > 0.02 else next_id + 1000
            rec["symbol_id"] = sym
            rec["account_id"] = acct if rng.random() > 0.03 else acct % 3 + 1
        elif roll < 0.92:
            oid, sym, acct = live[rng.integers(len(live))]
            tick = next((x.tick_size for x in instruments if x.symbol_id == sym), 1)
            lot = next((x.lot_size for x in instruments if x.symbol_id == sym), 1)
            rec["kind"] = CommandKind.REPLACE
            rec["order_id"] = oid
            rec["symbol_id"] = sym
            rec["account_id"] = acct
            rec["price"] = 1000 + int(rng.integers(-12, 13)) * tick
            rec["quantity"] = int(rng.integers(1, 35)) * lot
        elif roll < 0.94:
            rec["kind"] = CommandKind.MASS_CANCEL
            rec["account_id"] = rng.integers(0, 4)
            rec["symbol_id"] = rng.choice([0, ins.symbol_id])
        else:
            rec["kind"] = CommandKind.CONTROL
            code = int(rng.choice([1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8]))
            rec["control"] = code
            rec["symbol_id"] = rng.choice([0, ins.symbol_id, ins.symbol_id])
            if code == ControlCode.CLOCK_TICK:
                step = int(rng.integers(-20, 600))
                rec["time_ns"] = clock + step
                if step >= 0:
                    clock += step
        if rng.random() < 0.002:
            rec["kind"] = 0  # an unknown command kind
    return _pack(rows)


def venue_stream(n: int, seed: int, symbol_id: int = 1, depth: int = 2_000) -> Commands:
    """A venue-like stream for one symbol: a random-walk mid, a deep book whose size
    decays away from the touch, mostly cancels of resting orders, some IOC, some
    replaces and a few large sweeps. The first ``depth`` commands build the book."""
    rng = _Rng(seed)
    rows: list[dict[str, int]] = []
    resting: list[int] = []
    next_id = 1
    mid = 100_000
    for i in range(n):
        rec: dict[str, int] = {"symbol_id": symbol_id}
        rows.append(rec)
        mid += int(rng.integers(-1, 2))
        roll = rng.random() if i >= depth else 0.0
        if roll < 0.40 or not resting:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            # distance from the mid: power-law, so the touch is busiest
            dist = int(rng.paretovariate(1.5) * 2) - 1
            rec["kind"] = CommandKind.NEW_ORDER
            rec["order_type"] = OrderType.LIMIT
            rec["tif"] = TimeInForce.GTC
            rec["side"] = side
            rec["price"] = mid - dist if side == Side.BUY else mid + dist
            rec["quantity"] = int(rng.integers(1, 20)) * 100
            rec["account_id"] = int(rng.integers(1, 500))
            rec["order_id"] = next_id
            resting.append(next_id)
            next_id += 1
        elif roll < 0.80:
            j = int(rng.integers(len(resting)))
            resting[j], resting[-1] = resting[-1], resting[j]
            rec["kind"] = CommandKind.CANCEL
            rec["order_id"] = resting.pop()
            rec["account_id"] = 0  # filled in below from the order's owner
        elif roll < 0.90:
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            sweep = rng.random() < 0.05
            rec["kind"] = CommandKind.NEW_ORDER
            rec["order_type"] = OrderType.LIMIT
            rec["tif"] = TimeInForce.IOC
            rec["side"] = side
            reach = 40 if sweep else 2
            rec["price"] = mid + reach if side == Side.BUY else mid - reach
            rec["quantity"] = (
                int(rng.integers(50, 200)) if sweep else int(rng.integers(1, 10))
            ) * 100
            rec["account_id"] = int(rng.integers(1, 500))
            rec["order_id"] = next_id
            next_id += 1
        else:
            rec["kind"] = CommandKind.REPLACE
            rec["order_id"] = resting[int(rng.integers(len(resting)))]
            rec["quantity"] = int(rng.integers(1, 20)) * 100
            rec["price"] = 0  # filled in below: keep the order's own price
    out = _pack(rows)
    _fill_owner_fields(out)
    return out


class _Rng(random.Random):
    """``random.Random`` with numpy's spelling of the two draws used here."""

    def integers(self, low: int, high: int | None = None) -> int:
        """A uniform int in [low, high), or [0, low) with one argument."""
        if high is None:
            low, high = 0, low
        return self.randrange(low, high)

    def choice(self, seq: Any, p: None = None) -> Any:
        return super().choice(seq)


def _pack(rows: list[dict[str, int]]) -> Commands:
    names = COMMAND_DTYPE.names or ()
    return np.array([tuple(r.get(f, 0) for f in names) for r in rows], COMMAND_DTYPE)


def _fill_owner_fields(out: Commands) -> None:
    """Cancels and replaces name the order's owner (and a replace keeps its price), as a
    gateway would; looked up from the new-order records of the same stream."""
    new = out["kind"] == CommandKind.NEW_ORDER
    owner = dict(zip(out["order_id"][new].tolist(), out["account_id"][new].tolist(), strict=True))
    price = dict(zip(out["order_id"][new].tolist(), out["price"][new].tolist(), strict=True))
    for i in np.flatnonzero(~new):
        oid = int(out["order_id"][i])
        out["account_id"][i] = owner[oid]
        if out["kind"][i] == CommandKind.REPLACE:
            out["price"][i] = price[oid]
