"""A shard's journal and snapshots: the durable half of event sourcing.

The journal (native/journal.c) holds every sequenced command; snapshots hold the whole
engine state at a seq. Recovery loads the newest valid snapshot and replays the journal
tail after it, so a restarted shard has exactly the books it had. This package is the
Python face: files and names, the scanner, a writer for tools and tests, the snapshot
store with its retention rule, and ``replay`` / ``recover``.
"""

from tradsys.journal.errors import JournalCorruptError, JournalError, SnapshotError
from tradsys.journal.files import (
    JournalFile,
    list_segments,
    list_snapshots,
    segment_path,
    snapshot_path,
)
from tradsys.journal.recovery import (
    Recovered,
    Replayed,
    ReplayResult,
    StartState,
    recover,
    replay,
    replay_to,
    start_state,
)
from tradsys.journal.scan import (
    JOURNAL_RECORD_DTYPE,
    SegmentScan,
    read_records,
    scan_journal,
    scan_segment,
)
from tradsys.journal.snapshots import LoadedSnapshot, SnapshotStore
from tradsys.journal.writer import Durability, JournalWriter

__all__ = [
    "JOURNAL_RECORD_DTYPE",
    "Durability",
    "JournalCorruptError",
    "JournalError",
    "JournalFile",
    "JournalWriter",
    "LoadedSnapshot",
    "Recovered",
    "ReplayResult",
    "Replayed",
    "SegmentScan",
    "SnapshotError",
    "SnapshotStore",
    "StartState",
    "list_segments",
    "list_snapshots",
    "read_records",
    "recover",
    "replay",
    "replay_to",
    "scan_journal",
    "scan_segment",
    "segment_path",
    "snapshot_path",
    "start_state",
]
