"""Rebuilding a shard's books: newest valid snapshot + the journal tail after it.

``recover`` is what a restarting shard does (a torn tail is truncated, with a log line);
``replay`` is the read-only version for tools (``tradsys replay``) and tests. Both stop
with a :class:`JournalCorruptError` naming the file and offset rather than return a
state built from part of the journal. The worker process runs the same steps with its
own C replay (native/worker.c), which also re-emits unacknowledged output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradsys._native import ffi, lib
from tradsys.journal.errors import JournalError, error_from_c
from tradsys.journal.files import list_segments, list_snapshots
from tradsys.journal.snapshots import SnapshotStore, engine_pointer
from tradsys.matching import CEngine, Instrument

log = logging.getLogger("tradsys.journal")


@dataclass(frozen=True)
class StartState:
    """Where a recovery starts: the restored (or fresh) engine and its position."""

    engine: CEngine
    snapshot_seq: int
    md_count: int
    last_exec_id: int
    snapshot: Path | None
    """The snapshot file used, or None for a fresh engine built from ``instruments``."""
    missing: list[Instrument]
    """Configured instruments the snapshot does not have. They are added only after the
    journal tail is replayed (the tail was processed without them), and a new snapshot
    should follow at once so that replays stay deterministic."""


@dataclass(frozen=True)
class ReplayResult:
    """What a journal replay read."""

    replayed: int
    first_replayed_seq: int
    last_seq: int
    """The last valid seq in the journal (0 if it is empty)."""
    last_ring_index: int | None
    segments: int
    torn_path: Path | None
    torn_offset: int | None
    """A torn tail: the file and the size to cut it to (None when the journal is clean)."""
    torn_bytes: int


@dataclass(frozen=True)
class Recovered:
    """A recovered shard: its engine and the journal position it stands at."""

    engine: CEngine
    snapshot_seq: int
    seq: int
    replayed: int
    truncated_bytes: int


def has_symbol(engine: CEngine, symbol_id: int) -> bool:
    """Whether the engine has a book for ``symbol_id``."""
    try:
        engine.phase(symbol_id)
    except KeyError:
        return False
    return True


def start_state(
    directory: str | Path,
    shard: int,
    instruments: list[Instrument] | None = None,
    upto: int | None = None,
) -> StartState:
    """Load the newest valid snapshot (at or before ``upto``), or make a fresh engine
    from ``instruments`` when there is none."""
    snap = SnapshotStore(directory, shard).load_newest_valid(upto)
    if snap is not None:
        missing = [i for i in instruments or [] if not has_symbol(snap.engine, i.symbol_id)]
        return StartState(
            snap.engine, snap.seq, snap.md_count, snap.last_exec_id, snap.path, missing
        )
    segments = list_segments(directory, shard)
    if segments and segments[0].seq > 1:
        # replaying from seq 1 cannot be: the segments before were pruned with the
        # snapshots that covered them
        kept = [s.seq for s in list_snapshots(directory, shard)]
        where = f"at or before seq {upto}" if upto is not None else "at all"
        raise JournalError(
            f"no valid snapshot of shard {shard} in {directory} {where}, and the journal "
            f"starts at seq {segments[0].seq} (older segments were pruned), so the books "
            "cannot be rebuilt from there"
            + (f"; snapshots kept: seqs {kept}" if kept else "")
            + (" (a later --upto starts from one)" if kept and upto is not None else ""),
            directory,
        )
    if instruments is None:
        raise JournalError(
            f"no valid snapshot of shard {shard} in {directory}, so the instruments are "
            "unknown: pass them (the configuration's) to replay from seq 1",
            directory,
        )
    if list_segments(directory, shard):
        log.warning(
            "shard %d: no valid snapshot in %s; replaying the whole journal with the "
            "configured instruments",
            shard,
            directory,
        )
    engine = CEngine()
    for ins in instruments:
        engine.add_instrument(ins)
    return StartState(engine, 0, 0, 0, None, [])


def replay_result(out: Any) -> ReplayResult:
    """A ``ts_journal_replay_result`` as Python values; raises on an error status."""
    if out.status < 0:
        raise error_from_c(out.error)
    torn = out.status == lib.TS_JOURNAL_TORN_TAIL
    return ReplayResult(
        replayed=int(out.replayed),
        first_replayed_seq=int(out.first_replayed_seq),
        last_seq=int(out.last_seq),
        last_ring_index=int(out.last_ring_index) if out.last_ring_known else None,
        segments=int(out.segments),
        torn_path=Path(ffi.string(out.error.path).decode()) if torn else None,
        torn_offset=int(out.tail_valid_bytes) if torn else None,
        torn_bytes=int(out.tail_file_bytes - out.tail_valid_bytes) if torn else 0,
    )


def replay_tail(
    directory: str | Path, shard: int, engine: CEngine, after_seq: int, upto: int | None = None
) -> ReplayResult:
    """Feed the valid journal records with after_seq < seq (<= upto) into ``engine``.
    ``upto`` must be None (all of them) or above after_seq."""
    out = ffi.new("ts_journal_replay_result *")
    lib.ts_journal_replay(
        str(directory).encode(),
        shard,
        after_seq,
        upto or 0,
        engine_pointer(engine),
        0,
        ffi.NULL,
        ffi.NULL,
        0,
        out,
    )
    return replay_result(out)


def truncate_torn_tail(result: ReplayResult) -> int:
    """Cut a torn tail found by a replay, logging what was cut; return the bytes cut."""
    if result.torn_path is None or result.torn_offset is None:
        return 0
    log.warning(
        "journal %s: torn tail at byte offset %d (%d bytes, an interrupted write) truncated; "
        "the journal ends at seq %d",
        result.torn_path,
        result.torn_offset,
        result.torn_bytes,
        result.last_seq,
    )
    err = ffi.new("ts_journal_error *")
    if lib.ts_journal_truncate(str(result.torn_path).encode(), result.torn_offset, err):
        raise error_from_c(err)
    return result.torn_bytes


def recover(
    directory: str | Path,
    shard: int,
    instruments: list[Instrument] | None = None,
    *,
    truncate: bool = True,
) -> Recovered:
    """The books of shard ``shard`` as its journal leaves them: newest valid snapshot plus
    the journal tail, a torn tail truncated (and logged) when ``truncate``."""
    start = start_state(directory, shard, instruments)
    result = replay_tail(directory, shard, start.engine, start.snapshot_seq)
    cut = truncate_torn_tail(result) if truncate else 0
    for ins in start.missing:
        start.engine.add_instrument(ins)
    return Recovered(
        engine=start.engine,
        snapshot_seq=start.snapshot_seq,
        seq=max(start.snapshot_seq, result.last_seq),
        replayed=result.replayed,
        truncated_bytes=cut,
    )


@dataclass(frozen=True)
class Replayed:
    """An offline replay's books and the seq they stand at: ``upto`` itself, or where the
    journal ended before it (a replay past the end must not pass for the state at upto)."""

    engine: CEngine
    seq: int


def replay(
    directory: str | Path,
    shard: int,
    instruments: list[Instrument] | None = None,
    upto: int | None = None,
) -> CEngine:
    """Rebuild shard ``shard``'s books offline (nothing is modified): the newest valid
    snapshot at or before ``upto``, then the journal up to ``upto`` (None: all of it).
    A torn tail is left out, and logged."""
    return replay_to(directory, shard, instruments, upto).engine


def replay_to(
    directory: str | Path,
    shard: int,
    instruments: list[Instrument] | None = None,
    upto: int | None = None,
) -> Replayed:
    """:func:`replay`, saying which seq the books reached."""
    start = start_state(directory, shard, instruments, upto)
    if upto is not None and upto <= start.snapshot_seq:
        # the snapshot is the state at upto (to the C side 0 is "all")
        return Replayed(start.engine, start.snapshot_seq)
    result = replay_tail(directory, shard, start.engine, start.snapshot_seq, upto)
    if result.torn_path is not None:
        log.warning(
            "journal %s: torn tail at byte offset %s left out (%d bytes)",
            result.torn_path,
            result.torn_offset,
            result.torn_bytes,
        )
    ends = max(start.snapshot_seq, result.last_seq)  # the journal's last valid seq
    return Replayed(start.engine, ends if upto is None else min(upto, ends))
