"""A shard worker's control block: the shared memory through which the supervisor steers
a worker and watches it (``struct ts_worker_control``, native/worker.h).

The supervisor creates the segment ``/tradsys.<instance>.ctl.<shard>`` with the shard's
rings and keeps it across worker restarts (the exactly-once bookkeeping of a restarted
worker depends on it); the worker attaches. The supervisor writes only the steering
fields (stop, snapshot requests); the worker writes the rest — state, heartbeat,
counters — so every field has one writer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, overload

from tradsys._native import ffi, lib
from tradsys.ring.errors import RingAttachError
from tradsys.ring.segment import (
    MappedStruct,
    Segment,
    instance_segments,
    process_alive,
    segment_name,
    unlink_quietly,
)
from tradsys.ring.stale import find_stale

CONTROL_SIZE: int = lib.TS_WORKER_CONTROL_SIZE


class WorkerState(IntEnum):
    EMPTY = lib.TS_WORKER_EMPTY
    STARTING = lib.TS_WORKER_STARTING
    RECOVERING = lib.TS_WORKER_RECOVERING
    RUNNING = lib.TS_WORKER_RUNNING
    STOPPING = lib.TS_WORKER_STOPPING
    STOPPED = lib.TS_WORKER_STOPPED
    FAILED = lib.TS_WORKER_FAILED


class _Field:
    """A read-only integer field of the C struct, read fresh on every access."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _Field: ...
    @overload
    def __get__(self, obj: WorkerControl, objtype: type | None = None) -> int: ...
    def __get__(self, obj: WorkerControl | None, objtype: type | None = None) -> int | _Field:
        if obj is None:
            return self
        return int(getattr(obj.cdata, self.name))


@dataclass(frozen=True)
class ControlSnapshot:
    """Every field of a control block at one instant, for ``tradsys status``."""

    shard_id: int
    state: WorkerState
    pid: int
    incarnations: int
    heartbeat_ns: int
    processed_seq: int
    journaled_seq: int
    synced_seq: int
    acked_seq: int
    commands: int
    batches: int
    events_out: int
    md_out: int
    last_exec_id: int
    in_fill: int
    events_fill: int
    md_fill: int
    out_waits: int
    idle_waits: int
    busy_ns: int
    snapshot_seq: int
    recovered_from_seq: int
    replayed: int
    reemitted_events: int
    reemitted_md: int
    recovery_ns: int
    intake_skipped: int
    truncated_bytes: int
    error: str
    accepted_out: int = 0
    trades_out: int = 0
    cancelled_out: int = 0
    replaced_out: int = 0
    triggered_out: int = 0
    rejected_out: int = 0
    rejects_by_reason: tuple[int, ...] = ()


