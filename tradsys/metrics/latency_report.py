"""`tradsys latency`'s report: each stage's percentiles, per shard and for the gateway,
read from a running instance's stage-latency segments.

The segments are found through the supervisor's status file (what `tradsys status`
reads), so the report covers the processes the supervisor runs now. Figures are since the
instance started (a restarted worker keeps its shard's segment, so they survive it), or,
with a window, the difference of two copies taken that far apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from tradsys._native import lib
from tradsys.config import Config
from tradsys.metrics.latency_export import summary_us
from tradsys.metrics.latency_segment import HistogramCopy, LatencySegment


class InstanceNotRunningError(Exception):
    """No supervisor status file: the message says which instance and what to do."""


@dataclass(frozen=True)
class StageRow:
    """One line of the report: where (gateway or shard n), which stage, its figures."""

    where: str
    stage: str
    count: int
    p50_us: float
    p99_us: float
    p99_9_us: float
    max_us: float


def segment_names(config: Config) -> list[tuple[str, str]]:
    """(where, segment name) of every stage-latency segment of the running instance."""
    from tradsys.cores.status import supervisor_doc

    try:
        doc = supervisor_doc(config)
    except FileNotFoundError as exc:
        raise InstanceNotRunningError(str(exc)) from None
    out = []
    if doc.get("gateway_latency"):
        out.append(("gateway", str(doc["gateway_latency"])))
    for shard in doc.get("shards", []):
        if shard.get("latency"):
            out.append((f"shard {shard['shard']}", str(shard["latency"])))
    return out


def difference(after: HistogramCopy, before: HistogramCopy) -> HistogramCopy:
    """What was recorded between two copies of one histogram. Its max is the highest
    value the window's counts can hold (the exact max of a window is not kept)."""
    counts = after.counts.astype(np.int64) - before.counts.astype(np.int64)
    counts = np.clip(counts, 0, None).astype(np.uint64)
    nonzero = np.flatnonzero(counts)
    max_ns = int(lib.ts_lat_index_value_highest(int(nonzero[-1]))) if nonzero.size else 0
    min_ns = int(lib.ts_lat_index_value(int(nonzero[0]))) if nonzero.size else 0
    return HistogramCopy(
        counts,
        max(0, after.total - before.total),
        max(0, after.sum_ns - before.sum_ns),
        min_ns,
        max_ns,
        max(0, after.overflow - before.overflow),
    )


def read_rows(config: Config, window_s: float = 0.0) -> list[StageRow]:
    """The report's rows; with window_s > 0, over the last window_s seconds only."""
    segments: list[tuple[str, LatencySegment]] = []
    try:
        for where, name in segment_names(config):
            segments.append((where, LatencySegment.attach(name)))
        first = [seg.histograms() for _, seg in segments]
        if window_s > 0:
            time.sleep(window_s)  # the window itself: two copies that far apart
            second = [seg.histograms() for _, seg in segments]
            first = [
                {k: difference(b[k], a[k]) for k in b} for a, b in zip(first, second, strict=True)
            ]
    finally:
        for _, seg in segments:
            seg.close()
    rows = []
    for (where, _), copies in zip(segments, first, strict=True):
        for stage, copy in copies.items():
            s = summary_us(copy)
            rows.append(
                StageRow(
                    where,
                    stage,
                    int(s["count"]),
                    s["p50_us"],
                    s["p99_us"],
                    s["p99_9_us"],
                    s["max_us"],
                )
            )
    return rows


def format_rows(rows: list[StageRow]) -> str:
    """A fixed-width table, like the profiler's StageBreakdown (µs)."""
    where_w = max([len("where"), *(len(r.where) for r in rows)])
    stage_w = max([len("stage"), *(len(r.stage) for r in rows)])
    head = (
        f"{'where':<{where_w}}  {'stage':<{stage_w}}  {'count':>10}  {'p50 µs':>9}  "
        f"{'p99 µs':>9}  {'p99.9 µs':>9}  {'max µs':>10}"
    )
    lines = [head]
    for r in rows:
        # a stage with no sample has no percentiles: "-", where 0.00 would read as 0 µs
        p50, p99, p999, most = (
            (f"{r.p50_us:.2f}", f"{r.p99_us:.2f}", f"{r.p99_9_us:.2f}", f"{r.max_us:.2f}")
            if r.count
            else ("-", "-", "-", "-")
        )
        lines.append(
            f"{r.where:<{where_w}}  {r.stage:<{stage_w}}  {r.count:>10}  {p50:>9}  "
            f"{p99:>9}  {p999:>9}  {most:>10}"
        )
    return "\n".join(lines)
