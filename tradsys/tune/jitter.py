"""What the platform takes from a thread that never sleeps, CPU by CPU.

An engine thread pinned to a core is stopped whenever something else needs that CPU: the
timer tick, an interrupt, a kernel thread, another task, and in a virtual machine the
hypervisor. Each stop is a gap every order in flight waits out, and at a high rate the
queue it leaves takes as long again to drain, so a latency percentile cannot be better
than the platform's gaps allow. The native probe (native/jitter.h) spins reading the
clock on a pinned thread and counts the steps between two reads that took longer than
2 µs; this module runs it on several CPUs at once (a thread each: the C call releases the
GIL) and turns the counts into the `cpu jitter` finding of `tradsys tune check`, the
table of `tradsys tune jitter` and the benches' platform line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from tradsys._native import ffi, lib
from tradsys.tune.checks import Finding, Placement, Verdict
from tradsys.tune.per_cpu import on_each_cpu

CLASSES_US = tuple(int(lib.ts_jitter_class_ns(i)) // 1000 for i in range(lib.TS_JITTER_CLASSES))
# A pinned engine CPU is quiet enough when it loses less than this many gaps over 20 µs
# a second (the order round trip itself is ~15-20 µs: a gap that size doubles it) and
# none over 1 ms (a millisecond's queue at 1 M orders/s is a thousand late orders).
GAPS_20US_OK_PER_S = 1.0
WORST_GAP_OK_US = 1000


@dataclass(frozen=True)
class CpuJitter:
    """One CPU's probe: how often and for how long the spinning thread lost the CPU."""

    cpu: int
    seconds: float
    gaps: int  # steps between two clock reads over 2 µs
    lost_ns: int  # their summed length
    max_ns: int
    over: dict[int, int]  # class limit (µs) -> gaps longer than it

    def per_second(self, over_us: int) -> float:
        """Gaps a second longer than ``over_us`` (one of CLASSES_US)."""
        return self.over[over_us] / self.seconds if self.seconds else 0.0

    @property
    def lost_fraction(self) -> float:
        """The share of the CPU's time the probe did not get."""
        return self.lost_ns / (self.seconds * 1e9) if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"CPU {self.cpu}: {self.per_second(20):.0f} gaps/s over 20 µs, "
            f"{self.per_second(50):.0f}/s over 50 µs, {self.lost_fraction * 100:.2f} % "
            f"of the CPU lost, longest {self.max_ns / 1000:.0f} µs"
        )


def probe_cpu(cpu: int | None, seconds: float) -> CpuJitter:
    """Spin ``seconds`` on the calling thread, first pinned to ``cpu`` (None: where it
    runs now). The thread's own CPU mask is put back after."""
    own = os.sched_getaffinity(0)  # 0 from a thread: this thread only
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        j = ffi.new("ts_jitter *")
        lib.ts_jitter_probe(int(seconds * 1e9), j)
    finally:
        os.sched_setaffinity(0, own)
    return CpuJitter(
        cpu=-1 if cpu is None else cpu,
        seconds=j.run_ns / 1e9,
        gaps=int(j.gaps),
        lost_ns=int(j.lost_ns),
        max_ns=int(j.max_ns),
        over={limit: int(j.over[i]) for i, limit in enumerate(CLASSES_US)},
    )


def probe_cpus(cpus: Iterable[int], seconds: float) -> list[CpuJitter]:
    """Every CPU at the same time, a thread each: the CPUs then have no idle time to
    lend one another, as under load, and the whole probe takes ``seconds``."""
    return on_each_cpu(cpus, lambda cpu: probe_cpu(cpu, seconds), "jitter")


def cpus_to_probe(place: Placement) -> list[int]:
    """The pinned engine cores, or every CPU this process may use when none is pinned."""
    return sorted(place.cores) or sorted(os.sched_getaffinity(0))


def jitter_findings(results: list[CpuJitter]) -> list[Finding]:
    """One ``cpu jitter`` finding per probed CPU."""
    out = []
    for r in results:
        noisy = r.per_second(20) > GAPS_20US_OK_PER_S or r.max_ns > WORST_GAP_OK_US * 1000
        out.append(
            Finding(
                "cpu jitter",
                Verdict.WARN if noisy else Verdict.OK,
                r.summary(),
                "isolate the engine cores (isolcpus, nohz_full, rcu_nocbs: "
                "tuning/kernel-cmdline.example), keep IRQs and kernel threads off them "
                "(tuning/apply.sh); in a VM, dedicated vCPUs: the host's own ticks and "
                "exits show up here and no setting inside the guest removes them",
            )
        )
    return out


def render_table(results: list[CpuJitter]) -> str:
    """`tradsys tune jitter`'s table: gaps a second per class, lost share, longest."""
    head = ["cpu", *(f">{c} µs/s" if c < 1000 else f">{c // 1000} ms/s" for c in CLASSES_US)]
    head += ["lost %", "longest µs"]
    rows = [
        [
            str(r.cpu),
            *(f"{r.per_second(c):.1f}" for c in CLASSES_US),
            f"{r.lost_fraction * 100:.2f}",
            f"{r.max_ns / 1000:.0f}",
        ]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
        for row in [head, *rows]
    ]
    return "\n".join(lines)
