"""Bad input at every entry of the gateway edge gets a clear reject or disconnect,
changes no state, and every other session keeps being served."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from tests.client.edge_rig import KEYS, EdgeRig, edge_config, running_edge
from tests.client.raw import RawPeer
from tradsys import wire
from tradsys.client.events import Ack, Disconnected
from tradsys.client.orders import OrderClient
from tradsys.matching.commands import batch
from tradsys.protocols.binary import (
    MAX_RECORDS_PER_FRAME,
    EndReason,
    LoginRejectReason,
    MessageType,
    decode_reason,
    encode_empty,
    encode_login,
    encode_records,
    header,
)
from tradsys.ring import instance_segments


@pytest.fixture
def edge(instance: str, tmp_path: Path) -> Iterator[EdgeRig]:
    with running_edge(edge_config(instance, tmp_path)) as rig:
        yield rig


@pytest.fixture
def bystander(edge: EdgeRig) -> Iterator[OrderClient]:
    """A well-behaved TCP session that must keep working whatever the others do."""
    with OrderClient.connect(f"tcp://{edge.tcp}", account_id=3, api_key=KEYS[3]) as c:
        yield c


def wait_for_sessions(edge: EdgeRig, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while edge.stats()["sessions"] != n:
        assert time.monotonic() < deadline, f"sessions: {edge.stats()['sessions']}, not {n}"
        time.sleep(0.005)


def still_served(c: OrderClient) -> None:
    oid = c.submit(2, "buy", 1, 45)
    assert isinstance(c.wait_for(oid), Ack)


def reason_of(frames: list, kind: MessageType) -> tuple[int, str]:
    assert frames and frames[-1][0] == kind, frames
    return decode_reason(frames[-1][2])


def one_order(oid: int, kind: int = wire.CommandKind.NEW_ORDER) -> np.ndarray:
    rec = np.zeros(1, wire.COMMAND_DTYPE)
    rec["kind"], rec["order_id"], rec["symbol_id"] = kind, oid, 1
    rec["side"], rec["order_type"], rec["tif"] = 1, 1, 1
    rec["quantity"], rec["price"] = 1, 90
    return rec


# ---- TCP -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "why"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "exceeds the maximum"),
        (b"\x10\x00\x00\x00Q" + bytes(15), "unknown message type 0x51"),
        (encode_empty(MessageType.HEARTBEAT), "first frame must be LOGIN"),
        (header(MessageType.LOGIN, 10) + bytes(10), "LOGIN body must be 72"),
        (header(MessageType.COMMANDS, 1 << 20), "exceeds the maximum"),
        # a connection that has not logged in reads into a buffer for a LOGIN only
        (header(MessageType.COMMANDS, 64) + bytes(64), "first frame must be LOGIN"),
        (header(MessageType.COMMANDS, 4096) + bytes(64), "does not fit here: at most 176"),
    ],
)
def test_tcp_garbage_before_login(edge: EdgeRig, bystander: OrderClient, first: bytes, why: str):
    peer = RawPeer.tcp(edge.host, edge.port)
    peer.send(first)
    reason, text = reason_of(peer.frames_until_closed(), MessageType.LOGIN_REJECTED)
    assert reason == LoginRejectReason.MALFORMED and why in text
    peer.close()
    still_served(bystander)
    wait_for_sessions(edge, 1)


@pytest.mark.parametrize(
    ("frame", "reason", "why"),
    [
        (header(0x7F, 0), EndReason.PROTOCOL_ERROR, "unknown message type 0x7f"),
        (header(MessageType.COMMANDS, 100) + bytes(100), EndReason.PROTOCOL_ERROR, "not 1..1024"),
        (header(MessageType.EVENTS, 64) + bytes(64), EndReason.PROTOCOL_ERROR, "may not send"),
        (encode_login(1, KEYS[1]), EndReason.PROTOCOL_ERROR, "may not send LOGIN"),
        (header(MessageType.COMMANDS, 70_000), EndReason.PROTOCOL_ERROR, "exceeds"),
        (
            encode_records(MessageType.COMMANDS, 5, one_order(1)),
            EndReason.SEQUENCE_GAP,
            "seq 5, expected 1",
        ),
        (encode_empty(MessageType.LOGOUT), EndReason.LOGOUT, "logged out"),
    ],
)
def test_tcp_bad_frames_after_login_end_only_that_session(
    edge: EdgeRig, bystander: OrderClient, frame: bytes, reason: int, why: str
) -> None:
    peer = RawPeer.tcp(edge.host, edge.port)
    peer.login(1, KEYS[1])
    commands_before = edge.core.commands
    peer.send(frame)
    got, text = reason_of(peer.frames_until_closed(), MessageType.END)
    assert got == reason and why in text, text
    peer.close()
    assert edge.core.commands == commands_before, "nothing reached the core"
    still_served(bystander)
    wait_for_sessions(edge, 1)


def test_tcp_login_and_commands_in_one_write(edge: EdgeRig) -> None:
    """What follows the LOGIN in the same write (commands before the LOGIN_ACCEPTED came
    back) goes on into the session's full buffer once it logs in, none of it lost."""
    peer = RawPeer.tcp(edge.host, edge.port)
    orders = [encode_records(MessageType.COMMANDS, i + 1, one_order(500 + i)) for i in range(40)]
    peer.send(encode_login(1, KEYS[1]) + b"".join(orders))
    first = peer.next_frame()
    assert first is not None and first[0] == MessageType.LOGIN_ACCEPTED
    acked: list[int] = []
    while len(acked) < len(orders):
        frame = peer.next_frame()
        assert frame is not None, f"{len(acked)} of {len(orders)} answered"
        if frame[0] == MessageType.EVENTS:
            acked.extend(int(e["order_id"]) for e in np.frombuffer(frame[2], wire.EVENT_DTYPE))
    peer.close()
    assert acked == list(range(500, 540))


