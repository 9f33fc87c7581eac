"""The platform-jitter probe: its accounting on chosen steps, that it sees a CPU taken
from it, the `cpu jitter` finding, and `tradsys tune jitter` / `tune check` on this host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ctrl_c import ctrl_c
from tests.engine_toml import one_shard_instance
from tradsys._native import ffi, lib
from tradsys.ring.segment import process_start_us
from tradsys.tune import Verdict
from tradsys.tune.jitter import CLASSES_US, CpuJitter, jitter_findings, probe_cpu, render_table


def test_each_step_over_the_floor_is_a_gap_counted_in_every_class_it_exceeds() -> None:
    j = ffi.new("ts_jitter *")
    steps = [20, 2_000, 2_001, 7_000, 25_000, 2_000_000]
    for step in steps:
        lib.ts_jitter_account(j, step)
    assert j.reads == len(steps)
    assert j.gaps == 4  # 2 000 ns is the floor itself: not a gap
    assert j.lost_ns == 2_001 + 7_000 + 25_000 + 2_000_000
    assert j.max_ns == 2_000_000
    assert CLASSES_US == (5, 10, 20, 50, 100, 1000)
    assert list(j.over) == [3, 2, 2, 1, 1, 1]
    assert lib.ts_jitter_class_ns(-1) == lib.ts_jitter_class_ns(lib.TS_JITTER_CLASSES) == -1


@pytest.fixture
def competitor() -> Iterator[int]:
    """A CPU-bound process pinned to this process's last CPU; yields that CPU."""
    cpu = max(os.sched_getaffinity(0))
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(proc.pid, {cpu})
        yield cpu
    finally:
        proc.kill()
        proc.wait()


def test_the_probe_sees_a_busy_process_take_its_cpu(competitor: int) -> None:
    r = probe_cpu(competitor, 0.3)
    assert r.cpu == competitor and r.seconds >= 0.3
    # two CPU-bound tasks on one CPU take turns of a scheduler slice (about a millisecond)
    assert r.lost_fraction > 0.25, r.summary()
    assert r.max_ns > 300_000, r.summary()
    assert r.per_second(100) > 10, r.summary()


def quiet_or_not(over_20us: int, max_ns: int) -> CpuJitter:
    over = {c: (over_20us if c <= 20 else 0) for c in CLASSES_US}
    return CpuJitter(
        cpu=3, seconds=2.0, gaps=over_20us, lost_ns=over_20us * 25_000, max_ns=max_ns, over=over
    )


@pytest.mark.parametrize(
    ("over_20us", "max_ns", "verdict"),
    [
        (0, 4_000, Verdict.OK),  # an isolated core: nothing over 20 µs
        (2, 30_000, Verdict.OK),  # one gap a second over 20 µs is allowed
        (700, 30_000, Verdict.WARN),  # a VM's ticks: 350 a second
        (0, 1_500_000, Verdict.WARN),  # one stall over a millisecond
    ],
)
def test_the_finding_warns_on_gaps_that_reach_the_order_path(
    over_20us: int, max_ns: int, verdict: Verdict
) -> None:
    (finding,) = jitter_findings([quiet_or_not(over_20us, max_ns)])
    assert finding.check == "cpu jitter" and finding.verdict is verdict
    assert finding.found.startswith(f"CPU 3: {over_20us / 2:.0f} gaps/s over 20 µs")
    assert f"longest {max_ns / 1000:.0f} µs" in finding.found


def test_the_table_has_a_row_per_cpu_and_a_column_per_class() -> None:
    lines = render_table([quiet_or_not(700, 30_000), quiet_or_not(0, 4_000)]).splitlines()
    assert lines[0].split()[:3] == ["cpu", ">5", "µs/s"]
    assert len(lines) == 3 and lines[1].split()[0] == "3"
    assert lines[1].split()[3] == "350.0"  # >20 µs a second


def tradsys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradsys.cli", *args], capture_output=True, text=True
    )


def test_tune_jitter_reports_each_cpu_asked_for() -> None:
    cpu = min(os.sched_getaffinity(0))
    proc = tradsys("tune", "jitter", "--seconds", "0.05", "--cpus", str(cpu), "--json")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    doc = json.loads(line)
    assert doc["cpu"] == cpu and doc["seconds"] >= 0.05
    assert set(doc["over"]) == {str(c) for c in CLASSES_US}


@pytest.mark.parametrize(
    ("flag", "value"), [("--cpus", "4096"), ("--cpus", "x"), ("--seconds", "0")]
)
def test_tune_jitter_refuses_what_it_cannot_probe(flag: str, value: str) -> None:
    proc = tradsys("tune", "jitter", flag, value)
    assert proc.returncode == 1
    assert "tradsys tune jitter:" in proc.stderr and proc.stdout == ""


