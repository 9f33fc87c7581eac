"""A replaced market-type order is valued at the risk price its replace was checked at,
not at the reference of the moment its REPLACED comes back: a trade between the two used
to move the account's open notional to a figure no check had seen, past its credit limit
or below what it had reserved."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.gateway.rig import AAA, GatewayRig, Session, account, command
from tradsys.wire import CommandKind, EventKind, RejectReason, Side

# an unprotected buy stop below AAA's reference (1000): valued at the reference
STOP: dict[str, Any] = {"order_type": 3, "tif": 1, "price": 0, "stop_price": 900, "side": Side.BUY}


def passed(rig: GatewayRig, session: Session) -> Any:
    """The one command the last poll sent to shard 0 (no reject came back)."""
    rig.poll()
    assert len(session.events()) == 0
    (sent,) = rig.sent(0)
    return sent


def rest_stop(rig: GatewayRig, s: Session, quantity: int) -> Any:
    s.send(command(order_id=1, quantity=quantity, **STOP))
    stop = passed(rig, s)
    rig.answer(0, EventKind.ACCEPTED, stop)
    rig.poll()
    s.events()
    return stop


def trade_at(rig: GatewayRig, price: int, order_id: int = 1) -> None:
    """Account 2 trades AAA at ``price`` (the new reference), its events pushed now, ahead
    of anything pushed after."""
    other = rig.session(2)
    other.send(command(order_id=order_id, price=price))
    rig.poll()
    (o,) = rig.sent(0)
    rig.answer(0, EventKind.ACCEPTED, o)
    rig.answer(0, EventKind.TRADE, o, price=price, quantity=1, leaves_qty=9)


def replace(rig: GatewayRig, s: Session, quantity: int) -> None:
    s.send(command(CommandKind.REPLACE, order_id=1, symbol_id=AAA, price=0, quantity=quantity))
    assert passed(rig, s)["kind"] == CommandKind.REPLACE


@pytest.mark.parametrize("traded", [1_400, 950])
def test_a_replaced_stop_keeps_the_value_its_replace_was_checked_at(
    make_rig: Callable[..., GatewayRig], traded: int
) -> None:
    """The replace is checked at the reference 1000 (10 x 1000 = 10 000); a trade at
    ``traded`` comes in before its REPLACED. Revalued there, the stop held 14 000 (past the
    credit limit of 12 000, unchecked) or 9 500 (credit it had not been checked for)."""
    rig = make_rig([account(1, credit_limit=12_000), account(2)])
    s = rig.session(1)
    stop = rest_stop(rig, s, 10)
    assert rig.core.account_state(1).open_notional == 10_000
    replace(rig, s, 10)
    trade_at(rig, traded)
    rig.answer(0, EventKind.REPLACED, stop, quantity=10, leaves_qty=10)
    rig.poll()
    assert [int(ev["kind"]) for ev in s.events()] == [EventKind.REPLACED]
    assert rig.core.account_state(1).open_notional == 10_000
    # the 2 000 of credit left is there, and no more
    s.send(command(order_id=2, side=Side.SELL, price=1000, quantity=3))
    rig.poll()
    (ev,) = s.events()
    assert (ev["kind"], ev["reason"]) == (EventKind.REJECTED, RejectReason.CREDIT_LIMIT)
    s.send(command(order_id=3, side=Side.SELL, price=1000, quantity=2))
    passed(rig, s)


def test_overlapping_replaces_keep_the_highest_value_checked(
    make_rig: Callable[..., GatewayRig],
) -> None:
    """Two replaces in flight, checked at 1000 and (after a trade) at 1100; the first
    takes effect, the engine rejects the second. Which one a REPLACED answers is not
    tracked: the order keeps the higher price checked, never less than its own (1000)."""
    rig = make_rig([account(1, credit_limit=20_000), account(2)])
    s = rig.session(1)
    stop = rest_stop(rig, s, 10)
    replace(rig, s, 12)  # 12 x 1000
    trade_at(rig, 1_100)
    rig.poll()
    replace(rig, s, 4)  # 4 x 1100, while the first is in flight
    trade_at(rig, 1_300, order_id=2)
    rig.answer(0, EventKind.REPLACED, stop, quantity=12, leaves_qty=12)
    rig.poll()
    assert rig.core.account_state(1).open_notional == 12 * 1_100  # the second still due
    rig.answer(0, EventKind.REJECTED, stop, reason=RejectReason.INVALID_PRICE, quantity=4)
    rig.poll()
    assert [int(ev["kind"]) for ev in s.events()] == [EventKind.REPLACED, EventKind.REJECTED]
    assert rig.core.account_state(1).open_notional == 12 * 1_100
    # a replace once none is in flight is valued at its own check again (reference 1300)
    replace(rig, s, 12)
    rig.answer(0, EventKind.REPLACED, stop, quantity=12, leaves_qty=12)
    rig.poll()
    assert rig.core.account_state(1).open_notional == 12 * 1_300
