"""The canonical snapshot (native/book.h layout), restore and the queries
(docs/matching.md "Snapshot and digest")."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.matching.helpers import (
    ACME,
    BUY,
    SELL,
    TIF,
    Harness,
    buy,
    parse_snapshot,
    sell,
    stop,
    stop_limit,
)
from tests.matching.test_phases_auction import BRK
from tradsys.matching import Bbo, Instrument, Phase, snapshot_digest
from tradsys.matching.commands import batch, cancel, clock_tick, control, replace
from tradsys.matching.snapshot_layout import (
    INSTRUMENT_DTYPE,
    SNAP_HEADER_DTYPE,
    SNAP_ORDER_DTYPE,
    SNAP_SYMBOL_DTYPE,
    SNAP_SYMBOL_V1_DTYPE,
    SNAPSHOT_MAGIC,
    SNAPSHOT_VERSION,
)
from tradsys.wire import ControlCode, OrderType

BETA = Instrument("BETA", 2, tick_size=5, lot_size=10, min_qty=10, max_qty=900, band_bps=2000)


def scenario(engine_cls: type) -> Harness:
    """Two symbols and one breaker symbol, orders of every kind, a tripped breaker."""
    h = Harness(engine_cls, BETA, ACME, BRK)  # added out of order on purpose
    h.send(
        clock_tick(100),
        buy(1, 5, 99),
        buy(2, 10, 100, acct=2, display_qty=3),
        buy(3, 4, 100, acct=3, tif=TIF.GTD, expire_ns=500),
        sell(4, 6, 103, acct=2, tif=TIF.DAY, post_only=True),
        sell(5, 7, 102, stp_mode=1),
        stop(BUY, 6, 2, 104, acct=3),
        stop_limit(SELL, 7, 3, 97, 98, acct=2, tif=TIF.GTD, expire_ns=900),
        sell(8, 3, 100, acct=4),  # takes the iceberg's peak: it refreshes behind order 3
        buy(9, 20, 60, sym=2),
        sell(10, 1, 1100, sym=3),
        buy(11, 1, 1100, acct=2, sym=3),  # trips symbol 3 until 1100
    )
    return h


def test_empty_engine(engine_cls: type) -> None:
    e = engine_cls()
    snap = e.snapshot()
    header = np.frombuffer(snap, SNAP_HEADER_DTYPE)[0]
    assert len(snap) == 64
    assert int(header["magic"]) == SNAPSHOT_MAGIC == 0x3130504E53535354
    assert int(header["version"]) == SNAPSHOT_VERSION
    assert snap[8 + 4 :] == bytes(52)  # n_symbols 0, all counters 0, padding 0
    assert e.digest() == snapshot_digest(snap)
    assert e.live_orders() == 0


def test_layout_header_symbols_and_orders(engine_cls: type) -> None:
    h = scenario(engine_cls)
    snap = parse_snapshot(h.engine.snapshot())
    assert snap.header == {
        "magic": SNAPSHOT_MAGIC,
        "version": SNAPSHOT_VERSION,
        "n_symbols": 3,
        "clock_ns": 100,
        "max_order_id": 11,
        "last_exec_id": 13,  # 11 accepted, one fill (two trade events)
        "last_seq": 11,
        "total_orders": 10,
    }
    ids = [ins["symbol_id"] for ins, _, _ in snap.symbols]
    assert ids == [1, 2, 3]
    (ins1, st1, orders1), (ins2, st2, _), (ins3, st3, orders3) = snap.symbols
    assert ins1 == {
        "symbol_id": 1, "band_bps": 0, "breaker_bps": 0, "tick_size": 1, "lot_size": 1,
        "min_qty": 1, "max_qty": 0, "reference_price": 100, "breaker_halt_ns": 0,
    }  # fmt: skip
    assert ins2["max_qty"] == 900 and ins2["band_bps"] == 2000
    assert ins3["reference_price"] == 1000  # the configured value, not the static reference
    assert st1 == {
        "symbol_id": 1, "phase": Phase.CONTINUOUS, "static_reference": 100,
        "last_trade_price": 100, "reopen_ns": -1, "trade_seq": 1, "l2_seq": 5, "bbo_seq": 5,
        "bbo_bid_price": 100, "bbo_bid_quantity": 7, "bbo_ask_price": 102,
        "bbo_ask_quantity": 7, "n_orders": 7, "status_seq": 0,
    }  # fmt: skip
    assert (st2["phase"], st2["last_trade_price"], st2["n_orders"]) == (Phase.CONTINUOUS, 0, 1)
    assert (st3["phase"], st3["reopen_ns"], st3["last_trade_price"]) == (Phase.AUCTION, 1100, 0)
    assert (st2["status_seq"], st3["status_seq"]) == (0, 1)  # st3's one change: the trip
    assert (st3["bbo_bid_price"], st3["bbo_ask_price"]) == (1100, 1100)
    # bids best first in queue order (the refreshed iceberg went behind order 3), asks
    # best first, then the pending stops by seq
    assert [o["order_id"] for o in orders1] == [3, 2, 1, 5, 4, 6, 7]
    by_id = {o["order_id"]: o for o in orders1}
    assert by_id[2] == {
        "order_id": 2, "seq": 2, "price": 100, "quantity": 10, "leaves": 7, "visible": 3,
        "display_qty": 3, "stop_price": 0, "expire_ns": 0, "account_id": 2, "symbol_id": 1,
        "side": BUY, "order_type": OrderType.LIMIT, "tif": TIF.GTC, "flags": 0,
        "stp_mode": 0, "state": 1,
    }  # fmt: skip
    assert (by_id[3]["expire_ns"], by_id[3]["tif"], by_id[3]["visible"]) == (500, TIF.GTD, 4)
    assert (by_id[4]["flags"], by_id[4]["tif"]) == (1, TIF.DAY)
    assert by_id[5]["stp_mode"] == 1
    assert by_id[6] == {
        "order_id": 6, "seq": 6, "price": 0, "quantity": 2, "leaves": 2, "visible": 0,
        "display_qty": 0, "stop_price": 104, "expire_ns": 0, "account_id": 3, "symbol_id": 1,
        "side": BUY, "order_type": OrderType.STOP, "tif": TIF.GTC, "flags": 0, "stp_mode": 0,
        "state": 2,
    }  # fmt: skip
    assert (by_id[7]["price"], by_id[7]["stop_price"], by_id[7]["expire_ns"]) == (97, 98, 900)
    assert [o["order_id"] for o in orders3] == [11, 10]


def test_padding_is_zero(engine_cls: type) -> None:
    """Re-encoding the parsed fields into zeroed records gives the same bytes."""
    data = scenario(engine_cls).engine.snapshot()
    snap = parse_snapshot(data)

    def record(dtype: np.dtype[Any], values: dict[str, int]) -> bytes:
        rec = np.zeros(1, dtype)
        for name, value in values.items():
            rec[name] = value
        return rec.tobytes()

    parts = [record(SNAP_HEADER_DTYPE, snap.header)]
    for ins, state, orders in snap.symbols:
        parts += [record(INSTRUMENT_DTYPE, ins), record(SNAP_SYMBOL_DTYPE, state)]
        parts += [record(SNAP_ORDER_DTYPE, o) for o in orders]
    assert b"".join(parts) == data


def test_digest_is_blake2b_128_of_the_snapshot(engine_cls: type) -> None:
    h = scenario(engine_cls)
    assert h.engine.digest() == snapshot_digest(h.engine.snapshot())
    assert len(h.engine.digest()) == 32
    before = h.engine.digest()
    h.send(cancel(1, 1, 1))
    assert h.engine.digest() != before


def test_restore_gives_the_same_bytes_and_answers(engine_cls: type) -> None:
    h = scenario(engine_cls)
    snap = h.engine.snapshot()
    r = engine_cls.restore(snap)
    assert r.snapshot() == snap and r.digest() == h.engine.digest()
    assert r.live_orders() == h.engine.live_orders() == 10
    for sym in (1, 2, 3):
        assert r.phase(sym) == h.engine.phase(sym)
        assert r.bbo(sym) == h.engine.bbo(sym)
        for side in (BUY, SELL):
            assert r.depth(sym, side).tobytes() == h.engine.depth(sym, side).tobytes()


# Everything the state carries must survive: md sequence numbers and the last BBO sent,
# the clock, counters, GTD expiries, the breaker reopening, stops, iceberg positions.
CONTINUATION = batch(
    buy(20, 5, 102, acct=5),  # takes 5 of order 5
    buy(21, 3, 103, acct=5),  # the rest of order 5, then 1 of the post-only ask
    sell(22, 1, 104, acct=4),
    sell(23, 5, 105, acct=4),
    buy(24, 6, 104, acct=5),  # reaches 104: the buy stop fires and buys at 105
    clock_tick(500),  # the GTD order 3 expires
    replace(2, 1, 2, 100, 12),  # the iceberg grows: back of the queue
    buy(25, 2, 98),
    sell(26, 30, 98, acct=4, tif=TIF.DAY),  # sweeps down to 98: the stop-limit fires
    control(ControlCode.SESSION_CLOSE, 0),  # the DAY remainder goes
    clock_tick(1100),  # the stop-limit's GTD passes; symbol 3 reopens through the auction
    buy(27, 10, 50, sym=2),
)


def test_restore_continues_exactly_as_never_stopping(engine_cls: type) -> None:
    whole = scenario(engine_cls)
    restored_from = engine_cls.restore(whole.engine.snapshot())
    expected = whole.engine.process(CONTINUATION)
    got = restored_from.process(CONTINUATION)
    assert got.events.tobytes() == expected.events.tobytes()
    assert got.md.tobytes() == expected.md.tobytes()
    assert restored_from.snapshot() == whole.engine.snapshot()
    # the continuation exercised what it meant to
    kinds = expected.events["kind"].tolist()
    assert kinds.count(6) == 2 and expected.events["exec_id"][0] == 14
    assert len(expected.md) > 20


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b + bytes(96), id="trailing"),
        pytest.param(lambda b: b"\0" + b[1:], id="magic"),
        pytest.param(lambda b: b[:8] + b"\x03" + b[9:], id="version"),  # a newer one
        pytest.param(lambda b: b[:8] + b"\x01" + b[9:], id="v1_header_v2_records"),
        pytest.param(lambda b: b[:12] + b"\x04" + b[13:], id="n_symbols"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
def test_restore_refuses_a_bad_snapshot(engine_cls: type, mangle: Any) -> None:
    snap = scenario(engine_cls).engine.snapshot()
    with pytest.raises(ValueError, match="snapshot"):
        engine_cls.restore(mangle(snap))


def symbol_records(snap: bytes, record_size: int) -> list[tuple[int, int]]:
    """(offset, size of what follows) of each symbol record of a snapshot whose symbol
    records are ``record_size`` bytes: the walk an older or newer layout needs."""
    header = np.frombuffer(snap[: SNAP_HEADER_DTYPE.itemsize], SNAP_HEADER_DTYPE)[0]
    off, out = SNAP_HEADER_DTYPE.itemsize, []
    for _ in range(int(header["n_symbols"])):
        off += INSTRUMENT_DTYPE.itemsize
        n_orders = int(np.frombuffer(snap[off + 88 : off + 96], "<u8")[0])
        out.append((off, record_size))
        off += record_size + n_orders * SNAP_ORDER_DTYPE.itemsize
    return out


def as_version_1(snap: bytes) -> bytes:
    """The snapshot as version 1 wrote it: symbol records end before status_seq."""
    parts, at = [snap[:8], (1).to_bytes(4, "little")], 12
    for off, size in symbol_records(snap, SNAP_SYMBOL_DTYPE.itemsize):
        parts += [snap[at : off + SNAP_SYMBOL_V1_DTYPE.itemsize]]
        at = off + size
    return b"".join([*parts, snap[at:]])


def without_status_seqs(snap: bytes) -> bytes:
    out = bytearray(snap)
    for off, _ in symbol_records(snap, SNAP_SYMBOL_DTYPE.itemsize):
        out[off + 96 : off + 104] = bytes(8)
    return bytes(out)


def test_a_version_1_snapshot_restores_with_status_seqs_from_zero(engine_cls: type) -> None:
    """An upgrade must start on the snapshots an older version left: everything but the
    status channel's seqs (which version 1 did not have) comes back as it was."""
    h = scenario(engine_cls)
    snap = h.engine.snapshot()
    assert without_status_seqs(snap) != snap, "the scenario changes some symbol's status"
    r = engine_cls.restore(as_version_1(snap))
    assert r.snapshot() == without_status_seqs(snap)
    for sym in (1, 2, 3):
        assert r.phase(sym) == h.engine.phase(sym) and r.bbo(sym) == h.engine.bbo(sym)
    got, expected = r.process(CONTINUATION), h.engine.process(CONTINUATION)
    assert got.events.tobytes() == expected.events.tobytes()


