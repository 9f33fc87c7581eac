"""The recovery bench's "snapshot stall": how long a periodic snapshot stops a shard.

A real worker process (spawned as the supervisor spawns it) takes a stream of commands
that this process keeps ahead of it (a 64 k-slot commands ring refilled every turn, its
events and market data drained), with periodic snapshots on. The figure is the worker's
own gauge ``batch_gap_max_ns`` (native/worker.h): the longest time from the end of one
batch to the start of the next while commands were waiting in the ring — whatever stopped
it: the snapshot, a group commit, a return to Python. Per case, in one run, alternating:

* ``inline`` — ``[journal] snapshot_writer = "inline"``, the old path: the loop quiesces
  (fdatasync of the journal, every output pushed), returns to Python, which serializes,
  writes, fsyncs, renames and prunes before the loop goes on;
* ``background`` — the loop serializes the books at a batch boundary and hands the bytes
  to the writer thread (``snapshot_serialize_ns`` is that part alone);
* ``fork`` — the default: the loop forks at the batch boundary and a child serializes and
  writes (``snapshot_fork_ns`` is fork() on the worker's thread; after it the worker pays a
  copy-on-write fault per page it writes while the child runs: ``snapshot_cow_faults``,
  and ``fork_batch_max_ns``, the longest batch meanwhile, against ``batch_max_ns``, the
  longest batch of the ``off`` run);
* ``off`` — no periodic snapshot at all: the floor the other two stand on (group commits,
  scheduling on a shared 2-core machine).

Workloads: the bench's venue stream (a shallow book), and ``perf/_engine_workloads``'s
deep book (1 M resting orders; 250 k with --quick) with venue-like activity on top — the
serialization of a deep book is the part of a snapshot that stays on the worker's thread.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as common
import msgspec
import numpy as np

from tradsys.config import SnapshotWriter
from tradsys.cores.control import WorkerControl, WorkerState
from tradsys.cores.worker import WorkerSpec
from tradsys.journal.writer import Durability
from tradsys.matching import Instrument
from tradsys.ring import Ring, Role, segment_name
from tradsys.wire import EVENT_DTYPE, LAYOUT_VERSION, MD_DTYPE, RECORD_SIZE

MODES = ("inline", "background", "fork", "off")
WRITERS: dict[str, SnapshotWriter] = {
    "inline": "inline",
    "background": "background",
    "fork": "fork",
    "off": "background",  # snapshot_every 0: only recovery's and the stop's
}
RING_SLOTS = 1 << 16
PUSH_CHUNK = 8192
READY_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 120.0


class StallError(Exception):
    """A stall run could not measure (the worker failed or did not finish)."""


@dataclass(frozen=True)
class StallCase:
    """One workload under one durability, its snapshot interval chosen so that periodic
    snapshots fall where the book is as deep as it gets."""

    key: str
    label: str
    commands: Any
    instruments: list[Instrument]
    durability: Durability
    snapshot_every: int


@dataclass(frozen=True)
class StallRun:
    mode: str
    gap_ms: float  # batch_gap_max_ns
    snapshots: int  # periodic ones taken (the recovery one at seq 0 not counted)
    deferred: int
    serialize_ms: float  # the last snapshot's part on the worker's thread (0 inline)
    write_ms: float  # its write, hand-off to visible (writer thread)
    seconds: float  # first command pushed → last matched
    fork_ms: float  # fork mode: the last fork() on the worker's thread
    child_ms: float  # fork mode: the child's serialization
    cow_faults: int  # fork mode: the worker thread's minor faults while the last child ran
    fork_batch_max_ms: float  # fork mode: the longest batch while a child ran
    batch_max_ms: float  # the longest batch of the run


@dataclass
class _Shard:
    """Rings and control block for one run, this process's ends of the rings."""

    instance: str
    made: list[Ring]
    control: WorkerControl

    @classmethod
    def make(cls, instance: str) -> _Shard:
        made: list[Ring] = []
        control: WorkerControl | None = None
        try:
            ends: list[tuple[str, Role]] = [
                ("cmd", "producer"),
                ("evt", "consumer"),
                ("md", "consumer"),
            ]
            for role, mine in ends:
                made.append(
                    Ring.create(
                        segment_name(instance, role, 0),
                        slot_size=RECORD_SIZE,
                        capacity=RING_SLOTS,
                        layout_version=LAYOUT_VERSION,
                        role=mine,
                    )
                )
            control = WorkerControl.create(segment_name(instance, "ctl", 0))
        except BaseException:
            for ring in made:
                ring.close()
            raise
        return cls(instance, made, control)

    def close(self) -> None:
        for ring in self.made:
            ring.close()
        self.control.close()


def _drain(shard: _Shard, ev: Any, md: Any) -> None:
    while shard.made[1].pop_batch(ev) > 0:
        pass
    while shard.made[2].pop_batch(md) > 0:
        pass


