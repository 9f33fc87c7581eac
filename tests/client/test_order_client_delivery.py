"""What the order client hands the application, and what it leaves to the account's next
session: a TCP session acknowledges from its login, events the application has not been
handed (wait_for's other events, the async queue, the rest of a batch whose callback
raised) stay the session's, a colocated poll notices the session's end within a quarter
second whatever its timeout, and closing an async client ends its event iterators."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.client.edge_rig import KEYS, EdgeRig, edge_config, running_edge
from tests.conftest import Children
from tradsys import wire
from tradsys.client.events import Ack, Event
from tradsys.client.orders import AsyncOrderClient, Disconnected, OrderClient
from tradsys.client.transport import ColocatedTransport

HOW = ["colocated", "tcp"]


def _address(edge: EdgeRig, how: str) -> str:
    return edge.unix if how == "colocated" else f"tcp://{edge.tcp}"


def _until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def edge(instance: str, tmp_path: Path) -> Iterator[EdgeRig]:
    """The edge over the fake core, which here also notes what a colocated session's event
    ring still holds when it is removed: the real core keeps those records for the
    account's next session (the TCP edge hands its unacknowledged ones over itself)."""
    with running_edge(edge_config(instance, tmp_path)) as rig:
        _note_ring_leftovers(rig)
        yield rig


def _note_ring_leftovers(edge: EdgeRig) -> None:
    core = edge.core
    remove = core.remove_session

    def remove_session(session_id: int, unread: Any = None, unsent: Any = None) -> None:
        ring = core.sessions[session_id].outbound
        left = np.zeros(ring.readable, wire.EVENT_DTYPE)
        n = ring.peek_batch(left)
        if unread is None and n:
            unread = left[:n]
        remove(session_id, unread, unsent)

    core.remove_session = remove_session


def _handed_back(edge: EdgeRig) -> list[int]:
    """The client order ids of the events kept for the account's next session once every
    session has ended."""
    _until("the sessions removed", lambda: edge.stats()["sessions"] == 0)
    return [int(x) for _, recs in edge.core.unread for x in recs["order_id"]]


def _arrived(c: OrderClient, n: int) -> None:
    """Wait until n events wait unread in a colocated client's ring (one poll gets all)."""
    assert isinstance(c.transport, ColocatedTransport)
    _until(f"{n} events in the ring", lambda: c.transport.outbound.readable >= n)


# ---- a TCP session acknowledges from its login -------------------------------------------


def test_a_tcp_client_that_dies_before_any_heartbeat_loses_nothing(edge: EdgeRig) -> None:
    """The client's first ACK goes with its login: the gateway keeps every event it sent
    until one is acknowledged, so the event the client was handed and died on comes to the
    account's next session (a session that never acknowledged would lose it: the frame was
    written to its socket)."""
    c = OrderClient.connect(f"tcp://{edge.tcp}", account_id=1, api_key=KEYS[1])
    _until("the login's ACK", lambda: edge.stats()["tcp_acks"] == 1)
    c.submit(1, "buy", 1, 90, order_id=11)
    assert [e.order_id for e in c.poll(5.0)] == [11]  # handed to the application
    _until(
        "the frame written",
        lambda: (
            edge.run(lambda: sum(len(s.owed.unwritten) for s in edge.server.tcp.connections)) == 0
        ),
    )
    # killed: the connection resets, nothing more is acknowledged
    c.transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.transport.close()
    assert _handed_back(edge) == [11]


# ---- a colocated poll notices the session's end --------------------------------------------


def test_a_long_colocated_poll_notices_the_gateway_is_gone(edge: EdgeRig) -> None:
    """poll(30) waits on the ring in slices and looks at the socket between them."""
    c = OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1])
    try:
        edge.call(edge.server.colocated.shutdown())
        start = time.monotonic()
        with pytest.raises(Disconnected, match="ended the session"):
            c.poll(30.0)
        assert time.monotonic() - start < 2.0
    finally:
        c.close()


