"""Commands reach the right shard with gateway ids; events come back to the right session
with the client's ids; unknown ids are counted and dropped."""

from __future__ import annotations

from collections.abc import Callable

from tests.gateway.rig import AAA, BBB, GatewayRig, account, command
from tradsys.wire import CommandKind, EventFlag, EventKind, RejectReason

EPOCH_SHIFT = 40


def test_new_order_gets_an_exchange_id_and_the_sessions_account(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1), account(2)])
    s = rig.session(1)
    s.send(command(order_id=55, account_id=999), command(order_id=56, symbol_id=BBB, price=7))
    rig.poll()
    (a,) = rig.sent(0)
    (b,) = rig.sent(1)
    assert a["account_id"] == 1 and b["account_id"] == 1
    assert a["order_id"] >> EPOCH_SHIFT == rig.epoch
    assert b["order_id"] > a["order_id"]
    assert a["symbol_id"] == AAA and a["quantity"] == 10 and a["price"] == 1000


def test_events_go_back_to_the_owner_with_its_client_ids(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1), account(2)])
    buyer, seller = rig.session(1), rig.session(2)
    buyer.send(command(order_id=1))
    seller.send(command(order_id=1, side=2))
    rig.poll()
    bid, ask = rig.sent(0)
    rig.answer(0, EventKind.ACCEPTED, bid)
    rig.answer(0, EventKind.ACCEPTED, ask)
    rig.answer(
        0,
        EventKind.TRADE,
        ask,
        quantity=10,
        leaves_qty=0,
        flags=EventFlag.DONE,
        contra_order_id=int(bid["order_id"]),
    )
    rig.answer(
        0,
        EventKind.TRADE,
        bid,
        quantity=10,
        leaves_qty=0,
        flags=EventFlag.DONE,
        contra_order_id=int(ask["order_id"]),
    )
    rig.poll()
    b, s = buyer.events(), seller.events()
    assert list(b["kind"]) == [EventKind.ACCEPTED, EventKind.TRADE]
    assert list(s["kind"]) == [EventKind.ACCEPTED, EventKind.TRADE]
    assert set(b["order_id"]) == {1} and set(s["order_id"]) == {1}
    assert set(b["contra_order_id"]) == {0} and set(s["contra_order_id"]) == {0}
    assert rig.core.stats()["live_orders"] == 0


def test_cancel_names_the_order_by_client_id(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig()
    s = rig.session()
    s.send(command(order_id=9))
    rig.poll()
    (new,) = rig.sent(0)
    s.send(command(CommandKind.CANCEL, order_id=9))
    rig.poll()
    (cxl,) = rig.sent(0)
    assert cxl["kind"] == CommandKind.CANCEL
    assert cxl["order_id"] == new["order_id"] and cxl["account_id"] == 1
    assert cxl["symbol_id"] == AAA


def test_unknown_client_id_and_bad_kind_never_reach_a_shard(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig()
    s = rig.session()
    s.send(
        command(CommandKind.CANCEL, order_id=4),
        command(CommandKind.REPLACE, order_id=4, price=10, quantity=1),
        command(CommandKind.CONTROL, control=3),
        command(0),
        command(77),
    )
    rig.poll()
    assert len(rig.sent(0)) == 0 and len(rig.sent(1)) == 0
    ev = s.events()
    assert list(ev["kind"]) == [EventKind.REJECTED] * 5
    assert (
        list(ev["reason"])
        == [RejectReason.UNKNOWN_CLIENT_ID] * 2 + [RejectReason.INVALID_COMMAND] * 3
    )


def test_events_for_unknown_ids_are_counted_and_dropped(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig()
    s = rig.session()
    rig.answer(0, EventKind.ACCEPTED, command(order_id=12345)[0])
    rig.poll()
    assert len(s.events()) == 0
    assert rig.core.stats()["events_unknown"] == 1
