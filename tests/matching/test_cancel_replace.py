"""Cancel, replace and mass cancel (docs/matching.md "Cancel, replace, mass cancel")."""

from __future__ import annotations

from tests.matching.helpers import (
    ACME,
    BUY,
    SELL,
    STP,
    Harness,
    accepted,
    buy,
    cancelled,
    fill,
    replaced,
    sell,
    stop,
    stop_limit,
)
from tradsys.matching import Instrument
from tradsys.matching.commands import cancel, control, mass_cancel, replace
from tradsys.wire import CancelReason, ControlCode, OrderFlag

USER, MASS = CancelReason.USER, CancelReason.MASS_CANCEL
BETA = Instrument("BETA", 2, reference_price=50)


def test_cancel_reports_the_leaves(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100), buy(2, 4, 100, acct=2))
    assert h.ev(cancel(1, 1, 1)) == [cancelled(1, SELL, 100, 6, USER)]
    assert h.book() == ([], [])
    assert h.engine.live_orders() == 0


def test_a_cancel_on_disconnect_says_so(engine_cls: type) -> None:
    """The gateway's cancel-on-disconnect flags its CANCEL, and the CANCELLED names it, so
    a client tells it from a cancel of its own (audit Y: both were USER)."""
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100), sell(2, 5, 101))
    gone = cancel(1, 1, 1, flags=OrderFlag.DISCONNECT)
    assert h.ev(gone) == [cancelled(1, SELL, 100, 10, CancelReason.DISCONNECT)]
    assert h.ev(cancel(2, 1, 1)) == [cancelled(2, SELL, 101, 5, USER)]


def test_cancel_of_an_iceberg_reports_hidden_quantity_too(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 10, 100, display_qty=2))
    assert h.ev(cancel(1, 1, 1)) == [cancelled(1, BUY, 100, 10, USER)]


def test_cancel_of_a_pending_stop(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(stop_limit(BUY, 1, 5, 110, 105))
    assert h.engine.live_orders() == 1
    assert h.ev(cancel(1, 1, 1)) == [cancelled(1, BUY, 110, 5, USER)]
    assert h.engine.live_orders() == 0


def test_cancel_works_in_halt_and_auction(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 5, 100), buy(2, 5, 99), control(ControlCode.HALT, 1))
    assert h.ev(cancel(1, 1, 1)) == [cancelled(1, BUY, 100, 5, USER)]
    h.send(control(ControlCode.AUCTION_START, 1))
    assert h.ev(cancel(2, 1, 1)) == [cancelled(2, BUY, 99, 5, USER)]


def test_replace_down_keeps_priority(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100), sell(2, 10, 100, acct=3))
    assert h.ev(replace(1, 1, 1, 100, 6)) == [replaced(1, SELL, 100, 6, 6)]
    assert h.ev(buy(3, 6, 100, acct=2)) == [
        accepted(3, BUY, 100, 6, acct=2),
        *fill((3, BUY, 2), (1, SELL, 1), 100, 6, 0, 0),
    ]


def test_replace_with_the_same_values_keeps_priority(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100), sell(2, 10, 100, acct=3))
    assert h.ev(replace(1, 1, 1, 100, 10)) == [replaced(1, SELL, 100, 10, 10)]
    assert h.ev(buy(3, 1, 100, acct=2))[1].contra_order_id == 1


def test_replace_up_loses_priority(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100), sell(2, 10, 100, acct=3))
    assert h.ev(replace(1, 1, 1, 100, 12)) == [replaced(1, SELL, 100, 12, 12)]
    assert h.ev(buy(3, 11, 100, acct=2)) == [
        accepted(3, BUY, 100, 11, acct=2),
        *fill((3, BUY, 2), (2, SELL, 3), 100, 10, 1, 0),
        *fill((3, BUY, 2), (1, SELL, 1), 100, 1, 0, 11),
    ]


