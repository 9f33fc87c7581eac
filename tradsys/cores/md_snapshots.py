"""The md sidecar's snapshot service: answers ``{"symbol": ...}`` requests on its ROUTER
socket with the symbol's whole L2 book and the seqs it is valid at (docs/marketdata.md,
"Snapshot service"), and ``{"symbol", "first", "last"}`` requests with the trade prints
it still keeps of that range ("Trade replay"; ``tradsys.marketdata.trade_history``).

The sidecar calls it between batches, after publishing everything it drained, so a
snapshot's ``l2_seq`` is never ahead of the feed. A request for a symbol whose book the
sidecar does not know yet (it has just started and waits for its worker's refresh image)
is held until the book comes, or ``not_ready`` after a while.

Each client (ROUTER identity) has an allowance of answers: one for every symbol at
once (a full resync) refilled at ``snapshot_rate`` a second; a replay (at most
REPLAY_MAX_PRINTS prints) takes one as a book does. Past it the answer is
``rate_limited``, a few bytes: a book is the costly part, and one client asking for them
as fast as it can would otherwise take the loop's turns from the feed everyone reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec
import zmq

from tradsys.marketdata.l2store import L2Store
from tradsys.marketdata.protocol import (
    REPLAY_MAX_PRINTS,
    BookSnapshot,
    SnapshotError,
    SnapshotRequest,
    TradeReplay,
    TradeReplayRequest,
    decode_request,
    salvaged_id,
)
from tradsys.marketdata.stats import PublishStats
from tradsys.marketdata.trade_history import TradeHistory

NOT_READY_AFTER_S = 5.0  # a snapshot request waits this long for a refresh image
# snapshot requests served per turn of the loop, then back to the rings: a client sending
# requests faster than they are answered (a flood, or garbage) must not stop the feed --
# and, once a shard's md ring is full, the shard itself
REQUESTS_PER_TURN = 64
# clients whose allowance is tracked at once; past it the idle ones (full allowance) go,
# and if none is idle every allowance starts afresh (many identities: many connections)
MAX_TRACKED_CLIENTS = 10_000


@dataclass
class Allowance:
    """One client's whole-book snapshots left (``tokens``), as of ``at``."""

    tokens: float
    at: float


@dataclass
class Waiting:
    """A request held until its symbol's book is known, or until ``deadline``."""

    envelope: list[bytes]
    request: SnapshotRequest | TradeReplayRequest
    deadline: float


