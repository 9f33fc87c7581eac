"""The C core's lookahead (native/book_orders.c: in a batch, over LOOK_MIN_LIVE live
orders, the cache lines of the next commands' orders are asked for a few commands
ahead) is a hint and nothing else: a batch gives the output and the book that the same
commands give one call at a time, where it never runs, and that the reference model
gives. The book here is past the threshold, and the stream is made to race the hints:
cancels and replaces of orders a trade or a cancel a few commands earlier in the same
batch took away, of ids never sent, and of ids that were live once."""

from __future__ import annotations

import subprocess
from typing import Any

import numpy as np
import pytest

from tradsys.matching import CEngine, ReferenceEngine
from tradsys.matching.instrument import Instrument
from tradsys.wire import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CommandKind,
    EventKind,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)

Records = np.ndarray[Any, np.dtype[np.void]]

SYMBOL = Instrument("DEEP", 1, tick_size=1, lot_size=1, min_qty=1, reference_price=100_000)
RESTING = 40_000  # past the C core's LOOK_MIN_LIVE (32 768)
ACCOUNTS = 50


def _new(
    out: Records,
    oid: np.ndarray,
    side: np.ndarray,
    price: np.ndarray,
    qty: np.ndarray,
    account: np.ndarray,
    tif: int = TimeInForce.GTC,
) -> None:
    out["kind"] = CommandKind.NEW_ORDER
    out["symbol_id"] = SYMBOL.symbol_id
    out["order_type"] = OrderType.LIMIT
    out["tif"] = tif
    out["order_id"] = oid
    out["side"] = side
    out["price"] = price
    out["quantity"] = qty
    out["account_id"] = account


def _book(rng: np.random.Generator) -> Records:
    """RESTING orders that do not cross: bids below 100 000, asks above."""
    cmds = np.zeros(RESTING, COMMAND_DTYPE)
    side = rng.integers(Side.BUY, Side.SELL + 1, RESTING)
    distance = rng.integers(1, 3_000, RESTING)
    price = np.where(side == Side.BUY, 100_000 - distance, 100_000 + distance)
    _new(
        cmds,
        np.arange(1, RESTING + 1),
        side,
        price,
        rng.integers(1, 20, RESTING),
        rng.integers(1, ACCOUNTS + 1, RESTING),
    )
    return cmds


def _storm(rng: np.random.Generator, n: int) -> Records:
    """Cancels (most of them of recent orders, a few of gone or never-sent ids),
    replaces, and new orders, some of them crossing the spread as IOCs."""
    cmds = np.zeros(n, COMMAND_DTYPE)
    next_id = RESTING + 1
    for i in range(n):
        roll = rng.random()
        row = cmds[i : i + 1]
        if roll < 0.25:
            side = int(rng.integers(Side.BUY, Side.SELL + 1))
            crossing = rng.random() < 0.3
            away = int(rng.integers(-40, 1) if crossing else rng.integers(1, 3_000))
            price = 100_000 - away if side == Side.BUY else 100_000 + away
            tif = TimeInForce.IOC if crossing else TimeInForce.GTC
            _new(
                row,
                np.array([next_id]),
                np.array([side]),
                np.array([price]),
                np.array([int(rng.integers(1, 60))]),
                np.array([int(rng.integers(1, ACCOUNTS + 1))]),
                tif,
            )
            next_id += 1
            continue
        # recent ids mostly (taken away by a trade or a cancel moments ago, often), any
        # id ever sent sometimes, and now and then one that was never sent
        if rng.random() < 0.7:
            oid = max(1, next_id - 1 - int(rng.integers(0, 64)))
        elif rng.random() < 0.9:
            oid = int(rng.integers(1, next_id))
        else:
            oid = next_id + 1_000_000
        row["order_id"] = oid
        row["symbol_id"] = SYMBOL.symbol_id
        # the account is the order's only by chance: NOT_OWNER is part of the race too
        row["account_id"] = int(rng.integers(1, ACCOUNTS + 1)) if rng.random() < 0.1 else 0
        if roll < 0.85:
            row["kind"] = CommandKind.CANCEL
        else:
            row["kind"] = CommandKind.REPLACE
            row["price"] = 100_000 + int(rng.integers(-3_000, 3_000))
            row["quantity"] = int(rng.integers(1, 40))
    return cmds


