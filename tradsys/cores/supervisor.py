"""The supervisor: owns an instance's shared memory and processes, from start to clean stop.

It creates every segment (so it is the one that unlinks them), starts one shard worker
per configured shard, watches them — a worker that exits or stops heart-beating is
restarted from its journal, with back-off — and on SIGINT/SIGTERM asks each worker to
drain, snapshot and stop, then removes every segment it made. Workers are separate
interpreters started with ``python -m tradsys.cores.worker``, so a crash in one touches
nothing else.

Every engine process starts in a process group of its own: Ctrl-C in a terminal signals
the terminal's foreground process group, and that must be the supervisor alone, which
then stops the others in their order (gateway, workers, md). A group, not a session of its
own: with the kernel's autogroup scheduling (``sched_autogroup_enabled``, on by default)
each session is scheduled as one entity, so a gateway pump in a session of its own and a
colocated client in another stopped handing the CPU to each other when they yield (the
colocated e2e bench fell from 1 M to 250 k orders/s). A supervisor that dies takes them
down all the same (``tradsys.cores.parent_watch``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import msgspec
import psutil

from tradsys import wire
from tradsys.config import Config, housekeeping_cores, shared_cores, symbol_placement
from tradsys.cores.control import WorkerControl, WorkerState, reclaim_stale_controls
from tradsys.cores.cpu_latency import (
    NO_REQUEST,
    CpuLatencyError,
    CpuLatencyRequest,
    halts_whatever_is_asked,
)
from tradsys.cores.dead_run import (
    DEAD_RUN_FILE,
    DeadRun,
    leftovers_of,
    load_dead_run,
    orphaned_events,
    read_dead_run,
    save_dead_run,
)
from tradsys.cores.gateway_rings import is_session_ring
from tradsys.cores.memory_lock import why_not_lockable
from tradsys.cores.parent_watch import supervisor_env
from tradsys.cores.port_check import taken_ports
from tradsys.cores.sidecar import write_effective_config
from tradsys.cores.sidecar_runner import SidecarError, SidecarProcess
from tradsys.cores.state_check import StateMismatchError, check_state
from tradsys.cores.status import announcement_text, symbols_text
from tradsys.cores.worker import WorkerSpec
from tradsys.gateway.ledger import LEDGER_FILE, NO_RUN, adopt_ledger, ledger_run, run_id_of
from tradsys.metrics import InstanceCollector, MetricsServer
from tradsys.metrics.latency_segment import (
    ROLE_GATEWAY,
    ROLE_WORKER,
    LatencySegment,
    gateway_segment_name,
    reclaim_stale_latency,
    shard_segment_name,
)
from tradsys.ring import Ring, find_stale, reclaim_stale, segment_name
from tradsys.ring.segment import instance_segments, process_start_us, unlink_quietly

Log = Callable[[str], None]
_LOGGER = logging.getLogger("tradsys.supervisor")

# Back-off between restarts of one worker: doubles from the first value up to the cap,
# and starts over once a worker has run for STABLE_AFTER_S.
RESTART_BACKOFF_S = (0.05, 5.0)
STABLE_AFTER_S = 30.0


class SupervisorError(Exception):
    """The instance could not be started; the message says why. ``exit_code`` is what
    ``tradsys run`` exits with: 1 for what the user can put right (the config, the host,
    a process that refused its part of the config by exiting 1), 2 for a failure of ours
    (a process that crashed or did not come up)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _start_exit_code(returncode: int | None) -> int:
    """A process that exited 1 while starting refused something of the config (a busy
    port, a journal of another layout) and its log named it: the user's to put right.
    Any other code or a signal is a failure of ours."""
    return 1 if returncode == 1 else 2


def metrics_listen_error(listen: str, exc: OSError) -> SupervisorError:
    """A ``[metrics] listen`` the supervisor cannot bind, told as the config mistake it
    is (a port another program holds, an address this host does not have)."""
    why = exc.strerror or str(exc)
    return SupervisorError(
        f"metrics.listen = {listen!r}: cannot listen there: {why} (another program may "
        'hold the port: pick a free one, port 0 for any, or "" for no metrics endpoint)'
    )


@dataclass
class ShardProcess:
    """One shard worker: its spec, its control block, and its current process."""

    spec: WorkerSpec
    control: WorkerControl
    # its stage-latency histograms (kept across restarts, like the control block)
    latency: LatencySegment | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = RESTART_BACKOFF_S[0]
    restart_due: float | None = None
    pidfd: int | None = None


