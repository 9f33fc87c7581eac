"""Appending to a journal from Python: for tools, tests and benchmarks.

A shard worker appends from C (native/worker.c); this wrapper drives the same writer,
so files made here are exactly what a worker makes.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

from tradsys._native import ffi, lib
from tradsys.journal.errors import error_from_c
from tradsys.wire import COMMAND_DTYPE

Durability = Literal["none", "group", "fsync"]

DURABILITY_CODES: dict[str, int] = {
    "none": lib.TS_DURABILITY_NONE,
    "group": lib.TS_DURABILITY_GROUP,
    "fsync": lib.TS_DURABILITY_FSYNC,
}


def journal_config(
    shard: int, durability: Durability, segment_bytes: int, group_commit_us: int
) -> Any:
    """A ``ts_journal_config`` for the C writer."""
    if durability not in DURABILITY_CODES:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY_CODES)}")
    cfg = ffi.new("ts_journal_config *")
    cfg.shard_id = shard
    cfg.durability = DURABILITY_CODES[durability]
    cfg.segment_bytes = segment_bytes
    cfg.group_commit_ns = group_commit_us * 1000
    return cfg


class JournalWriter:
    """Append commands to shard ``shard``'s journal in ``directory``.

    ``next_seq`` must continue the journal (1 for a new one): the writer refuses to open
    otherwise, and refuses a journal whose torn tail was not truncated first.
    """

    def __init__(
        self,
        directory: str | Path,
        shard: int,
        *,
        durability: Durability = "none",
        segment_bytes: int = 64 << 20,
        group_commit_us: int = 1000,
        next_seq: int = 1,
        next_ring_index: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.shard = shard
        self._err = ffi.new("ts_journal_error *")
        cfg = journal_config(shard, durability, segment_bytes, group_commit_us)
        ptr = lib.ts_journal_open(str(self.directory).encode(), cfg, next_seq, self._err)
        if ptr == ffi.NULL:
            raise error_from_c(self._err)
        self._ptr: Any = ptr
        self.next_ring_index = next_ring_index

    def append(self, commands: Any, ring_id: int = 0) -> int:
        """Journal a ``COMMAND_DTYPE`` batch in one write; returns the seq of its first."""
        if not isinstance(commands, np.ndarray) or commands.dtype != COMMAND_DTYPE:
            raise TypeError("commands must be a COMMAND_DTYPE array")
        commands = np.ascontiguousarray(commands)
        first = self.next_seq
        n = len(commands)
        if n:
            buf = ffi.from_buffer("ts_command[]", commands)
            if lib.ts_journal_append(self._live, ring_id, self.next_ring_index, buf, n, self._err):
                raise error_from_c(self._err)
            self.next_ring_index += n
        return first

    def sync(self) -> None:
        if lib.ts_journal_sync(self._live, self._err):
            raise error_from_c(self._err)

    @property
    def _live(self) -> Any:
        if self._ptr is None:
            raise ValueError("journal writer is closed")
        return self._ptr

    @property
    def next_seq(self) -> int:
        return int(lib.ts_journal_next_seq(self._live))

    @property
    def synced_seq(self) -> int:
        return int(lib.ts_journal_synced_seq(self._live))

    def close(self) -> None:
        """Sync (unless durability is none) and close. Idempotent."""
        if self._ptr is None:
            return
        ptr, self._ptr = self._ptr, None
        if lib.ts_journal_close(ptr, self._err):
            raise error_from_c(self._err)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
