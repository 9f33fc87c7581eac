"""Snapshot requests can neither stop the feed nor the client: the sidecar serves a
bounded number per turn of its loop and a bounded number a second to each client, and
the client never blocks sending them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from tests.marketdata.md_rig import md_config
from tradsys.client import md_feed
from tradsys.client.marketdata import MarketDataClient
from tradsys.client.md_feed import FeedCore
from tradsys.cores import md_snapshots
from tradsys.cores.md import REQUESTS_PER_TURN, MdSidecar
from tradsys.cores.md_snapshots import SnapshotService
from tradsys.marketdata.l2store import L2Store
from tradsys.marketdata.protocol import Channel, SnapshotError
from tradsys.marketdata.stats import PublishStats


def test_a_request_flood_is_served_a_turn_at_a_time(
    ctx: zmq.Context[Any], instance: str, tmp_path: Path
) -> None:
    """Before, the sidecar served requests until none was left: a client sending faster
    than it answered kept it from its rings for good (feed and heartbeats stopped, then
    the shard once its md ring filled)."""
    sidecar = MdSidecar(md_config(instance, tmp_path))
    sidecar.router = ctx.socket(zmq.ROUTER)
    sidecar.router.bind(f"inproc://{instance}-snap")
    client = ctx.socket(zmq.DEALER)
    client.connect(f"inproc://{instance}-snap")
    try:
        flood = 3 * REQUESTS_PER_TURN
        for _ in range(flood):
            client.send(b"\xc1 not msgpack")
        answered = 0
        for turn in range(1, 4):
            sidecar._serve_requests()
            while client.poll(0):
                client.recv()
                answered += 1
            assert answered == turn * REQUESTS_PER_TURN
        assert sidecar.stats.snapshot_errors["malformed_request"] == flood
    finally:
        client.close()
        sidecar.router.close()


def test_poll_returns_while_the_snapshot_service_is_away(tmp_path: Path) -> None:
    """More requests than the DEALER queues (its high-water mark, 1 000) for a service
    nobody listens on: the first poll blocked in ``send`` for ever."""
    symbols = [f"S{i}" for i in range(1_200)]
    client = MarketDataClient(
        f"ipc://{tmp_path}/pub", f"ipc://{tmp_path}/snap", symbols, channels=[Channel.L2]
    )
    done = threading.Event()

    def first_poll() -> None:
        client.poll(0)
        done.set()

    poller = threading.Thread(target=first_poll, daemon=True)
    poller.start()
    try:
        assert done.wait(30), "poll() blocked sending snapshot requests"
    finally:
        if done.is_set():
            client.close()


class FakeRouter:
    """The ROUTER's two calls the service makes: queued requests in, replies kept."""

    def __init__(self) -> None:
        self.queued: list[list[bytes]] = []
        self.sent: list[tuple[bytes, Any]] = []

    def ask(self, client: bytes, symbol: str, n: int) -> None:
        for k in range(n):
            body = msgspec.msgpack.encode({"symbol": symbol, "id": k + 1})
            self.queued.append([client, body])

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        if not self.queued:
            raise zmq.Again()
        return self.queued.pop(0)

    def send_multipart(self, frames: list[bytes]) -> None:
        self.sent.append((frames[0], msgspec.msgpack.decode(frames[-1])))

    def limited(self, client: bytes) -> int:
        return sum(c == client and r.get("reason") == "rate_limited" for c, r in self.sent)


def test_one_client_asking_too_fast_is_rate_limited_and_no_other_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A book is the costly answer: one client taking them as fast as it can slowed the
    feed for every subscriber (auditor H: trade p99 160-241 ms against 62-82). Each client
    has one per symbol at once plus ``snapshot_rate`` a second; past that a short
    ``rate_limited``, which costs the others nothing."""
    clock = [100.0]
    monkeypatch.setattr(md_snapshots.time, "monotonic", lambda: clock[0])
    names = ["ACME", "ZETA", "OMEGA"]
    stats = PublishStats([0])
    service = SnapshotService(names, [1, 2, 3], L2Store([1, 2, 3]), stats, 5.0, 10)
    router = FakeRouter()
    router.ask(b"flood", "ACME", 25)
    router.ask(b"calm", "ZETA", 1)
    service.serve(router)
    # the burst is max(rate, symbols) = 10: those are held for their books, the rest refused
    assert router.limited(b"flood") == 15 and len(service.waiting) == 11
    assert router.limited(b"calm") == 0
    assert stats.snapshot_errors["rate_limited"] == 15
    text = next(r["message"] for _, r in router.sent)
    assert "more than 10 requests a second" in text
    clock[0] += 0.5  # half a second: five more
    router.ask(b"flood", "ACME", 6)
    service.serve(router)
    assert router.limited(b"flood") == 16 and len(service.waiting) == 16


def test_a_rate_limited_client_asks_again_after_the_retry_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [50.0]
    monkeypatch.setattr(md_feed.time, "monotonic", lambda: clock[0])
    core = FeedCore(["ACME"])
    first = core.outbox.pop()
    refusal = SnapshotError(first.id, "rate_limited", "more than 10 requests a second")
    assert core.on_reply(msgspec.msgpack.encode(refusal)) == []  # no FeedError: not fatal
    assert not core.books["ACME"].synced and core.outbox == []
    clock[0] += md_feed.SNAPSHOT_RETRY_S / 2
    core.on_timer()
    assert core.outbox == [], "not before the retry interval"
    clock[0] += md_feed.SNAPSHOT_RETRY_S
    core.on_timer()
    (again,) = core.outbox
    assert again.symbol == "ACME" and again.id != first.id