@pytest.mark.parametrize("one_per_frame", [False, True])
def test_commands_no_client_may_send_go_to_the_core_in_order(
    edge: EdgeRig, one_per_frame: bool
) -> None:
    """The edge answers no command itself: every record goes to the core in the order
    sent (in one frame of several, or a frame each: the single-record fast path), and the
    core answers each kind no client may send with REJECTED(INVALID_COMMAND) in the
    session's event stream, never passing it to the engine. (The fake core answers each
    command as it takes it, so the events' order is the order the core got them in.)"""
    peer = RawPeer.tcp(edge.host, edge.port)
    peer.login(1, KEYS[1])
    recs = batch(
        one_order(1),
        one_order(2, wire.CommandKind.CONTROL),
        one_order(3, 0),
        one_order(4, 99),
        one_order(5, 255),
        one_order(6),
    )
    if one_per_frame:
        peer.send(
            b"".join(
                encode_records(MessageType.COMMANDS, i + 1, recs[i : i + 1])
                for i in range(len(recs))
            )
        )
    else:
        peer.send(encode_records(MessageType.COMMANDS, 1, recs))
    events = []
    while len(events) < len(recs):
        frame = peer.next_frame()
        assert frame is not None
        if frame[0] == MessageType.EVENTS:
            events.extend(np.frombuffer(frame[2], wire.EVENT_DTYPE))
    got = [(int(e["order_id"]), int(e["kind"]), int(e["reason"])) for e in events]
    ok = (wire.EventKind.ACCEPTED, 0)
    invalid = (wire.EventKind.REJECTED, wire.RejectReason.INVALID_COMMAND)
    assert got == [(oid, *answer) for oid, answer in enumerate([ok] + [invalid] * 4 + [ok], 1)]
    assert all(int(e["account_id"]) == 1 for e in events)
    assert (edge.core.commands, edge.core.invalid) == (6, 4), "all reached the core"
    peer.close()


def test_tcp_login_timeout_and_silent_peer(edge: EdgeRig, bystander: OrderClient) -> None:
    mute = RawPeer.tcp(edge.host, edge.port)  # never logs in
    silent = RawPeer.tcp(edge.host, edge.port)
    silent.login(2, KEYS[2])  # logs in, then never speaks again
    reason, _ = reason_of(mute.frames_until_closed(), MessageType.LOGIN_REJECTED)
    assert reason == LoginRejectReason.TIMEOUT
    frames = silent.frames_until_closed()
    assert any(f[0] == MessageType.HEARTBEAT for f in frames), "the gateway heart-beats"
    reason, _ = reason_of(frames, MessageType.END)
    assert reason == EndReason.HEARTBEAT_TIMEOUT
    still_served(bystander)  # it heart-beat all along, so it is still there
    assert edge.stats()["heartbeat_timeouts"] == 1


