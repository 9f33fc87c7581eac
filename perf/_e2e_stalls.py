"""Where a colocated run's stalls sit: stage stamps of the orders in each latency spike.

Runs open-loop colocated runs on one instance (``_e2e_rig``) -- a short warm-up, then
``--runs`` watched runs at ``--rate``, optionally after ``--overload`` runs that push the
instance past its capacity, as the e2e bench's sweep does before its half-max run -- and,
for every ``--window-ms`` window of a watched run whose worst order took more than
``--over-us``, prints that order's time at each hop (``_e2e_stages``: sent by the client,
taken by the pump, in the shard's ring, processed, events out, routed, read back): the
hop that holds the time is where the stall was.

Watched runs read the rings at every pass of the client, which costs it: their p50 is
~40 µs at 1 M/s against ~22 unwatched. A tool for looking, not a benchmark: no targets,
no JSON.

What it showed on the 2-vCPU VM (2026-11-26): after 2-3 M/s overload runs, the 1 M/s
runs stall for 12.5, 22.5, 32.5 or 42.5 ms (10 ms steps), with the time in the
client's own send (one pass of its loop, in the ring push or the yield, took that long)
or in the pump's intake; in fresh runs, ~5 ms stalls about every 400 ms. The guest's
scheduler sees no other task on that CPU then, and its sampling profiler takes far fewer
samples than the interval allows. ``tradsys tune stalls`` run beside it (a SCHED_FIFO
thread per vCPU waking every millisecond) is late by the same 12-42 ms on both vCPUs at
the same instants, and keeps being so with the engine idle after the overload runs: the
host does not run the VM then. Ruled out before that (three 1 M/s runs after the overload
runs each, the stalls unchanged): every engine process's memory locked
(``lock_memory``) with the client's too (``mlockall``), numpy's huge-page advice off and
malloc never trimming in the client (its faults per run 17 k -> 5 k); idle CPUs halting
instead of polling.

Found later the same day: each of those stalls falls inside a pass of the VM's free page
reporting (virtio-balloon; ``/sys/module/page_reporting/parameters/reported_kib`` moves
then), and what it reported was this client's own freed per-order arrays -- "never
trimming" had still let glibc unmap every block over its mmap threshold. With no mmap'd
blocks either (``tradsys.malloc_policy.keep_freed_memory``, which the e2e bench now
calls) the machine-wide stalls are gone from the e2e runs; this tool leaves the client as
it was, so that it still shows them.

Usage: _e2e_stalls.py [--rate R] [--seconds S] [--runs N] [--overload R,R,...]
                      [--window-ms W] [--over-us U]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common
import _e2e_rig as rig
import _e2e_stages as stages


def spikes(stamps: np.ndarray, window_ms: float, over_us: float) -> list[str]:
    """One line per window whose worst order took over ``over_us``: when, how long, and
    that order's time per hop (µs)."""
    st = stamps.astype(np.float64)
    if not len(st):
        return []
    total_us = (st[:, -1] - st[:, 0]) / 1e3
    at_ms = (st[:, 0] - st[0, 0]) / 1e6
    window = (at_ms // window_ms).astype(np.int64)
    lines = []
    for w in np.unique(window):
        rows = np.flatnonzero(window == w)
        worst = rows[np.argmax(total_us[rows])]
        if total_us[worst] <= over_us:
            continue
        hops = np.diff(st[worst]) / 1e3
        per_hop = " ".join(f"{h}={v:.0f}" for h, v in zip(stages.HOP_NAMES, hops, strict=True))
        lines.append(f"  t={at_ms[worst]:7.0f} ms  worst {total_us[worst]:8.0f} µs  {per_hop}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1e6, help="orders/s of the watched runs")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    ap.add_argument("--runs", type=int, default=2, help="watched runs")
    ap.add_argument(
        "--overload", default="", help="rates run (unwatched) before the watched runs, e.g. 2e6,3e6"
    )
    ap.add_argument("--window-ms", type=float, default=100.0)
    ap.add_argument("--over-us", type=float, default=5000.0)
    args = ap.parse_args(argv)
    overload = [float(r) for r in args.overload.split(",") if r]
    # no clock ticks: the stage stamps map the i-th order to the i-th record of the
    # shard's command ring, which a tick record would shift (as in e2e_bench)
    with (
        common.idle_polling() as idle,
        rig.tradsys_instance("stalls", clock_tick_us=0) as (
            sup,
            ann,
        ),
    ):
        print(idle)
        sock, instance = str(ann["unix_socket"]), sup.config.engine.instance
        first = 1

        def run(rate: float, watched: bool) -> None:
            nonlocal first
            sender = rig.RingSender(sock, watch_instance=instance if watched else None)
            try:
                r = sender.run(rate, args.seconds, first)
            finally:
                sender.close()
            first += 10_000_000
            what = "watched" if watched else "unwatched"
            print(f"{rate:,.0f}/s {what}: p50 {r.us(50):.0f} µs, p99 {r.us(99):.0f} µs")
            if watched and r.stamps is not None:
                for line in spikes(r.stamps, args.window_ms, args.over_us):
                    print(line)

        run(50e3, False)  # warm-up
        for rate in overload:
            run(rate, False)
        for _ in range(args.runs):
            run(args.rate, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
