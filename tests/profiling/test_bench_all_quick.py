"""`tradsys bench --quick` runs every real bench in perf/ and writes the report.

The issue asks that this runs in CI (in under two minutes): here it does, with the real
benches, so a bench that breaks, loses a result name CONVENTIONS.md requires, or stops
printing its JSON line fails the suite. The time it took is printed into the report's
header (and shown by ``pytest --durations``), not asserted: timings on a shared CI machine
are not a test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tradsys.cli
from tradsys.profiling.report import available

# CONVENTIONS.md, "Result names each benchmark must include".
REQUIRED = {
    "ring": [
        "ring.batched.throughput",
        "ring.single.throughput",
        "ring.rtt.p50",
        "ring.rtt.p99",
    ],
    "engine": ["engine.c.throughput", "engine.batch.throughput", "engine.bytes_per_resting_order"],
    "recovery": ["recovery.replay.throughput", "recovery.restart_seconds_per_million"],
    "e2e": [
        "e2e.colocated.max_rate",
        "e2e.colocated.rtt.p50",
        "e2e.colocated.rtt.p99",
        "e2e.tcp.rtt.p99",
    ],
    "md": ["md.delivered.throughput", "md.latency.p99"],
    "gc": ["gateway.gc_pause.p99", "gateway.full_collections_while_trading"],
}


@pytest.mark.multiprocess
@pytest.mark.timeout(600)  # a hang guard only; the report says how long it took
def test_bench_quick_runs_every_bench_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code = tradsys.cli.main(["bench", "--quick", "--report", str(out)])
    runs = json.loads((out / "results.json").read_text())
    failed = {r["bench"]: r["error"] for r in runs if r["error"] is not None}
    assert code == tradsys.cli.EXIT_OK and not failed, f"benches failed: {failed}"

    assert {r["bench"] for r in runs} == set(available(tradsys.cli.PERF_DIR)) >= set(REQUIRED)
    report = (out / "report.md").read_text()
    for run in runs:
        doc = run["document"]
        assert doc["quick"] is True and doc["bench"] == run["bench"]
        names = {r["name"] for r in doc["results"]}
        missing = set(REQUIRED.get(run["bench"], [])) - names
        assert not missing, f"{run['bench']}: results {sorted(missing)} are missing"
        for r in doc["results"]:
            assert isinstance(r["value"], int | float), f"{r['name']}: no value"
            assert f"| `{r['name']}` |" in report
            if r.get("peer_value") and r["value"]:  # a zero (say, no GC pause) has no ratio
                assert r["ratio"] is not None and r["ratio"] > 0, r["name"]
    plots = sorted(out.glob("*.png"))
    assert plots, "no percentile plot was drawn"
    assert all(f"]({p.name})" in report for p in plots)
    seconds = sum(r["seconds"] for r in runs)
    with capsys.disabled():
        print(f"\ntradsys bench --quick: {len(runs)} benches in {seconds:.0f} s")
