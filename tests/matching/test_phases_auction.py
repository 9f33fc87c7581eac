"""Phases and controls, the auction uncross and the volatility breaker
(docs/matching.md "Phases and controls", "Uncross", "Matching: Breaker")."""

from __future__ import annotations

import pytest

from tests.matching.helpers import (
    ACME,
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
    parse_snapshot,
    rejected,
    sell,
    stop,
    triggered,
)
from tradsys.matching import Instrument, Phase
from tradsys.matching.commands import clock_tick, control
from tradsys.wire import CancelReason, ControlCode, RejectReason

CTL = ControlCode
SELF = CancelReason.SELF_TRADE

BRK = Instrument(
    "BRK", 3, reference_price=1000, breaker_bps=500, breaker_halt_ns=1000
)  # fmt: skip
"""Symbol 3: a ±5% breaker around the dynamic reference, 1000 ns call phase."""


def phases(h: Harness, *symbols: int) -> list[Phase]:
    return [h.engine.phase(s) for s in symbols]


def static_reference(h: Harness, sym: int) -> int:
    for _, state, _ in parse_snapshot(h.engine.snapshot()).symbols:
        if state["symbol_id"] == sym:
            return state["static_reference"]
    raise KeyError(sym)


def reopen_ns(h: Harness, sym: int) -> int:
    for _, state, _ in parse_snapshot(h.engine.snapshot()).symbols:
        if state["symbol_id"] == sym:
            return state["reopen_ns"]
    raise KeyError(sym)


# ---- halt, resume, session -------------------------------------------------------------


def test_halt_and_resume(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 100))
    assert h.ev(control(CTL.HALT, 1)) == []
    assert phases(h, 1) == [Phase.HALTED]
    assert h.ev(buy(2, 5, 100, acct=2)) == [
        rejected(2, RejectReason.HALTED, side=BUY, price=100, qty=5, acct=2)
    ]
    assert h.ev(control(CTL.HALT, 1)) == []  # halting again is harmless
    assert h.ev(control(CTL.RESUME, 1)) == []
    assert phases(h, 1) == [Phase.CONTINUOUS]
    assert h.ev(buy(2, 5, 100, acct=2)) == [
        accepted(2, BUY, 100, 5, acct=2),
        *fill((2, BUY, 2), (1, SELL, 1), 100, 5, 0, 0),
    ]


def test_a_book_halted_during_the_call_reopens_through_an_uncross(engine_cls: type) -> None:
    """Orders cross freely in a call phase; halting it and resuming must not reopen
    continuous trading on a crossed book: RESUME uncrosses first."""
    h = Harness(engine_cls)
    h.send(control(CTL.AUCTION_START, 1), buy(1, 5, 101), sell(2, 3, 100, acct=2))
    h.send(control(CTL.HALT, 1))
    assert h.ev(control(CTL.RESUME, 1)) == [*fill((2, SELL, 2), (1, BUY, 1), 100, 3, 0, 2)]
    assert phases(h, 1) == [Phase.CONTINUOUS]
    assert h.book() == ([(101, 2, 1)], [])


def test_controls_for_symbol_zero_act_on_every_symbol(engine_cls: type) -> None:
    h = Harness(engine_cls, ACME, Instrument("B", 2), Instrument("C", 5))
    h.send(control(CTL.HALT, 0))
    assert phases(h, 1, 2, 5) == [Phase.HALTED] * 3
    h.send(control(CTL.AUCTION_START, 0))
    assert phases(h, 1, 2, 5) == [Phase.AUCTION] * 3
    h.send(control(CTL.SESSION_OPEN, 0))
    assert phases(h, 1, 2, 5) == [Phase.CONTINUOUS] * 3


