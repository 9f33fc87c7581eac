"""Seeded mixed command streams: properties every engine's output must have whatever the
input (the exact expectations are in the scenario tests), snapshot/restore anywhere in a
stream, and the reference model's internal consistency."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from tradsys.matching import ReferenceEngine, workload
from tradsys.matching.reference_book import STATE_PENDING_STOP, STATE_RESTING
from tradsys.wire import EVENT_DTYPE, MD_DTYPE, EventFlag, EventKind, MdKind, Side

Records = np.ndarray[Any, np.dtype[np.void]]
N = 6_000


def fresh(engine_cls: type) -> Any:
    engine = engine_cls()
    for ins in workload.sample_instruments():
        engine.add_instrument(ins)
    return engine


def join(parts: list[Records], dtype: np.dtype[Any]) -> Records:
    """Concatenate records byte for byte (np.concatenate and copy() do not carry the
    unnamed padding bytes of these dtypes over, so their bytes could not be compared)."""
    return np.frombuffer(bytearray(b"".join(p.tobytes() for p in parts)), dtype)


def run(engine: Any, commands: Records, chunk: int) -> tuple[Records, Records]:
    events, md = [], []
    for start in range(0, len(commands), chunk):
        out = engine.process(commands[start : start + chunk])
        events.append(out.events)
        md.append(out.md)
    return join(events, EVENT_DTYPE), join(md, MD_DTYPE)


@pytest.fixture(scope="module", params=[11, 12])
def stream(request: pytest.FixtureRequest) -> Records:
    commands: Records = workload.mixed_stream(N, request.param)
    return commands


def test_batching_does_not_change_the_output(engine_cls: type, stream: Records) -> None:
    one_by_one = run(fresh(engine_cls), stream[:1500], 1)
    batched = run(fresh(engine_cls), stream[:1500], 1500)
    assert one_by_one[0].tobytes() == batched[0].tobytes()
    assert one_by_one[1].tobytes() == batched[1].tobytes()


@pytest.mark.parametrize("cut", [1, 777, 2500, N - 1])
def test_snapshot_restore_anywhere_continues_identically(
    engine_cls: type, stream: Records, cut: int
) -> None:
    whole = fresh(engine_cls)
    whole.process(stream[:cut])
    restored = engine_cls.restore(whole.snapshot())
    assert restored.snapshot() == whole.snapshot()
    expected, got = whole.process(stream[cut:]), restored.process(stream[cut:])
    assert got.events.tobytes() == expected.events.tobytes()
    assert got.md.tobytes() == expected.md.tobytes()
    assert restored.digest() == whole.digest()


def test_output_is_self_consistent(engine_cls: type, stream: Records) -> None:
    """Exec ids and md sequence numbers are gapless; trades come in taker/maker pairs
    with a print each; the orders the events leave open are the engine's live orders;
    replaying L2 and BBO records rebuilds the engine's depth and BBO."""
    engine = fresh(engine_cls)
    events, md = run(engine, stream, 1000)
    assert events["exec_id"].tolist() == list(range(1, len(events) + 1))

    open_leaves: dict[int, int] = {}
    trades = []
    rows = events.tolist()
    names = events.dtype.names or ()
    col = {n: i for i, n in enumerate(names)}
    for i, row in enumerate(rows):
        kind, oid, leaves = row[col["kind"]], row[col["order_id"]], row[col["leaves_qty"]]
        flags = row[col["flags"]]
        if kind == EventKind.ACCEPTED:
            assert oid not in open_leaves
            open_leaves[oid] = leaves
        elif kind == EventKind.TRADE:
            assert open_leaves[oid] - row[col["quantity"]] == leaves
            open_leaves[oid] = leaves
            if flags & EventFlag.TAKER:
                maker = rows[i + 1]
                assert maker[col["kind"]] == EventKind.TRADE
                assert maker[col["flags"]] & EventFlag.MAKER
                assert maker[col["contra_order_id"]] == oid
                assert row[col["contra_order_id"]] == maker[col["order_id"]]
                assert (maker[col["price"]], maker[col["quantity"]]) == (
                    row[col["price"]],
                    row[col["quantity"]],
                )
                assert maker[col["side"]] != row[col["side"]]
                trades.append((row[col["symbol_id"]], row[col["side"]], row[col["price"]]))
        elif kind == EventKind.REPLACED:
            open_leaves[oid] = leaves
        if kind in (EventKind.TRADE, EventKind.CANCELLED) and flags & EventFlag.DONE:
            del open_leaves[oid]
    assert len(open_leaves) == engine.live_orders()
    assert all(v > 0 for v in open_leaves.values())

    seqs: dict[tuple[int, int], int] = defaultdict(int)
    depth: dict[tuple[int, int], dict[int, tuple[int, int]]] = defaultdict(dict)
    last_bbo: dict[int, tuple[int, int, int, int]] = {}
    prints = []
    for rec in md.tolist():
        kind, side, sym, seq, price, qty, ask, ask_qty, count, _ = rec
        seqs[sym, kind] += 1
        assert seq == seqs[sym, kind]
        if kind == MdKind.TRADE:
            prints.append((sym, side, price))
        elif kind == MdKind.L2_UPDATE:
            if count == 0:
                assert qty == 0
                depth[sym, side].pop(price)
            else:
                depth[sym, side][price] = (qty, count)
        else:
            last_bbo[sym] = (price, qty, ask, ask_qty)
    assert prints == trades
    for ins in workload.sample_instruments():
        sym = ins.symbol_id
        for side, best_first in ((Side.BUY, True), (Side.SELL, False)):
            levels = sorted(depth[sym, side].items(), reverse=best_first)
            rebuilt = [(p, q, n) for p, (q, n) in levels]
            assert engine.depth(sym, side, 10_000).tolist() == rebuilt
        assert tuple(engine.bbo(sym)) == last_bbo.get(sym, (0, 0, 0, 0))


