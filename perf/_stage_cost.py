#!/usr/bin/env python3
"""What recording stage latencies costs the shard worker's loop (native/worker.c).

One process makes a shard's rings, control block and stage-latency segment, runs the C
worker in it (durability none: no fsync noise) over the same mixed command stream with
recording on and off, alternating, and reports:
  - ns per command inside ts_worker_run (timed per call, best and median of the rounds);
  - with --callgrind, instructions per command inside ts_worker_run, counted by
    callgrind (--toggle-collect=ts_worker_run): the figure a shared machine cannot blur.

Usage: _stage_cost.py [--commands N] [--rounds R] [--chunk C] [--callgrind]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tradsys._native import lib
from tradsys.cores.control import WorkerControl
from tradsys.cores.worker import ShardWorker, WorkerSpec
from tradsys.matching.workload import mixed_stream, sample_instruments
from tradsys.metrics.latency_segment import ROLE_WORKER, LatencySegment, shard_segment_name
from tradsys.ring import Ring, segment_name
from tradsys.wire import EVENT_DTYPE, LAYOUT_VERSION, MD_DTYPE, RECORD_SIZE


def run(latency: bool, n: int, chunk: int, seed: int = 7) -> tuple[float, int]:
    """(seconds inside ts_worker_run, commands) for one pass over the stream."""
    instance = f"stagecost{os.getpid()}"
    made: list[Ring] = []
    for role, cap in (("cmd", 1 << 14), ("evt", 1 << 17), ("md", 1 << 17)):
        made.append(
            Ring.create(
                segment_name(instance, role, 0),
                slot_size=RECORD_SIZE,
                capacity=cap,
                layout_version=LAYOUT_VERSION,
            )
        )
    control = WorkerControl.create(segment_name(instance, "ctl", 0))
    lat = LatencySegment.create(shard_segment_name(instance, 0), ROLE_WORKER, 0)
    attach = {"slot_size": RECORD_SIZE, "layout_version": LAYOUT_VERSION}
    cmd = Ring.attach(made[0].name, role="producer", **attach)
    evt = Ring.attach(made[1].name, role="consumer", **attach)
    md = Ring.attach(made[2].name, role="consumer", **attach)
    data = tempfile.mkdtemp(prefix="stagecost")
    spec = WorkerSpec(
        instance=instance,
        shard_id=0,
        instruments=sample_instruments(),
        data_dir=data,
        durability="none",
        wait="spin-yield",
        commands=made[0].name,
        events=made[1].name,
        md=made[2].name,
        control=control.name,
        latency=lat.name if latency else "",
    )
    worker = ShardWorker(spec)
    spent = 0
    try:
        worker.attach()
        worker.recover()
        stream = mixed_stream(n, seed)
        ev_buf, md_buf = np.zeros(1 << 16, EVENT_DTYPE), np.zeros(1 << 16, MD_DTYPE)
        for start in range(0, len(stream), chunk):
            part = stream[start : start + chunk]
            assert cmd.push_all(part, timeout=10.0) == len(part)
            target = control.commands + len(part)
            while control.commands < target:
                t = time.perf_counter_ns()
                lib.ts_worker_run(worker._worker, 0)  # one batch per call
                spent += time.perf_counter_ns() - t
                while evt.pop_batch(ev_buf):
                    pass
                while md.pop_batch(md_buf):
                    pass
        return spent / 1e9, len(stream)
    finally:
        worker.close()
        for r in (cmd, evt, md):
            r.close()
        lat.close()
        control.close()
        for r in made:
            r.close()
        shutil.rmtree(data, ignore_errors=True)


def callgrind_ir(latency: bool, n: int, chunk: int) -> float:
    """Instructions per command inside ts_worker_run, under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        cmd = [
            "valgrind", "--tool=callgrind", "--toggle-collect=ts_worker_run",
            f"--callgrind-out-file={out}", sys.executable, __file__, "--once",
            "on" if latency else "off", "--commands", str(n), "--chunk", str(chunk),
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        m = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.M)
        assert m, "no totals in the callgrind output"
        return int(m.group(1)) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--chunk", type=int, default=8192, help="commands pushed at a time: the batch size"
    )
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--once", choices=["on", "off"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.once:
        run(args.once == "on", args.commands, args.chunk)
        return 0
    per = {True: [], False: []}
    for _ in range(args.rounds):
        for mode in (False, True):
            seconds, n = run(mode, args.commands, args.chunk)
            per[mode].append(seconds / n * 1e9)
    print(f"batches of up to {args.chunk} commands")
    print(f"{'recording':<10} {'best ns/cmd':>12} {'median ns/cmd':>14}")
    for mode in (False, True):
        print(f"{'on' if mode else 'off':<10} {min(per[mode]):>12.1f} "
              f"{statistics.median(per[mode]):>14.1f}")  # fmt: skip
    if args.callgrind:
        n = min(args.commands, 20_000)
        off, on = callgrind_ir(False, n, args.chunk), callgrind_ir(True, n, args.chunk)
        extra = f"+{on - off:.1f}, {100 * (on / off - 1):.1f} %"
        print(f"instructions/command in ts_worker_run ({n} commands, callgrind): "
              f"off {off:.1f}, on {on:.1f} ({extra})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
