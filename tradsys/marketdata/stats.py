"""The md sidecar's own figures: what it published, and how late.

Kept as plain Python ints (and one small bucket array) that the publish path bumps as it
goes, and written to ``<instance_dir>/md.stats.json`` once a second (atomically,
with the sidecar's pid) for ``/metrics`` to read at scrape time
(:mod:`tradsys.metrics.md_series`) — the same arrangement as the gateway's stats file, so
nothing is observed for Prometheus on the hot path itself.

The publish lag is measured from the engine's timestamp of a record (``time_ns``: the
engine's clock, which its command stream sets with CLOCK_TICKs on CLOCK_REALTIME) to the
moment its message is handed to the PUB socket (stamped before the send: a send may hand
the CPU to ZeroMQ's I/O thread before it returns). Records stamped 0 (an engine whose clock was
never ticked) say nothing about lag and are left out.

:class:`StageLog` is the profiling aid behind ``perf/md_bench.py``'s stage breakdown:
when ``TRADSYS_MD_STAGE_LOG`` names a file, the sidecar notes, per message, when its
records were drained from the ring and when it was handed to ZeroMQ, and saves the table
there when it stops.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from tradsys.files import replace_file
from tradsys.marketdata.protocol import CHANNELS

STATS_FILE = "md.stats.json"
log = logging.getLogger("tradsys.md")
STAGE_LOG_ENV = "TRADSYS_MD_STAGE_LOG"
# Prometheus histogram bounds of the publish lag (``le``, seconds as ns): a quiet feed
# lives in the first few; a backlog shows in the last.
LAG_BOUNDS_NS = (
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
)
_BOUNDS = np.array(LAG_BOUNDS_NS, np.int64)
SNAPSHOT_ERROR_REASONS = (
    "malformed_request",
    "unknown_symbol",
    "not_ready",
    "rate_limited",
    "no_trade_history",
)


class PublishStats:
    """Counters of one sidecar process (they restart from zero with it)."""

    def __init__(self, shard_ids: list[int]) -> None:
        self.records = [0] * len(CHANNELS)  # per channel, CHANNELS order
        self.messages = [0] * len(CHANNELS)
        self.bytes = 0  # topic + payload of data messages
        self.heartbeats = 0
        self.board_messages = 0  # conflated BBO board
        self.snapshots_served = 0
        self.replays_served = 0  # trade replay requests answered
        self.replayed_prints = 0  # the prints they carried
        self.snapshot_errors = dict.fromkeys(SNAPSHOT_ERROR_REASONS, 0)
        self.drained = dict.fromkeys(shard_ids, 0)  # records taken from each md ring
        # records dropped because their symbol id is not in the config (not published)
        self.unknown_symbol_records = 0
        self.lag_counts = [0] * (len(LAG_BOUNDS_NS) + 1)  # the last is +Inf
        self.lag_sum_ns = 0

    def lag_one(self, lag_ns: int) -> None:
        """One record's publish lag (the scalar path: no numpy call)."""
        lag_ns = max(lag_ns, 0)  # a clock ticked slightly ahead of this host's
        self.lag_counts[bisect_left(LAG_BOUNDS_NS, lag_ns)] += 1
        self.lag_sum_ns += lag_ns

    def lag_many(self, sent_ns: int, stamps: np.ndarray) -> None:
        """A batch's publish lags, all sent at ``sent_ns`` (stamps of 0 are skipped).

        A shard's engine clock never goes back, so a drained batch's stamps are sorted
        and a dozen binary searches count the buckets — instead of placing each of tens
        of thousands of records (checked; an unsorted batch is sorted first)."""
        s = np.asarray(stamps, np.int64)
        if len(s) > 1 and not bool((s[1:] >= s[:-1]).all()):
            s = np.sort(s)
        start = int(np.searchsorted(s, 1))  # the unstamped (0) come first
        n = len(s) - start
        if n == 0:
            return
        # lag <= bound  <=>  stamp >= sent - bound (a future stamp counts as lag 0)
        cumulative = (len(s) - np.searchsorted(s, sent_ns - _BOUNDS)).tolist()
        counts = [cumulative[0]]
        counts += [b - a for a, b in itertools.pairwise(cumulative)]
        counts.append(n - cumulative[-1])
        self.lag_counts = [a + b for a, b in zip(self.lag_counts, counts, strict=True)]
        past = s[start : int(np.searchsorted(s, sent_ns, side="right"))]
        self.lag_sum_ns += int((sent_ns - past).sum())

    def doc(self) -> dict[str, Any]:
        """The JSON document of the stats file (without pid and time)."""
        return {
            "records": {c.value: n for c, n in zip(CHANNELS, self.records, strict=True)},
            "messages": {c.value: n for c, n in zip(CHANNELS, self.messages, strict=True)},
            "bytes": self.bytes,
            "heartbeats": self.heartbeats,
            "board_messages": self.board_messages,
            "snapshots_served": self.snapshots_served,
            "replays_served": self.replays_served,
            "replayed_prints": self.replayed_prints,
            "snapshot_errors": dict(self.snapshot_errors),
            "drained": {str(k): v for k, v in self.drained.items()},
            "unknown_symbol_records": self.unknown_symbol_records,
            "publish_lag": {
                "bounds_s": [b / 1e9 for b in LAG_BOUNDS_NS],
                "counts": list(self.lag_counts),
                "sum_s": self.lag_sum_ns / 1e9,
            },
        }


