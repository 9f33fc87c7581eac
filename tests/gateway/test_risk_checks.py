"""Every pre-trade check rejects with its own reason, and a rejected order never reaches
a shard; the order just inside each limit passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.gateway.rig import AAA, BBB, GatewayRig, account, command
from tradsys.wire import CommandKind, EventFlag, EventKind, RejectReason, Side


def only_reject(rig: GatewayRig, session: Any, reason: RejectReason) -> None:
    """The last command was rejected with ``reason`` and nothing reached any shard."""
    rig.poll()
    assert len(rig.sent(0)) == 0 and len(rig.sent(1)) == 0
    (ev,) = session.events()
    assert (ev["kind"], ev["reason"]) == (EventKind.REJECTED, reason)
    assert ev["flags"] & EventFlag.DONE
    assert rig.core.stats()[f"rejects.{reason.name}"] >= 1


def passes(rig: GatewayRig, session: Any, shard: int = 0) -> np.ndarray[Any, Any]:
    rig.poll()
    assert len(session.events()) == 0
    (sent,) = rig.sent(shard)
    return sent


def trade_at(rig: GatewayRig, price: int) -> None:
    """Account 2 trades at ``price``: the last trade, which the collar follows."""
    other = rig.session(2)
    other.send(command(order_id=1, price=price))
    rig.poll()
    (o,) = rig.sent(0)
    rig.answer(0, EventKind.ACCEPTED, o)
    rig.answer(0, EventKind.TRADE, o, price=price, quantity=1, leaves_qty=9)
    rig.poll()


@pytest.mark.parametrize(
    ("limits", "ok", "bad", "reason"),
    [
        ({"max_order_qty": 10}, {"quantity": 10}, {"quantity": 11}, RejectReason.MAX_ORDER_QTY),
        (
            {"max_order_notional": 10_000},
            {"quantity": 10, "price": 1000},
            {"quantity": 10, "price": 1001},
            RejectReason.MAX_NOTIONAL,
        ),
        # reference 1000, 5% collar: 950..1050
        ({"price_collar_bps": 500}, {"price": 1050}, {"price": 1051}, RejectReason.PRICE_COLLAR),
        ({"price_collar_bps": 500}, {"price": 950}, {"price": 949}, RejectReason.PRICE_COLLAR),
        ({"max_position": 10}, {"quantity": 10}, {"quantity": 11}, RejectReason.MAX_POSITION),
        (
            {"credit_limit": 10_000},
            {"quantity": 10, "price": 1000},
            {"quantity": 11, "price": 1000},
            RejectReason.CREDIT_LIMIT,
        ),
    ],
)
def test_single_order_limits(
    make_rig: Callable[..., GatewayRig],
    limits: dict[str, int],
    ok: dict[str, int],
    bad: dict[str, int],
    reason: RejectReason,
) -> None:
    rig = make_rig([account(1, **limits)])
    s = rig.session()
    s.send(command(order_id=1, **bad))
    only_reject(rig, s, reason)
    s.send(command(order_id=2, **ok))
    passes(rig, s)


def test_market_order_is_valued_at_the_reference(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1, max_order_notional=10_000)])
    s = rig.session()
    s.send(command(order_id=1, order_type=2, tif=3, price=0, quantity=11))
    only_reject(rig, s, RejectReason.MAX_NOTIONAL)
    s.send(command(order_id=2, order_type=2, tif=3, price=0, quantity=10))
    passes(rig, s)
    # BBB has no reference price and no trade yet: a market order cannot be valued
    s.send(command(order_id=3, order_type=2, tif=3, price=0, quantity=1, symbol_id=BBB))
    only_reject(rig, s, RejectReason.MAX_NOTIONAL)


def test_stop_order_is_valued_at_the_higher_of_stop_and_reference(
    make_rig: Callable[..., GatewayRig],
) -> None:
    """A buy stop set below the market triggers at once and trades at the market's
    prices: valued at its stop price of 1 it slipped past the notional and credit limits."""
    rig = make_rig([account(1, max_order_notional=10_000)])
    s = rig.session()
    stop = {"order_type": 3, "tif": 1, "price": 0}
    s.send(command(order_id=1, stop_price=1, quantity=11, **stop))  # at AAA's reference 1000
    only_reject(rig, s, RejectReason.MAX_NOTIONAL)
    s.send(command(order_id=2, stop_price=2_000, quantity=6, **stop))  # at its stop price
    only_reject(rig, s, RejectReason.MAX_NOTIONAL)
    s.send(command(order_id=3, stop_price=1, quantity=10, **stop))
    passes(rig, s)
    s.send(command(order_id=4, stop_price=2_000, quantity=5, side=Side.SELL, **stop))
    passes(rig, s)
    # BBB has no reference price and no trade yet: a stop is valued at its stop price
    s.send(command(order_id=5, stop_price=1_000, quantity=10, symbol_id=BBB, **stop))
    passes(rig, s, shard=1)


@pytest.mark.parametrize(
    ("side", "order", "sent_price", "valued_at"),
    [
        # AAA's reference 1000, collar 5%: a market buy may trade up to 1050, a sell down to 950
        (Side.BUY, {"order_type": 2, "tif": 3}, 1050, 1050),
        (Side.SELL, {"order_type": 2, "tif": 3}, 950, 1000),
        # a stop is judged from the higher of its stop price and the reference
        (Side.BUY, {"order_type": 3, "tif": 1, "stop_price": 1200}, 1260, 1260),
        # a sell stop-loss below the market must be able to sell below its stop price
        (Side.SELL, {"order_type": 3, "tif": 1, "stop_price": 900}, 855, 1000),
    ],
)
def test_market_orders_are_sent_with_the_collar_edge_as_protection(
    make_rig: Callable[..., GatewayRig],
    side: Side,
    order: dict[str, int],
    sent_price: int,
    valued_at: int,
) -> None:
    """Without a protection price a market buy on a thin book could walk the asks to any
    price, past the notional and credit limits it was valued under at the reference."""
    rig = make_rig([account(1, price_collar_bps=500, max_order_notional=10 * valued_at)])
    s = rig.session()
    s.send(command(order_id=1, side=side, price=0, quantity=11, **order))
    only_reject(rig, s, RejectReason.MAX_NOTIONAL)
    s.send(command(order_id=2, side=side, price=0, quantity=10, **order))
    sent = passes(rig, s)
    assert (sent["price"], sent["order_type"]) == (sent_price, order["order_type"])
    assert rig.core.account_state(1).open_notional == 10 * valued_at


def test_market_order_protection_follows_the_last_trade_and_the_client_price(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1, price_collar_bps=1000), account(2)])
    s = rig.session(1)
    market = {"order_type": 2, "tif": 3}
    trade_at(rig, 1400)
    s.send(command(order_id=1, price=0, **market))
    assert passes(rig, s)["price"] == 1540  # 1400 + 10%
    # a protection price of the client's own is kept, and held to the collar like a limit
    s.send(command(order_id=2, price=1450, **market))
    assert passes(rig, s)["price"] == 1450
    s.send(command(order_id=3, price=1600, **market))
    only_reject(rig, s, RejectReason.PRICE_COLLAR)


def test_a_replaced_stop_keeps_its_valuation(make_rig: Callable[..., GatewayRig]) -> None:
    """A sell stop is valued at the higher of its stop price and the reference (1000),
    not at its protection price (855); a REPLACE that changes nothing used to revalue it
    at the protection price and free credit the account did not have."""
    rig = make_rig([account(1, price_collar_bps=500, credit_limit=10_500)])
    s = rig.session()
    stop = {"order_type": 3, "tif": 1, "price": 0, "stop_price": 900, "side": Side.SELL}
    s.send(command(order_id=1, quantity=10, **stop))
    sent = passes(rig, s)
    rig.answer(0, EventKind.ACCEPTED, sent)
    rig.poll()
    s.events()
    assert rig.core.account_state(1).open_notional == 10_000
    s.send(command(CommandKind.REPLACE, order_id=1, symbol_id=AAA, price=0, quantity=10))
    replace = passes(rig, s)
    assert replace["price"] == 0  # the engine keeps the stop's protection price
    rig.answer(0, EventKind.REPLACED, sent, leaves_qty=10)  # echoes it: 855
    rig.poll()
    s.events()
    assert rig.core.account_state(1).open_notional == 10_000
    s.send(command(order_id=2, side=Side.SELL, price=1000, quantity=1))
    only_reject(rig, s, RejectReason.CREDIT_LIMIT)


def test_a_stop_protection_price_is_collared_where_the_stop_triggers(
    make_rig: Callable[..., GatewayRig],
) -> None:
    """A client's own protection price on a sell stop at 900 (reference 1000, 5 %) may go
    down to 855; a buy stop's at 1200 up to 1260 (the price the gateway itself would set)."""
    rig = make_rig([account(1, price_collar_bps=500)])
    s = rig.session()
    for oid, side, stop_price, ok, bad in (
        (1, Side.SELL, 900, 855, 854),
        (3, Side.BUY, 1200, 1260, 1261),
    ):
        stop = {"order_type": 3, "tif": 1, "side": side, "stop_price": stop_price}
        s.send(command(order_id=oid, price=bad, **stop))
        only_reject(rig, s, RejectReason.PRICE_COLLAR)
        s.send(command(order_id=oid + 1, price=ok, **stop))
        assert passes(rig, s)["price"] == ok


