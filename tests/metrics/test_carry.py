"""A restarted sidecar's counters carry on from its predecessor's (audit W: after a
kill -9 of the gateway its commands_in went 2000 → 0 on a scrape endpoint that never
restarted)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from tradsys.metrics.carry import CarriedCounters


def _families(commands: float, live: float, buckets: float) -> list[Metric]:
    counter = CounterMetricFamily("c", "", labels=["k"])
    counter.add_metric(["a"], commands)
    gauge = GaugeMetricFamily("g", "")
    gauge.add_metric([], live)
    hist = HistogramMetricFamily("h", "")
    hist.add_metric([], [("1", buckets), ("+Inf", buckets)], sum_value=buckets)
    return [counter, gauge, hist]


def _values(families: list[Metric]) -> dict[str, float]:
    return {f"{s.name}{s.labels}": s.value for f in families for s in f.samples}


def test_counters_and_histograms_carry_on_gauges_do_not() -> None:
    carry = CarriedCounters()
    assert _values(list(carry.carry(10, _families(5, 3, 2))))["c_total{'k': 'a'}"] == 5
    first = _values(list(carry.carry(10, _families(7, 4, 3))))
    assert first["c_total{'k': 'a'}"] == 7  # the same process: as it says
    # pid 11 replaced it and counts from zero: the last values of pid 10 are added
    after = _values(list(carry.carry(11, _families(1, 9, 1))))
    assert after["c_total{'k': 'a'}"] == 8
    assert after["h_bucket{'le': '+Inf'}"] == 4 and after["h_count{}"] == 4
    assert after["h_sum{}"] == 4
    assert after["g{}"] == 9  # a gauge is what the current process says
    # and again: both predecessors' last values
    third = _values(list(carry.carry(12, _families(2, 0, 0))))
    assert third["c_total{'k': 'a'}"] == 7 + 1 + 2


def test_a_reused_pid_is_a_new_process_when_a_counter_went_back() -> None:
    """Review: carry(100, 500) then carry(100, 3) read 3, the 500 lost."""
    carry = CarriedCounters()
    list(carry.carry(100, _families(500, 0, 0)))
    after = _values(list(carry.carry(100, _families(3, 0, 0))))
    assert after["c_total{'k': 'a'}"] == 503


def test_scrapes_at_once_do_not_count_a_dead_process_twice() -> None:
    """Review: two scrape threads seeing the new pid both added the old totals."""
    import sys
    import threading

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(200):
            carry = CarriedCounters()
            list(carry.carry(1, _families(100, 0, 0)))
            seen: list[float] = []

            def scrape(carry: CarriedCounters = carry, seen: list[float] = seen) -> None:
                seen.append(_values(list(carry.carry(2, _families(0, 0, 0))))["c_total{'k': 'a'}"])

            threads = [threading.Thread(target=scrape) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert seen == [100, 100]
    finally:
        sys.setswitchinterval(old)


def test_a_killed_gateways_counters_do_not_go_back(instance: str, tmp_path: Path) -> None:
    import msgspec

    from tests.client.edge_rig import KEYS
    from tests.cores.test_gateway_e2e import e2e_config
    from tests.metrics.test_metrics import scrape
    from tradsys.client.events import Ack
    from tradsys.client.orders import OrderClient
    from tradsys.cores.sidecar import read_announcement
    from tradsys.cores.supervisor import Supervisor

    base = e2e_config(instance, tmp_path)
    config = msgspec.structs.replace(
        base, metrics=msgspec.structs.replace(base.metrics, listen="127.0.0.1:0")
    )
    key = "tradsys_gateway_commands_in_total{}"

    def scraped_when(ok: Callable[[float], bool]) -> dict[str, float]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the gateway rewrites its stats file each second
            samples = scrape(sup)
            if key in samples and ok(samples[key]):
                return samples
            sup.watch(until=lambda: True, tick_s=0.05)  # restarts the gateway when it died
        raise AssertionError("the gateway's figures never reached /metrics")

    with Supervisor(config, log=lambda line: None) as sup:
        ann = read_announcement(config, "gateway")
        assert ann is not None
        with OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice:
            for i in range(1, 4):
                assert isinstance(alice.wait_for(alice.submit(1, "buy", 5, 90, order_id=i)), Ack)
        before = scraped_when(lambda v: v >= 3)[key]
        os.kill(int(ann["pid"]), signal.SIGKILL)
        gateway = next(sc for sc in sup.sidecars if sc.name == "gateway")
        sup.watch(until=lambda: gateway.restarts == 1 and gateway.announcement() is not None)
        after = scraped_when(lambda v: True)[key]
        assert after >= before


def test_between_two_processes_the_counters_stay_as_they_stood() -> None:
    """While the supervisor restarts a sidecar, neither the dead one's figures nor the
    new one's are shown: the series vanished for ~0.5 s, and a scrape in that window
    broke the dashboard's lines (latency audit F9). Gauges stay out: a dead process's
    gauges are not now."""
    carry = CarriedCounters()
    assert carry.held() == []  # nothing shown yet: nothing to hold
    list(carry.carry(10, _families(5, 3, 2)))
    list(carry.carry(10, _families(7, 4, 3)))
    held = _values(carry.held())
    assert held["c_total{'k': 'a'}"] == 7 and held["h_count{}"] == 3
    assert not any(k.startswith("g{") for k in held)
    after = _values(list(carry.carry(11, _families(1, 9, 1))))  # the new process
    assert after["c_total{'k': 'a'}"] == 8
    assert _values(carry.held())["c_total{'k': 'a'}"] == 8
