"""The market-data sidecar's series in ``/metrics``.

The sidecar counts what it publishes as it goes and rewrites
``<instance_dir>/md.stats.json`` once a second (:mod:`tradsys.marketdata.stats`);
this module turns the file into metric families at scrape time, so Prometheus costs the
publish path nothing. A file left by a sidecar that is no longer the running one (a
crash, a restart) is not served: its pid must be the current md process's; the next
one's counters carry on from the dead one's (:mod:`tradsys.metrics.carry`).

ZeroMQ does not tell a publisher how many subscribers it has, so there is no such
series; a subscriber's own gaps are the measure of a lossy feed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from tradsys.marketdata.stats import read_stats
from tradsys.metrics.carry import CarriedCounters

if TYPE_CHECKING:
    from tradsys.cores.supervisor import Supervisor


def md_families(supervisor: Supervisor, carry: CarriedCounters) -> Iterator[Metric]:
    """The md sidecar's families, when it runs and has written its figures, its counters
    carried on from its predecessors' (``carry``)."""
    running = {
        sc.process.pid for sc in supervisor.sidecars if sc.name == "md" and sc.process is not None
    }
    doc = read_stats(supervisor.config.instance_dir)
    if doc is not None and doc.get("pid") in running:
        yield from carry.carry(int(doc["pid"]), families_of(doc))
    else:  # restarting: its counters as they stood (tradsys.metrics.carry)
        yield from carry.held()


def families_of(doc: dict[str, Any]) -> Iterator[Metric]:
    """Metric families of one stats document (see tradsys.marketdata.stats)."""
    records = CounterMetricFamily(
        "tradsys_md_published_records",
        "Market-data records the md sidecar published, by channel.",
        labels=["channel"],
    )
    for channel, n in sorted(doc.get("records", {}).items()):
        records.add_metric([channel], n)
    yield records
    messages = CounterMetricFamily(
        "tradsys_md_published_messages",
        "ZeroMQ messages (topic + payload) the md sidecar published, by channel.",
        labels=["channel"],
    )
    for channel, n in sorted(doc.get("messages", {}).items()):
        messages.add_metric([channel], n)
    yield messages
    size = CounterMetricFamily(
        "tradsys_md_published_bytes", "Bytes of data messages (topics and payloads) published."
    )
    size.add_metric([], doc.get("bytes", 0))
    yield size
    beats = CounterMetricFamily("tradsys_md_heartbeats", "Heartbeats the md sidecar sent.")
    beats.add_metric([], doc.get("heartbeats", 0))
    yield beats
    board = CounterMetricFamily(
        "tradsys_md_board_messages", "Messages sent on the conflated BBO socket."
    )
    board.add_metric([], doc.get("board_messages", 0))
    yield board
    unknown = CounterMetricFamily(
        "tradsys_md_unknown_symbol_records",
        "md records dropped because their symbol id is not in the sidecar's config.",
    )
    unknown.add_metric([], doc.get("unknown_symbol_records", 0))
    yield unknown
    snapshots = CounterMetricFamily(
        "tradsys_md_snapshot_requests",
        "Requests the md sidecar's snapshot socket answered: a book (served), a trade "
        "replay (replayed), or the error reason.",
        labels=["outcome"],
    )
    snapshots.add_metric(["served"], doc.get("snapshots_served", 0))
    snapshots.add_metric(["replayed"], doc.get("replays_served", 0))
    for reason, n in sorted(doc.get("snapshot_errors", {}).items()):
        snapshots.add_metric([reason], n)
    yield snapshots
    replayed = CounterMetricFamily(
        "tradsys_md_replayed_prints", "Trade prints the md sidecar sent again on request."
    )
    replayed.add_metric([], doc.get("replayed_prints", 0))
    yield replayed
    drained = CounterMetricFamily(
        "tradsys_md_drained_records",
        "Records the md sidecar took from each shard's md ring (compare with "
        "tradsys_shard_md_records_total: the difference is its backlog).",
        labels=["shard"],
    )
    for shard, n in sorted(doc.get("drained", {}).items(), key=lambda kv: int(kv[0])):
        drained.add_metric([shard], n)
    yield drained
    lag = doc.get("publish_lag")
    if lag:
        family = HistogramMetricFamily(
            "tradsys_md_publish_lag_seconds",
            "From a record's engine timestamp to its message going to ZeroMQ.",
        )
        cumulative, buckets = 0, []
        for bound, n in zip(lag["bounds_s"], lag["counts"], strict=False):
            cumulative += n
            buckets.append((_le(bound), cumulative))
        cumulative += lag["counts"][-1]
        buckets.append(("+Inf", cumulative))
        family.add_metric([], buckets, sum_value=lag["sum_s"])
        yield family


def _le(bound: float) -> str:
    return repr(float(bound))