def test_tune_check_measures_every_cpu_of_an_unpinned_instance() -> None:
    proc = tradsys("tune", "check", "--jitter-s", "0.05")
    jitter_lines = [line for line in proc.stdout.splitlines() if "cpu jitter" in line]
    assert [line.split("CPU ")[1].split(":")[0] for line in jitter_lines] == [
        str(c) for c in sorted(os.sched_getaffinity(0))
    ]


def test_tune_check_leaves_the_cpus_of_a_running_instance_alone(tmp_path: Path) -> None:
    """A running supervisor (this test process plays it) owns the CPUs: spinning on
    them would take them from the engine, so the line says why it did not measure."""
    config = tmp_path / "engine.toml"
    config.write_text(one_shard_instance("jit", tmp_path))
    (tmp_path / "jit").mkdir()
    (tmp_path / "jit" / "supervisor.json").write_text(
        json.dumps({"supervisor_pid": os.getpid(), "supervisor_start_us": process_start_us()})
    )
    proc = tradsys("tune", "check", "--config", str(config), "--jitter-s", "0.05")
    (line,) = [line for line in proc.stdout.splitlines() if "cpu jitter" in line]
    assert "not measured: instance 'jit' is running" in line, proc.stdout


def running_instance(tmp_path: Path, shards: list[int | None]) -> Path:
    """A config and the status file of its running supervisor (this test process plays it
    and each shard worker, pinned to the given CPUs or, None, unpinned); its path."""
    config = tmp_path / "engine.toml"
    config.write_text(one_shard_instance("jit", tmp_path))
    (tmp_path / "jit").mkdir()
    (tmp_path / "jit" / "supervisor.json").write_text(
        json.dumps(
            {
                "supervisor_pid": os.getpid(),
                "supervisor_start_us": process_start_us(),
                "shards": [
                    {"shard": i, "pid": os.getpid(), "core": core} for i, core in enumerate(shards)
                ],
                "sidecars": [],
            }
        )
    )
    return config


ALLOWED = sorted(os.sched_getaffinity(0))


@pytest.mark.skipif(len(ALLOWED) < 2, reason="needs a CPU the instance leaves free")
def test_tune_jitter_skips_the_cpus_of_a_running_instance_and_says_so(tmp_path: Path) -> None:
    """It spun on a live instance's pinned cores without a word."""
    engine_cpu = ALLOWED[-1]
    config = running_instance(tmp_path, [engine_cpu])
    proc = tradsys("tune", "jitter", "--config", str(config), "--seconds", "0.05", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["cpu"] for line in proc.stdout.splitlines()] == ALLOWED[:-1]
    assert (
        f"skipping CPU {engine_cpu}: instance 'jit' runs there (shard 0 on {engine_cpu})"
    ) in proc.stderr


@pytest.mark.parametrize("pinned", [True, False])
def test_tune_jitter_refuses_when_every_cpu_is_the_running_instances(
    tmp_path: Path, pinned: bool
) -> None:
    """A shard pinned to each CPU, or one unpinned shard (it may run on any)."""
    config = running_instance(tmp_path, list(ALLOWED) if pinned else [None])
    proc = tradsys("tune", "jitter", "--config", str(config), "--seconds", "0.05")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("tradsys tune jitter: not measuring: every CPU")
    assert "instance 'jit' runs there (shard 0 on" in proc.stderr
    assert "--cpus" in proc.stderr


def test_tune_jitter_measures_an_instances_cpu_named_with_cpus_and_warns(tmp_path: Path) -> None:
    cpu = ALLOWED[0]
    config = running_instance(tmp_path, [cpu])
    proc = tradsys(
        "tune", "jitter", "--config", str(config), "--seconds", "0.05", "--cpus", str(cpu), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["cpu"] for line in proc.stdout.splitlines()] == [cpu]
    assert f"WARNING: CPU {cpu}: instance 'jit' runs there (shard 0 on {cpu})" in proc.stderr


@pytest.mark.parametrize("what", ["jitter", "stalls"])
def test_ctrl_c_stops_a_long_measurement_at_once(what: str) -> None:
    """A probe is one C call per CPU that nothing interrupts: on Ctrl-C the command must
    not wait out its --seconds (it did, then exited 2 saying nothing)."""
    cpu = str(min(os.sched_getaffinity(0)))
    cmd = [sys.executable, "-m", "tradsys.cli", "tune", what, "--seconds", "600", "--cpus", cpu]
    # ended far inside the 600 s it was asked to run (ctrl_c's timeout is 60 s)
    code, _, err = ctrl_c(cmd, "stderr", lambda line: "measuring" in line)
    assert code == 130, err
    assert "tradsys tune: interrupted" in err
