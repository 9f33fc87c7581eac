"""A gateway killed (SIGKILL) loses no event a TCP client was sent and did not
acknowledge: the TCP edge reads its sessions' outbound rings without consuming them and
releases what an ACK covers (or, for a client that never acknowledges, what the socket
took), so a successor gateway, which reads a dead gateway's session rings from the
consumer's index on, finds exactly what is still owed.

First at the edge, in-process (the ring as a successor would read it, and a full ring
that must not stall a client that never acknowledges); then through the Supervisor with
real processes: the killed gateway's successor gives alice's next session the fills she
was sent and did not acknowledge, by exec id, each once, and not those she did (issue 5:
nothing acknowledged is lost -- and here nothing unacknowledged either)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.client.edge_rig import KEYS, EdgeRig, edge_config, running_edge
from tests.client.fake_transport import BufferingTransport
from tests.client.raw import RawPeer
from tests.client.test_tcp_acks import _events as _order_events
from tests.client.test_tcp_acks import _login, _orders, _until
from tests.conftest import RUN_PREFIX
from tests.gateway.test_unread_gateway_crash import _restart_gateway
from tests.gateway.test_unread_sessions import (
    ACME,
    _address,
    _await,
    _bob_buys,
    _core_stats,
    _tcp_address,
    alices_next_session,
    unread_config,
)
from tradsys import wire
from tradsys.client.commands import order_record
from tradsys.client.events import Ack, Fill
from tradsys.client.orders import OrderClient
from tradsys.cores.gateway import read_stats
from tradsys.cores.gateway_tcp import TcpEdge, TcpSession
from tradsys.cores.supervisor import Supervisor
from tradsys.protocols.binary import MessageType, encode_ack, encode_records
from tradsys.ring import Ring, instance_segments, segment_name

BUYS = [(2, 101), (3, 101), (1, 101)]  # bob's IOC buys (quantity, price) into her ask


# ---- at the edge ----------------------------------------------------------------------


def _ring_name(edge: EdgeRig) -> str:
    def name() -> str:
        (conn,) = edge.server.tcp.connections
        assert conn.session is not None
        return conn.session.rings.outbound.name

    return str(edge.run(name))


def _successor_reads(name: str) -> list[int]:
    """The client order ids of what a successor gateway would find in the session's
    outbound ring: every record from the consumer's index on (nothing consumed)."""
    with Ring.attach(name, slot_size=wire.RECORD_SIZE, layout_version=wire.LAYOUT_VERSION) as r:
        out = np.zeros(r.capacity, wire.EVENT_DTYPE)
        n = r.peek_batch(out)
        return [int(x) for x in out[:n]["order_id"]]


def test_the_ring_keeps_what_was_sent_until_an_ack_covers_it(instance: str, tmp_path: Path) -> None:
    with running_edge(edge_config(instance, tmp_path)) as edge:
        peer = _login(edge)
        try:
            peer.send(encode_ack(0))  # an acknowledging client from the start
            _until("the ACK", lambda: edge.stats()["tcp_acks"] == 1)
            _orders(peer, range(11, 16))
            assert [oid for _, oid in _order_events(peer, 5)] == [11, 12, 13, 14, 15]
            name = _ring_name(edge)
            # all five sent, none acknowledged: all five still there for a successor
            assert _successor_reads(name) == [11, 12, 13, 14, 15]
            peer.send(encode_ack(2))
            _until("the second ACK", lambda: edge.stats()["tcp_acks"] == 2)
            # exactly what is not acknowledged (of a frame partly acknowledged, its tail)
            assert _successor_reads(name) == [13, 14, 15]
            peer.send(encode_ack(5))
            _until("an empty ring", lambda: _successor_reads(name) == [])
        finally:
            peer.close()