def _wait(
    shard: _Shard, proc: subprocess.Popen[bytes], done: Callable[[], bool], what: str
) -> None:
    ev, md = np.zeros(RING_SLOTS, EVENT_DTYPE), np.zeros(RING_SLOTS, MD_DTYPE)
    t0 = time.monotonic()
    while not done():
        _drain(shard, ev, md)
        # failure is read before done() is asked again: a worker that exits between the
        # two (as a stop should) is then seen done, not taken for one that died
        failed = shard.control.cdata.state == WorkerState.FAILED or proc.poll() is not None
        if done():
            return
        if failed:
            raise StallError(f"worker {what}: exit {proc.poll()}, {shard.control.error}")
        if time.monotonic() - t0 > RUN_TIMEOUT_S:
            raise StallError(f"worker {what}: not done after {RUN_TIMEOUT_S} s")
        time.sleep(0.0002)


def stall_once(case: StallCase, mode: str, instance: str, data_dir: Path, root: Path) -> StallRun:
    """Spawn a worker for ``case`` in ``mode``, stream every command through it, stop it
    cleanly; the worker's stall gauge and snapshot counters."""
    shard = _Shard.make(instance)
    proc: subprocess.Popen[bytes] | None = None
    try:
        spec = WorkerSpec(
            instance=instance,
            shard_id=0,
            instruments=case.instruments,
            data_dir=str(data_dir),
            durability=case.durability,
            snapshot_every=0 if mode == "off" else case.snapshot_every,
            snapshot_writer=WRITERS[mode],
            wait="spin-park",
            commands=shard.made[0].name,
            events=shard.made[1].name,
            md=shard.made[2].name,
            control=shard.control.name,
        )
        cmd = [sys.executable, "-m", "tradsys.cores.worker", msgspec.json.encode(spec).decode()]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=root,
        )
        ctl = shard.control
        _wait(shard, proc, lambda: ctl.cdata.state == WorkerState.RUNNING, "start-up")
        taken_at_start = int(ctl.cdata.snapshots_taken)
        commands = case.commands
        total = len(commands)
        ev, md = np.zeros(RING_SLOTS, EVENT_DTYPE), np.zeros(RING_SLOTS, MD_DTYPE)
        pushed = 0
        t0 = time.perf_counter()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while pushed < total:
            pushed += shard.made[0].push_batch(commands[pushed : pushed + PUSH_CHUNK])
            _drain(shard, ev, md)
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StallError(f"worker ({mode}) gone or stuck at {pushed:,}: {ctl.error}")
        _wait(shard, proc, lambda: ctl.cdata.processed_seq >= total, f"({mode}) stream")
        seconds = time.perf_counter() - t0
        if mode != "off":
            # a write may still be on its way. Hand-offs are at least snapshot_every
            # apart and one is due whenever that many commands went by, so the last one
            # is visible exactly when snapshot_seq > total - snapshot_every (counting
            # them instead would depend on how many waited for a slow write)
            _wait(
                shard,
                proc,
                lambda: (
                    ctl.cdata.snapshots_taken > taken_at_start
                    and ctl.cdata.snapshot_seq > total - case.snapshot_every
                ),
                f"({mode}) snapshots",
            )
        c = ctl.cdata
        run = StallRun(
            mode=mode,
            gap_ms=int(c.batch_gap_max_ns) / 1e6,
            snapshots=int(c.snapshots_taken) - taken_at_start,
            deferred=int(c.snapshots_deferred),
            serialize_ms=int(c.snapshot_serialize_ns) / 1e6,
            write_ms=int(c.snapshot_write_ns) / 1e6,
            seconds=seconds,
            fork_ms=int(c.snapshot_fork_ns) / 1e6,
            child_ms=int(c.snapshot_child_ns) / 1e6,
            cow_faults=int(c.snapshot_cow_faults),
            fork_batch_max_ms=int(c.fork_batch_max_ns) / 1e6,
            batch_max_ms=int(c.batch_max_ns) / 1e6,
        )
        ctl.request_stop()
        for ring in shard.made:
            ring.wake()
        _wait(shard, proc, lambda: proc.poll() is not None, f"({mode}) stop")
        if proc.returncode != 0:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise StallError(f"worker ({mode}) exited {proc.returncode}: {err[-2000:]}")
        if mode != "off" and run.snapshots < 1:
            raise StallError(f"no periodic snapshot was taken in {case.label} ({mode})")
        return run
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        shard.close()


