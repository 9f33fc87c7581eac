"""What a run killed whole leaves for the next one, read before its segments are removed.

When every engine process dies at once (a cgroup OOM kill, ``systemctl kill -s KILL``),
nothing stops cleanly, and two kinds of execution events are in no journal a gateway
reads and no file a client reads:

- those a worker had pushed to its ``evt`` ring that the dead gateway had not taken
  (or had taken and not yet released: its pump releases an event only once it has left
  its memory). They are still in the dead ring's slots, readable as long as the segment
  exists;
- those a worker had journaled but not pushed (held for a group commit, or waiting for
  room in a full ring). The journal has their commands, and the next run's worker
  replays them; it re-sends their events if it knows where the dead run's output ended.

Within a run the rings and control blocks outlive any one process, so a restarted worker
or gateway finds both in place (``native/worker.h``, ``tradsys.gateway.recovery``). A new
run makes new ones. So the next run's supervisor reads, for each shard, the dead ring's
unread records (carried into the new ring before the worker starts, oldest first) and
the exec id of the last event the dead run pushed (given to the new control block,
:meth:`WorkerControl.inherit`). The new gateway then drains the rings at its start as a
restarted gateway does: each event goes to its account's next session, a position cell
counts each trade once by its exec id, and an event the dead gateway had already passed
on is not passed on twice (the held-events log and the dead sessions' rings say which).

The dead run's id (the creator of its rings) lets the next run continue the dead run's
gateway ledger (``ts_gateway_ledger_adopt``): its positions and filled notional, which a
run that stopped cleanly does not hand over.

What cannot be carried, said in the log: records of a dead ring larger than the new
``ring_capacity`` (the config was changed between the runs) beyond what fits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradsys import wire
from tradsys.cores.control import WorkerControl
from tradsys.gateway.ledger import run_id_of
from tradsys.ring import Ring, segment_name
from tradsys.ring.errors import RingError

log = logging.getLogger("tradsys.supervisor")


@dataclass(frozen=True)
class ShardLeftovers:
    """One shard's part of a dead run."""

    shard_id: int
    unread: np.ndarray[Any, Any]  # EVENT_DTYPE records not taken by the gateway, oldest first
    last_pushed_exec_id: int | None  # None: the dead run's worker pushed nothing known


@dataclass(frozen=True)
class DeadRun:
    run_id: int  # the dead run's (gateway.ledger.run_id_of its rings' creator)
    shards: dict[int, ShardLeftovers]

    @property
    def unread(self) -> int:
        return sum(len(s.unread) for s in self.shards.values())


def read_dead_run(instance: str, stale: Iterable[str], shard_ids: Iterable[int]) -> DeadRun | None:
    """The dead run whose rings are among ``stale`` (segment names whose creator is
    gone), for the shards this configuration has; None if no shard ring of a run is
    stale. Call before the stale segments are unlinked. Rings of another layout (an
    older build) are skipped, and said."""
    stale = set(stale)
    shard_ids = list(shard_ids)
    run_id = None
    shards = {}
    for sid in shard_ids:
        name = segment_name(instance, "cmd", sid)
        if run_id is None and name in stale:
            run_id = _run_id_of(name)
    for sid in shard_ids:
        if segment_name(instance, "evt", sid) in stale:
            left = _read_shard(instance, sid)
            if left is not None:
                shards[sid] = left
    if run_id is None and not shards:
        return None
    return DeadRun(run_id or 0, shards)


def _attach(name: str) -> Ring:
    return Ring.attach(name, slot_size=wire.RECORD_SIZE, layout_version=wire.LAYOUT_VERSION)


def _run_id_of(cmd_ring: str) -> int | None:
    try:
        with _attach(cmd_ring) as ring:
            info = ring.info()
    except RingError as exc:
        log.warning("the dead run's ring %s cannot be read: %s", cmd_ring, exc)
        return None
    return run_id_of(info.creator_pid, info.creator_start_us)


def _read_shard(instance: str, shard_id: int) -> ShardLeftovers | None:
    name = segment_name(instance, "evt", shard_id)
    try:
        with _attach(name) as ring:
            unread = np.zeros(ring.readable, dtype=wire.EVENT_DTYPE)
            unread = unread[: ring.peek_batch(unread)]
            last = np.zeros(1, dtype=wire.EVENT_DTYPE)
            pushed = ring.last_published(last)
    except RingError as exc:
        log.warning(
            "shard %d: the dead run's events ring cannot be read (%s): the events its "
            "gateway had not taken are lost",
            shard_id,
            exc,
        )
        return None
    if pushed:
        return ShardLeftovers(shard_id, unread, int(last[0]["exec_id"]))
    return ShardLeftovers(shard_id, unread, _floor_from_control(instance, shard_id))


def _floor_from_control(instance: str, shard_id: int) -> int | None:
    """The dead run pushed nothing: where its own output began (the block's base, set
    by the worker that recovered), or what it inherited from the run before it."""
    name = segment_name(instance, "ctl", shard_id)
    try:
        control = WorkerControl.attach(name)
    except RingError:
        return None
    try:
        if control.base_set:
            return int(control.base_exec_id)
        if control.inherited_set:
            return int(control.inherited_exec_id)
        return None
    finally:
        control.close()