class SnapshotService:
    """What the sidecar answers to snapshot requests, from the books it keeps (``store``).

    The ROUTER socket stays the sidecar's: each call is given the one to answer on."""

    def __init__(
        self,
        names: list[str],
        symbol_ids: list[int],
        store: L2Store,
        stats: PublishStats,
        not_ready_after_s: float = NOT_READY_AFTER_S,
        snapshot_rate: int = 0,
        history: TradeHistory | None = None,
    ) -> None:
        self.names = names
        self.symbol_ids = symbol_ids
        self.by_name = {name: k for k, name in enumerate(names)}
        self.store = store
        self.stats = stats
        self.not_ready_after_s = not_ready_after_s
        self.waiting: list[Waiting] = []
        self.rate = float(snapshot_rate)
        self.burst = float(max(snapshot_rate, len(names), 1))
        self.allowances: dict[bytes, Allowance] = {}
        self.history = history

    def serve(self, router: Any) -> None:
        """Answer (or hold) up to REQUESTS_PER_TURN requests that ``router`` has queued."""
        for _ in range(REQUESTS_PER_TURN):
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            envelope, body = frames[:-1], frames[-1]
            try:
                req = decode_request(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                error = SnapshotError(salvaged_id(body), "malformed_request", str(exc))
                self._reply(router, envelope, error)
                continue
            si = self.by_name.get(req.symbol)
            if si is None:
                msg = f"unknown symbol {req.symbol!r}"
                self._reply(router, envelope, SnapshotError(req.id, "unknown_symbol", msg))
            elif not self._admit(envelope[0] if envelope else b""):
                msg = (
                    f"more than {self.rate:g} requests a second (beyond one per symbol): "
                    "ask again later"
                )
                self._reply(router, envelope, SnapshotError(req.id, "rate_limited", msg))
            elif self.store.servable(si):
                self._reply(router, envelope, self.answer(si, req))
            else:
                deadline = time.monotonic() + self.not_ready_after_s
                self.waiting.append(Waiting(envelope, req, deadline))

    def _admit(self, client: bytes) -> bool:
        """Take one snapshot from ``client``'s allowance; False if it has none left."""
        if not self.rate:
            return True
        now = time.monotonic()
        allowance = self.allowances.get(client)
        if allowance is None:
            if len(self.allowances) >= MAX_TRACKED_CLIENTS:
                self._forget_idle(now)
            allowance = self.allowances[client] = Allowance(self.burst, now)
        allowance.tokens = min(self.burst, allowance.tokens + (now - allowance.at) * self.rate)
        allowance.at = now
        if allowance.tokens < 1.0:
            return False
        allowance.tokens -= 1.0
        return True

    def _forget_idle(self, now: float) -> None:
        # a client refilled to the top is as good as new: nothing to remember of it
        self.allowances = {
            client: a
            for client, a in self.allowances.items()
            if a.tokens + (now - a.at) * self.rate < self.burst
        }
        if len(self.allowances) >= MAX_TRACKED_CLIENTS:
            self.allowances.clear()

    def answer(
        self, si: int, req: SnapshotRequest | TradeReplayRequest
    ) -> BookSnapshot | TradeReplay | SnapshotError:
        """The answer to a request for symbol index ``si``, whose book is known."""
        if isinstance(req, SnapshotRequest):
            return self.snapshot(si, req.id)
        return self.replay(si, req)

    def replay(self, si: int, req: TradeReplayRequest) -> TradeReplay | SnapshotError:
        """The prints of ``req``'s range still kept, up to the last one published and
        at most REPLAY_MAX_PRINTS of them: the history is written as each print is
        published, so every print up to ``trade_seq`` is in it unless overwritten."""
        if self.history is None:
            msg = "this sidecar keeps no trade prints ([md] trade_history = 0)"
            return SnapshotError(req.id, "no_trade_history", msg)
        published = int(self.store.trade_seq[si])
        last = min(req.last, published, req.first + REPLAY_MAX_PRINTS - 1)
        prints = self.history.prints(si, req.first, last)
        self.stats.replayed_prints += len(prints)
        return TradeReplay(
            id=req.id,
            symbol=self.names[si],
            symbol_id=self.symbol_ids[si],
            first=req.first,
            last=last,
            trade_seq=published,
            records=prints.tobytes(),
        )

    def snapshot(self, si: int, request_id: int) -> BookSnapshot:
        """The book of symbol index ``si`` as published so far."""
        bids, asks = self.store.book(si)
        s = self.store
        status_seq, phase, reopen_ns = s.status(si)
        return BookSnapshot(
            id=request_id,
            symbol=self.names[si],
            symbol_id=self.symbol_ids[si],
            l2_seq=int(s.l2_seq[si]),
            trade_seq=int(s.trade_seq[si]),
            bbo_seq=int(s.bbo_seq[si]),
            bids=bids,
            asks=asks,
            time_ns=time.time_ns(),
            status_seq=status_seq,
            phase=phase,
            reopen_ns=reopen_ns,
        )

    def answer_waiting(self, router: Any) -> None:
        """Answer the held requests whose book is now known, and time out the others."""
        now = time.monotonic()
        still: list[Waiting] = []
        for w in self.waiting:
            si = self.by_name[w.request.symbol]
            if self.store.servable(si):
                self._reply(router, w.envelope, self.answer(si, w.request))
            elif now > w.deadline:
                msg = f"{w.request.symbol}: the book is not known yet (waiting for its worker)"
                self._reply(router, w.envelope, SnapshotError(w.request.id, "not_ready", msg))
            else:
                still.append(w)
        self.waiting = still

    def _reply(
        self,
        router: Any,
        envelope: list[bytes],
        reply: BookSnapshot | TradeReplay | SnapshotError,
    ) -> None:
        if isinstance(reply, SnapshotError):
            errors = self.stats.snapshot_errors
            errors[reply.reason] = errors.get(reply.reason, 0) + 1
        elif isinstance(reply, TradeReplay):
            self.stats.replays_served += 1
        else:
            self.stats.snapshots_served += 1
        router.send_multipart([*envelope, msgspec.msgpack.encode(reply)])
