"""A gateway that goes away without a word: a connection reset during the login, a
gateway that stops answering (a partition, a frozen host). The client must raise the
library's own Disconnected -- the README names it as what a disconnect gives -- and must
notice a silent gateway by the heartbeat rule (docs/protocol.md, Heartbeats), not wait on
it for good. Stand-in gateways on loopback sockets, so every outcome is known."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from tradsys.client.events import Disconnected
from tradsys.client.orders import OrderClient
from tradsys.protocols.binary import (
    LOGIN_BODY,
    Accepted,
    MessageType,
    SymbolInfo,
    encode_accepted,
    encode_empty,
    encode_symbols,
)

HEARTBEAT_MS = 50
LOGIN_FRAME = 16 + LOGIN_BODY.size


def _serve_one(behave: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback listener that runs ``behave`` on its first connection; yields its
    tcp:// address."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def run() -> None:
        conn, _ = listener.accept()
        try:
            behave(conn)
            done.wait(30)  # keep the connection as behave left it until the test ends
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        listener.close()
        thread.join(10)


def _read_login(conn: socket.socket) -> None:
    got = b""
    while len(got) < LOGIN_FRAME:
        chunk = conn.recv(LOGIN_FRAME - len(got))
        assert chunk, "the client closed before its LOGIN was whole"
        got += chunk


def _reset(conn: socket.socket) -> None:
    """Read the LOGIN, then reset the connection (a gateway killed mid-login)."""
    _read_login(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _accept_then_fall_silent(conn: socket.socket) -> None:
    """Log the client in, then send nothing more and close nothing (a partition)."""
    _read_login(conn)
    accepted = Accepted(7, HEARTBEAT_MS, 1, 1, 1, 1024, "", "")
    conn.sendall(encode_accepted(accepted) + encode_symbols([SymbolInfo(1, "ACME", 1, 1)]))


@pytest.fixture
def resetting() -> Iterator[str]:
    yield from _serve_one(_reset)


@pytest.fixture
def silent() -> Iterator[str]:
    yield from _serve_one(_accept_then_fall_silent)


def test_a_reset_during_the_login_is_disconnected(resetting: str) -> None:
    with pytest.raises(Disconnected, match="the connection broke during the login"):
        OrderClient.connect(resetting, account_id=1, api_key="k")


def test_a_silent_gateway_is_noticed_by_the_heartbeat_rule(silent: str) -> None:
    client = OrderClient.connect(silent, account_id=1, api_key="k")
    try:
        with pytest.raises(Disconnected, match="heard nothing from the gateway"):
            client.poll(30.0)  # before: waited the whole 30 s for nothing, and returned []
        # orders no longer go into the void
        with pytest.raises(Disconnected, match="heard nothing from the gateway"):
            client.submit("ACME", "buy", 1, 10)
    finally:
        client.close()


def _accept_then_only_heartbeat(conn: socket.socket) -> None:
    """Log the client in, then heartbeat and answer nothing (not its LOGOUT either)."""
    _accept_then_fall_silent(conn)
    conn.settimeout(0.02)
    with contextlib.suppress(OSError):
        for _ in range(1000):  # 20 s at most; the test is over long before
            conn.sendall(encode_empty(MessageType.HEARTBEAT))
            with contextlib.suppress(TimeoutError):
                if not conn.recv(4096):
                    return  # the client closed


@pytest.fixture
def deaf() -> Iterator[str]:
    yield from _serve_one(_accept_then_only_heartbeat)


def test_a_closed_tcp_client_says_so(deaf: str) -> None:
    """A TCP client closed after a logout nobody answered raised ValueError from select on
    its closed socket; a colocated one raises Disconnected, as the docs say."""
    client = OrderClient.connect(deaf, account_id=1, api_key="k")
    client.close()
    with pytest.raises(Disconnected, match="the client is closed"):
        client.poll(0.1)
    with pytest.raises(Disconnected, match="the client is closed"):
        client.wait_for(1, timeout=0.1)
