"""An HdrHistogram latency recorder that speaks microseconds and percentile spectra.

HdrHistogram keeps every value to 3 significant digits in constant memory and its
percentiles are exact to that precision, which is what latency tails need (an average or
a sampled reservoir hides the 99.9th percentile). Values are recorded in nanoseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from hdrh.histogram import HdrHistogram

# Where a percentile spectrum is sampled: dense towards the tail, like HdrHistogram's
# own percentile distribution output.
SPECTRUM = (0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0)


def spectrum_of(hist: HdrHistogram, points: Sequence[float] = SPECTRUM) -> list[list[float]]:
    """[[percentile, µs], ...] of a histogram of nanoseconds: what a benchmark puts in its
    JSON as ``percentiles`` (or ``peer_percentiles``) for `tradsys bench` to plot."""
    out = []
    for p in points:
        ns = hist.get_max_value() if p >= 100 else hist.get_value_at_percentile(p)
        out.append([p, round(float(ns) / 1000, 3)])
    return out


class LatencyRecorder:
    """Latencies in ns from 1 ns to ``max_ns`` (larger values are clamped, and counted)."""

    def __init__(self, max_ns: int = 60_000_000_000, digits: int = 3) -> None:
        self.max_ns = max_ns
        self.hist = HdrHistogram(1, max_ns, digits)
        self.clamped = 0

    def record(self, latency_ns: int) -> None:
        if latency_ns > self.max_ns:
            self.clamped += 1
            latency_ns = self.max_ns
        self.hist.record_value(max(1, int(latency_ns)))

    def record_many(self, latencies_ns: Iterable[int] | np.ndarray) -> None:
        """A batch (e.g. receive times minus intended send times, as a numpy array)."""
        values = np.asarray(latencies_ns, dtype=np.int64)
        over = values > self.max_ns
        self.clamped += int(over.sum())
        values = np.clip(values, 1, self.max_ns)
        uniques, counts = np.unique(values, return_counts=True)
        for value, count in zip(uniques.tolist(), counts.tolist(), strict=True):
            self.hist.record_value(value, count)

    def merge(self, other: LatencyRecorder) -> None:
        self.hist.add(other.hist)
        self.clamped += other.clamped

    @property
    def count(self) -> int:
        return int(self.hist.get_total_count())

    def percentile_us(self, percentile: float) -> float:
        return float(self.hist.get_value_at_percentile(percentile)) / 1000.0

    def percentiles_us(self, percentiles: Sequence[float] = (50, 99, 99.9)) -> list[float]:
        return [self.percentile_us(p) for p in percentiles]

    def spectrum(self, points: Sequence[float] = SPECTRUM) -> list[list[float]]:
        return spectrum_of(self.hist, points)

    def summary(self) -> dict[str, float]:
        """p50/p99/p99.9/max in µs and the count."""
        p50, p99, p999 = self.percentiles_us()
        return {
            "count": float(self.count),
            "p50_us": p50,
            "p99_us": p99,
            "p99_9_us": p999,
            "max_us": self.hist.get_max_value() / 1000,
        }
