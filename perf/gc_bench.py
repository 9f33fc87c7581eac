#!/usr/bin/env python3
"""Gateway garbage collection while trading: pause p99 and full collections.

A TradSys instance (Supervisor, one shard worker, the gateway process) is loaded the way
the gateway's Python really works: TCP sessions (every frame decoded and framed back by
the uvloop loop), a colocated session, and colocated sessions connecting and leaving all
the time (handshakes, ring creation and removal). The gateway times every collection with
``gc.callbacks`` (``tradsys.gctune``) and writes the figures to ``gateway.stats.json``;
this reads them before and after the trading window.

Peer: the baseline server of the e2e bench (asyncio + reference model, CPython's default
collector settings), timed the same way, under the same TCP load.

Results: ``gateway.gc_pause.p99`` (µs, every collection since the gateway's warm-up) and
``gateway.full_collections_while_trading`` (generation-2 collections in the window).

Usage: gc_bench.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common
import _e2e_rig as rig

from tradsys.client.transport import ColocatedTransport
from tradsys.cores.gateway import read_stats

BENCH = "gc"
PEER = "asyncio TCP server + reference model (default GC)"
TCP_RATE = 20_000.0
COLOCATED_RATE = 100_000.0


def churn(path: str, stop: threading.Event, counter: list[int]) -> None:
    """Colocated sessions that log in, send a few orders, and leave, over and over."""
    first = 900_000_000
    while not stop.is_set():
        t = ColocatedTransport(path, 1, rig.KEY)
        try:
            t.send(rig.orders(10, first))
            first += 10
            t.poll(0.01)
        finally:
            t.close()
        counter[0] += 1
        stop.wait(0.02)


def fresh_stats(read: Any, after: float, timeout: float = 5.0) -> dict[str, Any]:
    """The first stats written after ``after`` (the gateway writes them once a second,
    the baseline every 0.25 s)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = read()
        if doc is not None and doc.get("time", 0) > after:
            return doc
        if time.monotonic() > deadline:
            raise TimeoutError("no fresh stats")
        time.sleep(0.05)


def trade(host: str, port: int, colocated: str | None, seconds: float) -> dict[str, float]:
    """The trading window: TCP open loop here, colocated load and churn in threads."""
    stop = threading.Event()
    sessions = [0]
    threads = []
    if colocated is not None:
        threads.append(threading.Thread(target=churn, args=(colocated, stop, sessions)))

        def colocated_load() -> None:
            sender = rig.RingSender(colocated)
            try:
                sender.run(COLOCATED_RATE, seconds, 500_000_000)
            finally:
                sender.close()

        threads.append(threading.Thread(target=colocated_load))
    for t in threads:
        t.start()
    sender = rig.TcpSender(host, port)
    try:
        res = sender.run(TCP_RATE, seconds, 100_000_000)
    finally:
        sender.close()
        stop.set()
        for t in threads:
            t.join(60)
    return {"tcp_orders": float(res.acked), "sessions_churned": float(sessions[0])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    seconds = 3.0 if args.quick else 20.0

    with rig.tradsys_instance("gcbench") as (sup, ann):
        host, port = rig.tcp_address(ann)
        read = lambda: read_stats(sup.config)  # noqa: E731
        trade(host, port, str(ann["unix_socket"]), 0.5)  # warm-up
        before = fresh_stats(read, time.time())
        load = trade(host, port, str(ann["unix_socket"]), seconds)
        after = fresh_stats(read, time.time())
    ours = after["gc"]
    full = after["gc"]["gen2"] - before["gc"]["gen2"]
    common.note(f"TradSys: {load}, gc {ours}")

    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "baseline.json"

        def read_peer() -> dict[str, Any] | None:
            try:
                doc: dict[str, Any] = json.loads(stats_file.read_text())
            except (OSError, ValueError):
                return None
            doc["time"] = stats_file.stat().st_mtime
            return doc

        with rig.baseline_server(stats_file) as (bhost, bport):
            trade(bhost, bport, None, 0.5)
            pbefore = fresh_stats(read_peer, time.time())
            trade(bhost, bport, None, seconds)
            pafter = fresh_stats(read_peer, time.time())
    peer = pafter["gc"]
    peer_full = peer["gen2"] - pbefore["gc"]["gen2"]

    rows = [
        [
            "TradSys gateway (tuned)",
            f"{ours['collections']:.0f}",
            f"{full:.0f}",
            common.fmt_us(ours["pause_p50_us"]),
            common.fmt_us(ours["pause_p99_us"]),
            common.fmt_us(ours["pause_max_us"]),
        ],
        [
            "baseline (default GC)",
            f"{peer['collections']:.0f}",
            f"{peer_full:.0f}",
            common.fmt_us(peer["pause_p50_us"]),
            common.fmt_us(peer["pause_p99_us"]),
            common.fmt_us(peer["pause_max_us"]),
        ],
    ]
    print(
        common.table(
            ["while trading", "collections", "full (gen 2)", "p50 µs", "p99 µs", "max µs"], rows
        )
    )
    results = [
        common.result(
            "gateway.gc_pause.p99",
            "us",
            ours["pause_p99_us"],
            higher_is_better=False,
            peer=PEER,
            peer_value=peer["pause_p99_us"],
        ),
        common.result(
            "gateway.full_collections_while_trading",
            "collections",
            full,
            higher_is_better=False,
            peer=PEER,
            peer_value=peer_full,
        ),
        common.result("gateway.gc_pause.max", "us", ours["pause_max_us"], higher_is_better=False),
    ]
    if args.json:
        common.emit_json(BENCH, args.quick, results)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_bench(BENCH, main))
