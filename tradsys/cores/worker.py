"""The shard worker process: one per shard, pinned to its core, its loop in C.

``run_worker(spec)`` is the whole life of the process: pin, attach the rings and the
control block the supervisor made, recover (newest valid snapshot + journal tail; a torn
tail is truncated with a log line; corruption ends the process with exit code 2 and the
file and offset in the message), then run ``ts_worker_run`` in slices. Periodic and
requested snapshots are written while the loop keeps matching: with ``snapshot_writer =
"fork"`` a child process forked at the batch boundary serializes the books and writes the
file, with ``"background"`` the loop serializes them and a writer thread writes
(native/worker.h); when one becomes visible the loop returns SNAPSHOT_WRITTEN and Python
hands the pruning to a thread of its own (:class:`BackgroundPruner`) and re-enters the
loop at once (SNAPSHOT_FAILED, a fork child that died unfinished, is logged and the loop
re-entered too). With ``"inline"`` the loop
stops for a due snapshot (SNAPSHOT_DUE) and Python writes and prunes it in between
slices, the old path. Between slices Python otherwise does only the rare: order images
and the stop.
A stop (the control block's flag, or SIGTERM/SIGINT/SIGHUP to the worker) drains what is in the
commands ring, syncs the journal, writes a final snapshot and exits 0.

``python -m tradsys.cores.worker --spec-file PATH`` runs it from a msgspec-JSON
``WorkerSpec`` in a file, which is how the supervisor spawns workers (a spec lists every
instrument of the shard, and Linux caps one command-line argument at 128 KiB: about 800
instruments); ``python -m tradsys.cores.worker SPEC_JSON`` takes a small spec inline.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import msgspec
import psutil

from tradsys import logs
from tradsys._native import ffi, lib
from tradsys.config import SnapshotWriter
from tradsys.cores.control import WorkerControl, WorkerState
from tradsys.cores.memory_lock import lock_memory
from tradsys.cores.order_image import write_image
from tradsys.cores.parent_watch import STOP_SIGNALS, stop_with_supervisor
from tradsys.cores.sched_slice import set_thread_slice
from tradsys.exit_codes import EXIT_INTERNAL as EXIT_FAILURE
from tradsys.exit_codes import EXIT_OK, EXIT_USER_ERROR, exit_code_for
from tradsys.journal.errors import JournalCorruptError, JournalError, error_from_c
from tradsys.journal.recovery import has_symbol, replay_result, start_state, truncate_torn_tail
from tradsys.journal.snapshots import BackgroundPruner, SnapshotStore, engine_pointer
from tradsys.journal.writer import Durability, journal_config
from tradsys.matching import CEngine, Instrument
from tradsys.metrics.latency_segment import LatencySegment
from tradsys.ring import Ring, Role, WaitStrategy
from tradsys.ring.errors import RingError
from tradsys.ring.segment import process_start_us
from tradsys.wire import LAYOUT_VERSION, RECORD_SIZE

_SNAPSHOT_MODES: dict[str, int] = {"inline": 0, "background": 1, "fork": 2}
HOLD_CHILD_ENV = "TRADSYS_TEST_SNAPSHOT_CHILD_HOLD"
"""Test hook: fork-mode children wait after their .tmp's header while this file exists."""
FAIL_CHILD_ENV = "TRADSYS_TEST_SNAPSHOT_CHILD_FAIL"
"""Test hook: this many fork-mode children exit non-zero there instead of finishing."""

log = logging.getLogger("tradsys.worker")


class WorkerSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything a shard worker process needs to know, from the supervisor."""

    instance: str
    shard_id: int
    core: int | None = None
    """CPU to pin to (None: leave the affinity alone)."""
    instruments: list[Instrument]
    elsewhere: list[tuple[str, int, int]] = []
    """(symbol, symbol_id, shard) of the configured instruments other shards own: one of
    them in this shard's books means the configuration moved it (refused at start)."""
    data_dir: str
    """The shard's directory for its journal segments and snapshots."""
    durability: Durability = "group"
    group_commit_us: int = 1000
    segment_bytes: int = 64 << 20
    snapshot_every: int = 1_000_000
    """Commands between periodic snapshots (0: only on request and at stop)."""
    snapshot_writer: SnapshotWriter = "fork"
    """Who writes periodic and requested snapshots: a forked child (serialization and
    write off the worker's thread), a background thread (the loop serializes), or the
    loop itself, stopped (the old path; see the module doc)."""
    fork_min_bytes: int = 1 << 20
    """With "fork": a book whose snapshot is smaller (about 11 k resting orders) is
    serialized on the worker's thread, which costs it less than fork() (~1 ms here)."""
    wait: Literal["busy-spin", "spin-yield", "spin-park"] = "spin-park"
    discard_md: bool = False
    """No one reads the md ring ([md] enabled = false, no external reader): the worker
    drops its market data instead of waiting for room that would never come."""
    commands: str
    """Ring segment names (made by the supervisor; the worker attaches)."""
    events: str
    md: str
    control: str
    latency: str = ""
    """Stage-latency segment (tradsys.metrics.latency_segment); "" records none."""
    max_batch: int = 1024
    slice_ms: int = 20
    """How long one C slice may run before Python looks at signals again."""
    sched_slice_us: int = 0
    """The scheduler slice to ask for (tradsys.cores.sched_slice); 0: the default."""
    housekeeping_cpus: list[int] = msgspec.field(default_factory=list)
    """Where a pinned worker's background work (the snapshot writer thread, its fork
    children, the prune thread) runs: the cores no engine process is pinned to
    (tradsys.config.housekeeping_cores). Empty: beside the worker, on its own core, at
    SCHED_IDLE (see :func:`background_placement`)."""
    keep_snapshots: int = 2
    lock_memory: bool = False
    """Lock the process's memory in RAM at start (tradsys.cores.memory_lock)."""


@dataclass(frozen=True)
class BackgroundPlacement:
    """Where a worker's background work runs: the snapshot writer thread, its fork
    children and the prune thread (each a stall for every order in flight while it holds
    the worker's core)."""

    cpus: list[int]
    """The CPU mask its threads start with ([]: the worker's own)."""
    idle: bool
    """At SCHED_IDLE: it shares a pinned worker's core, and may only use its idle time."""

    def describe(self, spec: WorkerSpec) -> str:
        """The log line that says which arrangement a worker uses."""
        what = "background work (snapshot writer, fork children, pruning)"
        if spec.core is None:
            return f"shard {spec.shard_id}: not pinned: {what} runs at the normal policy"
        if self.idle:
            return (
                f"shard {spec.shard_id}: no housekeeping core: {what} shares core "
                f"{spec.core} at SCHED_IDLE"
            )
        return f"shard {spec.shard_id}: {what} on CPUs {self.cpus}"


def background_placement(spec: WorkerSpec) -> BackgroundPlacement:
    """A pinned worker's background work goes to the housekeeping cores; with none to go
    to (every core runs an engine process) it would share the worker's core at the
    normal policy and take it from a runnable worker for milliseconds (a prune's unlinks,
    a file's write and fsync, MADV_COLLAPSE), so it runs there at SCHED_IDLE: the worker
    preempts it the moment it has work. An unpinned worker's is left alone."""
    if spec.core is None:
        return BackgroundPlacement(cpus=[], idle=False)
    if set(spec.housekeeping_cpus) <= {spec.core}:
        return BackgroundPlacement(cpus=[], idle=True)
    return BackgroundPlacement(cpus=list(spec.housekeeping_cpus), idle=False)


def _ring_pointer(ring: Ring) -> Any:
    """The ``ts_ring *`` under a Ring handle, for the C worker."""
    return ring._ring


