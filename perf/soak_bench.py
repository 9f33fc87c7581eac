#!/usr/bin/env python3
"""Does it stay fast: one instance kept trading for minutes, measured interval by interval.

A benchmark of seconds says nothing of what a trading day does to an engine: tables that
grow, a journal that is never pruned, snapshots that slow down as the books fill, memory
that creeps, segments that leak with every session. This runs one TradSys instance (a
shard worker, the gateway; as the e2e bench sets it up, the engine clock on) under
open-loop colocated load for back-to-back intervals, each on a new session, and after
each reads the order -> ack round trip's percentiles, the resident memory of the gateway
and of the worker, the instance's files on disk and its shared-memory segments.

Workload: GTD limit buys resting below the market, each expiring ``LIFETIME_S`` after it
is due, so that the book always holds rate x lifetime orders (100 k at 200 k/s): the
resting book, the gateway's live-order table, the expiry heap and every snapshot carry
real state, and each order makes exactly two events (ACCEPTED, then CANCELLED(EXPIRED)),
so the book is empty again when an interval's last events are in.

Peer: the same instance in the run's first quarter of intervals (there is no other engine
to stand beside it; drift is the question), the first interval left out as warm-up.
``soak.rtt.p50`` and ``soak.rtt.p99``: the median over the last quarter's intervals
beside the first quarter's (ratio = first / last: 1 is no drift, below 1 slower at the
end). ``soak.gateway.rss_growth`` and ``soak.worker.rss_growth`` (MB): the last
interval's resident memory minus the second's.
``soak.disk.max`` (MB): the most the instance's files held after an interval.
``soak.shm_segments.max``: the most segments of the instance seen after an interval (a
session that leaked its rings would add two each time). ``soak.orders``: orders sent.

Usage: soak_bench.py [--quick] [--json] [--rate R] [--intervals N] [--seconds S]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common
import _e2e_rig as rig

from tradsys import wire
from tradsys.ring import instance_segments

BENCH = "soak"
PEER = "the same instance, first quarter of the run"
LIFETIME_S = 0.5  # each order rests this long after it is due, then expires
LADDER = 50  # the orders rest on this many price levels below the market
MB = 1 << 20


@dataclass(frozen=True)
class Plan:
    rate: float
    intervals: int
    seconds: float


@dataclass(frozen=True)
class Interval:
    """What one interval measured, and the instance's state right after it."""

    p50: float
    p99: float
    p999: float
    achieved: float
    complete: bool
    gateway_rss: int
    worker_rss: int
    disk: int
    segments: int


def resting_gtd(n: int, first_id: int, step_ns: float) -> np.ndarray:
    """``n`` GTD buys due every ``step_ns`` from now, each expiring LIFETIME_S after it is
    due (wall-clock ns: the engine's clock is the gateway's CLOCK_TICK of CLOCK_REALTIME)."""
    rec = rig.orders(n, first_id)
    rec["tif"] = wire.TimeInForce.GTD
    rec["price"] = rig.PRICE - 1 - np.arange(n) % LADDER
    start = time.time_ns() + 1_000_000  # the run's first order is due 1 ms from now
    due = (np.arange(n, dtype=np.float64) * step_ns).astype(np.int64)
    rec["time_ns"] = start + due + int(LIFETIME_S * 1e9)
    return rec


