"""The sidecar's publish-lag histogram: the batch count (binary searches over sorted
stamps) agrees with placing each record on its own."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tradsys.marketdata.stats import (
    LAG_BOUNDS_NS,
    STATS_FILE,
    PublishStats,
    StatsFileWriter,
    read_stats,
    stats_bytes,
)


def one_by_one(sent: int, stamps: np.ndarray) -> PublishStats:
    stats = PublishStats([0])
    for t in stamps.tolist():
        if t:
            stats.lag_one(sent - t)
    return stats


@pytest.mark.parametrize("shuffled", [False, True])
def test_batch_lags_match_record_by_record(shuffled: bool) -> None:
    rng = np.random.default_rng(5)
    sent = 1_800_000_000_000_000_000
    lags = rng.choice([0, 5_000, 10_000, 10_001, 99_999, 2_000_000, 10**10], 5000)
    stamps = np.sort(sent - lags)
    stamps[:40] = 0  # an engine clock not ticked yet
    stamps[-3:] = sent + 7  # a clock slightly ahead: lag 0
    stamps = np.sort(stamps)
    if shuffled:  # a batch across a worker restart: not sorted
        rng.shuffle(stamps)
    batch = PublishStats([0])
    batch.lag_many(sent, stamps)
    want = one_by_one(sent, stamps)
    assert batch.lag_counts == want.lag_counts
    assert batch.lag_sum_ns == want.lag_sum_ns
    assert sum(batch.lag_counts) == 5000 - 40
    assert len(batch.lag_counts) == len(LAG_BOUNDS_NS) + 1 and batch.lag_counts[-1] > 0


def test_an_unstamped_batch_counts_nothing() -> None:
    stats = PublishStats([0])
    stats.lag_many(10**18, np.zeros(10, np.int64))
    assert sum(stats.lag_counts) == 0 and stats.lag_sum_ns == 0


def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.001)  # polling a condition with a deadline, not synchronising on time
    return condition()


def test_the_writer_thread_writes_the_newest_content_and_the_last_on_close(
    tmp_path: Path,
) -> None:
    writer = StatsFileWriter(tmp_path)
    try:
        writer.submit(stats_bytes(PublishStats([0]), n=1))
        assert _until(lambda: writer.written >= 1)
        assert read_stats(tmp_path)["n"] == 1  # type: ignore[index]
        for n in range(2, 50):  # faster than it writes: the newest wins, none is queued
            writer.submit(stats_bytes(PublishStats([0]), n=n))
    finally:
        writer.close()
    doc = read_stats(tmp_path)
    assert doc is not None and doc["n"] == 49 and doc["pid"] == os.getpid()
    assert writer.written <= 49 and writer.failures == 0
    assert not writer._thread.is_alive()
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATS_FILE]  # no .tmp left


def test_a_failed_write_is_counted_and_the_next_one_succeeds(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    writer = StatsFileWriter(missing)
    try:
        writer.submit(b"{}")
        assert _until(lambda: writer.failures == 1)
        assert writer._thread.is_alive()  # it keeps serving
        missing.mkdir()
        writer.submit(stats_bytes(PublishStats([0])))
        assert _until(lambda: writer.written == 1)
        assert read_stats(missing) is not None
    finally:
        writer.close()
