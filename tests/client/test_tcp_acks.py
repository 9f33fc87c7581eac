"""TCP acknowledgements (ACK, docs/protocol.md), at the gateway's edge over the fake core:
what an acknowledging client did not acknowledge goes back to the core when its session
ends, however it ends (so the account's next session gets it); a client that never
acknowledged keeps the old rule (frames written to the socket are its); bad ACKs end the
session with END(BAD_ACK) and change nothing; at ``tcp_unacked_max`` unacknowledged
events the edge sends no more until an ACK; and ``tradsys.client`` acknowledges what it
processed by itself."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.client.edge_rig import KEYS, EdgeRig, edge_config, running_edge
from tests.client.raw import RawPeer
from tradsys import wire
from tradsys.client.commands import order_record
from tradsys.client.orders import OrderClient
from tradsys.config import ConfigError
from tradsys.protocols.binary import (
    EndReason,
    MessageType,
    decode_reason,
    encode_ack,
    encode_empty,
    encode_records,
)


@pytest.fixture
def make_edge(instance: str, tmp_path: Path) -> Iterator[Callable[..., EdgeRig]]:
    with_edges: list[Any] = []

    def make(**gateway: Any) -> EdgeRig:
        cm = running_edge(edge_config(instance, tmp_path, **gateway))
        with_edges.append(cm)
        return cm.__enter__()

    try:
        yield make
    finally:
        for cm in reversed(with_edges):
            cm.__exit__(None, None, None)


def _until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _orders(peer: RawPeer, ids: range, seq: int = 1) -> None:
    batch = np.zeros(len(ids), wire.COMMAND_DTYPE)
    for j, oid in enumerate(ids):
        batch[j] = order_record(oid, 1, "buy", 1, 90)[0]
    peer.send(encode_records(MessageType.COMMANDS, seq, batch))


def _events(peer: RawPeer, n: int) -> list[tuple[int, int]]:
    """(seq, client order id) of the next n events."""
    got: list[tuple[int, int]] = []
    while len(got) < n:
        frame = peer.next_frame()
        assert frame is not None, f"{len(got)} of {n} events came"
        kind, seq, body = frame
        if kind != MessageType.EVENTS:
            continue
        recs = np.frombuffer(body, wire.EVENT_DTYPE)
        got.extend((seq + i, int(r["order_id"])) for i, r in enumerate(recs))
    return got


def _login(edge: EdgeRig) -> RawPeer:
    peer = RawPeer.tcp(edge.host, edge.port)
    peer.login(1, KEYS[1])
    frame = peer.next_frame()
    assert frame is not None and frame[0] == MessageType.SYMBOLS
    return peer


def _reset(peer: RawPeer) -> None:
    """Close with a reset (SO_LINGER 0): the connection breaks, as for a killed client."""
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()


def _handed_back(edge: EdgeRig) -> list[int]:
    """The client order ids of the events the edge handed back to the core."""
    _until("the session removed", lambda: edge.stats()["sessions"] == 0)
    return [int(x) for _, recs in edge.core.unread for x in recs["order_id"]]


@pytest.mark.parametrize("end", ["reset", "logout"])
def test_what_was_not_acknowledged_goes_back_however_the_session_ends(
    make_edge: Callable[..., EdgeRig], end: str
) -> None:
    edge = make_edge()
    peer = _login(edge)
    _orders(peer, range(11, 16))
    assert [oid for _, oid in _events(peer, 5)] == [11, 12, 13, 14, 15]
    peer.send(encode_ack(2))
    _until("the ACK", lambda: edge.stats()["tcp_acks"] == 1)
    if end == "reset":
        _reset(peer)
    else:
        peer.send(encode_empty(MessageType.LOGOUT))
        frames = peer.frames_until_closed()
        assert frames[-1][0] == MessageType.END
        peer.close()
    # events 3..5 (orders 13..15), the first frame's tail included, in order
    assert _handed_back(edge) == [13, 14, 15]


def test_a_client_that_never_acknowledged_keeps_what_was_written(
    make_edge: Callable[..., EdgeRig],
) -> None:
    edge = make_edge()
    peer = _login(edge)
    _orders(peer, range(11, 14))
    _events(peer, 3)
    _until("frames written", lambda: edge.run(lambda: _count(edge, "unwritten")) == 0)
    _reset(peer)
    assert _handed_back(edge) == []


def _count(edge: EdgeRig, what: str) -> int:
    """Frames the edge's TCP sessions keep as ``sent`` or ``unwritten``."""
    return sum(len(getattr(c.owed, what)) for c in edge.server.tcp.connections)


