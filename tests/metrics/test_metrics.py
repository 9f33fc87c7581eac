"""`/metrics` while orders flow: it parses with prometheus_client's own parser, names
follow the conventions, and the counters move by exactly what went through."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tradsys import wire
from tradsys.cores.supervisor import Supervisor
from tradsys.matching import CEngine
from tradsys.matching.commands import batch, new_order
from tradsys.ring import Ring, WaitStrategy, segment_name

pytestmark = pytest.mark.multiprocess

LAYOUT = {"slot_size": wire.RECORD_SIZE, "layout_version": wire.LAYOUT_VERSION}


def families(sup: Supervisor) -> list[Metric]:
    """The metric families of one scrape, parsed by prometheus_client's own parser."""
    assert sup.metrics is not None
    with urllib.request.urlopen(f"http://{sup.metrics.address}/metrics", timeout=10) as reply:
        return list(text_string_to_metric_families(reply.read().decode()))


def scrape(sup: Supervisor) -> dict[str, float]:
    """Every sample as "name{label=value,...}" → value."""
    samples = {}
    for family in families(sup):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def test_counters_move_when_orders_flow(supervisor: Supervisor, instance: str) -> None:
    before = scrape(supervisor)
    assert before["tradsys_shard_up{shard=0}"] == 1.0
    assert before["tradsys_shard_commands_total{shard=0}"] == 0.0

    bids = [
        new_order(i, 1, account_id=7, side=wire.Side.BUY, quantity=1, price=90 + i % 5)
        for i in range(1, 101)
    ]
    sweep = new_order(101, 1, account_id=8, side=wire.Side.SELL, quantity=3, price=90)
    bad = [new_order(102, 1, account_id=8, side=wire.Side.SELL, quantity=0, price=90)]
    bad.append(new_order(103, 99, account_id=8, side=wire.Side.SELL, quantity=1, price=90))
    orders = batch(*bids, sweep, *bad)
    expected = CEngine()
    for ins in supervisor.config.instruments:
        expected.add_instrument(ins)
    want = expected.process(orders).events
    cmd = Ring.attach(segment_name(instance, "cmd", 0), role="producer", **LAYOUT)
    evt = Ring.attach(segment_name(instance, "evt", 0), role="consumer", **LAYOUT)
    try:
        assert cmd.push_all(orders, timeout=10.0) == len(orders)
        events = 0
        out = np.zeros(len(want), wire.EVENT_DTYPE)
        deadline = time.monotonic() + 30
        while events < len(want) and time.monotonic() < deadline:
            events += evt.pop_wait(out[events:], WaitStrategy.spin_park(), timeout=1.0)
        assert events == len(want)
        after = scrape(supervisor)
    finally:
        cmd.close()
        evt.close()
    n = float(len(orders))
    assert after["tradsys_shard_commands_total{shard=0}"] == n
    assert after["tradsys_shard_events_total{shard=0}"] == len(want)
    assert after["tradsys_shard_journaled_commands{shard=0}"] == n
    kinds = want["kind"]
    assert after["tradsys_shard_accepted_orders_total{shard=0}"] == 101.0
    assert after["tradsys_shard_trades_total{shard=0}"] == 3.0  # the sweep took 3 bids
    assert (kinds == wire.EventKind.TRADE).sum() == 6  # maker and taker: counted once
    assert after["tradsys_shard_rejects_total{reason=invalid_quantity,shard=0}"] == 1.0
    assert after["tradsys_shard_rejects_total{reason=unknown_symbol,shard=0}"] == 1.0
    assert after["tradsys_shard_rejects_total{reason=price_band,shard=0}"] == 0.0
    # the worker pushed its market data and nobody drained it: the md ring shows it
    md_ring = segment_name(instance, "md", 0)
    md_out = after["tradsys_shard_md_records_total{shard=0}"]
    assert md_out > 0
    assert after[f"tradsys_ring_fill_records{{ring={md_ring}}}"] == md_out
    assert after[f"tradsys_ring_capacity_records{{ring={md_ring}}}"] == 1024.0
    assert after["tradsys_shard_restarts_total{shard=0}"] == 0.0
    # snapshots: one asked for is counted; the batches that ran have a longest one
    assert after["tradsys_shard_batch_max_seconds{shard=0}"] > 0.0
    assert after["tradsys_shard_failed_snapshots_total{shard=0}"] == 0.0
    control = supervisor.shards[0].control
    taken = after["tradsys_shard_snapshots_total{shard=0}"]
    asked = control.request_snapshot()
    with Ring.attach(segment_name(instance, "cmd", 0), **LAYOUT) as ring:
        ring.wake()  # a parked worker looks at its control block
    deadline = time.monotonic() + 30
    while control.snapshots_served != asked:
        assert time.monotonic() < deadline, "the worker did not take the snapshot"
        time.sleep(0.01)
    assert scrape(supervisor)["tradsys_shard_snapshots_total{shard=0}"] == taken + 1


