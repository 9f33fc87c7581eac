"""Stage latencies recorded by a real shard worker under the Supervisor: the histograms
move by what went through, their percentiles are sane, /metrics exports them as a
Prometheus histogram (checked with prometheus_client's parser), and no segment outlives
the instance."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.metrics.test_metrics import families
from tradsys import wire
from tradsys.config import parse_config
from tradsys.cores.supervisor import Supervisor
from tradsys.matching.commands import batch, new_order
from tradsys.metrics.latency_export import summary_us
from tradsys.metrics.latency_segment import LatencySegment, shard_segment_name
from tradsys.ring import Ring, WaitStrategy, instance_segments, segment_name

pytestmark = pytest.mark.multiprocess

LAYOUT = {"slot_size": wire.RECORD_SIZE, "layout_version": wire.LAYOUT_VERSION}


@pytest.fixture
def durability() -> str:
    """Events leave as soon as they are matched: the stages measured are the engine's."""
    return "none"


def push_and_drain(instance: str, orders: np.ndarray, n_events: int) -> None:
    """Send orders to shard 0's commands ring and wait for n_events events back."""
    cmd = Ring.attach(segment_name(instance, "cmd", 0), role="producer", **LAYOUT)
    evt = Ring.attach(segment_name(instance, "evt", 0), role="consumer", **LAYOUT)
    try:
        assert cmd.push_all(orders, timeout=10.0) == len(orders)
        got = 0
        out = np.zeros(n_events, wire.EVENT_DTYPE)
        deadline = time.monotonic() + 30
        while got < n_events and time.monotonic() < deadline:
            got += evt.pop_wait(out[got:], WaitStrategy.spin_park(), timeout=1.0)
        assert got == n_events
    finally:
        cmd.close()
        evt.close()


def stage_samples(sup: Supervisor) -> dict[str, dict[str, float]]:
    """tradsys_stage_latency_seconds samples by stage: {"count", "sum", "le=<b>"...}."""
    out: dict[str, dict[str, float]] = {}
    for family in families(sup):
        if family.name != "tradsys_stage_latency_seconds":
            continue
        assert family.type == "histogram"
        for s in family.samples:
            key = f"{s.labels['stage']}/{s.labels['shard']}"
            series = out.setdefault(key, {})
            if s.name.endswith("_bucket"):
                series[f"le={s.labels['le']}"] = s.value
            elif s.name.endswith("_count"):
                series["count"] = s.value
            elif s.name.endswith("_sum"):
                series["sum"] = s.value
    return out


def test_worker_stages_move_when_orders_flow(supervisor: Supervisor, instance: str) -> None:
    before = stage_samples(supervisor)
    for stage in ("gateway_to_shard", "shard_to_matched", "matched_to_event"):
        assert before[f"{stage}/0"]["count"] == 0.0
    # 200 resting orders (one ACCEPTED each), then one that sweeps 5 of them
    orders = batch(
        *[
            new_order(i, 1, account_id=7, side=wire.Side.BUY, quantity=1, price=95)
            for i in range(1, 201)
        ],
        new_order(201, 1, account_id=8, side=wire.Side.SELL, quantity=5, price=95),
    )
    n_events = 200 + 1 + 10  # accepted each, the taker's ack, 5 trades x 2 sides
    push_and_drain(instance, orders, n_events)
    after = stage_samples(supervisor)
    matched = after["shard_to_matched/0"]
    assert matched["count"] == len(orders)  # once per command
    assert after["matched_to_event/0"]["count"] == n_events  # once per event
    assert after["gateway_to_shard/0"]["count"] == 0.0  # no gateway in this instance
    for key in ("shard_to_matched/0", "matched_to_event/0"):
        series = after[key]
        assert series["le=+Inf"] == series["count"]
        bounds = sorted((float(k[3:]), v) for k, v in series.items() if k.startswith("le="))
        values = [v for _, v in bounds]
        assert values == sorted(values)  # cumulative
        assert 0 < series["sum"] < series["count"] * 1.0  # each well under a second
    # percentiles from the HdrHistogram code: positive, ordered, under a second
    with LatencySegment.attach(shard_segment_name(instance, 0)) as seg:
        for stage in ("shard_to_matched", "matched_to_event"):
            s = summary_us(seg.histograms()[stage])
            assert 0 < s["p50_us"] <= s["p99_us"] <= s["p99_9_us"] <= s["max_us"] * 1.01
            assert s["max_us"] < 1e6


