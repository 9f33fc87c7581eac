"""Garbage-collector tuning for a latency-sensitive Python process, and its measurement.

CPython offers no pause-free collector, but it offers enough to keep pauses small and
full collections out of the trading day:

- ``gc.collect()`` then ``gc.freeze()`` once warm-up is done: every object alive then
  (modules, config, sessions' preallocated buffers) moves to a permanent generation the
  collector never scans again, so a young collection only walks what was made since;
- thresholds: a larger young generation (fewer, still short, collections) and an oldest
  generation threshold high enough that a full collection does not happen while trading;
- no per-order objects on the hot path (numpy record batches are reused), so little
  reaches the old generations at all.

:class:`GcMonitor` times every collection through ``gc.callbacks`` into a preallocated
sample array and a fixed-bucket histogram (what ``/metrics`` exports as
``tradsys_gateway_gc_pause_seconds``), so the pauses can be reported (p50/p99/max, per
generation counts, the distribution) without the monitor itself allocating in the
callback beyond what CPython hands it.
"""

from __future__ import annotations

import gc
import time
from array import array
from bisect import bisect_left
from typing import Any

import numpy as np

# Young generation of 20 000 container allocations, 20 young collections per middle one,
# and a full collection only after 1 000 000 middle ones: never, in a trading session.
TRADING_THRESHOLDS = (20_000, 20, 1_000_000)
SAMPLES = 1 << 16
# Upper bounds of the pause histogram's buckets, in seconds (1-2.5-5 steps, 10 µs to 1 s):
# what /metrics exports, so that pauses can be summed over time and across instances.
PAUSE_BOUNDS_S = (*(m * 10.0**e for e in range(-5, 0) for m in (1, 2.5, 5)), 1.0)
_PAUSE_BOUNDS_NS = [round(b * 1e9) for b in PAUSE_BOUNDS_S]

# How many objects the last tune_for_trading froze. Counted once there, because
# gc.get_freeze_count() walks the whole permanent generation: asked for in every stats
# write (4 a second), it cost the gateway's event loop 2.5-3.7 ms of CPU each time, and
# the colocated clients and the pump sharing that CPU waited it out (most of the order
# round trip's p99, at every rate).
_frozen_objects = 0


class GcMonitor:
    """Counts and times every collection of this interpreter.

    ``install()`` hooks ``gc.callbacks``; ``reset()`` starts a new measurement window
    (after warm-up); ``stats()`` reports the window: collections per generation, pause
    percentiles in µs, and the full (generation 2) collections.
    """

    def __init__(self, samples: int = SAMPLES) -> None:
        self._pauses = array("q", bytes(8 * samples))  # ns, a ring of the latest pauses
        self._n = 0
        self._counts = [0, 0, 0]
        self._max_ns = 0
        # per bucket of PAUSE_BOUNDS_S (a pause counts in the first whose bound it is at
        # or under), the last for those over 1 s; and their sum
        self._buckets = [0] * (len(PAUSE_BOUNDS_S) + 1)
        self._sum_ns = 0
        self._t0 = 0
        self._installed = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter_ns()
            return
        pause = time.perf_counter_ns() - self._t0
        self._pauses[self._n % len(self._pauses)] = pause
        self._n += 1
        self._counts[info["generation"]] += 1
        self._buckets[bisect_left(_PAUSE_BOUNDS_NS, pause)] += 1
        self._sum_ns += pause
        if pause > self._max_ns:
            self._max_ns = pause

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    def reset(self) -> None:
        self._n = 0
        self._counts = [0, 0, 0]
        self._max_ns = 0
        self._buckets = [0] * (len(PAUSE_BOUNDS_S) + 1)
        self._sum_ns = 0

    @property
    def full_collections(self) -> int:
        return self._counts[2]

    def stats(self) -> dict[str, Any]:
        """The window so far: counts, pause percentiles in µs (of the latest SAMPLES
        pauses; 0 when none), and the histogram of every pause (``pause_buckets``, one
        count per bound of PAUSE_BOUNDS_S and one over it; ``pause_sum_s``)."""
        n = min(self._n, len(self._pauses))
        p50 = p99 = 0.0
        if n:
            pauses = np.frombuffer(self._pauses, np.int64, count=n)
            p50, p99 = (float(v) / 1000 for v in np.percentile(pauses, [50, 99]))
        return {
            "collections": float(self._n),
            "gen0": float(self._counts[0]),
            "gen1": float(self._counts[1]),
            "gen2": float(self._counts[2]),
            "pause_p50_us": p50,
            "pause_p99_us": p99,
            "pause_max_us": self._max_ns / 1000,
            "pause_buckets": list(self._buckets),
            "pause_sum_s": self._sum_ns / 1e9,
            "frozen_objects": float(_frozen_objects),
            # what each generation holds now, against its threshold: how close the next
            # collection is
            "young_pending": float(gc.get_count()[0]),
            "young_threshold": float(gc.get_threshold()[0]),
        }


def tune_for_trading(
    thresholds: tuple[int, int, int] = TRADING_THRESHOLDS,
) -> int:
    """Call once warm-up is done: collect everything, freeze the survivors, and set the
    trading thresholds. Returns how many objects it froze (``frozen_objects`` in
    :meth:`GcMonitor.stats`)."""
    global _frozen_objects
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    _frozen_objects = gc.get_freeze_count()
    return _frozen_objects


def untune() -> None:
    """Undo :func:`tune_for_trading` (tests; a process that leaves trading mode)."""
    global _frozen_objects
    _frozen_objects = 0
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