def test_replace_price_moves_to_the_back_of_the_new_level(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 101), sell(2, 5, 100, acct=3))
    assert h.ev(replace(1, 1, 1, 100, 5)) == [replaced(1, SELL, 100, 5, 5)]
    assert h.book() == ([], [(100, 10, 2)])
    out = h.ev(buy(3, 6, 100, acct=2))
    assert [e.contra_order_id for e in out[1::2]] == [2, 1]


def test_replace_keeps_the_filled_part(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100), buy(2, 4, 100, acct=2))  # filled 4, leaves 6
    assert h.ev(replace(1, 1, 1, 100, 8)) == [replaced(1, SELL, 100, 8, 4)]
    assert h.ev(replace(1, 1, 1, 100, 5)) == [replaced(1, SELL, 100, 5, 1)]
    assert h.book() == ([], [(100, 1, 1)])


def test_replace_at_or_below_the_filled_quantity_cancels(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100), buy(2, 4, 100, acct=2))
    assert h.ev(replace(1, 1, 1, 100, 4)) == [cancelled(1, SELL, 100, 6, USER)]
    h.send(sell(3, 10, 101), buy(4, 4, 101, acct=2))
    # the cancel reports the order as it stood, not the refused new price
    assert h.ev(replace(3, 1, 1, 105, 2)) == [cancelled(3, SELL, 101, 6, USER)]
    assert h.book() == ([], [])


def test_replace_that_crosses_trades_as_a_taker_and_rests_the_rest(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 4, 101, acct=2), buy(2, 10, 99))
    assert h.ev(replace(2, 1, 1, 101, 10)) == [
        replaced(2, BUY, 101, 10, 10),
        *fill((2, BUY, 1), (1, SELL, 2), 101, 4, 6, 0),
    ]
    assert h.book() == ([(101, 6, 1)], [])


def test_replace_that_crosses_fully_fills(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 101, acct=2), buy(2, 4, 99))
    assert h.ev(replace(2, 1, 1, 101, 4)) == [
        replaced(2, BUY, 101, 4, 4),
        *fill((2, BUY, 1), (1, SELL, 2), 101, 4, 0, 6),
    ]
    assert h.engine.live_orders() == 1


def test_replace_that_crosses_its_own_order_applies_stp(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 4, 101), buy(2, 10, 99, stp_mode=STP.CANCEL_INCOMING))
    assert h.ev(replace(2, 1, 1, 101, 10)) == [
        replaced(2, BUY, 101, 10, 10),
        cancelled(2, BUY, 101, 10, CancelReason.SELF_TRADE),
    ]
    assert h.book() == ([], [(101, 4, 1)])
    assert h.engine.live_orders() == 1


def test_replace_of_an_iceberg(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 10, 100, display_qty=4))
    h.send(buy(2, 3, 100, acct=2))  # visible 1, leaves 7
    assert h.book() == ([], [(100, 1, 1)])
    # down, same price: keeps its place, visible becomes min(visible, leaves)
    assert h.ev(replace(1, 1, 1, 100, 9)) == [replaced(1, SELL, 100, 9, 6)]
    assert h.book() == ([], [(100, 1, 1)])
    # new price: a fresh peak
    assert h.ev(replace(1, 1, 1, 101, 9)) == [replaced(1, SELL, 101, 9, 6)]
    assert h.book() == ([], [(101, 4, 1)])
    # down below the visible part
    assert h.ev(replace(1, 1, 1, 101, 5)) == [replaced(1, SELL, 101, 5, 2)]
    assert h.book() == ([], [(101, 2, 1)])