class ShardWorker:
    """One shard's worker in this process: attach, recover, run, stop.

    Owns the C worker and everything it borrows (engine, journal, ring and control
    handles) and frees them in :meth:`close`.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.dir = Path(spec.data_dir)
        self.control: WorkerControl | None = None
        self.latency: LatencySegment | None = None
        self.rings: list[Ring] = []
        self.engine: CEngine | None = None
        self._worker: Any = None
        self._journal: Any = None
        self._err = ffi.new("ts_journal_error *")
        self._stop_signalled = False
        self._store = SnapshotStore(self.dir, spec.shard_id)
        self._placement = background_placement(spec)
        self._pruner = BackgroundPruner(self._store, spec.keep_snapshots, idle=self._placement.idle)

    # ---- start-up ------------------------------------------------------------------------

    def attach(self) -> None:
        """Map the control block and the rings (as their consumer / producer)."""
        self.control = WorkerControl.attach(self.spec.control)
        if self.control.shard_id != self.spec.shard_id:
            raise RingError(
                f"control block {self.spec.control} is shard {self.control.shard_id}'s, "
                f"not shard {self.spec.shard_id}'s"
            )
        self.control.claim(os.getpid(), process_start_us())
        self.control.set_state(WorkerState.STARTING)
        roles: list[tuple[str, Role]] = [
            (self.spec.commands, "consumer"),
            (self.spec.events, "producer"),
            (self.spec.md, "producer"),
        ]
        for name, role in roles:
            self.rings.append(
                Ring.attach(name, slot_size=RECORD_SIZE, layout_version=LAYOUT_VERSION, role=role)
            )

    def _new_c_worker(self, engine: CEngine) -> None:
        assert self.control is not None
        cfg = ffi.new("ts_worker_config *")
        cfg.shard_id = self.spec.shard_id
        cfg.max_batch = self.spec.max_batch
        cfg.snapshot_every = self.spec.snapshot_every
        cfg.wait = WaitStrategy.named(self.spec.wait).cdata[0]
        cfg.fork_min_bytes = self.spec.fork_min_bytes
        cfg.background_idle = int(self._placement.idle)
        cfg.discard_md = int(self.spec.discard_md)
        commands, events, md = (_ring_pointer(r) for r in self.rings)
        ptr = lib.ts_worker_new(
            cfg, engine_pointer(engine), commands, events, md, self.control.cdata
        )
        if ptr == ffi.NULL:
            raise MemoryError("ts_worker_new: out of memory")
        self._worker = ptr
        if self.spec.latency:
            self.latency = LatencySegment.attach(self.spec.latency)
            lib.ts_worker_set_latency(ptr, self.latency.cdata)

    def recover(self) -> None:
        """Rebuild the books, re-emit what was never pushed, open the journal."""
        assert self.control is not None
        self.control.set_state(WorkerState.RECOVERING)
        started = time.monotonic_ns()
        if self.control.cdata.base_set and not self.dir.is_dir():
            # a restart within the run: an empty folder made here would "recover" empty
            # books where the shard had acknowledged orders
            raise JournalError(
                f"shard {self.spec.shard_id}'s data directory {self.dir} is gone (moved or "
                "deleted while the instance ran), and with it the journal of what this "
                "shard acknowledged: put it back; a restarted worker does not start empty",
                self.dir,
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        spec = self.spec
        start = start_state(self.dir, spec.shard_id, spec.instruments)
        moved = [
            (sym, other) for sym, sid, other in spec.elsewhere if has_symbol(start.engine, sid)
        ]
        if moved:
            # its book (resting orders clients were told of) is here, while the gateway
            # would route its commands to the other shard: they could never be reached
            names = ", ".join(f"{sym} (now on shard {other})" for sym, other in moved)
            raise JournalError(
                f"shard {spec.shard_id}'s books hold {names}: the configuration moved them "
                f"to another shard, which a journal cannot follow; place them on shard "
                f"{spec.shard_id} again ([[shard]] symbols)",
                self.dir,
            )
        self.engine = start.engine
        self._new_c_worker(start.engine)
        out = ffi.new("ts_journal_replay_result *")
        rc = lib.ts_worker_recover(
            self._worker,
            str(self.dir).encode(),
            start.snapshot_seq,
            start.md_count,
            start.last_exec_id,
            int(spec.durability != "none"),
            out,
        )
        if rc < 0 and out.status >= 0:  # the rings and the journal disagree
            raise self._c_failure()
        result = replay_result(out)
        cut = truncate_torn_tail(result)
        self.control.cdata.truncated_bytes = cut
        seq = int(lib.ts_worker_seq(self._worker))
        cfg = journal_config(
            spec.shard_id, spec.durability, spec.segment_bytes, spec.group_commit_us
        )
        journal = lib.ts_journal_open(str(self.dir).encode(), cfg, seq + 1, self._err)
        if journal == ffi.NULL:
            raise error_from_c(self._err)
        self._journal = journal
        lib.ts_worker_set_journal(self._worker, journal)
        mode = snapshot_mode(spec.snapshot_writer, spec.shard_id)
        log.info("%s", self._placement.describe(spec))
        with _new_threads_on(self._placement.cpus):
            # the snapshot writer and prune threads start here and keep the mask they
            # start with; fork-mode children are given the same mask
            if lib.ts_worker_set_snapshots(self._worker, str(self.dir).encode(), mode):
                raise self._c_failure()
            if mode != _SNAPSHOT_MODES["inline"]:  # inline prunes on this thread
                self._pruner.start()
        self._child_test_hooks()
        for ins in start.missing:
            log.info(
                "shard %d: adding instrument %s (new in the configuration)",
                spec.shard_id,
                ins.symbol,
            )
            start.engine.add_instrument(ins)
        if start.snapshot is None or start.missing:
            # the instruments are only in snapshots: one now makes the journal replayable
            self.snapshot()
        if start.missing:  # and a second copy, since the previous snapshot lacks them
            self._store.keep_addition(seq)
        log.info(
            "shard %d: recovered at seq %d (snapshot %d + %d replayed, %d events and %d md "
            "records re-emitted, %d ring commands already journaled) in %.3f s",
            spec.shard_id,
            seq,
            start.snapshot_seq,
            result.replayed,
            self.control.reemitted_events,
            self.control.reemitted_md,
            self.control.intake_skipped,
            (time.monotonic_ns() - started) / 1e9,
        )

    def _child_test_hooks(self) -> None:
        """The fork mode's test hooks, from the environment (tests only set them)."""
        hold = os.environ.get(HOLD_CHILD_ENV, "")
        fail = int(os.environ.get(FAIL_CHILD_ENV, "0") or 0)
        if hold or fail:
            hold_path = hold.encode() if hold else ffi.NULL
            lib.ts_worker_snapshot_child_hooks(self._worker, hold_path, fail)

    def _c_failure(self) -> JournalError:
        """The C worker's last failure, with its file, offset and errno."""
        return error_from_c(lib.ts_worker_error(self._worker))

    # ---- running ---------------------------------------------------------------------------

    def snapshot(self) -> None:
        """Write a snapshot at the current seq (the worker must be quiescent; a background
        write in flight is waited for first), then prune."""
        rc = lib.ts_worker_snapshot(self._worker, str(self.dir).encode())
        if rc:
            raise self._c_failure()
        self._prune_now()

    def _prune_now(self) -> None:
        """Prune on this thread, once a background prune has finished (never two at once)."""
        self._pruner.wait_idle()
        self._pruner.check()
        self._store.prune(self.spec.keep_snapshots)

    def snapshot_written(self) -> None:
        """A background snapshot became visible: prune off the loop's thread."""
        assert self.control is not None
        self._pruner.check()
        self._pruner.request(self.control.snapshot_seq)

    def write_order_image(self) -> None:
        """Answer a gateway's order-image request (the worker is quiescent, its inbound
        ring empty: see tradsys.cores.order_image)."""
        assert self.control is not None and self.engine is not None
        request = int(self.control.cdata.order_image_requests)
        last = int(lib.ts_worker_last_exec_id(self._worker))
        write_image(engine_pointer(self.engine), self.dir, self.spec.shard_id, request, last)
        self.control.cdata.order_images_served = request

    def request_stop(self) -> None:
        """Stop as the supervisor's flag would, without setting it (see worker.h)."""
        self._stop_signalled = True
        if self._worker is not None:
            lib.ts_worker_request_stop(self._worker)

    def run(self) -> int:
        """The loop: C slices, with snapshots and the stop in between. Returns the exit
        code (0 after a clean stop)."""
        assert self.control is not None
        if self._stop_signalled:
            lib.ts_worker_request_stop(self._worker)
        slice_ns = self.spec.slice_ms * 1_000_000
        # a first heartbeat before RUNNING, so a watcher never sees RUNNING with none
        self.control.cdata.heartbeat_ns = time.monotonic_ns()
        self.control.set_state(WorkerState.RUNNING)
        while True:
            rc = lib.ts_worker_run(self._worker, slice_ns)
            if rc == lib.TS_WORKER_SLICE_END:
                continue
            if rc == lib.TS_WORKER_SNAPSHOT_WRITTEN:
                self.snapshot_written()
                continue
            if rc == lib.TS_WORKER_SNAPSHOT_FAILED:
                log.warning("shard %d: %s", self.spec.shard_id, self.control.error)
                continue
            if rc == lib.TS_WORKER_SNAPSHOT_DUE:
                self.snapshot()
                continue
            if rc == lib.TS_WORKER_IMAGE_DUE:
                self.write_order_image()
                continue
            if rc == lib.TS_WORKER_STOP:
                break
            raise self._c_failure()
        self.control.set_state(WorkerState.STOPPING)
        seq = int(lib.ts_worker_seq(self._worker))
        # quiescent now: a background write in flight passes its gates and finishes
        lib.ts_worker_sync(self._worker)
        if lib.ts_worker_snapshot_wait(self._worker):
            raise self._c_failure()
        if seq != self.control.snapshot_seq or not self._store.path_for(seq).exists():
            self.snapshot()
        else:
            self._prune_now()
        if lib.ts_journal_close(self._journal, self._err):
            self._journal = None
            raise error_from_c(self._err)
        self._journal = None
        log.info(
            "shard %d: stopped cleanly at seq %d",
            self.spec.shard_id,
            int(lib.ts_worker_seq(self._worker)),
        )
        return EXIT_OK

    def close(self) -> None:
        """Free the C worker and journal, and unmap everything. Idempotent."""
        self._pruner.close()
        if self._worker is not None:
            lib.ts_worker_free(self._worker)
            self._worker = None
        if self._journal is not None:
            lib.ts_journal_close(self._journal, self._err)
            self._journal = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        for ring in self.rings:
            ring.close()
        self.rings.clear()
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.latency is not None:
            self.latency.close()
            self.latency = None


