"""The TradSys binary order-entry protocol: frames, message types, encoders, a decoder.

Every frame is a 16-byte header and a body (``docs/protocol.md`` is the reference)::

    u32 length   bytes after this field (12 + body length)
    u8  type     one of MessageType
    u8[3]        zero
    u64 seq      COMMANDS/EVENTS: sequence number of the body's first record; ACK: the
                 highest EVENTS seq the client has processed; SYMBOLS: how many entries
                 the SYMBOLS frames after this one still hold (0: the directory ends
                 here); else 0
    body         COMMANDS/EVENTS: n 64-byte records; LOGIN etc.: a fixed layout

The same 64-byte ``COMMAND_DTYPE``/``EVENT_DTYPE`` records that move through the rings
travel in the body, so a batch is decoded with one ``np.frombuffer`` and pushed to a ring
without touching a single order in Python. The decoder works in place over one
preallocated buffer (:class:`FrameBuffer`): reading a socket allocates nothing per frame.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from enum import IntEnum
from typing import Any, NamedTuple

import numpy as np

from tradsys.matching.instrument import SYMBOL_NAME_MAX
from tradsys.wire import RECORD_SIZE

HEADER = struct.Struct("<IB3xQ")
HEADER_SIZE = HEADER.size  # 16
MAX_RECORDS_PER_FRAME = 1024
MAX_FRAME = HEADER_SIZE + MAX_RECORDS_PER_FRAME * RECORD_SIZE
API_KEY_MAX = 64
RING_NAME_MAX = 64
TEXT_MAX = 63


class MessageType(IntEnum):
    """Frame types; the ASCII letter is the byte on the wire (readable in a hex dump)."""

    LOGIN = ord("L")  # client → gateway: account id and API key
    LOGIN_ACCEPTED = ord("A")  # gateway → client: session id, heartbeat, rings (colocated)
    LOGIN_REJECTED = ord("J")  # gateway → client: reason; the gateway then closes
    HEARTBEAT = ord("H")  # both ways, when nothing else was sent for heartbeat_ms
    COMMANDS = ord("C")  # client → gateway: n COMMAND records, seq of the first
    EVENTS = ord("E")  # gateway → client: n EVENT records, seq of the first
    LOGOUT = ord("O")  # client → gateway: end the session cleanly
    END = ord("Z")  # gateway → client: the session ends (reason, text); then close
    SYMBOLS = ord("S")  # gateway → client, right after LOGIN_ACCEPTED: the symbol directory
    ACK = ord("K")  # client → gateway: every event up to seq is processed (empty body)


class LoginRejectReason(IntEnum):
    BAD_CREDENTIALS = 1  # unknown account or wrong API key
    NOT_PERMITTED = 2  # colocated: the peer's uid is not the gateway's
    SESSION_LIMIT = 3  # max_sessions reached
    MALFORMED = 4  # the first frame was not a well-formed LOGIN
    TIMEOUT = 5  # no LOGIN within login_timeout_ms
    UNAVAILABLE = 6  # the gateway is stopping or cannot make the session


class EndReason(IntEnum):
    LOGOUT = 1  # the client asked
    PROTOCOL_ERROR = 2  # a malformed frame: the stream cannot be trusted any more
    HEARTBEAT_TIMEOUT = 3  # nothing heard for 3 heartbeat intervals
    SHUTDOWN = 4  # the gateway is stopping
    SEQUENCE_GAP = 5  # a COMMANDS frame did not continue the client's sequence
    BAD_ACK = 6  # an ACK beyond the last event sent, or below an earlier ACK
    SLOW_CONSUMER = 7  # its full event ring held its shards' events back too long


LOGIN_BODY = struct.Struct(f"<II{API_KEY_MAX}s")
"""account_id, a reserved u32 (receivers ignore it; senders write 0), API key (NUL
padded)."""
ACCEPTED_BODY = struct.Struct(f"<QIIQQII{RING_NAME_MAX}s{RING_NAME_MAX}s")
"""session_id, heartbeat_ms, account_id, next event seq, next command seq, ring capacity,
events dropped, inbound ring name, outbound ring name (the names are empty for TCP
sessions)."""
REASON_BODY = struct.Struct(f"<B{TEXT_MAX}s")
"""LOGIN_REJECTED and END: a reason code and a short text."""
SYMBOL_ENTRY = struct.Struct(f"<I4xqq{SYMBOL_NAME_MAX}s")
"""One SYMBOLS entry, 64 bytes: symbol_id, tick_size, lot_size, name (NUL padded)."""

# The body size each fixed-layout message must have; None: a multiple of RECORD_SIZE.
BODY_SIZE: dict[int, int | None] = {
    int(kind): size
    for kind, size in (
        (MessageType.LOGIN, LOGIN_BODY.size),
        (MessageType.LOGIN_ACCEPTED, ACCEPTED_BODY.size),
        (MessageType.LOGIN_REJECTED, REASON_BODY.size),
        (MessageType.HEARTBEAT, 0),
        (MessageType.COMMANDS, None),
        (MessageType.EVENTS, None),
        (MessageType.LOGOUT, 0),
        (MessageType.END, REASON_BODY.size),
        (MessageType.SYMBOLS, None),
        (MessageType.ACK, 0),
    )
}
MAY_BE_EMPTY = {int(MessageType.SYMBOLS)}  # a gateway may trade no symbol at all


class ProtocolError(Exception):
    """A frame that breaks the protocol; the stream cannot be read further."""


class Frame(NamedTuple):
    """One decoded frame: its type, seq, and where its body lies in the buffer."""

    type: int
    seq: int
    offset: int
    size: int


class SymbolInfo(NamedTuple):
    """A symbol the gateway trades: orders name it by ``symbol_id``."""

    symbol_id: int
    name: str
    tick_size: int
    lot_size: int


class Accepted(NamedTuple):
    session_id: int
    heartbeat_ms: int
    account_id: int
    next_event_seq: int
    next_command_seq: int
    ring_capacity: int
    inbound: str
    outbound: str
    # events of the account's orders the gateway dropped instead of keeping them for this
    # session (past the 4 096 it keeps), since the account's previous login (at most
    # 2^32 - 1): nonzero, the client asks for ORDER_STATUS to learn where its orders stand
    events_dropped: int = 0


# ---- encoders ----------------------------------------------------------------------------


def header(kind: int, body_size: int, seq: int = 0) -> bytes:
    return HEADER.pack(body_size + HEADER_SIZE - 4, kind, seq)


def _text(text: str, size: int) -> bytes:
    """``text`` in at most ``size`` bytes of UTF-8. A longer one is cut at a word (never
    inside a character, which would not decode) and ends in "...", so a reader sees it
    was cut (audit Y: texts ended mid-word); the gateway logs the whole text."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= size:
        return raw
    cut = raw[: size - 3].decode("utf-8", "ignore").encode()
    space = cut.rfind(b" ")
    if space >= size // 2:
        cut = cut[:space]
    return cut + b"..."