def _with_owners(cmds: Records, book: Records) -> Records:
    """Cancels and replaces name their order's account (0 above) where it is known."""
    owner = {int(o): int(a) for o, a in zip(book["order_id"], book["account_id"], strict=True)}
    news = cmds["kind"] == CommandKind.NEW_ORDER
    owner.update(
        zip(cmds["order_id"][news].tolist(), cmds["account_id"][news].tolist(), strict=True)
    )
    out = cmds.copy()
    for i in np.flatnonzero(~news & (cmds["account_id"] == 0)):
        out[i]["account_id"] = owner.get(int(cmds[i]["order_id"]), 1)
    return out


def _engine(cls: type) -> Any:
    engine = cls()
    engine.add_instrument(SYMBOL)
    return engine


@pytest.mark.parametrize("seed", [1, 2])
def test_a_batch_over_a_big_book_matches_one_command_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    book = _book(rng)
    storm = _with_owners(_storm(rng, 12_000), book)
    batched, single, reference = _engine(CEngine), _engine(CEngine), _engine(ReferenceEngine)
    for engine in (batched, single, reference):
        engine.process(book)
    assert batched.live_orders() == RESTING  # the lookahead is on for the storm's batches
    events: dict[str, list[bytes]] = {"batched": [], "single": [], "reference": []}
    md: dict[str, list[bytes]] = {"batched": [], "single": [], "reference": []}
    for start in range(0, len(storm), 512):
        out = batched.process(storm[start : start + 512])
        events["batched"].append(out.events.tobytes())
        md["batched"].append(out.md.tobytes())
    for i in range(len(storm)):
        out = single.process(storm[i : i + 1])
        events["single"].append(out.events.tobytes())
        md["single"].append(out.md.tobytes())
    out = reference.process(storm)
    events["reference"].append(out.events.tobytes())
    md["reference"].append(out.md.tobytes())
    joined = {k: b"".join(v) for k, v in events.items()}
    assert joined["batched"] == joined["single"] == joined["reference"]
    joined_md = {k: b"".join(v) for k, v in md.items()}
    assert joined_md["batched"] == joined_md["single"] == joined_md["reference"]
    # and the stream did race the hints: trades, and cancels of orders already gone
    ev = np.frombuffer(joined["batched"], EVENT_DTYPE)
    assert np.count_nonzero(ev["kind"] == EventKind.TRADE) > 100
    gone = (ev["kind"] == EventKind.REJECTED) & (ev["reason"] == RejectReason.UNKNOWN_ORDER)
    assert np.count_nonzero(gone) > 1_000
    assert batched.snapshot() == single.snapshot() == reference.snapshot()


def _prefetches_by_function(library: str) -> dict[str, int]:
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", library],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts: dict[str, int] = {}
    function = ""
    for line in listing.splitlines():
        if line.endswith(">:"):
            function = line[line.index("<") + 1 : -2]
        elif "prefetch" in line:
            counts[function] = counts.get(function, 0) + 1
    return counts


def test_the_prefetch_hints_are_in_the_compiled_core() -> None:
    """GCC (12, at -O1 and up) deleted every prefetch hint the core had: a ``static
    inline`` helper whose only effect is a prefetch was taken for one with no effect, and
    its calls went, hint and all, leaving the lookahead and the cancel's hints as source
    only. They are forced inline now (TS_PREFETCH_FN); this holds the library as built to
    having them, so that a compiler that drops them again is noticed."""
    import tradsys._native as native

    counts = _prefetches_by_function(str(native.__file__))
    assert counts.get("ts_engine_process", 0) >= 4, counts  # the lookahead's, and new orders'
    assert counts.get("ts_eng_cancel_order", 0) >= 4, counts  # the unlinked order's neighbours
