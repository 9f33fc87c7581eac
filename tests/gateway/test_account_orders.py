"""Orders belong to the account: client ids are unique per account, a session that goes
away (without cancel-on-disconnect) leaves its orders to the account's other or next
session (which first gets the events that came meanwhile), and an amend from another
session of the account takes the order over. And the per-account throttle, one bucket
across all of an account's sessions."""

from __future__ import annotations

from collections.abc import Callable

from tests.gateway.rig import GatewayRig, account, command
from tradsys.wire import CommandKind, EventKind, RejectReason

SECOND = 1_000_000_000


def test_client_ids_are_unique_per_account(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1), account(2)])
    a1, a2, b = rig.session(1), rig.session(1), rig.session(2)
    a1.send(command(order_id=7))
    rig.poll()
    a2.send(command(order_id=7))  # the account has a live order 7 already
    b.send(command(order_id=7))  # another account may use the same id
    rig.poll()
    assert a2.events()[0]["reason"] == RejectReason.DUPLICATE_CLIENT_ID
    assert len(b.events()) == 0
    assert len(rig.sent(0)) == 2


def test_a_closed_sessions_orders_go_to_the_next_session(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1, cancel_on_disconnect=False), account(2)])
    old = rig.session(1)
    sent = rig.rest(old, command(order_id=5, quantity=10))
    assert len(old.events()) == 1
    rig.core.remove_session(old.id)
    rig.poll()
    assert len(rig.sent(0)) == 0  # nothing cancelled
    # a fill while the account has no session: counted at once, kept for its next session
    rig.answer(0, EventKind.TRADE, sent, quantity=4, leaves_qty=6, price=1000)
    rig.poll()
    assert rig.core.position(1, 1).position == 4
    assert (rig.core.stats()["events_held"], rig.core.stats()["events_orphaned"]) == (1, 0)
    new = rig.session(1)
    assert rig.core.stats()["orders_adopted"] == 1
    rig.answer(0, EventKind.TRADE, sent, quantity=1, leaves_qty=5, price=1000)
    rig.poll()
    # the held fill first, then the new one, both under the client's id
    held, fill = new.events()
    assert (held["kind"], held["order_id"], held["quantity"]) == (EventKind.TRADE, 5, 4)
    assert (fill["kind"], fill["order_id"], fill["quantity"]) == (EventKind.TRADE, 5, 1)
    # the new session amends it by its client id
    new.send(command(CommandKind.REPLACE, order_id=5, price=999, quantity=8))
    new.send(command(CommandKind.CANCEL, order_id=5))
    rig.poll()
    replace, cancel = rig.sent(0)
    assert replace["order_id"] == cancel["order_id"] == sent["order_id"]
    rig.answer(0, EventKind.CANCELLED, cancel, quantity=5, leaves_qty=0)
    rig.poll()
    assert [int(e["kind"]) for e in new.events()] == [EventKind.CANCELLED]
    assert rig.core.account_state(1).open_orders == 0


def test_the_accounts_other_live_session_takes_over_at_once(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1, cancel_on_disconnect=False)])
    first, second = rig.session(1), rig.session(1)
    first.send(command(order_id=1))
    rig.poll()
    (sent,) = rig.sent(0)
    rig.core.remove_session(first.id)
    rig.answer(0, EventKind.ACCEPTED, sent)
    rig.poll()
    (ack,) = second.events()
    assert (ack["kind"], ack["order_id"]) == (EventKind.ACCEPTED, 1)


def test_an_amend_from_another_session_takes_the_order_over(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1)])
    first, second = rig.session(1), rig.session(1)
    first.send(command(order_id=1))
    rig.poll()
    assert len(rig.sent(0)) == 1
    second.send(command(CommandKind.CANCEL, order_id=1))
    rig.poll()
    (cxl,) = rig.sent(0)
    rig.answer(0, EventKind.CANCELLED, cxl, quantity=10, leaves_qty=0)
    rig.poll()
    assert len(first.events()) == 0
    assert [int(e["kind"]) for e in second.events()] == [EventKind.CANCELLED]


