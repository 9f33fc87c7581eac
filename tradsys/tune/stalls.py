"""When a CPU, or the whole machine, stopped running threads: a watch that can run beside
a live engine.

The jitter probe (tradsys.tune.jitter) spins and so needs CPUs the engine does not use.
This watch sleeps (native/stall_watch.h): one thread per CPU, pinned, at a real-time
priority when allowed, asks to be woken every millisecond and keeps each wake-up that
came more than ``floor`` late. A real-time thread is woken ahead of every ordinary task,
so a late wake-up is time its CPU was not running threads at all. Stalls that overlap in
time on **every** watched CPU are machine-wide: the whole machine stopped, which in a
virtual machine is the host not running it (no setting inside the guest removes those;
on the 2-vCPU VM this project is measured on they are what the e2e bench's millisecond
tail is made of). Stalls on one CPU only are that CPU's own: an interrupt storm, kernel
work that cannot be preempted, a real-time task above the watch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from tradsys._native import ffi, lib
from tradsys.tune.per_cpu import on_each_cpu

PERIOD_NS = 1_000_000
KEEP = 4096  # stalls kept per CPU; beyond it they are only counted
WATCH_PRIORITY = 1  # SCHED_FIFO: above every ordinary task, below the kernel's own


@dataclass(frozen=True)
class Stall:
    cpu: int
    due_ns: int  # CLOCK_MONOTONIC: when the watch should have woken
    late_ns: int  # how long after that it ran

    @property
    def end_ns(self) -> int:
        return self.due_ns + self.late_ns


@dataclass(frozen=True)
class CpuStalls:
    """One CPU's watch."""

    cpu: int
    seconds: float
    realtime: bool  # whether the watch ran at SCHED_FIFO (else ordinary tasks delay it too)
    wakeups: int
    stalls: int  # wake-ups later than the floor
    late_ns: int  # their summed lateness
    max_late_ns: int
    kept: list[Stall]  # the first KEEP of them


def watch_cpu(cpu: int, seconds: float, floor_ns: int, period_ns: int = PERIOD_NS) -> CpuStalls:
    """Watch ``cpu`` from the calling thread (pinned to it, real-time if allowed), waking
    every ``period_ns`` (a stall shorter than that is seen only when it covers a
    wake-up); the thread's CPU mask and policy are put back after."""
    own_cpus = os.sched_getaffinity(0)  # 0 from a thread: this thread only
    own_policy, own_param = os.sched_getscheduler(0), os.sched_getparam(0)
    os.sched_setaffinity(0, {cpu})
    try:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(WATCH_PRIORITY))
            realtime = True
        except PermissionError:
            realtime = False
        w = ffi.new("ts_stall_watch *")
        out = ffi.new("ts_stall[]", KEEP)
        lib.ts_stall_watch_run(int(seconds * 1e9), period_ns, floor_ns, out, KEEP, w)
    finally:
        if realtime:
            os.sched_setscheduler(0, own_policy, own_param)
        os.sched_setaffinity(0, own_cpus)
    return CpuStalls(
        cpu=cpu,
        seconds=w.run_ns / 1e9,
        realtime=realtime,
        wakeups=int(w.wakeups),
        stalls=int(w.stalls),
        late_ns=int(w.late_ns),
        max_late_ns=int(w.max_late_ns),
        kept=[Stall(cpu, int(out[i].due_ns), int(out[i].late_ns)) for i in range(w.kept)],
    )


def watch_cpus(
    cpus: Iterable[int], seconds: float, floor_ns: int, period_ns: int = PERIOD_NS
) -> list[CpuStalls]:
    """Every CPU at the same time, a thread each (the C call releases the GIL)."""
    return on_each_cpu(cpus, lambda cpu: watch_cpu(cpu, seconds, floor_ns, period_ns), "stalls")


def machine_wide(results: list[CpuStalls]) -> list[tuple[int, int]]:
    """The spans (start, end ns) in which every watched CPU was stalled at once, in time
    order. Empty for one CPU (nothing to tell a machine-wide stall from that CPU's own)."""
    if len(results) < 2:
        return []
    spans = [(s.due_ns, s.end_ns) for s in results[0].kept]
    for r in results[1:]:
        spans = _intersect(spans, [(s.due_ns, s.end_ns) for s in r.kept])
    return spans


def _intersect(xs: list[tuple[int, int]], ys: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Where two time-ordered lists of disjoint spans overlap (one pass over both)."""
    out = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        lo, hi = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if lo < hi:
            out.append((lo, hi))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def render(results: list[CpuStalls], floor_ns: int) -> str:
    """`tradsys tune stalls`' report: per CPU, then the machine-wide spans."""
    lines = []
    for r in results:
        how = "real-time" if r.realtime else "NOT real-time: ordinary tasks delay it too"
        lines.append(
            f"CPU {r.cpu}: {r.stalls} wake-ups over {floor_ns / 1e6:g} ms late of "
            f"{r.wakeups} in {r.seconds:.1f} s, {r.late_ns / 1e6:.1f} ms in all, latest "
            f"{r.max_late_ns / 1e6:.2f} ms ({how})"
        )
    wide = machine_wide(results)
    if len(results) >= 2:
        total = sum(b - a for a, b in wide)
        longest = max((b - a for a, b in wide), default=0)
        lines.append(
            f"every CPU stalled at once: {len(wide)} times, {total / 1e6:.1f} ms in all, "
            f"longest {longest / 1e6:.2f} ms"
            + (
                " -- the whole machine stopped; in a VM, the host did not run it "
                "(see `tradsys tune check`: free page reporting sets these off; else "
                "dedicated host CPUs)"
                if wide
                else ""
            )
        )
    return "\n".join(lines)
