"""Fuzz and churn: more than 100 000 random and mutated frames, and 1 000 sessions opened
and dropped, leave the gateway serving, with no session, ring or descriptor left over."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.client.edge_rig import KEYS, EdgeRig, edge_config, running_edge
from tests.client.raw import RawPeer
from tradsys import wire
from tradsys.client.events import Ack
from tradsys.client.orders import OrderClient
from tradsys.protocols.binary import (
    HEADER_SIZE,
    MessageType,
    encode_empty,
    encode_login,
    encode_records,
    header,
)
from tradsys.ring import instance_segments

CONTENT_FRAMES = 100_000
STRUCTURE_FRAMES = 3_000


@pytest.fixture
def edge(instance: str, tmp_path: Path) -> Iterator[EdgeRig]:
    with running_edge(
        edge_config(instance, tmp_path, heartbeat_ms=1000, login_timeout_ms=1000)
    ) as rig:
        yield rig


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_random_records_in_well_formed_frames(edge: EdgeRig) -> None:
    """100 000 COMMANDS frames of one random 64-byte record each (any kind, any field):
    every one reaches the core, which answers each kind no client may send with
    REJECTED(INVALID_COMMAND) and passes the rest to the engine; the session stays up."""
    rng = np.random.default_rng(7)
    peer = RawPeer.tcp(edge.host, edge.port)
    peer.login(1, KEYS[1])
    raw = rng.integers(0, 256, size=(CONTENT_FRAMES, 64), dtype=np.uint8)
    records = raw.view(wire.COMMAND_DTYPE).reshape(-1)
    # most keep a client kind so they reach the core; every fourth is any byte at all
    keep = np.arange(CONTENT_FRAMES) % 4 != 0
    records["kind"][keep] = 1 + records["kind"][keep] % 4
    # ORDER_STATUS (6) is a client's too: the core answers it, not as INVALID_COMMAND
    client_kinds = [*range(1, 5), wire.CommandKind.ORDER_STATUS]
    not_client_kinds = int((~np.isin(records["kind"], client_kinds)).sum())
    assert not_client_kinds > 0
    hdr = np.zeros(CONTENT_FRAMES, [("h", "V16"), ("r", wire.COMMAND_DTYPE)])
    for i in range(CONTENT_FRAMES):
        hdr["h"][i] = header(MessageType.COMMANDS, 64, i + 1)
    hdr["r"] = records
    stream = hdr.tobytes()
    assert len(stream) == CONTENT_FRAMES * (HEADER_SIZE + 64)

    answered = 0
    errors: list[BaseException] = []

    def send() -> None:
        try:
            peer.send(stream)
        except BaseException as exc:
            errors.append(exc)

    # the gateway stops reading while the session's ring is full (backpressure), for as
    # long as the core takes: the bulk send must wait that out rather than time out half
    # way through a frame (reads go through select with their own deadlines)
    peer.sock.settimeout(120)
    sender = threading.Thread(target=send)
    sender.start()
    last = 0
    deadline = time.monotonic() + 120
    beat_at = time.monotonic()
    while last < CONTENT_FRAMES and time.monotonic() < deadline:
        # once everything is sent the peer keeps its session alive as a client does (the
        # answers may take longer than the silence limit on a slow host); not before: the
        # sender thread owns the socket's writing side until then
        if not sender.is_alive() and not errors and time.monotonic() - beat_at > 0.5:
            peer.send(encode_empty(MessageType.HEARTBEAT))
            beat_at = time.monotonic()
        frame = peer.next_frame(10.0)
        assert frame is not None, (
            f"the gateway stopped answering after {answered} events (closed: {peer.closed}, "
            f"core took {edge.core.commands})"
        )
        assert frame[0] != MessageType.END, f"the session ended: {frame[2].rstrip(bytes(1))!r}"
        if frame[0] == MessageType.EVENTS:
            answered += len(frame[2]) // 64
        last = edge.core.commands
    sender.join(30)
    assert not errors, errors
    assert not peer.closed
    assert edge.core.commands == CONTENT_FRAMES
    assert edge.core.invalid == not_client_kinds
    peer.close()
    wait_until(lambda: edge.stats()["sessions"] == 0)


def mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    how = rng.randrange(5)
    if how == 0 and data:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 1:
        data = data[: rng.randrange(len(data) + 1)]
    elif how == 2:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 80)))
    elif how == 3:
        data[rng.randrange(min(16, len(data)))] = rng.randrange(256)
    else:
        data = bytearray(rng.randbytes(rng.randint(1, 200)))
    return bytes(data)


def test_mutated_frames_on_many_connections(edge: EdgeRig) -> None:
    """Thousands of connections, each sending a burst of mutated frames (before or after
    logging in): each gets served or ended cleanly, and nothing is left over."""
    rng = random.Random(11)
    fds_before = open_fds()
    good = [
        encode_empty(MessageType.HEARTBEAT),
        encode_records(MessageType.COMMANDS, 1, np.zeros(2, wire.COMMAND_DTYPE)),
        encode_login(2, KEYS[2]),
        encode_empty(MessageType.LOGOUT),
        header(MessageType.EVENTS, 64) + bytes(64),
    ]
    sent = 0
    with OrderClient.connect(f"tcp://{edge.tcp}", account_id=3, api_key=KEYS[3]) as bystander:
        for i in range(STRUCTURE_FRAMES // 10):
            peer = RawPeer.tcp(edge.host, edge.port)
            if i % 2:
                peer.login(1, KEYS[1])
            burst = b"".join(mutate(rng, rng.choice(good)) for _ in range(10))
            sent += 10
            with contextlib.suppress(OSError):  # it may close before the burst is all in
                peer.send(burst)
            peer.sock.shutdown(socket.SHUT_WR)
            peer.frames_until_closed(10.0)  # it must end every one of them
            peer.close()
            if i % 50 == 0:
                oid = bystander.submit(2, "sell", 1, 55)
                assert isinstance(bystander.wait_for(oid), Ack)
        wait_until(lambda: edge.stats()["sessions"] == 1)
    assert sent >= STRUCTURE_FRAMES
    wait_until(lambda: edge.stats()["sessions"] == 0)
    assert instance_segments(edge.config.engine.instance) == []
    wait_until(lambda: open_fds() <= fds_before)


def test_a_thousand_connects_and_disconnects_leak_nothing(edge: EdgeRig) -> None:
    fds_before = open_fds()
    for i in range(1000):
        if i % 2:
            c = OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1])
        else:
            c = OrderClient.connect(f"tcp://{edge.tcp}", account_id=2, api_key=KEYS[2])
        c.transport.close()  # a plain drop: no logout, no goodbye
    wait_until(lambda: edge.stats()["sessions"] == 0)
    stats = edge.stats()
    assert stats["sessions_opened"] == 1000 and stats["sessions_closed"] == 1000
    assert instance_segments(edge.config.engine.instance) == []
    wait_until(lambda: open_fds() <= fds_before)
    with OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1]) as c:
        assert isinstance(c.wait_for(c.submit(1, "buy", 1, 90)), Ack)