def test_session_open(engine_cls: type) -> None:
    h = Harness(engine_cls)
    assert h.ev(control(CTL.SESSION_OPEN, 1)) == []  # continuous stays
    assert phases(h, 1) == [Phase.CONTINUOUS]
    h.send(control(CTL.HALT, 1))
    assert h.ev(control(CTL.SESSION_OPEN, 1)) == []
    assert phases(h, 1) == [Phase.CONTINUOUS]
    h.send(control(CTL.AUCTION_START, 1), buy(1, 5, 101), sell(2, 5, 100, acct=2))
    assert h.ev(control(CTL.SESSION_OPEN, 1)) == [*fill((2, SELL, 2), (1, BUY, 1), 100, 5, 0, 0)]
    assert phases(h, 1) == [Phase.CONTINUOUS]


def test_session_close_expires_day_orders_symbol_by_symbol(engine_cls: type) -> None:
    h = Harness(engine_cls, ACME, Instrument("B", 2))
    h.send(
        buy(1, 5, 50, sym=2, tif=TIF.DAY),
        buy(2, 5, 99, tif=TIF.DAY),
        stop(BUY, 3, 5, 105, tif=TIF.DAY),
        buy(4, 5, 98, tif=TIF.GTC),
        buy(5, 5, 97, tif=TIF.GTD, expire_ns=10),
        sell(6, 5, 51, sym=2, tif=TIF.DAY, acct=2),
    )
    assert h.ev(control(CTL.SESSION_CLOSE, 0)) == [
        cancelled(2, BUY, 99, 5, CancelReason.EXPIRED),
        cancelled(3, BUY, 0, 5, CancelReason.EXPIRED),
        cancelled(1, BUY, 50, 5, CancelReason.EXPIRED, sym=2),
        cancelled(6, SELL, 51, 5, CancelReason.EXPIRED, acct=2, sym=2),
    ]
    assert h.engine.live_orders() == 2
    assert phases(h, 1, 2) == [Phase.CONTINUOUS] * 2