def disk_bytes(root: Path) -> int:
    """Bytes the files under ``root`` occupy on disk (allocated blocks, not lengths)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # pruned meanwhile
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def soak(plan: Plan) -> list[Interval]:
    out: list[Interval] = []
    with rig.tradsys_instance("soak") as (sup, ann):
        instance = sup.config.engine.instance
        data_dir = Path(sup.config.engine.data_dir) / instance
        pids = rig.engine_pids(sup, ann)
        gateway, worker = psutil.Process(pids["gateway"]), psutil.Process(pids["worker 0"])
        first_id = 1
        for i in range(plan.intervals):
            sender = rig.RingSender(str(ann["unix_socket"]))
            try:
                r = sender.run(plan.rate, plan.seconds, first_id, workload=resting_gtd)
            finally:
                sender.close()
            first_id += r.sent
            got = Interval(
                p50=r.us(50),
                p99=r.us(99),
                p999=r.us(99.9),
                achieved=r.achieved,
                complete=r.complete,
                gateway_rss=gateway.memory_info().rss,
                worker_rss=worker.memory_info().rss,
                disk=disk_bytes(data_dir),
                segments=len(instance_segments(instance)),
            )
            out.append(got)
            common.note(
                f"soak {i + 1}/{plan.intervals}: {common.fmt_rate(got.achieved)}/s, "
                f"p50 {got.p50:.1f} p99 {got.p99:.0f} p99.9 {got.p999:.0f} µs, "
                f"RSS gateway {got.gateway_rss / MB:.0f} MB worker {got.worker_rss / MB:.0f} MB, "
                f"disk {got.disk / MB:.0f} MB, {got.segments} segments"
                + ("" if got.complete else " -- NOT every order answered")
            )
    return out


def quarter_medians(values: list[float]) -> tuple[float, float]:
    """The median of the first quarter's values and of the last quarter's."""
    q = max(1, len(values) // 4)
    return common.median(values[:q]), common.median(values[-q:])


def report(plan: Plan, runs: list[Interval], quick: bool, as_json: bool) -> None:
    orders = int(plan.rate * plan.seconds) * len(runs)
    # the first interval warms up (page faults, first snapshots, pools): the drift and the
    # growth are measured from the second on, or a cold start would pass for a fast end
    measured = runs[1:]
    first50, last50 = quarter_medians([r.p50 for r in measured])
    first99, last99 = quarter_medians([r.p99 for r in measured])
    gw_growth = (measured[-1].gateway_rss - measured[0].gateway_rss) / MB
    wk_growth = (measured[-1].worker_rss - measured[0].worker_rss) / MB
    results = [
        common.result(
            "soak.rtt.p50", "µs", last50, higher_is_better=False, peer=PEER, peer_value=first50
        ),
        common.result(
            "soak.rtt.p99", "µs", last99, higher_is_better=False, peer=PEER, peer_value=first99
        ),
        common.result("soak.gateway.rss_growth", "MB", gw_growth, higher_is_better=False),
        common.result("soak.worker.rss_growth", "MB", wk_growth, higher_is_better=False),
        common.result(
            "soak.disk.max", "MB", max(r.disk for r in runs) / MB, higher_is_better=False
        ),
        common.result(
            "soak.shm_segments.max",
            "segments",
            max(r.segments for r in runs),
            higher_is_better=False,
        ),
        common.result("soak.orders", "orders", orders, higher_is_better=True),
        common.result(
            "soak.intervals_incomplete",
            "intervals",
            sum(not r.complete for r in runs),
            higher_is_better=False,
        ),
    ]
    minutes = plan.intervals * plan.seconds / 60
    print(
        f"soak: {plan.intervals} intervals of {plan.seconds:g} s at "
        f"{common.fmt_rate(plan.rate)}/s ({minutes:.1f} min, {orders:,} orders resting "
        f"{LIFETIME_S:g} s each, GTD)"
    )
    rows = [
        [
            str(i + 1),
            common.fmt_rate(r.achieved),
            f"{r.p50:.1f}",
            f"{r.p99:.0f}",
            f"{r.p999:.0f}",
            f"{r.gateway_rss / MB:.0f}",
            f"{r.worker_rss / MB:.0f}",
            f"{r.disk / MB:.0f}",
            str(r.segments),
        ]
        for i, r in enumerate(runs)
    ]
    headers = ["interval", "achieved/s", "p50 µs", "p99 µs", "p99.9 µs"]
    headers += ["gateway MB", "worker MB", "disk MB", "segments"]
    print(common.table(headers, rows))
    print(
        "after the warm-up interval, first quarter -> last quarter: "
        f"p50 {first50:.1f} -> {last50:.1f} µs, p99 {first99:.0f} -> {last99:.0f} µs; "
        f"RSS growth gateway {gw_growth:+.1f} MB, "
        f"worker {wk_growth:+.1f} MB"
    )
    if as_json:
        common.emit_json(BENCH, quick, results)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 intervals of 5 s at 100 k/s")
    ap.add_argument("--json", action="store_true", help="the JSON document as the last line")
    ap.add_argument("--rate", type=float, help="orders/s offered (default 200 k; quick 100 k)")
    ap.add_argument("--intervals", type=int, help="intervals (default 60; quick 5)")
    ap.add_argument("--seconds", type=float, help="seconds per interval (default 10; quick 5)")
    args = ap.parse_args()
    plan = Plan(
        rate=args.rate or (100_000.0 if args.quick else 200_000.0),
        intervals=args.intervals or (5 if args.quick else 60),
        seconds=args.seconds or (5.0 if args.quick else 10.0),
    )
    if plan.intervals < 3 or plan.rate <= 0 or plan.seconds <= 0:
        ap.error("--intervals must be at least 3 (one warms up), --rate and --seconds above 0")
    with common.idle_polling() as idle:
        common.note(f"soak bench: {idle}")
        runs = soak(plan)
    report(plan, runs, args.quick, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_bench(BENCH, main))
