"""Stop and stop-limit orders (docs/matching.md "Stops")."""

from __future__ import annotations

from tests.matching.helpers import (
    BUY,
    SELL,
    TIF,
    Harness,
    accepted,
    buy,
    cancelled,
    fill,
    parse_snapshot,
    replaced,
    sell,
    stop,
    stop_limit,
    triggered,
)
from tests.matching.test_phases_auction import BRK
from tradsys.matching import Phase
from tradsys.matching.commands import cancel, clock_tick, control, replace
from tradsys.wire import CancelReason, ControlCode, OrderType


def test_buy_stop_triggers_when_the_last_trade_reaches_its_price(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(stop(BUY, 1, 2, 101, acct=3), sell(2, 1, 100), sell(3, 5, 101))
    assert h.ev(buy(4, 1, 100, acct=2)) == [
        accepted(4, BUY, 100, 1, acct=2),
        *fill((4, BUY, 2), (2, SELL, 1), 100, 1, 0, 0),
    ]
    assert h.ev(buy(5, 1, 101, acct=2)) == [
        accepted(5, BUY, 101, 1, acct=2),
        *fill((5, BUY, 2), (3, SELL, 1), 101, 1, 0, 4),
        triggered(1, BUY, 0, 2, 2, acct=3),
        *fill((1, BUY, 3), (3, SELL, 1), 101, 2, 0, 2),
    ]
    assert h.engine.live_orders() == 1


def test_sell_stop_triggers_when_the_last_trade_falls_to_its_price(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(stop(SELL, 1, 2, 99, acct=3), buy(2, 1, 100), buy(3, 5, 99))
    assert len(h.ev(sell(4, 1, 100, acct=2))) == 3
    assert h.ev(sell(5, 1, 99, acct=2)) == [
        accepted(5, SELL, 99, 1, acct=2),
        *fill((5, SELL, 2), (3, BUY, 1), 99, 1, 0, 4),
        triggered(1, SELL, 0, 2, 2, acct=3),
        *fill((1, SELL, 3), (3, BUY, 1), 99, 2, 0, 2),
    ]


def test_no_trigger_before_the_first_trade(engine_cls: type) -> None:
    h = Harness(engine_cls)
    assert h.ev(stop(SELL, 1, 2, 10)) == [accepted(1, SELL, 0, 2)]
    assert h.ev(buy(2, 1, 5, acct=2)) == [accepted(2, BUY, 5, 1, acct=2)]
    assert h.engine.live_orders() == 2
    assert h.book() == ([(5, 1, 1)], [])


def test_stop_already_triggered_fires_in_its_own_command(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 1, 100), buy(2, 1, 100, acct=2), sell(3, 5, 102))
    assert h.ev(stop(BUY, 4, 2, 100, acct=3)) == [
        accepted(4, BUY, 0, 2, acct=3),
        triggered(4, BUY, 0, 2, 2, acct=3),
        *fill((4, BUY, 3), (3, SELL, 1), 102, 2, 0, 3),
    ]


def test_lowest_seq_fires_first_whatever_the_stop_price(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(
        stop(BUY, 1, 1, 101, acct=3),
        stop(BUY, 2, 1, 100, acct=4),
        sell(3, 1, 101),
        sell(4, 10, 102),
    )
    assert h.ev(buy(5, 1, 101, acct=2)) == [
        accepted(5, BUY, 101, 1, acct=2),
        *fill((5, BUY, 2), (3, SELL, 1), 101, 1, 0, 0),
        triggered(1, BUY, 0, 1, 1, acct=3),
        *fill((1, BUY, 3), (4, SELL, 1), 102, 1, 0, 9),
        triggered(2, BUY, 0, 1, 1, acct=4),
        *fill((2, BUY, 4), (4, SELL, 1), 102, 1, 0, 8),
    ]


def test_a_replaced_stop_keeps_its_seq(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(
        stop(BUY, 1, 1, 101, acct=3),
        stop(BUY, 2, 1, 100, acct=4),
        sell(3, 1, 101),
        sell(4, 10, 102),
    )
    assert h.ev(replace(1, 1, 3, 0, 2)) == [replaced(1, BUY, 0, 2, 2, acct=3)]
    out = h.ev(buy(5, 1, 101, acct=2))
    assert [e.order_id for e in out if e.kind == 6] == [1, 2]


def test_stops_cascade(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(
        buy(1, 1, 100),
        buy(2, 1, 99),
        buy(3, 5, 98),
        stop(SELL, 4, 1, 100, acct=3),
        stop(SELL, 5, 1, 99, acct=4),
    )
    assert h.ev(sell(6, 1, 100, acct=2)) == [
        accepted(6, SELL, 100, 1, acct=2),
        *fill((6, SELL, 2), (1, BUY, 1), 100, 1, 0, 0),
        triggered(4, SELL, 0, 1, 1, acct=3),
        *fill((4, SELL, 3), (2, BUY, 1), 99, 1, 0, 0),
        triggered(5, SELL, 0, 1, 1, acct=4),
        *fill((5, SELL, 4), (3, BUY, 1), 98, 1, 0, 4),
    ]


def test_stop_executes_as_market_ioc(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(stop(BUY, 1, 5, 100, acct=3), sell(2, 1, 100), sell(3, 2, 101))
    assert h.ev(buy(4, 1, 100, acct=2))[3:] == [
        triggered(1, BUY, 0, 5, 5, acct=3),
        *fill((1, BUY, 3), (3, SELL, 1), 101, 2, 3, 0),
        cancelled(1, BUY, 0, 3, CancelReason.MARKET_REMAINDER, acct=3),
    ]
    assert h.engine.live_orders() == 0


def test_stop_limit_executes_as_a_limit_and_rests(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(
        stop_limit(BUY, 1, 5, 101, 100, acct=3, tif=TIF.GTD, expire_ns=50),
        sell(2, 1, 100),
        sell(3, 2, 101),
        sell(4, 2, 102),
    )
    assert h.ev(buy(5, 1, 100, acct=2))[3:] == [
        triggered(1, BUY, 101, 5, 5, acct=3),
        *fill((1, BUY, 3), (3, SELL, 1), 101, 2, 3, 0),
    ]
    assert h.book() == ([(101, 3, 1)], [(102, 2, 1)])
    # it rests as a stop-limit order that has triggered: type and stop price are kept
    (_, _, orders) = parse_snapshot(h.engine.snapshot()).symbols[0]
    assert (orders[0]["order_id"], orders[0]["order_type"], orders[0]["state"]) == (
        1,
        OrderType.STOP_LIMIT,
        1,
    )
    assert (orders[0]["stop_price"], orders[0]["expire_ns"]) == (100, 50)
    # its tif still applies
    assert h.ev(clock_tick(50)) == [
        cancelled(1, BUY, 101, 3, CancelReason.EXPIRED, acct=3),
    ]


def test_triggered_stop_applies_its_own_stp_mode(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(stop(BUY, 1, 3, 100), sell(2, 1, 100, acct=2), sell(3, 5, 101))
    assert h.ev(buy(4, 1, 100, acct=3))[3:] == [
        triggered(1, BUY, 0, 3, 3),
        cancelled(1, BUY, 0, 3, CancelReason.SELF_TRADE),
    ]


def test_pending_stops_cancel_and_expire(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(
        stop(BUY, 1, 1, 105, tif=TIF.GTD, expire_ns=50),
        stop_limit(SELL, 2, 1, 90, 95, tif=TIF.GTD, expire_ns=40),
        stop(SELL, 3, 1, 95),
    )
    assert h.ev(cancel(3, 1, 1)) == [cancelled(3, SELL, 0, 1, CancelReason.USER)]
    assert h.ev(clock_tick(100)) == [
        cancelled(2, SELL, 90, 1, CancelReason.EXPIRED),
        cancelled(1, BUY, 0, 1, CancelReason.EXPIRED),
    ]
    assert h.engine.live_orders() == 0


def breaker_stops(engine_cls: type) -> Harness:
    """Two buy stops at 1000; the first trade at 1000 fires the first, whose market
    order meets 1100 and trips the breaker: the second must wait."""
    h = Harness(engine_cls, BRK)
    h.send(
        stop(BUY, 1, 1, 1000, acct=3, sym=3),
        stop(BUY, 2, 1, 1000, acct=4, sym=3),
        sell(3, 1, 1000, sym=3),
        sell(4, 5, 1100, sym=3),
    )
    assert h.ev(buy(5, 1, 1000, acct=2, sym=3)) == [
        accepted(5, BUY, 1000, 1, acct=2, sym=3),
        *fill((5, BUY, 2), (3, SELL, 1), 1000, 1, 0, 0, sym=3),
        triggered(1, BUY, 0, 1, 1, acct=3, sym=3),
        cancelled(1, BUY, 0, 1, CancelReason.HALT, acct=3, sym=3),
    ]
    assert h.engine.phase(3) == Phase.AUCTION
    return h


def test_stops_wait_for_the_auction_to_end(engine_cls: type) -> None:
    h = breaker_stops(engine_cls)
    h.send(sell(6, 1, 1010, sym=3))  # rests in the call phase
    assert h.ev(clock_tick(1000)) == [
        triggered(2, BUY, 0, 1, 1, acct=4, sym=3),
        *fill((2, BUY, 4), (6, SELL, 1), 1010, 1, 0, 0, sym=3),
    ]
    assert h.engine.phase(3) == Phase.CONTINUOUS


def test_resume_reopens_through_an_uncross_that_fires_waiting_stops(
    engine_cls: type,
) -> None:
    """Leaving HALTED goes through an uncross, which checks the stops: the stop left
    waiting by the breaker fires at RESUME, meets 1100 again and trips the breaker."""
    h = breaker_stops(engine_cls)
    assert h.ev(control(ControlCode.HALT, 3)) == []
    assert h.ev(control(ControlCode.RESUME, 3)) == [
        triggered(2, BUY, 0, 1, 1, acct=4, sym=3),
        cancelled(2, BUY, 0, 1, CancelReason.HALT, acct=4, sym=3),
    ]
    assert h.engine.phase(3) == Phase.AUCTION