def test_queries(engine_cls: type) -> None:
    h = scenario(engine_cls)
    e = h.engine
    assert e.depth(1, BUY).tolist() == [(100, 7, 2), (99, 5, 1)]
    assert e.depth(1, SELL, 1).tolist() == [(102, 7, 1)]
    assert e.depth(1, SELL, 0).tolist() == []
    assert e.bbo(1) == Bbo(100, 7, 102, 7)
    assert e.bbo(2) == Bbo(60, 20, 0, 0)
    assert e.phase(3) == Phase.AUCTION
    assert e.live_orders() == 10


@pytest.mark.parametrize("query", ["depth", "bbo", "phase"])
def test_unknown_symbol_queries_raise_key_error(engine_cls: type, query: str) -> None:
    e = Harness(engine_cls).engine
    args = (4242, BUY) if query == "depth" else (4242,)
    with pytest.raises(KeyError, match="4242"):
        getattr(e, query)(*args)


@pytest.mark.parametrize(
    "bad",
    [
        Instrument("", 1),
        Instrument("X", 0),
        Instrument("X", 2**32),
        Instrument("X", 1, tick_size=0),
        Instrument("X", 1, lot_size=-1),
        Instrument("X", 1, min_qty=5, max_qty=4),
        Instrument("X", 1, reference_price=-1),
        Instrument("X", 1, band_bps=1_000_001),
        Instrument("X", 1, breaker_halt_ns=-5),
    ],
)
def test_add_instrument_refuses_bad_configs(engine_cls: type, bad: Instrument) -> None:
    e = engine_cls()
    with pytest.raises(ValueError):
        e.add_instrument(bad)
    assert len(e.snapshot()) == 64


def test_add_instrument_refuses_a_duplicate(engine_cls: type) -> None:
    e = engine_cls()
    e.add_instrument(ACME)
    with pytest.raises(ValueError, match="1"):
        e.add_instrument(Instrument("OTHER", 1))
    assert parse_snapshot(e.snapshot()).header["n_symbols"] == 1


def test_process_takes_command_records_only(engine_cls: type) -> None:
    e = Harness(engine_cls).engine
    with pytest.raises(TypeError):
        e.process(np.zeros(3, SNAP_ORDER_DTYPE))
    with pytest.raises(ValueError):
        e.process(np.zeros((2, 2), buy(1, 1, 1).dtype))
    # np.concatenate packs the structured dtype (63-byte records): same fields, accepted
    packed = np.concatenate([buy(1, 5, 99), sell(2, 5, 101)])
    assert packed.dtype.itemsize != 64
    assert len(e.process(packed).events) == 2
    assert len(e.process(buy(3, 1, 98)[:0]).events) == 0