def snapshot_mode(writer: SnapshotWriter, shard_id: int) -> int:
    """The C worker's ts_snapshot_mode for ``writer``; "fork" where fork() is not
    available (not Linux) runs as "background", with a log line saying so."""
    if writer == "fork" and not lib.ts_worker_fork_supported():
        log.info(
            'shard %d: snapshot_writer = "fork" needs Linux; using "background"',
            shard_id,
        )
        writer = "background"
    return _SNAPSHOT_MODES[writer]


def _pin(core: int | None) -> None:
    if core is not None:
        psutil.Process().cpu_affinity([core])


@contextlib.contextmanager
def _new_threads_on(cpus: list[int]) -> Iterator[None]:
    """Threads started inside run on ``cpus`` (a thread inherits its creator's CPU mask),
    the calling thread goes back to its own mask after. A pinned worker's snapshot
    writer would otherwise share the worker's isolated core and take it from the loop
    for the length of every write. No ``cpus``: nothing changes."""
    if not cpus:
        yield
        return
    own = os.sched_getaffinity(0)  # 0: the calling thread
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)


def _ask_for_slice(spec: WorkerSpec) -> None:
    """A short scheduler slice when configured; a kernel that refuses it is logged, not
    fatal (the worker then runs with the default slice)."""
    if spec.sched_slice_us:
        try:
            set_thread_slice(spec.sched_slice_us * 1000)
        except OSError as exc:
            log.warning("shard %d: %s; running with the default slice", spec.shard_id, exc)