def test_segments_live_with_the_instance_and_go_with_it(instance: str, tmp_path: Path) -> None:
    text = f"""
[engine]
instance = "{instance}"
data_dir = "{tmp_path}"
[gateway]
enabled = false
[md]
enabled = false
[[shard]]
id = 0
symbols = ["ACME"]
[[shard]]
id = 1
symbols = ["BOLT"]
[[instrument]]
symbol = "ACME"
symbol_id = 1
[[instrument]]
symbol = "BOLT"
symbol_id = 2
"""
    with Supervisor(parse_config(text, "test"), log=lambda line: None) as sup:
        names = set(instance_segments(instance))
        assert {shard_segment_name(instance, 0), shard_segment_name(instance, 1)} <= names
        assert all(sp.latency is not None for sp in sup.shards)
    assert instance_segments(instance) == []


def test_gateway_stages_move_when_orders_flow_through_it(instance: str, tmp_path: Path) -> None:
    import msgspec

    from tests.client.edge_rig import KEYS
    from tests.cores.test_gateway_e2e import e2e_config
    from tradsys.client.events import Ack
    from tradsys.client.orders import OrderClient
    from tradsys.cores.sidecar import read_announcement
    from tradsys.metrics.latency_segment import gateway_segment_name

    base = e2e_config(instance, tmp_path)
    config = msgspec.structs.replace(
        base, metrics=msgspec.structs.replace(base.metrics, listen="127.0.0.1:0")
    )
    n = 50
    with Supervisor(config, log=lambda line: None) as sup:
        ann = read_announcement(config, "gateway")
        assert ann is not None
        with OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice:
            for i in range(1, n + 1):  # one at a time: each crosses the whole path alone
                assert isinstance(alice.wait_for(alice.submit(1, "buy", 1, 90, order_id=i)), Ack)
        # alice's orders are cancelled as her session ends (cancel-on-disconnect), after
        # her client has returned: until the worker has matched those cancels too
        deadline = time.monotonic() + 30
        while (samples := stage_samples(sup))["shard_to_matched/0"]["count"] < 2 * n:
            assert time.monotonic() < deadline, samples["shard_to_matched/0"]
        acks = samples["order_to_ack/all"]
        assert acks["count"] == n  # every order's first event, once
        assert acks["le=+Inf"] == n and 0 < acks["sum"] < n
        # the hand-off is sampled once per worker batch that ends at a gateway push: with
        # one order in flight at a time, every order's batch does
        slack = len(config.accounts) * len(config.shards)  # start-up mass cancels
        handoff = samples["gateway_to_shard/0"]
        assert n <= handoff["count"] <= n + 1 + slack  # + the cancels' batch below
        # each order, then its cancel when alice left (cancel-on-disconnect); the clock
        # tick the gateway sent before each order is no order's, and is not counted
        assert 2 * n <= samples["shard_to_matched/0"]["count"] <= 2 * n + slack
        with LatencySegment.attach(gateway_segment_name(instance)) as seg:
            ack = summary_us(seg.histograms()["order_to_ack"])
        with LatencySegment.attach(shard_segment_name(instance, 0)) as seg:
            parts = {k: summary_us(v) for k, v in seg.histograms().items()}
        # each order's round trip inside the gateway holds its shard stages: the sum of
        # the stages' medians cannot exceed the whole's maximum
        assert 0 < ack["p50_us"] <= ack["max_us"] < 1e6
        inside = sum(parts[s]["p50_us"] for s in parts)
        assert 0 < inside <= ack["max_us"] * 1.01


