#!/usr/bin/env python3
"""Recovery benchmark: journal append rate, journal replay rate, worker restart-to-ready.

One seeded ``tradsys.matching.workload.venue_stream`` (1 M commands; 500 k with --quick)
is journaled once, with the C writer, into a temporary directory on the disk that
``tempfile`` uses (the file system is named in the output). Then, in one run:

* **append**, commands/s, under each durability policy (none; group commit every
  1000 µs, the worker's default; fsync = ``fdatasync`` per batch), at 256 commands per
  batch and at 1: TradSys's C journal (``ts_journal_append`` per batch, called through
  cffi with a pointer into one command array, the group policy driven by
  ``ts_journal_sync_if_due`` after each batch, as the worker's loop does), against its
  peer, a plain Python journal of the same 88-byte records (``struct.pack_into`` of the
  header fields, ``zlib.crc32`` of each record, one unbuffered ``os.write`` per batch,
  ``os.fdatasync`` per the same policy). A third column, "os.write floor", writes
  records built beforehand (no per-record work): the cost of the system calls alone.
  Each case runs for a time budget (or up to 2^20 commands) into a fresh directory,
  the final sync and close included; the cases rotate order per round; medians;
* **replay**, commands/s: ``tradsys.journal.replay`` of the whole journal from scratch
  (no snapshot; a fresh engine, every record's crc checked, the files mapped and warm in
  the page cache), against the reference model (``ReferenceEngine.process`` in batches
  of 4096) replaying the first commands decoded from the same journal, extrapolated per
  command; alternated, medians. The C replay's digest after those first commands is
  checked equal to the reference model's;
* **restart**, seconds: a real worker process (``python -m tradsys.cores.worker SPEC``,
  spawned as the supervisor spawns it, on freshly made rings and control block) from
  spawn until its control block says RUNNING, for a data directory holding (a) nothing,
  the interpreter start-up share; (b) the journal with a snapshot near its end (a short
  tail to replay); (c) the whole journal and no snapshot (a full replay, then the
  snapshot the worker writes before it runs). ``restart_seconds_per_million`` is (c)
  divided by the millions of commands journaled, start-up included: with --quick's
  shorter journal the ~0.15 s of start-up weighs twice as much per million;
* instructions per command of the C append and replay paths counted by callgrind
  (exact and repeatable, unlike the timings on a shared machine);
* **snapshot stall**, ms: the longest time a worker left waiting commands in its ring
  around periodic snapshots, each ``snapshot_writer`` mode side by side (inline, the
  background writer, the fork child — the default — and no snapshots), with what each
  keeps on the worker's thread (serializing the books; fork() and its copy-on-write
  faults), on the venue stream and on a 1 M-order deep book (250 k with --quick); see
  perf/_snapshot_stall.py.

Temporary directories, shared-memory segments and worker processes are removed on the
way out, also after an error or SIGTERM; what a killed run left is reclaimed next time.

Usage: recovery_bench.py [--quick] [--json] [--rounds N] [--commands N] [--seed S]
                         [--no-callgrind] [--only-stall]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _callgrind
import _common as common
import _engine_workloads
import _snapshot_stall

from tradsys._native import ffi, lib
from tradsys.cores.control import WorkerControl, WorkerState
from tradsys.cores.worker import WorkerSpec
from tradsys.journal import JournalWriter, SnapshotStore, list_segments, read_records, replay
from tradsys.journal.errors import error_from_c
from tradsys.journal.snapshots import engine_pointer
from tradsys.journal.writer import journal_config
from tradsys.matching import CEngine, Instrument, ReferenceEngine
from tradsys.matching.workload import venue_stream
from tradsys.ring import Ring, instance_segments, segment_name
from tradsys.ring.segment import unlink_quietly
from tradsys.wire import COMMAND_DTYPE, LAYOUT_VERSION, RECORD_SIZE

BENCH = "recovery"
ROOT = Path(__file__).resolve().parent.parent
SHARD = 0
INSTRUMENT = Instrument(
    "VENUE", 1, tick_size=1, lot_size=100, min_qty=100, reference_price=100_000
)  # venue_stream's symbol: mid 100 000, quantities in lots of 100
APPEND_PEER = "python journal (os.write + zlib.crc32)"
REPLAY_PEER = "reference model"
POLICIES = ("none", "group", "fsync")
BATCHES = (256, 1)
GROUP_COMMIT_US = 1000  # WorkerSpec's default
SEGMENT_BYTES = 64 << 20  # WorkerSpec's default
JOURNAL_BATCH = 1024  # the worker's default max_batch: how the bench journal is written
APPEND_SOURCE = 1 << 16  # commands cycled through by the append cases
APPEND_CAP = 1 << 20  # commands one append case writes at most (92 MB)
REF_BATCH = 4096
PROBE_COMMANDS = 50_000
INSTANCE_PREFIX = "recbench"
TMP_PREFIX = "tradsys-recbench-"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
JOURNAL_HEADER = lib.TS_JOURNAL_HEADER_SIZE
JOURNAL_RECORD = lib.TS_JOURNAL_RECORD_SIZE
_REC_HEAD = struct.Struct("<IHHQQ")  # crc, ring_id, pad, seq, ring_index
_CRC = struct.Struct("<I")


class BenchError(Exception):
    """The bench could not measure (a worker failed, results disagree)."""


@dataclass(frozen=True)
class Plan:
    quick: bool
    commands: int  # journaled commands
    rounds: int  # replay runs, and restart runs per case
    append_rounds: int
    append_budget_s: float  # per append case per round
    ref_prefix: int  # commands the reference model replays per round
    tail: int  # commands after the snapshot in the with-snapshot restart
    stall_rounds: int = 1
    deep_depth: int = 250_000  # resting orders of the snapshot-stall deep book
    deep_timed: int = 100_000  # commands on top of it
    stall_none: bool = True  # also the venue stream under durability none

    @classmethod
    def of(cls, quick: bool, rounds: int | None, commands: int | None) -> Plan:
        if quick:
            plan = cls(True, 500_000, 3, 2, 0.06, 20_000, 10_000)
        else:
            plan = cls(False, 1_000_000, 5, 5, 0.3, 50_000, 10_000, 3, 1_000_000, 200_000, True)
        n = commands or plan.commands
        return cls(
            plan.quick,
            n,
            rounds or plan.rounds,
            rounds or plan.append_rounds,
            plan.append_budget_s,
            min(plan.ref_prefix, n),
            min(plan.tail, n // 10),
            rounds or plan.stall_rounds,
            plan.deep_depth,
            plan.deep_timed,
            plan.stall_none,
        )


# ---- the workspace: everything made here, removed on the way out ----------------------


@dataclass
class Rig:
    """A shard's rings and control block, made the way the supervisor makes them."""

    instance: str
    rings: list[Ring] = field(default_factory=list)
    control: WorkerControl | None = None

    def open(self) -> Rig:
        for role, capacity in (("cmd", 4096), ("evt", 16384), ("md", 16384)):
            self.rings.append(
                Ring.create(
                    segment_name(self.instance, role, SHARD),
                    slot_size=RECORD_SIZE,
                    capacity=capacity,
                    layout_version=LAYOUT_VERSION,
                )
            )
        self.control = WorkerControl.create(segment_name(self.instance, "ctl", SHARD))
        return self

    @property
    def ctl(self) -> WorkerControl:
        assert self.control is not None
        return self.control

    def close(self) -> None:
        for ring in self.rings:
            ring.close()
        self.rings.clear()
        if self.control is not None:
            self.control.close()
            self.control = None