def measure(
    cases: list[StallCase],
    rounds: int,
    new_instance: Callable[[], str],
    new_dir: Callable[[str], Path],
    root: Path,
) -> dict[str, dict[str, list[StallRun]]]:
    """Every case in every mode, ``rounds`` times, the modes rotating per round."""
    runs: dict[str, dict[str, list[StallRun]]] = {c.key: {m: [] for m in MODES} for c in cases}
    for rnd in range(rounds):
        order = MODES[rnd % len(MODES) :] + MODES[: rnd % len(MODES)]
        for case in cases:
            for mode in order:
                common.note(
                    f"recovery bench: snapshot stall, {case.label}, {mode}, round {rnd + 1}"
                )
                directory = new_dir(f"stall-{case.key}-{mode}-{rnd}")
                runs[case.key][mode].append(stall_once(case, mode, new_instance(), directory, root))
                with contextlib.suppress(OSError):
                    for f in directory.iterdir():
                        f.unlink()
    return runs


def report(
    cases: list[StallCase], runs: dict[str, dict[str, list[StallRun]]], rounds: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Result rows (CONVENTIONS.md names) and the tables."""
    results: list[dict[str, Any]] = []
    rows, fork_rows = [], []
    med = common.median
    for case in cases:
        r = runs[case.key]
        inline, bg, fork, off = (med([x.gap_ms for x in r[m]]) for m in MODES)
        serialize = med([x.serialize_ms for x in r["background"]])
        write = med([x.write_ms for x in r["background"]])
        fork_call = med([x.fork_ms for x in r["fork"]])
        child = med([x.child_ms for x in r["fork"]])
        faults = med([float(x.cow_faults) for x in r["fork"]])
        fork_batch = med([x.fork_batch_max_ms for x in r["fork"]])
        off_batch = med([x.batch_max_ms for x in r["off"]])
        bg_batch = med([x.batch_max_ms for x in r["background"]])
        rows.append(
            [
                case.label,
                f"{len(case.commands):,} / {case.snapshot_every:,}",
                f"{inline:.2f}",
                f"{bg:.2f}",
                f"{fork:.2f}",
                common.fmt_ratio(bg / fork if fork > 0 else None),
                f"{off:.2f}",
                f"{serialize:.2f}",
                f"{write:.1f}",
                f"{sum(x.deferred for x in r['background'])}",
            ]
        )
        fork_rows.append(
            [
                case.label,
                f"{fork_call:.2f}",
                f"{child:.1f}",
                f"{faults:,.0f}",
                f"{fork_batch:.2f}",
                f"{bg_batch:.2f}",
                f"{off_batch:.2f}",
            ]
        )
        suffix = "" if case.key == "venue_group" else f".{case.key}"
        # the shipped mode (fork) against the old path, then against the thread
        results.append(
            common.result(
                f"recovery.snapshot_stall{suffix}_ms",
                "ms",
                fork,
                higher_is_better=False,
                peer='snapshot_writer = "inline"',
                peer_value=inline,
            )
        )
        results.append(
            common.result(
                f"recovery.snapshot_stall{suffix}.fork_vs_background_ms",
                "ms",
                fork,
                higher_is_better=False,
                peer='snapshot_writer = "background"',
                peer_value=bg,
            )
        )
        results.append(
            common.result(
                f"recovery.snapshot_serialize{suffix}_ms", "ms", serialize, higher_is_better=False
            )
        )
        results.append(
            common.result(
                f"recovery.snapshot_fork{suffix}_ms", "ms", fork_call, higher_is_better=False
            )
        )
        results.append(
            common.result(
                f"recovery.snapshot_fork_batch_max{suffix}_ms",
                "ms",
                fork_batch,
                higher_is_better=False,
                peer="longest batch without snapshots",
                peer_value=off_batch,
            )
        )
        results.append(
            common.result(
                f"recovery.snapshot_cow_faults{suffix}", "faults", faults, higher_is_better=False
            )
        )
        results.append(
            common.result(
                f"recovery.snapshot_stall{suffix}.no_snapshots_ms",
                "ms",
                off,
                higher_is_better=False,
            )
        )
    text = [
        f"snapshot stall: the longest end-of-batch → next-batch gap while commands waited "
        f"(the worker's batch_gap_max_ns), ms, median of {rounds}; periodic snapshots on:",
        common.table(
            [
                "workload, durability",
                "commands / every",
                "inline",
                "background",
                "fork",
                "bg/fork",
                "no snapshots",
                "serialize",
                "bg write",
                "deferred",
            ],
            rows,
        ),
        "  (serialize: the background snapshot's part on the worker's thread; bg write: its "
        "file write on the writer thread, hand-off to visible, journal wait included)",
        "",
        "fork mode, what the worker's thread still pays (ms unless said):",
        common.table(
            [
                "workload, durability",
                "fork()",
                "child serialize",
                "COW faults",
                "longest batch, child running",
                "longest batch, background",
                "longest batch, no snapshots",
            ],
            fork_rows,
        ),
        "  (a batch is match + push, a group commit's fdatasync included; while a child "
        "runs, each page the worker writes is copied first)",
    ]
    return results, text
