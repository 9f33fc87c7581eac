"""Where the md path's wake-ups go: ``perf sched`` over the md bench's latency run.

Runs ``md_bench``'s latency measure (a real instance, open-loop trades at a fixed rate,
idle CPUs polling when this host allows it, as the bench runs it: a CPU woken from its
halt state here takes ~40 µs more per hop across CPUs) and, once trades flow in the
batched-frames run, records ``perf sched record -a`` for a
few seconds; then reads ``perf sched timehist -w`` and prints, per step of the chain
bench → worker → sidecar → its ZeroMQ I/O thread → the subscriber's I/O thread →
subscriber, how long the woken thread took to wake the next one (p50/p90/p99, split by
whether it ran on its waker's CPU), and which other tasks held a CPU while one of the
chain's threads was runnable but waiting for it (scheduling delay over 200 µs).

Needs ``perf`` with sched tracepoints (root or ``perf_event_paranoid`` <= 1). A tool for
looking, not a benchmark: no targets, no JSON.

Usage: _md_wakeups.py [--trades N] [--rate R] [--record-s S]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import md_bench

from tradsys.ring import reclaim_stale

CHAIN = ("bench", "worker", "sidecar", "sidecar I/O", "subscriber I/O", "subscriber")
WAKE = re.compile(r"^\s*([\d.]+)\s+\[(\d+)\]\s+(\S+)\s+awakened: (\S+)")
SWITCH = re.compile(r"^\s*([\d.]+)\s+\[(\d+)\]\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
TID = re.compile(r"\[(\d+)")
LONG_DELAY_MS = 0.2
# (time s, cpu, "w" or "s:<task>", tid, woken tid, sch delay ms, run ms)
Event = tuple[float, int, str, int | None, int | None, float, float]


def _tasks(pid: int) -> dict[int, str]:
    """{tid: thread name} of a process (empty once it is gone)."""
    out = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                out[int(tid)] = f.read().strip()
    except OSError:
        pass
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def find_chain(instance: str) -> dict[str, int] | None:
    """The chain's thread ids, once the worker, sidecar and subscriber all run."""
    me, found = os.getpid(), {"bench": threading.main_thread().native_id or os.getpid()}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        cmd = _cmdline(pid)
        if "tradsys.cores.worker" in cmd and f"/{instance}/worker-" in cmd:
            found["worker"] = pid
        elif "tradsys.cores.md" in cmd and f"/{instance}" in cmd:
            found["sidecar"] = pid
            io = [t for t, name in _tasks(pid).items() if name.startswith("ZMQbg/IO")]
            if io:
                found["sidecar I/O"] = io[0]
        elif "multiprocessing.spawn" in cmd and _parent(pid) == me:
            io = [t for t, name in _tasks(pid).items() if name.startswith("ZMQbg/IO")]
            if io:  # the subscriber (the resource tracker has no ZeroMQ thread)
                found["subscriber"], found["subscriber I/O"] = pid, io[0]
    return found if all(k in found for k in CHAIN) else None


