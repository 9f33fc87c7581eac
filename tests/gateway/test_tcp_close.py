"""A TCP session the gateway ends is closed after what it was sent (END last): a close
that a client that does not read never lets finish. The session itself leaves the core
when END is sent -- its orders, events and place in the pump are the account's other or
next session's from then on (a resting order of a cancel_on_disconnect account once kept
trading until the client closed its socket) -- and only the connection lingers: aborted by
the slow-consumer check, or once the heartbeat silence limit has passed."""

from __future__ import annotations

import asyncio
import types
from typing import Any

from tradsys.cores.gateway_tcp import MISSED_HEARTBEATS, TcpEdge, TcpSession
from tradsys.protocols.binary import EndReason

HEARTBEAT_S = 0.02


class PeerNotReading:
    """A transport whose peer reads nothing: a close waits for good; abort() drops the
    buffer and reports the connection lost, as asyncio's transports do."""

    def __init__(self, protocol: TcpSession) -> None:
        self.protocol = protocol
        self.written: list[bytes] = []
        self.eof = self.closed = self.aborted = False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.eof or self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.written))

    def abort(self) -> None:
        self.aborted = True
        asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


def _logged_in(edge: TcpEdge) -> tuple[TcpSession, PeerNotReading]:
    conn = TcpSession(edge)
    transport = PeerNotReading(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    rings = types.SimpleNamespace(outbound=types.SimpleNamespace(release=lambda k: None))
    conn.session = types.SimpleNamespace(  # type: ignore[assignment]
        session_id=7, account_id=1, closed=False, rings=rings
    )
    return conn, transport


def _edge() -> tuple[TcpEdge, list[int]]:
    removed: list[int] = []

    def close(session: Any, unread: Any = None, unsent: Any = None) -> None:
        assert not session.closed, "a session removed twice"
        session.closed = True
        removed.append(session.session_id)

    table = types.SimpleNamespace(close=close)
    edge = TcpEdge(credentials=None, table=table, heartbeat_s=HEARTBEAT_S, login_timeout_s=60)  # type: ignore[arg-type]
    return edge, removed


async def _until(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.001)


def test_the_slow_consumer_check_aborts_a_session_whose_close_waits() -> None:
    async def scenario() -> None:
        edge, removed = _edge()
        edge.heartbeat_s = 3600.0  # the silence limit out of the way: only the check acts
        conn, transport = _logged_in(edge)
        conn.end(EndReason.PROTOCOL_ERROR, "a bad frame")
        assert transport.eof and not transport.aborted  # END, then FIN after it
        assert b"a bad frame" in transport.written[-1]
        assert removed == [7]  # out of the core at END, not when the peer closes
        await asyncio.sleep(0)
        assert conn in edge.connections  # the peer reads nothing: the close lingers
        assert edge.end_session(7, EndReason.SLOW_CONSUMER, "held its shard back")
        assert transport.aborted
        await _until(lambda: conn not in edge.connections)
        assert conn.aborted and removed == [7]

    asyncio.run(scenario())


def test_a_close_the_peer_never_lets_finish_is_aborted_after_the_silence_limit() -> None:
    async def scenario() -> None:
        edge, removed = _edge()
        conn, transport = _logged_in(edge)
        loop = asyncio.get_running_loop()
        began = loop.time()
        conn.end(EndReason.HEARTBEAT_TIMEOUT, "silent")
        assert removed == [7] and not transport.aborted
        await _until(lambda: transport.aborted)
        assert loop.time() - began >= MISSED_HEARTBEATS * HEARTBEAT_S * 0.99
        await _until(lambda: conn not in edge.connections)
        assert removed == [7]

    asyncio.run(scenario())


def test_a_close_that_finishes_is_not_aborted_later() -> None:
    async def scenario() -> None:
        edge, removed = _edge()
        conn, transport = _logged_in(edge)
        conn.end(EndReason.HEARTBEAT_TIMEOUT, "silent")
        conn.connection_lost(None)  # the peer read everything and closed too
        assert removed == [7]  # once, at END
        conn._abort()  # what the silence-limit timer runs when it comes
        assert not transport.aborted and not conn.aborted

    asyncio.run(scenario())
