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
(every order answered, >= 95 % of the rate, and the latency not growing over the run: the
last quarter's median at most 20 ms above the first quarter's -- an overloaded run's grows
by a good part of its length, a shared machine's noise by a few ms); then the round trip at
half of it (``e2e.colocated.rtt.*``, against the baseline at half of *its* maximum). At
one fixed moderate rate (10 k/s) both sides run the same load: ``e2e.tcp.rtt.*`` (TradSys
over TCP) and ``e2e.colocated.rtt_same_rate.*`` (TradSys colocated), each against the
baseline at that rate.

Beside the timings, which a shared machine makes noisy, the stable figure: instructions
per order of the gateway's own Python TCP path, counted by callgrind (frames of 1 and of
64 orders in, events framed back).

Usage: e2e_bench.py [--quick] [--json] [--no-callgrind]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _callgrind
import _common as common
import _e2e_rig as rig

BENCH = "e2e"
PEER = "asyncio TCP server + reference model"
SUSTAIN_GROWTH_US = 20_000.0
TCP_RATE = 10_000.0
COLOCATED_RATES = [100e3, 250e3, 500e3, 1e6, 1.5e6, 2e6, 3e6, 4e6]
BASELINE_RATES = [5e3, 10e3, 20e3, 40e3, 80e3, 160e3]
ids = itertools.count(1, 10_000_000)


def sweep(make, rates: list[float], seconds: float, label: str) -> list[rig.RunResult]:
    """Run each rate on a fresh session until two rates in a row are not sustained."""
    out: list[rig.RunResult] = []
    misses = 0
    for rate in rates:
        sender = make()
        try:
            res = sender.run(rate, seconds, next(ids))
        finally:
            sender.close()
        out.append(res)
        common.note(
            f"{label} {common.fmt_rate(rate)}/s: achieved {common.fmt_rate(res.achieved)}/s, "
            f"p50 {common.fmt_us(res.us(50))} p99 {common.fmt_us(res.us(99))} µs "
            f"({res.acked}/{res.sent} answered)"
        )
        misses = 0 if res.sustained(SUSTAIN_GROWTH_US) else misses + 1
        if misses == 2:
            break
    return out


def max_rate(results: list[rig.RunResult]) -> float:
    ok = [r.offered for r in results if r.sustained(SUSTAIN_GROWTH_US)]
    return max(ok) if ok else 0.0


def one(make, rate: float, seconds: float) -> rig.RunResult:
    sender = make()
    try:
        return sender.run(rate, seconds, next(ids))
    finally:
        sender.close()


PROBE_ROUNDS = 100  # x 64 orders per stretch


def instructions() -> list[dict]:
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


def rtt(name: str, mine: rig.RunResult, peer: rig.RunResult, percentile: float) -> dict:
    """One round-trip percentile of a TradSys run beside the same one of its peer run."""
    return common.result(
        name,
        "us",
        mine.us(percentile),
        higher_is_better=False,
        peer=PEER,
        peer_value=peer.us(percentile),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    args = ap.parse_args()
    seconds = 0.5 if args.quick else 3.0
    half_seconds = 1.0 if args.quick else 5.0

    rows = []
    with rig.tradsys_instance("e2ebench") as (_, ann):
        host, port = rig.tcp_address(ann)
        path = str(ann["unix_socket"])
        one(lambda: rig.RingSender(path), 50e3, 0.3)  # warm-up: caches, page faults
        colo = sweep(lambda: rig.RingSender(path), COLOCATED_RATES, seconds, "colocated")
        colo_max = max_rate(colo)
        colo_half = one(lambda: rig.RingSender(path), max(colo_max / 2, 1e3), half_seconds)
        tcp = one(lambda: rig.TcpSender(host, port), TCP_RATE, max(seconds, 1.0))
        colo_low = one(lambda: rig.RingSender(path), TCP_RATE, max(seconds, 1.0))
    with rig.baseline_server() as (bhost, bport):
        one(lambda: rig.TcpSender(bhost, bport), 2e3, 0.3)
        base = sweep(lambda: rig.TcpSender(bhost, bport), BASELINE_RATES, seconds, "baseline")
        base_max = max_rate(base)
        base_half = one(lambda: rig.TcpSender(bhost, bport), max(base_max / 2, 1e3), half_seconds)
        base_tcp = one(lambda: rig.TcpSender(bhost, bport), TCP_RATE, max(seconds, 1.0))

    def row(label: str, r: rig.RunResult) -> list[str]:
        return [
            label,
            common.fmt_rate(r.offered),
            common.fmt_rate(r.achieved),
            common.fmt_us(r.us(50)),
            common.fmt_us(r.us(99)),
            common.fmt_us(r.us(99.9)),
            "yes" if r.sustained(SUSTAIN_GROWTH_US) else "no",
        ]

    rows += [row("TradSys colocated", r) for r in colo]
    rows.append(row("TradSys colocated, half max", colo_half))
    rows.append(row("TradSys colocated", colo_low))
    rows.append(row("TradSys TCP", tcp))
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
        f"\nmax sustained: TradSys colocated {common.fmt_rate(colo_max)}/s, baseline "
        f"{common.fmt_rate(base_max)}/s ({ratio})"
    )
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
        rtt("e2e.tcp.rtt.p50", tcp, base_tcp, 50),
        rtt("e2e.tcp.rtt.p99", tcp, base_tcp, 99),
    ]
    counts = [] if args.no_callgrind else instructions()
    if counts:
        print("\ninstructions per order in the gateway's Python TCP path (callgrind, exact):")
        for r in counts:
            print(f"  {r['name']:55} {r['value']:10.0f}")
    results += counts
    if args.json:
        common.emit_json(BENCH, args.quick, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