def record(instance: str, data: Path, seconds: float, out: dict[str, object]) -> None:
    """In a thread: wait for the chain, let trades flow, then record the scheduler."""
    deadline = time.monotonic() + 120
    while (chain := find_chain(instance)) is None:
        if time.monotonic() > deadline:
            out["error"] = "the chain's processes never all appeared"
            return
        time.sleep(0.05)  # polling /proc for processes that are starting
    time.sleep(1.0)  # the subscriber has subscribed and trades flow
    out["chain"] = chain
    done = subprocess.run(
        ["perf", "sched", "record", "-a", "-o", str(data), "--", "sleep", str(seconds)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        out["error"] = f"perf sched record failed: {done.stderr.strip()[-300:]}"


def parse(data: Path) -> list[Event]:
    """The timehist's wake-ups and switches, one Event each."""
    text = subprocess.run(
        ["perf", "sched", "timehist", "-w", "-i", str(data)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    events: list[Event] = []
    for line in text.splitlines():
        if m := WAKE.match(line):
            a, b = TID.search(m.group(3)), TID.search(m.group(4))
            events.append(
                (
                    float(m.group(1)),
                    int(m.group(2)),
                    "w",
                    int(a.group(1)) if a else None,
                    int(b.group(1)) if b else None,
                    0.0,
                    0.0,
                )
            )
        elif m := SWITCH.match(line):
            a = TID.search(m.group(3))
            events.append(
                (
                    float(m.group(1)),
                    int(m.group(2)),
                    "s:" + m.group(3).split("[")[0],
                    int(a.group(1)) if a else None,
                    None,
                    float(m.group(5)),
                    float(m.group(6)),
                )
            )
    return events


def chain_steps(events: list[Event], chain: dict[str, int]) -> list[str]:
    tids = [chain[k] for k in CHAIN]
    lines = [
        f"{'step (A wakes B; B until it wakes the next)':52} {'where':6} {'n':>6} "
        f"{'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8}"
    ]
    for k in range(len(tids) - 1):
        a, b = tids[k], tids[k + 1]
        c = tids[k + 2] if k + 2 < len(tids) else None
        got: dict[str, list[float]] = collections.defaultdict(list)
        pending: tuple[float, int] | None = None
        for t, cpu, kind, x, y, _, _ in events:
            if kind == "w" and x == a and y == b:
                pending = (t, cpu)
            elif pending is not None and (
                (c is not None and kind == "w" and x == b and y == c)
                or (c is None and kind.startswith("s:") and x == b)
            ):
                got["same" if cpu == pending[1] else "across"].append((t - pending[0]) * 1e6)
                pending = None
        name = f"{CHAIN[k]} wakes {CHAIN[k + 1]}"
        for where in ("same", "across"):
            v = np.array(got.get(where, []))
            if len(v):
                p50, p90, p99 = np.percentile(v, [50, 90, 99])
                lines.append(f"{name:52} {where:6} {len(v):6} {p50:8.1f} {p90:8.1f} {p99:8.1f}")
    return lines


def held_cpu(events: list[Event], chain: dict[str, int]) -> list[str]:
    """Who ran on the CPU while a chain thread waited (sch delay) over LONG_DELAY_MS."""
    mine = set(chain.values())
    by_cpu: dict[int, list[tuple[float, float, str]]] = collections.defaultdict(list)
    names = {tid: name for name, tid in chain.items()}
    for t, cpu, kind, x, _, _, run in events:
        if kind.startswith("s:"):
            who = f"{kind[2:]} (the {names[x]})" if x in names else kind[2:]
            by_cpu[cpu].append((t - run / 1000, t, who))
    blame: dict[str, float] = collections.defaultdict(float)
    n = 0
    for t, cpu, kind, x, _, delay, run in events:
        if kind.startswith("s:") and x in mine and delay > LONG_DELAY_MS:
            n += 1
            start, end = t - (run + delay) / 1000, t - run / 1000
            for a, b, who in by_cpu[cpu]:
                if b > start and a < end:
                    blame[who] += (min(b, end) - max(a, start)) * 1000
    lines = [f"chain threads waiting over {LONG_DELAY_MS} ms for a CPU: {n} times; meanwhile ran:"]
    top = sorted(blame.items(), key=lambda kv: -kv[1])[:10]
    lines += [f"  {ms:8.2f} ms  {who}" for who, ms in top]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=20_000, help="trades per frame mode")
    ap.add_argument("--rate", type=int, default=2_000, help="trades per second")
    ap.add_argument("--record-s", type=float, default=3.0, help="seconds of perf record")
    args = ap.parse_args(argv)
    if shutil.which("perf") is None:
        print("perf is not installed", file=sys.stderr)
        return 1
    if args.trades / args.rate < args.record_s + 3:
        print("--trades / --rate must outlast --record-s by 3 s", file=sys.stderr)
        return 1
    plan = md_bench.Plan(False, 1, 0, args.trades, args.rate, 0)
    root = Path(tempfile.mkdtemp(prefix="md-wakeups-"))
    instance = f"mdw{os.getpid()}"
    data = root / "sched.data"
    out: dict[str, object] = {}
    recorder = threading.Thread(
        target=record, args=(f"{instance}lat", data, args.record_s, out), daemon=True
    )
    try:
        recorder.start()
        # as the bench measures it: idle CPUs polling when this host allows
        polling = md_bench.polling_idle_allowed()
        runs = md_bench.latency(
            root, instance, plan, (1024,), 0 if polling else md_bench.NO_REQUEST
        )
        recorder.join(60)
        if "error" in out:
            print(out["error"], file=sys.stderr)
            return 2
        chain = out["chain"]
        assert isinstance(chain, dict)
        events = parse(data)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        reclaim_stale(instance)
    batched = runs[1024]
    print(
        f"md latency, batched frames, {args.trades:,} trades at {args.rate:,}/s: "
        f"p50 {batched.p50:.0f} µs, p99 {batched.p99:.0f} µs; idle CPUs "
        f"{'polling' if polling else 'halting'}; load average {os.getloadavg()[0]:.2f}"
    )
    print(batched.stages.table())
    print()
    for line in [*chain_steps(events, chain), "", *held_cpu(events, chain)]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