def test_auction_start_from_halt_and_uncross_only_in_auction(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(control(CTL.HALT, 1))
    assert h.ev(control(CTL.AUCTION_START, 1)) == []
    assert phases(h, 1) == [Phase.AUCTION]
    assert h.ev(control(CTL.RESUME, 1)) == [rejected(0, RejectReason.INVALID_COMMAND, acct=0)]
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == []
    assert phases(h, 1) == [Phase.CONTINUOUS]
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [
        rejected(0, RejectReason.INVALID_COMMAND, acct=0)
    ]


# ---- the uncross price ---------------------------------------------------------------


def auction(engine_cls: type, ref: int) -> Harness:
    h = Harness(engine_cls, Instrument("AUC", 1, reference_price=ref))
    h.send(control(CTL.AUCTION_START, 1))
    return h


def test_uncross_maximises_volume(engine_cls: type) -> None:
    h = auction(engine_cls, ref=99)  # the reference would prefer 99: volume decides first
    h.send(buy(1, 10, 101), sell(2, 4, 99, acct=2), sell(3, 4, 101, acct=3))
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [
        *fill((2, SELL, 2), (1, BUY, 1), 101, 4, 0, 6),
        *fill((3, SELL, 3), (1, BUY, 1), 101, 4, 0, 2),
    ]
    assert h.book() == ([(101, 2, 1)], [])
    assert static_reference(h, 1) == 101
    assert phases(h, 1) == [Phase.CONTINUOUS]


def test_uncross_then_minimises_imbalance(engine_cls: type) -> None:
    h = auction(engine_cls, ref=100)  # 100 and 101 both trade 5; 101 leaves less over
    h.send(buy(1, 6, 101), buy(2, 4, 100), sell(3, 5, 100, acct=2))
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [*fill((3, SELL, 2), (1, BUY, 1), 101, 5, 0, 1)]
    assert h.book() == ([(101, 1, 1), (100, 4, 1)], [])


@pytest.mark.parametrize(
    ("ref", "price"), [(0, 100), (60, 100), (100, 100), (101, 100), (102, 102), (150, 102)]
)
def test_uncross_then_nearest_reference_then_lower_price(
    engine_cls: type, ref: int, price: int
) -> None:
    h = auction(engine_cls, ref=ref)
    h.send(buy(1, 5, 102), sell(2, 5, 100, acct=2))
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [
        *fill((2, SELL, 2), (1, BUY, 1), price, 5, 0, 0)
    ]
    assert static_reference(h, 1) == price


def test_uncross_without_volume_trades_nothing(engine_cls: type) -> None:
    h = auction(engine_cls, ref=100)
    h.send(buy(1, 5, 99), sell(2, 5, 101, acct=2))
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == []
    assert static_reference(h, 1) == 100
    assert phases(h, 1) == [Phase.CONTINUOUS]
    assert h.book() == ([(99, 5, 1)], [(101, 5, 1)])


PRICE_MAX = 2**63 - 1
"""The highest price an order can carry (tick 1): the uncross's walk once read past the
end of a side's levels there, taking it for the end of the other side."""


def test_uncross_with_a_bid_at_the_highest_price(engine_cls: type) -> None:
    h = auction(engine_cls, ref=100)  # 100 and PRICE_MAX both trade 5: the reference decides
    h.send(buy(1, 5, PRICE_MAX), sell(2, 5, 100, acct=2))
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [*fill((2, SELL, 2), (1, BUY, 1), 100, 5, 0, 0)]
    assert h.book() == ([], [])


def test_uncross_with_an_ask_at_the_highest_price(engine_cls: type) -> None:
    h = auction(engine_cls, ref=100)
    h.send(buy(1, 5, 100), sell(2, 5, PRICE_MAX, acct=2), buy(3, 5, PRICE_MAX, acct=3))
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [
        *fill((3, BUY, 3), (2, SELL, 2), PRICE_MAX, 5, 0, 0)
    ]
    assert h.book() == ([(100, 5, 1)], [])


def test_uncross_of_an_empty_book(engine_cls: type) -> None:
    h = auction(engine_cls, ref=0)
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == []
    assert phases(h, 1) == [Phase.CONTINUOUS]


def test_uncross_sets_the_static_reference_used_by_the_band(engine_cls: type) -> None:
    h = Harness(engine_cls, Instrument("AUC", 1, reference_price=100, band_bps=1000))
    h.send(control(CTL.AUCTION_START, 1), buy(1, 5, 110), sell(2, 5, 110, acct=2))
    h.send(control(CTL.AUCTION_UNCROSS, 1))
    assert static_reference(h, 1) == 110
    assert h.ev(buy(3, 1, 122)) == [
        rejected(3, RejectReason.PRICE_BAND, side=BUY, price=122, qty=1)
    ]
    assert h.ev(buy(3, 1, 121)) == [accepted(3, BUY, 121, 1)]  # 10% of 110 exactly


def test_uncross_counts_hidden_quantity_and_refreshes_icebergs(engine_cls: type) -> None:
    h = auction(engine_cls, ref=100)
    h.send(buy(1, 10, 100, display_qty=2), buy(2, 3, 100, acct=3), sell(3, 6, 100, acct=2))
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [
        *fill((3, SELL, 2), (1, BUY, 1), 100, 2, 4, 8),
        *fill((3, SELL, 2), (2, BUY, 3), 100, 3, 1, 0),
        *fill((3, SELL, 2), (1, BUY, 1), 100, 1, 0, 7),
    ]
    assert h.book() == ([(100, 1, 1)], [])


def test_uncross_taker_is_the_later_order(engine_cls: type) -> None:
    h = auction(engine_cls, ref=100)
    h.send(sell(1, 5, 100, acct=2), buy(2, 5, 100))
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [*fill((2, BUY, 1), (1, SELL, 2), 100, 5, 0, 0)]


def _stp_auction(engine_cls: type, mode: STP) -> Harness:
    """Bid 5@101 (account 1), asks 5@100 of account 1 (with ``mode``) and of account 2."""
    h = auction(engine_cls, ref=100)
    h.send(buy(1, 5, 101), sell(2, 5, 100, stp_mode=mode), sell(3, 5, 100, acct=2))
    return h


def test_uncross_stp_cancel_resting_cancels_the_earlier_order(engine_cls: type) -> None:
    h = _stp_auction(engine_cls, STP.CANCEL_RESTING)
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [cancelled(1, BUY, 101, 5, SELF)]
    assert h.book() == ([], [(100, 10, 2)])


@pytest.mark.parametrize("mode", [STP.NONE, STP.CANCEL_INCOMING])
def test_uncross_stp_cancel_incoming_cancels_the_later_order(engine_cls: type, mode: STP) -> None:
    h = _stp_auction(engine_cls, mode)
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [
        cancelled(2, SELL, 100, 5, SELF),
        *fill((3, SELL, 2), (1, BUY, 1), 100, 5, 0, 0),
    ]
    assert h.book() == ([], [])


def test_uncross_stp_cancel_both(engine_cls: type) -> None:
    h = _stp_auction(engine_cls, STP.CANCEL_BOTH)
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [
        cancelled(1, BUY, 101, 5, SELF),
        cancelled(2, SELL, 100, 5, SELF),
    ]
    assert h.book() == ([], [(100, 5, 1)])


def test_uncross_repeats_while_stp_left_the_book_crossed(engine_cls: type) -> None:
    h = auction(engine_cls, ref=100)
    h.send(buy(1, 5, 102), sell(2, 5, 101), sell(3, 5, 102, acct=2))
    # first price 101 (no imbalance): only the own pair is there, and it self-cancels;
    # the book is still crossed at 102, so the uncross runs again there
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [
        cancelled(2, SELL, 101, 5, SELF),
        *fill((3, SELL, 2), (1, BUY, 1), 102, 5, 0, 0),
    ]
    assert static_reference(h, 1) == 102


def test_stops_are_checked_after_the_uncross(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(stop(BUY, 1, 2, 100, acct=3), control(CTL.AUCTION_START, 1))
    h.send(buy(2, 5, 100), sell(3, 8, 100, acct=2))
    assert h.ev(control(CTL.AUCTION_UNCROSS, 1)) == [
        *fill((3, SELL, 2), (2, BUY, 1), 100, 5, 3, 0),
        triggered(1, BUY, 0, 2, 2, acct=3),
        *fill((1, BUY, 3), (3, SELL, 2), 100, 2, 0, 1),
    ]


# ---- the breaker -----------------------------------------------------------------------


def breaker_book(engine_cls: type, *extra: Instrument) -> Harness:
    """Last trade 1000 on symbol 3; asks 2@1040 and 3@1060 of account 1; clock 500."""
    h = Harness(engine_cls, BRK, *extra)
    h.send(
        clock_tick(500),
        sell(1, 5, 1000, sym=3),
        buy(2, 5, 1000, acct=2, sym=3),
        sell(3, 2, 1040, sym=3),
        sell(4, 3, 1060, sym=3),
    )
    return h


def test_breaker_trips_and_the_limit_rests_in_the_auction(engine_cls: type) -> None:
    h = breaker_book(engine_cls)
    # 1040 is inside 5% of 1000; 1060 is not: the reference stays the last trade as it
    # stood when the order began (1000), although 1060 is within 5% of 1040
    assert h.ev(buy(5, 10, 1060, acct=2, sym=3)) == [
        accepted(5, BUY, 1060, 10, acct=2, sym=3),
        *fill((5, BUY, 2), (3, SELL, 1), 1040, 2, 8, 0, sym=3),
    ]
    assert phases(h, 3) == [Phase.AUCTION]
    assert reopen_ns(h, 3) == 1500
    assert h.book(3) == ([(1060, 8, 1)], [(1060, 3, 1)])
    assert h.ev(market(BUY, 6, 1, sym=3)) == [
        rejected(6, RejectReason.PHASE, side=BUY, qty=1, sym=3)
    ]
    assert h.ev(clock_tick(1499)) == []
    assert h.ev(clock_tick(1500)) == [*fill((5, BUY, 2), (4, SELL, 1), 1060, 3, 5, 0, sym=3)]
    assert phases(h, 3) == [Phase.CONTINUOUS]
    assert reopen_ns(h, 3) == -1
    assert static_reference(h, 3) == 1060


@pytest.mark.parametrize(
    ("cmd", "reason_price"),
    [
        (market(BUY, 5, 10, acct=2, sym=3), 0),
        (buy(5, 10, 1060, acct=2, sym=3, tif=TIF.IOC), 1060),
    ],
)
def test_breaker_cancels_what_cannot_rest(engine_cls: type, cmd: object, reason_price: int) -> None:
    h = breaker_book(engine_cls)
    out = h.ev(cmd)  # type: ignore[arg-type]
    assert out[1:] == [
        *fill((5, BUY, 2), (3, SELL, 1), 1040, 2, 8, 0, sym=3),
        cancelled(5, BUY, reason_price, 8, CancelReason.HALT, acct=2, sym=3),
    ]
    assert phases(h, 3) == [Phase.AUCTION]
    assert h.book(3) == ([], [(1060, 3, 1)])


def test_breaker_band_edge_executes(engine_cls: type) -> None:
    h = breaker_book(engine_cls)
    h.send(sell(5, 1, 1050, sym=3))  # exactly 5% above 1000
    out = h.ev(buy(6, 3, 1050, acct=2, sym=3))
    assert [e.price for e in out[1::2]] == [1040, 1050]
    assert phases(h, 3) == [Phase.CONTINUOUS]


def test_breaker_uses_the_static_reference_before_any_trade(engine_cls: type) -> None:
    h = Harness(engine_cls, BRK)
    h.send(sell(1, 5, 940, sym=3))
    assert h.ev(buy(2, 5, 940, acct=2, sym=3)) == [accepted(2, BUY, 940, 5, acct=2, sym=3)]
    assert phases(h, 3) == [Phase.AUCTION]
    assert reopen_ns(h, 3) == 1000


def test_breaker_is_off_without_any_reference(engine_cls: type) -> None:
    h = Harness(engine_cls, Instrument("NOREF", 3, breaker_bps=1, breaker_halt_ns=5))
    h.send(sell(1, 5, 10, sym=3), buy(2, 1, 10, acct=2, sym=3))
    assert phases(h, 3) == [Phase.CONTINUOUS]
    h.send(sell(3, 5, 11, sym=3))  # 10% above the last trade now trips
    h.send(buy(4, 6, 11, acct=2, sym=3))
    assert phases(h, 3) == [Phase.AUCTION]


def test_fok_walk_stops_at_the_breaker(engine_cls: type) -> None:
    h = breaker_book(engine_cls)
    assert h.ev(buy(5, 3, 1060, acct=2, sym=3, tif=TIF.FOK)) == [
        rejected(5, RejectReason.FOK_UNFILLABLE, side=BUY, price=1060, qty=3, acct=2, sym=3)
    ]
    assert phases(h, 3) == [Phase.CONTINUOUS]
    out = h.ev(buy(5, 2, 1060, acct=2, sym=3, tif=TIF.FOK))
    assert out == [
        accepted(5, BUY, 1060, 2, acct=2, sym=3),
        *fill((5, BUY, 2), (3, SELL, 1), 1040, 2, 0, 0, sym=3),
    ]


def test_fok_walk_skips_orders_outside_the_breaker_band(engine_cls: type) -> None:
    """An ask far below the last trade adds nothing to the walk but does not end it: the
    FOK is accepted, meets that ask first, trips the breaker and is cancelled unfilled."""
    h = breaker_book(engine_cls)
    h.send(sell(5, 2, 940, sym=3), sell(6, 5, 1000, sym=3))
    assert h.ev(buy(7, 5, 1000, acct=2, sym=3, tif=TIF.FOK)) == [
        accepted(7, BUY, 1000, 5, acct=2, sym=3),
        cancelled(7, BUY, 1000, 5, CancelReason.HALT, acct=2, sym=3),
    ]
    assert phases(h, 3) == [Phase.AUCTION]


def test_halt_drops_the_breaker_reopening(engine_cls: type) -> None:
    h = breaker_book(engine_cls)
    h.send(buy(5, 10, 1060, acct=2, sym=3), control(CTL.HALT, 3))
    assert reopen_ns(h, 3) == -1
    assert h.ev(clock_tick(5000)) == []
    assert phases(h, 3) == [Phase.HALTED]


def test_manual_uncross_clears_the_breaker_reopening(engine_cls: type) -> None:
    h = breaker_book(engine_cls)
    h.send(buy(5, 10, 1060, acct=2, sym=3))
    assert len(h.ev(control(CTL.AUCTION_UNCROSS, 3))) == 2
    h.send(control(CTL.AUCTION_START, 3))
    assert reopen_ns(h, 3) == -1
    assert h.ev(clock_tick(5000)) == []
    assert phases(h, 3) == [Phase.AUCTION]


def test_zero_halt_reopens_at_the_next_tick(engine_cls: type) -> None:
    h = Harness(engine_cls, Instrument("Z", 3, reference_price=1000, breaker_bps=100))
    h.send(clock_tick(7), sell(1, 5, 1020, sym=3), buy(2, 5, 1020, acct=2, sym=3))
    assert reopen_ns(h, 3) == 7
    assert h.ev(clock_tick(7)) == [*fill((2, BUY, 2), (1, SELL, 1), 1020, 5, 0, 0, sym=3)]


def test_tick_expires_gtd_first_then_reopens_symbols_in_id_order(engine_cls: type) -> None:
    other = Instrument("BRK2", 2, reference_price=1000, breaker_bps=500, breaker_halt_ns=300)
    h = Harness(engine_cls, other, BRK)
    h.send(
        clock_tick(500),
        sell(1, 5, 1100, sym=3),
        buy(2, 5, 1100, acct=2, sym=3),  # trips symbol 3 until 1500
        sell(3, 5, 1100, sym=2),
        buy(4, 5, 1100, acct=2, sym=2, tif=TIF.GTD, expire_ns=2000),  # symbol 2 until 800
        buy(5, 1, 900, acct=3, sym=3, tif=TIF.GTD, expire_ns=1500),
        sell(6, 1, 1100, acct=3, sym=2),
    )
    assert phases(h, 2, 3) == [Phase.AUCTION, Phase.AUCTION]
    assert h.ev(clock_tick(1500)) == [
        cancelled(5, BUY, 900, 1, CancelReason.EXPIRED, acct=3, sym=3),
        *fill((4, BUY, 2), (3, SELL, 1), 1100, 5, 0, 0, sym=2),
        *fill((2, BUY, 2), (1, SELL, 1), 1100, 5, 0, 0, sym=3),
    ]
    assert h.book(2) == ([], [(1100, 1, 1)])


def test_clock_tick_is_engine_wide_whatever_its_symbol_id(engine_cls: type) -> None:
    """The clock belongs to the engine: a tick naming symbol 1 expires symbol 2's GTD
    orders too (an unknown symbol_id is still refused, see test_validation)."""
    h = Harness(engine_cls, ACME, Instrument("B", 2))
    h.send(buy(1, 5, 99, sym=2, tif=TIF.GTD, expire_ns=30))
    assert h.ev(control(CTL.CLOCK_TICK, 1, 30)) == [
        cancelled(1, BUY, 99, 5, CancelReason.EXPIRED, sym=2)
    ]
    assert parse_snapshot(h.engine.snapshot()).header["clock_ns"] == 30