def test_a_full_ring_does_not_stall_a_client_that_never_acknowledges(
    instance: str, tmp_path: Path
) -> None:
    """A ring of 8 holds at most 8 events sent and not known written, fewer frames than
    the edge lets pass between looks at its transport: when every slot is such an event,
    the edge looks at once rather than at the next tick (a minute away here)."""
    config = edge_config(instance, tmp_path, session_ring_capacity=8, heartbeat_ms=60_000)
    with running_edge(config) as edge:
        peer = _login(edge)
        try:
            ids = range(100, 300)
            for seq, start in enumerate(range(ids.start, ids.stop, 20)):
                _orders(peer, range(start, start + 20), seq=1 + 20 * seq)
            assert [oid for _, oid in _order_events(peer, len(ids))] == list(ids)
            assert edge.stats()["tcp_acks"] == 0
        finally:
            peer.close()


# ("route", n): the core pushes up to n events (as many as fit) and the edge drains;
# ("write", k): the transport writes k bytes; ("ack", f): an ACK of the fraction f of what
# was sent and not acknowledged; ("look",): the edge looks at what was written (a tick)
STEP = st.one_of(
    st.tuples(st.just("route"), st.integers(1, 40)),
    st.tuples(st.just("write"), st.integers(0, 3000)),
    st.tuples(st.just("ack"), st.floats(0, 1)),
    st.tuples(st.just("look"), st.just(0)),
)
_rings = itertools.count()


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(STEP, max_size=50),
    capacity=st.sampled_from([8, 32]),
    unacked_max=st.sampled_from([4, 20, 65536]),
)
def test_the_ring_holds_exactly_what_is_owed(
    steps: list[tuple[str, Any]], capacity: int, unacked_max: int
) -> None:
    """For any run of routed events, socket writes, ACKs and looks, the session's ring
    holds (from its consumer's index: what a successor gateway reads) one contiguous run
    of events up to the last routed: with ACKs, exactly those above the last ACK (or above
    what went before the first ACK); before an ACK, at least every event whose frame the
    transport has not wholly written, and the last ``keep`` sent (for a client that may
    start acknowledging)."""
    name = segment_name(f"{RUN_PREFIX}tcpring", "sout", next(_rings))
    with Ring.create(
        name, slot_size=wire.RECORD_SIZE, capacity=capacity, layout_version=wire.LAYOUT_VERSION
    ) as ring:
        asyncio.run(_run_edge(ring, steps, unacked_max))


