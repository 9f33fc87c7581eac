"""The sidecar's publish-lag histogram: the batch count (binary searches over sorted
stamps) agrees with placing each record on its own."""

from __future__ import annotations

import numpy as np
import pytest

from tradsys.marketdata.stats import LAG_BOUNDS_NS, PublishStats


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
