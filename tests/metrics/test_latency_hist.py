"""The shared-memory latency histogram (native/latency_hist.c) against the HdrHistogram
package itself: the same counts index for every value, the same value ranges, and the
same percentiles once a copy is loaded; plus the edges (0, the highest value, beyond it)
and the Prometheus buckets."""

from __future__ import annotations

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from tradsys._native import ffi, lib
from tradsys.metrics.latency_export import (
    BUCKETS_S,
    cumulative_buckets,
    new_hdr,
    summary_us,
    to_hdr,
)
from tradsys.metrics.latency_segment import (
    COUNTS_LEN,
    HIGHEST_NS,
    HIST_SIZE,
    HistogramCopy,
)

# a value drawn log-uniformly: latencies spread over orders of magnitude
values_ns = (
    st.integers(min_value=0, max_value=40)
    .map(lambda e: 2**e)
    .flatmap(lambda top: st.integers(min_value=top // 2 if top > 1 else 0, max_value=top))
)


def hdr() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_NS, 2)


class CHist:
    """One C histogram in ordinary memory (the recording code does not care where)."""

    def __init__(self) -> None:
        size = lib.ts_lat_segment_size(1)
        self.mem = ffi.new("unsigned char[]", size)
        assert lib.ts_lat_segment_init(self.mem, size, 1, lib.TS_LAT_ROLE_WORKER, 0, 1, 1) == 0
        self.seg = ffi.cast("ts_lat_segment *", self.mem)
        self.h = lib.ts_lat_segment_hist(self.seg, 0)

    def record(self, value: int, count: int = 1) -> None:
        lib.ts_lat_record(self.h, value, count)

    def copy(self) -> HistogramCopy:
        raw = bytes(ffi.buffer(self.h, HIST_SIZE))
        counts = np.frombuffer(raw, dtype="<u8", count=COUNTS_LEN, offset=64).copy()
        total, sum_ns, min_ns, max_ns, overflow = np.frombuffer(raw, "<u8", 5).tolist()
        return HistogramCopy(counts, total, sum_ns, min_ns, max_ns, overflow)


def test_layout_constants_are_hdrhistograms() -> None:
    h = hdr()
    assert h.counts_len == COUNTS_LEN == lib.TS_LAT_COUNTS_LEN
    assert h.bucket_count == lib.TS_LAT_BUCKET_COUNT
    assert h.sub_bucket_count == lib.TS_LAT_SUB_BUCKET_COUNT
    assert h.sub_bucket_half_count_magnitude == lib.TS_LAT_SUB_BUCKET_HALF_COUNT_MAGNITUDE
    assert h.unit_magnitude == 0


@settings(max_examples=2000)
@given(values_ns)
def test_index_matches_hdrhistogram(value: int) -> None:
    h = hdr()
    clamped = min(value, HIGHEST_NS)
    index = lib.ts_lat_index(value)
    assert index == h._counts_index_for(clamped)
    assert lib.ts_lat_index_value(index) == h.get_lowest_equivalent_value(clamped)
    assert lib.ts_lat_index_value_highest(index) == h.get_highest_equivalent_value(clamped)


def test_every_index_value_matches_hdrhistogram() -> None:
    h = hdr()
    for i in range(lib.ts_lat_index(HIGHEST_NS) + 1):
        assert lib.ts_lat_index_value(i) == h.get_value_from_index(i), i


def test_edges_zero_highest_and_beyond() -> None:
    c = CHist()
    assert lib.ts_lat_index(0) == 0
    assert lib.ts_lat_index(-1) == 0  # a clock read out of order counts as 0
    top = lib.ts_lat_index(HIGHEST_NS)
    assert top < COUNTS_LEN
    assert lib.ts_lat_index(HIGHEST_NS + 1) == top
    assert lib.ts_lat_index(2**63 - 1) == top
    c.record(0)
    c.record(HIGHEST_NS)
    c.record(HIGHEST_NS * 10, 2)
    copy = c.copy()
    assert copy.total == 4 and copy.count == 4
    assert copy.overflow == 2  # only the values past the highest
    assert copy.counts[0] == 1 and copy.counts[top] == 3
    assert copy.min_ns == 0 and copy.max_ns == HIGHEST_NS * 10  # max is the real one
    assert copy.sum_ns == HIGHEST_NS * 21
    loaded = to_hdr(copy)
    assert loaded.get_total_count() == 4
    assert loaded.get_value_at_percentile(100) == hdr().get_highest_equivalent_value(HIGHEST_NS)


def test_empty_histogram() -> None:
    copy = CHist().copy()
    assert copy.total == 0 and copy.min_ns == 2**64 - 1
    assert summary_us(copy)["count"] == 0
    assert all(n == 0 for _, n in cumulative_buckets(copy))
    assert to_hdr(copy).get_total_count() == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(values_ns, st.integers(1, 5)), min_size=1, max_size=300))
def test_percentiles_match_the_package_on_random_data(recs: list[tuple[int, int]]) -> None:
    c, ref = CHist(), hdr()
    for value, count in recs:
        c.record(value, count)
        ref.record_value(min(value, HIGHEST_NS), count)
    copy = c.copy()
    assert list(copy.counts) == list(ref.counts)
    loaded = to_hdr(copy)
    assert loaded.get_total_count() == ref.get_total_count() == sum(n for _, n in recs)
    for p in (0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0):
        assert loaded.get_value_at_percentile(p) == ref.get_value_at_percentile(p), p
    assert loaded.get_min_value() == ref.get_min_value()
    assert loaded.get_max_value() == ref.get_max_value()
    assert copy.min_ns == min(v for v, _ in recs)
    assert copy.max_ns == max(v for v, _ in recs)
    assert copy.sum_ns == sum(v * n for v, n in recs)


@settings(max_examples=100, deadline=None)
@given(st.lists(values_ns, min_size=1, max_size=300))
def test_prometheus_buckets_count_values_whose_whole_range_is_below(values: list[int]) -> None:
    c, ref = CHist(), hdr()
    for v in values:
        c.record(v)
    buckets = cumulative_buckets(c.copy())
    assert [le for le, _ in buckets] == [*BUCKETS_S, float("inf")]
    for le, n in buckets[:-1]:
        bound = round(le * 1e9)
        want = sum(ref.get_highest_equivalent_value(min(v, HIGHEST_NS)) <= bound for v in values)
        assert n == want, le
    assert buckets[-1][1] == len(values)
    counts = [n for _, n in buckets]
    assert counts == sorted(counts)  # cumulative


def test_new_hdr_refuses_a_layout_the_package_computes_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tradsys.metrics.latency_export as export

    monkeypatch.setattr(export, "COUNTS_LEN", COUNTS_LEN + 1)
    with pytest.raises(RuntimeError, match="counters"):
        new_hdr()


def test_summary_percentiles_never_pass_the_exact_max() -> None:
    c = CHist()
    c.record(124_390)  # its counter holds up to 124_927: HdrHistogram answers with that
    s = summary_us(c.copy())
    assert s["count"] == 1
    assert s["p50_us"] == s["p99_us"] == s["p99_9_us"] == s["max_us"] == 124.39
