"""The sleeping stall watch: its accounting on chosen wake-ups, the machine-wide spans
against a brute-force model, a stall made on purpose, and `tradsys tune stalls`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradsys._native import ffi, lib
from tradsys.tune.stalls import CpuStalls, Stall, machine_wide, watch_cpu

MS = 1_000_000


def test_wake_ups_later_than_the_floor_are_stalls_kept_up_to_the_capacity() -> None:
    w = ffi.new("ts_stall_watch *")
    out = ffi.new("ts_stall[]", 2)
    for due, late in [(10, 0), (20, 2 * MS), (30, 2 * MS + 1), (40, 30 * MS), (50, 5 * MS)]:
        lib.ts_stall_account(w, out, 2, 2 * MS, due, late)
    assert (w.wakeups, w.stalls, w.kept) == (5, 3, 2)  # 2 ms itself is the floor: no stall
    assert w.late_ns == 2 * MS + 1 + 30 * MS + 5 * MS
    assert w.max_late_ns == 30 * MS
    assert [(out[i].due_ns, out[i].late_ns) for i in range(2)] == [(30, 2 * MS + 1), (40, 30 * MS)]


def cpu(n: int, spans: list[tuple[int, int]]) -> CpuStalls:
    kept = [Stall(n, a, b - a) for a, b in spans]
    return CpuStalls(n, 1.0, True, 1000, len(kept), 0, 0, kept)


def test_machine_wide_spans_are_where_every_cpu_stalled_at_once() -> None:
    a = cpu(0, [(0, 10), (20, 30), (50, 60)])
    b = cpu(1, [(5, 25), (55, 56), (70, 80)])
    assert machine_wide([a, b]) == [(5, 10), (20, 25), (55, 56)]
    c = cpu(2, [(8, 22)])
    assert machine_wide([a, b, c]) == [(8, 10), (20, 22)]
    assert machine_wide([a]) == [], "one CPU cannot tell its own stalls from the machine's"
    assert machine_wide([a, cpu(1, [])]) == []


def disjoint_spans(max_len: int = 6) -> st.SearchStrategy[list[tuple[int, int]]]:
    """Time-ordered, disjoint spans on a small integer clock, as one CPU's watch keeps."""
    gaps_and_lengths = st.lists(st.tuples(st.integers(0, 5), st.integers(1, 5)), max_size=max_len)

    def build(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        spans, t = [], 0
        for gap, length in pairs:
            spans.append((t + gap, t + gap + length))
            t += gap + length + 1  # a watch's next deadline comes after it woke
        return spans

    return gaps_and_lengths.map(build)


@settings(max_examples=300, deadline=None)
@given(st.lists(disjoint_spans(), min_size=2, max_size=4))
def test_machine_wide_matches_a_point_by_point_model(per_cpu: list[list[tuple[int, int]]]) -> None:
    results = [cpu(n, spans) for n, spans in enumerate(per_cpu)]
    got = machine_wide(results)
    covered = set.intersection(*({t for a, b in spans for t in range(a, b)} for spans in per_cpu))
    assert {t for a, b in got for t in range(a, b)} == covered
    assert all(a < b for a, b in got)
    assert got == sorted(got)


def test_a_short_watch_wakes_on_its_period_and_leaves_the_thread_as_it_was() -> None:
    here = max(os.sched_getaffinity(0))
    before = (os.sched_getaffinity(0), os.sched_getscheduler(0))
    r = watch_cpu(here, 0.2, 2 * MS)
    assert (os.sched_getaffinity(0), os.sched_getscheduler(0)) == before
    assert r.cpu == here and 0.2 <= r.seconds < 1.0
    assert 1 <= r.wakeups <= 201  # deadlines 1 ms apart, never two in one period
    assert r.stalls == len(r.kept) and all(s.late_ns > 2 * MS for s in r.kept)


def _watch_started(pid: int) -> bool:
    """Whether a thread of ``pid`` runs at SCHED_FIFO: the watch sets it right before its
    C loop starts (field 41 of /proc/<pid>/task/<tid>/stat is the policy)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[38]) == os.SCHED_FIFO:
            return True
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO needs root (CI runs as root)")
def test_a_process_stopped_for_a_while_is_seen_as_a_long_stall(tmp_path: Path) -> None:
    watched = max(os.sched_getaffinity(0))
    argv = ["tune", "stalls", "--seconds", "1.5", "--cpus", str(watched), "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradsys.cli", *argv],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _watch_started(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "the watch never ran"
        # the stall we make: 60 ms stopped, twice, so that one of them falls inside the
        # watch's loop even if the first came in the instant before its first deadline
        for _ in range(2):
            proc.send_signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            while time.monotonic() - stopped_at < 0.06:
                pass
            proc.send_signal(signal.SIGCONT)
            resumed_at = time.monotonic()
            while time.monotonic() - resumed_at < 0.06:
                pass
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    rows = [json.loads(line) for line in out.splitlines()]
    (row,) = [r for r in rows if "cpu" in r]
    assert row["realtime"] is True and row["cpu"] == watched
    assert max(late for _, late in row["kept"]) >= 50 * MS
    assert rows[-1] == {"machine_wide": []}  # one CPU watched: nothing to compare
