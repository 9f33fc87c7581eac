"""`tradsys bench`: run every ``perf/*_bench.py`` and write one report.

Each bench prints its own table and ends stdout with one JSON line (CONVENTIONS.md). The
report puts every figure beside its peer from the same run and the ratio, in one
markdown table per bench, and draws each latency result that carries a percentile
spectrum (``percentiles``, and ``peer_percentiles`` for its peer) as an HdrHistogram-style
percentile plot (PNG). A bench's progress goes to the terminal as it runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Progress = Callable[[str], None]


@dataclass
class BenchRun:
    """One bench's outcome: its JSON document, or why there is none."""

    name: str
    seconds: float
    document: dict[str, Any] | None = None
    error: str | None = None
    plots: dict[str, str] = field(default_factory=dict)  # result name → png file name


def available(perf_dir: Path) -> list[str]:
    return sorted(p.name.removesuffix("_bench.py") for p in perf_dir.glob("*_bench.py"))


def run_bench(perf_dir: Path, name: str, extra: Sequence[str], progress: Progress) -> BenchRun:
    """Run one bench with ``--json``; its stderr (progress) streams to ours."""
    cmd = [sys.executable, str(perf_dir / f"{name}_bench.py"), "--json", *extra]
    started = time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            stdout, _ = proc.communicate()
        except KeyboardInterrupt:
            # Ctrl-C reached the bench too (one process group): it stops its workers and
            # unlinks its segments on the way out -- wait for that (subprocess.run would
            # SIGKILL it a quarter of a second in, leaving them behind)
            _wait_for_cleanup(proc)
            raise
    run = BenchRun(name, time.monotonic() - started)
    lines = stdout.strip().splitlines()
    if proc.returncode != 0:
        run.error = f"exited {proc.returncode}"
    elif not lines:
        run.error = "printed nothing"
    else:
        try:
            run.document = json.loads(lines[-1])
        except ValueError:
            run.error = "its last line is not JSON"
    progress(f"{name}: {'done' if run.error is None else run.error} in {run.seconds:.0f} s")
    return run


CLEANUP_S = 30.0  # a bench's own teardown after Ctrl-C: workers joined, segments unlinked


def _wait_for_cleanup(proc: subprocess.Popen[str]) -> None:
    """Let an interrupted bench finish its cleanup; a second Ctrl-C, or one that takes
    longer than CLEANUP_S, kills it (its leftovers are then the next run's to reclaim)."""
    try:
        proc.wait(CLEANUP_S)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def run_all(
    perf_dir: Path, names: Sequence[str], extra: Sequence[str], progress: Progress
) -> list[BenchRun]:
    runs = []
    for i, name in enumerate(names, 1):
        progress(f"[{i}/{len(names)}] {name} ...")
        runs.append(run_bench(perf_dir, name, extra, progress))
    return runs


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit.endswith("/s") and value >= 1e3:
        return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.0f} k"
    return f"{value:.3g}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _can_plot() -> bool:
    """matplotlib comes with the ``bench`` extra (`make` installs it); without it the
    report is tables only."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def plot_spectrum(result: dict[str, Any], path: Path) -> None:
    """Latency against percentile, the tail stretched out (x = 1 / (1 - p)), TradSys and
    its peer on one chart."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    series = [("TradSys", result["percentiles"])]
    if result.get("peer_percentiles"):
        series.append((str(result.get("peer")), result["peer_percentiles"]))
    for label, points in series:
        pts = [(p, v) for p, v in points if p < 100]
        ax.plot([1 / (1 - p / 100) for p, _ in pts], [v for _, v in pts], marker="o", label=label)
    ax.set_xscale("log")
    ticks = [50, 90, 99, 99.9, 99.99, 99.999]
    ax.set_xticks([1 / (1 - t / 100) for t in ticks], [f"{t}%" for t in ticks])
    ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel(f"latency ({result.get('unit', 'us')})")
    ax.set_title(result["name"])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(runs: Sequence[BenchRun], out_dir: Path, command: str) -> Path:
    """report.md (+ results.json and one PNG per latency spectrum) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# TradSys benchmark report",
        "",
        f"Made by `{command}` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
        f"{len(runs)} bench(es) in {sum(r.seconds for r in runs):.0f} s. Each figure's "
        "peer was measured in the same run; the ratio is TradSys's advantage (above 1: "
        "TradSys wins).",
        "",
    ]
    for run in runs:
        doc = run.document
        head = f"## {run.name} ({run.seconds:.0f} s"
        if doc is not None:
            head += f", {'quick' if doc.get('quick') else 'full'}, {doc.get('cpus')} CPUs"
        lines += [head + ")", ""]
        if doc is None:
            lines += [f"Failed: {run.error}.", ""]
            continue
        lines += [
            "| result | TradSys | unit | peer | peer value | ratio |",
            "|---|---:|---|---|---:|---:|",
        ]
        for r in doc["results"]:
            lines.append(
                f"| `{r['name']}` | {_number(r['value'], r['unit'])} | {r['unit']} | "
                f"{r.get('peer') or '-'} | {_number(r.get('peer_value'), r['unit'])} | "
                f"{_ratio(r.get('ratio'))} |"
            )
            if r.get("percentiles") and _can_plot():
                png = re.sub(r"[^A-Za-z0-9_.-]", "_", r["name"]) + ".png"
                plot_spectrum(r, out_dir / png)
                run.plots[r["name"]] = png
        lines.append("")
        for name, png in run.plots.items():
            lines += [f"![{name}]({png})", ""]
    (out_dir / "results.json").write_text(
        json.dumps(
            [
                {"bench": r.name, "seconds": r.seconds, "error": r.error, "document": r.document}
                for r in runs
            ],
            indent=2,
        )
    )
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report
