"""Errors of the journal layer. Each names the file and, where it can, the byte offset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tradsys._native import ffi, lib


class JournalError(Exception):
    """A journal or snapshot operation failed; ``path`` and ``offset`` say where."""

    def __init__(
        self,
        message: str,
        path: str | Path | None = None,
        offset: int | None = None,
        sys_errno: int = 0,
    ):
        super().__init__(message)
        self.path = Path(path) if path else None
        self.offset = offset
        self.sys_errno = sys_errno
        """The OS error behind an I/O failure (ENOSPC, EROFS...), 0 for none."""


class JournalCorruptError(JournalError):
    """The journal is damaged before its tail (or a seq is missing): recovery must stop
    rather than build a partial state. Restore the named file from a replica or backup,
    or cut the journal at the offset if losing what follows is acceptable."""


class SnapshotError(JournalError):
    """A snapshot file is missing, damaged or not this shard's."""


_CORRUPT = {lib.TS_JOURNAL_ERR_CORRUPT, lib.TS_JOURNAL_ERR_GAP, lib.TS_JOURNAL_ERR_HEADER}


def error_from_c(err: Any, kind: type[JournalError] | None = None) -> JournalError:
    """The Python error for a filled ``ts_journal_error``."""
    message = ffi.string(err.message).decode(errors="replace")
    path = ffi.string(err.path).decode(errors="replace") or None
    if kind is None:
        kind = JournalCorruptError if err.status in _CORRUPT else JournalError
    return kind(
        message or f"journal status {err.status}", path, int(err.offset), int(err.sys_errno)
    )
