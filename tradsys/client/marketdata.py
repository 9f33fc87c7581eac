"""Subscribe to TradSys market data: local L2 books that are exactly the engine's, trades
and BBO changes, as callbacks (:class:`MarketDataClient`) or an async iterator
(:class:`AsyncMarketDataClient`).

::

    from tradsys.client.marketdata import MarketDataClient

    with MarketDataClient("tcp://127.0.0.1:9200", "tcp://127.0.0.1:9201", ["ACME"],
                          on_trade=print) as md:
        md.run_until(lambda: md.books["ACME"].synced, timeout_s=5)
        print(md.books["ACME"].levels(Side.BUY, 5))
        md.run_forever()

Both drive :class:`tradsys.client.md_feed.FeedCore` (the rules: gaps, snapshots,
liveness) with ZeroMQ's own polling — a SUB socket for the feed, a DEALER socket for the
snapshot service — never a sleep loop.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any, Self

import msgspec
import zmq
import zmq.asyncio

from tradsys.client.md_feed import (
    BboChange,
    BookUpdate,
    FeedCore,
    LocalBook,
    MdEvent,
    Trades,
)
from tradsys.marketdata.protocol import CHANNELS, HEARTBEAT_TOPIC, Channel, topic

__all__ = [
    "AsyncMarketDataClient",
    "BboChange",
    "BookUpdate",
    "LocalBook",
    "MarketDataClient",
    "MdEvent",
    "Trades",
]


def _subscribe(sub: zmq.Socket[Any], symbols: Iterable[str], channels: Iterable[Channel]) -> None:
    sub.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
    for symbol in symbols:
        for ch in channels:
            sub.setsockopt(zmq.SUBSCRIBE, topic(ch, symbol))


class _ClientBase:
    """What both drivers share: sockets, the core, and turning frames into events."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        publish: str,
        snapshot: str,
        symbols: list[str],
        channels: Iterable[Channel | str],
        heartbeat_timeout_s: float,
        rcvhwm: int,
    ) -> None:
        self.channels = tuple(Channel(c) for c in channels)
        self.sub: Any = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sub.setsockopt(zmq.LINGER, 0)
        _subscribe(self.sub, symbols, self.channels)
        self.sub.connect(publish)
        self.dealer: Any = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(snapshot)
        # subscribe first, then ask for the snapshots (FeedCore queues them)
        self.core = FeedCore(list(symbols), self.channels, heartbeat_timeout_s)

    @property
    def books(self) -> dict[str, LocalBook]:
        return self.core.books

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
    resynchronisations and feed state)."""

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
        on_event: Callable[[MdEvent], None] | None = None,
        heartbeat_timeout_s: float = 3.0,
        rcvhwm: int = 100_000,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self._own_ctx = context is None
        self.ctx: zmq.Context[Any] = context or zmq.Context()
        super().__init__(
            self.ctx, publish, snapshot, symbols, channels, heartbeat_timeout_s, rcvhwm
        )
        self.on_trade, self.on_bbo, self.on_book, self.on_event = (
            on_trade,
            on_bbo,
            on_book,
            on_event,
        )
        self.poller = zmq.Poller()
        self.poller.register(self.sub, zmq.POLLIN)
        self.poller.register(self.dealer, zmq.POLLIN)
        self._next_timer = time.monotonic()

    def poll(self, timeout_s: float = 0.0, max_messages: int = 10_000) -> int:
        """Wait up to ``timeout_s`` for traffic, then handle what has arrived; returns
        the number of events dispatched."""
        for req in self._requests():
            self.dealer.send(req)
        wait_ms = max(0, int(min(timeout_s, self.core.seconds_to_timer()) * 1000))
        ready = dict(self.poller.poll(wait_ms))
        n = 0
        if self.dealer in ready:
            while True:
                try:
                    body = self.dealer.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                n += self._dispatch(self.core.on_reply(body))
        if self.sub in ready:
            for _ in range(max_messages):
                try:
                    topic_frame, payload = self.sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                n += self._dispatch(self.core.on_message(topic_frame, payload))
        now = time.monotonic()
        if now >= self._next_timer:
            n += self._dispatch(self.core.on_timer())
            self._next_timer = now + self.core.seconds_to_timer()
        for req in self._requests():
            self.dealer.send(req)
        return n

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
        return len(events)

    def close(self) -> None:
        self._close_sockets()
        if self._own_ctx:
            self.ctx.term()

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
        heartbeat_timeout_s: float = 3.0,
        rcvhwm: int = 100_000,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        self._own_ctx = context is None
        self.ctx = context or zmq.asyncio.Context()
        super().__init__(
            self.ctx, publish, snapshot, symbols, channels, heartbeat_timeout_s, rcvhwm
        )
        self.poller = zmq.asyncio.Poller()
        self.poller.register(self.sub, zmq.POLLIN)
        self.poller.register(self.dealer, zmq.POLLIN)

    async def __aiter__(self) -> AsyncIterator[MdEvent]:
        next_timer = time.monotonic()
        while True:
            for req in self._requests():
                await self.dealer.send(req)
            ready = dict(await self.poller.poll(int(self.core.seconds_to_timer() * 1000)))
            events: list[MdEvent] = []
            if self.dealer in ready:
                events += self.core.on_reply(await self.dealer.recv())
            if self.sub in ready:
                topic_frame, payload = await self.sub.recv_multipart()
                events += self.core.on_message(topic_frame, payload)
            if time.monotonic() >= next_timer:
                events += self.core.on_timer()
                next_timer = time.monotonic() + self.core.seconds_to_timer()
            for ev in events:
                yield ev

    def close(self) -> None:
        self._close_sockets()
        if self._own_ctx:
            self.ctx.term()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
