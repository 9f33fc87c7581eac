"""Where an order's round trip goes, hop by hop, without touching the engine: the e2e
sender samples the indices of the four rings an order and its events pass through, and
each order's time at a stage is the first sample that saw it past that stage.

One session, one shard and IOC orders keep everything in order: the i-th order of a run
is the i-th record the pump takes from the session's inbound ring and pushes into the
shard's command ring, and it makes the shard's events 2i and 2i+1 (ACCEPTED, then
CANCELLED), the first of which the pump routes as the session's event 2i. So a ring's
head or tail passing i (or 2i) says that order i passed that stage.

A sample is a bound, not an exact stamp: the stage was reached at or before the sample
that first saw it (and after the previous sample). The sender samples once per pass of
its loop, so the resolution is its pass time -- fine while it runs (a few µs), coarse
while it sleeps. A stage's time is also capped by the next stage's (a record reached the
command ring no later than the worker had taken it), so no hop is ever negative.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tradsys._native import ffi, lib
from tradsys.profiling import StageBreakdown
from tradsys.ring import Ring

# the stages an order passes, in order; "due" and "sent" and "client in" are stamped by
# the sender itself, the others are ring indices (see RingWatch.COLUMNS)
STAGES = [
    "due",
    "sent",
    "pump took",
    "to shard",
    "shard done",
    "events out",
    "to client",
    "client in",
]
# short names for result names: e2e.colocated.stage.<hop>.p99
HOP_NAMES = ["send", "pump_in", "pump_route", "shard", "shard_out", "pump_events", "client_in"]


class RingWatch:
    """Samples (time, ring indices) of one session's order path; ``sample`` is called by
    the sender once per loop pass."""

    # (ring, index field, records per order): read downstream first, so that an index seen
    # past an order implies every upstream index, read later, is past it too
    def __init__(self, inbound: Ring, cmd: Ring, evt: Ring, outbound: Ring, capacity: int):
        # column order = STAGES[2:-1]; read in reverse
        self._cols: list[tuple[Any, str, int]] = [
            (inbound._base, "tail", 1),
            (cmd._base, "head", 1),
            (cmd._base, "tail", 1),
            (evt._base, "head", 2),
            (outbound._base, "head", 2),
        ]
        self._rings = (inbound, cmd, evt, outbound)  # keep the mappings alive
        self._info = ffi.new("ts_ring_info *")
        self.times = np.zeros(capacity, np.int64)
        self.index = np.zeros((capacity, len(self._cols)), np.int64)
        self.n = 0
        self.base = self._read()

    def _read(self) -> list[int]:
        info, out = self._info, [0] * len(self._cols)
        for k in range(len(self._cols) - 1, -1, -1):
            base, field, _ = self._cols[k]
            lib.ts_ring_read_info(base, info)
            out[k] = info.tail if field == "tail" else info.head
        return out

    def sample(self, now_ns: int) -> None:
        if self.n < len(self.times):
            self.times[self.n] = now_ns
            self.index[self.n] = self._read()
            self.n += 1

    def stamps(self, due: np.ndarray, sent: np.ndarray, received: np.ndarray) -> np.ndarray:
        """One row of stage times per order that was answered and seen at every stage."""
        per_order = [k for _, _, k in self._cols]
        index = self.index[: self.n] - np.array(self.base, np.int64)
        return stage_times(self.times[: self.n], index, per_order, due, sent, received)


def stage_times(
    times: np.ndarray,
    index: np.ndarray,
    per_order: list[int],
    due: np.ndarray,
    sent: np.ndarray,
    received: np.ndarray,
) -> np.ndarray:
    """Rows (due, sent, one time per sampled column, received) for the orders answered
    and seen past every column. ``index[j, k]``: how many records had passed column k at
    sample time ``times[j]`` (counted from the run's start); order i's record in column k
    is number ``i * per_order[k]``, so it passed at the first sample whose index is above
    that. A stage is then capped by the next one's time (it was reached no later)."""
    n = len(due)
    order = np.arange(n, dtype=np.int64)
    ok = received > 0
    cols = []
    for k, per in enumerate(per_order):
        pos = np.searchsorted(index[:, k], order * per, side="right")
        ok &= pos < len(times)
        cols.append(times[np.minimum(pos, max(len(times) - 1, 0))] if len(times) else due)
    rows = np.column_stack([due, sent, *cols, received])[ok]
    return np.minimum.accumulate(rows[:, ::-1], axis=1)[:, ::-1]


def breakdown(stamps: np.ndarray) -> StageBreakdown:
    stages = StageBreakdown(STAGES)
    if len(stamps):
        stages.record(stamps)
    return stages