def test_a_peer_waiting_behind_a_full_ring_is_not_taken_for_a_silent_one(
    edge: EdgeRig, bystander: OrderClient
) -> None:
    """When the session's ring is full the gateway stops reading the socket, so whatever
    the peer sends meanwhile -- its heartbeats too -- waits in our own buffer: its silence
    cannot be judged then. The core is held back for more than three heartbeat intervals
    (the silence limit), counted by the gateway's own heartbeats, with more commands sent
    than the ring takes; the peer answers each heartbeat as a client should. The session
    must survive it, and every command be answered once the core moves."""
    n = edge.config.gateway.session_ring_capacity + 2 * MAX_RECORDS_PER_FRAME
    recs = np.repeat(one_order(0), n)
    recs["order_id"] = np.arange(1, n + 1)
    peer = RawPeer.tcp(edge.host, edge.port)
    peer.login(1, KEYS[1])
    edge.core.stop()
    peer.send(
        b"".join(
            encode_records(MessageType.COMMANDS, i + 1, recs[i : i + MAX_RECORDS_PER_FRAME])
            for i in range(0, n, MAX_RECORDS_PER_FRAME)
        )
    )
    heartbeats = 0
    while heartbeats < 5:  # the gateway sends one each quiet interval: > 3 intervals
        frame = peer.next_frame()
        assert frame is not None and frame[0] != MessageType.END, (
            f"the session ended while its commands waited behind the ring: {frame}"
        )
        if frame[0] == MessageType.HEARTBEAT:
            heartbeats += 1
            peer.send(encode_empty(MessageType.HEARTBEAT))
    assert edge.core.commands == 0
    edge.core.resume()
    answered, last_sent = 0, time.monotonic()
    while answered < n:
        frame = peer.next_frame()
        assert frame is not None and frame[0] != MessageType.END, frame
        if frame[0] == MessageType.EVENTS:
            answered += len(frame[2]) // wire.EVENT_DTYPE.itemsize
        if time.monotonic() - last_sent > 0.1:  # half the interval: a client's own beat
            peer.send(encode_empty(MessageType.HEARTBEAT))
            last_sent = time.monotonic()
    assert edge.core.commands == n
    assert edge.stats()["heartbeat_timeouts"] == 0
    peer.close()
    still_served(bystander)


def test_a_tcp_client_that_vanishes_mid_stream(edge: EdgeRig, bystander: OrderClient) -> None:
    peer = RawPeer.tcp(edge.host, edge.port)
    peer.login(1, KEYS[1])
    frame = encode_records(MessageType.COMMANDS, 1, one_order(1))
    peer.send(frame[:40])  # half a frame, then a reset
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    wait_for_sessions(edge, 1)
    assert edge.core.commands == 0
    still_served(bystander)


# ---- colocated -----------------------------------------------------------------------------


def test_unix_half_finished_handshake_times_out(edge: EdgeRig, bystander: OrderClient) -> None:
    peer = RawPeer.unix(edge.unix)
    peer.send(encode_login(1, KEYS[1])[:20])
    reason, text = reason_of(peer.frames_until_closed(), MessageType.LOGIN_REJECTED)
    assert reason == LoginRejectReason.TIMEOUT and "no LOGIN within 500 ms" in text
    peer.close()
    wait_for_sessions(edge, 1)
    still_served(bystander)


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b"\xff" * 16, LoginRejectReason.MALFORMED),
        (encode_empty(MessageType.HEARTBEAT), LoginRejectReason.MALFORMED),
        (encode_login(1, "nope"), LoginRejectReason.BAD_CREDENTIALS),
        (encode_login(77, KEYS[1]), LoginRejectReason.BAD_CREDENTIALS),
    ],
)
def test_unix_bad_logins(edge: EdgeRig, bystander: OrderClient, first: bytes, reason: int) -> None:
    peer = RawPeer.unix(edge.unix)
    peer.send(first)
    got, _ = reason_of(peer.frames_until_closed(), MessageType.LOGIN_REJECTED)
    assert got == reason
    peer.close()
    wait_for_sessions(edge, 1)
    assert [n for n in instance_segments(edge.config.engine.instance) if ".sin." in n] == [
        f"/tradsys.{edge.config.engine.instance}.sin.0"
    ], "only the bystander's rings"
    still_served(bystander)


