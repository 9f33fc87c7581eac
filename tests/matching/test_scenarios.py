"""Continuous trading, rule by rule (docs/matching.md "Processing a new order",
"Matching", "FOK"): every expectation is the exact event stream."""

from __future__ import annotations

from tests.matching.helpers import (
    BUY,
    SELL,
    STP,
    TIF,
    Harness,
    accepted,
    buy,
    cancelled,
    fill,
    market,
    rejected,
    sell,
)
from tradsys.matching.commands import cancel, clock_tick, control
from tradsys.wire import CancelReason, ControlCode, RejectReason

# (order id, side, account) of the orders the scenarios use
S1, S2, S3 = (1, SELL, 1), (2, SELL, 1), (3, SELL, 3)


def test_fill_is_at_the_makers_price(engine_cls: type) -> None:
    h = Harness(engine_cls)
    assert h.ev(sell(1, 10, 100)) == [accepted(1, SELL, 100, 10)]
    assert h.ev(buy(2, 4, 105, acct=2)) == [
        accepted(2, BUY, 105, 4, acct=2),
        *fill((2, BUY, 2), S1, 100, 4, 0, 6),
    ]
    assert h.book() == ([], [(100, 6, 1)])


def test_price_then_time_priority(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 101), sell(2, 5, 100), sell(3, 5, 100, acct=3))
    assert h.ev(buy(4, 12, 101, acct=2)) == [
        accepted(4, BUY, 101, 12, acct=2),
        *fill((4, BUY, 2), S2, 100, 5, 7, 0),  # best price first
        *fill((4, BUY, 2), S3, 100, 5, 2, 0),  # then queue order within the level
        *fill((4, BUY, 2), S1, 101, 2, 0, 3),
    ]
    assert h.book() == ([], [(101, 3, 1)])


def test_sell_taker_meets_best_bid_first(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 5, 99), buy(2, 5, 100), buy(3, 5, 98))
    assert h.ev(sell(4, 7, 99, acct=2)) == [
        accepted(4, SELL, 99, 7, acct=2),
        *fill((4, SELL, 2), (2, BUY, 1), 100, 5, 2, 0),
        *fill((4, SELL, 2), (1, BUY, 1), 99, 2, 0, 3),
    ]
    assert h.book() == ([(99, 3, 1), (98, 5, 1)], [])


def test_limit_stops_at_its_price_and_rests_the_remainder(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 4, 100), sell(2, 4, 102))
    assert h.ev(buy(3, 10, 101, acct=2)) == [
        accepted(3, BUY, 101, 10, acct=2),
        *fill((3, BUY, 2), S1, 100, 4, 6, 0),
    ]
    assert h.book() == ([(101, 6, 1)], [(102, 4, 1)])
    assert h.engine.live_orders() == 2


def test_limit_that_does_not_cross_just_rests(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 4, 101))
    assert h.ev(buy(2, 3, 100)) == [accepted(2, BUY, 100, 3)]
    assert h.book() == ([(100, 3, 1)], [(101, 4, 1)])


def test_market_ioc_sweeps_and_cancels_its_remainder(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 100), sell(2, 5, 101))
    assert h.ev(market(BUY, 3, 12, acct=2)) == [
        accepted(3, BUY, 0, 12, acct=2),
        *fill((3, BUY, 2), S1, 100, 5, 7, 0),
        *fill((3, BUY, 2), S2, 101, 5, 2, 0),
        cancelled(3, BUY, 0, 2, CancelReason.MARKET_REMAINDER, acct=2),
    ]
    assert h.book() == ([], [])
    assert h.engine.live_orders() == 0


def test_market_into_an_empty_book(engine_cls: type) -> None:
    h = Harness(engine_cls)
    assert h.ev(market(SELL, 1, 5)) == [
        accepted(1, SELL, 0, 5),
        cancelled(1, SELL, 0, 5, CancelReason.MARKET_REMAINDER),
    ]