def test_market_order_without_a_collar_goes_unprotected(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1)])
    s = rig.session()
    s.send(command(order_id=1, order_type=2, tif=3, price=0))
    assert passes(rig, s)["price"] == 0


def test_collar_follows_the_last_trade(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1, price_collar_bps=1000), account(2)])
    s = rig.session(1)
    s.send(command(order_id=1, price=1500))
    only_reject(rig, s, RejectReason.PRICE_COLLAR)
    trade_at(rig, 1400)  # the collar is now 1260..1540
    s.send(command(order_id=2, price=1500))
    passes(rig, s)
    s.send(command(order_id=3, price=1000))
    only_reject(rig, s, RejectReason.PRICE_COLLAR)


def test_max_open_orders(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1, max_open_orders=2)])
    s = rig.session()
    s.send(command(order_id=1), command(order_id=2))
    rig.poll()
    first, _ = rig.sent(0)
    s.send(command(order_id=3))
    only_reject(rig, s, RejectReason.MAX_OPEN_ORDERS)
    rig.answer(0, EventKind.CANCELLED, first, reason=1)
    rig.poll()
    s.events()
    s.send(command(order_id=3))
    passes(rig, s)


def test_position_counts_fills_and_open_same_side(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1, max_position=100)])
    s = rig.session()
    s.send(command(order_id=1, quantity=60))
    first = passes(rig, s)
    s.send(command(order_id=2, quantity=41))
    only_reject(rig, s, RejectReason.MAX_POSITION)  # 60 open + 41
    rig.answer(0, EventKind.ACCEPTED, first)
    rig.answer(0, EventKind.TRADE, first, quantity=60, leaves_qty=0, flags=EventFlag.DONE)
    rig.poll()
    s.events()
    assert rig.core.position(1, "AAA").position == 60
    s.send(command(order_id=2, quantity=41))
    only_reject(rig, s, RejectReason.MAX_POSITION)  # 60 held + 41
    s.send(command(order_id=3, quantity=40))
    passes(rig, s)
    # selling reduces: worst short = 40 open sell... - 60 long → fine up to 160
    s.send(command(order_id=4, side=Side.SELL, quantity=160))
    passes(rig, s)
    s.send(command(order_id=5, side=Side.SELL, quantity=1))
    only_reject(rig, s, RejectReason.MAX_POSITION)


