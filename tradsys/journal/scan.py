"""Reading a journal without replaying it: validate segments, read their records.

The checks are the C scanner's (native/journal_read.c), so a tool and a recovering worker
judge a file the same way: a torn tail is only allowed at the end of the last segment;
anything else bad is a :class:`JournalCorruptError` naming the file and byte offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tradsys._native import ffi, lib
from tradsys.journal.errors import JournalCorruptError, error_from_c
from tradsys.journal.files import list_segments
from tradsys.wire import COMMAND_DTYPE

HEADER_SIZE: int = lib.TS_JOURNAL_HEADER_SIZE
RECORD_SIZE: int = lib.TS_JOURNAL_RECORD_SIZE

JOURNAL_RECORD_DTYPE = np.dtype(
    {
        "names": ["crc", "ring_id", "seq", "ring_index", "cmd"],
        "formats": ["<u4", "<u2", "<u8", "<u8", COMMAND_DTYPE],
        "offsets": [0, 4, 8, 16, 24],
        "itemsize": RECORD_SIZE,
    }
)
"""``struct ts_journal_record`` (native/journal.h): one sequenced command."""


@dataclass(frozen=True)
class SegmentScan:
    """What one segment holds, as far as it is valid."""

    path: Path
    shard_id: int
    first_seq: int
    records: int
    last_seq: int
    last_ring_index: int
    valid_bytes: int
    file_bytes: int
    torn_offset: int | None
    """Where a torn tail starts (last segment only), or None when the file is clean."""

    @property
    def torn(self) -> bool:
        return self.torn_offset is not None


def _scan(path: Path, shard: int | None, is_last: bool) -> tuple[SegmentScan, Any]:
    out = ffi.new("ts_journal_scan *")
    status = lib.ts_journal_scan_file(
        str(path).encode(), -1 if shard is None else shard, int(is_last), out
    )
    if status < 0:
        raise error_from_c(out.error)
    scan = SegmentScan(
        path=path,
        shard_id=int(out.shard_id),
        first_seq=int(out.first_seq),
        records=int(out.records),
        last_seq=int(out.last_seq),
        last_ring_index=int(out.last_ring_index),
        valid_bytes=int(out.valid_bytes),
        file_bytes=int(out.file_bytes),
        torn_offset=int(out.error.offset) if status == lib.TS_JOURNAL_TORN_TAIL else None,
    )
    return scan, out


def scan_segment(path: str | Path, shard: int | None = None, is_last: bool = True) -> SegmentScan:
    """Validate one segment file (header, every record's crc, seq continuity).

    ``is_last``: whether a torn tail is allowed (only the newest segment may have one).
    Raises JournalCorruptError with the file and offset otherwise.
    """
    return _scan(Path(path), shard, is_last)[0]


def scan_journal(directory: str | Path, shard: int) -> list[SegmentScan]:
    """Validate every segment of a shard, and that their seqs join up."""
    segments = list_segments(directory, shard)
    scans: list[SegmentScan] = []
    for i, seg in enumerate(segments):
        scan = scan_segment(seg.path, shard, is_last=i == len(segments) - 1)
        if scans and scan.first_seq != scans[-1].last_seq + 1:
            raise JournalCorruptError(
                f"{seg.path} starts at seq {scan.first_seq}, but the segment before it ends "
                f"at seq {scans[-1].last_seq}: seqs are missing between them",
                seg.path,
                0,
            )
        scans.append(scan)
    return scans


def read_records(path: str | Path, shard: int | None = None, is_last: bool = True) -> Any:
    """The valid records of one segment as a ``JOURNAL_RECORD_DTYPE`` array (a torn
    tail is left out)."""
    scan = scan_segment(path, shard, is_last)
    with open(path, "rb") as f:
        f.seek(HEADER_SIZE)
        data = f.read(scan.records * RECORD_SIZE)
    return np.frombuffer(data, JOURNAL_RECORD_DTYPE)