def test_a_stopped_worker_shows_in_the_hand_off_stage(instance: str, tmp_path: Path) -> None:
    """An order that waits in the commands ring while its worker is stopped is timed from
    its own push: the idle clock ticks the gateway pushes behind it (every 100 ms) do not
    replace its stamp. Before, each did, and a worker stopped for a second read as 100 ms."""
    import os
    import signal

    from tests.client.edge_rig import KEYS
    from tests.cores.test_gateway_e2e import e2e_config
    from tradsys.client.events import Ack
    from tradsys.client.orders import OrderClient
    from tradsys.cores.sidecar import read_announcement

    config = e2e_config(instance, tmp_path)
    with Supervisor(config, log=lambda line: None) as sup:
        ann = read_announcement(config, "gateway")
        assert ann is not None
        cmd = Ring.attach(segment_name(instance, "cmd", 0), **LAYOUT)  # to watch its head
        try:
            with OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as c:
                assert isinstance(c.wait_for(c.submit(1, "buy", 1, 90)), Ack)
                worker = sup.shards[0].control.pid
                os.kill(worker, signal.SIGSTOP)
                try:
                    before = cmd.info().head
                    oid = c.submit(1, "buy", 1, 90)
                    deadline = time.monotonic() + 10
                    while cmd.info().head == before:  # the order's push
                        assert time.monotonic() < deadline, "the gateway never pushed it"
                    pushed_by = time.monotonic()
                    pushes = cmd.info().head
                    while cmd.info().head < pushes + 2:  # two idle ticks behind it
                        assert time.monotonic() < deadline, "no idle clock ticks came"
                finally:
                    resumed = time.monotonic()
                    os.kill(worker, signal.SIGCONT)
                assert isinstance(c.wait_for(oid), Ack)
        finally:
            cmd.close()
        with LatencySegment.attach(shard_segment_name(instance, 0)) as seg:
            handoff = summary_us(seg.histograms()["gateway_to_shard"])
        # stamped before the push, taken after the resume: at least the time between
        assert handoff["max_us"] >= (resumed - pushed_by) * 1e6 >= 150_000


def test_figures_survive_a_killed_worker(supervisor: Supervisor, instance: str) -> None:
    import os
    import signal

    from tradsys.cores.control import WorkerState

    first = batch(
        *[
            new_order(i, 1, account_id=7, side=wire.Side.BUY, quantity=1, price=95)
            for i in range(1, 11)
        ]
    )
    push_and_drain(instance, first, 10)
    sp = supervisor.shards[0]
    with LatencySegment.attach(shard_segment_name(instance, 0)) as seg:
        before = seg.histograms()["shard_to_matched"].count
        assert before == 10
        os.kill(sp.control.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60

        def restarted() -> bool:
            assert time.monotonic() < deadline, "the worker was not restarted in time"
            return sp.control.incarnations >= 2 and sp.control.state == WorkerState.RUNNING

        supervisor.watch(until=restarted, tick_s=0.05)
        assert seg.histograms()["shard_to_matched"].count >= before  # kept across the crash
        second = batch(
            *[
                new_order(i, 1, account_id=7, side=wire.Side.BUY, quantity=1, price=95)
                for i in range(11, 16)
            ]
        )
        push_and_drain(instance, second, 5)
        # the new incarnation records into the same histograms (the journal replay at its
        # start-up is not intake, so it adds nothing)
        assert seg.histograms()["shard_to_matched"].count == before + 5


def test_cancels_and_replaces_have_a_stage_of_their_own(instance: str, tmp_path: Path) -> None:
    """A market maker's round trip is mostly cancels; they had no stage (the latency
    audit's F12). Each cancel and replace a client sends is timed to its answer, once;
    the gateway's own cancel-on-disconnect cancels are not (no client waits for them)."""
    import msgspec

    from tests.client.edge_rig import KEYS
    from tests.cores.test_gateway_e2e import e2e_config
    from tradsys.client.events import Ack, Cancelled, Replaced
    from tradsys.client.orders import OrderClient
    from tradsys.cores.sidecar import read_announcement

    base = e2e_config(instance, tmp_path)
    config = msgspec.structs.replace(
        base, metrics=msgspec.structs.replace(base.metrics, listen="127.0.0.1:0")
    )
    with Supervisor(config, log=lambda line: None) as sup:
        ann = read_announcement(config, "gateway")
        assert ann is not None
        with OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice:
            for i in range(1, 21):
                assert isinstance(alice.wait_for(alice.submit(1, "buy", 1, 90, order_id=i)), Ack)
            for i in range(1, 9):
                alice.cancel(i)
                assert isinstance(alice.wait_for(i, (Cancelled,)), Cancelled)
            for i in range(9, 13):
                alice.replace(i, price=89, quantity=2)
                assert isinstance(alice.wait_for(i, (Replaced,)), Replaced)
            samples = stage_samples(sup)
            assert samples["amend_to_answer/all"]["count"] == 12
            assert 0 < samples["amend_to_answer/all"]["sum"] < 12
        # her 12 orders still live are cancelled as the session ends: by the gateway
        deadline = time.monotonic() + 30
        while (samples := stage_samples(sup))["shard_to_matched/0"]["count"] < 20 + 8 + 4 + 12:
            assert time.monotonic() < deadline, samples["shard_to_matched/0"]
        assert samples["amend_to_answer/all"]["count"] == 12
        assert samples["order_to_ack/all"]["count"] == 20