class Workspace:
    """The temporary directory, rigs and worker processes of one run."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
        self.children: list[subprocess.Popen[bytes]] = []
        self.rigs: list[Rig] = []
        self._n = 0

    def rig(self) -> Rig:
        self._n += 1
        rig = Rig(f"{INSTANCE_PREFIX}{os.getpid()}n{self._n}")
        self.rigs.append(rig)
        return rig.open()

    def dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir()
        return path

    def close(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.children.clear()
        for rig in self.rigs:
            rig.close()
        self.rigs.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def reclaim_leftovers() -> None:
    """Remove what an earlier run killed by SIGKILL left: its worker processes, segments
    and temporary directories (each names the pid of the run that made it)."""
    mine = re.compile(rf"{INSTANCE_PREFIX}(\d+)n\d+")
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "tradsys.cores.worker" not in cmd:
            continue
        m = mine.search(cmd)
        if m and not psutil.pid_exists(int(m.group(1))):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                common.note(f"recovery bench: killed worker {proc.pid}, left by a killed run")
    stale = []
    for name in instance_segments():
        m = re.match(rf"^/tradsys\.{INSTANCE_PREFIX}(\d+)n\d+\.", name)
        if m and not psutil.pid_exists(int(m.group(1))):
            stale.append(name)
    for name in unlink_quietly(stale):
        common.note(f"recovery bench: removed {name}, left by a killed run")
    tmp = Path(tempfile.gettempdir())
    for entry in tmp.glob(f"{TMP_PREFIX}*"):
        m = re.match(rf"^{TMP_PREFIX}(\d+)-", entry.name)
        if m and not psutil.pid_exists(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            common.note(f"recovery bench: removed {entry}, left by a killed run")


def filesystem(path: Path) -> str:
    """The file system type and mount point holding ``path`` (from /proc/mounts)."""
    best = ("?", "")
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        real = str(path.resolve())
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            mnt, fstype = parts[1], parts[2]
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best[1]):
                best = (fstype, mnt)
    return f"{best[0]} ({best[1]})"


# ---- the journal under test -------------------------------------------------------------


def write_journal(directory: Path, commands: Any) -> None:
    """Journal ``commands`` as a worker would (C writer, batches of 1024), then flush
    the segments to disk so every later reader finds them clean."""
    with JournalWriter(directory, SHARD, durability="none", segment_bytes=SEGMENT_BYTES) as w:
        for i in range(0, len(commands), JOURNAL_BATCH):
            w.append(commands[i : i + JOURNAL_BATCH])
    for seg in list_segments(directory, SHARD):
        fd = os.open(seg.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---- append -----------------------------------------------------------------------------


def tradsys_append(
    directory: Path, policy: str, batch: int, commands: Any, budget_s: float
) -> tuple[int, float]:
    """The C journal: (commands, seconds) for one case, the closing sync included."""
    err = ffi.new("ts_journal_error *")
    cfg = journal_config(SHARD, policy, SEGMENT_BYTES, GROUP_COMMIT_US)
    j = lib.ts_journal_open(str(directory).encode(), cfg, 1, err)
    if j == ffi.NULL:
        raise error_from_c(err)
    buf = ffi.from_buffer("ts_command[]", commands)
    size = len(commands)
    append, sync_if_due = lib.ts_journal_append, lib.ts_journal_sync_if_due
    group = policy == "group"
    mono, clock = time.monotonic_ns, time.perf_counter
    n = pos = 0
    try:
        t0 = clock()
        deadline = t0 + budget_s
        while True:
            if append(j, 0, n, buf + pos, batch, err):
                raise error_from_c(err)
            if group and sync_if_due(j, mono(), err) < 0:
                raise error_from_c(err)
            n += batch
            pos += batch
            if pos >= size:
                pos = 0
            if n >= APPEND_CAP or clock() >= deadline:
                break
        ptr, j = j, None
        if lib.ts_journal_close(ptr, err):
            raise error_from_c(err)
        return n, clock() - t0
    finally:
        if j is not None:
            lib.ts_journal_close(j, err)


def python_append(
    directory: Path,
    policy: str,
    batch: int,
    commands: Any,
    budget_s: float,
    prebuilt: memoryview | None = None,
) -> tuple[int, float]:
    """The peer, a plain Python journal of the same 88-byte records: per record the
    header fields packed, the command copied and a crc32 over bytes 4..87; one
    unbuffered os.write per batch (a process crash loses nothing written), fdatasync per
    the policy. With ``prebuilt`` records it only writes them (the system-call floor)."""
    fd = os.open(
        directory / "journal.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
    )
    cmd_mv = memoryview(commands.view(np.uint8))
    size = len(commands)
    buf = bytearray(batch * JOURNAL_RECORD)
    mv = memoryview(buf)
    pack, pack_crc, crc32 = _REC_HEAD.pack_into, _CRC.pack_into, zlib.crc32
    write, sync, mono, clock = os.write, os.fdatasync, time.monotonic_ns, time.perf_counter
    group_ns = GROUP_COMMIT_US * 1000
    fsync, group = policy == "fsync", policy == "group"
    cmd_size, rec = COMMAND_DTYPE.itemsize, JOURNAL_RECORD
    n = pos = 0
    dirty = False
    try:
        write(fd, bytes(JOURNAL_HEADER))
        last_sync = mono()
        t0 = clock()
        deadline = t0 + budget_s
        while True:
            if prebuilt is not None:
                out = prebuilt[pos * rec : (pos + batch) * rec]
            else:
                for i in range(batch):
                    off = i * rec
                    c = (pos + i) * cmd_size
                    pack(buf, off, 0, 0, 0, n + i + 1, n + i)
                    buf[off + 24 : off + rec] = cmd_mv[c : c + cmd_size]
                    pack_crc(buf, off, crc32(mv[off + 4 : off + rec]))
                out = mv
            done = write(fd, out)
            while done < len(out):  # a short write: the rest, as a journal must
                done += write(fd, out[done:])
            if fsync:
                sync(fd)
            elif group:
                dirty = True
                if mono() - last_sync >= group_ns:
                    sync(fd)
                    last_sync = mono()
                    dirty = False
            n += batch
            pos += batch
            if pos >= size:
                pos = 0
            if n >= APPEND_CAP or clock() >= deadline:
                break
        if dirty:
            sync(fd)
        os.close(fd)
        fd = -1
        return n, clock() - t0
    finally:
        if fd >= 0:
            os.close(fd)


def prebuilt_records(ws: Workspace, commands: Any) -> memoryview:
    """The records of ``commands`` exactly as the C journal writes them (read back from
    one it wrote), for the floor case."""
    d = ws.dir("prebuilt")
    try:
        write_journal(d, commands)
        (segment,) = list_segments(d, SHARD)  # APPEND_SOURCE records: one segment
        recs = read_records(segment.path, SHARD)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return memoryview(recs.view(np.uint8))


APPEND_IMPLS = ("tradsys", "python", "floor")


def measure_append(plan: Plan, ws: Workspace, commands: Any) -> dict[tuple[str, int], Any]:
    """Rates (commands/s) per (policy, batch) per implementation, over rounds."""
    source = np.ascontiguousarray(commands[:APPEND_SOURCE])
    floor = prebuilt_records(ws, source)
    cases = [(p, b) for p in POLICIES for b in BATCHES]
    rates: dict[tuple[str, int], dict[str, list[float]]] = {
        c: {i: [] for i in APPEND_IMPLS} for c in cases
    }
    runs: dict[str, Callable[..., tuple[int, float]]] = {
        "tradsys": lambda d, p, b: tradsys_append(d, p, b, source, plan.append_budget_s),
        "python": lambda d, p, b: python_append(d, p, b, source, plan.append_budget_s),
        "floor": lambda d, p, b: python_append(d, p, b, source, plan.append_budget_s, floor),
    }
    k = 0
    for rnd in range(plan.append_rounds):
        common.note(f"recovery bench: append round {rnd + 1}/{plan.append_rounds}")
        order = cases[rnd % len(cases) :] + cases[: rnd % len(cases)]
        for policy, batch in order:
            impls = APPEND_IMPLS if rnd % 2 == 0 else APPEND_IMPLS[::-1]
            for impl in impls:
                k += 1
                d = ws.dir(f"append-{k}")
                try:
                    n, secs = runs[impl](d, policy, batch)
                finally:
                    shutil.rmtree(d, ignore_errors=True)
                rates[(policy, batch)][impl].append(n / secs)
    return {c: {i: common.median(v) for i, v in r.items()} for c, r in rates.items()}


# ---- replay -----------------------------------------------------------------------------


def decoded_commands(directory: Path, n: int) -> Any:
    """The first ``n`` commands as read back from the journal."""
    out = np.zeros(n, COMMAND_DTYPE)
    got = 0
    segments = list_segments(directory, SHARD)
    for i, seg in enumerate(segments):
        cmds = read_records(seg.path, SHARD, is_last=i == len(segments) - 1)["cmd"]
        take = min(n - got, len(cmds))
        out[got : got + take] = cmds[:take]
        got += take
        if got >= n:
            break
    return out


def replay_once(directory: Path) -> float:
    gc.collect()
    t0 = time.perf_counter()
    engine = replay(directory, SHARD, [INSTRUMENT])
    secs = time.perf_counter() - t0
    engine.close()
    return secs


def reference_once(commands: Any) -> tuple[float, ReferenceEngine]:
    ref = ReferenceEngine()
    ref.add_instrument(INSTRUMENT)
    gc.collect()
    gc.disable()  # as timeit does; the C replay runs no Python to collect
    try:
        t0 = time.perf_counter()
        for i in range(0, len(commands), REF_BATCH):
            ref.process(commands[i : i + REF_BATCH])
        secs = time.perf_counter() - t0
    finally:
        gc.enable()
    return secs, ref


def measure_replay(plan: Plan, directory: Path) -> dict[str, Any]:
    prefix = decoded_commands(directory, plan.ref_prefix)
    replay_s: list[float] = []
    ref_per_cmd: list[float] = []
    for rnd in range(plan.rounds):
        common.note(f"recovery bench: replay round {rnd + 1}/{plan.rounds}")
        first, second = ("c", "ref") if rnd % 2 == 0 else ("ref", "c")
        for which in (first, second):
            if which == "c":
                replay_s.append(replay_once(directory))
                continue
            secs, ref = reference_once(prefix)
            ref_per_cmd.append(secs / len(prefix))
            if rnd == 0:
                check = replay(directory, SHARD, [INSTRUMENT], upto=len(prefix))
                same = check.digest() == ref.digest()
                check.close()
                if not same:
                    raise BenchError(
                        f"the C replay and the reference model disagree after the first "
                        f"{len(prefix)} journaled commands (digests differ)"
                    )
    return {"seconds": replay_s, "ref_per_cmd": ref_per_cmd, "ref_prefix": len(prefix)}


# ---- restart ----------------------------------------------------------------------------


@dataclass
class RestartCase:
    key: str
    label: str
    directory: Path
    keep: set[str]  # the files that make the case; anything else a run adds is removed
    replayed: int  # commands the worker must replay

    def reset(self) -> None:
        for p in self.directory.iterdir():
            if p.name not in self.keep:
                p.unlink()


def md_count_through(commands: Any) -> tuple[CEngine, int]:
    """An engine fed ``commands`` and the market-data records it made meanwhile."""
    engine = CEngine()
    engine.add_instrument(INSTRUMENT)
    md = 0
    for i in range(0, len(commands), 4096):
        md += len(engine.process(commands[i : i + 4096]).md)
    return engine, md


def restart_cases(plan: Plan, ws: Workspace, journal: Path, commands: Any) -> list[RestartCase]:
    """The data directories of the three restart cases (journal files hard-linked)."""
    segments = [s.path for s in list_segments(journal, SHARD)]
    empty = ws.dir("restart-empty")
    snap = ws.dir("restart-snapshot")
    full = ws.dir("restart-full")
    for d in (snap, full):
        for seg in segments:
            os.link(seg, d / seg.name)
    at = plan.commands - plan.tail
    engine, md = md_count_through(commands[:at])
    snap_file = SnapshotStore(snap, SHARD).write(engine, at, md)
    engine.close()
    names = {s.name for s in segments}
    return [
        RestartCase("startup", "empty data directory (start-up share)", empty, set(), 0),
        RestartCase(
            "snapshot",
            f"snapshot at seq {at:,} + {plan.tail:,}-command tail",
            snap,
            names | {snap_file.name},
            plan.tail,
        ),
        RestartCase(
            "full",
            f"{plan.commands:,} commands, no snapshot",
            full,
            names,
            plan.commands,
        ),
    ]


def _log_tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])
    return "(no log)"


def restart_once(ws: Workspace, case: RestartCase) -> tuple[float, float]:
    """Spawn a worker on ``case``'s data directory: (spawn → RUNNING seconds, of which
    inside run_worker seconds). The worker is then stopped cleanly."""
    case.reset()
    rig = ws.rig()
    commands, events, md = (r.name for r in rig.rings)
    spec = WorkerSpec(
        instance=rig.instance,
        shard_id=SHARD,
        instruments=[INSTRUMENT],
        data_dir=str(case.directory),
        durability="group",
        group_commit_us=GROUP_COMMIT_US,
        segment_bytes=SEGMENT_BYTES,
        wait="spin-park",
        commands=commands,
        events=events,
        md=md,
        control=rig.ctl.name,
    )
    cmd = [sys.executable, "-m", "tradsys.cores.worker", msgspec.json.encode(spec).decode()]
    log_path = ws.root / f"{rig.instance}.log"
    ctl = rig.ctl
    with open(log_path, "wb") as log_file:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT
        )
    ws.children.append(proc)
    try:
        while True:
            state = ctl.cdata.state
            if state == WorkerState.RUNNING:
                total = time.perf_counter() - t0
                break
            if state == WorkerState.FAILED or proc.poll() is not None:
                raise BenchError(
                    f"worker for '{case.label}' failed to start (exit {proc.poll()}, "
                    f"state {WorkerState(state).name}): {ctl.error}\n{_log_tail(log_path)}"
                )
            if time.perf_counter() - t0 > READY_TIMEOUT_S:
                raise BenchError(f"worker for '{case.label}' not RUNNING after {READY_TIMEOUT_S} s")
            time.sleep(0.0005)
        inside = ctl.recovery_ns / 1e9
        replayed = ctl.replayed
        ctl.request_stop()
        for ring in rig.rings:
            ring.wake()
        code = proc.wait(timeout=STOP_TIMEOUT_S)
        if code != 0:
            raise BenchError(
                f"worker for '{case.label}' exited {code} on stop\n{_log_tail(log_path)}"
            )
        if replayed != case.replayed:
            raise BenchError(
                f"worker for '{case.label}' replayed {replayed} commands, expected {case.replayed}"
            )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ws.children.remove(proc)
        rig.close()
        ws.rigs.remove(rig)
        log_path.unlink(missing_ok=True)
    return total, inside


def measure_restart(plan: Plan, cases: list[RestartCase], ws: Workspace) -> dict[str, Any]:
    runs: dict[str, list[tuple[float, float]]] = {c.key: [] for c in cases}
    for rnd in range(plan.rounds):
        common.note(f"recovery bench: restart round {rnd + 1}/{plan.rounds}")
        order = cases[rnd % len(cases) :] + cases[: rnd % len(cases)]
        for case in order:
            runs[case.key].append(restart_once(ws, case))
    for case in cases:
        case.reset()
    return runs


# ---- instruction counts (callgrind) -----------------------------------------------------

# The probe marks each stretch with calls nothing in it makes: ts_worker_control_check
# before (counters zeroed), ts_journal_sync_due_ns after (dumped).
ZERO_MARK = "ts_worker_control_check"
DUMP_MARK = "ts_journal_sync_due_ns"


def callgrind_probe(work: str) -> None:
    """Run under callgrind by :func:`instructions`: append the commands in
    ``work/commands.bin`` to a journal in batches of 256, then replay that journal into
    a fresh engine, each in a marked stretch."""
    work_dir = Path(work)
    commands = np.fromfile(work_dir / "commands.bin", COMMAND_DTYPE)
    n = len(commands)
    err = ffi.new("ts_journal_error *")
    cfg = journal_config(SHARD, "none", SEGMENT_BYTES, GROUP_COMMIT_US)
    marker = lib.ts_journal_open(str(work_dir / "marker").encode(), cfg, 1, err)
    journal_dir = work_dir / "journal"
    j = lib.ts_journal_open(str(journal_dir).encode(), cfg, 1, err)
    if marker == ffi.NULL or j == ffi.NULL:
        raise error_from_c(err)
    buf = ffi.from_buffer("ts_command[]", commands)
    lib.ts_worker_control_check(ffi.NULL, 0)  # zero
    for i in range(0, n, 256):
        if lib.ts_journal_append(j, 0, i, buf + i, min(256, n - i), err):
            raise error_from_c(err)
    lib.ts_journal_sync_due_ns(marker)  # dump 1
    lib.ts_journal_close(j, err)
    engine = CEngine()
    engine.add_instrument(INSTRUMENT)
    out = ffi.new("ts_journal_replay_result *")
    lib.ts_worker_control_check(ffi.NULL, 0)  # zero
    lib.ts_journal_replay(
        str(journal_dir).encode(),
        SHARD,
        0,
        0,
        engine_pointer(engine),
        0,
        ffi.NULL,
        ffi.NULL,
        0,
        out,
    )
    lib.ts_journal_sync_due_ns(marker)  # dump 2
    lib.ts_journal_close(marker, err)
    if out.status != 0 or out.replayed != n:
        raise SystemExit(f"probe replay: status {out.status}, {out.replayed} of {n} replayed")
    engine.close()


def instructions(ws: Workspace, commands: Any) -> tuple[list[dict[str, Any]], list[str]]:
    if _callgrind.valgrind() is None:
        return [], ["valgrind not installed: no instruction counts (apt-get install valgrind)"]
    work = ws.dir("callgrind")
    n = min(PROBE_COMMANDS, len(commands))
    np.ascontiguousarray(commands[:n]).tofile(work / "commands.bin")
    argv = [sys.executable, os.path.abspath(__file__), "--callgrind-probe", str(work)]
    try:
        dumps = _callgrind.run(
            argv,
            zero_before=ZERO_MARK,
            dump_before=DUMP_MARK,
            env={
                "OPENBLAS_NUM_THREADS": "1",
                "PYTHONHASHSEED": "0",
                "GLIBC_TUNABLES": "glibc.cpu.x86_rep_movsb_threshold=4294967295",
            },
            timeout=240,
        )
    except RuntimeError as exc:
        return [], [f"callgrind failed, no instruction counts: {exc}"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(dumps) < 2:
        return [], [f"callgrind gave {len(dumps)} dumps, expected 2: no instruction counts"]
    app, rep = dumps[0], dumps[1]
    append_c = app.of("ts_journal_append") / n
    append_crc = app.of("ts_crc32c") / n
    replay_c = rep.of("ts_journal_replay") / n
    replay_engine = rep.of("ts_engine_process") / n
    replay_crc = rep.of("ts_crc32c") / n
    rows = [
        common.result(
            "recovery.append.instructions_per_command",
            "instructions",
            append_c,
            higher_is_better=False,
        ),
        common.result(
            "recovery.replay.instructions_per_command",
            "instructions",
            replay_c,
            higher_is_better=False,
        ),
    ]
    lines = [
        f"instructions per command (callgrind, the first {n:,} commands; exact and repeatable):",
        f"  append, ts_journal_append in batches of 256 (user space)  {append_c:8.0f}",
        f"    of which crc32c                                          {append_crc:8.0f}",
        f"  replay, ts_journal_replay into a fresh engine              {replay_c:8.0f}",
        f"    of which crc32c                                          {replay_crc:8.0f}",
        f"    of which the engine (ts_engine_process)                  {replay_engine:8.0f}",
    ]
    return rows, lines


# ---- report -----------------------------------------------------------------------------


def report(
    plan: Plan,
    append: dict[tuple[str, int], Any],
    rep: dict[str, Any],
    restart: dict[str, Any],
    cases: list[RestartCase],
) -> tuple[list[dict[str, Any]], list[str]]:
    results: list[dict[str, Any]] = []
    text: list[str] = []

    rows = []
    for policy in POLICIES:
        for batch in BATCHES:
            r = append[(policy, batch)]
            label = {"none": "none", "group": f"group {GROUP_COMMIT_US} µs", "fsync": "fsync"}
            rows.append(
                [
                    f"{label[policy]}, batch {batch}",
                    common.fmt_rate(r["tradsys"]),
                    common.fmt_rate(r["python"]),
                    common.fmt_ratio(r["tradsys"] / r["python"]),
                    common.fmt_rate(r["floor"]),
                ]
            )
            name = f"recovery.append.{policy}." + (
                "throughput" if batch > 1 else "single.throughput"
            )
            results.append(
                common.result(
                    name,
                    "commands/s",
                    r["tradsys"],
                    higher_is_better=True,
                    peer=APPEND_PEER,
                    peer_value=r["python"],
                )
            )
    text.append("journal append, commands/s (median of rounds; 88-byte records):")
    text.append(
        common.table(
            [
                "policy, commands per batch",
                "tradsys C",
                "python journal",
                "ratio",
                "os.write floor",
            ],
            rows,
        )
    )

    n = plan.commands
    replay_rate = n / common.median(rep["seconds"])
    ref_rate = 1 / common.median(rep["ref_per_cmd"])
    results.append(
        common.result(
            "recovery.replay.throughput",
            "commands/s",
            replay_rate,
            higher_is_better=True,
            peer=REPLAY_PEER,
            peer_value=ref_rate,
        )
    )
    text.append("")
    text.append(f"journal replay from scratch, {n:,} commands (median of {plan.rounds}):")
    text.append(
        common.table(
            ["replay", "commands/s", "seconds"],
            [
                [
                    "tradsys.journal.replay (C, no snapshot)",
                    common.fmt_rate(replay_rate),
                    f"{common.median(rep['seconds']):.3f}",
                ],
                [
                    f"reference model (first {rep['ref_prefix']:,}, extrapolated)",
                    common.fmt_rate(ref_rate),
                    f"{n / ref_rate:.1f}",
                ],
                ["ratio", common.fmt_ratio(replay_rate / ref_rate), ""],
            ],
        )
    )

    med = {
        k: (common.median([t for t, _ in v]), common.median([i for _, i in v]))
        for k, v in restart.items()
    }
    rows = []
    for case in cases:
        total, inside = med[case.key]
        rows.append(
            [
                case.label,
                f"{case.replayed:,}",
                f"{total:.3f}",
                f"{total - inside:.3f}",
                f"{inside:.3f}",
            ]
        )
    text.append("")
    text.append(
        f"worker restart, spawn → RUNNING, seconds (median of {plan.rounds}; "
        "'before' = interpreter start-up and imports, 'inside' = run_worker entry → RUNNING):"
    )
    text.append(common.table(["data directory", "replayed", "total", "before", "inside"], rows))
    millions = n / 1e6
    per_million = med["full"][0] / millions
    marginal = (med["full"][0] - med["startup"][0]) / millions
    text.append(
        f"restart seconds per million journaled commands: {per_million:.3f} "
        f"(start-up included; {marginal:.3f} without the empty-directory start-up)"
    )
    results += [
        common.result(
            "recovery.restart_seconds_per_million", "s", per_million, higher_is_better=False
        ),
        common.result(
            "recovery.restart.marginal_seconds_per_million",
            "s",
            marginal,
            higher_is_better=False,
        ),
        common.result(
            "recovery.restart.startup.seconds", "s", med["startup"][0], higher_is_better=False
        ),
        common.result(
            "recovery.restart.with_snapshot.seconds",
            "s",
            med["snapshot"][0],
            higher_is_better=False,
        ),
        common.result(
            "recovery.restart.no_snapshot.seconds", "s", med["full"][0], higher_is_better=False
        ),
    ]
    return results, text


# ---- main -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(1)  # CONVENTIONS: 1 on a user error


@contextlib.contextmanager
def workspace() -> Iterator[Workspace]:
    ws = Workspace()
    try:
        yield ws
    finally:
        ws.close()


def stall_cases(plan: Plan, seed: int, commands: Any) -> list[_snapshot_stall.StallCase]:
    """The snapshot-stall workloads: the venue stream (about three periodic snapshots),
    and a deep book whose one periodic snapshot falls once it is fully built."""
    n = len(commands)
    cases = [
        _snapshot_stall.StallCase(
            "venue_group", "venue stream, group", commands, [INSTRUMENT], "group", n // 4
        )
    ]
    if plan.stall_none:
        cases.append(
            _snapshot_stall.StallCase(
                "none", "venue stream, none", commands, [INSTRUMENT], "none", n // 4
            )
        )
    common.note(f"recovery bench: building a {plan.deep_depth:,}-order deep book workload")
    deep = _engine_workloads.deep_book(plan.deep_timed, seed, plan.deep_depth)
    cases.append(
        _snapshot_stall.StallCase(
            "deep_book",
            f"deep book ({plan.deep_depth // 1000:,} k orders), group",
            deep.commands,
            deep.instruments,
            "group",
            plan.deep_depth + plan.deep_timed // 2,
        )
    )
    return cases


def measure_stall(
    plan: Plan, ws: Workspace, seed: int, commands: Any
) -> tuple[list[dict[str, Any]], list[str]]:
    cases = stall_cases(plan, seed, commands)
    n = 0

    def new_instance() -> str:
        nonlocal n
        n += 1
        return f"{INSTANCE_PREFIX}{os.getpid()}n{n}s"

    try:
        runs = _snapshot_stall.measure(cases, plan.stall_rounds, new_instance, ws.dir, ROOT)
    except _snapshot_stall.StallError as exc:
        raise BenchError(f"snapshot stall: {exc}") from None
    return _snapshot_stall.report(cases, runs, plan.stall_rounds)


def run(
    plan: Plan, seed: int, callgrind: bool, only_stall: bool = False
) -> tuple[list[dict[str, Any]], list[str], Path]:
    with workspace() as ws:
        common.note(f"recovery bench: generating {plan.commands:,} venue_stream commands")
        commands = venue_stream(plan.commands, seed, symbol_id=INSTRUMENT.symbol_id)
        if only_stall:
            results, text = measure_stall(plan, ws, seed, commands)
            return results, text, ws.root
        journal = ws.dir("journal")
        write_journal(journal, commands)
        cases = restart_cases(plan, ws, journal, commands)
        append = measure_append(plan, ws, commands)
        rep = measure_replay(plan, journal)
        restart = measure_restart(plan, cases, ws)
        results, text = report(plan, append, rep, restart, cases)
        if callgrind:
            common.note("recovery bench: counting instructions under callgrind")
            rows, lines = instructions(ws, commands)
            results += rows
            text += ["", *lines]
        stall_results, stall_text = measure_stall(plan, ws, seed, commands)
        results += stall_results
        text += ["", *stall_text]
        return results, text, ws.root


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short look (under a minute)")
    ap.add_argument("--json", action="store_true", help="end stdout with the JSON result line")
    ap.add_argument("--rounds", type=int, help="rounds (default 5, quick 3; append rounds quick 2)")
    ap.add_argument("--commands", type=int, help="journaled commands (default 1 M, quick 500 k)")
    ap.add_argument("--seed", type=int, default=1, help="venue_stream seed (default 1)")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    ap.add_argument("--only-stall", action="store_true", help="measure the snapshot stall alone")
    ap.add_argument("--callgrind-probe", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.callgrind_probe:
        callgrind_probe(args.callgrind_probe)
        return 0
    if args.rounds is not None and args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.commands is not None and args.commands < 10_000:
        ap.error(f"--commands must be at least 10000, got {args.commands}")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` cleans up
    logging.getLogger("tradsys.journal").setLevel(logging.ERROR)  # "no snapshot": meant
    reclaim_leftovers()
    plan = Plan.of(args.quick, args.rounds, args.commands)
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    fs = filesystem(Path(tempfile.gettempdir()))
    try:
        results, text, _ = run(plan, args.seed, not args.no_callgrind, args.only_stall)
    except BenchError as exc:
        print(f"recovery bench failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recovery bench interrupted; workers stopped, files removed", file=sys.stderr)
        return 130

    print(
        f"recovery bench: {'quick' if plan.quick else 'full'} run, {plan.commands:,} "
        f"venue_stream commands (seed {args.seed}), journal on {fs}, "
        f"{common.cpu_count()} cpus, python {sys.version.split()[0]}, "
        f"{time.perf_counter() - t_start:.0f} s; load average {load_start:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after"
    )
    for line in text:
        print(line)
    if args.json:
        common.emit_json(BENCH, plan.quick, results)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_bench(BENCH, main))
