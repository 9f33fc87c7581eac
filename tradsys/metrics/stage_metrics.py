"""The stage-latency histograms as the Prometheus histogram
``tradsys_stage_latency_seconds{stage, shard}`` (``_bucket``/``_sum``/``_count``).

Read at scrape time from the segments the supervisor made (a copy of the counts, no
lock): the workers and the gateway never do anything for Prometheus. ``shard`` is the
shard id for a worker's stages and ``all`` for the gateway's, whose orders go to every
shard.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import HistogramMetricFamily, Metric

from tradsys.metrics.latency_export import cumulative_buckets
from tradsys.metrics.latency_segment import LatencySegment

if TYPE_CHECKING:
    from tradsys.cores.supervisor import Supervisor

METRIC = "tradsys_stage_latency_seconds"
GATEWAY_SHARD_LABEL = "all"


def _segments(supervisor: Supervisor) -> Iterator[tuple[str, LatencySegment]]:
    for sp in supervisor.shards:
        if sp.latency is not None and not sp.latency.closed:
            yield str(sp.spec.shard_id), sp.latency
    gw = supervisor.gateway_latency
    if gw is not None and not gw.closed:
        yield GATEWAY_SHARD_LABEL, gw


def _le(bound: float) -> str:
    """An `le` label as Prometheus writes it ("+Inf", "1e-06", "0.0025")."""
    return "+Inf" if bound == float("inf") else repr(bound)


def add_segment(family: HistogramMetricFamily, shard: str, segment: LatencySegment) -> None:
    """One series per stage of a segment."""
    for stage, copy in segment.histograms().items():
        buckets = [(_le(le), float(n)) for le, n in cumulative_buckets(copy)]
        family.add_metric([stage, shard], buckets, copy.sum_ns / 1e9)


def stage_latency_families(supervisor: Supervisor) -> Iterator[Metric]:
    family = HistogramMetricFamily(
        METRIC,
        "Time between two stages of an order's path (gateway in, shard in, matched, event "
        "out, routed back), from HdrHistogram counts kept in shared memory.",
        labels=["stage", "shard"],
    )
    for shard, segment in _segments(supervisor):
        add_segment(family, shard, segment)
    yield family
