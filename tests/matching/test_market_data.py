"""Market data (docs/matching.md "Market data"): trade prints when they happen, then at
the end of each command the changed L2 levels in first-touch order and the BBO if it
changed, symbol by symbol in first-touch order; sequence numbers per symbol and channel."""

from __future__ import annotations

from tests.matching.helpers import (
    ACME,
    BUY,
    SELL,
    TIF,
    Harness,
    bbo,
    buy,
    l2,
    md,
    printed,
    replaced,
    sell,
    status,
    stop,
)
from tradsys.matching import Instrument, Phase, StatusReason
from tradsys.matching.commands import cancel, clock_tick, control, mass_cancel, replace
from tradsys.wire import ControlCode

BETA = Instrument("BETA", 2, reference_price=50)


def test_new_resting_order_publishes_its_level_and_the_bbo(engine_cls: type) -> None:
    h = Harness(engine_cls)
    assert md(h.send(clock_tick(7))) == []
    assert md(h.send(sell(1, 5, 100))) == [l2(SELL, 100, 5, 1, 1, t=7), bbo(0, 0, 100, 5, 1, t=7)]
    assert md(h.send(buy(2, 3, 100, acct=2))) == [
        printed(BUY, 100, 3, 1, t=7),
        l2(SELL, 100, 2, 1, 2, t=7),
        bbo(0, 0, 100, 2, 2, t=7),
    ]


def test_sweep_publishes_levels_in_first_touch_order(engine_cls: type) -> None:
    h = Harness(engine_cls)
    out = h.send(sell(1, 2, 100), sell(2, 3, 101), sell(3, 4, 102), buy(4, 1, 98, acct=2))
    assert md(out) == [
        l2(SELL, 100, 2, 1, 1),
        bbo(0, 0, 100, 2, 1),
        l2(SELL, 101, 3, 1, 2),  # deeper levels: no BBO change
        l2(SELL, 102, 4, 1, 3),
        l2(BUY, 98, 1, 1, 4),
        bbo(98, 1, 100, 2, 2),
    ]
    assert md(h.send(buy(5, 6, 101, acct=2))) == [
        printed(BUY, 100, 2, 1),
        printed(BUY, 101, 3, 2),
        l2(SELL, 100, 0, 0, 5),
        l2(SELL, 101, 0, 0, 6),
        l2(BUY, 101, 1, 1, 7),
        bbo(101, 1, 102, 4, 3),
    ]


def test_level_touched_but_unchanged_publishes_nothing(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100, display_qty=2))
    # the peak is taken and refreshed: same displayed quantity, same count
    assert md(h.send(buy(2, 2, 100, acct=2))) == [printed(BUY, 100, 2, 1)]
    out = h.send(replace(1, 1, 1, 100, 10))
    assert [tuple(e)[:11] for e in out.events.tolist()] == [tuple(replaced(1, SELL, 100, 10, 8))]
    assert md(out) == []


def test_each_command_of_a_batch_flushes_its_own_changes(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 100))
    assert md(h.send(sell(2, 5, 100, display_qty=0, acct=2), cancel(1, 1, 1))) == [
        l2(SELL, 100, 10, 2, 2),
        bbo(0, 0, 100, 10, 2),
        l2(SELL, 100, 5, 1, 3),
        bbo(0, 0, 100, 5, 3),
    ]


def test_bbo_missing_side_is_zero(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 5, 99), sell(2, 5, 101))
    assert md(h.send(cancel(1, 1, 1))) == [l2(BUY, 99, 0, 0, 3), bbo(0, 0, 101, 5, 3)]
    assert md(h.send(cancel(2, 1, 1))) == [l2(SELL, 101, 0, 0, 4), bbo(0, 0, 0, 0, 4)]


def test_pending_stops_publish_nothing(engine_cls: type) -> None:
    h = Harness(engine_cls)
    assert md(h.send(stop(BUY, 1, 5, 105))) == []
    assert md(h.send(cancel(1, 1, 1))) == []


def test_sequence_numbers_are_per_symbol_and_channel(engine_cls: type) -> None:
    h = Harness(engine_cls, ACME, BETA)
    h.send(sell(1, 5, 100), sell(2, 5, 50, sym=2), sell(3, 5, 101))
    assert md(h.send(buy(4, 1, 50, acct=2, sym=2))) == [
        printed(BUY, 50, 1, 1, sym=2),
        l2(SELL, 50, 4, 1, 2, sym=2),
        bbo(0, 0, 50, 4, 2, sym=2),
    ]
    assert md(h.send(buy(5, 1, 100, acct=2))) == [
        printed(BUY, 100, 1, 1),
        l2(SELL, 100, 4, 1, 3),
        bbo(0, 0, 100, 4, 2),
    ]


def test_symbols_flush_in_first_touch_order(engine_cls: type) -> None:
    h = Harness(engine_cls, ACME, BETA)
    h.send(buy(1, 5, 49, sym=2), buy(2, 5, 99), sell(3, 5, 51, sym=2))
    assert md(h.send(mass_cancel(account_id=1))) == [
        l2(BUY, 49, 0, 0, 3, sym=2),
        l2(SELL, 51, 0, 0, 4, sym=2),
        bbo(0, 0, 0, 0, 3, sym=2),
        l2(BUY, 99, 0, 0, 2),
        bbo(0, 0, 0, 0, 2),
    ]


def test_a_symbol_is_touched_by_its_first_level_change(engine_cls: type) -> None:
    """Cancelling a pending stop touches no level, so symbol 1 (whose first level change
    comes after symbol 2's) flushes second."""
    h = Harness(engine_cls, ACME, BETA)
    h.send(stop(BUY, 1, 5, 105), buy(2, 5, 49, sym=2), buy(3, 5, 99))
    assert md(h.send(mass_cancel(account_id=1))) == [
        l2(BUY, 49, 0, 0, 2, sym=2),
        bbo(0, 0, 0, 0, 2, sym=2),
        l2(BUY, 99, 0, 0, 2),
        bbo(0, 0, 0, 0, 2),
    ]


def test_clock_tick_records_carry_the_new_time(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 5, 99, tif=TIF.GTD, expire_ns=30))
    assert md(h.send(clock_tick(40))) == [l2(BUY, 99, 0, 0, 2, t=40), bbo(0, 0, 0, 0, 2, t=40)]


def test_uncross_prints_the_later_orders_side(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(control(ControlCode.AUCTION_START, 1), sell(1, 5, 100), buy(2, 3, 101, acct=2))
    assert md(h.send(control(ControlCode.AUCTION_UNCROSS, 1))) == [
        printed(BUY, 100, 3, 1),
        status(Phase.CONTINUOUS, Phase.AUCTION, StatusReason.AUCTION_UNCROSS, 2),
        l2(BUY, 101, 0, 0, 3),
        l2(SELL, 100, 2, 1, 4),
        bbo(0, 0, 100, 2, 3),
    ]


def test_every_record_is_well_formed(engine_cls: type) -> None:
    """Unused fields and padding are zero (the records are compared byte for byte)."""
    h = Harness(engine_cls)
    out = h.send(sell(1, 5, 100), buy(2, 3, 100, acct=2))
    raw = out.md.tobytes()
    for i in range(len(out.md)):
        assert raw[i * 64 + 2 : i * 64 + 4] == b"\0\0"
        assert raw[i * 64 + 52 : i * 64 + 56] == b"\0\0\0\0"
    ev = out.events.tobytes()
    for i in range(len(out.events)):
        assert ev[i * 64 + 12 : i * 64 + 16] == b"\0\0\0\0"