def check_reference(engine: ReferenceEngine) -> None:
    """The reference model's containers agree with each other."""
    seen: set[int] = set()
    for book in engine._books.values():
        for side in (book.bids, book.asks):
            assert side.prices == sorted(side.levels)
            for price, level in side.levels.items():
                assert level.price == price and level.orders
                assert level.displayed == sum(o.visible for o in level.orders.values())
                for oid, o in level.orders.items():
                    assert o.order_id == oid and o.price == price
                    assert o.state == STATE_RESTING and 0 < o.visible <= o.leaves <= o.quantity
                    assert (o.side == Side.BUY) == side.is_bid
                    assert engine._orders[oid] is o
                    seen.add(oid)
        for oid, o in book.stops.items():
            assert o.state == STATE_PENDING_STOP and o.visible == 0
            assert engine._orders[oid] is o
            seen.add(oid)
        seqs = [o.seq for o in book.stops.values()]
        assert seqs == sorted(seqs)
        assert sorted(book._buy_stops + book._sell_stops) == sorted(
            (o.stop_price, o.seq, o.order_id) for o in book.stops.values()
        )
        assert not book.touched
    assert seen == set(engine._orders)
    gtd = {oid for _, _, oid in engine._gtd}
    assert {oid for oid, o in engine._orders.items() if o.tif == 5} <= gtd


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_reference_model_stays_consistent(seed: int) -> None:
    engine = fresh(ReferenceEngine)
    commands = workload.mixed_stream(4_000, seed)
    for start in range(0, len(commands), 50):
        engine.process(commands[start : start + 50])
        check_reference(engine)
    check_reference(ReferenceEngine.restore(engine.snapshot()))


def test_reference_submit_is_process_of_one_record() -> None:
    commands = workload.mixed_stream(300, 5)
    a, b = fresh(ReferenceEngine), fresh(ReferenceEngine)
    expected = run(a, commands, 300)
    outs = [b.submit(commands[i]) for i in range(len(commands))]
    assert join([o.events for o in outs], EVENT_DTYPE).tobytes() == expected[0].tobytes()
    assert join([o.md for o in outs], MD_DTYPE).tobytes() == expected[1].tobytes()
