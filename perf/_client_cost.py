"""What one order costs the client that sends it: ``OrderClient.submit`` per call, beside
``submit_batch`` of a one-record numpy array (what a user of the array API builds for a
single order), both into a live colocated session of a real instance.

Used by ``e2e_bench.py``. The two ways alternate, round by round, on one session; each
round's orders (IOC buys on an empty book, two events each) are answered and read before
the next round starts, so neither way finds the session's rings fuller than the other.
Only the sending loop is timed: the client's own cost, not the round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import _e2e_rig as rig
import numpy as np

from tradsys.client.commands import order_record
from tradsys.client.orders import OrderClient


def _drain(client: OrderClient, events: int) -> None:
    """Read until ``events`` events have come (each order's ACCEPTED and CANCELLED)."""
    got = 0
    deadline = time.monotonic() + 30
    while got < events:
        got += len(client.poll_records(1.0))
        if time.monotonic() > deadline:
            raise RuntimeError(f"client cost: only {got} of {events} events came back")


def submit_cost(socket_path: str, rounds: int, per_round: int) -> tuple[float, float]:
    """(µs per ``submit``, µs per ``submit_batch`` of one record): medians over rounds."""
    ours: list[float] = []
    peer: list[float] = []
    with OrderClient.connect(socket_path, account_id=1, api_key=rig.KEY) as client:

        def by_submit(first: int) -> None:
            submit = client.submit
            for oid in range(first, first + per_round):
                submit(rig.SYMBOL, "buy", 1, rig.PRICE, order_id=oid, tif="ioc")

        def by_array(first: int) -> None:
            submit_batch = client.submit_batch
            for oid in range(first, first + per_round):
                submit_batch(order_record(oid, rig.SYMBOL, "buy", 1, rig.PRICE, tif="ioc"))

        ways: list[tuple[Callable[[int], None], list[float]]] = [
            (by_submit, ours),
            (by_array, peer),
        ]
        first = 1 << 40  # apart from the ids the bench's runs use
        for r in range(rounds + 1):  # the first round warms both up and is not counted
            for send, times in ways if r % 2 else ways[::-1]:
                t = time.perf_counter_ns()
                send(first)
                elapsed = time.perf_counter_ns() - t
                _drain(client, rig.EVENTS_PER_ORDER * per_round)
                first += per_round
                if r:
                    times.append(elapsed / per_round / 1e3)
    return float(np.median(ours)), float(np.median(peer))
