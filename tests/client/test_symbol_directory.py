"""A symbol directory of several SYMBOLS frames (more than 1 024 symbols): the client
reads them all, and a directory that breaks off is a named Disconnected. Stand-in
gateways on loopback sockets, as in test_gateway_gone."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from tests.client.test_gateway_gone import _read_login, _serve_one
from tradsys.client.events import Disconnected
from tradsys.client.orders import OrderClient
from tradsys.protocols.binary import (
    Accepted,
    MessageType,
    SymbolInfo,
    encode_accepted,
    encode_empty,
    encode_symbols,
)

SYMBOLS = [SymbolInfo(i + 1, f"S{i:05d}", 1, 1) for i in range(2100)]
ACCEPTED = Accepted(7, 1000, 1, 1, 1, 1024, "", "")


def _gateway(directory: bytes) -> Callable[[socket.socket], None]:
    def behave(conn: socket.socket) -> None:
        _read_login(conn)
        conn.sendall(encode_accepted(ACCEPTED) + directory)

    return behave


@pytest.fixture
def whole() -> Iterator[str]:
    yield from _serve_one(_gateway(encode_symbols(SYMBOLS)))


@pytest.fixture
def broken() -> Iterator[str]:
    # the first frame says 1 076 more are coming; a HEARTBEAT comes instead
    first = encode_symbols(SYMBOLS)[: 16 + 1024 * 64]
    yield from _serve_one(_gateway(first + encode_empty(MessageType.HEARTBEAT)))


def test_every_frame_of_the_directory_is_read(whole: str) -> None:
    with OrderClient.connect(whole, account_id=1, api_key="k") as client:
        assert client.transport.symbols == SYMBOLS


def test_a_directory_that_breaks_off_is_disconnected(broken: str) -> None:
    with pytest.raises(Disconnected, match="1076 entries were still to come"):
        OrderClient.connect(broken, account_id=1, api_key="k")
