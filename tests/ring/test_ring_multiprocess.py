"""Two processes, one ring: millions of records, nothing lost, duplicated, reordered or
torn, under every wait strategy; and a producer killed mid-stream loses nothing it
published and shows nothing it had not finished writing."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from tests.conftest import Children, RingFactory
from tests.ring.child_processes import produce
from tests.ring.records import SequenceChecker
from tradsys.ring import WaitStrategy

pytestmark = pytest.mark.multiprocess

TOTAL = 10_000_000
CAPACITY = 256
MAX_BATCH = 300  # above the capacity: some pushes must wait for room part-way through
CHUNK = 1 << 16  # records generated (producer) and checked (consumer) per numpy call
POP_TIMEOUT = 0.5  # seconds a pop waits before the consumer looks at the producer
RUN_LIMIT = 120.0  # a run that takes this long has hung: fail rather than wait forever
STRATEGIES = ["busy-spin", "spin-yield", "spin-park"]


def batch_sizes(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, MAX_BATCH + 1, size=4096)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ten_million_records(rings: RingFactory, children: Children, strategy: str) -> None:
    wait = WaitStrategy.named(strategy)
    seed = STRATEGIES.index(strategy)
    ring = rings.create(capacity=CAPACITY, role="consumer")
    started = time.perf_counter()
    producer = children.start(produce, ring.name, TOTAL, strategy, seed, CHUNK, MAX_BATCH)
    checker = SequenceChecker(CHUNK)
    sizes = batch_sizes(seed + 100)
    deadline = time.monotonic() + RUN_LIMIT
    calls = 0
    while checker.total < TOTAL:
        size = int(sizes[calls % len(sizes)])
        calls += 1
        n = ring.pop_wait(checker.space(size), wait, timeout=POP_TIMEOUT)
        checker.took(n)
        if n == 0:
            assert time.monotonic() < deadline, f"hung after {checker.total:,} records"
            if producer.exitcode is not None and ring.readable == 0:
                pytest.fail(
                    f"producer exited with {producer.exitcode} after {checker.total:,} of "
                    f"{TOTAL:,} records"
                )
            assert ring.peer_alive() or producer.exitcode is not None or checker.total == 0
    checker.check()
    elapsed = time.perf_counter() - started
    producer.join(RUN_LIMIT)
    assert producer.exitcode == 0
    assert checker.verified == TOTAL
    assert ring.pop() is None, "the producer published more than it was asked to"
    info = ring.info()
    assert info.head == info.tail == TOTAL
    print(f"{strategy}: {TOTAL:,} records in {elapsed:.2f} s ({TOTAL / elapsed / 1e6:.2f} M/s)")


KILL_AFTER = 200_000  # records the consumer sees before it kills the producer


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_producer_killed_mid_stream(rings: RingFactory, children: Children, strategy: str) -> None:
    wait = WaitStrategy.named(strategy)
    seed = 10 + STRATEGIES.index(strategy)
    ring = rings.create(capacity=CAPACITY, role="consumer")
    # total=-1: the producer streams until it is killed
    producer = children.start(produce, ring.name, -1, strategy, seed, 4096, MAX_BATCH)
    checker = SequenceChecker(CHUNK)
    sizes = batch_sizes(seed + 100)
    deadline = time.monotonic() + RUN_LIMIT
    calls = 0

    def pop_some() -> int:
        nonlocal calls
        size = int(sizes[calls % len(sizes)])
        calls += 1
        n = ring.pop_wait(checker.space(size), wait, timeout=POP_TIMEOUT)
        checker.took(n)
        return n

    # Synchronise on data: kill only once the stream is flowing, and right after a pop,
    # so that the producer has room and is most likely in the middle of a push.
    while checker.total < KILL_AFTER:
        if pop_some() == 0:
            assert producer.exitcode is None, f"producer died early ({producer.exitcode})"
            assert time.monotonic() < deadline, f"stream stalled at {checker.total:,}"
    assert ring.peer_alive()
    assert producer.pid is not None
    os.kill(producer.pid, signal.SIGKILL)
    seen_at_kill = checker.total
    producer.join(RUN_LIMIT)
    assert producer.exitcode == -signal.SIGKILL
    assert not ring.peer_alive(), "a SIGKILLed producer must not look alive"

    # The producer is gone: whatever it published is all there will ever be.
    while pop_some():
        pass
    checker.check()  # every record intact, seq contiguous from 0
    info = ring.info()
    assert checker.verified == info.head == info.tail, (
        f"read {checker.verified:,} records, the producer published {info.head:,}"
    )
    assert ring.pop() is None
    print(
        f"{strategy}: killed after {seen_at_kill:,} records seen; "
        f"{checker.verified:,} published and all read back"
    )
