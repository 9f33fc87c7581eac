"""The binary protocol's codec: round trips, header validation, the in-place decoder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradsys import wire
from tradsys.protocols.binary import (
    HEADER_SIZE,
    MAX_FRAME,
    MAX_RECORDS_PER_FRAME,
    Accepted,
    FrameBuffer,
    MessageType,
    ProtocolError,
    SymbolInfo,
    decode_accepted,
    decode_login,
    decode_reason,
    decode_symbols,
    encode_accepted,
    encode_empty,
    encode_login,
    encode_reason,
    encode_records,
    encode_symbols,
    header,
)


def feed(buf: FrameBuffer, data: bytes) -> list:
    out = []
    for i in range(0, len(data), 7):  # in awkward pieces
        piece = data[i : i + 7]
        buf.writable()[: len(piece)] = piece
        buf.advance(len(piece))
        for f in buf.frames():
            out.append((f.type, f.seq, bytes(buf.body(f))))
    return out


def test_fixed_messages_round_trip() -> None:
    acc = Accepted(7, 1000, 3, 1, 1, 8192, "/tradsys.x.sin.0", "/tradsys.x.sout.0", 12)
    stream = (
        encode_login(3, "k" * 64, 0)
        + encode_accepted(acc)
        + encode_reason(MessageType.END, 2, "bad frame: " + "x" * 100)
        + encode_empty(MessageType.HEARTBEAT)
    )
    frames = feed(FrameBuffer(), stream)
    assert [f[0] for f in frames] == [ord("L"), ord("A"), ord("Z"), ord("H")]
    assert decode_login(frames[0][2]) == (3, 0, "k" * 64)
    assert decode_accepted(frames[1][2]) == acc
    reason, text = decode_reason(frames[2][2])
    assert reason == 2 and text.startswith("bad frame: ") and text.endswith("...")
    assert len(text.encode()) <= 63


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("short and whole", "short and whole"),
        ("x" * 63, "x" * 63),
        # cut at the last word that fits, marked
        (
            "account 3 may have 2 session(s) open at once ([[account]] max_sessions)",
            "account 3 may have 2 session(s) open at once ([[account]]...",
        ),
        # never inside a character: 30 two-byte letters then more
        ("é" * 40, "é" * 30 + "..."),
    ],
)
def test_reason_texts_fit_their_field_and_say_when_cut(text: str, want: str) -> None:
    _, got = decode_reason(encode_reason(MessageType.END, 1, text)[HEADER_SIZE:])
    assert got == want and len(got.encode()) <= 63


@given(st.lists(st.integers(1, 40), min_size=1, max_size=10), st.integers(1, 2**40))
def test_record_frames_decode_in_place(sizes: list[int], seq: int) -> None:
    buf = FrameBuffer()
    sent = []
    stream = b""
    for n in sizes:
        recs = np.zeros(n, wire.COMMAND_DTYPE)
        recs["order_id"] = np.arange(seq, seq + n)
        sent.append(recs)
        stream += encode_records(MessageType.COMMANDS, seq, recs)
        seq += n
    got = []
    for i in range(0, len(stream), 1000):
        piece = stream[i : i + 1000]
        buf.writable()[: len(piece)] = piece
        buf.advance(len(piece))
        for f in buf.frames():
            recs = buf.records(f, wire.COMMAND_DTYPE)
            assert recs["order_id"][0] == f.seq
            got.append(recs.copy())
    assert buf.pending == 0
    assert np.concatenate(got).tobytes() == np.concatenate(sent).tobytes()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (header(0x51, 0), "unknown message type 0x51"),
        (header(MessageType.LOGIN, 3), "LOGIN body must be 72 bytes, not 3"),
        (header(MessageType.COMMANDS, 0), "not 1..1024 64-byte records"),
        (header(MessageType.COMMANDS, 65), "not 1..1024 64-byte records"),
        (header(MessageType.EVENTS, MAX_FRAME), "exceeds the maximum"),
        (b"\x00\x00\x00\x00" + bytes(12), "below the header"),
        (header(MessageType.HEARTBEAT, 1), "HEARTBEAT body must be 0 bytes, not 1"),
    ],
)
def test_bad_headers_are_refused_by_name(frame: bytes, message: str) -> None:
    buf = FrameBuffer()
    buf.writable()[: len(frame)] = frame
    buf.advance(len(frame))
    with pytest.raises(ProtocolError, match=message):
        list(buf.frames())


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    buf = FrameBuffer()
    hdr = header(MessageType.COMMANDS, (MAX_RECORDS_PER_FRAME + 1) * 64)
    buf.writable()[:HEADER_SIZE] = hdr
    buf.advance(HEADER_SIZE)
    with pytest.raises(ProtocolError, match="exceeds"):
        list(buf.frames())


def test_encoders_refuse_what_the_protocol_cannot_carry() -> None:
    with pytest.raises(ValueError, match="at most 64"):
        encode_login(1, "k" * 65)
    with pytest.raises(ValueError, match=r"1\.\.1024"):
        encode_records(MessageType.EVENTS, 1, np.zeros(0, wire.EVENT_DTYPE))
    with pytest.raises(ValueError, match=r"1\.\.1024"):
        encode_records(MessageType.EVENTS, 1, np.zeros(1025, wire.EVENT_DTYPE))


def test_buffer_compacts_a_partial_frame() -> None:
    buf = FrameBuffer(MAX_FRAME)
    recs = np.zeros(MAX_RECORDS_PER_FRAME, wire.EVENT_DTYPE)
    frame = encode_records(MessageType.EVENTS, 1, recs)
    for _ in range(5):  # each full frame fills almost the whole buffer
        half = len(frame) // 2
        buf.writable()[:half] = frame[:half]
        buf.advance(half)
        assert list(buf.frames()) == []
        rest = frame[half:]
        buf.writable()[: len(rest)] = rest
        buf.advance(len(rest))
        assert len(list(buf.frames())) == 1


@given(
    st.lists(
        st.tuples(
            st.integers(1, 2**32 - 1),
            st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", min_size=1, max_size=40),
            st.integers(1, 2**62),
            st.integers(1, 2**62),
        ),
        max_size=50,
    )
)
def test_the_symbol_directory_round_trips_and_may_be_empty(entries: list[tuple]) -> None:
    symbols = [SymbolInfo(*e) for e in entries]
    frames = feed(FrameBuffer(), encode_symbols(symbols) + encode_empty(MessageType.HEARTBEAT))
    assert [f[0] for f in frames] == [ord("S"), ord("H")]
    assert len(frames[0][2]) == 64 * len(symbols)
    assert decode_symbols(frames[0][2]) == symbols


def test_a_symbols_body_must_be_whole_entries() -> None:
    with pytest.raises(ProtocolError, match="SYMBOLS body of 63 bytes"):
        feed(FrameBuffer(), header(MessageType.SYMBOLS, 63) + bytes(63))


def test_a_directory_past_one_frame_comes_in_several_each_saying_what_is_left() -> None:
    """More than 1 024 symbols do not fit one frame (scale audit: the gateway crashed at
    start with 1 025): each SYMBOLS frame's seq is the entries still to come."""
    symbols = [SymbolInfo(i + 1, f"S{i:05d}", 1, 1) for i in range(2500)]
    data = encode_symbols(symbols)
    frames = feed(FrameBuffer(), data + encode_empty(MessageType.HEARTBEAT))
    assert [(f[0], f[1], len(f[2]) // 64) for f in frames] == [
        (ord("S"), 1476, 1024),
        (ord("S"), 452, 1024),
        (ord("S"), 0, 452),
        (ord("H"), 0, 0),
    ]
    assert [s for f in frames[:3] for s in decode_symbols(f[2])] == symbols
    # up to one frame's worth: the one frame, seq 0, as before
    assert feed(FrameBuffer(), encode_symbols(symbols[:1024]))[0][1] == 0
    assert len(feed(FrameBuffer(), encode_symbols(symbols[:1024]))) == 1
