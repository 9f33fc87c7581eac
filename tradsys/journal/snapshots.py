"""A shard's snapshot files: write, list, load the newest valid one, prune.

A snapshot is the engine's canonical state at a journal seq, in a file that carries crcs
(native/snapshot_file.h). Recovery takes the newest snapshot that checks out — a damaged
newest one is logged and skipped for the next older — and replays the journal after it.

Retention (:meth:`SnapshotStore.prune`): the newest ``keep`` snapshots (two by default:
the current one and the previous one, in case the newest turns out damaged) and every
journal segment the OLDEST kept one still needs; older snapshots and segments whose
commands all lie at or before that seq are deleted -- retired a few MiB at a time
(:func:`retire_file`). A running shard worker prunes on a thread of its own
(:class:`BackgroundPruner`), so its loop never waits for the unlinks.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import mmap
import os
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradsys._native import ffi, lib
from tradsys.files import replace_file
from tradsys.journal.errors import SnapshotError, error_from_c
from tradsys.journal.files import (
    JournalFile,
    addition_path,
    list_additions,
    list_segments,
    list_snapshots,
)
from tradsys.matching import CEngine

log = logging.getLogger("tradsys.journal")

HEADER_SIZE: int = lib.TS_SNAPFILE_HEADER_SIZE
# ts_snap_header.last_exec_id: the engine snapshot's own header (native/book.h)
_LAST_EXEC_ID_OFFSET = 32
_TMP_SEQ = re.compile(r"snapshot-\d{3}-(\d{20})\.tss\.tmp$")


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
        # snapshot files this store has read back whole and found good, by (name, size,
        # mtime): each prune then reads only the snapshot that is new since the last one,
        # not every kept one again (a deep book's snapshot is a gigabyte)
        self._checked: set[tuple[str, int, int]] = set()

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

    def keep_addition(self, seq: int) -> Path:
        """Keep a second copy of the snapshot at ``seq``, taken because instruments were
        added there (a restart with new ones in the configuration).

        Why: the journal holds commands, not instrument definitions, so from the seq they
        were added on, the books can only be rebuilt from a snapshot that has them. The
        previous snapshot, kept in case the newest is damaged, does not: a replay from it
        would reject every later command of the new instruments as UNKNOWN_SYMBOL and
        rebuild books the live shard never had. The copy stands in for a damaged snapshot
        at ``seq``; with both damaged, :meth:`load_newest_valid` refuses rather than fall
        back past the addition."""
        target = addition_path(self.directory, self.shard, seq)
        replace_file(target, self.path_for(seq).read_bytes(), durable=True, mode=0o600)
        return target

    def checks_out(self, path: Path) -> bool:
        """Whether a snapshot file's header and payload crcs check out (read, not
        restored, once per file while it stays as it was); a damaged one is logged."""
        try:
            st = path.stat()
        except OSError as exc:
            log.warning("snapshot %s does not check out: %s", path, exc)
            return False
        key = (path.name, st.st_size, st.st_mtime_ns)
        if key in self._checked:
            return True
        try:
            with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                err = ffi.new("ts_journal_error *")
                image = ffi.from_buffer(m)
                try:
                    bad = lib.ts_snapfile_check(image, len(m), self.shard, str(path).encode(), err)
                finally:
                    ffi.release(image)
        except (OSError, ValueError) as exc:  # unreadable, or empty (mmap refuses 0 bytes)
            log.warning("snapshot %s does not check out: %s", path, exc)
            return False
        if bad:
            log.warning("snapshot does not check out: %s", error_from_c(err, SnapshotError))
            return False
        self._checked.add(key)
        return True

    def candidates(self) -> list[tuple[int, int, Path]]:
        """(seq, 1 for a snapshot / 0 for an addition copy, path), newest first: at one
        seq the snapshot, then its addition copy -- the order recovery tries them in."""
        return sorted(
            [(s.seq, 1, s.path) for s in self.snapshots()]
            + [(a.seq, 0, a.path) for a in list_additions(self.directory, self.shard)],
            reverse=True,
        )

    def load_newest_valid(self, upto: int | None = None) -> LoadedSnapshot | None:
        """The newest snapshot (at or before seq ``upto``) that checks out, or None.

        A damaged one is logged and skipped for the next older -- but never for one
        older than an addition of instruments (see :meth:`keep_addition`): that raises
        SnapshotError naming both, since a replay from there rebuilds the wrong books.
        """
        candidates = self.candidates()
        added = [seq for seq, regular, _ in candidates if not regular]
        for seq, _, path in candidates:
            if upto is not None and seq > upto:
                continue
            newer_addition = [a for a in added if a > seq and (upto is None or a <= upto)]
            if newer_addition:
                raise SnapshotError(
                    f"instruments were added at seq {max(newer_addition)}, and neither its "
                    "snapshot nor its addition copy checks out (see the warnings above); "
                    f"a replay from {path} would rebuild books without them: restore "
                    "one of them from a backup",
                    path,
                )
            try:
                return self.load(path)
            except SnapshotError as exc:
                log.warning("skipping damaged snapshot: %s", exc)
        if any(upto is None or a <= upto for a in added):
            raise SnapshotError(
                "instruments were added at a seq whose snapshot and addition copy are both "
                "damaged, and no older snapshot can stand in: restore one from a backup",
                self.directory,
            )
        return None

    def prune(self, keep: int = 2, tmp_below: int | None = None) -> list[Path]:
        """Delete snapshots older than the newest ``keep`` and the journal segments that
        only the deleted ones needed; return what was removed. See the module docstring.

        Left-over ``.tmp`` files (writes a crash interrupted) go too: all of them, or with
        ``tmp_below`` only those for a seq below it — what a running worker passes (its
        newest snapshot's seq), since its background writer may be writing a newer one
        right now, and that one's seq is never below the newest finished snapshot's."""
        if keep < 1:
            raise ValueError("keep at least one snapshot")
        removed: list[Path] = []
        for tmp in self.directory.glob(f"snapshot-{self.shard:03d}-*.tss.tmp"):
            match = _TMP_SEQ.search(tmp.name)
            if tmp_below is not None and (match is None or int(match.group(1)) >= tmp_below):
                continue
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        snaps = self.snapshots()
        # the newest ``keep`` that check out are kept: a damaged one counted among them
        # would let the last good one go, and recovery would then have nothing to start
        # from (fewer good ones than ``keep``: nothing is pruned)
        good: list[JournalFile] = []
        for snap in reversed(snaps):
            if len(good) == keep:
                break
            if self.checks_out(snap.path):
                good.append(snap)
        if len(good) < keep:
            return removed
        oldest_kept = good[-1].seq
        for snap in snaps:
            if snap.seq >= oldest_kept:
                break
            retire_file(snap.path)
            removed.append(snap.path)
        for copy in list_additions(self.directory, self.shard):
            if copy.seq < oldest_kept:  # every kept snapshot has the instruments now
                copy.path.unlink(missing_ok=True)
                removed.append(copy.path)
        for left in self.directory.glob(f"*-{self.shard:03d}-*{RETIRING_SUFFIX}"):
            retire_file(left)  # a retirement a crash interrupted
            removed.append(left)
        segments = list_segments(self.directory, self.shard)
        # a segment's last seq is the next one's first seq - 1; the last one is open
        for seg, nxt in itertools.pairwise(segments):
            if nxt.seq - 1 <= oldest_kept:
                retire_file(seg.path)
                removed.append(seg.path)
        return removed


RETIRING_SUFFIX = ".retiring"
RETIRE_STEP_BYTES = 4 << 20


def retire_file(path: Path, step: int = RETIRE_STEP_BYTES) -> None:
    """Delete a journal file ``step`` bytes at a time from its end, then unlink it.

    Why: unlinking a 64 MiB segment frees its page cache and its extents in one go, and
    the kernel work that sets off -- on a filesystem mounted with ``discard``, a
    synchronous discard of every extent, then the block layer's completions and RCU's
    callbacks -- runs on the CPU of the thread that unlinked, the worker's own core when
    there is no housekeeping core: one stretch of milliseconds that every order in flight
    waits out. Shrunk a few MiB at a time, the same work comes in pieces the worker's
    loop runs between.

    Renamed out of the journal's names first (``<name>.retiring``), so that a crash in
    between never leaves a cut-short segment where recovery reads segments; the next
    prune finishes what a crash left. Gone already: nothing to do. (RocksDB deletes big
    files in chunks for the same reason.) A file with other hard links (a backup made
    with ``cp -al`` or rsync ``--link-dest``) is only unlinked: truncating would cut
    every name of the inode short, and its blocks stay in use by the others anyway."""
    retiring = (
        path.with_name(path.name + RETIRING_SUFFIX)
        if not path.name.endswith(RETIRING_SUFFIX)
        else path
    )
    try:
        if retiring != path:
            os.rename(path, retiring)
        fd = os.open(retiring, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        stat = os.fstat(fd)
        size = stat.st_size if stat.st_nlink == 1 else 0
        while size > step:
            size -= step
            os.ftruncate(fd, size)
    finally:
        os.close(fd)
    retiring.unlink(missing_ok=True)


class BackgroundPruner:
    """Prunes a :class:`SnapshotStore` on a thread of its own, for a running worker.

    Why: a prune unlinks old snapshots and journal segments (tens of MB each), which can
    take milliseconds; the worker's C loop (which releases the GIL) must not wait for
    that. One prune runs at a time; requests made meanwhile fold into one more. A failure
    is kept and raised by :meth:`check` on the worker's own thread, where it fails the
    worker as a failed inline prune did.

    Where it runs: a thread inherits its creator's CPU mask, so a worker calls
    :meth:`start` where its background work belongs (the housekeeping cores); started
    lazily by the first :meth:`request`, it would share the worker's core. With ``idle``
    (a pinned worker with no housekeeping core) the thread puts itself at SCHED_IDLE, so
    the worker preempts its unlinks the moment it has work. Its OS name is
    ``ts-prune-<shard>``, for ps, perf and the tests.
    """

    def __init__(self, store: SnapshotStore, keep: int, *, idle: bool = False) -> None:
        self.store = store
        self.keep = keep
        self.idle = idle
        self._cond = threading.Condition()
        self._pending: int | None = None
        self._running = False
        self._closing = False
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread now (it inherits the calling thread's CPU mask), if not yet."""
        with self._cond:
            self._start_locked()

    def request(self, newest_seq: int) -> None:
        """Prune once more, after the snapshot at ``newest_seq`` became visible."""
        with self._cond:
            self._pending = newest_seq
            self._start_locked()
            self._cond.notify_all()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._body, name=f"prune-{self.store.shard}", daemon=True
            )
            self._thread.start()

    def check(self) -> None:
        """Raise the error of a failed background prune, if there was one."""
        with self._cond:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no prune runs or is pending; False if the time ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._running, timeout)

    def close(self) -> None:
        """Finish what was asked, then stop the thread. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._thread = None

    def _step_aside(self) -> None:
        """On the thread itself (Linux applies both per thread): its policy first, then
        its name, so whoever finds the name sees the policy."""
        if self.idle:
            try:
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            except (OSError, AttributeError) as exc:  # AttributeError: not Linux
                log.warning(
                    "shard %d: the prune thread stays at its policy, SCHED_IDLE refused: %s",
                    self.store.shard,
                    exc,
                )
        name_os_thread(f"ts-prune-{self.store.shard}")

    def _body(self) -> None:
        self._step_aside()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closing)
                if self._pending is None:
                    return
                newest, self._pending = self._pending, None
                self._running = True
            try:
                self.store.prune(self.keep, tmp_below=newest)
            except OSError as exc:
                log.error("pruning %s failed: %s", self.store.directory, exc)
                with self._cond:
                    self._error = exc
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()


def name_os_thread(name: str) -> None:
    """Give the calling thread an OS-level name (``comm``: ps, top, perf; at most 15
    bytes), which Python 3.11's ``threading`` does not set. Best effort: Linux only."""
    path = f"/proc/self/task/{threading.get_native_id()}/comm"
    with contextlib.suppress(OSError), open(path, "w") as comm:
        comm.write(name[:15])
