"""The GC tuning helpers: collections are counted per generation and timed; tuning
freezes what is alive and raises the thresholds."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tradsys.gctune import TRADING_THRESHOLDS, GcMonitor, tune_for_trading, untune


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
    gc.collect()  # uninstalled: not counted
    assert mon.stats()["collections"] == stats["collections"]
    mon.reset()
    assert mon.stats()["collections"] == 0 and mon.stats()["pause_p99_us"] == 0


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