def encode_login(account_id: int, api_key: str, reserved: int = 0) -> bytes:
    """``reserved``: LOGIN's second u32, which receivers ignore (docs/protocol.md); only a
    test writes anything but 0 there."""
    key = api_key.encode()
    if len(key) > API_KEY_MAX:
        raise ValueError(f"API key is {len(key)} bytes; the protocol carries at most {API_KEY_MAX}")
    return header(MessageType.LOGIN, LOGIN_BODY.size) + LOGIN_BODY.pack(account_id, reserved, key)


def encode_accepted(a: Accepted) -> bytes:
    return header(MessageType.LOGIN_ACCEPTED, ACCEPTED_BODY.size) + ACCEPTED_BODY.pack(
        a.session_id,
        a.heartbeat_ms,
        a.account_id,
        a.next_event_seq,
        a.next_command_seq,
        a.ring_capacity,
        min(a.events_dropped, 0xFFFFFFFF),
        a.inbound.encode(),
        a.outbound.encode(),
    )


def encode_reason(kind: MessageType, reason: int, text: str) -> bytes:
    """LOGIN_REJECTED or END with its reason code and a short text."""
    return header(kind, REASON_BODY.size) + REASON_BODY.pack(reason, _text(text, TEXT_MAX))


def encode_symbols(symbols: list[SymbolInfo]) -> bytes:
    """The symbol directory: every symbol the gateway routes, so a client can name them.

    One SYMBOLS frame holds at most ``MAX_RECORDS_PER_FRAME`` entries (a frame's limit), so
    a longer directory is several frames in a row, each header's ``seq`` saying how many
    entries the frames after it still hold: the last (for up to 1024 symbols, the only
    one, as it always was) has 0. An empty directory is one empty frame."""
    frames = []
    left = len(symbols)
    for first in range(0, max(left, 1), MAX_RECORDS_PER_FRAME):
        part = symbols[first : first + MAX_RECORDS_PER_FRAME]
        left -= len(part)
        body = b"".join(
            SYMBOL_ENTRY.pack(s.symbol_id, s.tick_size, s.lot_size, s.name.encode()) for s in part
        )
        frames.append(header(MessageType.SYMBOLS, len(body), left) + body)
    return b"".join(frames)


