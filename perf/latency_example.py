"""How to write your own latency script with ``tradsys.profiling``.

An echo process bounces 64-byte records between two shared-memory rings; this process
sends on an open-loop timetable (so a stall shows up as latency instead of slowing the
sender down), records each round trip from its *intended* send time, and breaks it into
stages from the timestamps the records carry. Replace the echo with your own client —
a colocated OrderClient, a market-data subscriber — and keep the rest.

    .venv/bin/python perf/latency_example.py --rate 50000 --count 200000
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from typing import Any

import numpy as np

from tradsys.profiling import LatencyRecorder, OpenLoop, StageBreakdown
from tradsys.ring import Ring, WaitStrategy, segment_name

RECORD = np.dtype(
    [("i", "<i8"), ("intended", "<i8"), ("sent", "<i8"), ("echoed", "<i8"), ("pad", "V32")]
)


def echo(ping: str, pong: str, count: int, ready: Any) -> None:
    """Stamp each record when it is seen and send it back."""
    layout = {"slot_size": RECORD.itemsize, "layout_version": 1}
    with (
        Ring.attach(ping, role="consumer", **layout) as inbox,
        Ring.attach(pong, role="producer", **layout) as outbox,
    ):
        buf = np.zeros(256, RECORD)
        ready.set()  # the timetable starts only now: start-up is not latency
        seen = 0
        while seen < count:
            n = inbox.pop_wait(buf, WaitStrategy.spin_yield(), timeout=5.0)
            buf["echoed"][:n] = time.monotonic_ns()
            outbox.push_all(buf[:n], timeout=5.0)
            seen += n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=50_000, help="sends per second")
    ap.add_argument("--count", type=int, default=100_000)
    args = ap.parse_args()

    layout = {"slot_size": RECORD.itemsize, "capacity": 1 << 16, "layout_version": 1}
    instance = f"example{os.getpid()}"
    with (
        Ring.create(segment_name(instance, "ping", 0), **layout) as ping,
        Ring.create(segment_name(instance, "pong", 0), **layout) as pong,
    ):
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        child = ctx.Process(target=echo, args=(ping.name, pong.name, args.count, ready))
        child.start()
        if not ready.wait(timeout=60):
            raise SystemExit("the echo process did not start")
        replies = np.zeros(args.count, RECORD)
        got = 0
        one = np.zeros(1, RECORD)

        def send(i: int, intended: int) -> None:
            one["i"], one["intended"], one["sent"] = i, intended, time.monotonic_ns()
            ping.push_all(one, timeout=5.0)

        received_at = np.zeros(args.count, np.int64)

        def poll() -> None:
            nonlocal got
            n = pong.pop_batch(replies[got:])
            received_at[got : got + n] = time.monotonic_ns()
            got += n

        OpenLoop(args.rate, args.count).run(send, poll)
        while got < args.count:
            poll()
        child.join()

    latency = LatencyRecorder()
    latency.record_many(received_at - replies["intended"])
    stages = StageBreakdown(["intended", "sent", "echoed", "received"])
    stages.record(
        np.stack([replies["intended"], replies["sent"], replies["echoed"], received_at], axis=1)
    )
    summary = latency.summary()
    print(
        f"{args.count} round trips at {args.rate:.0f}/s open loop: p50 {summary['p50_us']:.2f} µs, "
        f"p99 {summary['p99_us']:.2f} µs, p99.9 {summary['p99_9_us']:.2f} µs, "
        f"max {summary['max_us']:.1f} µs"
    )
    print(stages.table())


if __name__ == "__main__":
    main()