def test_metric_names_follow_prometheus_conventions(supervisor: Supervisor) -> None:
    found = families(supervisor)
    assert found
    for family in found:
        assert family.name.startswith("tradsys_") and family.name == family.name.lower()
        assert family.documentation, f"{family.name} has no HELP"
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name in (f"{family.name}_total", f"{family.name}_created")
        # a unit in the name, never a bare count of nothing in particular
        unit = family.name.rsplit("_", 1)[-1]
        assert unit in {
            "commands",
            "batches",
            "events",
            "records",
            "waits",
            "seconds",
            "restarts",
            "up",
            "orders",
            "trades",
            "rejects",
            "snapshots",
            "faults",
        }, family.name


def test_gateway_series_move_with_orders_rejects_and_sessions(
    instance: str, tmp_path: Path
) -> None:
    import msgspec

    from tests.client.edge_rig import KEYS
    from tests.cores.test_gateway_e2e import e2e_config
    from tradsys.client.events import Ack, OrderRejected
    from tradsys.client.orders import OrderClient
    from tradsys.cores.sidecar import read_announcement

    base = e2e_config(instance, tmp_path)
    accounts = [msgspec.structs.replace(a, max_order_qty=100) for a in base.accounts]
    config = msgspec.structs.replace(
        base,
        accounts=accounts,
        metrics=msgspec.structs.replace(base.metrics, listen="127.0.0.1:0"),
    )
    with Supervisor(config, log=lambda line: None) as sup:
        ann = read_announcement(config, "gateway")
        assert ann is not None
        with OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice:
            assert isinstance(alice.wait_for(alice.submit(1, "buy", 5, 99, order_id=1)), Ack)
            with pytest.raises(OrderRejected, match="MAX_ORDER_QTY"):
                alice.wait_for(alice.submit(1, "buy", 101, 99, order_id=2))
            assert [o.order_id for o in alice.order_status()] == [1]

            def caught_up() -> dict[str, float]:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:  # the gateway refreshes its stats file
                    samples = scrape(sup)
                    if samples.get("tradsys_gateway_commands_in_total{}") == 3.0:
                        return samples
                raise AssertionError("the gateway's figures never reached /metrics")

            samples = caught_up()
            # the accepted order alone: a fresh start's images name no account, so the
            # gateway sends no start-up mass cancel
            assert samples["tradsys_gateway_commands_routed_total{}"] == 1
            assert samples["tradsys_gateway_rejects_total{reason=max_order_qty}"] == 1.0
            assert samples["tradsys_gateway_status_requests_total{}"] == 1.0
            assert samples["tradsys_gateway_status_orders_total{}"] == 1.0
            assert samples["tradsys_gateway_sessions{transport=colocated}"] == 1.0
            assert samples["tradsys_gateway_gc_collections_total{generation=2}"] == 0.0
            # the pause histogram, empty (no collection while trading) but whole
            assert samples["tradsys_gateway_gc_pause_seconds_count{}"] == 0.0
            assert samples["tradsys_gateway_gc_pause_seconds_bucket{le=+Inf}"] == 0.0
            # at least the first pass's tick for each shard, counted apart from commands
            assert samples["tradsys_gateway_clock_ticks_total{}"] >= len(config.shards)
            assert samples["tradsys_gateway_orders_restored_total{}"] == 0.0  # a fresh start
            assert samples["tradsys_gateway_events_held_total{}"] == 0.0
            # a fresh start: nothing read back from the held-events log, nothing twice
            assert samples["tradsys_gateway_events_held_restored_total{}"] == 0.0
            assert samples["tradsys_gateway_recovery_duplicates_total{}"] == 0.0
            assert samples["tradsys_gateway_pump_handoff_yields_total{}"] >= 0.0
            # nobody left a session with events unread, and no TCP client acknowledged
            assert samples["tradsys_gateway_events_unread_held_total{}"] == 0.0
            assert samples["tradsys_gateway_events_unpinned_total{}"] == 0.0
            assert samples["tradsys_gateway_events_unread_dropped_total{}"] == 0.0
            assert samples["tradsys_gateway_tcp_unsent_held_total{}"] == 0.0
            assert samples["tradsys_gateway_tcp_acks_total{}"] == 0.0
            assert samples["tradsys_gateway_slow_consumers_total{}"] == 0.0
            assert samples["tradsys_gateway_admin_requests_total{}"] == 0.0
            assert samples["tradsys_gateway_tcp_sessions_paused{}"] == 0.0
            assert_dashboard_charts_only(sup)


def assert_dashboard_charts_only(supervisor: Supervisor) -> None:
    """Every metric the Grafana dashboard charts is one /metrics exports."""
    import json
    import re

    dashboard = Path(__file__).parents[2] / "docs" / "grafana" / "tradsys-dashboard.json"
    doc = json.loads(dashboard.read_text())
    exprs = [t["expr"] for panel in doc["panels"] for t in panel["targets"]]
    charted = {m for e in exprs for m in re.findall(r"tradsys_[a-z_]+", e)}
    # the md sidecar's panels: tests/metrics/test_md_series.py checks them with it running
    charted = {m for m in charted if not m.startswith("tradsys_md_")}
    found = families(supervisor)
    exported = {f.name for f in found} | {f"{f.name}_total" for f in found}
    exported |= {
        f"{f.name}{suffix}"
        for f in found
        if f.type == "histogram"
        for suffix in ("_bucket", "_sum", "_count")
    }
    assert charted and charted <= exported, charted - exported
