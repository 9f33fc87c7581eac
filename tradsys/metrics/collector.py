"""The supervisor's view of the instance, turned into Prometheus metric families.

Shard workers already publish their counters in their control blocks (written once per
batch, for `tradsys status`), and each ring's header holds its indices. Reading those at
scrape time costs the engine nothing: no counter is incremented for Prometheus on any
hot path. A worker's counters live in its control block and outlive its restarts; the
gateway's and md's, counted in their own memory, are carried on from the previous
process's by the collector (``tradsys.metrics.carry``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tradsys.cores.control import WorkerState
from tradsys.gctune import PAUSE_BOUNDS_S
from tradsys.metrics.carry import CarriedCounters
from tradsys.metrics.md_series import md_families
from tradsys.metrics.stage_metrics import stage_latency_families
from tradsys.wire import RejectReason

if TYPE_CHECKING:
    from tradsys.cores.supervisor import Supervisor

# (metric suffix, control-block field, help): a worker's counters, kept across its
# incarnations in the control block (they never go back while the instance runs).
WORKER_COUNTERS = [
    ("commands", "commands", "Commands the shard worker took from its command ring."),
    ("batches", "batches", "Batches the shard worker processed."),
    ("events", "events_out", "Execution events the shard worker pushed."),
    ("md_records", "md_out", "Market-data records the shard worker pushed."),
    ("out_waits", "out_waits", "Times the worker waited for room in an output ring."),
    ("idle_waits", "idle_waits", "Times the worker waited for commands."),
    ("accepted_orders", "accepted_out", "Orders the engine accepted."),
    ("trades", "trades_out", "Trades the engine printed (each fill once)."),
    ("cancelled_orders", "cancelled_out", "Orders the engine cancelled (any reason)."),
    ("replaced_orders", "replaced_out", "Orders the engine replaced."),
    ("triggered_orders", "triggered_out", "Stop orders the engine triggered."),
]
# (metric, control block field, help): counters read straight from the control block
SNAPSHOT_COUNTERS = [
    ("snapshots", "snapshots_taken", "Snapshots the shard's workers published since the start."),
    (
        "failed_snapshots",
        "snapshots_failed",
        "Snapshot children (snapshot_writer = fork) that died unfinished; no file was written.",
    ),
]
# (metric, control block field in ns, help): the last or longest, in seconds
SNAPSHOT_GAUGES = [
    ("snapshot_fork_seconds", "snapshot_fork_ns", "The last fork() a snapshot took."),
    (
        "snapshot_child_seconds",
        "snapshot_child_ns",
        "The last snapshot child's serialization of the engine.",
    ),
    (
        "snapshot_collapse_seconds",
        "snapshot_collapse_ns",
        "Putting the engine's blocks back on huge pages after the last snapshot child.",
    ),
    (
        "batch_max_seconds",
        "batch_max_ns",
        "Longest batch (match and push) of this worker incarnation.",
    ),
    (
        "fork_batch_max_seconds",
        "fork_batch_max_ns",
        "Longest batch while a snapshot child ran (copy-on-write faults included).",
    ),
    (
        "batch_gap_max_seconds",
        "batch_gap_max_ns",
        "Longest time from the end of one batch to the start of the next while commands "
        "waited (a snapshot's stall).",
    ),
]


class InstanceCollector(Collector):
    """Collects one running :class:`~tradsys.cores.supervisor.Supervisor`'s instance."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        # the sidecars' counters, kept monotonic across their restarts
        self.gateway_carry = CarriedCounters()
        self.md_carry = CarriedCounters()

    def collect(self) -> Iterator[Metric]:
        yield from self._shards()
        yield from self._rings()
        yield from self._sidecars()
        yield from self._gateway()
        yield from md_families(self.supervisor, self.md_carry)
        yield from stage_latency_families(self.supervisor)

    def _shards(self) -> Iterator[Metric]:
        labels = ["shard"]
        counters = {
            suffix: CounterMetricFamily(f"tradsys_shard_{suffix}", text, labels=labels)
            for suffix, _, text in WORKER_COUNTERS
        }
        busy = CounterMetricFamily(
            "tradsys_shard_busy_seconds", "Time the worker spent not waiting.", labels=labels
        )
        restarts = CounterMetricFamily(
            "tradsys_shard_restarts", "Times the supervisor restarted the worker.", labels=labels
        )
        up = GaugeMetricFamily(
            "tradsys_shard_up", "1 when the shard worker is running.", labels=labels
        )
        heartbeat = GaugeMetricFamily(
            "tradsys_shard_heartbeat_age_seconds",
            "Seconds since the worker's last heartbeat.",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            "tradsys_shard_journal_lag_commands",
            "Commands journaled but not yet covered by an fdatasync.",
            labels=labels,
        )
        replayed = GaugeMetricFamily(
            "tradsys_shard_replayed_commands",
            "Journal commands the running worker replayed when it started (a gauge: each "
            "start sets it).",
            labels=labels,
        )
        seq = GaugeMetricFamily(
            "tradsys_shard_journaled_commands",
            "Journal sequence number last written (commands journaled).",
            labels=labels,
        )
        rejects = CounterMetricFamily(
            "tradsys_shard_rejects",
            "Commands the engine rejected, by reason.",
            labels=["shard", "reason"],
        )
        snapshot_counters = {
            name: CounterMetricFamily(f"tradsys_shard_{name}", text, labels=labels)
            for name, _, text in SNAPSHOT_COUNTERS
        }
        snapshot_gauges = {
            name: GaugeMetricFamily(f"tradsys_shard_{name}", text, labels=labels)
            for name, _, text in SNAPSHOT_GAUGES
        }
        cow = GaugeMetricFamily(
            "tradsys_shard_snapshot_cow_faults",
            "Copy-on-write faults the worker took while the last snapshot child ran.",
            labels=labels,
        )
        now_ns = time.monotonic_ns()
        syncs = self.supervisor.config.journal.durability != "none"
        for sp in self.supervisor.shards:
            shard = [str(sp.spec.shard_id)]
            ctl = sp.control
            for name, field, _ in SNAPSHOT_COUNTERS:
                snapshot_counters[name].add_metric(shard, getattr(ctl, field))
            for name, field, _ in SNAPSHOT_GAUGES:
                snapshot_gauges[name].add_metric(shard, max(0, getattr(ctl, field)) / 1e9)
            cow.add_metric(shard, ctl.snapshot_cow_faults)
            snap = sp.control.snapshot()
            for suffix, field, _ in WORKER_COUNTERS:
                counters[suffix].add_metric(shard, getattr(snap, field))
            busy.add_metric(shard, snap.busy_ns / 1e9)
            restarts.add_metric(shard, sp.restarts)
            up.add_metric(
                shard, float(snap.state == WorkerState.RUNNING and sp.process is not None)
            )
            if snap.heartbeat_ns:  # none while a worker (re)starts: _up says 0 then
                heartbeat.add_metric(shard, (now_ns - snap.heartbeat_ns) / 1e9)
            if syncs:  # with durability none nothing is ever synced: no lag to speak of
                lag.add_metric(shard, max(0, snap.journaled_seq - snap.synced_seq))
            replayed.add_metric(shard, snap.replayed)
            seq.add_metric(shard, snap.journaled_seq)
            for reason in RejectReason:
                if reason is not RejectReason.NONE and reason < len(snap.rejects_by_reason):
                    count = snap.rejects_by_reason[reason]
                    rejects.add_metric([*shard, reason.name.lower()], count)
        yield from counters.values()
        yield from (busy, restarts, up, heartbeat, lag, replayed, seq, rejects)
        yield from snapshot_counters.values()
        yield from snapshot_gauges.values()
        yield cow

    def _rings(self) -> Iterator[Metric]:
        fill = GaugeMetricFamily(
            "tradsys_ring_fill_records", "Records waiting in the ring.", labels=["ring"]
        )
        capacity = GaugeMetricFamily(
            "tradsys_ring_capacity_records", "Slots in the ring.", labels=["ring"]
        )
        for ring in self.supervisor.rings:
            info = ring.info()
            fill.add_metric([ring.name], info.fill)
            capacity.add_metric([ring.name], info.capacity)
        yield fill
        yield capacity

    def _gateway(self) -> Iterator[Metric]:
        from tradsys.cores.gateway import read_stats

        running = {
            sc.process.pid for sc in self.supervisor.sidecars if sc.name == "gateway" and sc.process
        }
        doc = read_stats(self.supervisor.config)
        if doc is not None and doc.get("pid") in running:  # not a dead gateway's figures
            yield from self.gateway_carry.carry(int(doc["pid"]), _gateway_families(doc))
        else:  # restarting: its counters as they stood, not gone from the scrape
            yield from self.gateway_carry.held()

    def _sidecars(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "tradsys_sidecar_up", "1 when the sidecar serves.", labels=["sidecar"]
        )
        restarts = CounterMetricFamily(
            "tradsys_sidecar_restarts", "Times the supervisor restarted it.", labels=["sidecar"]
        )
        for sc in self.supervisor.sidecars:
            up.add_metric([sc.name], float(sc.announcement() is not None))
            restarts.add_metric([sc.name], sc.restarts)
        yield up
        yield restarts


