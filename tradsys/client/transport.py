"""How an order client reaches the gateway: colocated (shared-memory rings, after a Unix
socket handshake) or remote (TCP binary protocol). Both move whole numpy batches of
64-byte records and offer the same four calls, so the client above them is one class.

Either transport may be sent to from one thread while another polls it (the sync
client's heartbeat thread, the async client's reader thread rely on that).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import Any, Protocol

import numpy as np

from tradsys import wire
from tradsys.client.events import Disconnected, LoginFailed
from tradsys.protocols.binary import (
    HEADER,
    HEADER_SIZE,
    MAX_RECORDS_PER_FRAME,
    REASON_BODY,
    SYMBOL_ENTRY,
    Accepted,
    EndReason,
    FrameBuffer,
    MessageType,
    ProtocolError,
    SymbolInfo,
    check_header,
    decode_accepted,
    decode_reason,
    decode_symbols,
    encode_ack,
    encode_empty,
    encode_login,
    encode_records,
)
from tradsys.ring import Ring, WaitStrategy

Records = np.ndarray[Any, Any]
LAYOUT = {"slot_size": wire.RECORD_SIZE, "layout_version": wire.LAYOUT_VERSION}
POLL_BATCH = 4096
# TCP: acknowledge (ACK) once this many events are processed, and at each heartbeat tick
ACK_EVERY = 1024
# colocated: the longest a poll waits on the ring before it looks at the socket again, so
# a session that ends is noticed this soon whatever timeout the caller gave
LIVENESS_SLICE_S = 0.25
# colocated, while the caller holds records back: the ring's wait counts those as readable,
# so the poll looks for more this often instead (only wait_for and a lagging async reader
# hold records back, never a plain poll loop)
HELD_RECHECK_S = 0.0005
# the longest a send waits for room (the colocated ring or the TCP socket) by default
SEND_TIMEOUT_S = 10.0
# docs/protocol.md, Heartbeats: a side that hears nothing for this many intervals
# considers the peer gone (the gateway heartbeats an idle session every interval)
MISSED_HEARTBEATS = 3
NO_EVENTS = np.zeros(0, wire.EVENT_DTYPE)


class Transport(Protocol):
    accepted: Accepted
    symbols: list[SymbolInfo]

    def send(self, records: Records, timeout: float | None = SEND_TIMEOUT_S) -> None: ...
    def send_one(self, record: bytes, timeout: float | None = SEND_TIMEOUT_S) -> None: ...
    def try_send(self, records: Records) -> int: ...
    def try_send_one(self, record: bytes) -> bool: ...
    def poll(self, timeout: float, done: int | None = None) -> Records: ...
    def close(self, done: int | None = None) -> None: ...
    @property
    def closed(self) -> bool: ...


END_FRAME_SIZE = HEADER_SIZE + REASON_BODY.size


def _why_ended(data: bytes) -> str:
    """What a colocated session's socket said before it closed: END's reason and text."""
    if len(data) >= HEADER_SIZE:
        _, kind, _ = HEADER.unpack_from(data)
        if kind == MessageType.END and len(data) >= END_FRAME_SIZE:
            return _ended_text(*decode_reason(data[HEADER_SIZE:END_FRAME_SIZE]))
    return "the gateway ended the session (it sent what a colocated session never gets)"


def _ended_text(reason: int, text: str) -> str:
    """An END as the user reads it: its reason by name (SLOW_CONSUMER, SHUTDOWN, ...)."""
    try:
        name = EndReason(reason).name
    except ValueError:
        name = f"reason {reason}"
    return f"the gateway ended the session ({name}): {text}"


def _read_frame(sock: socket.socket, deadline: float) -> tuple[int, int, bytes]:
    """One whole frame from a blocking socket (handshake only: not the hot path)."""

    def exactly(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoginFailed(0, "the gateway did not answer the login in time")
            sock.settimeout(left)
            try:
                chunk = sock.recv(n - len(out))
            except TimeoutError:
                continue
            except OSError as exc:  # a reset: the gateway died or dropped us mid-login
                raise Disconnected(f"the connection broke during the login: {exc}") from None
            if not chunk:
                raise Disconnected("the gateway closed the connection during the login")
            out += chunk
        return bytes(out)

    length, kind, seq = HEADER.unpack(exactly(HEADER_SIZE))
    size = length + 4 - HEADER_SIZE
    try:
        check_header(kind, size)
    except ProtocolError as exc:
        raise Disconnected(f"the gateway sent a malformed frame: {exc}") from None
    return kind, seq, exactly(size)


def _login(
    sock: socket.socket, account_id: int, api_key: str, timeout: float
) -> tuple[Accepted, list[SymbolInfo]]:
    """LOGIN, then LOGIN_ACCEPTED and the SYMBOLS directory that always follows it."""
    try:
        sock.sendall(encode_login(account_id, api_key))
    except OSError as exc:
        raise Disconnected(f"the connection broke during the login: {exc}") from None
    deadline = time.monotonic() + timeout
    kind, _, body = _read_frame(sock, deadline)
    if kind == MessageType.LOGIN_REJECTED:
        raise LoginFailed(*decode_reason(body))
    if kind != MessageType.LOGIN_ACCEPTED:
        raise Disconnected(f"unexpected {MessageType(kind).name} in answer to LOGIN")
    accepted = decode_accepted(body)
    kind, left, body = _read_frame(sock, deadline)
    if kind != MessageType.SYMBOLS:
        raise Disconnected(f"unexpected {MessageType(kind).name} after LOGIN_ACCEPTED")
    symbols = decode_symbols(body)
    # a directory of more than one frame's entries comes in several, each seq saying how
    # many entries are still to come (tradsys.protocols.binary.encode_symbols)
    while left:
        kind, after, body = _read_frame(sock, deadline)
        entries = len(body) // SYMBOL_ENTRY.size
        if kind != MessageType.SYMBOLS or not entries or left - after != entries:
            raise Disconnected(
                f"the gateway's symbol directory broke off: {left} entries were still to "
                f"come, then a {MessageType(kind).name} frame (seq {after})"
            )
        symbols += decode_symbols(body)
        left = after
    return accepted, symbols


class ColocatedTransport:
    """Orders into the session's inbound ring, events out of its outbound ring; the Unix
    socket stays open only so the gateway knows this process lives.

    The ring's read index is the session's acknowledgement, and it moves as TCP's ACK
    does: a batch :meth:`poll` returned leaves the ring only at the next call (the caller
    is done with it), so a client that dies while handling a batch has it again in its
    account's next session (docs/protocol.md, "Nothing acknowledged is lost"). A caller
    that is not done with all of it yet (it keeps events for later) says how much it is
    done with (``done``), and the poll reads on past the rest."""

    def __init__(
        self,
        path: str,
        account_id: int,
        api_key: str,
        timeout: float = 5.0,
        wait: WaitStrategy | None = None,
    ) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(path)
            except OSError as exc:
                raise Disconnected(f"cannot connect to the gateway at {path}: {exc}") from None
            self.accepted, self.symbols = _login(self.sock, account_id, api_key, timeout)
            self.inbound = Ring.attach(self.accepted.inbound, role="producer", **LAYOUT)
            try:
                self.outbound = Ring.attach(self.accepted.outbound, role="consumer", **LAYOUT)
            except BaseException:
                self.inbound.close()
                raise
            try:
                # tells the gateway LOGIN_ACCEPTED was read: a session it hears nothing
                # from has its events_dropped told again at the account's next login
                self.sock.sendall(encode_empty(MessageType.HEARTBEAT))
            except BaseException as exc:
                self.inbound.close()
                self.outbound.close()
                if isinstance(exc, OSError):
                    raise Disconnected(f"the gateway closed the connection: {exc}") from None
                raise
        except BaseException:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.wait = wait or WaitStrategy.spin_park()
        self.out = np.zeros(POLL_BATCH, wire.EVENT_DTYPE)
        self._read = 0  # records earlier polls returned that are still in the ring
        self._closed = False
        # why the session is over, once it is (closed here, or the gateway ended it): a
        # send after that raises it, where a push into the dead session's ring would go
        # unanswered
        self._over: str | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_alive(self) -> None:
        """The gateway closes the socket when it ends the session or exits, after an END
        that says why (nothing else comes on the socket once logged in)."""
        if self._over is not None:
            raise Disconnected(self._over)
        try:
            data = self.sock.recv(END_FRAME_SIZE, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError as exc:
            self._over = f"the gateway connection broke: {exc}"
        else:
            self._over = (
                _why_ended(data) if data else "the gateway ended the session (its socket closed)"
            )
        raise Disconnected(self._over)

    def send(self, records: Records, timeout: float | None = SEND_TIMEOUT_S) -> None:
        if self._over is not None:
            raise Disconnected(self._over)
        if len(records) == 0:
            return
        sent = self._push_waiting(records, timeout)
        if sent < len(records):
            self._check_alive()
            raise TimeoutError(
                f"the inbound ring {self.inbound.name} stayed full: {sent} of "
                f"{len(records)} records sent{self._why_full()}"
            )

    def _push_waiting(self, records: Records, timeout: float | None) -> int:
        """Push all the records, waiting for room in slices with a look at the socket
        between them (as a poll does): a session the gateway ended raises Disconnected
        at once, not after the whole timeout. Returns how many went in."""
        sent = self.inbound.push_all(records, self.wait, 0)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while sent < len(records):
            left = LIVENESS_SLICE_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            sent += self.inbound.push_all(records[sent:], self.wait, min(left, LIVENESS_SLICE_S))
            if sent < len(records):
                self._check_alive()
        return sent

    def _why_full(self) -> str:
        """The usual cause of a full inbound ring, when it is this one: the gateway takes a
        session's commands only while its event ring has room for their answers (an
        answer is never held in the gateway's memory alone), so a client that sends and
        never polls stops itself."""
        unread = self.outbound.readable
        if unread < self.outbound.capacity:
            return ""
        return (
            f"; the gateway takes no more commands until this session reads its events: "
            f"its event ring {self.outbound.name} is full ({unread} unread), poll() them"
        )

    def send_one(self, record: bytes, timeout: float | None = SEND_TIMEOUT_S) -> None:
        """One command's 64 bytes: a single C call when the ring has room (the common
        case), else the waiting path :meth:`send` takes."""
        if not self.try_send_one(record):
            self.send(np.frombuffer(record, wire.COMMAND_DTYPE), timeout)

    def try_send(self, records: Records) -> int:
        """As many of the records as the ring has room for now, never waiting; how many."""
        if self._over is not None:
            raise Disconnected(self._over)
        return self.inbound.push_batch(records)

    def try_send_one(self, record: bytes) -> bool:
        """The record if the ring has room now, never waiting; whether it went."""
        if self._over is not None:
            raise Disconnected(self._over)
        return bool(self.inbound.push(record))

    def poll(self, timeout: float, done: int | None = None) -> Records:
        """Events that arrived (a view valid until the next poll); empty on timeout.

        ``done``: how many of the records earlier polls returned the caller is done with,
        oldest first (None: all of them); those leave the ring, the rest stay in it (a
        client that dies has them again) and this poll returns what follows them."""
        if self._closed:
            raise Disconnected("the client is closed")
        self._give_back(done)
        n = self._wait_and_peek(timeout)
        self._read += n
        return self.out[:n]

    def _wait_and_peek(self, timeout: float) -> int:
        """Records past those already read, waiting up to ``timeout`` for the first. The
        wait goes in slices with a look at the socket between them: a ring whose gateway
        died is never written again, and only the socket says so."""
        n = self.outbound.peek_batch(self.out, self._read)
        deadline = time.monotonic() + max(timeout, 0.0)
        while n == 0 and (left := deadline - time.monotonic()) > 0:
            end = time.monotonic() + min(left, LIVENESS_SLICE_S)
            if self._read == 0:
                self.outbound.wait_readable(self.wait, end - time.monotonic())
            else:
                while self.outbound.readable <= self._read and time.monotonic() < end:
                    time.sleep(HELD_RECHECK_S)
            n = self.outbound.peek_batch(self.out, self._read)
            if n == 0:
                self._check_alive()
        if n == 0:
            self._check_alive()
        return n

    def _give_back(self, done: int | None) -> None:
        """The oldest ``done`` records read (None: all) are processed: they leave the ring."""
        k = self._read if done is None else max(0, min(done, self._read))
        if k:
            self.outbound.release(k)
            self._read -= k

    def close(self, done: int | None = None) -> None:
        """End the session; ``done`` as for :meth:`poll` (None: closing says everything
        returned was handled, as TCP's logout does)."""
        if self._closed:
            return
        self._closed = True
        self._over = "the client is closed"
        self._give_back(done)
        self.inbound.close()
        self.outbound.close()
        self.sock.close()


class TcpTransport:
    """The binary protocol over TCP: COMMANDS frames out, EVENTS frames in, numbered and
    checked; a heartbeat thread keeps an idle session alive.

    Events are acknowledged (ACK, ``docs/protocol.md``) once processed: a batch :meth:`poll`
    returned counts as processed at the next call (the caller is done with it; the array is
    valid until then), and the ACK goes every ACK_EVERY events and at each heartbeat tick.
    The gateway keeps what is not acknowledged for the account's next session should this
    one end, so a client that dies with events unread in its socket loses none. The first
    ACK goes right after the login, before any event: until a session has sent one the
    gateway counts every frame it wrote as delivered, so a client killed before its first
    heartbeat tick would lose what it had been sent."""

    def __init__(self, host: str, port: int, account_id: int, api_key: str, timeout: float = 5.0):
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise Disconnected(f"cannot connect to the gateway at {host}:{port}: {exc}") from None
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted, self.symbols = _login(self.sock, account_id, api_key, timeout)
            # "nothing processed yet": makes the session an acknowledging one from the start
            try:
                self.sock.sendall(encode_ack(self.accepted.next_event_seq - 1))
            except OSError as exc:
                raise Disconnected(f"the gateway connection broke: {exc}") from None
        except BaseException:
            self.sock.close()
            raise
        self.sock.settimeout(None)
        self.buf = FrameBuffer()
        self.next_command_seq = self.accepted.next_command_seq
        self.next_event_seq = self.accepted.next_event_seq
        self.heartbeat_s = max(self.accepted.heartbeat_ms, 1) / 1000
        self._send_lock = threading.Lock()
        self._last_sent = self._last_heard = time.monotonic()
        self._closed = False
        self._ended: str | None = None
        self._pending: list[tuple[Records, int]] = []  # decoded, not yet returned: last seq
        self._returned = self.next_event_seq - 1  # seq of the last event poll returned
        self._processed = self._returned  # ... and of the last one the caller is done with
        self._acked = self._returned
        # the gateway sends at most min(tcp_unacked_max, its ring) unacknowledged events:
        # acknowledging only every ACK_EVERY would stall a session with a small ring until
        # the next heartbeat tick, so ACK once a quarter of the ring is processed
        self._ack_every = max(1, min(ACK_EVERY, self.accepted.ring_capacity // 4))
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeats, daemon=True, name="tradsys-hb")
        self._beat.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.heartbeat_s / 2):
            with contextlib.suppress(OSError, Disconnected):
                if self._processed > self._acked:
                    self._ack(self._processed)
                elif time.monotonic() - self._last_sent >= self.heartbeat_s / 2:
                    self._sendall(encode_empty(MessageType.HEARTBEAT))

    def _ack(self, seq: int, timeout: float = SEND_TIMEOUT_S) -> None:
        """ACK ``seq`` unless one as high went already (both threads send them)."""
        with self._send_lock:
            if seq <= self._acked or self._closed:
                return
            self._write(encode_ack(seq), timeout)
            self._acked = seq
            self._last_sent = time.monotonic()

    def _returning(self, records: Records, last_seq: int) -> Records:
        self._returned = last_seq
        return records

    def _sendall(
        self,
        data: bytes | None,
        records: Records | None = None,
        timeout: float | None = SEND_TIMEOUT_S,
    ) -> None:
        """Write one frame (or, with ``records``, one COMMANDS frame numbered here: the
        number is taken and the frame written under one lock, so they stay in order)."""
        with self._send_lock:
            if self._closed:
                raise Disconnected("the client is closed")
            if records is not None:
                data = encode_records(MessageType.COMMANDS, self.next_command_seq, records)
            assert data is not None
            self._write(data, timeout)
            if records is not None:
                self.next_command_seq += len(records)
            self._last_sent = time.monotonic()

    def _write(self, data: bytes, timeout: float | None) -> None:
        """Write a whole frame, waiting for room at most ``timeout`` (None: no limit),
        under the send lock. The gateway stops reading a session's socket while its
        commands wait for room -- and it takes them only while the session's event ring
        has room for their answers -- so a client that sends and never reads would
        otherwise block here for good, holding the lock that close() needs too. Nothing
        written: TimeoutError, the session intact. Part of the frame written: the stream
        cannot go on (the rest of a frame cannot be taken back), so the session is
        dropped and Disconnected raised."""
        view = memoryview(data)
        written = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while written < len(view):
            try:
                written += self.sock.send(view[written:], socket.MSG_DONTWAIT)
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                raise Disconnected(f"the gateway connection broke: {exc}") from None
            left = LIVENESS_SLICE_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            select.select([], [self.sock], [], min(left, LIVENESS_SLICE_S))
        if written == len(view):
            return
        why = (
            f"the gateway read nothing from this session for {timeout:g} s: it takes no "
            "more of its commands while their answers have no room"
        )
        if self._unread():
            why += "; events wait unread in this client's socket: poll() them"
        if not written:
            raise TimeoutError(why)
        self._ended = f"{why} (the connection was dropped mid-frame)"
        self._closed = True
        self._stop.set()  # the heartbeat thread too: close() now finds nothing to do
        self.sock.close()
        raise Disconnected(self._ended)

    def _unread(self) -> bool:
        """Whether bytes the gateway sent wait in this client's socket."""
        ready, _, _ = select.select([self.sock], [], [], 0)
        return bool(ready)

    def send(self, records: Records, timeout: float | None = SEND_TIMEOUT_S) -> None:
        if self._ended or self._gateway_silent():
            raise Disconnected(self._ended)
        for start in range(0, len(records), MAX_RECORDS_PER_FRAME):
            self._sendall(None, records[start : start + MAX_RECORDS_PER_FRAME], timeout)

    def send_one(self, record: bytes, timeout: float | None = SEND_TIMEOUT_S) -> None:
        self.send(np.frombuffer(record, wire.COMMAND_DTYPE), timeout)

    def try_send(self, records: Records) -> int:
        """All the records if the socket has room now (a frame fits whole then: Linux
        calls a TCP socket writable only with a third of its buffer free), else none."""
        if self._ended or self._gateway_silent():
            raise Disconnected(self._ended)
        _, writable, _ = select.select([], [self.sock], [], 0)
        if not writable:
            return 0
        self.send(records)
        return len(records)

    def try_send_one(self, record: bytes) -> bool:
        return self.try_send(np.frombuffer(record, wire.COMMAND_DTYPE)) == 1

    def poll(self, timeout: float, done: int | None = None) -> Records:
        """Events that arrived, in order (empty on timeout); Disconnected on END or EOF.

        ``done``: how many of the records earlier polls returned the caller is done with,
        oldest first (None: all of them); only those are acknowledged."""
        if self._closed:  # its socket is gone (a select on it would raise ValueError)
            raise Disconnected(self._ended or "the client is closed")
        self._mark_processed(done)
        if self._processed - self._acked >= self._ack_every and not self._ended:
            with contextlib.suppress(Disconnected):
                self._ack(self._processed)
        return self._poll(timeout)

    def _mark_processed(self, done: int | None) -> None:
        if done is None:
            self._processed = self._returned
        else:
            self._processed = min(self._processed + max(done, 0), self._returned)

    def _poll(self, timeout: float) -> Records:
        if self._pending:
            return self._returning(*self._pending.pop(0))
        if self._ended:
            raise Disconnected(self._ended)
        deadline = time.monotonic() + timeout
        while True:
            got = self._decode()
            if got is not None:
                return got
            left = deadline - time.monotonic()
            # waited for in heartbeat intervals: a gateway gone silent (a partition, a
            # frozen host) is noticed within one past the limit, however long the wait
            ready, _, _ = select.select([self.sock], [], [], max(0.0, min(left, self.heartbeat_s)))
            if not ready:
                if self._gateway_silent():
                    raise Disconnected(self._ended)
                if left <= self.heartbeat_s:
                    return NO_EVENTS
                continue
            try:
                n = self.sock.recv_into(self.buf.writable())
            except OSError as exc:
                self._ended = f"the gateway connection broke: {exc}"
                raise Disconnected(self._ended) from None
            if n == 0:
                self._ended = "the gateway closed the connection"
                raise Disconnected(self._ended)
            self._last_heard = time.monotonic()
            self.buf.advance(n)

    def _gateway_silent(self) -> bool:
        """Whether the gateway has sent nothing for MISSED_HEARTBEATS intervals -- nothing
        read, and nothing waiting unread in the socket (a client busy elsewhere has not
        been listening, which is not the gateway's silence); if so the session is over,
        as a partition or a frozen gateway host leaves it with no close to read."""
        silent = time.monotonic() - self._last_heard
        if silent <= MISSED_HEARTBEATS * self.heartbeat_s or self._unread():
            return False
        self._ended = (
            f"heard nothing from the gateway for {silent:.1f} s ({MISSED_HEARTBEATS} "
            f"heartbeat intervals of {self.heartbeat_s:g} s): the gateway or the network "
            "between is gone"
        )
        return True

    def _decode(self) -> Records | None:
        out: list[tuple[Records, int]] = []
        try:
            for frame in self.buf.frames():
                if frame.type == MessageType.EVENTS:
                    if frame.seq != self.next_event_seq:
                        self._ended = (
                            f"event sequence gap: got {frame.seq}, expected {self.next_event_seq}"
                        )
                        raise Disconnected(self._ended)
                    recs = self.buf.records(frame, wire.EVENT_DTYPE).copy()
                    self.next_event_seq += len(recs)
                    out.append((recs, self.next_event_seq - 1))
                elif frame.type == MessageType.END:
                    self._ended = _ended_text(*decode_reason(self.buf.body(frame)))
                    break
                elif frame.type != MessageType.HEARTBEAT:
                    self._ended = f"unexpected {MessageType(frame.type).name} from the gateway"
                    break
        except ProtocolError as exc:
            self._ended = f"the gateway sent a malformed frame: {exc}"
        if out:
            self._pending.extend(out[1:])
            return self._returning(*out[0])
        if self._ended:
            raise Disconnected(self._ended)
        return None

    def logout(self, timeout: float = 2.0, done: int | None = None) -> None:
        """Ask the gateway to end the session, and read until it does (what it sends
        meanwhile is not returned, so not acknowledged: kept for the next session).
        ``done`` as for :meth:`poll`: what the caller is not done with stays unacknowledged
        and goes to the account's next session. A gateway that reads nothing from the
        session within ``timeout`` gets no LOGOUT: the connection is dropped, as close()
        would, and what was not acknowledged is the account's next session's."""
        # TimeoutError: the ACK or LOGOUT could not be written (the gateway is not reading)
        with contextlib.suppress(Disconnected, TimeoutError):
            self._mark_processed(done)
            self._ack(self._processed, timeout)
            self._sendall(encode_empty(MessageType.LOGOUT), timeout=timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self._poll(deadline - time.monotonic())

    def close(self, done: int | None = None) -> None:
        """Drop the connection. Nothing more is acknowledged: the session's last ACK goes
        with :meth:`logout` (``done`` is for the colocated transport's close)."""
        if self._closed:
            return
        self._stop.set()
        with self._send_lock:
            self._closed = True
            self.sock.close()
        self._beat.join(timeout=2.0)