def test_replace_of_a_pending_stop(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(stop(BUY, 1, 5, 105), stop_limit(SELL, 2, 5, 90, 95))
    assert h.ev(replace(1, 1, 1, 0, 8)) == [replaced(1, BUY, 0, 8, 8)]
    assert h.ev(replace(2, 1, 1, 91, 3)) == [replaced(2, SELL, 91, 3, 3)]
    assert h.book() == ([], [])
    assert h.engine.live_orders() == 2


def test_replace_in_the_auction_moves_without_matching(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(sell(1, 5, 101, acct=2), buy(2, 5, 99), control(ControlCode.AUCTION_START, 1))
    assert h.ev(replace(2, 1, 1, 102, 5)) == [replaced(2, BUY, 102, 5, 5)]
    assert h.book() == ([(102, 5, 1)], [(101, 5, 1)])


def test_mass_cancel_by_account_in_seq_order_across_symbols(engine_cls: type) -> None:
    h = Harness(engine_cls, ACME, BETA)
    h.send(
        buy(1, 5, 100, acct=1, sym=2),
        sell(2, 5, 101, acct=2),
        stop(SELL, 3, 5, 90, acct=1),
        buy(4, 5, 99, acct=1),
        sell(5, 5, 101, acct=1, sym=2),
    )
    assert h.ev(mass_cancel(account_id=1)) == [
        cancelled(1, BUY, 100, 5, MASS, sym=2),
        cancelled(3, SELL, 0, 5, MASS),
        cancelled(4, BUY, 99, 5, MASS),
        cancelled(5, SELL, 101, 5, MASS, sym=2),
    ]
    assert h.engine.live_orders() == 1


def test_mass_cancel_by_symbol_and_by_both(engine_cls: type) -> None:
    h = Harness(engine_cls, ACME, BETA)
    h.send(
        buy(1, 5, 49, acct=1, sym=2),
        sell(2, 5, 101, acct=2),
        buy(3, 5, 48, acct=2, sym=2),
        buy(4, 5, 99, acct=1),
    )
    assert h.ev(mass_cancel(account_id=2, symbol_id=2)) == [
        cancelled(3, BUY, 48, 5, MASS, acct=2, sym=2)
    ]
    assert h.ev(mass_cancel(symbol_id=1)) == [
        cancelled(2, SELL, 101, 5, MASS, acct=2),
        cancelled(4, BUY, 99, 5, MASS),
    ]
    assert h.ev(mass_cancel()) == [cancelled(1, BUY, 49, 5, MASS, sym=2)]
    assert h.ev(mass_cancel()) == []
    assert h.engine.live_orders() == 0


def test_a_kill_switchs_mass_cancel_says_so(engine_cls: type) -> None:
    """The gateway's kill switch sends MASS_CANCEL with flag KILL_SWITCH: its owner reads
    CANCELLED(KILL_SWITCH), not the MASS_CANCEL of a command it never sent."""
    h = Harness(engine_cls, ACME, BETA)
    h.send(buy(1, 5, 100), sell(2, 5, 101, acct=2), buy(3, 5, 49, sym=2))
    kill = CancelReason.KILL_SWITCH
    assert h.ev(mass_cancel(account_id=1, flags=OrderFlag.KILL_SWITCH)) == [
        cancelled(1, BUY, 100, 5, kill),
        cancelled(3, BUY, 49, 5, kill, sym=2),
    ]
    assert h.ev(mass_cancel(symbol_id=1, flags=OrderFlag.KILL_SWITCH)) == [
        cancelled(2, SELL, 101, 5, kill, acct=2)
    ]


def test_mass_cancel_works_while_halted(engine_cls: type) -> None:
    h = Harness(engine_cls)
    h.send(buy(1, 5, 100), control(ControlCode.HALT, 1))
    assert h.ev(mass_cancel(account_id=1, symbol_id=1)) == [cancelled(1, BUY, 100, 5, MASS)]


def test_post_only_replace_may_cross_in_the_auction(engine_cls: type) -> None:
    """Nothing takes in the call phase, so a post-only order may be moved through the
    opposite side there."""
    h = Harness(engine_cls)
    h.send(sell(1, 5, 101, acct=2), buy(2, 5, 99, post_only=True))
    h.send(control(ControlCode.AUCTION_START, 1))
    assert h.ev(replace(2, 1, 1, 102, 5)) == [replaced(2, BUY, 102, 5, 5)]