def encode_empty(kind: MessageType) -> bytes:
    """HEARTBEAT or LOGOUT."""
    return header(kind, 0)


def encode_ack(seq: int) -> bytes:
    """ACK: every EVENTS record up to ``seq`` is processed (the header carries it)."""
    return header(MessageType.ACK, 0, seq)


def encode_records(kind: MessageType, seq: int, records: np.ndarray[Any, Any]) -> bytes:
    """A COMMANDS or EVENTS frame: header and the records' bytes in one object."""
    n = len(records)
    if not 0 < n <= MAX_RECORDS_PER_FRAME:
        raise ValueError(f"a frame carries 1..{MAX_RECORDS_PER_FRAME} records, not {n}")
    if records.dtype.itemsize != RECORD_SIZE:
        raise ValueError(f"records must be {RECORD_SIZE} bytes, not {records.dtype.itemsize}")
    return header(kind, n * RECORD_SIZE, seq) + records.tobytes()


# ---- decoders of the fixed bodies --------------------------------------------------------


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def decode_login(body: bytes | memoryview) -> tuple[int, int, str]:
    """(account_id, reserved, api_key) of a LOGIN body (the gateway ignores reserved)."""
    account, heartbeat, key = LOGIN_BODY.unpack(body)
    return account, heartbeat, _cstr(key)


def decode_accepted(body: bytes | memoryview) -> Accepted:
    sid, hb, account, ev, cmd, cap, dropped, inbound, outbound = ACCEPTED_BODY.unpack(body)
    return Accepted(sid, hb, account, ev, cmd, cap, _cstr(inbound), _cstr(outbound), dropped)


def decode_symbols(body: bytes | memoryview) -> list[SymbolInfo]:
    out = []
    for symbol_id, tick, lot, name in SYMBOL_ENTRY.iter_unpack(body):
        out.append(SymbolInfo(symbol_id, _cstr(name), tick, lot))
    return out


def decode_reason(body: bytes | memoryview) -> tuple[int, str]:
    reason, text = REASON_BODY.unpack(body)
    return reason, _cstr(text)


# ---- the stream decoder ------------------------------------------------------------------


