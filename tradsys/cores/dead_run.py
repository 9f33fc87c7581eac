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

Market data the same way: the dead ``md`` ring's unpublished records are carried into
the new one, and the control block is told how many engine md records the dead run
pushed (:meth:`WorkerControl.inherit_md`): the worker re-sends the replayed md past them,
so the next run's md sidecar prints every trade once, under the engine's seqs.

The next run continues the dead run's gateway ledger (positions, filled notional), as it
continues a stopped run's (``Supervisor._continue_ledger``; not a new trading day's).

What cannot be carried, said in the log: records of a dead ring larger than the new
``ring_capacity`` (the config was changed between the runs) beyond what fits. What has
nowhere to go refuses the start instead (:func:`orphaned_events`): events of a shard the
new configuration no longer has, which no new ring would carry to their accounts.

The dead run's segments are unlinked before the new run has started; a start that then
fails (a busy port, a worker that refuses its journal) and stops cleanly unlinks the new
rings the leftovers went into. So they are first written to ``<instance dir>/dead_run.npz``
(whole and synced), read from there by the next start when no stale ring says more, and
removed once a start has succeeded; a failed start also hands the ledger back to the
run before (:func:`tradsys.gateway.ledger.adopt_ledger` the other way).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradsys import wire
from tradsys._native import lib
from tradsys.cores.control import WorkerControl
from tradsys.files import replace_file
from tradsys.ring import Ring, segment_name
from tradsys.ring.errors import RingError

log = logging.getLogger("tradsys.supervisor")

DEAD_RUN_FILE = "dead_run.npz"


_NO_RECORDS = np.zeros(0, dtype=wire.MD_DTYPE)


@dataclass(frozen=True)
class ShardLeftovers:
    """One shard's part of a dead run."""

    shard_id: int
    unread: np.ndarray[Any, Any]  # EVENT_DTYPE records not taken by the gateway, oldest first
    last_pushed_exec_id: int | None  # None: the dead run's worker pushed nothing known
    # MD_DTYPE records the md sidecar had not published, oldest first
    md_unread: np.ndarray[Any, Any] = field(default_factory=lambda: _NO_RECORDS)
    md_pushed: int | None = None  # engine md records the dead run pushed (None: unknown)


@dataclass(frozen=True)
class DeadRun:
    shards: dict[int, ShardLeftovers]

    def after(self, older: DeadRun | None) -> DeadRun:
        """This run, which died while continuing ``older`` (read from the file): a shard
        of which this run knows nothing (its supervisor died before it carried anything
        in) keeps what ``older`` left."""
        if older is None:
            return self
        shards = dict(older.shards)
        for sid, left in self.shards.items():
            if len(left.unread) or left.last_pushed_exec_id is not None or sid not in shards:
                shards[sid] = left
        return DeadRun(shards)


def read_dead_run(instance: str, stale: Iterable[str], shard_ids: Iterable[int]) -> DeadRun | None:
    """The dead run whose rings are among ``stale`` (segment names whose creator is
    gone): the shards this configuration has, and any other shard whose events ring is
    stale (for :func:`orphaned_events`); None if no shard ring of a run is stale. Call
    before the stale segments are unlinked. Rings of another layout (an older build)
    are skipped, and said."""
    stale = set(stale)
    shard_ids = list(shard_ids)
    shards = {}
    others = sorted(_stale_shard_ids(instance, stale, "evt") - set(shard_ids))
    for sid in shard_ids + others:
        if segment_name(instance, "evt", sid) in stale:
            left = _read_shard(instance, sid, stale)
            if left is not None:
                shards[sid] = left
    return DeadRun(shards) if shards else None


def _stale_shard_ids(instance: str, stale: set[str], role: str) -> set[int]:
    """The shard numbers of the ``role`` rings of ``instance`` among ``stale``."""
    prefix = segment_name(instance, role, 0)[:-1]
    tails = (name[len(prefix) :] for name in stale if name.startswith(prefix))
    return {int(tail) for tail in tails if tail.isdigit()}


def orphaned_events(dead: DeadRun, shard_ids: Iterable[int]) -> dict[int, int]:
    """Per shard the configuration no longer has, the events its dead run left that no
    gateway took: acknowledgements and fills clients are owed, which this run has no
    ring to carry to them. A start must not drop them unsaid (nothing acknowledged is
    lost): the supervisor refuses until the shard is configured again for one run (its
    gateway delivers them), or the operator drops them (``tradsys shm reclaim --force``)."""
    configured = set(shard_ids)
    return {
        sid: len(left.unread)
        for sid, left in sorted(dead.shards.items())
        if sid not in configured and len(left.unread)
    }


def _attach(name: str) -> Ring:
    return Ring.attach(name, slot_size=wire.RECORD_SIZE, layout_version=wire.LAYOUT_VERSION)