def test_market_fully_filled_has_no_cancel(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 5, 100))
    assert h.ev(market(SELL, 2, 5, acct=2)) == [
        accepted(2, SELL, 0, 5, acct=2),
        *fill((2, SELL, 2), (1, BUY, 1), 100, 5, 0, 0),
    ]


def test_ioc_limit_cancels_its_remainder(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 3, 100), sell(2, 3, 102))
    assert h.ev(buy(3, 10, 101, acct=2, tif=TIF.IOC)) == [
        accepted(3, BUY, 101, 10, acct=2),
        *fill((3, BUY, 2), S1, 100, 3, 7, 0),
        cancelled(3, BUY, 101, 7, CancelReason.IOC_REMAINDER, acct=2),
    ]
    assert h.book() == ([], [(102, 3, 1)])


def test_ioc_that_cannot_trade_is_cancelled_whole(engine_cls: type) -> None:
    h = Harness(engine_cls)
    assert h.ev(sell(1, 3, 100, tif=TIF.IOC)) == [
        accepted(1, SELL, 100, 3),
        cancelled(1, SELL, 100, 3, CancelReason.IOC_REMAINDER),
    ]
    assert h.book() == ([], [])


def test_fok_that_can_fill_fills_completely(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 3, 100), sell(2, 4, 101))
    assert h.ev(buy(3, 7, 101, acct=2, tif=TIF.FOK)) == [
        accepted(3, BUY, 101, 7, acct=2),
        *fill((3, BUY, 2), S1, 100, 3, 4, 0),
        *fill((3, BUY, 2), S2, 101, 4, 0, 0),
    ]


def test_fok_that_cannot_fill_is_rejected_and_changes_nothing(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 3, 100), sell(2, 4, 102))
    before = h.state()
    # 101 limit: only the 3 lots at 100 are acceptable
    assert h.ev(buy(3, 7, 101, acct=2, tif=TIF.FOK)) == [
        rejected(3, RejectReason.FOK_UNFILLABLE, side=BUY, price=101, qty=7, acct=2)
    ]
    assert h.state() == before
    # the id was not accepted, so it may be sent again
    assert h.ev(buy(3, 3, 101, acct=2, tif=TIF.FOK))[0] == accepted(3, BUY, 101, 3, acct=2)


def test_market_fok(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 3, 100), sell(2, 4, 150))
    assert h.ev(market(BUY, 3, 8, acct=2, tif=TIF.FOK)) == [
        rejected(3, RejectReason.FOK_UNFILLABLE, side=BUY, qty=8, acct=2)
    ]
    assert h.ev(market(BUY, 4, 7, acct=2, tif=TIF.FOK)) == [
        accepted(4, BUY, 0, 7, acct=2),
        *fill((4, BUY, 2), S1, 100, 3, 4, 0),
        *fill((4, BUY, 2), S2, 150, 4, 0, 0),
    ]


def test_fok_counts_hidden_iceberg_quantity(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100, display_qty=2))
    assert h.book() == ([], [(100, 2, 1)])
    out = h.ev(buy(2, 9, 100, acct=2, tif=TIF.FOK))
    assert out[0] == accepted(2, BUY, 100, 9, acct=2)
    assert [e.quantity for e in out[1::2]] == [2, 2, 2, 2, 1]
    assert out[-1].leaves_qty == 1 and out[-2].leaves_qty == 0


def test_fok_walk_skips_own_orders_under_cancel_resting(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 100, acct=2), sell(2, 5, 100), sell(3, 5, 101, acct=3))
    # own order (2) adds nothing, but the walk goes on past it
    assert h.ev(buy(4, 10, 101, acct=1, tif=TIF.FOK, stp_mode=STP.CANCEL_RESTING)) == [
        accepted(4, BUY, 101, 10),
        *fill((4, BUY, 1), (1, SELL, 2), 100, 5, 5, 0),
        cancelled(2, SELL, 100, 5, CancelReason.SELF_TRADE),
        *fill((4, BUY, 1), S3, 101, 5, 0, 0),
    ]