class FrameBuffer:
    """A fixed receive buffer that a socket reads into and frames are decoded from.

    ``writable()`` is where the next read lands (``recv_into`` or asyncio's
    ``BufferedProtocol.get_buffer``); ``advance(n)`` records it; ``frames()`` yields each
    complete frame (its body as an offset into :attr:`data`, valid until the next
    ``writable()``), and validates every header: an unknown type, a length the type does
    not allow, or a frame larger than ``MAX_FRAME`` raise :class:`ProtocolError`.
    """

    def __init__(self, capacity: int = 4 * MAX_FRAME) -> None:
        # smaller than MAX_FRAME only where no larger frame is allowed: a connection that
        # has not logged in (LOGIN_BUFFER), whose buffer every idle connection costs
        if capacity < HEADER_SIZE:
            raise ValueError(f"capacity must be >= {HEADER_SIZE}")
        self.capacity = capacity
        self.data = bytearray(capacity)
        self.view = memoryview(self.data)
        self.array = np.frombuffer(self.data, np.uint8)
        self._start = 0  # first byte not yet decoded
        self._end = 0  # one past the last byte received

    def writable(self) -> memoryview:
        """Free space after the received bytes; compacts first, so it is never empty."""
        if self._start:
            pending = self._end - self._start
            self.data[:pending] = self.view[self._start : self._end]
            self._start, self._end = 0, pending
        return self.view[self._end :]

    def clear(self) -> None:
        """Forget what was received and not decoded (a connection being closed)."""
        self._start = self._end = 0

    def advance(self, n: int) -> None:
        self._end += n

    @property
    def pending(self) -> int:
        """Bytes received and not yet decoded (a partial frame)."""
        return self._end - self._start

    def frames(self) -> Iterator[Frame]:
        data, start, end = self.data, self._start, self._end
        while end - start >= HEADER_SIZE:
            length, kind, seq = HEADER.unpack_from(data, start)
            size = length + 4 - HEADER_SIZE
            check_header(kind, size)
            if end - start < HEADER_SIZE + size:
                if HEADER_SIZE + size > self.capacity:
                    raise ProtocolError(
                        f"a {MessageType(kind).name} frame of {HEADER_SIZE + size} bytes does "
                        f"not fit here: at most {self.capacity}"
                    )
                break
            self._start = start + HEADER_SIZE + size
            yield Frame(kind, seq, start + HEADER_SIZE, size)
            start = self._start

    def move_to(self, other: FrameBuffer) -> FrameBuffer:
        """``other`` holding the bytes received and not yet decoded; this one released."""
        pending = self.view[self._start : self._end]
        other.writable()[: len(pending)] = pending
        other.advance(len(pending))
        self._start = self._end = 0
        self.release()
        return other

    def body(self, frame: Frame) -> memoryview:
        return self.view[frame.offset : frame.offset + frame.size]

    def records(self, frame: Frame, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
        """The frame's records as a numpy view into the buffer (no copy)."""
        return np.frombuffer(self.data, dtype, count=frame.size // RECORD_SIZE, offset=frame.offset)

    def release(self) -> None:
        """Drop the exported views so the buffer can be freed."""
        self.view.release()


def check_header(kind: int, size: int) -> None:
    """Refuse a header whose type is unknown or whose body size the type does not allow."""
    if size < 0:
        raise ProtocolError(f"frame length {size + HEADER_SIZE - 4} is below the header's 12")
    if size + HEADER_SIZE > MAX_FRAME:
        raise ProtocolError(
            f"frame of {size + HEADER_SIZE} bytes exceeds the maximum of {MAX_FRAME}"
        )
    try:
        expected = BODY_SIZE[kind]
    except KeyError:
        raise ProtocolError(f"unknown message type 0x{kind:02x}") from None
    if expected is None:
        if (size == 0 and kind not in MAY_BE_EMPTY) or size % RECORD_SIZE:
            raise ProtocolError(
                f"{MessageType(kind).name} body of {size} bytes is not "
                f"1..{MAX_RECORDS_PER_FRAME} {RECORD_SIZE}-byte records"
            )
    elif size != expected:
        raise ProtocolError(f"{MessageType(kind).name} body must be {expected} bytes, not {size}")
