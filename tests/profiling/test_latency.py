"""The profiling library: recorder percentiles, the open-loop timetable, stage hops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradsys.profiling import LatencyRecorder, OpenLoop, StageBreakdown


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 10_000_000), min_size=1, max_size=500))
def test_percentiles_are_exact_to_hdr_precision(values: list[int]) -> None:
    rec = LatencyRecorder()
    rec.record_many(np.array(values))
    assert rec.count == len(values)
    ordered = sorted(values)
    for p in (50, 90, 99, 100):
        # HdrHistogram's rank: the value at rank round(p% of n), at least 1
        rank = max(1, int(p / 100 * len(values) + 0.5))
        exact = ordered[rank - 1] / 1000
        assert rec.percentile_us(p) == pytest.approx(exact, rel=2e-3, abs=1e-3)


def test_record_many_equals_recording_one_by_one_and_clamps() -> None:
    values = [5, 5, 7, 1000, 123_456, 10**12]
    one, many = LatencyRecorder(max_ns=10**9), LatencyRecorder(max_ns=10**9)
    for v in values:
        one.record(v)
    many.record_many(np.array(values))
    assert one.spectrum() == many.spectrum()
    assert one.clamped == many.clamped == 1
    merged = LatencyRecorder(max_ns=10**9)
    merged.merge(one)
    merged.merge(many)
    assert merged.count == 2 * len(values)


def test_spectrum_is_monotonic_and_ends_at_the_max() -> None:
    rec = LatencyRecorder()
    rec.record_many(np.arange(1, 100_001) * 10)
    spectrum = rec.spectrum()
    values = [v for _, v in spectrum]
    assert values == sorted(values)
    assert spectrum[-1] == [100.0, pytest.approx(1000.0, rel=1e-3)]


def test_open_loop_keeps_its_timetable_when_the_sender_is_late() -> None:
    now = [0]

    def clock() -> int:
        return now[0]

    sent: list[tuple[int, int, int]] = []

    def send(i: int, due: int) -> None:
        sent.append((i, due, now[0]))
        if i == 2:
            now[0] += 5_000  # this send stalls for 5 µs: the next two are late

    def poll() -> None:
        now[0] += 100

    due = OpenLoop(rate=1_000_000, count=6, start_ns=1_000).run(send, poll, clock)
    assert due.tolist() == [1_000 + 1_000 * i for i in range(6)]
    for i, want, at in sent:
        assert want == due[i] and at >= want  # never early
    late = [at - want for _, want, at in sent]
    assert late[3] > 0 and late[4] > 0  # sent at once, lateness kept for the latency


def test_stage_breakdown_attributes_each_hop() -> None:
    stamps = np.array([[0, 1_000, 3_000, 3_500], [10, 2_010, 2_510, 12_510]])
    sb = StageBreakdown(["gateway in", "shard in", "matched", "event out"])
    sb.record(stamps)
    rows = {name: p99 for name, _, p99, _ in sb.rows()}
    assert rows["gateway in -> shard in"] == pytest.approx(2.0, rel=1e-2)
    assert rows["matched -> event out"] == pytest.approx(10.0, rel=1e-2)
    assert rows["total"] == pytest.approx(12.5, rel=1e-2)
    assert "shard in -> matched" in sb.table()


def test_stage_breakdown_refuses_a_bad_shape_or_a_stamp_out_of_order() -> None:
    sb = StageBreakdown(["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        sb.record(np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="message 1"):
        sb.record(np.array([[1, 2], [5, 4]]))
    with pytest.raises(ValueError, match="two stages"):
        StageBreakdown(["only"])
