"""Through the Supervisor, with the real pump: the gateway takes a session's commands
only while its event ring has room for their answers (an answer is never held in the
gateway's memory alone), less the answers the shards still owe it. A client that sends
and never polls therefore stops itself: its event ring fills, then its inbound ring. The
send that gives up must say so, not only that the inbound ring "stayed full", and nothing
the rings took is lost."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.edge_rig import KEYS
from tests.gateway.test_unread_sessions import ACME, _address, _tcp_address, unread_config
from tradsys.client.commands import order_bytes
from tradsys.client.events import Ack, Cancelled, Disconnected
from tradsys.client.orders import OrderClient
from tradsys.client.transport import ColocatedTransport, TcpTransport
from tradsys.cores.supervisor import Supervisor

pytestmark = pytest.mark.multiprocess

RING = 16


def _send_until_both_rings_fill(
    bob: OrderClient, transport: ColocatedTransport, ring: int, **kw: Any
) -> list[int]:
    """Bids at 90 (``kw`` as for submit), never polled, sent until the event ring and the
    inbound ring are both full; their client ids. The event ring is looked at first: once
    it is full the gateway takes nothing, so the inbound ring can then only fill (the
    other order could see a full inbound ring the gateway was about to take)."""
    sent: list[int] = []
    deadline = time.monotonic() + 20
    while transport.outbound.readable < ring or transport.inbound.writable:
        assert time.monotonic() < deadline, f"{len(sent)} sent; the rings never filled"
        if transport.inbound.writable:
            sent.append(bob.submit(ACME, "buy", 1, 90, order_id=len(sent) + 1, **kw))
    return sent


@contextlib.contextmanager
def _colocated_bob(
    instance: str, tmp_path: Path, ring: int
) -> Iterator[tuple[OrderClient, ColocatedTransport]]:
    """An instance with session rings of ``ring`` slots and bob connected colocated."""
    config = unread_config(instance, tmp_path / "data", ring=ring)
    with (
        Supervisor(config, log=lambda line: None),
        OrderClient.connect(_address(config), account_id=2, api_key=KEYS[2]) as bob,
    ):
        transport = bob.transport
        assert isinstance(transport, ColocatedTransport)
        yield bob, transport


@pytest.mark.parametrize("ring", [RING, 1024])
def test_a_client_that_never_polls_is_told_its_unread_events_stopped_it(
    instance: str, tmp_path: Path, ring: int
) -> None:
    """With a ring larger than the pump's batch, the answers to one pass's commands are
    still on their way at the next pass: the gateway keeps room for them too (before, it
    took up to twice the ring, the overflow held the shard back for everyone, and the
    client was ended as a slow consumer)."""
    with _colocated_bob(instance, tmp_path, ring) as (bob, transport):
        sent = _send_until_both_rings_fill(bob, transport, ring)  # resting bids, an Ack each
        # exactly a full event ring of answers and a full inbound ring of commands: the
        # gateway took no command whose answer would not fit
        assert len(sent) == 2 * ring
        with pytest.raises(TimeoutError, match=rf"event ring \S+ is full \({ring} unread\)"):
            transport.send_one(order_bytes(10**6, ACME, "buy", 1, 90), timeout=0.3)
        answered = [bob.wait_for(oid) for oid in sent]
    assert [a.order_id for a in answered if isinstance(a, Ack)] == sent


def test_ioc_orders_answer_twice_and_still_only_stop_their_client(
    instance: str, tmp_path: Path
) -> None:
    """An IOC into an empty book answers twice (ACCEPTED, then CANCELLED): the gateway
    used to keep room for one answer per order, so a client sending IOCs and reading
    nothing filled its event ring with the second answers, held its shard back for
    everyone and was ended as a slow consumer (audit N). Each IOC is now charged both, and
    the client stops itself as with resting orders: a TimeoutError, the session intact."""
    with _colocated_bob(instance, tmp_path, RING) as (bob, transport):
        sent = _send_until_both_rings_fill(bob, transport, RING, tif="ioc")
        # a full event ring of two answers each, and a full inbound ring
        assert len(sent) == RING // 2 + RING
        with pytest.raises(TimeoutError, match=rf"event ring \S+ is full \({RING} unread\)"):
            transport.send_one(order_bytes(10**6, ACME, "buy", 1, 90, tif="ioc"), timeout=0.3)
        ended = [bob.wait_for(oid, (Cancelled,)) for oid in sent]  # the session lives
    assert [e.order_id for e in ended if isinstance(e, Cancelled)] == sent


def test_a_tcp_client_that_never_polls_gets_an_error_not_a_hang(
    instance: str, tmp_path: Path
) -> None:
    """Over TCP the same client fills its event ring, the gateway's backlog for its
    commands, then both sockets' buffers: the gateway stops reading it. Its send used to
    block for good (no timeout) holding the lock close() needs, so the client could not
    even be closed. Now the send gives up after its timeout saying why -- TimeoutError
    with the session intact, or, if the kernel took part of the frame, Disconnected with
    the connection dropped -- and the client closes."""
    config = unread_config(instance, tmp_path / "data", ring=RING, heartbeat_ms=60_000)
    with Supervisor(config, log=lambda line: None):
        bob = OrderClient.connect(f"tcp://{_tcp_address(config)}", account_id=2, api_key=KEYS[2])
        transport = bob.transport
        assert isinstance(transport, TcpTransport)
        sent = 0
        deadline = time.monotonic() + 60
        with pytest.raises((TimeoutError, Disconnected)) as err:
            while time.monotonic() < deadline:
                transport.send_one(order_bytes(sent + 1, ACME, "buy", 1, 90), timeout=0.5)
                sent += 1
        text = str(err.value)
        assert "the gateway read nothing from this session for 0.5 s" in text, text
        assert "events wait unread in this client's socket: poll() them" in text, text
        assert sent > 2 * RING
        bob.close()
        assert transport.closed
        transport._beat.join(5)  # its heartbeat thread ends with it, whichever way it went
        assert not transport._beat.is_alive()
