"""Raw protocol peers for the tests that feed the gateway bad input: a socket, frames in
and out, and "read until the gateway closes" with a deadline (data decides, not time)."""

from __future__ import annotations

import select
import socket
import time

from tradsys.protocols.binary import HEADER, HEADER_SIZE, MessageType, encode_login


class RawPeer:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = bytearray()
        self.closed = False

    @classmethod
    def tcp(cls, host: str, port: int) -> RawPeer:
        return cls(socket.create_connection((host, port), timeout=5))

    @classmethod
    def unix(cls, path: str) -> RawPeer:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return cls(s)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def login(self, account: int, key: str) -> tuple[int, int, bytes]:
        self.send(encode_login(account, key))
        frame = self.next_frame()
        assert frame is not None and frame[0] == MessageType.LOGIN_ACCEPTED, frame
        return frame

    def _fill(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0 or self.closed:
            return False
        ready, _, _ = select.select([self.sock], [], [], left)
        if not ready:
            return False
        try:
            chunk = self.sock.recv(1 << 16)
        except (ConnectionResetError, OSError):
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.data += chunk
        return True

    def next_frame(self, timeout: float = 5.0) -> tuple[int, int, bytes] | None:
        """The next whole frame, or None if the gateway closed / nothing came in time."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.data) >= HEADER_SIZE:
                length, kind, seq = HEADER.unpack_from(self.data)
                end = 4 + length
                if len(self.data) >= end:
                    body = bytes(self.data[HEADER_SIZE:end])
                    del self.data[:end]
                    return kind, seq, body
            if not self._fill(deadline):
                return None

    def frames_until_closed(self, timeout: float = 5.0) -> list[tuple[int, int, bytes]]:
        """Every frame until the gateway closes; AssertionError if it does not in time."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            frame = self.next_frame(max(0.0, deadline - time.monotonic()))
            if frame is None:
                assert self.closed, "the gateway did not close the connection in time"
                return out
            out.append(frame)

    def close(self) -> None:
        self.sock.close()
