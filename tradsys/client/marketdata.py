"""Subscribe to TradSys market data: local L2 books that are exactly the engine's, trades,
BBO changes and trading-status changes (halts, auction calls: ``StatusChange``; the
book's ``phase`` is the symbol's current one), as callbacks (:class:`MarketDataClient`)
or an async iterator (:class:`AsyncMarketDataClient`).

::

    from tradsys.client.marketdata import MarketDataClient

    with MarketDataClient("tcp://127.0.0.1:9200", "tcp://127.0.0.1:9201", ["ACME"],
                          on_trade=print) as md:
        md.run_until(lambda: md.books["ACME"].synced, timeout_s=5)
        print(md.books["ACME"].levels(Side.BUY, 5))
        md.run_forever()

For a consumer that only wants prices and may be slow, :class:`BboBoardClient` (and
:class:`AsyncBboBoardClient`) read the sidecar's conflated BBO socket (``[md]
conflated_bbo``): only the newest board is ever queued, so falling behind costs nothing::

    with BboBoardClient.from_announcement(read_announcement(config, "md")) as board:
        quotes = board.latest(timeout_s=1.0)

Both feed clients drive :class:`tradsys.client.md_feed.FeedCore` (the rules: gaps, snapshots,
liveness) with ZeroMQ's own polling — a SUB socket for the feed, a DEALER socket for the
snapshot service — never a sleep loop.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any, Self

import msgspec
import zmq
import zmq.asyncio

from tradsys.client.md_feed import (
    Bbo,
    BboBoard,
    BboChange,
    BookUpdate,
    FeedCore,
    LocalBook,
    MdEvent,
    StatusChange,
    Trades,
    decode_board,
)
from tradsys.marketdata.protocol import BBO_BOARD_TOPIC, CHANNELS, HEARTBEAT_TOPIC, Channel, topic

__all__ = [
    "AsyncBboBoardClient",
    "AsyncMarketDataClient",
    "Bbo",
    "BboBoard",
    "BboBoardClient",
    "BboChange",
    "BookUpdate",
    "LocalBook",
    "MarketDataClient",
    "MdEvent",
    "StatusChange",
    "Trades",
]


def _connect(sock: zmq.Socket[Any], endpoint: str, what: str) -> None:
    """Connect, or raise ValueError naming the endpoint a user mistyped (zmq says only
    "Invalid argument")."""
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        raise ValueError(f"bad {what} endpoint {endpoint!r}: {exc.strerror}") from None


def _term_own(ctx: zmq.Context[Any], own: bool) -> None:
    """Terminate a context the client made for itself (a caller's is the caller's)."""
    if own:
        ctx.term()


def _subscribe(sub: zmq.Socket[Any], symbols: Iterable[str], channels: Iterable[Channel]) -> None:
    sub.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
    for symbol in symbols:
        for ch in channels:
            sub.setsockopt(zmq.SUBSCRIBE, topic(ch, symbol))


class _ClientBase:
    """What both drivers share: sockets, the core, and turning frames into events."""

    _own_ctx: bool  # the subclass made ``ctx`` itself (set before calling __init__)

    def __init__(
        self,
        ctx: zmq.Context[Any],
        publish: str,
        snapshot: str,
        symbols: list[str],
        channels: Iterable[Channel | str],
        heartbeat_timeout_s: float | None,
        rcvhwm: int,
        replay_trades: bool = True,
    ) -> None:
        self.channels = tuple(Channel(c) for c in channels)
        self.sub: Any = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sub.setsockopt(zmq.LINGER, 0)
        _subscribe(self.sub, symbols, self.channels)
        self.dealer: Any = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        try:
            _connect(self.sub, publish, "publish")
            _connect(self.dealer, snapshot, "snapshot")
        except ValueError:  # a failed constructor leaks nothing (no close() will come)
            self._close_sockets()
            _term_own(ctx, self._own_ctx)
            raise
        # subscribe first, then ask for the snapshots (FeedCore queues them)
        self.core = FeedCore(
            list(symbols), self.channels, heartbeat_timeout_s, replay_trades=replay_trades
        )

    @property
    def books(self) -> dict[str, LocalBook]:
        return self.core.books

    def subscribe(self, symbols: Iterable[str]) -> None:
        """Follow more symbols, on the channels given at the start: their topics first,
        then their books are asked of the snapshot service (at the next poll)."""
        for symbol in symbols:
            if symbol not in self.core.books:
                for ch in self.channels:
                    self.sub.setsockopt(zmq.SUBSCRIBE, topic(ch, symbol))
                self.core.add_symbol(symbol)

    def unsubscribe(self, symbols: Iterable[str]) -> None:
        """Stop following symbols: their topics and books go; messages of theirs still
        in flight are dropped."""
        for symbol in symbols:
            if symbol in self.core.books:
                for ch in self.channels:
                    self.sub.setsockopt(zmq.UNSUBSCRIBE, topic(ch, symbol))
                self.core.remove_symbol(symbol)

    def _requests(self) -> list[bytes]:
        out = [msgspec.msgpack.encode(r) for r in self.core.outbox]
        self.core.outbox.clear()
        return out

    def _close_sockets(self) -> None:
        self.sub.close()
        self.dealer.close()


class MarketDataClient(_ClientBase):
    """Blocking subscriber: call :meth:`poll` (or :meth:`run_until`) from your loop;
    events go to the callbacks (``on_event`` gets every event, including gaps,
    resynchronisations and feed state). Trade prints lost on the feed are asked again
    of the sidecar unless ``replay_trades=False`` (``tradsys.client.md_feed``)."""

    def __init__(
        self,
        publish: str,
        snapshot: str,
        symbols: list[str],
        channels: Iterable[Channel | str] = CHANNELS,
        *,
        on_trade: Callable[[Trades], None] | None = None,
        on_bbo: Callable[[BboChange], None] | None = None,
        on_book: Callable[[BookUpdate], None] | None = None,
        on_status: Callable[[StatusChange], None] | None = None,
        on_event: Callable[[MdEvent], None] | None = None,
        heartbeat_timeout_s: float | None = None,
        rcvhwm: int = 100_000,
        context: zmq.Context[Any] | None = None,
        replay_trades: bool = True,
    ) -> None:
        self._own_ctx = context is None
        self.ctx: zmq.Context[Any] = context or zmq.Context()
        super().__init__(
            self.ctx,
            publish,
            snapshot,
            symbols,
            channels,
            heartbeat_timeout_s,
            rcvhwm,
            replay_trades,
        )
        self.on_trade, self.on_bbo, self.on_book, self.on_event = (
            on_trade,
            on_bbo,
            on_book,
            on_event,
        )
        self.on_status = on_status
        self.poller = zmq.Poller()
        self.poller.register(self.sub, zmq.POLLIN)
        self.poller.register(self.dealer, zmq.POLLIN)
        self._next_timer = time.monotonic()

    def poll(self, timeout_s: float = 0.0, max_messages: int = 10_000) -> int:
        """Wait up to ``timeout_s`` for traffic, then handle what has arrived; returns
        the number of events dispatched.

        The feed before the snapshot replies: what the feed socket already holds was
        published before any reply that came meanwhile was made."""
        self._send_requests()
        wait_ms = max(0, int(min(timeout_s, self.core.seconds_to_timer()) * 1000))
        ready = dict(self.poller.poll(wait_ms))
        n = 0
        if self.sub in ready:
            for _ in range(max_messages):
                try:
                    topic_frame, payload = self.sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                n += self._dispatch(self.core.on_message(topic_frame, payload))
        if self.dealer in ready:
            while True:
                try:
                    body = self.dealer.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                n += self._dispatch(self.core.on_reply(body))
        now = time.monotonic()
        if now >= self._next_timer:
            n += self._dispatch(self.core.on_timer())
            self._next_timer = now + self.core.seconds_to_timer()
        self._send_requests()
        return n

    def _send_requests(self) -> None:
        """Never blocks: while the snapshot service is away, requests queue in the
        DEALER up to its high-water mark, and then a blocking send would stop the whole
        client (timers, heartbeats, the feed). One that does not fit is dropped; the core
        asks again after SNAPSHOT_RETRY_S."""
        for req in self._requests():
            with contextlib.suppress(zmq.Again):
                self.dealer.send(req, zmq.NOBLOCK)

    def run_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Handle traffic until ``condition()`` holds (True) or the time is up (False)."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.poll(min(left, 0.1))
        return True

    def run_forever(self) -> None:
        while True:
            self.poll(1.0)

    def _dispatch(self, events: list[MdEvent]) -> int:
        for ev in events:
            if self.on_event is not None:
                self.on_event(ev)
            if isinstance(ev, Trades) and self.on_trade is not None:
                self.on_trade(ev)
            elif isinstance(ev, BboChange) and self.on_bbo is not None:
                self.on_bbo(ev)
            elif isinstance(ev, BookUpdate) and self.on_book is not None:
                self.on_book(ev)
            elif isinstance(ev, StatusChange) and self.on_status is not None:
                self.on_status(ev)
        return len(events)

    def close(self) -> None:
        self._close_sockets()
        _term_own(self.ctx, self._own_ctx)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncMarketDataClient(_ClientBase):
    """asyncio subscriber (``zmq.asyncio``)::

    async with AsyncMarketDataClient(pub, snap, ["ACME"]) as md:
        async for event in md:
            ...
    """

    def __init__(
        self,
        publish: str,
        snapshot: str,
        symbols: list[str],
        channels: Iterable[Channel | str] = CHANNELS,
        *,
        heartbeat_timeout_s: float | None = None,
        rcvhwm: int = 100_000,
        context: zmq.asyncio.Context | None = None,
        replay_trades: bool = True,
    ) -> None:
        self._own_ctx = context is None
        self.ctx = context or zmq.asyncio.Context()
        super().__init__(
            self.ctx,
            publish,
            snapshot,
            symbols,
            channels,
            heartbeat_timeout_s,
            rcvhwm,
            replay_trades,
        )
        self.poller = zmq.asyncio.Poller()
        self.poller.register(self.sub, zmq.POLLIN)
        self.poller.register(self.dealer, zmq.POLLIN)

    async def __aiter__(self) -> AsyncIterator[MdEvent]:
        next_timer = time.monotonic()
        while True:
            for req in self._requests():  # never blocks: see MarketDataClient._send_requests
                with contextlib.suppress(zmq.Again):
                    await self.dealer.send(req, zmq.NOBLOCK)
            ready = dict(await self.poller.poll(int(self.core.seconds_to_timer() * 1000)))
            events: list[MdEvent] = []
            if self.sub in ready:  # the feed first: see MarketDataClient.poll
                topic_frame, payload = await self.sub.recv_multipart()
                events += self.core.on_message(topic_frame, payload)
            if self.dealer in ready:
                events += self.core.on_reply(await self.dealer.recv())
            if time.monotonic() >= next_timer:
                events += self.core.on_timer()
                next_timer = time.monotonic() + self.core.seconds_to_timer()
            for ev in events:
                yield ev

    def close(self) -> None:
        self._close_sockets()
        _term_own(self.ctx, self._own_ctx)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _board_socket(ctx: zmq.Context[Any], endpoint: str, own_ctx: bool) -> Any:
    sub = ctx.socket(zmq.SUB)
    # CONFLATE before connect: the socket keeps only the newest message (single-frame)
    sub.setsockopt(zmq.CONFLATE, 1)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, BBO_BOARD_TOPIC)
    try:
        _connect(sub, endpoint, "conflated BBO")
    except ValueError:
        sub.close()
        _term_own(ctx, own_ctx)
        raise
    return sub


def _announced(doc: dict[str, Any]) -> tuple[str, list[str]]:
    endpoint = doc.get("conflated_bbo")
    if not endpoint:
        raise ValueError("the md sidecar announces no conflated BBO socket: set [md] conflated_bbo")
    return str(endpoint), [str(s) for s in doc["symbols"]]


class BboBoardClient:
    """The latest BBO of every symbol, from the conflated board socket (blocking).

    ``symbols`` are the sidecar's, in its order (``md.json``'s ``symbols``;
    :meth:`from_announcement` reads both from the announcement). The sidecar sends a
    board whenever a BBO changes and with every heartbeat, so a client that joins a
    quiet market still gets one within a heartbeat interval."""

    def __init__(
        self, endpoint: str, symbols: list[str], *, context: zmq.Context[Any] | None = None
    ) -> None:
        self.symbols = list(symbols)
        self._own_ctx = context is None
        self.ctx: zmq.Context[Any] = context or zmq.Context()
        self.sub: Any = _board_socket(self.ctx, endpoint, self._own_ctx)
        self.board: BboBoard | None = None

    @classmethod
    def from_announcement(cls, doc: dict[str, Any], **kw: Any) -> BboBoardClient:
        """From what the sidecar announced (``read_announcement(config, "md")``)."""
        endpoint, symbols = _announced(doc)
        return cls(endpoint, symbols, **kw)

    def latest(self, timeout_s: float = 0.0) -> BboBoard | None:
        """The newest board: what is queued now, else wait up to ``timeout_s`` for one;
        the last one seen if none came (None before the first)."""
        if self.sub.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN):
            while True:
                try:
                    message = self.sub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.board = decode_board(message, self.symbols)
        return self.board

    def close(self) -> None:
        self.sub.close()
        _term_own(self.ctx, self._own_ctx)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncBboBoardClient:
    """:class:`BboBoardClient` for asyncio: ``await latest(...)``, or
    ``async for board in client`` (each board as it comes; one a slow loop missed is
    simply replaced by the newer one)."""

    def __init__(
        self, endpoint: str, symbols: list[str], *, context: zmq.asyncio.Context | None = None
    ) -> None:
        self.symbols = list(symbols)
        self._own_ctx = context is None
        self.ctx = context or zmq.asyncio.Context()
        self.sub: Any = _board_socket(self.ctx, endpoint, self._own_ctx)
        self.board: BboBoard | None = None

    @classmethod
    def from_announcement(cls, doc: dict[str, Any], **kw: Any) -> AsyncBboBoardClient:
        endpoint, symbols = _announced(doc)
        return cls(endpoint, symbols, **kw)

    async def latest(self, timeout_s: float = 0.0) -> BboBoard | None:
        """As :meth:`BboBoardClient.latest`, without blocking the event loop."""
        if await self.sub.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN):
            while True:
                try:
                    message = await self.sub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.board = decode_board(message, self.symbols)
        return self.board

    async def __aiter__(self) -> AsyncIterator[BboBoard]:
        while True:
            self.board = decode_board(await self.sub.recv(), self.symbols)
            yield self.board

    def close(self) -> None:
        self.sub.close()
        _term_own(self.ctx, self._own_ctx)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