async def _run_edge(ring: Ring, steps: list[tuple[str, Any]], unacked_max: int) -> None:
    edge = TcpEdge(None, None, 1.0, 1.0, unacked_max=unacked_max)  # type: ignore[arg-type]
    s = TcpSession(edge)
    t = BufferingTransport()
    s.transport = t  # type: ignore[assignment]
    s.session = SimpleNamespace(  # type: ignore[assignment]
        rings=SimpleNamespace(outbound=ring), closed=False
    )
    s._fit_ring(ring.capacity)
    keep = min(unacked_max, ring.capacity // 4)
    routed = written = released = 0
    before_acks: int | None = None  # what was released when the first ACK came
    frame_ends: list[tuple[int, int]] = []  # (bytes handed over up to its end, last seq)
    for what, arg in steps:
        if what == "route":
            events = np.zeros(arg, wire.EVENT_DTYPE)
            events["exec_id"] = np.arange(routed + 1, routed + 1 + arg)
            routed += ring.push_batch(events)
            before = s.next_event_seq
            s._drain_events()
            handed = s.owed.handed
            if s.next_event_seq > before:
                frame_ends.append((handed, s.next_event_seq - 1))
        elif what == "write":
            written += t.flush(arg)
        elif what == "ack":
            if before_acks is None:
                before_acks = released
            s._on_ack(s.acked + int(arg * (s.next_event_seq - 1 - s.acked)))
        else:
            s._note_written()
        out = np.zeros(ring.capacity, wire.EVENT_DTYPE)
        held = [int(x) for x in out[: ring.peek_batch(out)]["exec_id"]]
        released = routed - len(held)
        assert held == list(range(released + 1, routed + 1))
        assert s.owed.peeked == s.next_event_seq - 1 - released
        if s.acking:
            assert before_acks is not None
            assert released == max(s.acked, before_acks)
        else:
            wholly_written = max((last for end, last in frame_ends if end <= written), default=0)
            assert released <= min(wholly_written, max(0, s.next_event_seq - 1 - keep))


# ---- a gateway process killed ---------------------------------------------------------


@contextlib.contextmanager
def alice_logged_in(address: str, acking: bool) -> Iterator[RawPeer]:
    """Alice as a raw TCP client in this process, logged in (SYMBOLS read); with
    ``acking`` an acknowledging client from the start (ACK 0). Closed at the end."""
    host, port = address.rsplit(":", 1)
    peer = RawPeer.tcp(host, int(port))
    try:
        peer.login(1, KEYS[1])
        frame = peer.next_frame()
        assert frame is not None and frame[0] == MessageType.SYMBOLS, frame
        if acking:
            peer.send(encode_ack(0))
        yield peer
    finally:
        peer.close()


@contextlib.contextmanager
def alice_over_tcp(address: str) -> Iterator[RawPeer]:
    """Alice as a raw TCP client in this process (so the test sees exactly which frames
    reached her socket): logged in, an ask of 10 at 101 resting, its ACCEPTED (event 1)
    acknowledged -- an acknowledging client from here on. Closed at the end."""
    with alice_logged_in(address, acking=False) as peer:
        peer.send(encode_records(MessageType.COMMANDS, 1, order_record(1, ACME, "sell", 10, 101)))
        (accepted,) = _events(peer, 1)
        assert accepted["kind"] == wire.EventKind.ACCEPTED, accepted
        peer.send(encode_ack(1))
        yield peer


def _events(peer: RawPeer, n: int) -> list[np.void]:
    """The next n EVENT records reaching the peer's socket (heartbeats skipped)."""
    got: list[np.void] = []
    while len(got) < n:
        frame = peer.next_frame(10.0)
        assert frame is not None, f"{len(got)} of {n} events came"
        kind, _, body = frame
        if kind == MessageType.EVENTS:
            got.extend(np.frombuffer(body, wire.EVENT_DTYPE))
    return got


@pytest.mark.multiprocess
@pytest.mark.parametrize("acked_fills", [0, 1])
def test_a_killed_gateway_loses_no_event_a_tcp_client_did_not_acknowledge(
    instance: str, tmp_path: Path, acked_fills: int
) -> None:
    # a long heartbeat: her silence must not end the session (that path is another test's)
    config = unread_config(instance, tmp_path / "data", heartbeat_ms=60_000)
    with Supervisor(config, log=lambda line: None) as sup:
        with alice_over_tcp(_tcp_address(config)) as alice:
            _await("alice's ACK", lambda: (read_stats(config) or {}).get("tcp_acks", 0) >= 1)
            with OrderClient.connect(_address(config), account_id=2, api_key=KEYS[2]) as bob:
                taker = _bob_buys(bob, BUYS)
                assert [f.quantity for f in taker] == [q for q, _ in BUYS]
                # the gateway sent her all three: they are in her socket
                sent = _events(alice, len(BUYS))
                assert [int(e["kind"]) for e in sent] == [wire.EventKind.TRADE] * len(BUYS)
                assert [int(e["quantity"]) for e in sent] == [q for q, _ in BUYS]
                if acked_fills:
                    alice.send(encode_ack(1 + acked_fills))
                    _await("her ACK", lambda: (read_stats(config) or {}).get("tcp_acks", 0) >= 2)
                _restart_gateway(sup)  # her session and bob's die with it
        # her session ring was the dead gateway's: read back, then removed
        assert segment_name(instance, "sout", 0) not in instance_segments(instance)
        seen = alices_next_session(_address(config))
        held = _core_stats(config).get("events_unread_held")
    owed = sent[acked_fills:]
    fills = [e for e in seen if isinstance(e, Fill)]
    # exactly the fills she was sent and did not acknowledge, in order, each once
    assert [f.exec_id for f in fills] == [int(e["exec_id"]) for e in owed]
    assert [(f.order_id, f.quantity, f.leaves_qty) for f in fills] == [
        (1, int(e["quantity"]), int(e["leaves_qty"])) for e in owed
    ]
    assert isinstance(seen[-1], Ack) and len(seen) == len(owed) + 1
    assert held == len(owed)  # read back from the dead gateway's ring
    assert instance_segments(instance) == []