class WorkerControl(MappedStruct):
    """The control block of one shard (see the module docstring)."""

    shard_id = _Field()
    pid = _Field()
    start_us = _Field()
    incarnations = _Field()
    exit_code = _Field()
    stop_requested = _Field()
    snapshot_requests = _Field()
    snapshots_served = _Field()
    snapshots_taken = _Field()
    heartbeat_ns = _Field()
    processed_seq = _Field()
    journaled_seq = _Field()
    synced_seq = _Field()
    acked_seq = _Field()
    commands = _Field()
    batches = _Field()
    events_out = _Field()
    md_out = _Field()
    last_exec_id = _Field()
    in_fill = _Field()
    events_fill = _Field()
    md_fill = _Field()
    out_waits = _Field()
    idle_waits = _Field()
    busy_ns = _Field()
    snapshot_seq = _Field()
    recovered_from_seq = _Field()
    replayed = _Field()
    reemitted_events = _Field()
    reemitted_md = _Field()
    recovery_ns = _Field()
    intake_skipped = _Field()
    truncated_bytes = _Field()
    base_set = _Field()
    base_exec_id = _Field()
    inherited_exec_id = _Field()
    inherited_set = _Field()
    accepted_out = _Field()
    trades_out = _Field()
    cancelled_out = _Field()
    replaced_out = _Field()
    triggered_out = _Field()
    rejected_out = _Field()
    # snapshots and the stall they cost the loop (native/worker.h)
    snapshots_failed = _Field()
    snapshot_fork_ns = _Field()
    snapshot_child_ns = _Field()
    snapshot_cow_faults = _Field()
    snapshot_collapse_ns = _Field()
    batch_max_ns = _Field()
    fork_batch_max_ns = _Field()
    batch_gap_max_ns = _Field()

    @property
    def rejects_by_reason(self) -> tuple[int, ...]:
        """Engine rejects this incarnation pushed, indexed by ``wire.RejectReason``."""
        return tuple(int(v) for v in self.cdata.rejects_by_reason)

    md_refresh_requests = _Field()
    md_refreshes_served = _Field()
    md_refresh_records = _Field()
    order_image_requests = _Field()
    order_images_served = _Field()

    def __init__(self, segment: Segment) -> None:
        self._segment = segment
        self._base = ffi.from_buffer(segment.memory)
        self.cdata: Any = ffi.cast("ts_worker_control *", self._base)
        self.name = segment.name

    @classmethod
    def create(cls, name: str, shard_id: int | None = None) -> WorkerControl:
        """Create and format the segment (this handle owns it and unlinks it on close).
        ``shard_id`` defaults to the number at the end of the segment name."""
        if shard_id is None:
            m = re.search(r"\.(\d+)$", name)
            if not m:
                raise ValueError(f"control segment {name}: give shard_id, the name has none")
            shard_id = int(m.group(1))
        segment = Segment.create(name, CONTROL_SIZE)
        control = cls(segment)
        lib.ts_worker_control_init(control.cdata, shard_id)
        return control

    @classmethod
    def attach(cls, name: str) -> WorkerControl:
        """Map an existing control block, refusing a segment that is not one."""
        segment = Segment.attach(name)
        try:
            base = ffi.from_buffer(segment.memory)
            ok = lib.ts_worker_control_check(base, segment.size) == 0
            ffi.release(base)
            if not ok:
                raise RingAttachError(
                    f"cannot attach to control block {name}: not a worker control block of "
                    f"this version (or not initialised yet)"
                )
            return cls(segment)
        except BaseException:
            segment.close()
            raise

    # ---- steering (the supervisor's side) ----------------------------------------------

    def request_stop(self) -> None:
        """Ask the worker to drain its commands ring, sync, snapshot and exit 0. Wake it
        through its rings (``Ring.wake``) if it may be parked."""
        self.cdata.stop_requested = 1

    def clear_stop(self) -> None:
        """Forget a stop request (before starting a new worker on this block)."""
        self.cdata.stop_requested = 0

    def prepare_spawn(self) -> None:
        """Call before starting a new worker on this block (a restart): the dead worker's
        state (RUNNING) and stale heartbeat must not be taken for the new one's until it
        claims the block. No worker is attached then, so each field keeps one writer."""
        self.cdata.state = int(WorkerState.EMPTY)
        self.cdata.pid = 0
        self.cdata.heartbeat_ns = 0

    def mark_dead(self) -> None:
        """Call once the worker's process is gone (reaped): a worker killed mid-run leaves
        RUNNING behind, and until the restart (up to the restart backoff later) a reader
        -- the gateway deciding whether the shard is down -- would take it as running. A
        worker that said FAILED or STOPPED itself keeps its word. No worker is attached
        then, so each field keeps one writer."""
        if self.cdata.state not in (int(WorkerState.FAILED), int(WorkerState.STOPPED)):
            self.cdata.state = int(WorkerState.FAILED)

    def inherit(self, last_pushed_exec_id: int) -> None:
        """Call on a new run's block, before its first worker starts, when the run
        before was killed whole: the exec id of the last event that run's worker pushed
        (``tradsys.cores.dead_run``). The worker re-sends the events it replays above it,
        which the dead run journaled and never pushed; a new block otherwise re-sends
        nothing, all earlier output being an earlier run's. No worker is attached then,
        so each field keeps one writer."""
        self.cdata.inherited_exec_id = last_pushed_exec_id
        self.cdata.inherited_set |= lib.TS_INHERITED_EVENTS

    def inherit_md(self, md_pushed: int, carried: int) -> None:
        """As :meth:`inherit`, for market data: how many engine md records the dead run
        pushed, and how many of its unread ones were carried into this block's md ring;
        the worker re-sends the replayed md records past them."""
        self.cdata.inherited_md = md_pushed
        self.cdata.inherited_md_carried = carried
        self.cdata.inherited_set |= lib.TS_INHERITED_MD

    def request_snapshot(self) -> int:
        """Ask for a snapshot; it is taken when ``snapshots_served`` reaches the value
        returned."""
        n = (self.snapshot_requests + 1) & 0xFFFFFFFF
        self.cdata.snapshot_requests = n
        return n

    # ---- the market-data sidecar's side (md.py) -------------------------------------------

    def request_md_refresh(self) -> int:
        """Ask the worker to push its symbols' whole L2 books into the md ring (worker.h,
        "market-data refresh"); served when ``md_refreshes_served`` reaches the value
        returned. Written only by the md sidecar, so the field keeps one writer."""
        n = (self.md_refresh_requests + 1) & 0xFFFFFFFF
        self.cdata.md_refresh_requests = n
        return n

    def request_order_image(self) -> int:
        """Ask the worker for an image of its live orders (tradsys.cores.order_image);
        served when ``order_images_served`` reaches the value returned. Written only by
        the gateway."""
        n = (self.order_image_requests + 1) & 0xFFFFFFFF
        self.cdata.order_image_requests = n
        return n

    # ---- reading ---------------------------------------------------------------------

    @property
    def state(self) -> WorkerState:
        return WorkerState(self.cdata.state)

    @property
    def error(self) -> str:
        """The worker's last error text ('' if none)."""
        return str(ffi.string(self.cdata.error).decode(errors="replace"))

    def snapshot(self) -> ControlSnapshot:
        """All the fields at once (each read separately: figures, not a transaction)."""
        values: dict[str, Any] = {}
        for f in fields(ControlSnapshot):
            if f.name == "state":
                values[f.name] = self.state
            elif f.name == "error":
                values[f.name] = self.error
            elif f.name == "rejects_by_reason":
                values[f.name] = self.rejects_by_reason
            else:
                values[f.name] = getattr(self, f.name)
        return ControlSnapshot(**values)

    # ---- the worker's side (worker.py) ---------------------------------------------------

    def set_state(self, state: WorkerState) -> None:
        self.cdata.state = int(state)

    def set_error(self, text: str) -> None:
        raw = text.encode()[: ffi.sizeof(self.cdata.error) - 1]
        ffi.memmove(self.cdata.error, raw + b"\0", len(raw) + 1)

    def claim(self, pid: int, start_us: int) -> None:
        """Record the worker process that attached; counts incarnations."""
        self.cdata.pid = pid
        self.cdata.start_us = start_us
        self.cdata.incarnations = self.incarnations + 1
        self.cdata.error[0] = b"\0"

    def set_exit_code(self, code: int) -> None:
        self.cdata.exit_code = code

    # ---- life cycle ------------------------------------------------------------------------

    # close(), closed and the context manager: MappedStruct

    def __repr__(self) -> str:
        if self.closed:
            return f"<WorkerControl {self.name} closed>"
        return f"<WorkerControl {self.name} shard={self.shard_id} {self.state.name}>"


def find_stale_controls(instance: str) -> list[str]:
    """The control blocks of ``instance`` that a dead supervisor left behind.

    A control block records its worker, not its creator, so staleness is judged from
    what the supervisor made with it: the shard's commands ring (same supervisor, made
    just before the block). A block is stale when that ring is gone or its creator no
    longer runs, and no worker process attached to the block still runs. Blocks that
    cannot be read as control blocks of this version are left alone."""
    names = instance_segments(instance)
    stale_rings = {s.name for s in find_stale(instance)}
    pattern = re.compile(rf"{re.escape(segment_name(instance, 'ctl', 0))[:-1]}(\d+)")
    out = []
    for name in names:
        m = pattern.fullmatch(name)
        if m is None:
            continue
        commands = segment_name(instance, "cmd", int(m.group(1)))
        if commands in names and commands not in stale_rings:
            continue  # its supervisor runs
        try:
            control = WorkerControl.attach(name)
        except RingAttachError:
            continue
        with control:
            if not process_alive(control.pid, int(control.cdata.start_us)):
                out.append(name)
    return out


def reclaim_stale_controls(instance: str) -> list[str]:
    """Unlink the control blocks :func:`find_stale_controls` names; return them."""
    return unlink_quietly(find_stale_controls(instance))
