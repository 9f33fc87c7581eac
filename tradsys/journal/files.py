"""Where a shard's journal segments and snapshots live, and how their names read.

``journal-<shard:03d>-<first_seq:020d>.tsj`` and ``snapshot-<shard:03d>-<seq:020d>.tss``:
zero-padded so a plain directory listing sorts them by seq, and so a person can tell
from ``ls`` which commands a file holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SEGMENT = re.compile(r"^journal-(\d{3})-(\d{20})\.tsj$")
_SNAPSHOT = re.compile(r"^snapshot-(\d{3})-(\d{20})\.tss$")
_ADDITION = re.compile(r"^snapshot-(\d{3})-(\d{20})\.tss\.added$")


@dataclass(frozen=True, order=True)
class JournalFile:
    """A segment (``seq`` = its first seq) or a snapshot (``seq`` = the seq it covers)."""

    seq: int
    shard: int
    path: Path


def segment_path(directory: str | Path, shard: int, first_seq: int) -> Path:
    return Path(directory) / f"journal-{shard:03d}-{first_seq:020d}.tsj"


def snapshot_path(directory: str | Path, shard: int, seq: int) -> Path:
    return Path(directory) / f"snapshot-{shard:03d}-{seq:020d}.tss"


def _list(directory: str | Path, shard: int, pattern: re.Pattern[str]) -> list[JournalFile]:
    d = Path(directory)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = pattern.match(p.name)
        if m and int(m.group(1)) == shard:
            found.append(JournalFile(int(m.group(2)), shard, p))
    return sorted(found)


def list_segments(directory: str | Path, shard: int) -> list[JournalFile]:
    """The shard's journal segments, oldest first."""
    return _list(directory, shard, _SEGMENT)


def list_snapshots(directory: str | Path, shard: int) -> list[JournalFile]:
    """The shard's snapshot files, oldest first (validity unchecked)."""
    return _list(directory, shard, _SNAPSHOT)


def addition_path(directory: str | Path, shard: int, seq: int) -> Path:
    """The second copy of the snapshot taken when instruments were added at ``seq``."""
    return Path(directory) / f"snapshot-{shard:03d}-{seq:020d}.tss.added"


def list_additions(directory: str | Path, shard: int) -> list[JournalFile]:
    """The shard's addition copies (see SnapshotStore.keep_addition), oldest first."""
    return _list(directory, shard, _ADDITION)