# (metric suffix, gateway core stat, help): counters of the native pump.
GATEWAY_COUNTERS = [
    ("commands_in", "commands_in", "Commands the gateway took from its sessions."),
    (
        "clock_ticks",
        "clock_ticks",
        "CLOCK_TICK commands the gateway sent to keep the engine clock.",
    ),
    ("events_routed", "events_routed", "Execution events routed back to their session."),
    ("events_dropped", "events_unknown", "Events for orders no session owns."),
    ("events_held", "events_held", "Events kept for the next session of an order's account."),
    ("orders_adopted", "orders_adopted", "Orders taken over by another session of the account."),
    ("orders_restored", "orders_restored", "Orders rebuilt from the workers' images at start."),
    (
        "events_held_restored",
        "events_held_restored",
        "Held events a restarted gateway read back from its held-events log.",
    ),
    (
        "events_held_volatile",
        "events_held_volatile",
        "Events held in memory only (no mark slot left in the held-events log).",
    ),
    (
        "recovery_duplicates",
        "recovery_duplicates",
        "Events drained at start that the held-events log already had (not kept twice).",
    ),
    (
        "pump_handoff_yields",
        "handoff_yields",
        "Times the busy pump yielded its CPU after [gateway] yield_every_us.",
    ),
    (
        "events_unread_held",
        "events_unread_held",
        "Events an ended session's client never read, kept for the account's next session.",
    ),
    (
        "events_unread_dropped",
        "events_unread_dropped",
        "Unread events of an ended session dropped at the account's held-events cap.",
    ),
    (
        "events_unpinned",
        "events_unpinned",
        "Events released from a shard's ring while a full session's stage still held an "
        "earlier one (a crash of the gateway would lose that stage).",
    ),
    (
        "commands_at_close",
        "commands_at_close",
        "Commands a client sent that the gateway took as their session ended.",
    ),
    (
        "disconnect_cancel_answers",
        "disconnect_cancel_answers",
        "Rejects of the gateway's own disconnect cancels (the order had ended): no client's.",
    ),
    ("status_requests", "status_requests", "ORDER_STATUS requests the gateway answered."),
    ("status_orders", "status_orders", "Orders listed in the ORDER_STATUS answers."),
]
GATEWAY_EDGE_COUNTERS = [
    ("logins_refused", "Logins refused (bad key, bad uid, wrong account, timeout)."),
    ("protocol_errors", "TCP sessions ended for a protocol error."),
    ("heartbeat_timeouts", "TCP sessions ended for silence."),
    ("sessions_opened", "Sessions opened."),
    (
        "tcp_unsent_held",
        "Events not yet written to a broken TCP connection, kept for the next session.",
    ),
    ("tcp_acks", "ACKs TCP clients sent (events they processed)."),
    ("tcp_bad_acks", "TCP sessions ended for an ACK beyond what was sent, or going back."),
    (
        "slow_consumers",
        "Sessions ended for holding their shards' events back ([gateway] stalled_session_ms).",
    ),
    ("admin_requests", "Requests to the admin socket (tradsys admin)."),
    ("admin_refused", "Admin requests refused (each reply names the reason)."),
]


