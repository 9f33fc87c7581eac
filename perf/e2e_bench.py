#!/usr/bin/env python3
"""End-to-end order entry: order → ack round trip through the whole engine, against the
baseline a Python user would otherwise build.

TradSys: `Supervisor` + one shard worker + the gateway process (uvloop control plane, the
native pump moving orders); clients connect colocated (shared-memory rings after the Unix
socket handshake) and over TCP (the binary protocol). Baseline ("peer"): an asyncio TCP
server (uvloop) that calls the reference matching model per frame of orders and writes
the events back, driven by the same TCP client code.

Load is open loop: IOC orders on a fixed timetable, each latency measured from the
order's intended send time, so a queue that builds up is measured, not hidden. For each
side: p50 / p99 / p99.9 at several offered rates; the highest offered rate sustained
(every order answered, >= 95 % of the rate, the latency not growing over the run -- the
last quarter's median at most 5 ms above the first quarter's -- and no standing queue:
the median at most 1 ms; a shared machine's stalls reach the tail, not the median); then
the round trip at half of it (``e2e.colocated.rtt.*``, against the baseline at half of
*its* maximum). At one fixed moderate rate (10 k/s) both sides run the same load:
``e2e.tcp.rtt.*`` (TradSys over TCP) and ``e2e.colocated.rtt_same_rate.*`` (TradSys
colocated), each against the baseline at that rate. TCP is then swept up from there like
the others (``e2e.tcp.max_rate``, against the baseline's max): the same Python client
code drives TradSys over TCP and the baseline.

During the half-max run, ``tradsys tune stalls``' watch (a real-time thread per CPU,
waking every 5 ms) counts the moments every CPU stalled at once
(``e2e.platform.machine_stalls``, ``.machine_stall_ms``): on a VM, time the host did not
run the machine, which no order can be faster than.

The client's own cost per order (``e2e.client.submit_us``, ``_client_cost.py``):
``OrderClient.submit`` per call against ``submit_batch`` of a one-record numpy array,
alternated on one colocated session; only the sending loop is timed.

Every timed run has the engine clock as deployed (the pump stages a CLOCK_TICK before a
shard's commands every ``[gateway] clock_tick_us``, 10 µs by default).

Where the time goes: a watched run at half the max rate (the full run adds 100 k/s and 250
k/s), on an instance of its own with the clock off (the breakdown maps the i-th order to
the i-th record of the shard's ring, which a tick would shift), samples the indices of the
session and shard rings at every look of the client, which times each order at each hop --
due, sent, taken by the pump, in the shard's ring, processed by the shard, events out,
routed to the client, read by the client (``_e2e_stages.py``;
``e2e.colocated.stage.<hop>.p50/p99``). Beside it, the run-queue wait of the client, the
gateway and the worker during the half-max run (schedstat: runnable but not running;
``e2e.colocated.run_queue_wait.*``): the worker has its CPU to itself, so its wait is
other processes' use of that CPU.

Placement and waiting (what issue 5's p99 of 59 ms at half the max rate came from, and
what changed; each measured side by side on the shared 2-vCPU VM, see the README):
- The shard worker gets the last CPU to itself; the gateway process and the client share
  the other (``TRADSYS_BENCH_PIN=0`` lets the kernel place everything). Unplaced, the
  kernel put the pump and the worker -- both spinning at these rates -- on one CPU and
  each hand-over waited out the other's time slice: p50 at 500 k/s 419 µs against 33.
- The client polls its event ring with a ``sched_yield`` between looks (the pump on its
  CPU runs whenever it has work) and sends every order due per pass, passes at most
  every 10 µs (``TRADSYS_BENCH_TICK_US``). Parked on the ring instead, each wake-up cost
  tens of µs to ms: p50 at 100 k/s 500 µs against 25.
- The gateway pump (native/gateway_pump.c) scans only the session slots in use (an idle
  pass looked at all 256: ~1 µs, so 200 spinning passes were ~200 µs), spins 20 passes
  and then yields per pass before parking (p50 25-52 µs -> 14-23 µs from 100 k/s to
  1 M/s), and parks instead of yielding while a shard ring is full.
- The worker's periodic snapshot (1 M commands by default) stopped the shard for tens of
  ms, and the bench snapshotted every 10^12 commands to keep that apart; the snapshot is
  now written by a background thread, so the bench runs with the default again
  (``TRADSYS_BENCH_SNAPSHOT_EVERY`` changes it) -- see _e2e_rig.py.
- The gateway's stats write walked every frozen object (``gc.get_freeze_count()``) four
  times a second on the event loop's thread, which shared the client's CPU: 2.5-3.7 ms
  each time, most of the p99 at every rate (3.6 ms at 100 k/s, 458 µs without it). The
  gateway is now placed as deployed (``[gateway] core`` pins the pump alone; the event
  loop moves to the other CPU), and the pump yields its CPU at least every
  ``[gateway] yield_every_us`` even when busy.
- The half-max run's 20-30 ms stalls (p99 ~30 ms) were the whole VM stopping while its
  free page reporting (virtio-balloon) handed memory back to the host: every such stall
  fell inside a reporting pass, and the memory was this bench's own -- the overloaded
  runs' per-order arrays, GiBs freed just before the half-max run. The bench now keeps
  what it frees (``tradsys.malloc_policy``): no machine-wide stall in the half-max
  run since, p99 ~30 ms -> 1.6-4 ms.
- The cost per order is small -- about 0.25 µs of pump and 0.1-0.2 µs of worker CPU at
  1 M/s -- so the max rate is not what limits the tail; the tail is scheduling.

Beside the timings, which a shared machine makes noisy, the stable figure: instructions
per order of the gateway's own Python TCP path, counted by callgrind (frames of 1 and of
64 orders in, events framed back; 13 s of valgrind, so not under --quick unless
--callgrind).

Usage: e2e_bench.py [--quick] [--json] [--no-callgrind] [--callgrind]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _callgrind
import _client_cost as client_cost
import _common as common
import _e2e_rig as rig
import _e2e_stages as stages

from tradsys.malloc_policy import keep_freed_memory

BENCH = "e2e"
PEER = "asyncio TCP server + reference model"
SUSTAIN_GROWTH_US = 5_000.0
SUSTAIN_P50_US = 1_000.0
TCP_RATE = 10_000.0
COLOCATED_RATES = [100e3, 250e3, 500e3, 1e6, 1.5e6, 2e6, 3e6, 4e6]
BASELINE_RATES = [10e3, 20e3, 40e3, 80e3, 160e3]
TCP_RATES = [20e3, 40e3, 80e3, 160e3, 320e3, 640e3]  # beside TCP_RATE, for the TCP max
WATCHED_RATES = [100e3, 250e3]  # beside half the max, for the full run's stage breakdown
# each run's order ids start here: far apart enough that no run (4 M/s x 3 s = 12 M
# orders) reaches into the next one's, whose session may be handed the late events of
# an overloaded run's orders (the gateway gives a new session of the account its orders)
ids = itertools.count(1, 100_000_000)


@dataclass(frozen=True)
class Plan:
    """How long each part runs: --quick must fit the lead's 2-minute budget for every
    quick bench together (about 12 s for this one), the full run is the real one."""

    sweep_s: float  # per offered rate of the max-rate sweep
    half_s: float  # the run at half the max rate (the target's p99)
    other_s: float  # the TCP run, the same-rate colocated run, each watched run
    misses: int  # rates in a row not sustained that end a sweep
    watched: list[float]  # extra rates with a stage breakdown
    client_rounds: int  # of the client's per-order cost (each way, alternated)
    client_orders: int  # per round


QUICK = Plan(0.3, 0.6, 0.3, misses=1, watched=[], client_rounds=3, client_orders=2_000)
FULL = Plan(3.0, 5.0, 2.0, misses=2, watched=WATCHED_RATES, client_rounds=9, client_orders=5_000)
CLIENT_PEER = "submit_batch of a one-record numpy array"


def sustained(r: rig.RunResult) -> bool:
    return r.sustained(SUSTAIN_GROWTH_US, SUSTAIN_P50_US)


Make = Callable[[], rig.OrderSender]


def sweep(
    make: Make, rates: list[float], seconds: float, misses: int, label: str
) -> list[rig.RunResult]:
    """Run each rate on a fresh session until ``misses`` rates in a row are not
    sustained."""
    out: list[rig.RunResult] = []
    missed = 0
    for rate in rates:
        res = one(make, rate, seconds)
        out.append(res)
        common.note(
            f"{label} {common.fmt_rate(rate)}/s: achieved {common.fmt_rate(res.achieved)}/s, "
            f"p50 {common.fmt_us(res.us(50))} p99 {common.fmt_us(res.us(99))} µs "
            f"({res.acked}/{res.sent} answered)"
        )
        missed = 0 if sustained(res) else missed + 1
        if missed == misses:
            break
    return out


def max_rate(results: list[rig.RunResult]) -> float:
    """The highest rate sustained. The sweep goes on past a single miss (a VM stall can
    sink one run), so a lower rate may have missed: :func:`missed_below` names those."""
    ok = [r.offered for r in results if sustained(r)]
    return max(ok) if ok else 0.0


def missed_below(results: list[rig.RunResult]) -> list[float]:
    """Rates under the reported maximum that were not sustained, to print beside it."""
    top = max_rate(results)
    return [r.offered for r in results if r.offered < top and not sustained(r)]


def one(make: Make, rate: float, seconds: float) -> rig.RunResult:
    sender = make()
    try:
        return sender.run(rate, seconds, next(ids))
    finally:
        sender.close()


PROBE_ROUNDS = 100  # x 64 orders per stretch


def instructions() -> list[dict[str, Any]]:
    """The stable figure beside the noisy timings: instructions per order of the gateway's
    own Python TCP path (``_gateway_probe.py`` under callgrind), for frames of 1 and of
    64 orders, and per event framed back. Empty when valgrind is missing."""
    if _callgrind.valgrind() is None:
        common.note("valgrind not installed: no instruction counts")
        return []
    probe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_gateway_probe.py")
    dumps = _callgrind.run(
        [sys.executable, probe, f"e2eprobe{os.getpid()}", str(PROBE_ROUNDS)],
        zero_before="ts_ring_read_info",
        dump_before="ts_ring_set_consumer",
        env={
            "PYTHONHASHSEED": "0",
            "OPENBLAS_NUM_THREADS": "1",
            "GLIBC_TUNABLES": "glibc.cpu.x86_rep_movsb_threshold=4294967295",
        },
    )
    if len(dumps) != 3:
        common.note(f"callgrind gave {len(dumps)} dumps, expected 3: no instruction counts")
        return []
    n = PROBE_ROUNDS * 64
    names = [
        "e2e.tcp.gateway_instructions_per_order.frame_of_1",
        "e2e.tcp.gateway_instructions_per_order.frame_of_64",
        "e2e.tcp.gateway_instructions_per_event.batch_of_64",
    ]
    return [
        common.result(name, "instructions", d.total / n, higher_is_better=False)
        for name, d in zip(names, dumps, strict=True)
    ]


def rtt(name: str, mine: rig.RunResult, peer: rig.RunResult, percentile: float) -> dict[str, Any]:
    """One round-trip percentile of a TradSys run beside the same one of its peer run."""
    return common.result(
        name,
        "us",
        mine.us(percentile),
        higher_is_better=False,
        peer=PEER,
        peer_value=peer.us(percentile),
    )


def stage_results(r: rig.RunResult) -> list[dict[str, Any]]:
    """``e2e.colocated.stage.<hop>.p50/p99`` of a watched run (no peer: the baseline has
    no such stages)."""
    out = []
    bd = stages.breakdown(r.stamps if r.stamps is not None else np.zeros((0, 8), np.int64))
    # rows() ends with the total, which zip leaves out
    for name, (_, p50, p99, _) in zip(stages.HOP_NAMES, bd.rows(), strict=False):
        for label, value in (("p50", p50), ("p99", p99)):
            out.append(
                common.result(
                    f"e2e.colocated.stage.{name}.{label}", "us", value, higher_is_better=False
                )
            )
    return out


def row(label: str, r: rig.RunResult) -> list[str]:
    return [
        label,
        common.fmt_rate(r.offered),
        common.fmt_rate(r.achieved),
        common.fmt_us(r.us(50)),
        common.fmt_us(r.us(99)),
        common.fmt_us(r.us(99.9)),
        "yes" if sustained(r) else "no",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    ap.add_argument("--callgrind", action="store_true", help="count instructions under --quick too")
    args = ap.parse_args()
    plan = QUICK if args.quick else FULL
    count = args.callgrind or not (args.quick or args.no_callgrind)
    # the load generator's per-order arrays (GiBs over the sweep) stay with this process:
    # returned, a VM with free page reporting stops both vCPUs while it hands them back
    keep_freed_memory()

    # idle CPUs poll for the whole run, TradSys and the baseline alike: a wake-up onto a
    # halted vCPU is a VM exit (tens of µs), which the low rates would otherwise measure
    with common.idle_polling() as idle:
        jitter, jitter_line = common.platform_jitter(BENCH, args.quick)
        with rig.tradsys_instance("e2ebench") as (sup, ann):
            host, port = rig.tcp_address(ann)
            path = str(ann["unix_socket"])
            colocated = lambda: rig.RingSender(path)  # noqa: E731
            one(colocated, 50e3, 0.2)  # warm-up: caches, page faults
            colo = sweep(colocated, COLOCATED_RATES, plan.sweep_s, plan.misses, "colocated")
            colo_max = max_rate(colo)
            half = max(colo_max / 2, 1e3)
            pids = rig.engine_pids(sup, ann)
            waited = {name: rig.run_queue_ns(pid) for name, pid in pids.items()}
            t = time.monotonic_ns()
            machine = common.MachineStalls(BENCH, plan.half_s)
            colo_half = one(colocated, half, plan.half_s)
            common.note(
                f"colocated half max {common.fmt_rate(half)}/s: "
                f"{colo_half.acked}/{colo_half.sent} answered, achieved "
                f"{common.fmt_rate(colo_half.achieved)}/s, median growth "
                f"{colo_half.growth_us:.0f} µs"
            )
            machine_rows, machine_line = machine.results()
            elapsed = time.monotonic_ns() - t
            waited = {name: rig.run_queue_ns(pid) - waited[name] for name, pid in pids.items()}
            tcp_session = lambda: rig.TcpSender(host, port)  # noqa: E731
            tcp = one(tcp_session, TCP_RATE, plan.other_s)
            tcp_sweep = [tcp, *sweep(tcp_session, TCP_RATES, plan.sweep_s, plan.misses, "tcp")]
            tcp_max = max_rate(tcp_sweep)
            colo_low = one(colocated, TCP_RATE, plan.other_s)
            submit_us, array_us = client_cost.submit_cost(
                path, plan.client_rounds, plan.client_orders
            )
        # the stage breakdown on an instance of its own without clock ticks (see _e2e_rig)
        with rig.tradsys_instance("e2ewatch", clock_tick_us=0) as (sup, ann):
            path = str(ann["unix_socket"])
            instance = sup.config.engine.instance
            watched = lambda: rig.RingSender(path, instance)  # noqa: E731
            one(watched, 50e3, 0.2)
            watch = [one(watched, rate, plan.other_s) for rate in [*plan.watched, half]]
        with rig.baseline_server() as (bhost, bport):
            baseline = lambda: rig.TcpSender(bhost, bport)  # noqa: E731
            one(baseline, 2e3, 0.2)
            base = sweep(baseline, BASELINE_RATES, plan.sweep_s, plan.misses, "baseline")
            base_max = max_rate(base)
            base_half = one(baseline, max(base_max / 2, 1e3), plan.half_s)
            base_tcp = one(baseline, TCP_RATE, plan.other_s)

    rows = [row("TradSys colocated", r) for r in colo]
    rows.append(row("TradSys colocated, half max", colo_half))
    rows.append(row("TradSys colocated", colo_low))
    rows += [row("TradSys TCP", r) for r in tcp_sweep]
    rows += [row("baseline (asyncio + reference)", r) for r in base]
    rows.append(row("baseline, half its max", base_half))
    rows.append(row("baseline TCP", base_tcp))
    print(
        common.table(
            ["order → ack", "offered/s", "achieved/s", "p50 µs", "p99 µs", "p99.9 µs", "sustained"],
            rows,
        )
    )
    ratio = common.fmt_ratio(colo_max / base_max if base_max else None)
    print(
        f"\nmax sustained (all answered, >= 95 % of the rate, median growth <= "
        f"{SUSTAIN_GROWTH_US / 1000:.0f} ms, p50 <= {SUSTAIN_P50_US / 1000:.0f} ms): TradSys "
        f"colocated {common.fmt_rate(colo_max)}/s, TCP {common.fmt_rate(tcp_max)}/s, baseline "
        f"{common.fmt_rate(base_max)}/s (colocated {ratio}, TCP "
        f"{common.fmt_ratio(tcp_max / base_max if base_max else None)})"
    )
    for label, results in (("colocated", colo), ("TCP", tcp_sweep), ("baseline", base)):
        if missed := missed_below(results):
            rates = ", ".join(f"{common.fmt_rate(r)}/s" for r in missed)
            print(f"  {label}: missed at {rates}, below its maximum (one run can meet a stall)")
    print(
        f"\nthe client's own cost per order, colocated (sending loop only, median of "
        f"{plan.client_rounds} alternated rounds of {plan.client_orders:,}): "
        f"OrderClient.submit {submit_us:.2f} µs, {CLIENT_PEER} {array_us:.2f} µs"
    )
    print(idle)
    print(jitter_line)
    print(f"during the half-max run, {machine_line}")
    alone = " (it has its CPU to itself: all of its wait is other processes')"
    print(
        "\nrun-queue wait during the half-max run (runnable but not running): "
        + ", ".join(f"{name} {w / elapsed * 1000:.0f} ms/s" for name, w in waited.items())
        + (alone if rig.placement()[0] is not None else "")
    )
    for r in watch:
        print(
            f"\nwhere the colocated round trip goes at {common.fmt_rate(r.offered)}/s "
            f"(ring indices sampled by the client each pass; a stage's time is a bound):"
        )
        print(stages.breakdown(r.stamps if r.stamps is not None else np.zeros((0, 8))).table())
    results = [
        common.result(
            "e2e.colocated.max_rate",
            "orders/s",
            colo_max,
            higher_is_better=True,
            peer=PEER,
            peer_value=base_max,
        ),
        *(
            rtt(f"e2e.colocated.rtt.{label}", colo_half, base_half, p)
            for label, p in (("p50", 50), ("p99", 99), ("p99_9", 99.9))
        ),
        rtt("e2e.colocated.rtt_same_rate.p50", colo_low, base_tcp, 50),
        rtt("e2e.colocated.rtt_same_rate.p99", colo_low, base_tcp, 99),
        common.result(
            "e2e.tcp.max_rate",
            "orders/s",
            tcp_max,
            higher_is_better=True,
            peer=PEER,
            peer_value=base_max,
        ),
        common.result(
            "e2e.client.submit_us",
            "us",
            submit_us,
            higher_is_better=False,
            peer=CLIENT_PEER,
            peer_value=array_us,
        ),
        rtt("e2e.tcp.rtt.p50", tcp, base_tcp, 50),
        rtt("e2e.tcp.rtt.p99", tcp, base_tcp, 99),
        *stage_results(watch[-1]),
        *jitter,
        *machine_rows,
        *(
            common.result(
                f"e2e.colocated.run_queue_wait.{name.replace(' ', '_')}",
                "ms/s",
                w / elapsed * 1000,
                higher_is_better=False,
            )
            for name, w in waited.items()
        ),
    ]
    counts = instructions() if count else []
    if counts:
        print("\ninstructions per order in the gateway's Python TCP path (callgrind, exact):")
        for c in counts:
            print(f"  {c['name']:55} {c['value']:10.0f}")
    results += counts
    if args.json:
        common.emit_json(BENCH, args.quick, results)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_bench(BENCH, main))