def test_cancel_on_disconnect_still_cancels(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1, cancel_on_disconnect=True)])
    old = rig.session(1)
    old.send(command(order_id=1), command(order_id=2))
    rig.poll()
    sent = rig.sent(0)
    rig.core.remove_session(old.id)
    rig.poll()
    cancels = rig.sent(0)
    # newest first, the same exchange ids
    assert list(cancels["order_id"]) == sorted(sent["order_id"], reverse=True)
    new = rig.session(1)
    new.send(command(CommandKind.CANCEL, order_id=1))  # given up with the old session
    rig.poll()
    assert new.events()[0]["reason"] == RejectReason.UNKNOWN_CLIENT_ID


def test_the_account_throttle_is_shared_by_its_sessions(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1, account_throttle_per_s=10, account_throttle_burst=4)])
    a, b = rig.session(1), rig.session(1)
    now = 10**15
    a.send(*(command(order_id=i) for i in range(1, 4)))
    b.send(*(command(order_id=i) for i in range(11, 14)))
    rig.poll(now)
    assert len(rig.sent(0)) == 4
    rejects = list(a.events()["reason"]) + list(b.events()["reason"])
    assert rejects == [RejectReason.ACCOUNT_THROTTLED] * 2
    assert rig.core.stats()["rejects.ACCOUNT_THROTTLED"] == 2
    # 0.1 s later one token is back, for whichever session asks first
    b.send(command(order_id=21), command(order_id=22))
    rig.poll(now + SECOND // 10)
    assert len(rig.sent(0)) == 1
    assert list(b.events()["reason"]) == [RejectReason.ACCOUNT_THROTTLED]
    # hot reload: a new rate refills the bucket at once; 0 turns it off
    rig.core.set_account_limits(account(1, account_throttle_per_s=1, account_throttle_burst=2))
    a.send(*(command(order_id=i) for i in range(31, 34)))
    rig.poll(now + SECOND // 10)
    assert len(rig.sent(0)) == 2 and len(a.events()) == 1
    rig.core.set_account_limits(account(1))
    a.send(*(command(order_id=i) for i in range(41, 46)))
    rig.poll(now + SECOND // 10)
    assert len(rig.sent(0)) == 5 and len(a.events()) == 0


def test_an_order_the_account_bucket_refuses_keeps_its_session_token(
    make_rig: Callable[..., GatewayRig],
) -> None:
    """A throttled order takes no token: not even from its session's bucket when it is
    the account's bucket that refuses it."""
    rig = make_rig(
        [
            account(
                1,
                throttle_per_s=1,
                throttle_burst=3,
                account_throttle_per_s=1000,
                account_throttle_burst=1,
            )
        ]
    )
    s = rig.session(1)
    now = 10**15
    s.send(*(command(order_id=i) for i in (1, 2, 3)))
    rig.poll(now)
    assert len(rig.sent(0)) == 1
    assert list(s.events()["reason"]) == [RejectReason.ACCOUNT_THROTTLED] * 2
    # 2 ms on the account's bucket has a token again, and the session's still has two
    s.send(command(order_id=4))
    rig.poll(now + 2_000_000)
    assert len(rig.sent(0)) == 1 and len(s.events()) == 0


def test_the_session_throttle_comes_before_the_account_throttle(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1, throttle_per_s=1, throttle_burst=1, account_throttle_per_s=1)])
    s = rig.session(1)
    s.send(command(order_id=1), command(order_id=2))
    rig.poll(10**15)
    assert list(s.events()["reason"]) == [RejectReason.THROTTLED]
    t = rig.session(1)
    t.send(command(order_id=3))
    rig.poll(10**15)
    assert list(t.events()["reason"]) == [RejectReason.ACCOUNT_THROTTLED]