def test_a_colocated_wait_for_holding_events_notices_the_gateway_is_gone(edge: EdgeRig) -> None:
    """Also while wait_for holds other events (the ring's wait cannot be used then)."""
    c = OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1])
    try:
        c.submit(1, "buy", 1, 90, order_id=11)
        _arrived(c, 1)
        with pytest.raises(TimeoutError):
            c.wait_for(12, timeout=0.01)  # keeps order 11's Ack, unreleased
        edge.call(edge.server.colocated.shutdown())
        start = time.monotonic()
        with pytest.raises(Disconnected, match="ended the session"):
            c.wait_for(12, timeout=30.0)
        assert time.monotonic() - start < 2.0
        assert [e.order_id for e in c.poll()] == [11]  # still handed out after the end
    finally:
        c.close()


# ---- events the application was not handed stay the session's -----------------------------


def _wait_for_keeps(c: OrderClient) -> None:
    """Order 11's Ack kept by wait_for(12), then wait_for(13) reads again."""
    c.submit(1, "buy", 1, 90, order_id=11)
    c.submit(1, "buy", 1, 91, order_id=12)
    assert isinstance(c.wait_for(12), Ack)
    assert isinstance(c.wait_for(c.submit(1, "buy", 1, 92, order_id=13)), Ack)


@pytest.mark.parametrize("how", HOW)
def test_what_wait_for_kept_goes_to_the_next_session_at_close(edge: EdgeRig, how: str) -> None:
    """A client that closes with wait_for's other events not yet polled leaves them (and
    the rest of their batches: repeats, with their exec ids) to the next session."""
    c = OrderClient.connect(_address(edge, how), account_id=1, api_key=KEYS[1])
    _wait_for_keeps(c)
    c.close()
    assert _handed_back(edge) == [11, 12, 13]


@pytest.mark.parametrize("how", HOW)
def test_polled_events_count_as_processed(edge: EdgeRig, how: str) -> None:
    """Once poll() has handed the kept events out, nothing is left to give back."""
    with OrderClient.connect(_address(edge, how), account_id=1, api_key=KEYS[1]) as c:
        _wait_for_keeps(c)
        assert [e.order_id for e in c.poll()] == [11]
        assert c.poll(0.0) == []
    assert _handed_back(edge) == []


def _keep_then_hang(address: str, ready: Any) -> None:
    c = OrderClient.connect(address, account_id=1, api_key=KEYS[1])
    _wait_for_keeps(c)
    ready.set()
    time.sleep(600)  # killed by the test


@pytest.mark.parametrize("how", HOW)
def test_what_wait_for_kept_outlives_a_killed_client(
    edge: EdgeRig, children: Children, how: str
) -> None:
    ready = children.ctx.Event()
    proc = children.start(_keep_then_hang, _address(edge, how), ready)
    assert ready.wait(30), "the client did not get its acks"
    assert proc.pid is not None
    os.kill(proc.pid, 9)
    proc.join(10)
    assert _handed_back(edge) == [11, 12, 13]


def test_wait_for_holds_back_at_most_half_the_ring(instance: str, tmp_path: Path) -> None:
    """Past half the session's ring the oldest kept events are released anyway, so a
    client that keeps events and does not take them does not stall the gateway: wait_for
    still gets its answer, and poll() every event kept."""
    config = edge_config(instance, tmp_path, session_ring_capacity=8)
    with running_edge(config) as edge:
        _note_ring_leftovers(edge)
        with OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1]) as c:
            assert isinstance(c.transport, ColocatedTransport)
            for oid in range(11, 21):
                c.submit(1, "buy", 1, 80 + oid - 11, order_id=oid)
                deadline = time.monotonic() + 10
                while len(c._backlog) < oid - 10:  # wait_for keeps the new Ack
                    assert time.monotonic() < deadline, f"order {oid}'s Ack did not come"
                    with pytest.raises(TimeoutError):
                        c.wait_for(99, timeout=0.01)
                # held back: what the last read gave back left at most 4, then one more
                assert c.transport.outbound.readable <= 4 + 1
            assert isinstance(c.wait_for(c.submit(1, "buy", 1, 95, order_id=21)), Ack)
            assert [e.order_id for e in c.poll()] == list(range(11, 21))
        assert _handed_back(edge) == []


