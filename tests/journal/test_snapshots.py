"""Snapshots: snapshot + tail replays like a full replay; damaged ones are skipped;
retention keeps what recovery needs."""

from __future__ import annotations

import logging
import os
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.journal.helpers import PER_SEGMENT, SHARD, journal, pruning_fixture, reference
from tradsys.journal import (
    JournalError,
    SnapshotStore,
    list_segments,
    recover,
    replay,
    snapshots,
    start_state,
)
from tradsys.journal.recovery import replay_tail
from tradsys.journal.scan import HEADER_SIZE, RECORD_SIZE
from tradsys.matching import Instrument
from tradsys.matching.workload import mixed_stream, sample_instruments, venue_stream

VENUE = [Instrument("VENUE", 1, tick_size=1, lot_size=100, min_qty=100)]


def _streams() -> list[tuple[str, Any, list[Instrument] | None]]:
    return [
        ("mixed", mixed_stream(8000, seed=3), None),
        ("venue", venue_stream(8000, seed=4), VENUE),
    ]


@pytest.mark.parametrize(("name", "commands", "instruments"), _streams(), ids=["mixed", "venue"])
def test_snapshot_plus_tail_equals_full_replay(
    tmp_path: Path, name: str, commands: np.ndarray, instruments: list[Instrument] | None
) -> None:
    n = len(commands)
    journal(tmp_path, commands, batch=300, instruments=instruments,
            segment_bytes=HEADER_SIZE + 1500 * RECORD_SIZE)  # fmt: skip
    store = SnapshotStore(tmp_path, SHARD)
    at = 5123
    store.write(reference(commands[:at], instruments), at)
    full = reference(commands, instruments).digest()
    # the whole journal from the seq-0 snapshot ...
    from_zero = store.load(store.path_for(0)).engine
    assert replay_tail(tmp_path, SHARD, from_zero, 0).replayed == n
    assert from_zero.digest() == full
    # ... and the newest snapshot plus the tail give the same books
    assert start_state(tmp_path, SHARD).snapshot_seq == at
    recovered = recover(tmp_path, SHARD)
    assert (recovered.snapshot_seq, recovered.replayed, recovered.seq) == (at, n - at, n)
    assert recovered.engine.digest() == full
    assert replay(tmp_path, SHARD).digest() == full
    # and a replay up to a seq before the snapshot starts from the older one
    part = reference(commands[:4000], instruments).digest()
    assert replay(tmp_path, SHARD, upto=4000).digest() == part
    # the state at a snapshot's own seq is that snapshot, 0 included: the empty books
    # (upto=0 once meant "no limit" to the C side, and replayed everything)
    assert (
        replay(tmp_path, SHARD, upto=at).digest() == reference(commands[:at], instruments).digest()
    )
    assert replay(tmp_path, SHARD, upto=0).digest() == reference(commands[:0], instruments).digest()
    assert replay(tmp_path, SHARD, upto=1).digest() == reference(commands[:1], instruments).digest()


def test_a_damaged_newest_snapshot_is_skipped_for_the_older(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    commands = mixed_stream(4000, seed=8)
    journal(tmp_path, commands)
    store = SnapshotStore(tmp_path, SHARD)
    store.write(reference(commands[:1000]), 1000)
    newest = store.write(reference(commands[:3000]), 3000)
    data = bytearray(newest.read_bytes())
    data[200] ^= 1
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="tradsys.journal"):
        recovered = recover(tmp_path, SHARD)
    assert recovered.snapshot_seq == 1000
    assert recovered.replayed == 3000
    assert recovered.engine.digest() == reference(commands).digest()
    assert "skipping damaged snapshot" in caplog.text and str(newest) in caplog.text


def test_snapshot_write_and_load_keep_the_positions(tmp_path: Path) -> None:
    commands = mixed_stream(500, seed=9)
    engine = reference(commands)
    store = SnapshotStore(tmp_path, SHARD)
    path = store.write(engine, 500, md_count=777)
    loaded = store.load(path)
    assert (loaded.seq, loaded.md_count) == (500, 777)
    assert loaded.last_exec_id > 0
    assert loaded.engine.digest() == engine.digest()
    with pytest.raises(JournalError, match="belongs to shard"):
        SnapshotStore(tmp_path, SHARD + 1).load(path)