def stats_path(instance_dir: Path) -> Path:
    return instance_dir / STATS_FILE


def stats_bytes(stats: PublishStats, **extra: Any) -> bytes:
    """The stats file's content now (msgspec: a few µs for the sidecar's loop)."""
    doc = {"pid": os.getpid(), "time": time.time(), **extra, **stats.doc()}
    return msgspec.json.encode(doc)


def write_stats(instance_dir: Path, stats: PublishStats, **extra: Any) -> None:
    """Replace the stats file now, in this thread."""
    replace_file(str(stats_path(instance_dir)), stats_bytes(stats, **extra))


class StatsFileWriter:
    """Writes the stats file from a thread of its own, so the sidecar's loop only
    encodes it.

    The file system calls are the slow part and they are not bounded: measured on this
    project's shared VM disk, the open-truncate-write-rename took 130-160 µs at the
    median and 4-5 ms at the 99th percentile (the file system's journal) — time a record
    arriving meanwhile would wait. Here they run while the loop goes on (the calls
    release the GIL). Only the newest content matters: a write still pending when a
    newer one comes is replaced, never queued behind it. A failed write is logged and
    the next one tries again: monitoring must not stop the feed."""

    def __init__(self, instance_dir: Path) -> None:
        self.path = str(stats_path(instance_dir))
        self._cond = threading.Condition()
        self._pending: bytes | None = None
        self._closed = False
        self.written = 0  # files written (for tests and the curious)
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="md-stats", daemon=True)
        self._thread.start()

    def submit(self, data: bytes) -> None:
        """Hand over the newest content; returns at once."""
        with self._cond:
            self._pending = data
            self._cond.notify()

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is still pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                data, self._pending = self._pending, None
                closed = self._closed
            if data is not None:
                try:
                    replace_file(self.path, data)
                    self.written += 1
                except OSError as exc:
                    self.failures += 1
                    log.warning("md: cannot write its stats file %s: %s", self.path, exc)
            if closed and data is None:
                return


def remove_stats(instance_dir: Path) -> None:
    """At exit, so a stopped sidecar's figures are not served as live ones (only this
    process's own file: a successor's is left alone)."""
    doc = read_stats(instance_dir)
    if doc is not None and doc.get("pid") == os.getpid():
        stats_path(instance_dir).unlink(missing_ok=True)


def read_stats(instance_dir: Path) -> dict[str, Any] | None:
    """The last stats a sidecar wrote, or None (none yet, or unreadable)."""
    try:
        doc: dict[str, Any] = json.loads(stats_path(instance_dir).read_text())
    except (OSError, ValueError):
        return None
    return doc


STAGE_COLUMNS = ("channel", "symbol", "first_seq", "last_seq", "drained_ns", "sent_ns")


class StageLog:
    """Per message: channel, symbol index, first and last seq, drained and send times
    (CLOCK_REALTIME ns, the engine's clock). Preallocated; the rows past ``capacity``
    are not kept."""

    def __init__(self, path: str, capacity: int = 1 << 20) -> None:
        self.path = path
        self.rows = np.zeros((capacity, len(STAGE_COLUMNS)), np.int64)
        self.n = 0

    def note(self, channel: int, si: int, first: int, last: int, drained: int, sent: int) -> None:
        if self.n < len(self.rows):
            self.rows[self.n] = (channel, si, first, last, drained, sent)
            self.n += 1

    def save(self) -> None:
        tmp = f"{self.path}.tmp.npy"
        np.save(tmp, self.rows[: self.n])
        os.replace(tmp, self.path)

    @staticmethod
    def from_env() -> StageLog | None:
        path = os.environ.get(STAGE_LOG_ENV)
        return StageLog(path) if path else None