@pytest.mark.parametrize(
    ("frame", "reason", "why"),
    [
        (b"\xff" * 16, EndReason.PROTOCOL_ERROR, "exceeds the maximum"),
        (b"\x10\x00\x00\x00Q" + bytes(15), EndReason.PROTOCOL_ERROR, "unknown message type 0x51"),
        (encode_login(1, KEYS[1]), EndReason.PROTOCOL_ERROR, "only HEARTBEAT or LOGOUT here"),
        (encode_empty(MessageType.LOGOUT), EndReason.LOGOUT, "logged out"),
    ],
)
def test_unix_frames_after_login_end_the_session_saying_why(
    edge: EdgeRig, bystander: OrderClient, frame: bytes, reason: int, why: str
) -> None:
    """Once logged in, a colocated client's socket carries HEARTBEAT and LOGOUT only;
    anything else ends the session with an END that names the reason (before, the socket
    was closed with no word)."""
    peer = RawPeer.unix(edge.unix)
    peer.login(1, KEYS[1])
    peer.send(frame)
    got, text = reason_of(peer.frames_until_closed(), MessageType.END)
    assert got == reason and why in text, text
    peer.close()
    wait_for_sessions(edge, 1)
    still_served(bystander)


def test_a_colocated_client_is_told_why_its_session_ended(edge: EdgeRig) -> None:
    """The client library reads the END: its next poll raises Disconnected naming it."""
    client = OrderClient.connect(edge.unix, account_id=1, api_key=KEYS[1])
    try:
        wait_for_sessions(edge, 1)
        (sid,) = edge.run(lambda: list(edge.server.colocated.held))
        reason = EndReason.SLOW_CONSUMER
        assert edge.run(lambda: edge.server.colocated.end(sid, reason, "held its shard back"))
        with pytest.raises(Disconnected, match=r"\(SLOW_CONSUMER\): held its shard back"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                client.poll(0.5)
        # and so does every send after it: a push into the ended session's ring would
        # never be answered (submit returned an order id, and the order was lost)
        with pytest.raises(Disconnected, match=r"\(SLOW_CONSUMER\)"):
            client.submit(1, "buy", 1, 90)
        with pytest.raises(Disconnected, match=r"\(SLOW_CONSUMER\)"):
            client.submit_batch(one_order(5))
    finally:
        client.close()


def test_unix_socket_file_is_owner_only(edge: EdgeRig) -> None:
    assert os.stat(edge.unix).st_mode & 0o777 == 0o600


def _colocated_child(path: str, ready: str) -> None:
    """Log in, rest an order, say so, then wait to be killed."""
    c = OrderClient.connect(path, account_id=1, api_key=KEYS[1])
    oid = c.submit(1, "sell", 5, 120)
    c.wait_for(oid)
    Path(ready).write_text(str(oid))
    time.sleep(600)  # killed by the test long before


def test_a_colocated_client_killed_mid_session(edge: EdgeRig, children, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = children.start(_colocated_child, edge.unix, str(ready))
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists(), "the child never got its ack"
    wait_for_sessions(edge, 1)
    os.kill(proc.pid, signal.SIGKILL)
    wait_for_sessions(edge, 0)
    assert instance_segments(edge.config.engine.instance) == [], "its rings are unlinked"
    # cancel on disconnect: the resting sell is gone, so this buy finds nothing to hit
    with OrderClient.connect(f"tcp://{edge.tcp}", account_id=2, api_key=KEYS[2]) as bob:
        oid = bob.submit(1, "buy", 5, 120, tif="ioc")
        events = [bob.wait_for(oid)]
        events += list(bob.events(0.3))
        assert all(e.__class__.__name__ != "Fill" for e in events), events


def test_session_limit(instance: str, tmp_path: Path) -> None:
    with (
        running_edge(edge_config(instance, tmp_path, max_sessions=2)) as rig,
        contextlib.ExitStack() as clients,
    ):
        a = clients.enter_context(OrderClient.connect(rig.unix, account_id=1, api_key=KEYS[1]))
        clients.enter_context(
            OrderClient.connect(f"tcp://{rig.tcp}", account_id=2, api_key=KEYS[2])
        )
        peer = RawPeer.unix(rig.unix)
        peer.send(encode_login(3, KEYS[3]))
        got, text = reason_of(peer.frames_until_closed(), MessageType.LOGIN_REJECTED)
        assert got == LoginRejectReason.SESSION_LIMIT and "at most 2" in text
        peer.close()
        a.close()
        wait_for_sessions(rig, 1)
        c = clients.enter_context(OrderClient.connect(rig.unix, account_id=3, api_key=KEYS[3]))
        assert c.session_id


def test_an_accounts_own_session_limit(instance: str, tmp_path: Path) -> None:
    """One account cannot take every session the gateway has: past its own max_sessions
    its next login is refused, while other accounts still log in."""
    config = edge_config(instance, tmp_path)
    capped = msgspec.structs.replace(config.accounts[0], max_sessions=2)
    config = msgspec.structs.replace(config, accounts=[capped, *config.accounts[1:]])
    with running_edge(config) as rig, contextlib.ExitStack() as clients:
        for _ in range(2):
            clients.enter_context(OrderClient.connect(rig.unix, account_id=1, api_key=KEYS[1]))
        peer = RawPeer.tcp(rig.host, rig.port)
        peer.send(encode_login(1, KEYS[1]))
        got, text = reason_of(peer.frames_until_closed(), MessageType.LOGIN_REJECTED)
        assert got == LoginRejectReason.SESSION_LIMIT
        assert "account 1 may have 2 session(s) open at once" in text
        peer.close()
        other = clients.enter_context(
            OrderClient.connect(f"tcp://{rig.tcp}", account_id=2, api_key=KEYS[2])
        )
        still_served(other)


def _eventfds() -> int:
    """Open eventfds of this process (the in-process edge's among them)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    return count


def test_a_login_whose_rings_cannot_be_made_is_refused_and_leaves_nothing(
    edge: EdgeRig, bystander: OrderClient
) -> None:
    """/dev/shm full: the login is refused UNAVAILABLE saying why, on either edge, and the
    TCP session's eventfd is closed (before, the error escaped the edge and leaked it)."""
    table = edge.server.table

    def no_room() -> None:
        raise OSError(28, "cannot reserve 8704 bytes (is /dev/shm full?)")

    before = edge.run(_eventfds)
    table.rings.make = no_room  # type: ignore[method-assign]
    try:
        for peer in (RawPeer.tcp(edge.host, edge.port), RawPeer.unix(edge.unix)):
            peer.send(encode_login(3, KEYS[3]))
            got, text = reason_of(peer.frames_until_closed(), MessageType.LOGIN_REJECTED)
            assert got == LoginRejectReason.UNAVAILABLE, text
            assert text == "no session rings: /dev/shm is full"
            peer.close()
    finally:
        del table.rings.make
    assert edge.run(_eventfds) == before
    wait_for_sessions(edge, 1)  # the bystander's alone
    still_served(bystander)


def test_a_full_inbound_ring_is_backpressure_not_loss(instance: str, tmp_path: Path) -> None:
    """The core is not pumping: a TCP client's commands fill the session's 64-slot ring,
    the gateway stops reading the socket; once the core runs, every command goes through,
    in order."""
    from tests.client.fake_core import FakeCore

    config = edge_config(instance, tmp_path, session_ring_capacity=64, heartbeat_ms=2000)
    core = FakeCore(config)
    rig = EdgeRig(config, core)
    try:
        with OrderClient.connect(f"tcp://{rig.tcp}", account_id=1, api_key=KEYS[1]) as c:
            n = 500
            orders = batch(*[one_order(i + 1) for i in range(n)])
            c.submit_batch(orders)
            assert c.poll(0.3) == []  # nothing moves while the core is stopped
            core.start()
            got: list[int] = []
            while len(got) < n:
                events = c.poll(5.0)
                assert events, f"only {len(got)} of {n} acks"
                got += [e.order_id for e in events if isinstance(e, Ack)]
            assert got == list(range(1, n + 1))
    finally:
        rig.close()
        core.close()


def test_a_silent_peer_is_ended_even_while_the_loop_is_busy(instance: str, tmp_path: Path) -> None:
    """A loaded event loop makes every tick late; lateness is not a suspend, so a peer
    that stopped speaking is still ended (a first version of the Ctrl-Z fix forgave the
    peers of every late tick, and a busy gateway kept dead sessions for ever)."""
    config = edge_config(instance, tmp_path, heartbeat_ms=200, stalled_session_ms=40)
    with running_edge(config) as edge:
        busy = [True]

        def hog() -> None:
            if busy[0]:
                time.sleep(0.05)  # the loop's own work (not a wait): 50 ms of every 70
                edge.loop.call_later(0.02, hog)

        edge.loop.call_soon_threadsafe(hog)
        peer = RawPeer.tcp(edge.host, edge.port)
        try:
            peer.login(2, KEYS[2])  # and never speaks again
            peer.frames_until_closed(timeout=5.0)  # fails unless the gateway ends it
        finally:
            busy[0] = False
            peer.close()