def test_prune_keeps_the_previous_snapshot_and_what_it_needs(tmp_path: Path) -> None:
    commands, store = pruning_fixture(tmp_path, seed=10)
    per_segment = PER_SEGMENT
    removed = store.prune(keep=2)
    assert [s.seq for s in store.snapshots()] == [2000, 4200]
    # segments whose every seq is <= 2000 are gone; the one holding 2001.. stays
    firsts = [s.seq for s in list_segments(tmp_path, SHARD)]
    assert firsts[0] <= 2001 < firsts[0] + per_segment
    assert any("snapshot" in p.name and p.name.endswith("0.tss") for p in removed)
    # both kept snapshots still recover to the same books
    full = reference(commands).digest()
    assert recover(tmp_path, SHARD).engine.digest() == full
    store.path_for(4200).unlink()
    assert recover(tmp_path, SHARD).engine.digest() == full


def test_prune_counts_only_snapshots_that_check_out(tmp_path: Path) -> None:
    """A damaged newest snapshot is not one of the two kept: the good ones before it stay
    (before, the prune kept the damaged one and the one before it, deleting the last
    snapshots recovery could still start from)."""
    commands, store = pruning_fixture(tmp_path, seed=14)
    damaged = store.path_for(5000)
    store.write(reference(commands[:5000]), 5000)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x10
    damaged.write_bytes(bytes(data))
    store.prune(keep=2)
    assert [s.seq for s in store.snapshots()] == [2000, 4200, 5000]
    assert recover(tmp_path, SHARD).engine.digest() == reference(commands).digest()
    store.write(reference(commands[:5500]), 5500)
    store.prune(keep=2)  # 5500 and 4200 check out: 0 and 2000 go, the damaged 5000 stays
    assert [s.seq for s in store.snapshots()] == [4200, 5000, 5500]
    store.path_for(5500).unlink()
    assert recover(tmp_path, SHARD).engine.digest() == reference(commands).digest()


def test_prune_reads_back_only_the_snapshots_it_has_not_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands, store = pruning_fixture(tmp_path, seed=16)
    read: list[str] = []
    real = snapshots.mmap.mmap

    def counting(fileno: int, length: int, **kw: Any) -> Any:
        read.append(os.readlink(f"/proc/self/fd/{fileno}").rsplit("/", 1)[1])
        return real(fileno, length, **kw)

    monkeypatch.setattr(snapshots, "mmap", types.SimpleNamespace(mmap=counting, ACCESS_READ=1))
    store.prune(keep=2)
    assert read == [store.path_for(4200).name, store.path_for(2000).name]
    store.write(reference(commands[:5000]), 5000)
    read.clear()
    store.prune(keep=2)
    assert read == [store.path_for(5000).name]  # 4200 was read back by the first prune


def test_without_a_snapshot_the_instruments_must_be_given(tmp_path: Path) -> None:
    commands = mixed_stream(100, seed=12)
    journal(tmp_path, commands)
    SnapshotStore(tmp_path, SHARD).path_for(0).unlink()
    with pytest.raises(JournalError, match="instruments are unknown"):
        replay(tmp_path, SHARD)
    given = replay(tmp_path, SHARD, instruments=sample_instruments())
    assert given.digest() == reference(commands).digest()


def test_a_snapshot_ahead_of_the_journal_breaks_the_next_recovery(tmp_path: Path) -> None:
    """Why the background writer never publishes a snapshot ahead of the durable journal
    (it waits for synced_seq, or under durability none syncs the segments itself): after
    an OS crash that kept the snapshot at seq 300 but only the journal through 200, the
    restarted worker would append from 301 in a new segment, and the recovery after that
    would refuse the gap 201..300 instead of starting from the snapshot."""
    commands = mixed_stream(400, seed=13)
    journal(tmp_path, commands[:200], batch=50)
    SnapshotStore(tmp_path, SHARD).write(reference(commands[:300]), 300)
    # the first restart is fine: nothing after 300 to replay
    assert recover(tmp_path, SHARD).seq == 300
    journal(tmp_path, commands[300:], batch=50, first_seq=301)
    with pytest.raises(JournalError, match="missing"):
        recover(tmp_path, SHARD)


def test_a_replay_before_the_kept_snapshots_says_the_journal_was_pruned(tmp_path: Path) -> None:
    """Before, it advised passing the instruments 'to replay from seq 1' -- which the
    pruned segments make impossible -- and doing so ended in a 'segments are missing'."""
    commands, store = pruning_fixture(tmp_path, seed=15)
    store.prune(keep=2)
    with pytest.raises(JournalError) as info:
        replay(tmp_path, SHARD, sample_instruments(), upto=1000)
    text = str(info.value)
    assert "no valid snapshot of shard" in text and "at or before seq 1000" in text
    assert "older segments were pruned" in text and "snapshots kept: seqs [2000, 4200]" in text
    part = reference(commands[:3000]).digest()
    assert replay(tmp_path, SHARD, upto=3000).digest() == part
