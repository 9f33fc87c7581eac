"""Ask the md sidecar for trade prints by seq, outside any subscription: a symbol's last
prints for a person (`tradsys md trades`), or a range a program lost and wants to audit.

A subscriber does not need this: ``tradsys.client.marketdata`` asks for the prints it lost
by itself. This is the same request (docs/marketdata.md, "Trade replay") on a DEALER
socket of its own, one request at a time, each reply read before the next is sent.

::

    from tradsys.client.trade_replay import last_trades
    found = last_trades("tcp://127.0.0.1:9201", "ACME", 20)
    for seq, price in zip(found.prints["seq"], found.prints["price"]): ...
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import zmq

from tradsys.marketdata.protocol import (
    SnapshotError,
    TradeReplay,
    TradeReplayRequest,
    records,
    reply_decoder,
)
from tradsys.wire import MD_DTYPE


class ReplayRefusedError(Exception):
    """The sidecar answered with an error (``reason``: ``unknown_symbol``,
    ``no_trade_history``, ``not_ready``, ``rate_limited``, ``malformed_request``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class FoundPrints:
    """The prints of ``first..last`` the sidecar still keeps (MD_DTYPE, seq order; a seq
    of the range missing from them is no longer kept), and its last published seq."""

    symbol: str
    first: int
    last: int
    trade_seq: int
    prints: np.ndarray

    @property
    def missing(self) -> list[tuple[int, int]]:
        """The runs of seqs of ``first..last`` not kept, as (first, last) pairs."""
        out, expected = [], self.first
        for seq in self.prints["seq"].tolist():
            if seq > expected:
                out.append((expected, seq - 1))
            expected = seq + 1
        if expected <= self.last:
            out.append((expected, self.last))
        return out


class _Asker:
    """One DEALER socket to the snapshot endpoint, one request in flight."""

    def __init__(self, endpoint: str, timeout_s: float, context: zmq.Context[Any] | None) -> None:
        self.ctx = context or zmq.Context.instance()
        self.sock: Any = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.timeout_ms = max(1, int(timeout_s * 1000))
        self.endpoint = endpoint
        self.ids = itertools.count(1)
        try:
            self.sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self.sock.close()
            raise ValueError(f"bad snapshot endpoint {endpoint!r}: {exc.strerror}") from None

    def ask(self, symbol: str, first: int, last: int) -> TradeReplay:
        request_id = next(self.ids)
        req = TradeReplayRequest(symbol, first, last, request_id)
        self.sock.send(msgspec.msgpack.encode(req))
        while self.sock.poll(self.timeout_ms, zmq.POLLIN):
            reply = reply_decoder.decode(self.sock.recv())
            if reply.id != request_id:
                continue  # a late answer to an earlier request
            if isinstance(reply, SnapshotError):
                raise ReplayRefusedError(reply.reason, reply.message)
            if not isinstance(reply, TradeReplay):
                raise ReplayRefusedError("malformed_reply", "a book came for a trade replay")
            return reply
        raise TimeoutError(f"no answer from {self.endpoint} within {self.timeout_ms} ms")

    def close(self) -> None:
        self.sock.close()


def fetch_trades(
    snapshot: str,
    symbol: str,
    first: int,
    last: int,
    *,
    timeout_s: float = 5.0,
    context: zmq.Context[Any] | None = None,
) -> FoundPrints:
    """The prints of ``symbol`` with seqs ``first..last`` the sidecar still keeps, asked
    reply by reply (each at most REPLAY_MAX_PRINTS); ``last`` stops at the last print
    published. TimeoutError if the sidecar does not answer, ReplayRefusedError if it says no."""
    if not 1 <= first <= last:
        raise ValueError(f"seqs first..last need 1 <= first <= last, not {first}..{last}")
    asker = _Asker(snapshot, timeout_s, context)
    try:
        parts, at = [], first
        while True:
            reply = asker.ask(symbol, at, last)
            parts.append(records(reply.records))
            last = min(last, reply.trade_seq)  # nothing past the last print published
            if reply.last >= last:
                break
            at = reply.last + 1  # the reply's limit: ask for the rest
        found = np.concatenate(parts)
        return FoundPrints(symbol, first, max(last, first - 1), reply.trade_seq, found)
    finally:
        asker.close()


def last_trades(
    snapshot: str,
    symbol: str,
    count: int,
    *,
    timeout_s: float = 5.0,
    context: zmq.Context[Any] | None = None,
) -> FoundPrints:
    """The last ``count`` prints of ``symbol`` (fewer if fewer were published or kept)."""
    if count < 1:
        raise ValueError("count must be >= 1")
    asker = _Asker(snapshot, timeout_s, context)
    try:
        published = asker.ask(symbol, 1, 1).trade_seq  # the reply tells the last seq
    finally:
        asker.close()
    if not published:
        return FoundPrints(symbol, 1, 0, 0, np.zeros(0, MD_DTYPE))
    first = max(1, published - count + 1)
    return fetch_trades(snapshot, symbol, first, published, timeout_s=timeout_s, context=context)
