"""The market-data feed on the wire (docs/marketdata.md is the specification).

PUB socket, two-frame messages ``[topic, payload]``:

- topic ``<channel>:<SYMBOL>\\0`` with channel ``trade``, ``bbo``, ``l2`` or ``status``
  (the symbol's trading phase, ``MdKind.STATUS``). The NUL
  ends every topic, so a ZeroMQ prefix subscription to ``l2:AAPL\\0`` cannot match
  ``l2:AAPLX\\0`` (symbols never contain NUL).
- payload: one or more ``MD_DTYPE`` records (64 bytes each, little-endian, the engine's
  own layout), all of one symbol and channel, in sequence order. Fixed binary records
  were measured against msgspec msgpack (perf/md_bench.py): they cost nothing to encode
  (a slice of the drained ring batch) and decode with one ``np.frombuffer``.
- heartbeat ``hb\\0`` every ``heartbeat_ms``: msgpack :class:`Heartbeat` with every
  symbol's last sequence numbers, so a subscriber notices a lost tail on a quiet symbol
  and tells a silent market from a dead feed.

Snapshot service (ROUTER; clients use DEALER or REQ): a msgpack :class:`SnapshotRequest`
is answered by a msgpack :class:`BookSnapshot` or :class:`SnapshotError`; a
:class:`TradeReplayRequest` (the same map with ``first`` and ``last``) by a
:class:`TradeReplay` or :class:`SnapshotError`.

Conflated BBO (optional PUB with ZMQ_CONFLATE): single-frame messages ``bbo*\\0`` +
the latest BBO record of every symbol, so a slow consumer that keeps only the newest
message still has every symbol's latest value.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec
import numpy as np

from tradsys.wire import MD_DTYPE, RECORD_SIZE, MdKind


class Channel(StrEnum):
    TRADE = "trade"
    BBO = "bbo"
    L2 = "l2"
    STATUS = "status"


CHANNEL_OF_KIND: dict[int, Channel] = {
    MdKind.TRADE: Channel.TRADE,
    MdKind.BBO: Channel.BBO,
    MdKind.L2_UPDATE: Channel.L2,
    MdKind.STATUS: Channel.STATUS,
}
CHANNELS: tuple[Channel, ...] = (Channel.TRADE, Channel.BBO, Channel.L2, Channel.STATUS)
HEARTBEAT_TOPIC = b"hb\0"
BBO_BOARD_TOPIC = b"bbo*\0"


def topic(channel: Channel | str, symbol: str) -> bytes:
    """The topic frame of one symbol's channel (also the subscription prefix)."""
    if "\0" in symbol:
        raise ValueError(f"symbol {symbol!r} contains NUL")
    return f"{Channel(channel).value}:{symbol}\0".encode()


def parse_topic(raw: bytes) -> tuple[Channel, str]:
    """(channel, symbol) of a data topic; ValueError for anything else."""
    if not raw.endswith(b"\0") or b":" not in raw:
        raise ValueError(f"not a data topic: {raw!r}")
    channel, _, symbol = raw[:-1].decode().partition(":")
    return Channel(channel), symbol


def records(payload: bytes | memoryview) -> np.ndarray:
    """The MD_DTYPE records of a payload (a read-only view, no copy)."""
    if len(payload) % RECORD_SIZE:
        raise ValueError(f"payload of {len(payload)} bytes is not whole 64-byte records")
    return np.frombuffer(payload, MD_DTYPE)


class SymbolSeqs(msgspec.Struct, array_like=True, frozen=True):
    """A symbol's last published sequence number on each channel (0 = none yet)."""

    symbol: str
    symbol_id: int
    trade_seq: int
    l2_seq: int
    bbo_seq: int
    status_seq: int = 0  # last: a row of a sidecar that has no status channel still decodes


class Heartbeat(msgspec.Struct, frozen=True):
    """Sent every ``interval_ms`` whatever the load. ``feed_id`` is new each time the
    sidecar starts (the sequence numbers, from the engine, continue across restarts)."""

    time_ns: int
    feed_id: int
    interval_ms: int
    symbols: list[SymbolSeqs]


class SnapshotRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Ask for one symbol's full L2 book; ``id`` comes back in the reply."""

    symbol: str
    id: int = 0


class TradeReplayRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Ask again for one symbol's trade prints with seqs ``first..last`` (inclusive)."""

    symbol: str
    first: int
    last: int
    id: int = 0


class _ServiceRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Either request as it comes off the wire: a replay is a snapshot request's map
    with ``first`` and ``last`` added."""

    symbol: str
    id: int = 0
    first: int | None = None
    last: int | None = None


_service_request_decoder = msgspec.msgpack.Decoder(_ServiceRequest)


def decode_request(body: bytes) -> SnapshotRequest | TradeReplayRequest:
    """The request in ``body``; msgspec.ValidationError (or DecodeError) naming what is
    wrong with it otherwise."""
    req = _service_request_decoder.decode(body)
    if req.first is None and req.last is None:
        return SnapshotRequest(req.symbol, req.id)
    if req.first is None or req.last is None:
        raise msgspec.ValidationError("a trade replay request names both `first` and `last`")
    if not 1 <= req.first <= req.last:
        raise msgspec.ValidationError(
            f"a trade replay asks for seqs first..last with 1 <= first <= last, "
            f"not {req.first}..{req.last}"
        )
    return TradeReplayRequest(req.symbol, req.first, req.last, req.id)


class BookSnapshot(msgspec.Struct, frozen=True, tag="book"):
    """A symbol's whole displayed book, valid at ``l2_seq``: apply the L2 updates with a
    greater seq. Levels are (price, quantity, order_count), best first. ``phase`` is the
    symbol's trading phase (``tradsys.wire.Phase``) as of ``status_seq``, the last STATUS
    published; ``reopen_ns`` the engine-clock time a volatility auction ends by itself
    (-1: only by a command). A status record with a greater seq supersedes them."""

    id: int
    symbol: str
    symbol_id: int
    l2_seq: int
    trade_seq: int
    bbo_seq: int
    bids: list[tuple[int, int, int]]
    asks: list[tuple[int, int, int]]
    time_ns: int
    status_seq: int = 0
    phase: int = 0
    reopen_ns: int = -1


class TradeReplay(msgspec.Struct, frozen=True, tag="trades"):
    """The answer to a :class:`TradeReplayRequest`: of the seqs ``first..last``, the
    prints still kept (``records``: MD_DTYPE TRADE records, seq order; a seq missing
    from them is not kept any more). ``last`` may be below the one asked: never past
    ``trade_seq``, the symbol's last published print, and at most ``REPLAY_MAX_PRINTS``
    a reply -- ask again from ``last + 1`` for the rest."""

    id: int
    symbol: str
    symbol_id: int
    first: int
    last: int
    trade_seq: int
    records: bytes


REPLAY_MAX_PRINTS = 8192  # prints in one replay reply (512 KiB)


class SnapshotError(msgspec.Struct, frozen=True, tag="error"):
    """Why a request was not answered with a book (or a replay): ``reason`` is one of
    ``malformed_request``, ``unknown_symbol``, ``not_ready`` (the sidecar is still
    learning the engine's books; ask again), ``rate_limited`` (more requests a second
    than ``[md] snapshot_rate`` allows this client; ask again later),
    ``no_trade_history`` (a replay, from a sidecar that keeps no prints:
    ``[md] trade_history = 0``)."""

    id: int
    reason: str
    message: str


SnapshotReply = BookSnapshot | TradeReplay | SnapshotError

heartbeat_encoder = msgspec.msgpack.Encoder()
heartbeat_decoder = msgspec.msgpack.Decoder(Heartbeat)


class _AnyRequest(msgspec.Struct, frozen=True):
    """Any map: its ``id`` alone, other keys ignored."""

    id: int = 0


_id_decoder = msgspec.msgpack.Decoder(_AnyRequest)


def salvaged_id(body: bytes) -> int:
    """The ``id`` of a request that is malformed otherwise (a missing symbol, a key too
    many), so its error reply still pairs with it; 0 when it is not a map holding an
    integer ``id``."""
    try:
        return _id_decoder.decode(body).id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return 0


reply_decoder = msgspec.msgpack.Decoder(SnapshotReply)