def test_fok_walk_ends_at_own_order_under_cancel_incoming(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 100, acct=2), sell(2, 5, 100), sell(3, 5, 101, acct=3))
    for oid, mode in ((4, STP.NONE), (5, STP.CANCEL_INCOMING), (6, STP.CANCEL_BOTH)):
        assert h.ev(buy(oid, 10, 101, tif=TIF.FOK, stp_mode=mode)) == [
            rejected(oid, RejectReason.FOK_UNFILLABLE, side=BUY, price=101, qty=10)
        ]
    # 5 lots are reachable before the own order
    assert h.ev(buy(7, 5, 101, tif=TIF.FOK)) == [
        accepted(7, BUY, 101, 5),
        *fill((7, BUY, 1), (1, SELL, 2), 100, 5, 0, 0),
    ]


def test_fok_does_not_count_an_iceberg_hidden_behind_an_own_order(engine_cls: type) -> None:
    h = Harness(engine_cls)
    # the iceberg's hidden 90 comes back only behind account 2's own order at 100, where
    # the default self-trade rule would cancel the FOK's remainder after 10 lots
    h.send(sell(1, 100, 100, acct=1, display_qty=10), sell(2, 10, 100, acct=2))
    assert h.ev(buy(3, 50, 100, acct=2, tif=TIF.FOK)) == [
        rejected(3, RejectReason.FOK_UNFILLABLE, side=BUY, price=100, qty=50, acct=2)
    ]
    assert h.book() == ([], [(100, 20, 2)])
    # what the visible parts before the own order hold is still fillable
    assert h.ev(buy(4, 10, 100, acct=2, tif=TIF.FOK)) == [
        accepted(4, BUY, 100, 10, acct=2),
        *fill((4, BUY, 2), (1, SELL, 1), 100, 10, 0, 90),
    ]


def test_post_only_rests_when_it_would_not_take(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 101))
    assert h.ev(buy(2, 5, 100, post_only=True)) == [accepted(2, BUY, 100, 5)]
    assert h.book() == ([(100, 5, 1)], [(101, 5, 1)])


def test_post_only_that_would_take_is_rejected(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 101), buy(2, 5, 99))
    before = h.state()
    assert h.ev(buy(3, 5, 101, post_only=True, acct=2)) == [
        rejected(3, RejectReason.POST_ONLY_WOULD_TAKE, side=BUY, price=101, qty=5, acct=2)
    ]
    assert h.ev(sell(4, 5, 99, post_only=True, acct=2)) == [
        rejected(4, RejectReason.POST_ONLY_WOULD_TAKE, side=SELL, price=99, qty=5, acct=2)
    ]
    assert h.state() == before


def test_iceberg_shows_its_peak_and_refreshes_at_the_back(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100, display_qty=3), sell(2, 2, 100, acct=3))
    assert h.book() == ([], [(100, 5, 2)])
    assert h.ev(buy(3, 7, 100, acct=2)) == [
        accepted(3, BUY, 100, 7, acct=2),
        *fill((3, BUY, 2), S1, 100, 3, 4, 7),  # the peak; it refreshes behind order 2
        *fill((3, BUY, 2), (2, SELL, 3), 100, 2, 2, 0),
        *fill((3, BUY, 2), S1, 100, 2, 0, 5),  # met again at the same level
    ]
    assert h.book() == ([], [(100, 1, 1)])


def test_iceberg_alone_is_met_again_and_again(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 7, 100, display_qty=2))
    assert h.ev(sell(2, 6, 100, acct=2)) == [
        accepted(2, SELL, 100, 6, acct=2),
        *fill((2, SELL, 2), (1, BUY, 1), 100, 2, 4, 5),
        *fill((2, SELL, 2), (1, BUY, 1), 100, 2, 2, 3),
        *fill((2, SELL, 2), (1, BUY, 1), 100, 2, 0, 1),
    ]
    assert h.book() == ([(100, 1, 1)], [])


