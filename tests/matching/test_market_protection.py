"""Market-type orders with a protection price (docs/matching.md rule 8, "Matching").

A MARKET or STOP order's price is a bound, not a price it rests at: it trades only at
prices at or better than it, and the remainder is cancelled as for any market order. The
gateway puts the account's price-collar edge there, so that a market order on a thin
book cannot walk to any price (README, "Pre-trade risk").
"""

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
    rejected,
    replaced,
    sell,
    triggered,
)
from tests.matching.test_scenarios import S1, S2
from tests.matching.test_validation import LOTS
from tradsys.matching.commands import Commands, new_order, replace
from tradsys.wire import CancelReason, OrderType, RejectReason, Side, TimeInForce


def market(
    side: int, oid: int, qty: int, price: int, acct: int = 1, sym: int = 1, tif: int = TIF.IOC
) -> Commands:
    """A MARKET order with protection price ``price``."""
    return new_order(oid, sym, acct, Side(side), qty, price, OrderType.MARKET, tif=TimeInForce(tif))


def stop(side: int, oid: int, qty: int, stop_price: int, price: int, acct: int = 1) -> Commands:
    """A STOP order with protection price ``price``."""
    return new_order(oid, 1, acct, Side(side), qty, price, OrderType.STOP, stop_price=stop_price)


def test_protected_market_buy_stops_at_its_bound(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 100), sell(2, 5, 101), sell(3, 5, 110))
    assert h.ev(market(BUY, 4, 15, 105, acct=2)) == [
        accepted(4, BUY, 105, 15, acct=2),
        *fill((4, BUY, 2), S1, 100, 5, 10, 0),
        *fill((4, BUY, 2), S2, 101, 5, 5, 0),
        cancelled(4, BUY, 105, 5, CancelReason.MARKET_REMAINDER, acct=2),
    ]
    assert h.book() == ([], [(110, 5, 1)])


def test_protected_market_sell_stops_at_its_bound(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 5, 100), buy(2, 5, 90))
    assert h.ev(market(SELL, 3, 10, 95, acct=2)) == [
        accepted(3, SELL, 95, 10, acct=2),
        *fill((3, SELL, 2), (1, BUY, 1), 100, 5, 5, 0),
        cancelled(3, SELL, 95, 5, CancelReason.MARKET_REMAINDER, acct=2),
    ]
    assert h.book() == ([(90, 5, 1)], [])


def test_a_protection_price_may_sit_between_ticks(engine_cls: type) -> None:
    h = Harness(engine_cls, LOTS)
    h.send(sell(1, 20, 1000, sym=2))
    assert h.ev(market(BUY, 3, 20, 1003, acct=2, sym=2)) == [
        accepted(3, BUY, 1003, 20, acct=2, sym=2),
        *fill((3, BUY, 2), S1, 1000, 20, 0, 0, sym=2),
    ]


def test_protected_market_fok_counts_only_what_is_inside_its_bound(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 100), sell(2, 5, 120))
    before = h.state()
    assert h.ev(market(BUY, 3, 10, 110, acct=2, tif=TIF.FOK)) == [
        rejected(3, RejectReason.FOK_UNFILLABLE, side=BUY, price=110, qty=10, acct=2),
    ]
    assert h.state() == before
    assert (
        h.ev(market(BUY, 4, 10, 120, acct=2, tif=TIF.FOK))[-1]
        == fill((4, BUY, 2), (2, SELL, 1), 120, 5, 0, 0)[-1]
    )


def test_protected_stop_trades_only_inside_its_bound_once_triggered(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(stop(BUY, 1, 10, 101, 103, acct=3), sell(2, 1, 101), sell(3, 5, 102))
    h.send(sell(4, 5, 104))
    assert h.ev(buy(5, 1, 101, acct=2)) == [
        accepted(5, BUY, 101, 1, acct=2),
        *fill((5, BUY, 2), (2, SELL, 1), 101, 1, 0, 0),
        triggered(1, BUY, 103, 10, 10, acct=3),
        *fill((1, BUY, 3), (3, SELL, 1), 102, 5, 5, 0),
        cancelled(1, BUY, 103, 5, CancelReason.MARKET_REMAINDER, acct=3),
    ]
    assert h.book() == ([], [(104, 5, 1)])


def test_replacing_a_stop_with_price_0_keeps_its_protection(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(stop(BUY, 1, 10, 150, 155))
    assert h.ev(replace(1, 1, 1, 0, 20)) == [replaced(1, BUY, 155, 20, 20)]
    assert h.ev(replace(1, 1, 1, 160, 20)) == [replaced(1, BUY, 160, 20, 20)]