# ---- a raising callback loses nothing ----------------------------------------------------


@pytest.mark.parametrize("how", HOW)
def test_a_raising_callback_leaves_the_batch_for_the_next_poll(edge: EdgeRig, how: str) -> None:
    """The next poll() returns the whole batch, the event the callback raised on
    included, and calls no callback twice."""
    with OrderClient.connect(_address(edge, how), account_id=1, api_key=KEYS[1]) as c:
        called: list[int] = []

        def callback(event: Event) -> None:
            called.append(event.order_id)
            if len(called) == 1:
                raise RuntimeError("callback bug")

        c.on_event(callback)
        for oid in (11, 12, 13):
            c.submit(1, "buy", 1, 90, order_id=oid)
        if how == "colocated":
            _arrived(c, 3)  # one batch
        got: list[int] = []
        with pytest.raises(RuntimeError, match="callback bug"):
            while not got:
                got += [e.order_id for e in c.poll(5.0)]
        deadline = time.monotonic() + 10
        while len(called) < 3 and time.monotonic() < deadline:
            got += [e.order_id for e in c.poll(0.2)]
        assert called == [11, 12, 13]
        assert got == [11, 12, 13]


# ---- the async client ----------------------------------------------------------------------


@pytest.mark.parametrize("how", HOW)
def test_closing_an_async_client_ends_its_event_iterators(edge: EdgeRig, how: str) -> None:
    async def main() -> None:
        c = await AsyncOrderClient.connect(_address(edge, how), account_id=1, api_key=KEYS[1])

        got: list[int] = []

        async def consume() -> None:
            async for event in c.events():
                got.append(event.order_id)

        task = asyncio.create_task(consume())
        await c.submit(1, "buy", 1, 90, order_id=11)
        while not got:  # the iterator runs, and waits for more after the Ack
            await asyncio.sleep(0.005)
        await c.close()
        with pytest.raises(Disconnected, match="the client is closed"):
            await asyncio.wait_for(task, 5.0)

    asyncio.run(main())


@pytest.mark.parametrize("how", HOW)
def test_what_async_wait_for_kept_goes_to_the_next_session_at_close(
    edge: EdgeRig, how: str
) -> None:
    """As the sync client's: the events wait_for passed over are not handed until
    next_event returns them, so a client closed first leaves them (and, as repeats, those
    handed after them) to the account's next session."""

    async def main() -> None:
        c = await AsyncOrderClient.connect(_address(edge, how), account_id=1, api_key=KEYS[1])
        try:
            for oid in (11, 12, 13):
                await c.submit(1, "buy", 1, 90, order_id=oid)
            assert (await c.wait_for(13)).order_id == 13  # keeps 11 and 12
        finally:
            await c.close()

    asyncio.run(main())
    assert _handed_back(edge) == [11, 12, 13]


@pytest.mark.parametrize("how", HOW)
def test_async_events_not_taken_go_to_the_next_session(edge: EdgeRig, how: str) -> None:
    """An event in the async client's queue is the session's until next_event() takes
    it: the reader reads on, and the client closed then leaves the untaken ones to the
    account's next session."""

    async def main() -> None:
        c = await AsyncOrderClient.connect(_address(edge, how), account_id=1, api_key=KEYS[1])
        try:
            for oid in (11, 12, 13):
                await c.submit(1, "buy", 1, 90, order_id=oid)
            assert (await c.next_event(5.0)).order_id == 11
            while c.queue.qsize() < 2:  # the reader has read the other two (and polls on)
                await asyncio.sleep(0.005)
        finally:
            await c.close()

    asyncio.run(main())
    # the rest of a batch that held order 11's Ack too comes again (a repeat)
    back = _handed_back(edge)
    assert back[-2:] == [12, 13] and back in ([12, 13], [11, 12, 13])