def leftovers_of(
    shard_id: int, events: Ring, md: Ring | None, control: WorkerControl | None
) -> ShardLeftovers:
    """What a shard's rings hold that nobody took, and where its output ended: the exec
    id of the last event pushed (the ring's newest record, else the block's base or
    inheritance) and the count of engine md records pushed (the rule of worker.h)."""
    unread = np.zeros(events.readable, dtype=wire.EVENT_DTYPE)
    unread = unread[: events.peek_batch(unread)]
    last = np.zeros(1, dtype=wire.EVENT_DTYPE)
    floor = int(last[0]["exec_id"]) if events.last_published(last) else None
    md_unread, md_pushed = _NO_RECORDS, None
    if md is not None:
        md_unread = np.zeros(md.readable, dtype=wire.MD_DTYPE)
        md_unread = md_unread[: md.peek_batch(md_unread)]
    if control is not None:
        inherited = int(control.inherited_set)
        if floor is None and control.base_set:
            floor = int(control.base_exec_id)
        elif floor is None and inherited & lib.TS_INHERITED_EVENTS:
            floor = int(control.inherited_exec_id)
        if md is not None:
            in_ring = md.info().head - int(control.md_refresh_records)
            if control.base_set:
                md_pushed = int(control.cdata.base_md) + in_ring
            elif inherited & lib.TS_INHERITED_MD:
                md_pushed = int(control.cdata.inherited_md) + in_ring
                md_pushed -= int(control.cdata.inherited_md_carried)
    return ShardLeftovers(shard_id, unread, floor, md_unread, md_pushed)


def _read_shard(instance: str, shard_id: int, stale: set[str]) -> ShardLeftovers | None:
    with contextlib.ExitStack() as opened:
        try:
            events = opened.enter_context(_attach(segment_name(instance, "evt", shard_id)))
        except RingError as exc:
            log.warning(
                "shard %d: the dead run's events ring cannot be read (%s): the events its "
                "gateway had not taken are lost",
                shard_id,
                exc,
            )
            return None
        md = control = None
        with contextlib.suppress(RingError):
            if segment_name(instance, "md", shard_id) in stale:
                md = opened.enter_context(_attach(segment_name(instance, "md", shard_id)))
        with contextlib.suppress(RingError):
            control = opened.enter_context(
                WorkerControl.attach(segment_name(instance, "ctl", shard_id))
            )
        return leftovers_of(shard_id, events, md, control)


def save_dead_run(dead: DeadRun, path: Path) -> None:
    """Write ``dead`` to ``path`` whole and synced (before its segments are unlinked)."""
    meta = {
        "floors": {str(sid): left.last_pushed_exec_id for sid, left in dead.shards.items()},
        "md_pushed": {str(sid): left.md_pushed for sid, left in dead.shards.items()},
    }
    arrays: dict[str, Any] = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    for sid, left in dead.shards.items():
        arrays[f"unread_{sid}"] = left.unread.view(np.uint8)
        arrays[f"md_unread_{sid}"] = left.md_unread.view(np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    replace_file(path, buf.getvalue(), durable=True, mode=0o600)


def load_dead_run(path: Path) -> DeadRun | None:
    """What :func:`save_dead_run` wrote, or None if there is no file. A file that cannot
    be read is said and set aside (renamed ``.bad``): it must not stop every start. (A
    data_dir that is no directory is the start's to name, not this.)"""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as doc:
            meta = json.loads(doc["meta"].tobytes())

            def records(key: str, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
                return np.frombuffer(doc[key].tobytes(), dtype).copy()

            shards = {}
            for key, floor in meta["floors"].items():
                sid = int(key)
                shards[sid] = ShardLeftovers(
                    sid,
                    records(f"unread_{sid}", wire.EVENT_DTYPE),
                    floor,
                    records(f"md_unread_{sid}", wire.MD_DTYPE),
                    meta["md_pushed"][key],
                )
            return DeadRun(shards)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        bad = path.with_name(path.name + ".bad")
        with contextlib.suppress(OSError):
            path.replace(bad)
        log.error("cannot read %s (%s): set aside as %s; its events are lost", path, exc, bad)
        return None


_HELD_ROLES = ("evt", "sout", "sin")
"""Rings whose unread records someone is owed: a shard's events (the gateway's to pass
on), a session's events (its client's) and commands (to be answered GATEWAY_RESTARTED)."""


def undelivered(stale: Iterable[str]) -> dict[str, int]:
    """Per instance, the records its dead run left unread in rings someone is owed from
    (of ``stale`` segment names): the next ``tradsys run`` of the instance delivers them;
    unlinking the segments first (``tradsys shm reclaim``) would drop them."""
    out: dict[str, int] = {}
    for name in stale:
        parts = name.lstrip("/").split(".")
        if len(parts) != 4 or parts[2] not in _HELD_ROLES:
            continue
        try:
            with _attach(name) as ring:
                n = ring.readable
        except RingError:
            continue
        if n:
            out[parts[1]] = out.get(parts[1], 0) + n
    return out
