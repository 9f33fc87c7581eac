"""The order client against the real gateway edge (fake core): colocated and TCP give the
same API and the same answers."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.client.edge_rig import KEYS, EdgeRig, edge_config, running_edge
from tests.client.raw import RawPeer
from tradsys import wire
from tradsys.client.commands import order_bytes
from tradsys.client.events import Ack, Cancelled, Fill, Reject, Replaced
from tradsys.client.orders import (
    AsyncOrderClient,
    Disconnected,
    LoginFailed,
    OrderClient,
    OrderRejected,
)
from tradsys.client.transport import ColocatedTransport
from tradsys.protocols.binary import EndReason, decode_accepted
from tradsys.ring import WaitStrategy, instance_segments
from tradsys.wire import CancelReason, RejectReason


def address(edge: EdgeRig, how: str) -> str:
    return edge.unix if how == "colocated" else f"tcp://{edge.tcp}"


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_submit_ack_fill_cancel_replace(edge: EdgeRig, how: str) -> None:
    with (
        OrderClient.connect(address(edge, how), account_id=1, api_key=KEYS[1]) as alice,
        OrderClient.connect(address(edge, "tcp"), account_id=2, api_key=KEYS[2]) as bob,
    ):
        sell = alice.submit(1, "sell", 10, 101)
        ack = alice.wait_for(sell)
        assert ack == Ack(sell, 1, wire.Side.SELL, 101, 10, 10)
        buy = bob.submit(1, "buy", 4, 102, tif="ioc")
        fill = bob.wait_for(buy, (Fill,))
        assert isinstance(fill, Fill)
        assert (fill.price, fill.quantity, fill.leaves_qty, fill.maker) == (101, 4, 0, False)
        maker = alice.wait_for(sell, (Fill,))
        assert isinstance(maker, Fill)
        assert (maker.price, maker.quantity, maker.leaves_qty, maker.maker) == (101, 4, 6, True)

        alice.replace(sell, price=103, quantity=8)
        rep = alice.wait_for(sell, (Replaced,))
        assert rep == Replaced(sell, 1, 103, 8, 4)
        alice.cancel(sell)
        cxl = alice.wait_for(sell, (Cancelled,))
        assert isinstance(cxl, Cancelled) and cxl.reason == CancelReason.USER
        assert cxl.quantity == 4


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_orders_name_symbols_from_the_gateways_directory(edge: EdgeRig, how: str) -> None:
    """The gateway sends its SYMBOLS directory after the login: a client names symbols."""
    with OrderClient.connect(address(edge, how), account_id=1, api_key=KEYS[1]) as c:
        assert c.symbols == {"ACME": 1, "ZETA": 2}
        oid = c.submit("acme", "sell", 10, 101)
        assert c.wait_for(oid) == Ack(oid, 1, wire.Side.SELL, 101, 10, 10)
        other = c.submit("ZETA", "sell", 3, 51)
        assert c.wait_for(other).symbol_id == 2
        with pytest.raises(
            ValueError, match="unknown symbol 'NOPE'; the gateway trades: ACME, ZETA"
        ):
            c.submit("NOPE", "buy", 1, 100)
        c.mass_cancel("ZETA")
        cxl = c.wait_for(other, (Cancelled,))
        assert isinstance(cxl, Cancelled) and cxl.reason == CancelReason.MASS_CANCEL


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_a_rejected_order_raises_with_the_reason(edge: EdgeRig, how: str) -> None:
    with OrderClient.connect(address(edge, how), account_id=1, api_key=KEYS[1]) as c:
        oid = c.submit(99, "buy", 1, 100)  # no such symbol
        with pytest.raises(OrderRejected) as info:
            c.wait_for(oid)
        assert info.value.reason == RejectReason.UNKNOWN_SYMBOL
        assert "UNKNOWN_SYMBOL (unknown symbol)" in str(info.value)
        assert isinstance(info.value.reject, Reject)


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_bad_credentials_are_refused_and_leave_nothing(edge: EdgeRig, how: str) -> None:
    for account, key in ((1, "wrong"), (42, KEYS[1]), (2, KEYS[1])):
        with pytest.raises(LoginFailed) as info:
            OrderClient.connect(address(edge, how), account_id=account, api_key=key)
        assert info.value.reason == 1 and "bad credentials" in info.value.text
    assert edge.stats()["sessions"] == 0
    assert instance_segments(edge.config.engine.instance) == []


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_batch_submit_of_numpy_records(edge: EdgeRig, how: str) -> None:
    with OrderClient.connect(address(edge, how), account_id=1, api_key=KEYS[1]) as c:
        n = 3000
        orders = np.zeros(n, wire.COMMAND_DTYPE)
        orders["kind"] = wire.CommandKind.NEW_ORDER
        orders["order_id"] = np.arange(1, n + 1)
        orders["symbol_id"] = 2
        orders["side"] = wire.Side.BUY
        orders["order_type"] = wire.OrderType.LIMIT
        orders["tif"] = wire.TimeInForce.GTC
        orders["quantity"] = 1
        orders["price"] = 40 + np.arange(n) % 5
        c.submit_batch(orders)
        got: list[np.ndarray] = []
        total = 0
        while total < n:
            recs = c.poll_records(5.0)
            assert len(recs), f"only {total} of {n} acks"
            got.append(recs.copy())
            total += len(recs)
        events = np.concatenate(got)
        assert (events["kind"] == wire.EventKind.ACCEPTED).all()
        assert events["order_id"].tolist() == list(range(1, n + 1))


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_async_client_same_api(edge: EdgeRig, how: str) -> None:
    async def main() -> None:
        async with await AsyncOrderClient.connect(
            address(edge, how), account_id=3, api_key=KEYS[3]
        ) as c:
            oid = await c.submit(1, "buy", 2, 99, post_only=True)
            ack = await c.wait_for(oid)
            assert isinstance(ack, Ack) and ack.leaves_qty == 2
            await c.mass_cancel()
            cxl = await c.wait_for(oid, (Cancelled,))
            assert isinstance(cxl, Cancelled) and cxl.reason == CancelReason.MASS_CANCEL

    asyncio.run(main())


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_async_wait_for_keeps_other_orders_events_in_order(edge: EdgeRig, how: str) -> None:
    """As the sync client's: what wait_for passes over comes next from next_event, in
    order, and one it already passed over answers a later wait_for at once."""

    async def main() -> None:
        async with await AsyncOrderClient.connect(
            address(edge, how), account_id=3, api_key=KEYS[3]
        ) as c:
            first = await c.submit(1, "buy", 1, 91, order_id=801)
            second = await c.submit(1, "buy", 1, 92, order_id=802)
            third = await c.submit(1, "buy", 1, 93, order_id=803)
            assert (await c.wait_for(third)).order_id == third  # passes over 801, 802
            assert (await c.wait_for(second)).order_id == second  # kept: at once
            assert (await c.next_event()).order_id == first
            await c.mass_cancel()
            assert (await c.wait_for(third, (Cancelled,))).order_id == third
            rest = [await c.next_event(timeout=5) for _ in range(2)]
            assert sorted(e.order_id for e in rest) == [first, second]
            assert all(isinstance(e, Cancelled) for e in rest)

    asyncio.run(main())


def test_colocated_client_learns_the_gateway_is_gone(edge: EdgeRig) -> None:
    c = OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1])
    try:
        edge.call(edge.server.colocated.shutdown())
        with pytest.raises(Disconnected):
            for _ in range(100):
                c.poll(0.05)
    finally:
        c.close()


def test_tcp_client_learns_of_shutdown(edge: EdgeRig) -> None:
    c = OrderClient.connect(f"tcp://{edge.tcp}", account_id=1, api_key=KEYS[1])
    try:
        edge.run(edge.server.tcp.shutdown)
        with pytest.raises(Disconnected, match="stopping"):
            for _ in range(100):
                c.poll(0.05)
    finally:
        c.close()
    assert os.path.exists(edge.unix)


def test_an_idle_tcp_client_is_kept_alive_by_its_heartbeats(edge: EdgeRig) -> None:
    import time

    with OrderClient.connect(f"tcp://{edge.tcp}", account_id=1, api_key=KEYS[1]) as c:
        time.sleep(5 * 0.2)  # idle (not waiting for anything) for 5 heartbeat intervals
        assert isinstance(c.wait_for(c.submit(1, "buy", 1, 90)), Ack)
        assert edge.stats()["heartbeat_timeouts"] == 0


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_a_login_says_how_many_events_were_dropped_while_away(edge: EdgeRig, how: str) -> None:
    edge.core.dropped[1] = 4242  # the core dropped them past the account's held cap
    with OrderClient.connect(address(edge, how), account_id=1, api_key=KEYS[1]) as first:
        assert first.events_dropped == 4242
    with OrderClient.connect(address(edge, how), account_id=1, api_key=KEYS[1]) as again:
        assert again.events_dropped == 0  # told once


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_a_login_never_heard_from_leaves_the_dropped_count_for_the_next(
    edge: EdgeRig, how: str
) -> None:
    """A connection that breaks right after LOGIN_ACCEPTED may never have read its
    events_dropped: with nothing heard from that client, the next login is told again."""
    edge.core.dropped[1] = 7
    peer = RawPeer.unix(edge.unix) if how == "colocated" else RawPeer.tcp(edge.host, edge.port)
    _, _, body = peer.login(1, KEYS[1])
    assert decode_accepted(body).events_dropped == 7
    peer.close()  # gone without a word after the login
    deadline = time.monotonic() + 10
    while edge.stats()["sessions_closed"] < 1:
        assert time.monotonic() < deadline, "the gateway did not end the broken session"
    with OrderClient.connect(address(edge, how), account_id=1, api_key=KEYS[1]) as second:
        assert second.events_dropped == 7  # told again; the library says it read it
    with OrderClient.connect(address(edge, how), account_id=1, api_key=KEYS[1]) as third:
        assert third.events_dropped == 0


def test_two_clients_of_one_account_number_their_orders_apart(edge: EdgeRig) -> None:
    """Orders belong to the account, so its clients' ids must not meet: each client counts
    from its own start time (ms << 20), and two of them trade side by side."""
    from tradsys.client.commands import first_client_id

    assert first_client_id(1_000_000, 0) == 1 << 20 and first_client_id(2_000_000, 0) == 2 << 20
    # started in the same millisecond: apart all the same (before, both began at ms << 20,
    # and the second's orders were refused DUPLICATE_CLIENT_ID, its cancels the first's)
    same_ms = [first_client_id(5_000_000) for _ in range(1000)]
    assert all(5 << 20 <= i < (5 << 20) + (1 << 19) for i in same_ms)
    assert len(set(same_ms)) > 990
    with OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1]) as first:
        a = first.submit(1, "sell", 5, 110)
        assert isinstance(first.wait_for(a), Ack)
        start = time.time_ns()
        while time.time_ns() - start < 2_000_000:  # the next client starts a ms later or more
            pass
        with OrderClient.connect(f"tcp://{edge.tcp}", account_id=1, api_key=KEYS[1]) as second:
            b = second.submit(1, "sell", 5, 111)
            assert isinstance(second.wait_for(b), Ack)  # not DUPLICATE_CLIENT_ID
            assert b - a >= 1 << 20


@pytest.mark.parametrize("wait", ["busy-spin", "spin-yield", WaitStrategy.spin_park()])
def test_a_colocated_client_chooses_how_it_waits(edge: EdgeRig, wait: str | WaitStrategy) -> None:
    """``wait`` reaches the rings: the client sends and reads with the strategy asked for."""
    with OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1], wait=wait) as c:
        expected = WaitStrategy.named(wait) if isinstance(wait, str) else wait
        assert isinstance(c.transport, ColocatedTransport)
        assert c.transport.wait == expected
        oid = c.submit(1, "sell", 10, 101)
        assert c.wait_for(oid) == Ack(oid, 1, wire.Side.SELL, 101, 10, 10)


def test_a_wait_strategy_is_refused_for_tcp_and_an_unknown_one_named(edge: EdgeRig) -> None:
    with pytest.raises(ValueError, match="colocated sessions"):
        OrderClient.connect(f"tcp://{edge.tcp}", account_id=1, api_key=KEYS[1], wait="busy-spin")
    with pytest.raises(ValueError, match="unknown wait strategy 'spin-fast'"):
        OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1], wait="spin-fast")
    assert edge.stats()["sessions"] == 0
    assert instance_segments(edge.config.engine.instance) == []


@pytest.mark.parametrize("how", ["colocated", "tcp"])
def test_a_refused_order_sends_nothing_and_the_client_goes_on(edge: EdgeRig, how: str) -> None:
    with OrderClient.connect(address(edge, how), account_id=1, api_key=KEYS[1]) as c:
        before = edge.core.commands
        for bad in ({"quantity": 1.5}, {"price": 2**63}, {"order_id": -5}):
            args = {"symbol_id": 1, "side": "buy", "quantity": 1, "price": 99, **bad}
            with pytest.raises(ValueError, match=r"is not a whole number in its field's range"):
                c.submit(**args)
        assert c._symbols == {}, "a refused order is not remembered as sent"
        oid = c.submit(1, "buy", 1, 99)
        assert c.wait_for(oid) == Ack(oid, 1, wire.Side.BUY, 99, 1, 1)
        assert edge.core.commands == before + 1


def test_a_full_inbound_ring_times_out_and_loses_nothing_it_took(
    instance: str, tmp_path: Path
) -> None:
    """With the pump stopped, single sends fill the session's inbound ring, then one waits
    for room and gives up (TimeoutError, naming the ring) without a partial write; once the
    pump runs again every order the ring took is answered."""
    with (
        running_edge(edge_config(instance, tmp_path, session_ring_capacity=8)) as edge,
        OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1]) as c,
    ):
        edge.core.stop()
        taken = []
        while c.transport.inbound.writable:  # type: ignore[attr-defined]
            taken.append(c.submit(1, "buy", 1, 90 + len(taken)))
        assert len(taken) == 8
        record = order_bytes(10**9, 1, "buy", 1, 99)
        with pytest.raises(TimeoutError, match=r"inbound ring .* stayed full: 0 of 1"):
            c.transport.send_one(record, timeout=0.05)
        assert c.transport.inbound.readable == 8  # type: ignore[attr-defined]
        edge.core.resume()
        acks = [c.wait_for(oid) for oid in taken]
        assert [a.price for a in acks if isinstance(a, Ack)] == list(range(90, 98))
        assert edge.core.commands == 8


def test_an_async_send_waiting_for_room_leaves_the_loop_running(
    instance: str, tmp_path: Path
) -> None:
    """With the pump stopped, submits fill the session's inbound ring; the next two wait
    for room in a worker thread, in the order made, while the loop goes on -- here a task
    that resumes the pump runs meanwhile -- then go, and every order is answered in the
    order sent. (Before, the first waited in the loop's own thread: the task never ran,
    the pump stayed stopped and the submit gave up after 10 s.)"""
    with running_edge(edge_config(instance, tmp_path, session_ring_capacity=8)) as edge:

        async def main() -> None:
            async with await AsyncOrderClient.connect(
                edge.unix, account_id=1, api_key=KEYS[1]
            ) as c:
                assert isinstance(c.transport, ColocatedTransport)
                edge.core.stop()
                sent = []
                while c.transport.inbound.writable:
                    sent.append(await c.submit(1, "buy", 1, 90, order_id=len(sent) + 1))
                waiting = [
                    asyncio.create_task(c.submit(1, "buy", 1, 90, order_id=len(sent) + k))
                    for k in (1, 2)
                ]
                sent += [len(sent) + 1, len(sent) + 2]
                await asyncio.sleep(0)  # both submits are waiting now
                assert not any(t.done() for t in waiting)
                resumer = asyncio.create_task(asyncio.to_thread(edge.core.resume))
                await asyncio.wait_for(asyncio.gather(resumer, *waiting), 5)
                acks = [await c.next_event(5) for _ in sent]
                assert [a.order_id for a in acks if isinstance(a, Ack)] == sent

        asyncio.run(main())


@pytest.mark.timeout(60)
def test_a_send_waiting_for_room_sees_the_session_end(instance: str, tmp_path: Path) -> None:
    """A send that waits for room with no timeout looks at the socket between waits, as a
    poll does: a session the gateway ended raises Disconnected instead of waiting for
    ever on a ring nobody will read again."""
    with (
        running_edge(edge_config(instance, tmp_path, session_ring_capacity=8)) as edge,
        OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1]) as c,
    ):
        assert isinstance(c.transport, ColocatedTransport)
        edge.core.stop()
        while c.transport.inbound.writable:
            c.submit(1, "buy", 1, 90)
        (session,) = edge.run(lambda: list(edge.server.colocated.held))
        reason = EndReason.SLOW_CONSUMER
        assert edge.run(lambda: edge.server.colocated.end(session, reason, "held back"))
        with pytest.raises(Disconnected, match=r"ended the session \(SLOW_CONSUMER\): held back"):
            c.transport.send_one(order_bytes(10**9, 1, "buy", 1, 99), timeout=None)
        edge.core.resume()