def run_worker(spec: WorkerSpec) -> int:
    """The body of a shard worker process; returns its exit code.

    0 after a clean stop, 1 for a spec that cannot work (a missing ring, a core that does
    not exist), 2 for a failure (journal corruption, I/O error): the control block's
    state says FAILED and its error text, like the log, names the file and offset.
    """
    entered_ns = time.monotonic_ns()
    worker = ShardWorker(spec)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("shard %d: signal %d: stopping", spec.shard_id, signum)
        worker.request_stop()

    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, on_signal)
        stop_with_supervisor()  # its death is a SIGTERM: drain, sync, snapshot, exit
    gc_was_enabled = gc.isenabled()
    code = EXIT_FAILURE
    try:
        try:
            _pin(spec.core)
            _ask_for_slice(spec)
            worker.attach()
            if spec.lock_memory:  # after attach: a refusal reaches the control block
                lock_memory()
        except (RingError, OSError, ValueError) as exc:
            log.error("shard %d: cannot start: %s", spec.shard_id, exc)
            code = EXIT_USER_ERROR
            if worker.control is not None:
                worker.control.set_error(str(exc))
                worker.control.set_state(WorkerState.FAILED)
            return code
        assert worker.control is not None
        try:
            worker.recover()
            # no Python runs per order from here on: nothing for the collector to do but
            # pause; freeze what start-up made so it is never scanned again
            gc.collect()
            gc.freeze()
            gc.disable()
            worker.control.cdata.recovery_ns = time.monotonic_ns() - entered_ns
            code = worker.run()
            worker.control.set_state(WorkerState.STOPPED)
        except (JournalError, MemoryError, OSError) as exc:
            where = ""
            if isinstance(exc, JournalCorruptError) and exc.path is not None:
                where = f" [file {exc.path}, offset {exc.offset}]"
            log.error("shard %d: %s%s", spec.shard_id, exc, where)
            worker.control.set_error(f"{exc}{where}")
            worker.control.set_state(WorkerState.FAILED)
            code = exit_code_for(
                exc.sys_errno if isinstance(exc, JournalError) else getattr(exc, "errno", None)
            )
        worker.control.set_exit_code(code)
        return code
    finally:
        worker.close()
        if gc_was_enabled:
            gc.enable()
        gc.unfreeze()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


USAGE = "usage: python -m tradsys.cores.worker (--spec-file PATH | SPEC_JSON)"


def main(argv: list[str] | None = None) -> int:
    """``python -m tradsys.cores.worker --spec-file PATH`` (or ``SPEC_JSON``)."""
    args = sys.argv[1:] if argv is None else argv
    logs.configure("worker")
    if len(args) == 2 and args[0] == "--spec-file":
        where = args[1]
        try:
            text = Path(where).read_bytes()
        except OSError as exc:
            print(f"tradsys.worker: cannot read the worker spec {where}: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
    elif len(args) == 1 and not args[0].startswith("-"):
        where, text = "(argument)", args[0].encode()
    else:
        print(USAGE, file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        spec = msgspec.json.decode(text, type=WorkerSpec)
    except msgspec.DecodeError as exc:
        print(f"tradsys.worker: bad worker spec {where}: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    logs.configure("worker", spec.shard_id)
    return run_worker(spec)


if __name__ == "__main__":
    sys.exit(main())