@pytest.mark.parametrize(
    ("acks", "why", "back"),
    [
        ((9,), "beyond the last event sent", []),  # never acknowledged: the old rule
        ((2, 1), "below an earlier ACK", [13]),  # the good ACK stands
    ],
)
def test_a_bad_ack_ends_the_session(
    make_edge: Callable[..., EdgeRig], acks: tuple[int, ...], why: str, back: list[int]
) -> None:
    edge = make_edge()
    peer = _login(edge)
    _orders(peer, range(11, 14))
    _events(peer, 3)
    for seq in acks:
        peer.send(encode_ack(seq))
    frames = peer.frames_until_closed()
    assert frames[-1][0] == MessageType.END
    reason, text = decode_reason(frames[-1][2])
    assert reason == EndReason.BAD_ACK and why in text, text
    peer.close()
    assert edge.stats()["tcp_bad_acks"] == 1
    assert _handed_back(edge) == back


def test_no_more_than_unacked_max_events_go_unacknowledged(
    make_edge: Callable[..., EdgeRig],
) -> None:
    edge = make_edge(tcp_unacked_max=2)
    peer = _login(edge)
    peer.send(encode_ack(0))  # an acknowledging client from the start
    _orders(peer, range(11, 16))
    assert [s for s, _ in _events(peer, 2)] == [1, 2]

    def waiting() -> tuple[int, int]:
        """(events in the session's ring, of them sent): the ring keeps what it sent until
        an ACK covers it (so a gateway that dies loses none of it)."""
        conns = [c for c in edge.server.tcp.connections if c.session]
        return sum(int(c.session.rings.outbound.readable) for c in conns), sum(
            c.owed.peeked for c in conns
        )

    # the other three wait in the session's ring behind the two sent: the edge sends no more
    _until("three events held back", lambda: edge.run(waiting) == (5, 2))
    peer.send(encode_ack(1))
    assert [s for s, _ in _events(peer, 1)] == [3]
    peer.send(encode_ack(3))
    assert [s for s, _ in _events(peer, 2)] == [4, 5]
    peer.close()


def test_the_client_library_acknowledges_what_it_processed(
    make_edge: Callable[..., EdgeRig],
) -> None:
    edge = make_edge(heartbeat_ms=100)
    with OrderClient.connect(f"tcp://{edge.tcp}", account_id=1, api_key=KEYS[1]) as c:
        for oid in (11, 12, 13):
            c.wait_for(c.submit(1, "buy", 1, 90, order_id=oid))
        c.poll(0.0)  # done with what the last poll returned
        # the heartbeat tick acknowledges it: nothing is unacknowledged any more
        _until("the ACK", lambda: _acked(edge) == 3 and edge.run(lambda: _count(edge, "sent")) == 0)
    assert _handed_back(edge) == []


def _acked(edge: EdgeRig) -> int:
    return int(edge.run(lambda: max((c.acked for c in edge.server.tcp.connections), default=0)))


@pytest.mark.parametrize("bad", [0, -1, 2**31])
def test_tcp_unacked_max_out_of_range_is_refused_by_name(
    instance: str, tmp_path: Path, bad: int
) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.tcp_unacked_max"):
        edge_config(instance, tmp_path, tcp_unacked_max=bad)