def test_credit_counts_open_and_filled_notional(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1, credit_limit=20_000)])
    s = rig.session()
    s.send(command(order_id=1, quantity=10, price=1000))
    first = passes(rig, s)
    rig.answer(0, EventKind.ACCEPTED, first)
    rig.answer(
        0, EventKind.TRADE, first, quantity=10, price=1000, leaves_qty=0, flags=EventFlag.DONE
    )
    rig.poll()
    s.events()
    state = rig.core.account_state(1)
    assert (state.open_notional, state.filled_notional, state.open_orders) == (0, 10_000, 0)
    s.send(command(order_id=2, quantity=10, price=1000))
    second = passes(rig, s)
    s.send(command(order_id=3, quantity=1, price=1000, side=Side.SELL))
    only_reject(rig, s, RejectReason.CREDIT_LIMIT)
    rig.answer(0, EventKind.ACCEPTED, second)
    rig.answer(0, EventKind.CANCELLED, second, reason=1)
    rig.poll()
    s.events()
    s.send(command(order_id=3, quantity=10, price=1000, side=Side.SELL))
    passes(rig, s)


def test_duplicate_client_id_while_live_then_free_again(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1), account(2)])
    s = rig.session(1)
    s.send(command(order_id=5))
    first = passes(rig, s)
    s.send(command(order_id=5))
    only_reject(rig, s, RejectReason.DUPLICATE_CLIENT_ID)
    other = rig.session(2)  # ids are per session
    other.send(command(order_id=5))
    passes(rig, other)
    rig.answer(0, EventKind.REJECTED, first, reason=RejectReason.HALTED)
    rig.poll()
    (ev,) = s.events()
    assert ev["reason"] == RejectReason.HALTED and ev["order_id"] == 5
    s.send(command(order_id=5))
    passes(rig, s)


def test_gateway_validation(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig()
    s = rig.session()
    for fields, reason in [
        ({"order_id": 0}, RejectReason.INVALID_COMMAND),
        ({"symbol_id": 99}, RejectReason.UNKNOWN_SYMBOL),
        ({"side": 3}, RejectReason.INVALID_SIDE),
        ({"quantity": 0}, RejectReason.INVALID_QUANTITY),
        ({"quantity": -5}, RejectReason.INVALID_QUANTITY),
        ({"price": -1}, RejectReason.INVALID_PRICE),
    ]:
        s.send(command(**({"order_id": 1} | fields)))
        only_reject(rig, s, reason)
    s.send(command(CommandKind.MASS_CANCEL, symbol_id=99))
    rig.poll()
    assert len(rig.sent(0)) == 0
    (ev,) = s.events()
    assert ev["reason"] == RejectReason.UNKNOWN_SYMBOL


def test_mass_cancel_goes_to_every_shard_for_the_sessions_account(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(3)])
    s = rig.session(3)
    s.send(
        command(CommandKind.MASS_CANCEL, account_id=0),
        command(CommandKind.MASS_CANCEL, symbol_id=AAA),
    )
    rig.poll()
    a, b = rig.sent(0), rig.sent(1)
    assert list(a["kind"]) == [CommandKind.MASS_CANCEL] * 2 and list(a["account_id"]) == [3, 3]
    assert list(b["kind"]) == [CommandKind.MASS_CANCEL] and b[0]["account_id"] == 3