def test_iceberg_taker_uses_its_whole_quantity_then_rests_its_peak(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 4, 100))
    assert h.ev(buy(2, 10, 100, acct=2, display_qty=3)) == [
        accepted(2, BUY, 100, 10, acct=2),
        *fill((2, BUY, 2), S1, 100, 4, 6, 0),
    ]
    assert h.book() == ([(100, 3, 1)], [])


def test_gtc_and_day_rest_until_the_session_closes(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 5, 100, tif=TIF.GTC), buy(2, 5, 99, tif=TIF.DAY), buy(3, 5, 98, tif=TIF.DAY))
    assert h.ev(control(ControlCode.SESSION_CLOSE, 1)) == [
        cancelled(2, BUY, 99, 5, CancelReason.EXPIRED),
        cancelled(3, BUY, 98, 5, CancelReason.EXPIRED),
    ]
    assert h.book() == ([(100, 5, 1)], [])


def test_gtd_expires_at_its_time_in_expiry_then_seq_order(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(
        buy(1, 5, 100, tif=TIF.GTD, expire_ns=50),
        buy(2, 5, 99, tif=TIF.GTD, expire_ns=30),
        buy(3, 5, 98, tif=TIF.GTD, expire_ns=50),
        buy(4, 5, 97),
    )
    assert h.ev(clock_tick(29)) == []
    assert h.ev(clock_tick(30)) == [cancelled(2, BUY, 99, 5, CancelReason.EXPIRED)]
    assert h.ev(clock_tick(60)) == [
        cancelled(1, BUY, 100, 5, CancelReason.EXPIRED),
        cancelled(3, BUY, 98, 5, CancelReason.EXPIRED),
    ]
    assert h.book() == ([(97, 5, 1)], [])


def test_gtd_must_lie_in_the_future(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(clock_tick(100))
    assert h.ev(buy(1, 5, 100, tif=TIF.GTD, expire_ns=100)) == [
        rejected(1, RejectReason.INVALID_TIF, side=BUY, price=100, qty=5)
    ]
    assert h.ev(buy(1, 5, 100, tif=TIF.GTD, expire_ns=101)) == [accepted(1, BUY, 100, 5)]


def test_gtd_order_that_traded_away_is_not_expired_again(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 5, 100, tif=TIF.GTD, expire_ns=10), sell(2, 5, 100, acct=2))
    assert h.ev(clock_tick(20)) == []


def test_partially_filled_gtd_expires_with_its_leaves(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 5, 100, tif=TIF.GTD, expire_ns=10), sell(2, 2, 100, acct=2))
    assert h.ev(clock_tick(10)) == [cancelled(1, BUY, 100, 3, CancelReason.EXPIRED)]


