"""A copied stage-latency histogram turned into what people read: an HdrHistogram (so
percentiles come from the HdrHistogram code itself) and Prometheus histogram buckets.

The C side keeps HdrHistogram's own counts array (lowest 1 ns, highest 60 s, 2
significant digits), so loading a copy into ``hdrh.histogram.HdrHistogram`` is a copy of
the array plus the package's own ``set_internal_tacking_values`` — the step its decoder
takes after filling the counts of a decoded histogram.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from functools import cache

import numpy as np
from hdrh.histogram import HdrHistogram

from tradsys._native import lib
from tradsys.metrics.latency_segment import (
    COUNTS_LEN,
    HIGHEST_NS,
    LOWEST_NS,
    SIGNIFICANT_DIGITS,
    HistogramCopy,
)

# Prometheus `le` bounds in seconds: 1 µs to 1 s in 1-2.5-5 steps, fixed so every shard's
# and every scrape's series line up (and histogram_quantile can aggregate them).
BUCKETS_S: tuple[float, ...] = (
    1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
    1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0,
)  # fmt: skip


def new_hdr() -> HdrHistogram:
    """An empty HdrHistogram of the shared-memory layout."""
    hist = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
    if hist.counts_len != COUNTS_LEN:  # the C constants and the package disagree
        raise RuntimeError(
            f"HdrHistogram({LOWEST_NS}, {HIGHEST_NS}, {SIGNIFICANT_DIGITS}) has "
            f"{hist.counts_len} counters, native/latency_hist.h {COUNTS_LEN}"
        )
    return hist


def to_hdr(copy: HistogramCopy) -> HdrHistogram:
    """The copy as an ``HdrHistogram`` of nanoseconds."""
    hist = new_hdr()
    counts = np.ascontiguousarray(copy.counts, dtype=np.uint64)
    ctypes.memmove(hist.counts, counts.ctypes.data, counts.nbytes)
    nonzero = np.flatnonzero(counts)
    if nonzero.size:
        hist.set_internal_tacking_values(int(nonzero[0]), int(nonzero[-1]), int(counts.sum()))
    return hist


@cache
def _index_highest_ns() -> np.ndarray:
    """The highest value each counts index holds (monotonic in the index)."""
    return np.array([lib.ts_lat_index_value_highest(i) for i in range(COUNTS_LEN)], np.int64)


def cumulative_buckets(
    copy: HistogramCopy, bounds_s: Sequence[float] = BUCKETS_S
) -> list[tuple[float, int]]:
    """(le seconds, values <= le) for each bound, then (inf, all values).

    A counter counts under a bound only if every value it may hold is <= the bound, so a
    bucket never claims a value faster than it was (it may leave out values up to 1/128
    below the bound, the histogram's precision)."""
    cum = np.cumsum(copy.counts, dtype=np.uint64)
    highest = _index_highest_ns()
    out: list[tuple[float, int]] = []
    for le in bounds_s:
        # the last index whose highest value is <= the bound
        k = int(np.searchsorted(highest, round(le * 1e9), side="right")) - 1
        out.append((le, int(cum[k]) if k >= 0 else 0))
    out.append((float("inf"), int(cum[-1]) if cum.size else 0))
    return out


def summary_us(copy: HistogramCopy) -> dict[str, float]:
    """count, p50, p99, p99.9 (µs, from HdrHistogram) and max (µs, exact) of a copy."""
    hist = to_hdr(copy)
    count = hist.get_total_count()
    if not count:
        return {"count": 0.0, "p50_us": 0.0, "p99_us": 0.0, "p99_9_us": 0.0, "max_us": 0.0}

    # HdrHistogram answers a percentile with the highest value of its counter's range,
    # which may lie above the exact max the C side kept: never report past the max
    def at(p: float) -> float:
        return float(min(hist.get_value_at_percentile(p), copy.max_ns)) / 1000

    return {
        "count": float(count),
        "p50_us": at(50),
        "p99_us": at(99),
        "p99_9_us": at(99.9),
        "max_us": copy.max_ns / 1000,
    }
