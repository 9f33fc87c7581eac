"""A shard's snapshot files: write, list, load the newest valid one, prune.

A snapshot is the engine's canonical state at a journal seq, in a file that carries crcs
(native/snapshot_file.h). Recovery takes the newest snapshot that checks out — a damaged
newest one is logged and skipped for the next older — and replays the journal after it.

Retention (:meth:`SnapshotStore.prune`): the newest ``keep`` snapshots (two by default:
the current one and the previous one, in case the newest turns out damaged) and every
journal segment the OLDEST kept one still needs; older snapshots and segments whose
commands all lie at or before that seq are deleted.
"""

from __future__ import annotations

import itertools
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradsys._native import ffi, lib
from tradsys.journal.errors import SnapshotError, error_from_c
from tradsys.journal.files import JournalFile, list_segments, list_snapshots
from tradsys.matching import CEngine

log = logging.getLogger("tradsys.journal")

HEADER_SIZE: int = lib.TS_SNAPFILE_HEADER_SIZE
# ts_snap_header.last_exec_id: the engine snapshot's own header (native/book.h)
_LAST_EXEC_ID_OFFSET = 32


def engine_pointer(engine: CEngine) -> Any:
    """The ``ts_engine *`` under a CEngine, for the C functions that take one."""
    return engine._engine


@dataclass(frozen=True)
class LoadedSnapshot:
    """A restored engine and where it stands."""

    engine: CEngine
    seq: int
    """Journal commands 1..seq are in the state."""
    md_count: int
    """Market-data records the engine produced through seq (the worker's md position)."""
    last_exec_id: int
    path: Path


class SnapshotStore:
    """The snapshots of shard ``shard`` in ``directory``."""

    def __init__(self, directory: str | Path, shard: int) -> None:
        self.directory = Path(directory)
        self.shard = shard

    def write(self, engine: CEngine, seq: int, md_count: int = 0) -> Path:
        """Write the engine's state as the snapshot for ``seq`` (temp file, fsync, rename,
        directory fsync: a crash leaves the old snapshot or the new one, whole)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        err = ffi.new("ts_journal_error *")
        status = lib.ts_snapfile_write(
            str(self.directory).encode(), self.shard, seq, md_count, engine_pointer(engine), err
        )
        if status:
            raise error_from_c(err, SnapshotError)
        return self.path_for(seq)

    def path_for(self, seq: int) -> Path:
        return self.directory / f"snapshot-{self.shard:03d}-{seq:020d}.tss"

    def snapshots(self) -> list[JournalFile]:
        """Snapshot files, oldest first (not checked)."""
        return list_snapshots(self.directory, self.shard)

    def load(self, path: str | Path) -> LoadedSnapshot:
        """Check and restore one snapshot file; SnapshotError says what is wrong."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror}", path) from None
        err = ffi.new("ts_journal_error *")
        if lib.ts_snapfile_check(data, len(data), self.shard, str(path).encode(), err):
            raise error_from_c(err, SnapshotError)
        header = ffi.new("ts_snapfile_header *")
        ffi.memmove(header, data, HEADER_SIZE)
        payload = data[HEADER_SIZE:]
        try:
            engine = CEngine.restore(payload)
        except ValueError as exc:
            raise SnapshotError(f"{path}: the engine refused the payload: {exc}", path) from None
        (last_exec_id,) = struct.unpack_from("<Q", payload, _LAST_EXEC_ID_OFFSET)
        return LoadedSnapshot(engine, int(header.seq), int(header.md_count), last_exec_id, path)

    def load_newest_valid(self, upto: int | None = None) -> LoadedSnapshot | None:
        """The newest snapshot (at or before seq ``upto``) that checks out, or None.

        A damaged one is logged and skipped for the next older.
        """
        for snap in reversed(self.snapshots()):
            if upto is not None and snap.seq > upto:
                continue
            try:
                return self.load(snap.path)
            except SnapshotError as exc:
                log.warning("skipping damaged snapshot: %s", exc)
        return None

    def prune(self, keep: int = 2) -> list[Path]:
        """Delete snapshots older than the newest ``keep`` and the journal segments that
        only the deleted ones needed; return what was removed. See the module docstring."""
        if keep < 1:
            raise ValueError("keep at least one snapshot")
        removed: list[Path] = []
        for tmp in self.directory.glob(f"snapshot-{self.shard:03d}-*.tss.tmp"):
            tmp.unlink(missing_ok=True)  # a write a crash interrupted
            removed.append(tmp)
        snaps = self.snapshots()
        if len(snaps) < keep:
            return removed
        oldest_kept = snaps[-keep].seq
        for snap in snaps[:-keep]:
            snap.path.unlink(missing_ok=True)
            removed.append(snap.path)
        segments = list_segments(self.directory, self.shard)
        # a segment's last seq is the next one's first seq - 1; the last one is open
        for seg, nxt in itertools.pairwise(segments):
            if nxt.seq - 1 <= oldest_kept:
                seg.path.unlink(missing_ok=True)
                removed.append(seg.path)
        return removed