def test_time_in_force_other_than_gtd_ignores_time_ns(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(clock_tick(100))
    assert h.ev(buy(1, 5, 100, expire_ns=5)) == [accepted(1, BUY, 100, 5)]
    assert h.ev(clock_tick(1000)) == []


# ---- self-trade prevention -------------------------------------------------------------


def _stp_book(h: Harness) -> None:
    """Asks: 2 lots of account 2, then 3 of account 1 (own), then 4 of account 3."""
    h.send(sell(1, 2, 100, acct=2), sell(2, 3, 100, acct=1), sell(3, 4, 100, acct=3))


def test_stp_cancel_resting_cancels_the_own_order_and_goes_on(engine_cls: type) -> None:
    h = Harness(engine_cls)
    _stp_book(h)
    assert h.ev(buy(4, 5, 100, stp_mode=STP.CANCEL_RESTING)) == [
        accepted(4, BUY, 100, 5),
        *fill((4, BUY, 1), (1, SELL, 2), 100, 2, 3, 0),
        cancelled(2, SELL, 100, 3, CancelReason.SELF_TRADE),
        *fill((4, BUY, 1), (3, SELL, 3), 100, 3, 0, 1),
    ]
    assert h.book() == ([], [(100, 1, 1)])


def test_stp_cancel_incoming_stops_the_incoming_order(engine_cls: type) -> None:
    h = Harness(engine_cls)
    _stp_book(h)
    assert h.ev(buy(4, 5, 100, stp_mode=STP.CANCEL_INCOMING)) == [
        accepted(4, BUY, 100, 5),
        *fill((4, BUY, 1), (1, SELL, 2), 100, 2, 3, 0),
        cancelled(4, BUY, 100, 3, CancelReason.SELF_TRADE),
    ]
    assert h.book() == ([], [(100, 7, 2)])


def test_stp_default_acts_as_cancel_incoming(engine_cls: type) -> None:
    h = Harness(engine_cls)
    _stp_book(h)
    assert h.ev(buy(4, 5, 100)) == [
        accepted(4, BUY, 100, 5),
        *fill((4, BUY, 1), (1, SELL, 2), 100, 2, 3, 0),
        cancelled(4, BUY, 100, 3, CancelReason.SELF_TRADE),
    ]


def test_stp_cancel_both_cancels_resting_then_incoming(engine_cls: type) -> None:
    h = Harness(engine_cls)
    _stp_book(h)
    assert h.ev(buy(4, 5, 100, stp_mode=STP.CANCEL_BOTH)) == [
        accepted(4, BUY, 100, 5),
        *fill((4, BUY, 1), (1, SELL, 2), 100, 2, 3, 0),
        cancelled(2, SELL, 100, 3, CancelReason.SELF_TRADE),
        cancelled(4, BUY, 100, 3, CancelReason.SELF_TRADE),
    ]
    assert h.book() == ([], [(100, 4, 1)])


def test_stp_follows_the_incoming_orders_mode_not_the_resting_one(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 3, 100, stp_mode=STP.CANCEL_INCOMING))
    assert h.ev(buy(2, 3, 100, stp_mode=STP.CANCEL_RESTING)) == [
        accepted(2, BUY, 100, 3),
        cancelled(1, SELL, 100, 3, CancelReason.SELF_TRADE),
    ]
    assert h.book() == ([(100, 3, 1)], [])


def test_stp_market_order(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 3, 100))
    assert h.ev(market(BUY, 2, 5)) == [
        accepted(2, BUY, 0, 5),
        cancelled(2, BUY, 0, 5, CancelReason.SELF_TRADE),
    ]


# ---- ids and counters ----------------------------------------------------------------


def test_order_ids_must_keep_rising(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(10, 1, 90))
    for oid in (10, 9, 0):
        assert h.ev(buy(oid, 1, 90)) == [
            rejected(oid, RejectReason.DUPLICATE_ORDER_ID, side=BUY, price=90, qty=1)
        ]
    h.send(cancel(10, 1, 1))
    # a cancelled order's id stays used
    assert h.ev(buy(10, 1, 90))[0].reason == RejectReason.DUPLICATE_ORDER_ID
    assert h.ev(buy(11, 1, 90)) == [accepted(11, BUY, 90, 1)]


def test_exec_ids_rise_by_one_per_event_of_any_kind(engine_cls: type) -> None:
    h = Harness(engine_cls)
    out = h.send(sell(1, 5, 100), buy(2, 9, 100, acct=2, tif=TIF.IOC), buy(2, 1, 1))
    # accepted, accepted, trade, trade, cancelled (IOC), rejected (duplicate)
    assert out.events["exec_id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert h.send(buy(3, 1, 1)).events["exec_id"].tolist() == [7]
    assert h.last_exec_id() == 7
