"""Snapshot requests can neither stop the feed nor the client: the sidecar serves a
bounded number per turn of its loop, and the client never blocks sending them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import zmq

from tests.marketdata.md_rig import md_config
from tradsys.client.marketdata import MarketDataClient
from tradsys.cores.md import REQUESTS_PER_TURN, MdSidecar
from tradsys.marketdata.protocol import Channel


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