@dataclass
class Supervisor:
    """Start, watch and stop one instance. Use as a context manager, or call
    :meth:`start`, :meth:`watch` and :meth:`stop`."""

    config: Config
    # one call per event; the default goes to the structured log (tradsys.logs)
    log: Log = field(default=_LOGGER.info)
    # what went wrong — a process that died, was killed, exited non-zero — so an operator
    # can alert on the level; None: the structured log at warning level, or ``log`` when
    # the caller gave one of its own
    warn: Log | None = None
    python: str = sys.executable
    ready_timeout_s: float = 120.0
    # which module runs each sidecar (tests substitute their own)
    sidecar_modules: dict[str, str] = field(
        default_factory=lambda: {"md": "tradsys.cores.md", "gateway": "tradsys.cores.gateway"}
    )
    shards: list[ShardProcess] = field(default_factory=list)
    sidecars: list[SidecarProcess] = field(default_factory=list)
    rings: list[Ring] = field(default_factory=list)
    # the gateway's stage-latency histograms (None without a gateway)
    gateway_latency: LatencySegment | None = None
    metrics: MetricsServer | None = None
    # held while the instance runs when [engine] cpu_latency_us asks for it
    cpu_latency: CpuLatencyRequest | None = None
    _stop_requested: bool = False
    _wakeup: tuple[int, int] | None = None
    # monotonic ns of the last resume after a suspend (Ctrl-Z): heartbeats older than it
    # were not missed, the whole engine was stopped
    _resumed_ns: int = 0
    # a new trading day: the gateway starts a new ledger (flat positions) instead of
    # continuing the run before's (``tradsys run --new-day``)
    new_day: bool = False
    # (this run, the run before) once this run's start took the run before's ledger
    _adopted: tuple[int, int] | None = None

    # ---- start ---------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        if self.warn is not None:
            self.warn(message)
        elif self.log == _LOGGER.info:
            _LOGGER.warning(message)
        else:
            self.log(message)

    @property
    def instance(self) -> str:
        return self.config.engine.instance

    @property
    def status_path(self) -> Path:
        return Path(self.config.engine.data_dir) / self.instance / "supervisor.json"

    def start(self) -> None:
        """Create the shared memory, spawn every worker and wait until all are running."""
        # control blocks first: whether one is stale is read from its shard's rings
        stale = [s.name for s in find_stale(self.instance)]
        # a run killed whole: what its gateway never took, read before it is unlinked
        dead = self._read_dead_run(stale)
        kept = self._session_rings_to_keep(stale)
        for name in (
            reclaim_stale_controls(self.instance)
            + unlink_quietly([n for n in stale if n not in kept])
            + reclaim_stale_latency(self.instance)
        ):
            self.log(f"removed stale segment {name} (its creator is gone)")
        if kept:
            self.log(
                f"kept {len(kept)} session ring(s) of a dead run for the gateway to read "
                "(its clients' unread events and unanswered commands)"
            )
        left = [n for n in instance_segments(self.instance) if n not in kept]
        if left:
            raise SupervisorError(
                f"instance {self.instance!r} is already running (its segments exist: "
                f"{', '.join(left[:3])}); stop it first, or pick another engine.instance"
            )
        try:
            check_state(self.config)
        except StateMismatchError as exc:
            raise SupervisorError(str(exc)) from None
        # before the workers recover (minutes, for a long journal), not after
        busy = taken_ports(self.config)
        if busy:
            raise SupervisorError("; ".join(busy))
        for core, names in shared_cores(self.config).items():
            self._warn(
                f"{' and '.join(names)} are pinned to the same core {core}: they take turns "
                "on it, and a command waits for the other's time slice (tradsys tune check)"
            )
        try:
            self._make_instance_dir()
            self._hold_cpu_latency()
            self._check_memory_lock()
            try:
                for shard in self.config.shards:
                    self.shards.append(self._prepare(shard.id, shard.core))
                if dead is not None:
                    self._continue_dead_run(dead)
                self._continue_ledger()
                if self.config.gateway.enabled:
                    self.gateway_latency = LatencySegment.create(
                        gateway_segment_name(self.instance), ROLE_GATEWAY, 0
                    )
            except OSError as exc:  # /dev/shm full or not writable: the host's to fix
                raise SupervisorError(f"cannot create shared memory: {exc.strerror}") from None
            for sp in self.shards:
                try:
                    self._spawn(sp)
                except OSError as exc:  # the spec file: a full or read-only disk
                    raise SupervisorError(
                        f"cannot start shard {sp.spec.shard_id}'s worker: {exc.strerror or exc}"
                        f" ({exc.filename or self.spec_path(sp.spec.shard_id)})"
                    ) from None
            self._wait_ready()
            self._start_sidecars()
            listen = self.config.metrics.listen
            if listen:
                try:
                    self.metrics = MetricsServer(listen, InstanceCollector(self))
                except OSError as exc:
                    raise metrics_listen_error(listen, exc) from None
        except BaseException:
            self._undo_adoption()
            self.stop()
            raise
        self._write_status()
        # the leftovers are in this run's rings now (and a whole kill of this run leaves
        # them stale for the next, with this run's own)
        self._dead_run_file.unlink(missing_ok=True)

    def _session_rings_to_keep(self, stale: list[str]) -> set[str]:
        """Of the ``stale`` rings, a dead run's session rings, left for this run's gateway:
        its start reads the events their clients had not read (held for the accounts'
        next sessions) and answers the commands nobody took (GATEWAY_RESTARTED), then
        unlinks them. A run
        killed whole at once (a cgroup OOM kill, ``systemctl kill -s KILL``) leaves them
        as a killed gateway alone does; unlinked here as stale, they were lost. Without a
        gateway nobody reads them: none is kept."""
        if not self.config.gateway.enabled:
            return set()
        return {name for name in stale if is_session_ring(self.instance, name)}

    @property
    def _dead_run_file(self) -> Path:
        return self.config.instance_dir / DEAD_RUN_FILE

    def _read_dead_run(self, stale: list[str]) -> DeadRun | None:
        """What a run killed whole left (``tradsys.cores.dead_run``): read from its stale
        segments and written to the instance's directory before they are unlinked, or,
        with none, what the file kept from a start that failed after reading them."""
        kept = load_dead_run(self._dead_run_file)
        shard_ids = [s.id for s in self.config.shards]
        dead = read_dead_run(self.instance, stale, shard_ids)
        if dead is None:
            self._refuse_orphans(kept, shard_ids)
            return kept
        dead = dead.after(kept)
        self._refuse_orphans(dead, shard_ids)
        try:
            self._dead_run_file.parent.mkdir(parents=True, exist_ok=True)
            save_dead_run(dead, self._dead_run_file)
        except OSError as exc:
            raise SupervisorError(
                f"cannot keep what the run killed before this one left: {exc} (is the "
                "disk full? its segments are kept until this start can)"
            ) from None
        return dead

    def _refuse_orphans(self, dead: DeadRun | None, shard_ids: list[int]) -> None:
        """Refuse a start that would drop events owed to clients: a dead run's events of
        a shard this configuration no longer has (``dead_run.orphaned_events``). Before
        anything is unlinked or written, so the next start finds them as they were."""
        if dead is None:
            return
        orphans = orphaned_events(dead, shard_ids)
        if orphans:
            named = ", ".join(f"shard {sid}: {n}" for sid, n in orphans.items())
            raise SupervisorError(
                f"the run before this one was killed and left events no gateway delivered "
                f"({named}) of shards this configuration no longer has: acknowledgements "
                "and fills clients are owed. Start once with those shards configured (the "
                "gateway delivers them), or drop them with `tradsys shm reclaim --force` "
                f"and remove {self._dead_run_file}"
            )
        for sid, left in sorted(dead.shards.items()):
            if sid not in shard_ids and len(left.md_unread):
                self._warn(
                    f"shard {sid} is no longer configured: {len(left.md_unread)} market-data "
                    "record(s) its dead run never published are dropped (its trade prints "
                    "among them are in no feed)"
                )

    def _keep_unread_events(self) -> list[str]:
        """Every process is gone: events still in an events ring would go with it. A
        start that failed after carrying a dead run's events in leaves those, with what
        its workers re-sent; a gateway that died as the instance stopped leaves what it
        had not taken; a clean stop leaves what its gateway took, held and did not yet
        release (the cancel-on-disconnect answers of its last sessions). All are written
        to the dead-run file, and the next run's gateway holds them for the accounts'
        next sessions, as it does a run killed whole, each once (its held-events log
        knows those held already). Only with a gateway: without one, the rings are a
        reader of the user's own."""
        if not self.config.gateway.enabled or not self.shards:
            return []
        shards = {}
        for sp in self.shards:
            md = self._ring_named(sp.spec.md) if self._md_published else None
            left_here = leftovers_of(
                sp.spec.shard_id, self._ring_named(sp.spec.events), md, sp.control
            )
            if len(left_here.unread) or left_here.last_pushed_exec_id is not None:
                shards[sp.spec.shard_id] = left_here
        left = sum(len(x.unread) for x in shards.values())
        earlier = load_dead_run(self._dead_run_file)
        if not left and earlier is None:
            return []
        try:
            save_dead_run(DeadRun(shards).after(earlier), self._dead_run_file)
        except OSError as exc:
            return [f"{left} event(s) no gateway took could not be kept: {exc}"]
        if left:  # no failure: the next run's gateway delivers them
            self.log(
                f"{left} event(s) still in the events rings are kept in "
                f"{self._dead_run_file}: the next run's gateway delivers those its "
                "held-events log does not have already"
            )
        return []

    def _ring_named(self, name: str) -> Ring:
        return next(r for r in self.rings if r.name == name)

    @property
    def _md_published(self) -> bool:
        """Whether this run's workers push market data (someone drains the md rings)."""
        return self.config.md.enabled or self.config.md.external_reader

    def _undo_adoption(self) -> None:
        """A start that fails hands the ledger back to the run before: the next start
        hands it over again."""
        if self._adopted is None:
            return
        this_run, before = self._adopted
        adopt_ledger(self.config.instance_dir / LEDGER_FILE, this_run, before)
        self._adopted = None

    def _continue_dead_run(self, dead: DeadRun) -> None:
        """The run before this one was killed whole (``tradsys.cores.dead_run``): carry
        the events its gateway never took into this run's rings, tell each new control
        block where the dead run's output ended (its worker re-sends what it journaled
        after that). Before any process of this run starts."""
        for sp in self.shards:
            left = dead.shards.get(sp.spec.shard_id)
            if left is None:
                continue
            ring = self._ring_named(sp.spec.events)
            carried = ring.push_batch(left.unread) if len(left.unread) else 0
            floor = left.last_pushed_exec_id
            if carried < len(left.unread):
                # the new ring is smaller: the rest only if the worker replays them
                floor = int(left.unread[carried]["exec_id"]) - 1
                self._warn(
                    f"shard {sp.spec.shard_id}: {len(left.unread) - carried} event(s) the "
                    "dead run's gateway never took do not fit this run's events ring "
                    f"(engine.ring_capacity {ring.capacity}); its worker re-sends those it "
                    "replays, the rest are lost"
                )
            if floor is not None:
                sp.control.inherit(floor)
            if carried or floor is not None:
                self.log(
                    f"shard {sp.spec.shard_id}: carried {carried} event(s) no gateway of "
                    "the run before took (killed whole, a failed start, or answers that "
                    "came after its gateway stopped), and its worker re-sends what that "
                    f"run journaled after exec id {floor}"
                )
            if self._md_published and left.md_pushed is not None:
                md = self._ring_named(sp.spec.md)
                md_carried = md.push_batch(left.md_unread) if len(left.md_unread) else 0
                # what did not fit (a smaller ring) is re-sent if replayed, as for events
                md_pushed = left.md_pushed - (len(left.md_unread) - md_carried)
                sp.control.inherit_md(md_pushed, md_carried)
                self.log(
                    f"shard {sp.spec.shard_id}: carried {md_carried} market-data record(s) "
                    "the dead run's md sidecar never published; its worker re-sends the "
                    f"rest from md record {md_pushed}"
                )

    def _continue_ledger(self) -> None:
        """Go on with the gateway ledger of the run before this one -- its positions,
        filled notional and kill switches -- as the ledger file names it, whether that
        run stopped or was killed whole: a restart is no new trading day, and an
        account's position limit must not start again from flat with it. A run started
        as a new trading day (``new_day``, ``tradsys run --new-day``) starts a new
        ledger instead. Before any gateway starts."""
        if not self.config.gateway.enabled:
            return
        path = self.config.instance_dir / LEDGER_FILE
        before = ledger_run(path)
        if self.new_day:
            if before is not None:  # retired: no run's, so the gateway starts a new one
                adopt_ledger(path, before, NO_RUN)
            self.log("a new trading day: the gateway starts a new ledger (flat positions)")
            return
        first = segment_name(self.instance, "cmd", self.config.shards[0].id)
        info = self._ring_named(first).info()
        this_run = run_id_of(info.creator_pid, info.creator_start_us)
        if before is not None and adopt_ledger(path, before, this_run):
            self._adopted = (this_run, before)
            self.log(
                "the gateway continues the ledger of the run before this one (positions, "
                "filled notional, kill switches); `tradsys run --new-day` starts flat"
            )

    def _make_instance_dir(self) -> None:
        """The instance's directory, made before any process is started: a data_dir that
        cannot hold it (a file, a read-only place) is the config's mistake, told as such,
        not each worker's failure to journal."""
        try:
            for shard in self.config.shards:
                self.config.shard_data_dir(shard.id).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SupervisorError(
                f"engine.data_dir = {self.config.engine.data_dir!r}: cannot make the "
                f"instance's directory there: {exc.strerror or exc} ({exc.filename})"
            ) from None

    def _hold_cpu_latency(self) -> None:
        """The instance asked for a bound on idle-exit time: hold it until stop, or refuse
        to start (an operator who asked for it must not get a slower engine unawares)."""
        want = self.config.engine.cpu_latency_us
        if want == NO_REQUEST or self.cpu_latency is not None:
            return
        try:
            self.cpu_latency = CpuLatencyRequest(want)
        except CpuLatencyError as exc:
            raise SupervisorError(
                f"engine.cpu_latency_us = {want}: {exc.strerror} (run as root, give the "
                "engine's user write access to the file, or set it to -1)"
            ) from None
        self.log(f"holding a CPU latency request of {want} µs while the instance runs")
        if halts_whatever_is_asked():
            self._warn(
                "this host has no cpuidle driver, so the CPU latency request changes "
                "nothing: idle CPUs halt in the kernel's default idle loop (idle=poll on the "
                "kernel command line makes them poll; tradsys tune check)"
            )

    def _check_memory_lock(self) -> None:
        """Each engine process locks itself; whether it may is the same answer here (its
        children inherit the limits and capabilities), so refuse before spawning any."""
        if not self.config.engine.lock_memory:
            return
        reason = why_not_lockable()
        if reason is not None:
            raise SupervisorError(f"engine.lock_memory = true, but {reason}")

    def _ring(self, role: str, shard_id: int) -> Ring:
        ring = Ring.create(
            segment_name(self.instance, role, shard_id),
            slot_size=wire.RECORD_SIZE,
            capacity=self.config.engine.ring_capacity,
            layout_version=wire.LAYOUT_VERSION,
        )
        self.rings.append(ring)
        return ring

    def _prepare(self, shard_id: int, core: int | None) -> ShardProcess:
        commands = self._ring("cmd", shard_id)
        events = self._ring("evt", shard_id)
        md = self._ring("md", shard_id)
        control = WorkerControl.create(segment_name(self.instance, "ctl", shard_id))
        try:
            latency = LatencySegment.create(
                shard_segment_name(self.instance, shard_id), ROLE_WORKER, shard_id
            )
        except BaseException:
            control.close()
            raise
        j = self.config.journal
        placement = symbol_placement(self.config)
        spec = WorkerSpec(
            instance=self.instance,
            shard_id=shard_id,
            core=core,
            instruments=self.config.symbols_of(shard_id),
            elsewhere=[
                (ins.symbol, ins.symbol_id, placement[ins.symbol])
                for ins in self.config.instruments
                if placement[ins.symbol] != shard_id
            ],
            data_dir=str(self.config.shard_data_dir(shard_id)),
            durability=j.durability,
            group_commit_us=j.group_commit_us,
            segment_bytes=j.segment_mb << 20,
            snapshot_every=j.snapshot_every,
            snapshot_writer=j.snapshot_writer,
            wait=self.config.engine.wait,
            discard_md=not (self.config.md.enabled or self.config.md.external_reader),
            sched_slice_us=self.config.engine.sched_slice_us,
            lock_memory=self.config.engine.lock_memory,
            housekeeping_cpus=housekeeping_cores(self.config),
            commands=commands.name,
            events=events.name,
            md=md.name,
            control=control.name,
            latency=latency.name,
        )
        return ShardProcess(spec=spec, control=control, latency=latency)

    def _spawn(self, sp: ShardProcess) -> None:
        spec_file = self._write_spec(sp)
        # a dead worker's block still says RUNNING with an old heartbeat: reset it so the
        # watch loop does not judge the new process by its predecessor
        sp.control.prepare_spawn()
        sp.control.clear_stop()
        cmd = [self.python, "-m", "tradsys.cores.worker", "--spec-file", str(spec_file)]
        # a process group of its own: a terminal's Ctrl-C reaches the supervisor only,
        # which stops the workers in order (see the module's docstring)
        sp.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, env=supervisor_env(), process_group=0
        )
        sp.pidfd = os.pidfd_open(sp.process.pid)
        sp.started_at = time.monotonic()
        sp.restart_due = None
        core = "any core" if sp.spec.core is None else f"core {sp.spec.core}"
        self.log(f"shard {sp.spec.shard_id} worker pid {sp.process.pid} on {core}")

    def spec_path(self, shard_id: int) -> Path:
        """Where a shard's worker reads its spec (absolute: ``ps`` shows it)."""
        return self.config.instance_dir.absolute() / f"worker-{shard_id}.spec.json"

    def _write_spec(self, sp: ShardProcess) -> Path:
        """The worker's spec, in a file rather than on its command line: it lists every
        instrument of the shard (~160 bytes each), and Linux caps one argument at 128 KiB
        (``MAX_ARG_STRLEN``), so a shard of ~800 symbols could not be started (E2BIG).
        Not stdin: a spec bigger than a pipe's buffer would block the supervisor until
        the child read it. Written atomically, owner-only, and only when the file does
        not already hold this spec: a restart reuses it (it has the same spec) and
        writes it again if it has gone. Removed at stop."""
        path = self.spec_path(sp.spec.shard_id)
        data = msgspec.json.encode(sp.spec)
        with contextlib.suppress(OSError):
            if path.read_bytes() == data:
                return path
        tmp = path.with_suffix(".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
        tmp.replace(path)
        return path

    def _remove_specs(self) -> None:
        for shard in self.config.shards:
            path = self.spec_path(shard.id)
            for leftover in (path, path.with_suffix(".tmp")):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    def _wait_ready(self) -> None:
        """Block until every worker reports RUNNING (recovery included), or fail."""
        deadline = time.monotonic() + self.ready_timeout_s
        waiting = list(self.shards)
        while waiting:
            self._refuse_if_stopping()
            for sp in list(waiting):
                assert sp.process is not None
                if sp.control.state == WorkerState.RUNNING or self._waits_for_sidecars(sp):
                    waiting.remove(sp)
                elif sp.process.poll() is not None:
                    why = sp.control.error
                    raise SupervisorError(
                        f"shard {sp.spec.shard_id} worker exited with code "
                        f"{sp.process.returncode} while starting"
                        + (f": {why}" if why else "; its log above says why"),
                        _start_exit_code(sp.process.returncode),
                    )
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"shard(s) {[sp.spec.shard_id for sp in waiting]} not running after "
                    f"{self.ready_timeout_s:.0f} s",
                    2,
                )
            time.sleep(0.005)  # start-up only: recovery time dwarfs this poll

    def _waits_for_sidecars(self, sp: ShardProcess) -> bool:
        """Whether a recovering worker waits for room in its events or md ring: it is
        re-sending more than the ring holds (after a run killed whole, with what that
        run's gateway or md sidecar never took carried in ahead), and only the sidecars,
        started after the workers, will take it; its recovery ends once they drain. The
        gateway's own start waits for every worker's order image as long as it must."""
        if sp.control.state != WorkerState.RECOVERING:
            return False
        rings = [sp.spec.events] + ([sp.spec.md] if self._md_published else [])
        return any(self._ring_named(name).writable == 0 for name in rings)

    def _refuse_if_stopping(self) -> None:
        """A SIGINT/SIGTERM during start-up ends the start (the engine processes, in
        process groups of their own, did not get it: waiting on would make Ctrl-C wait for a
        whole recovery and every sidecar)."""
        if self._stop_requested:
            raise SupervisorError("stopped while starting (SIGINT or SIGTERM)")

    def _start_sidecars(self) -> None:
        """The market-data sidecar first (so nothing the workers publish waits long), the
        gateway last (clients can only come once everything behind it serves)."""
        config_path = write_effective_config(self.config)
        md, gateway = self.config.md, self.config.gateway
        wanted = [("md", md.enabled, md.core), ("gateway", gateway.enabled, gateway.core)]
        for name, enabled, core in wanted:
            module = self.sidecar_modules[name]
            if not enabled:
                continue
            if importlib.util.find_spec(module) is None:
                self.log(f"{name} is not part of this build; not started")
                continue
            self._refuse_if_stopping()
            sc = SidecarProcess(name, module, self.config, config_path, self.python, core)
            self.sidecars.append(sc)
            sc.spawn(self.log)
            try:
                sc.wait_ready(self.ready_timeout_s, functools.partial(self._start_called_off, name))
            except SidecarError as exc:
                raise SupervisorError(str(exc), exc.exit_code) from None

    def _start_called_off(self, starting: str) -> bool:
        """While a sidecar starts: True on a stop request; SupervisorError if a worker
        died meanwhile (the gateway would wait out its order-image request for it, 30 s,
        and then fail for a reason its log could not name)."""
        for sp in self.shards:
            code = sp.process.poll() if sp.process is not None else None
            if code is not None:
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                raise SupervisorError(
                    f"shard {sp.spec.shard_id}'s worker died ({how}) while {starting} was "
                    "starting; its log above says why",
                    2,
                )
        return self._stop_requested

    def connection_info(self) -> list[str]:
        """Where clients attach: the sidecars' announced endpoints, then each shard."""
        lines = []
        if self.metrics is not None:
            lines.append(f"metrics: http://{self.metrics.address}/metrics")
        for sc in self.sidecars:
            doc = sc.announcement() or {}
            where = announcement_text(doc)
            lines.append(f"{sc.name}: {where or '(starting)'}")
        for sp in self.shards:
            symbols = symbols_text([i.symbol for i in sp.spec.instruments]) or "(no symbols)"
            # each ring has one producer and one consumer: say who, so nobody attaches twice
            running = {sc.name for sc in self.sidecars}
            cmd_evt = "the gateway's" if "gateway" in running else "free: attach as producer"
            md = "the md sidecar's" if "md" in running else "free: attach as consumer"
            lines.append(
                f"shard {sp.spec.shard_id} [{symbols}]: commands {sp.spec.commands} and "
                f"events {sp.spec.events} ({cmd_evt}), market data {sp.spec.md} ({md})"
            )
        return lines

    # ---- watch -----------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        """Ask :meth:`watch` to return; safe from a signal handler."""
        self._stop_requested = True
        if self._wakeup is not None:
            with contextlib.suppress(OSError):  # the pipe is full: a wake-up is pending
                os.write(self._wakeup[1], b"x")

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        # a terminal that closes: the engine processes, in process groups of their own, do
        # not get its SIGHUP, so the supervisor stops them in order as for Ctrl-C
        signal.signal(signal.SIGHUP, handler)
        # Ctrl-Z likewise reaches the supervisor alone: it suspends the engine with it
        signal.signal(signal.SIGTSTP, lambda signum, frame: self.suspend())

    def _engine_groups(self) -> list[int]:
        """The process groups of the engine processes: each child leads its own. Asked of
        the kernel, so that one spawned a moment ago (the signal may land between its
        fork and its entry in our tables) is stopped too."""
        return [child.pid for child in psutil.Process().children()]

    def suspend(self) -> None:
        """Ctrl-Z: stop every engine process, then the supervisor itself; ``fg`` or ``bg``
        (SIGCONT to the supervisor) continues them all. Without this a suspended `tradsys
        run` left the workers and the gateway running, unwatched, and `fg` found them
        with stale heartbeats. Only while the instance runs (:meth:`watch`): starting and
        stopping have deadlines a suspend would run out, so Ctrl-Z then does nothing."""
        if self._wakeup is None or self._stop_requested:
            self.log("Ctrl-Z ignored: the instance is starting or stopping")
            return
        groups = self._engine_groups()
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)  # returns once continued
        self._resumed_ns = time.monotonic_ns()
        for sc in self.sidecars:
            sc.forgive_silence(time.monotonic())
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGCONT)
        self.log(f"continued after a suspend ({len(groups)} engine processes)")

    def watch(self, until: Callable[[], bool] | None = None, tick_s: float = 0.1) -> None:
        """Supervise until a stop is requested (or ``until()`` says so): restart workers
        that exit or stop heart-beating. Wakes on a worker's exit at once (pidfd)."""
        r, w = os.pipe()
        os.set_blocking(w, False)
        self._wakeup = (r, w)
        sel = selectors.DefaultSelector()
        sel.register(r, selectors.EVENT_READ)
        try:
            while not self._stop_requested and not (until and until()):
                registered = {sp.pidfd for sp in self.shards if sp.pidfd is not None}
                registered |= {sc.pidfd for sc in self.sidecars if sc.pidfd is not None}
                for fd in registered:
                    sel.register(fd, selectors.EVENT_READ)
                sel.select(timeout=tick_s)
                for fd in registered:
                    sel.unregister(fd)
                self._check_workers()
        finally:
            sel.close()
            os.close(r)
            os.close(w)
            self._wakeup = None

    def _check_workers(self) -> None:
        now = time.monotonic()
        for sc in self.sidecars:
            if sc.check(now, self.log, self._warn, STABLE_AFTER_S, RESTART_BACKOFF_S[1]):
                self._write_status()
        timeout_ns = self.config.engine.heartbeat_timeout_ms * 1_000_000
        for sp in self.shards:
            proc = sp.process
            if proc is None:
                if sp.restart_due is not None and now >= sp.restart_due:
                    try:
                        self._spawn(sp)
                    except OSError as exc:  # its spec file could not be written: retry
                        self._warn(
                            f"shard {sp.spec.shard_id} worker cannot be restarted: "
                            f"{exc.strerror or exc} ({exc.filename}); retrying in "
                            f"{sp.backoff_s:.2f} s"
                        )
                        sp.restart_due = now + sp.backoff_s
                        sp.backoff_s = min(sp.backoff_s * 2, RESTART_BACKOFF_S[1])
                        continue
                    self._write_status()
                continue
            code = proc.poll()
            if code is None and sp.control.state == WorkerState.RUNNING:
                # a worker publishes RUNNING just before its loop writes the first
                # heartbeat (prepare_spawn zeroed it): count from the spawn until then
                last_ns = max(sp.control.heartbeat_ns, int(sp.started_at * 1e9), self._resumed_ns)
                age_ns = time.monotonic_ns() - last_ns
                if age_ns > timeout_ns:
                    self._warn(
                        f"shard {sp.spec.shard_id} worker pid {proc.pid} has not "
                        f"heart-beaten for {age_ns / 1e9:.1f} s; killing it"
                    )
                    proc.kill()
                    code = proc.wait()
            if code is not None:
                self._schedule_restart(sp, code, now)
                self._write_status()  # `tradsys status` shows it down, its restart counted

    def _schedule_restart(self, sp: ShardProcess, code: int, now: float) -> None:
        sp.control.mark_dead()
        if sp.pidfd is not None:
            os.close(sp.pidfd)
            sp.pidfd = None
        sp.process = None
        if now - sp.started_at > STABLE_AFTER_S:
            sp.backoff_s = RESTART_BACKOFF_S[0]
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        self._warn(
            f"shard {sp.spec.shard_id} worker died ({how}); restarting from its "
            f"journal in {sp.backoff_s:.2f} s"
        )
        sp.restarts += 1
        sp.restart_due = now + sp.backoff_s
        sp.backoff_s = min(sp.backoff_s * 2, RESTART_BACKOFF_S[1])

    # ---- stop ------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Ask every worker to drain, snapshot and exit; kill the ones that do not in time;
        then unlink every segment. Idempotent.

        The gateway goes first (no new orders), the market-data sidecar last (it
        publishes what the workers emitted while draining).

        Returns what did not stop cleanly, one line each — a worker killed at the
        deadline (it wrote no final snapshot: the next start replays its journal), a
        process that exited non-zero, a sidecar killed — or an empty list."""
        failures: list[str] = []
        deadline = time.monotonic() + self.config.engine.stop_timeout_ms / 1000
        sidecar_timeout_s = self.config.engine.stop_timeout_ms / 1000
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        for sc in self.sidecars:
            if sc.name == "gateway":
                failures += sc.stop(sidecar_timeout_s, self._warn)
        for sp in self.shards:
            sp.control.request_stop()
        for ring in self.rings:
            ring.wake()
        for sp in self.shards:
            if sp.process is None:
                if sp.restart_due is not None:  # it died and waits for its restart
                    failures.append(
                        f"shard {sp.spec.shard_id} worker was down when the instance "
                        f"stopped (it had died, {sp.restarts} restart(s) so far): what its "
                        "command ring held was never journaled; the next start replays "
                        "its journal"
                    )
                continue
            left = max(0.0, deadline - time.monotonic())
            shard = sp.spec.shard_id
            try:
                code = sp.process.wait(timeout=left)
                if code != 0:
                    self._warn(f"shard {shard} worker exited with {code}")
                    how = f"signal {-code}" if code < 0 else f"exit code {code}"
                    failures.append(f"shard {shard} worker stopped with {how}")
            except subprocess.TimeoutExpired:
                self._warn(f"shard {shard} did not stop in time; killing it")
                sp.process.kill()
                sp.process.wait()
                failures.append(
                    f"shard {shard} worker did not stop within engine.stop_timeout_ms "
                    f"({self.config.engine.stop_timeout_ms} ms) and was killed: no final "
                    "snapshot, the next start replays its journal"
                )
            if sp.pidfd is not None:
                os.close(sp.pidfd)
                sp.pidfd = None
            sp.process = None
        for sc in self.sidecars:
            failures += sc.stop(sidecar_timeout_s, self._warn)
        failures += self._keep_unread_events()  # every process is gone
        for sp in self.shards:
            sp.control.close()
            if sp.latency is not None:
                sp.latency.close()
        if self.gateway_latency is not None:
            self.gateway_latency.close()
            self.gateway_latency = None
        for ring in self.rings:
            ring.close()
        self._remove_specs()
        # segments a killed sidecar made (a gateway's session rings) have a dead creator
        for name in reclaim_stale(self.instance):
            self.log(f"removed {name}, left by a process that died")
        self.shards.clear()
        self.sidecars.clear()
        self.rings.clear()
        # (none written when the start failed, maybe because data_dir is unusable)
        with contextlib.suppress(OSError):
            self.status_path.unlink()
        if self.cpu_latency is not None:
            self.cpu_latency.close()
            self.cpu_latency = None
        return failures

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- status ----------------------------------------------------------------------------

    def _write_status(self) -> None:
        """What `tradsys status` reads to find this instance's processes."""
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "supervisor_pid": os.getpid(),
            "supervisor_start_us": process_start_us(),
            "instance": self.instance,
            "metrics": self.metrics.address if self.metrics else None,
            "shards": [
                {
                    "shard": sp.spec.shard_id,
                    "pid": sp.process.pid if sp.process else None,
                    "core": sp.spec.core,
                    "restarts": sp.restarts,
                    "symbols": [i.symbol for i in sp.spec.instruments],
                    "control": sp.spec.control,
                    "latency": sp.spec.latency,
                    "rings": [sp.spec.commands, sp.spec.events, sp.spec.md],
                    "data_dir": sp.spec.data_dir,
                }
                for sp in self.shards
            ],
            "gateway_latency": self.gateway_latency.name if self.gateway_latency else None,
            "sidecars": [
                {
                    "name": sc.name,
                    "pid": sc.process.pid if sc.process else None,
                    "core": sc.core,
                    "restarts": sc.restarts,
                }
                for sc in self.sidecars
            ],
        }
        tmp = self.status_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=2))
            tmp.replace(self.status_path)
        except OSError as exc:  # supervising goes on; `tradsys status` reads an older file
            self._warn(f"cannot write {self.status_path}: {exc.strerror or exc}")
