"""The e2e bench's stage breakdown: each order's time at a stage is the first sample of
the ring indices past its record, capped by the next stage's time."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perf"))
from _e2e_stages import stage_times


def test_each_order_takes_the_first_sample_past_its_record() -> None:
    times = np.array([100, 200, 300, 400], np.int64)
    # two columns: one record per order (a command ring), two per order (an event ring)
    index = np.array([[0, 0], [1, 0], [2, 2], [2, 4]], np.int64)
    due = np.array([10, 20], np.int64)
    sent = np.array([50, 60], np.int64)
    received = np.array([500, 600], np.int64)
    rows = stage_times(times, index, [1, 2], due, sent, received)
    # order 0: command past at 200 (index 1 > 0), events past at 300 (2 > 0)
    # order 1: command past at 300 (2 > 1), events past at 400 (4 > 2)
    assert rows.tolist() == [[10, 50, 200, 300, 500], [20, 60, 300, 400, 600]]


def test_a_stage_is_capped_by_the_next_and_unseen_orders_are_left_out() -> None:
    times = np.array([100, 900], np.int64)
    index = np.array([[0, 0], [2, 2]], np.int64)
    due = np.array([10, 20, 30], np.int64)
    sent = np.array([50, 60, 70], np.int64)
    received = np.array([500, 0, 700], np.int64)
    rows = stage_times(times, index, [1, 1], due, sent, received)
    # order 0 seen past both columns only at 900, but read at 500: capped to 500;
    # order 1 never answered; order 2 never seen past the columns
    assert rows.tolist() == [[10, 50, 500, 500, 500]]
    assert (np.diff(rows, axis=1) >= 0).all()
