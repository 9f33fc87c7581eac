"""The GC tuning helpers: collections are counted per generation and timed; tuning
freezes what is alive and raises the thresholds."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tradsys.gctune import (
    PAUSE_BOUNDS_S,
    TRADING_THRESHOLDS,
    GcMonitor,
    tune_for_trading,
    untune,
)


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        untune()
        gc.set_threshold(*before)


def test_monitor_counts_and_times_every_collection() -> None:
    mon = GcMonitor(samples=8)
    mon.install()
    try:
        for gen in (0, 1, 2, 2, 0):
            gc.collect(gen)
    finally:
        mon.uninstall()
    stats = mon.stats()
    assert (stats["gen0"], stats["gen1"], stats["gen2"]) >= (2, 1, 2)
    assert mon.full_collections >= 2
    assert 0 < stats["pause_p50_us"] <= stats["pause_p99_us"] <= stats["pause_max_us"]
    # every pause in the histogram /metrics exports, once
    assert sum(stats["pause_buckets"]) == stats["collections"]
    assert len(stats["pause_buckets"]) == len(PAUSE_BOUNDS_S) + 1
    assert 0 < stats["pause_sum_s"] <= stats["collections"] * stats["pause_max_us"] / 1e6
    gc.collect()  # uninstalled: not counted
    assert mon.stats()["collections"] == stats["collections"]
    mon.reset()
    assert mon.stats()["collections"] == 0 and mon.stats()["pause_p99_us"] == 0
    assert sum(mon.stats()["pause_buckets"]) == 0


def test_gc_pauses_reach_metrics_as_a_cumulative_histogram() -> None:
    """/metrics gets the monitor's buckets as a Prometheus histogram: cumulative, with
    +Inf equal to the count (a pause over 1 s counts only there)."""
    from tradsys.metrics.collector import _gateway_families

    buckets = [0] * (len(PAUSE_BOUNDS_S) + 1)
    buckets[0], buckets[3], buckets[-1] = 2, 1, 1  # 2 under 10 µs, 1 under 100 µs, 1 over 1 s
    doc = {"core": {}, "gc": {"pause_buckets": buckets, "pause_sum_s": 1.5}}
    (family,) = [f for f in _gateway_families(doc) if f.name == "tradsys_gateway_gc_pause_seconds"]
    assert family.type == "histogram"
    got = {s.labels.get("le", s.name): s.value for s in family.samples}
    assert (got["1e-05"], got["5e-05"], got["0.0001"], got["1.0"], got["+Inf"]) == (2, 2, 3, 3, 4)
    assert got["tradsys_gateway_gc_pause_seconds_count"] == 4
    assert got["tradsys_gateway_gc_pause_seconds_sum"] == 1.5


def test_monitor_keeps_the_latest_samples_in_a_ring() -> None:
    mon = GcMonitor(samples=4)
    mon.install()
    try:
        for _ in range(10):
            gc.collect(0)
    finally:
        mon.uninstall()
    assert mon.stats()["collections"] == 10


def test_tuning_freezes_the_survivors_and_sets_thresholds(restore_gc: None) -> None:
    tune_for_trading()
    assert gc.get_threshold() == TRADING_THRESHOLDS
    assert gc.get_freeze_count() > 1000  # the interpreter's own objects, at least
    # a young collection no longer walks the frozen heap, so it is short
    mon = GcMonitor()
    mon.install()
    try:
        for _ in range(50):
            [[] for _ in range(100)]
            gc.collect(0)
    finally:
        mon.uninstall()
    assert mon.stats()["gen2"] == 0


def test_stats_report_the_frozen_count_without_walking_the_frozen_heap(
    restore_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = tune_for_trading()
    assert frozen == gc.get_freeze_count() > 1000

    def walks_the_heap() -> int:
        raise AssertionError("gc.get_freeze_count() walks every frozen object")

    # the gateway writes its stats 4 times a second, on the CPU its pump shares
    monkeypatch.setattr(gc, "get_freeze_count", walks_the_heap)
    assert GcMonitor().stats()["frozen_objects"] == frozen
