"""TCP binary sessions (``docs/protocol.md``): one asyncio protocol object per connection.

Reading is zero-copy up to the ring: the socket reads into the session's preallocated
:class:`FrameBuffer` (``BufferedProtocol``), a COMMANDS frame's records are a numpy view
into that buffer, stamped with the account as a whole column, and pushed to the
session's inbound ring in one C call: every record, whatever its kind. The edge answers no
command itself: a kind no client may send (CONTROL, a number that is no kind) is the
gateway core's to reject (REJECTED, INVALID_COMMAND), as for a colocated session, so that
answer takes the one path every event takes -- through the session's outbound ring,
which outlives a crashed gateway (below). A full
ring is backpressure: the rest of the batch waits (the backlog), and so do the commands
of the frames read after it, up to ``BACKLOG_MAX_RECORDS``; then reading pauses and TCP
flow control slows the client. Reading goes on below that bound because the client's
ACKs come behind its commands: with reading paused at the first full ring, an ACK the
session's window waited for stayed unread, no event was sent, the core could route no
more into the full outbound ring, so it took no more commands, and the ring never
drained -- a client sending faster than it read was stuck for good. Events come back
when the gateway core signals the session's eventfd:
the outbound ring is drained in batches into one EVENTS frame each, numbered with the
session's event sequence.

Events the client may not have got are not lost when its session ends (issue 5,
``docs/protocol.md``, "Nothing acknowledged is lost"): an EVENTS frame stays in
:attr:`OwedEvents.sent` (tcp_owed) until the client has it. For a client that acknowledges (ACK:
the highest EVENTS seq it has processed), until an ACK covers it: whenever the session
ends, the events above the last ACK go back to the core ahead of whatever is still in the
outbound ring, and the account's next session gets them first; at min(``unacked_max``,
the ring's capacity) unacknowledged events the session is sent no more until an ACK
comes (flow control, as for a full socket). For a client that never acknowledged, until
the transport has written it to the socket (its write buffer shrank past it), and only a
broken connection (``connection_lost`` with an error: the transport drops its buffer)
hands them back. A session the gateway ends for any reason but LOGOUT stops draining the
ring: what is left there is held the same way, not pushed at a client that may be gone.

Nor are they lost when the *gateway process* dies: the events are read out of the
outbound ring without being consumed (``Ring.peek_batch``, skipping those already sent)
and its slots are released only once the events are no longer owed: covered by an ACK;
or, before the client's first ACK, known written to the socket and older than the last
``keep`` = min(``unacked_max``, a quarter of the ring) events (the written rule, kept a
while for a client that starts acknowledging late; the library acknowledges from its
login). A successor gateway reads a dead gateway's session
rings from the consumer's index on and holds what it finds for each account's next
session (``tradsys.gateway.recovery``), so it finds every event such a client did not
have (and, by their exec_id, some it had). The cost is ring room: the ring holds what is
in flight to the client as well as what waits, hence the window above.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from tradsys import wire
from tradsys.cores.gateway_auth import Credentials, LoginRefusedError
from tradsys.cores.gateway_sessions import OpenSession, SessionTable
from tradsys.cores.tcp_owed import OwedEvents
from tradsys.protocols.binary import (
    HEADER_SIZE,
    LOGIN_BODY,
    MAX_RECORDS_PER_FRAME,
    Accepted,
    EndReason,
    Frame,
    FrameBuffer,
    LoginRejectReason,
    MessageType,
    ProtocolError,
    decode_login,
    encode_accepted,
    encode_empty,
    encode_reason,
    encode_records,
)

log = logging.getLogger("tradsys.gateway")

# plain ints: comparing with IntEnum members costs a method call per frame
_LOGIN, _COMMANDS = int(MessageType.LOGIN), int(MessageType.COMMANDS)
_HEARTBEAT, _LOGOUT = int(MessageType.HEARTBEAT), int(MessageType.LOGOUT)
_ACK = int(MessageType.ACK)
_ACCOUNT = struct.Struct("<I")
_ACCOUNT_OFFSET = 12  # of COMMAND_DTYPE's account_id (tests/test_wire.py holds the layout)
RECORD_SIZE = wire.RECORD_SIZE
MISSED_HEARTBEATS = 3  # a peer silent this many intervals is gone
BACKLOG_RETRY_S = 0.0005
# commands a session keeps waiting behind its full inbound ring (4 MiB) before it stops
# reading its socket (see the module docstring)
BACKLOG_MAX_RECORDS = 65_536
# what a connection reads into before it logs in: one LOGIN frame, and one that follows
LOGIN_BUFFER = 2 * (HEADER_SIZE + LOGIN_BODY.size)
NO_EVENTS = np.zeros(0, wire.EVENT_DTYPE)  # until the session's own array, at login


@dataclass
class TcpEdge:
    """What every TCP session shares: credentials, the session table, timing, and the
    set of live connections (for heartbeats and shutdown)."""

    credentials: Credentials
    table: SessionTable
    heartbeat_s: float
    login_timeout_s: float
    directory: bytes = b""  # the SYMBOLS frame(s), sent right after LOGIN_ACCEPTED
    connections: set[TcpSession] = field(default_factory=set)
    protocol_errors: int = 0
    logins_refused: int = 0
    heartbeat_timeouts: int = 0
    unacked_max: int = 65536  # [gateway] tcp_unacked_max
    unsent_held: int = 0  # events of frames not known delivered, held at session end
    acks: int = 0
    bad_acks: int = 0

    def factory(self) -> Callable[[], TcpSession]:
        return lambda: TcpSession(self)

    def tick(self, now: float) -> None:
        """Send heartbeats where we were quiet; drop peers that were silent too long."""
        for conn in list(self.connections):
            conn.on_tick(now)

    def forgive_silence(self, now: float) -> None:
        """Every peer counts as heard now: the gateway was the one not running."""
        for conn in self.connections:
            conn.last_heard = now

    def end_session(self, session_id: int, reason: EndReason, text: str) -> bool:
        """End one session from the gateway's side, at once (its transport aborted: a
        client that does not read would never let a close finish); what it was owed is
        kept for the account as for a broken connection. False if it is not one of ours."""
        for conn in self.connections:
            if conn.session is not None and conn.session.session_id == session_id:
                conn.end(reason, text, abort=True)
                return True
        return False

    def shutdown(self) -> None:
        for conn in list(self.connections):
            conn.end(EndReason.SHUTDOWN, "the gateway is stopping")


class TcpSession(asyncio.BufferedProtocol):
    """One TCP connection: login, then COMMANDS in and EVENTS out, heartbeats, logout."""

    def __init__(self, edge: TcpEdge) -> None:
        self.edge = edge
        self.loop = asyncio.get_running_loop()
        # a connection that has not logged in holds a buffer for its LOGIN only (the full
        # one, and the events array, come with the session): connections that never log
        # in cost the gateway next to nothing until login_timeout_ms closes them
        self.buf = FrameBuffer(LOGIN_BUFFER)
        self.transport: asyncio.Transport | None = None
        self.session: OpenSession | None = None
        self.efd = -1
        self.events = NO_EVENTS
        self.next_command_seq = 1
        self.next_event_seq = 1
        # commands waiting for room in the inbound ring, in order (None: none waits)
        self.backlog: collections.deque[np.ndarray[Any, Any]] | None = None
        self.backlog_records = 0
        self.read_paused = False
        self.closing = False
        self.write_paused = False
        self.last_heard = self.last_sent = self.loop.time()
        self.login_timer: asyncio.TimerHandle | None = None
        self.peer = ""
        self.owed = OwedEvents(edge.unacked_max)  # what the client may not have yet
        self.aborted = False  # ended with its unwritten frames dropped (end(abort=True))
        self.lost = False  # connection_lost has run

    # ---- connection lifecycle --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        self.peer = str(self.transport.get_extra_info("peername"))
        self.edge.connections.add(self)
        self.login_timer = self.loop.call_later(self.edge.login_timeout_s, self._login_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.lost = True
        self.edge.connections.discard(self)
        if self.login_timer is not None:
            self.login_timer.cancel()
        if self.session is not None and not self.session.closed:
            # with an error the transport dropped its buffer: the events of frames it had
            # not written are the client's still (without one, it wrote all before closing)
            # (an acknowledging client: everything it did not acknowledge, however it ended)
            owed = self.owed
            broke = exc is not None or self.aborted
            after = owed.acked if owed.acking else owed.written_seq if broke else None
            self._leave(after)

    def _leave(self, after: int | None) -> None:
        """Take the session out of the core: the events after seq ``after`` that it was
        sent (None: none) are the client's still and go back, ahead of what the ring
        holds, to the account's other or next session; then cancel-on-disconnect and the
        takeover. Done when the connection ends, or at once when the gateway sends END
        -- a socket lingering for its peer to close must not keep the session's orders
        trading, nor its events, for up to three heartbeat intervals."""
        assert self.session is not None
        if self.efd >= 0:
            self.loop.remove_reader(self.efd)
        unread = None if after is None else self.owed.events_after(after)
        if unread is not None:
            self.edge.unsent_held += len(unread)
        # what was sent leaves the ring: the owed part goes back as `unread`, ahead of
        # what the ring still holds (unsent), so no event is held twice
        self._release(self.owed.release_all())
        # commands read and waiting for room in the inbound ring are the client's sent
        # orders: the core takes them after the ring's, as a pass would have
        unsent = np.concatenate(list(self.backlog)) if self.backlog else None
        self.backlog, self.backlog_records = None, 0
        self.edge.table.close(self.session, unread, unsent)  # closes the eventfd when safe
        self.efd = -1
        log.info(
            "tcp session %d (account %d, %s) closed",
            self.session.session_id,
            self.session.account_id,
            self.peer,
        )

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._drain_events()

    def _send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)
        self.last_sent = self.loop.time()

    # ---- what the client is owed (tcp_owed.OwedEvents keeps the books) ------------------

    @property
    def acking(self) -> bool:
        return self.owed.acking

    @property
    def acked(self) -> int:
        return self.owed.acked

    @property
    def written_seq(self) -> int:
        return self.owed.written_seq

    def _send_events(self, frame: bytes, n: int, from_ring: bool = False) -> None:
        """An EVENTS frame of n events (read from the outbound ring when ``from_ring``),
        kept while it may be owed."""
        self._send(frame)
        if self.owed.framed(self.next_event_seq, frame, n, from_ring):
            self._note_written()

    def _note_written(self) -> None:
        """Note what the transport has written to the socket. Only while it is open (one
        that broke reports an empty buffer whatever it dropped); a frame written since the
        last look counts as unwritten, so more is held than needed, never less (a repeat
        has its exec_id)."""
        if self.owed.acking or self.transport is None or self.transport.is_closing():
            return
        buffered = self.transport.get_write_buffer_size()
        self._release(self.owed.written(buffered, self.next_event_seq))

    def _fit_ring(self, capacity: int) -> None:
        self.owed.fit_ring(capacity)

    def _release(self, k: int) -> None:
        """Give k records back to the outbound ring (none once the session is closed)."""
        if k and self.session is not None and not self.session.closed:
            self.session.rings.outbound.release(k)

    def _made_room(self) -> bool:
        """For a client that has not acknowledged, when every slot of the ring is an event
        sent and kept (the core can route it nothing more, so no notify would come): look
        at what the transport wrote now, not at the next tick (``keep`` is at most a
        quarter of the ring, so the rest goes if written); True if that released any."""
        before = self.owed.peeked
        self._note_written()
        return self.owed.peeked < before

    def _on_ack(self, seq: int) -> None:
        """The client has processed every event up to ``seq``: those frames are its."""
        last_sent = self.next_event_seq - 1
        if seq > last_sent or seq < self.owed.acked:
            self.edge.bad_acks += 1
            why = "beyond the last event sent" if seq > last_sent else "below an earlier ACK"
            text = f"ACK seq {seq} is {why} ({last_sent}, {self.owed.acked})"
            self.end(EndReason.BAD_ACK, text)
            return
        self.edge.acks += 1
        self._release(self.owed.ack(seq))
        self._drain_events()  # the window may have been full

    def _events_after(self, seq: int) -> np.ndarray[Any, Any] | None:
        return self.owed.events_after(seq)

    def end(self, reason: EndReason, text: str, abort: bool = False) -> None:
        """Send END and close: after every event already routed to us for LOGOUT; for any
        other reason after what was sent already, the rest of the ring being held for
        the account's next session (the client may be gone). ``abort``: drop what the
        transport has not written, as a broken connection does (and owe it the same)."""
        if self.transport is None:
            return
        if self.closing:
            if abort:  # a close still waiting for a peer that does not read: now
                self._abort()
            return
        if self.session is None:
            self._reject(LoginRejectReason.UNAVAILABLE, text)
            return
        if reason == EndReason.LOGOUT:
            self._drain_events(force=True)
        self.closing = True
        # out of the core now, not when the peer closes: what the transport has not
        # written yet (all of it, when aborting) counts as not read -- held for the next
        # session too, so the client may see it twice, under the same exec_ids, never not
        self._note_written()
        self._leave(self.owed.acked if self.owed.acking else self.owed.written_seq)
        self._send(encode_reason(MessageType.END, reason, text))
        if abort:
            self._abort()
        else:
            self._close()

    def _close(self) -> None:
        """A lingering close: what is buffered (the END or reject last) is written, then
        FIN, while what the peer still sends is read and dropped until it closes too --
        closing a socket with unread input would reset the connection, and the peer could
        lose the frame that says why. A peer that neither reads nor closes (which would
        keep its session, and what it holds back, for good) is aborted once it has been
        given the silence a heartbeat timeout allows."""
        assert self.transport is not None
        self.buf.clear()  # room for what is read and dropped from now on
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self.transport.close()
        self.loop.call_later(MISSED_HEARTBEATS * self.edge.heartbeat_s, self._abort)

    def _abort(self) -> None:
        """Drop what the transport has not written, as a broken connection does (and owe
        the client the same); connection_lost follows."""
        if self.lost or self.aborted or self.transport is None:
            return
        self.aborted = True
        self.transport.abort()

    def _reject(self, reason: LoginRejectReason, text: str) -> None:
        assert self.transport is not None
        self.closing = True
        self.edge.logins_refused += 1
        self._send(encode_reason(MessageType.LOGIN_REJECTED, reason, text))
        self._close()

    def _login_timeout(self) -> None:
        if self.session is None and not self.closing:
            self._reject(
                LoginRejectReason.TIMEOUT,
                f"no LOGIN within {self.edge.login_timeout_s * 1000:.0f} ms",
            )

    def on_tick(self, now: float) -> None:
        if self.session is None or self.closing:
            return
        hb = self.edge.heartbeat_s
        if self.read_paused:
            # reading is paused behind a full ring and a full backlog: what the peer sent
            # since waits in our own socket buffer, so its silence starts counting only
            # once we read again (a busy engine must not end the sessions it makes wait)
            self.last_heard = now
        if now - self.last_heard > MISSED_HEARTBEATS * hb and self._unread_bytes():
            # its bytes wait in our socket, unread: the gateway did not run (a suspend, a
            # stopped VM), the peer was not silent; reading them will count it as heard
            self.last_heard = now
        if now - self.last_heard > MISSED_HEARTBEATS * hb:
            self.edge.heartbeat_timeouts += 1
            self.end(EndReason.HEARTBEAT_TIMEOUT, f"silent for {MISSED_HEARTBEATS} intervals")
        elif now - self.last_sent >= hb:
            self._send(encode_empty(MessageType.HEARTBEAT))
        if self.owed.unwritten:
            self._note_written()

    def _unread_bytes(self) -> int:
        """Bytes the kernel holds for us on this connection that we have not read."""
        if self.transport is None or self.transport.is_closing():
            return 0
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return 0
        buf = bytearray(4)
        try:
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
        except OSError:
            return 0
        return int.from_bytes(buf, "little")

    # ---- reading -----------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buf.writable()

    def buffer_updated(self, nbytes: int) -> None:
        if self.closing:  # a lingering close: what comes now is dropped unread
            return
        self.buf.advance(nbytes)
        self.last_heard = self.loop.time()
        self._process()

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost cleans up

    def _process(self) -> None:
        try:
            for frame in self.buf.frames():
                self._on_frame(frame)
                if self.closing or self.read_paused:
                    return
                if self.buf.capacity == LOGIN_BUFFER and self.session is not None:
                    # logged in: what followed the LOGIN goes on in the full buffer
                    self.buf = self.buf.move_to(FrameBuffer())
                    self._process()
                    return
        except ProtocolError as exc:
            self.edge.protocol_errors += 1
            if self.session is None:
                self._reject(LoginRejectReason.MALFORMED, str(exc))
            else:
                self.end(EndReason.PROTOCOL_ERROR, str(exc))

    def _on_frame(self, frame: Frame) -> None:
        kind = frame.type
        if self.session is None:
            if kind != _LOGIN:
                raise ProtocolError(f"the first frame must be LOGIN, not {MessageType(kind).name}")
            self._login(frame)
        elif kind == _COMMANDS:
            if frame.size == RECORD_SIZE:
                self._one_command(frame)
            else:
                self._commands(frame)
        else:
            # the client read LOGIN_ACCEPTED (its commands show in the inbound ring)
            self.session.heard = True
            if kind == _HEARTBEAT:
                pass
            elif kind == _ACK:
                self._on_ack(frame.seq)
            elif kind == _LOGOUT:
                self.end(EndReason.LOGOUT, "logged out")
            else:
                raise ProtocolError(f"a client may not send {MessageType(kind).name}")

    def _login(self, frame: Frame) -> None:
        account_id, _, key = decode_login(self.buf.body(frame))
        efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            account = self.edge.credentials.check(account_id, key)
            session = self.edge.table.open(account, "tcp", notify_fd=efd)
        except LoginRefusedError as denied:
            os.close(efd)
            log.info("tcp login from %s refused: %s", self.peer, denied.text)
            self._reject(denied.reason, denied.text)
            return
        self.session, self.efd = session, efd
        self.events = np.zeros(MAX_RECORDS_PER_FRAME, wire.EVENT_DTYPE)
        self._fit_ring(session.rings.outbound.capacity)
        if self.login_timer is not None:
            self.login_timer.cancel()
        self.loop.add_reader(efd, self._on_notify)
        self._send(
            encode_accepted(
                Accepted(
                    session.session_id,
                    int(self.edge.heartbeat_s * 1000),
                    account.id,
                    self.next_event_seq,
                    self.next_command_seq,
                    session.rings.inbound.capacity,
                    "",
                    "",
                    session.events_dropped,
                )
            )
            + self.edge.directory
        )
        log.info("tcp session %d: account %d from %s", session.session_id, account.id, self.peer)
        self._drain_events()

    def _one_command(self, frame: Frame) -> None:
        """A frame of one order, the common case of a client sending as orders come: the
        same as :meth:`_commands` on the raw bytes, without numpy's per-call overhead (a
        tenth of the instructions)."""
        assert self.session is not None
        if frame.seq != self.next_command_seq or self.backlog is not None:
            self._commands(frame)  # the general path (a gap ends the session there)
            return
        data, off = self.buf.data, frame.offset
        self.next_command_seq += 1
        _ACCOUNT.pack_into(data, off + _ACCOUNT_OFFSET, self.session.account_id)
        if not self.session.rings.inbound.push(self.buf.view[off : off + RECORD_SIZE]):
            self._push(self.buf.records(frame, wire.COMMAND_DTYPE))  # full: the backlog path

    def _commands(self, frame: Frame) -> None:
        assert self.session is not None
        records = self.buf.records(frame, wire.COMMAND_DTYPE)
        if frame.seq != self.next_command_seq:
            self.end(
                EndReason.SEQUENCE_GAP,
                f"COMMANDS seq {frame.seq}, expected {self.next_command_seq}",
            )
            return
        self.next_command_seq += len(records)
        # stamp the account: a session trades for its own account only, whatever it sent
        records["account_id"] = self.session.account_id
        # every record, in order: the core answers a kind no client may send (see above)
        self._push(records)

    def _push(self, records: np.ndarray[Any, Any]) -> None:
        assert self.session is not None
        if self.backlog is not None:  # behind commands already waiting: keep the order
            self._wait_for_room(records)
            return
        taken = self.session.rings.inbound.push_batch(records)
        if taken < len(records):
            # backpressure: the rest waits (copied: the buffer under it will be reused)
            self.backlog = collections.deque()
            self._wait_for_room(records[taken:])
            self.loop.call_later(BACKLOG_RETRY_S, self._retry_backlog)

    def _wait_for_room(self, records: np.ndarray[Any, Any]) -> None:
        assert self.backlog is not None and self.transport is not None
        self.backlog.append(records.copy())
        self.backlog_records += len(records)
        if self.backlog_records >= BACKLOG_MAX_RECORDS and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _retry_backlog(self) -> None:
        if self.closing or self.session is None or self.backlog is None:
            return
        push, backlog = self.session.rings.inbound.push_batch, self.backlog
        while backlog:
            head = backlog[0]
            taken = push(head)
            self.backlog_records -= taken
            if taken < len(head):
                backlog[0] = head[taken:]
                self.loop.call_later(BACKLOG_RETRY_S, self._retry_backlog)
                return
            backlog.popleft()
        self.backlog = None
        if self.read_paused:
            assert self.transport is not None
            self.read_paused = False
            self.transport.resume_reading()
            self._process()  # frames that arrived behind the backlog

    # ---- events --------------------------------------------------------------------------

    def _on_notify(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.efd)
        self._drain_events()

    def _drain_events(self, force: bool = False) -> None:
        """Frame what the outbound ring holds beyond what was sent already, one EVENTS
        frame per batch, read in place: the ring keeps each record until it is no longer
        owed (tcp_owed)."""
        if self.session is None or self.closing or (self.write_paused and not force):
            return
        peek, out, owed = self.session.rings.outbound.peek_batch, self.events, self.owed
        while True:
            if owed.acking:  # flow control: at most `window` unacknowledged
                room = owed.room(self.next_event_seq)
                if room <= 0:
                    return
                n = peek(out[:room] if room < len(out) else out, owed.peeked)
            else:
                n = peek(out, owed.peeked)
            if n <= 0:
                if owed.acking or owed.peeked < owed.ring_capacity or not self._made_room():
                    return
                continue
            frame = encode_records(MessageType.EVENTS, self.next_event_seq, out[:n])
            self._send_events(frame, n, from_ring=True)
            self.next_event_seq += n
            if self.write_paused and not force:
                return
