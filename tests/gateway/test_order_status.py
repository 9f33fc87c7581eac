"""ORDER_STATUS: the gateway answers a session with its account's live orders, by client
order id, then a closing record, at one place in the session's event stream. The random
streams of test_reference_model.py check the answer against the model; these pin down
what those do not reach: the answer after other commands of the same batch, waiting for
room, too large an answer, and the events held for the session going first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tests.conftest import RingFactory
from tests.gateway.rig import AAA, BBB, GatewayRig, Session, account, command
from tradsys.cores.gateway_rings import RingMaker
from tradsys.cores.gateway_sessions import SessionTable
from tradsys.cores.gateway_stale import UnsentCommands, answer_unsent
from tradsys.wire import EVENT_DTYPE, CommandKind, EventFlag, EventKind, OrderState, RejectReason


def status(request_id: int = 77, symbol_id: int = 0) -> np.ndarray[Any, Any]:
    return command(CommandKind.ORDER_STATUS, order_id=request_id, symbol_id=symbol_id)


def answer_of(events: np.ndarray[Any, Any]) -> tuple[list[tuple[int, ...]], int]:
    """The ORDER_STATUS records of ``events``: (client id, symbol, state, qty, leaves) per
    order, and the count its closing record gives (which must be the last record)."""
    rows = [e for e in events if e["kind"] == EventKind.ORDER_STATUS]
    assert rows, "no ORDER_STATUS answer"
    last = rows[-1]
    assert last["flags"] == EventFlag.LAST and all(r["flags"] == 0 for r in rows[:-1])
    orders = [
        (int(r["order_id"]), int(r["symbol_id"]), int(r["reason"]), int(r["quantity"]),
         int(r["leaves_qty"]))
        for r in rows[:-1]
    ]  # fmt: skip
    assert int(last["quantity"]) == len(orders)
    return orders, int(last["order_id"])


def test_the_answer_lists_every_live_order_by_client_id_with_its_state(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1, cancel_on_disconnect=False), account(2)])
    one, two, other = rig.session(1), rig.session(1), rig.session(2)
    # resting orders of the account on both of its sessions, out of id order
    rested = {cid: rig.rest(s, command(order_id=cid, quantity=cid)) for s, cid in
              ((two, 30), (one, 10), (two, 20))}  # fmt: skip
    rig.rest(other, command(order_id=15))  # another account's: never listed
    one.events(), two.events(), other.events()
    rig.answer(0, EventKind.TRADE, rested[30], quantity=5, leaves_qty=25)
    rig.poll()
    two.events()
    # a cancel in flight, and a new order not yet acknowledged, in the batch before it
    one.send(command(CommandKind.CANCEL, order_id=20), command(order_id=5, quantity=7),
             status(request_id=99))  # fmt: skip
    rig.poll()
    orders, request = answer_of(one.events())
    assert request == 99
    assert orders == [
        (5, AAA, OrderState.PENDING_NEW, 7, 7),
        (10, AAA, OrderState.OPEN, 10, 10),
        (20, AAA, OrderState.AMENDING, 20, 20),
        (30, AAA, OrderState.OPEN, 30, 25),
    ]
    assert rig.core.stats()["status_requests"] == 1
    assert len(rig.sent(0)) == 2  # the cancel and the new order: the request reaches no shard


def test_the_answer_comes_after_the_rejects_of_the_commands_before_it(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1)])
    s = rig.session(1)
    s.send(command(CommandKind.CANCEL, order_id=404), status(request_id=1),
           command(CommandKind.CANCEL, order_id=405))  # fmt: skip
    rig.poll()
    kinds = [(int(e["kind"]), int(e["order_id"])) for e in s.events()]
    assert kinds == [(EventKind.REJECTED, 404), (EventKind.ORDER_STATUS, 1),
                     (EventKind.REJECTED, 405)]  # fmt: skip


def test_one_symbol_and_an_unknown_symbol(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1)])
    s = rig.session(1)
    rig.rest(s, command(order_id=1))
    s.send(command(order_id=2, symbol_id=BBB, price=50))
    rig.poll()
    s.events()
    s.send(status(request_id=3, symbol_id=BBB), status(request_id=4, symbol_id=999))
    rig.poll()
    events = s.events()
    orders, request = answer_of(events[:-1])
    assert (orders, request) == ([(2, BBB, OrderState.PENDING_NEW, 10, 10)], 3)
    reject = events[-1]
    assert (reject["kind"], reject["reason"], reject["order_id"]) == (
        EventKind.REJECTED, RejectReason.UNKNOWN_SYMBOL, 4
    )  # fmt: skip


def _rest_many(rig: GatewayRig, s: Session, n: int, first: int = 1) -> None:
    s.send(*(command(order_id=first + i) for i in range(n)))
    rig.poll()
    for sent in rig.sent(0):
        rig.answer(0, EventKind.ACCEPTED, sent)
    rig.poll()


def test_the_answer_waits_for_room_in_the_event_ring(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1)])
    s = rig.session(1, capacity=32)
    _rest_many(rig, s, 12)  # 12 acks unread
    s.send(*(command(CommandKind.CANCEL, order_id=900 + i) for i in range(10)))
    rig.poll()  # and 10 rejects: room for 10, the answer is 13
    s.send(status(request_id=8), command(CommandKind.CANCEL, order_id=404))
    rig.poll()
    assert s.to_gateway.readable == 2  # neither taken: the cancel waits behind it
    assert len(s.events()) == 22
    rig.poll()
    events = s.events()
    orders, request = answer_of(events[:-1])
    assert request == 8 and [o[0] for o in orders] == list(range(1, 13))
    assert (events[-1]["kind"], events[-1]["order_id"]) == (EventKind.REJECTED, 404)


def test_an_answer_over_half_the_ring_is_rejected(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1)])
    s = rig.session(1, capacity=16)  # answers of up to 8 records
    _rest_many(rig, s, 7)
    s.events()
    s.send(status(request_id=4))
    rig.poll()
    orders, request = answer_of(s.events())
    assert request == 4 and len(orders) == 7  # 8 records: fits
    _rest_many(rig, s, 1, first=8)
    s.events()
    s.send(status(request_id=5))
    rig.poll()
    (reject,) = s.events()
    assert (reject["kind"], reject["reason"], reject["order_id"]) == (
        EventKind.REJECTED, RejectReason.STATUS_TOO_LARGE, 5
    )  # fmt: skip
    s.send(status(request_id=6, symbol_id=BBB))  # per symbol, it fits
    rig.poll()
    assert answer_of(s.events()) == ([], 6)


def test_held_events_come_before_the_answer(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1, cancel_on_disconnect=False)])
    old = rig.session(1)
    sent = rig.rest(old, command(order_id=5, quantity=10))
    old.events()  # its ack read: not held
    rig.core.remove_session(old.id)
    rig.answer(0, EventKind.TRADE, sent, quantity=4, leaves_qty=6, price=1000)
    rig.poll()  # no session: the fill is held for the account's next one
    new = rig.session(1)
    new.send(status(request_id=2))
    rig.poll()
    fill, *answer = new.events()
    assert (fill["kind"], fill["order_id"], fill["leaves_qty"]) == (EventKind.TRADE, 5, 6)
    assert answer_of(np.array(answer)) == ([(5, AAA, OrderState.OPEN, 10, 6)], 2)


def test_a_leaving_sessions_request_is_not_answered(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1, cancel_on_disconnect=False)])
    s = rig.session(1)
    rig.rest(s, command(order_id=1))
    s.events()
    s.send(status(request_id=3))
    rig.core.remove_session(s.id)  # before the pump took it
    nxt = rig.session(1)
    rig.poll()
    assert len(nxt.events()) == 0  # nothing held for it: the picture would be stale
    assert rig.core.stats()["status_requests"] == 0


def test_events_dropped_past_the_held_cap_are_counted_for_the_next_login(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1, cancel_on_disconnect=False)])
    old = rig.session(1)
    sent = rig.rest(old, command(order_id=5, quantity=10_000))
    old.events()
    rig.core.remove_session(old.id)
    held_cap, extra = 4096, 10
    for start in range(0, held_cap + extra, 512):  # one-lot fills while nobody is logged in
        for k in range(start, min(start + 512, held_cap + extra)):
            rig.answer(0, EventKind.TRADE, sent, quantity=1, leaves_qty=10_000 - k - 1)
        while rig.poll():
            pass
    assert rig.core.take_dropped(1) == extra
    assert rig.core.take_dropped(1) == 0  # taken: the count starts again
    rig.core.return_dropped(1, extra)  # a login that never read it gives it back
    rig.core.return_dropped(99, 5)  # an account the gateway does not know: nothing
    assert (rig.core.take_dropped(1), rig.core.take_dropped(99)) == (extra, 0)
    new = rig.session(1)
    rig.poll()
    assert len(new.events()) == 256  # the held ones come as the ring has room
    new.send(status(request_id=1))
    got = [new.events()]
    while rig.poll():  # the answer waits until every held event is out
        got.append(new.events())
    got.append(new.events())
    events = np.concatenate(got)
    rest = held_cap - 256  # the held fills not read above, then the answer (2 records)
    assert len(events) == rest + 2
    assert (events["kind"][:rest] == EventKind.TRADE).all()
    orders, _ = answer_of(events[rest:])
    assert orders == [(5, AAA, OrderState.OPEN, 10_000, 10_000 - held_cap - extra)]


def test_a_restart_keeps_the_dropped_count_for_the_clients_login(
    make_rig: Callable[..., GatewayRig], rings: RingFactory
) -> None:
    """The restarted gateway's own session (the GATEWAY_RESTARTED answers to what the dead
    one never took) does not take the count: the client's login is told."""
    rig = make_rig([account(1, cancel_on_disconnect=False)])
    stale = rings.create(capacity=8192, role="producer")  # the dead gateway's event ring
    unread = np.zeros(4096 + 10, EVENT_DTYPE)
    unread["kind"], unread["account_id"], unread["symbol_id"] = EventKind.TRADE, 1, AAA
    unread["order_id"] = unread["exec_id"] = np.arange(1, len(unread) + 1)
    assert stale.push_batch(unread) == len(unread)
    assert rig.core.hold_stale_ring(stale) == 4096
    table = SessionTable(rig.core, RingMaker(rig.config.engine.instance + "x", 64), 8)
    sent = [UnsentCommands("ring", 1, command(order_id=99))]
    answer_unsent(table, rig.config, sent)  # its reject finds the cap full too
    login = table.open(rig.config.accounts[0], "colocated")
    try:
        assert login.events_dropped == 10 + 1
    finally:
        table.close(login)


def test_an_unread_answer_is_not_kept_for_the_next_session(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1, cancel_on_disconnect=False)])
    s = rig.session(1)
    sent = [rig.rest(s, command(order_id=i)) for i in (1, 2, 3)]
    s.events()
    s.send(status(request_id=9))
    rig.poll()  # the answer (4 records) is in its ring, unread, when the client dies
    rig.core.remove_session(s.id)
    rig.answer(0, EventKind.TRADE, sent[0], quantity=1, leaves_qty=9)
    rig.poll()
    new = rig.session(1)
    rig.poll()
    (fill,) = new.events()  # the fill is kept; the stale picture is not
    assert (fill["kind"], fill["order_id"]) == (EventKind.TRADE, 1)
    assert rig.core.take_dropped(1) == 0
