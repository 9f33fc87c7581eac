"""Shared pieces of the perf/ benchmarks: result rows, the JSON line, the human table.

Every bench prints a table and, with ``--json``, ends stdout with one JSON object in the
format of CONVENTIONS.md (``bench``, ``quick``, ``cpus``, ``python``, ``results``). Progress
and notes go to stderr so that stdout holds only the table and that last line.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tradsys.cores.cpu_latency import (
    CpuLatencyError,
    CpuLatencyRequest,
    halts_whatever_is_asked,
)
from tradsys.exit_codes import EXIT_INTERNAL, EXIT_INTERRUPTED


def result(
    name: str,
    unit: str,
    value: float,
    *,
    higher_is_better: bool,
    peer: str | None = None,
    peer_value: float | None = None,
) -> dict[str, Any]:
    """One row of ``results``; ``ratio`` is TradSys's advantage (above 1 means it wins)."""
    ratio: float | None = None
    if peer is not None and peer_value is not None and value > 0 and peer_value > 0:
        ratio = value / peer_value if higher_is_better else peer_value / value
    return {
        "name": name,
        "unit": unit,
        "value": float(value),
        "higher_is_better": higher_is_better,
        "peer": peer,
        "peer_value": None if peer_value is None or peer is None else float(peer_value),
        "ratio": None if ratio is None else round(ratio, 3),
    }


def cpu_count() -> int:
    """CPUs this process may run on (what the bench really had), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def document(bench: str, quick: bool, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "bench": bench,
        "quick": quick,
        "cpus": cpu_count(),
        "python": platform.python_version(),
        "results": results,
    }


EXIT_FAILED = EXIT_INTERNAL  # CONVENTIONS: an internal failure


def run_bench(name: str, main: Callable[[], int]) -> int:
    """A bench's exit code: its own, or 2 for a failure (one line naming it; with the
    traceback when it is not one the bench raised on purpose, a ``BenchError``) and 130
    for Ctrl-C (a line, not a traceback: the bench's ``finally`` blocks have cleaned up)."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{name} bench interrupted; what it started is stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if type(exc).__name__ != "BenchError":
            traceback.print_exc()
        print(f"{name} bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def emit_json(bench: str, quick: bool, results: list[dict[str, Any]]) -> None:
    """Print the one-line JSON document; call it last, so it is stdout's last line."""
    sys.stdout.flush()
    print(json.dumps(document(bench, quick, results), separators=(", ", ": ")), flush=True)


def note(message: str) -> None:
    """Progress for a human, kept off stdout."""
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def idle_polling() -> Iterator[str]:
    """Hold a 0 µs CPU latency request (idle CPUs poll; ``[engine] cpu_latency_us = 0``)
    for everything measured inside, TradSys and its peer alike; yields a line saying
    whether the host allowed it (it needs root)."""
    try:
        request = CpuLatencyRequest(0)
    except CpuLatencyError as exc:
        yield f"idle CPUs: halting (no CPU latency request: {exc.strerror})"
        return
    with request:
        if halts_whatever_is_asked():
            yield (
                "idle CPUs: halting for TradSys and its peer alike (a 0 µs CPU latency "
                "request is held, but this host has no cpuidle driver to obey it)"
            )
        else:
            yield "idle CPUs: polling for TradSys and its peer alike (a 0 µs CPU latency request)"


def platform_jitter(bench: str, quick: bool) -> tuple[list[dict[str, Any]], str]:
    """What the platform takes from a thread that never sleeps, every CPU probed at once
    (``tradsys tune jitter``), measured in the same run as the latencies it bounds: each
    gap stops whatever order is in flight on that CPU, so a latency percentile cannot
    beat the gaps that many orders meet. Returns the results (the worst CPU's) and a line
    for the report."""
    from tradsys.tune.jitter import probe_cpus

    cpus = probe_cpus(os.sched_getaffinity(0), 0.25 if quick else 1.0)
    rows = [
        result(
            f"{bench}.platform.gaps_over_20us_per_s",
            "gaps/s",
            max(r.per_second(20) for r in cpus),
            higher_is_better=False,
        ),
        result(
            f"{bench}.platform.cpu_lost_pct",
            "%",
            max(r.lost_fraction for r in cpus) * 100,
            higher_is_better=False,
        ),
        result(
            f"{bench}.platform.longest_gap",
            "us",
            max(r.max_ns for r in cpus) / 1000,
            higher_is_better=False,
        ),
    ]
    line = "platform (a thread spinning on each CPU at once, as `tradsys tune jitter`): "
    return rows, line + "; ".join(r.summary() for r in cpus)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def fmt_rate(value: float | None) -> str:
    """Records per second, compactly: 51.2M, 840k."""
    if value is None or value != value:  # None or NaN
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"


def fmt_us(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.1f}x" if value < 100 else f"{value:.0f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (cell, w) in enumerate(zip(cells, widths, strict=False)):
            out.append(str(cell).ljust(w) if i == 0 else str(cell).rjust(w))
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


class MachineStalls:
    """``tradsys tune stalls`` beside a timed run: a real-time thread per CPU, waking
    every 5 ms (200 short wake-ups a second per CPU, so as not to become what it
    measures), keeps each wake-up over 2 ms late; the spans in which every CPU stalled
    at once are time the whole machine did not run (in a VM, the host's). Start it,
    run, then :meth:`results` (it waits out the watch's ``seconds``)."""

    FLOOR_NS = 2_000_000
    PERIOD_NS = 5_000_000

    def __init__(self, bench: str, seconds: float) -> None:
        from tradsys.config import available_cores
        from tradsys.tune.stalls import CpuStalls, watch_cpus

        self.bench, self.seconds = bench, seconds
        # every CPU of the machine, not this thread's mask: the bench pins itself to one
        self.watched = sorted(available_cores())
        self._cpus: list[CpuStalls] = []
        self._thread = threading.Thread(
            target=lambda: self._cpus.extend(
                watch_cpus(self.watched, seconds, self.FLOOR_NS, self.PERIOD_NS)
            ),
            name="machine-stalls",
            daemon=True,
        )
        self._thread.start()

    def results(self) -> tuple[list[dict[str, Any]], str]:
        from tradsys.tune.stalls import machine_wide

        self._thread.join()
        spans = machine_wide(self._cpus)
        total_ms = sum(b - a for a, b in spans) / 1e6
        longest_ms = max((b - a for a, b in spans), default=0) / 1e6
        rows = [
            result(f"{self.bench}.platform.machine_stalls", "stalls", len(spans),
                   higher_is_better=False),
            result(f"{self.bench}.platform.machine_stall_ms", "ms", total_ms,
                   higher_is_better=False),
        ]  # fmt: skip
        line = (
            f"whole-machine stalls over the {self.seconds:g} s watched (the real-time "
            f"watches of CPUs {self.watched} late at once, as `tradsys tune stalls`): "
            f"{len(spans)}, {total_ms:.1f} ms in all, longest {longest_ms:.1f} ms"
        )
        return rows, line
