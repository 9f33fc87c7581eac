"""The md sidecar's memory of each symbol's recent trade prints, from which it answers
trade replay requests (docs/marketdata.md, "Trade replay").

Why keep them: a trade is an event, not a state. A subscriber that lost some prints (it
fell behind its high-water mark, or the sidecar was killed with messages still in
ZeroMQ's queue) cannot get them back from a book snapshot; it asks for them by seq.

Why a memory-mapped file per symbol, in its shard's directory
(``shard-<n>/md-trades/<symbol_id>.trades``): a sidecar that is killed and restarted
must still answer for the prints its predecessor published and ZeroMQ never sent, and
the page cache keeps them across the kill while the writes stay plain memory writes. The
shard's directory holds the journal the trade seqs come from: removing a shard's state
removes the history that went with it, so a history never answers for another life's seqs.

The print with seq ``s`` lives in slot ``s % depth``. A slot counts for ``s`` only if the
record in it says so (a TRADE of this symbol with that seq): a slot never written, or
overwritten by a later print, reads as not kept. A file of another depth is started
afresh (its slots would be read at the wrong places).
"""

from __future__ import annotations

import logging
import mmap
import os
from pathlib import Path

import numpy as np

from tradsys.marketdata.framing import take_records
from tradsys.wire import MD_DTYPE, RECORD_SIZE, MdKind

log = logging.getLogger("tradsys.md")

HISTORY_DIR = "md-trades"


def history_path(shard_dir: Path, symbol_id: int) -> Path:
    """The file that keeps one symbol's prints, in the directory of its shard."""
    return shard_dir / HISTORY_DIR / f"{symbol_id}.trades"


class _SymbolFile:
    """One symbol's mapped file: ``rows`` for numpy reads and batch writes, ``raw`` for
    the scalar path's 64-byte copies."""

    def __init__(self, path: Path, depth: int) -> None:
        size = depth * RECORD_SIZE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            old = os.fstat(fd).st_size
            if old != size:
                if old:
                    log.info("md: %s kept %d prints, now %d: started afresh", path,
                             old // RECORD_SIZE, depth)  # fmt: skip
                os.ftruncate(fd, 0)
            # every block now: a full disk is an error here, not a SIGBUS at some later
            # print's store into a page the file system cannot give
            os.posix_fallocate(fd, 0, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.rows = np.frombuffer(self.map, MD_DTYPE)
        self.words = self.rows.view(np.uint64).reshape(-1, RECORD_SIZE // 8)
        self.raw = memoryview(self.map)

    def close(self) -> None:
        # the views first: a map with buffers exported from it cannot be closed
        del self.rows, self.words
        self.raw.release()
        self.map.close()


class TradeHistory:
    """The last ``depth`` prints of every symbol (index ``si`` in the sidecar's symbol
    order), each symbol's file mapped when first written or read."""

    def __init__(self, symbol_ids: list[int], shard_dirs: list[Path], depth: int) -> None:
        if depth < 1:
            raise ValueError("a trade history keeps at least one print")
        self.symbol_ids = symbol_ids
        self.shard_dirs = shard_dirs
        self.depth = depth
        self._files: list[_SymbolFile | None] = [None] * len(symbol_ids)
        self.unkept: set[int] = set()  # symbols whose file could not be made (logged)

    def _file(self, si: int, make: bool = True) -> _SymbolFile | None:
        """Symbol ``si``'s mapped file; None, said once in the log, if the host cannot
        give it (a full or read-only disk): the feed goes on without its history. A
        reader (``make`` False) maps a file that exists and makes none: a replay request
        for a symbol that never traded must not allocate its file on the disk."""
        f = self._files[si]
        if f is None and si not in self.unkept:
            path = history_path(self.shard_dirs[si], self.symbol_ids[si])
            if not make and not path.exists():
                return None
            try:
                f = self._files[si] = _SymbolFile(path, self.depth)
            except OSError as exc:
                self.unkept.add(si)
                log.warning("md: no trade history for symbol id %d (%s): %s",
                            self.symbol_ids[si], path, exc)  # fmt: skip
        return f

    def keep(self, si: int, prints: np.ndarray) -> None:
        """Keep a run of one symbol's prints (MD_DTYPE TRADE records, seqs ascending),
        byte for byte as they were published."""
        f = self._file(si)
        if f is None:
            return
        if len(prints) > self.depth:
            prints = prints[-self.depth :]  # one slot each: no two writes to one place
        words = np.ascontiguousarray(prints).view(np.uint64).reshape(-1, RECORD_SIZE // 8)
        f.words[prints["seq"] % self.depth] = words

    def keep_one(self, si: int, seq: int, record: memoryview) -> None:
        """Keep one print given as its 64 bytes (the sidecar's quiet path)."""
        f = self._files[si] or self._file(si)
        if f is not None:
            at = (seq % self.depth) * RECORD_SIZE
            f.raw[at : at + RECORD_SIZE] = record

    def prints(self, si: int, first: int, last: int) -> np.ndarray:
        """The prints with seqs ``first..last`` (inclusive) that are still kept, in seq
        order (a copy: the slots go on being written)."""
        first = max(first, 1)
        f = self._file(si, make=False)
        if last < first or f is None:
            return np.zeros(0, MD_DTYPE)
        rows = f.rows
        if last - first + 1 >= self.depth:  # every slot: keep those in the range
            seq = rows["seq"]
            ours = (rows["kind"] == MdKind.TRADE) & (rows["symbol_id"] == self.symbol_ids[si])
            at = np.flatnonzero(ours & (seq >= first) & (seq <= last))
            return take_records(rows, at[np.argsort(seq[at], kind="stable")])
        seqs = np.arange(first, last + 1, dtype=np.uint64)
        found = take_records(rows, seqs % self.depth)
        kept = (
            (found["seq"] == seqs)
            & (found["kind"] == MdKind.TRADE)
            & (found["symbol_id"] == self.symbol_ids[si])
        )
        return found if kept.all() else take_records(found, np.flatnonzero(kept))

    def close(self) -> None:
        for f in self._files:
            if f is not None:
                f.close()
        self._files = [None] * len(self.symbol_ids)