def _gateway_families(doc: dict[str, Any]) -> Iterator[Metric]:
    """The gateway's own figures, from the stats file it refreshes once a second."""
    core = doc.get("core", {})
    routed = CounterMetricFamily(
        "tradsys_gateway_commands_routed", "Commands the gateway passed on to the shards."
    )
    routed.add_metric([], core.get("commands_out", 0) - core.get("clock_ticks", 0))
    yield routed
    for suffix, key, text in GATEWAY_COUNTERS:
        family = CounterMetricFamily(f"tradsys_gateway_{suffix}", text)
        family.add_metric([], core.get(key, 0))
        yield family
    rejects = CounterMetricFamily(
        "tradsys_gateway_rejects", "Orders the gateway rejected, by reason.", labels=["reason"]
    )
    for key, value in sorted(core.items()):
        if key.startswith("rejects."):
            rejects.add_metric([key.removeprefix("rejects.").lower()], value)
    yield rejects
    for key, text in GATEWAY_EDGE_COUNTERS:
        family = CounterMetricFamily(f"tradsys_gateway_{key}", text)
        family.add_metric([], doc.get(key, 0))
        yield family
    sessions = GaugeMetricFamily(
        "tradsys_gateway_sessions", "Open sessions, by transport.", labels=["transport"]
    )
    sessions.add_metric(["tcp"], doc.get("tcp_connections", 0))
    sessions.add_metric(["colocated"], doc.get("colocated_connections", 0))
    yield sessions
    paused = GaugeMetricFamily(
        "tradsys_gateway_tcp_sessions_paused",
        "TCP sessions the gateway stopped sending to: tcp_unacked_max events await an ACK.",
    )
    paused.add_metric([], doc.get("tcp_writes_paused", 0))
    yield paused
    live = GaugeMetricFamily("tradsys_gateway_live_orders", "Orders the gateway tracks.")
    live.add_metric([], core.get("live_orders", 0))
    yield live
    gc_doc = doc.get("gc", {})
    collections = CounterMetricFamily(
        "tradsys_gateway_gc_collections",
        "Garbage collections in the gateway, by generation (2 = full).",
        labels=["generation"],
    )
    for gen in ("0", "1", "2"):
        collections.add_metric([gen], gc_doc.get(f"gen{gen}", 0))
    yield collections
    counts = gc_doc.get("pause_buckets") or [0] * (len(PAUSE_BOUNDS_S) + 1)
    cumulative = list(itertools.accumulate(counts))
    bounds = [*(repr(b) for b in PAUSE_BOUNDS_S), "+Inf"]
    pause = HistogramMetricFamily(
        "tradsys_gateway_gc_pause_seconds",
        "Gateway garbage-collection pauses since its warm-up (timed with gc.callbacks).",
        buckets=list(zip(bounds, map(float, cumulative), strict=True)),
        sum_value=gc_doc.get("pause_sum_s", 0.0),
    )
    yield pause
