"""Bodies of the child processes the ring tests start (importable by "spawn" children).

Children report through their exit code and multiprocessing Events/Pipes, never through
timing: a parent waits on an Event, on the ring itself, or on the child's exit.
"""

from __future__ import annotations

import sys
from multiprocessing.synchronize import Event

import numpy as np

from tests.ring.records import make_records
from tradsys.ring import Ring, WaitStrategy

# Exit codes a producer uses to say why it stopped early.
EXIT_CONSUMER_GONE = 3


def hold_a_ring(name: str, created: Event, release: Event) -> None:
    """Create a ring, say so, and keep it until released (or killed)."""
    ring = Ring.create(name, slot_size=64, capacity=8, layout_version=1, role="producer")
    try:
        created.set()
        release.wait(120)
    finally:
        ring.close()


def produce(name: str, total: int, strategy: str, seed: int, chunk: int, max_batch: int) -> None:
    """Push records 0..total-1 in random-size batches with ``push_all``, waiting with
    the named strategy (a name, since a strategy's C struct does not pickle).

    ``total`` < 0 means forever (until killed). If the consumer disappears the producer
    gives up with EXIT_CONSUMER_GONE instead of waiting for room that never comes.
    """
    rng = np.random.default_rng(seed)
    wait = WaitStrategy.named(strategy)
    with Ring.attach(name, slot_size=64, layout_version=1, role="producer") as ring:
        seq = 0
        while total < 0 or seq < total:
            n = chunk if total < 0 else min(chunk, total - seq)
            records = make_records(seq, n)
            sizes = rng.integers(1, max_batch + 1, size=n)  # enough for any split of n
            ends = np.minimum(np.cumsum(sizes), n)
            start = 0
            for end in ends.tolist():
                while start < end:
                    start += ring.push_all(records[start:end], wait, timeout=1.0)
                    if start < end and not ring.peer_alive():
                        sys.exit(EXIT_CONSUMER_GONE)
                if end == n:
                    break
            seq += n
