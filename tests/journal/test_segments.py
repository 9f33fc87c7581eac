"""Journal segments: scan, torn tails, flipped bytes, seq gaps, rotation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tests.journal.helpers import SHARD, journal, reference
from tradsys.journal import (
    JournalCorruptError,
    JournalError,
    JournalWriter,
    list_segments,
    read_records,
    recover,
    replay,
    scan_journal,
    scan_segment,
)
from tradsys.journal.scan import HEADER_SIZE, RECORD_SIZE
from tradsys.matching.workload import mixed_stream

N = 3000


@pytest.fixture(scope="module")
def commands() -> np.ndarray:
    return mixed_stream(N, seed=11)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_records_read_back_with_seqs_and_ring_indices(tmp_path: Path, commands: np.ndarray) -> None:
    journal(tmp_path, commands, batch=128)
    (segment,) = list_segments(tmp_path, SHARD)
    scan = scan_segment(segment.path, SHARD)
    assert (scan.first_seq, scan.records, scan.last_seq) == (1, N, N)
    assert not scan.torn
    records = read_records(segment.path, SHARD)
    assert records["seq"].tolist() == list(range(1, N + 1))
    assert records["ring_index"].tolist() == list(range(N))
    # field by field: a strided copy does not carry pad bytes
    assert all(np.array_equal(records["cmd"][f], commands[f]) for f in commands.dtype.names)


def test_truncated_tail_recovers_and_is_truncated(
    tmp_path: Path, commands: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    journal(tmp_path, commands)
    (segment,) = list_segments(tmp_path, SHARD)
    full = HEADER_SIZE + N * RECORD_SIZE
    with open(segment.path, "r+b") as f:
        f.truncate(full - 50)  # the last record cut short, as a crash mid-write does
    with caplog.at_level(logging.WARNING, logger="tradsys.journal"):
        recovered = recover(tmp_path, SHARD)
    assert recovered.seq == N - 1
    assert recovered.engine.digest() == reference(commands[: N - 1]).digest()
    assert segment.path.stat().st_size == full - RECORD_SIZE
    assert f"torn tail at byte offset {full - RECORD_SIZE}" in caplog.text
    assert str(segment.path) in caplog.text
    # the journal is clean now and appending continues from the recovered seq
    assert not scan_segment(segment.path, SHARD).torn
    with JournalWriter(tmp_path, SHARD, next_seq=N) as writer:
        writer.append(commands[N - 1 :])
    assert replay(tmp_path, SHARD).digest() == reference(commands).digest()


def test_garbage_records_at_the_end_are_a_torn_tail(tmp_path: Path, commands: np.ndarray) -> None:
    journal(tmp_path, commands)
    (segment,) = list_segments(tmp_path, SHARD)
    with open(segment.path, "ab") as f:
        f.write(bytes(range(256)) * 2)  # several whole records of junk
    scan = scan_segment(segment.path, SHARD)
    assert scan.torn and scan.records == N
    assert recover(tmp_path, SHARD).seq == N
    assert segment.path.stat().st_size == HEADER_SIZE + N * RECORD_SIZE


def test_flipped_byte_mid_file_is_refused_with_the_offset(
    tmp_path: Path, commands: np.ndarray
) -> None:
    journal(tmp_path, commands)
    (segment,) = list_segments(tmp_path, SHARD)
    bad = HEADER_SIZE + 1234 * RECORD_SIZE
    _flip(segment.path, bad + 30)
    with pytest.raises(JournalCorruptError) as info:
        recover(tmp_path, SHARD)
    assert info.value.path == segment.path
    assert info.value.offset == bad
    assert f"offset {bad}" in str(info.value)
    assert str(segment.path) in str(info.value)
    # nothing was truncated: a corrupt journal is left as it was found
    assert segment.path.stat().st_size == HEADER_SIZE + N * RECORD_SIZE


def test_rotation_and_replay_across_segments(tmp_path: Path, commands: np.ndarray) -> None:
    per_segment = 200
    journal(tmp_path, commands, batch=50, segment_bytes=HEADER_SIZE + per_segment * RECORD_SIZE)
    segments = list_segments(tmp_path, SHARD)
    assert len(segments) == N // per_segment
    scans = scan_journal(tmp_path, SHARD)
    assert [s.first_seq for s in scans] == [1 + i * per_segment for i in range(len(scans))]
    assert scans[-1].last_seq == N
    assert replay(tmp_path, SHARD).digest() == reference(commands).digest()


def test_damage_in_an_older_segment_is_corruption_not_a_torn_tail(
    tmp_path: Path, commands: np.ndarray
) -> None:
    journal(tmp_path, commands, batch=100, segment_bytes=HEADER_SIZE + 1000 * RECORD_SIZE)
    first = list_segments(tmp_path, SHARD)[0]
    last_record = first.path.stat().st_size - RECORD_SIZE
    _flip(first.path, last_record + 70)
    with pytest.raises(JournalCorruptError) as info:
        replay(tmp_path, SHARD)
    assert (info.value.path, info.value.offset) == (first.path, last_record)
    with pytest.raises(JournalCorruptError):
        scan_journal(tmp_path, SHARD)


def test_a_missing_segment_is_a_gap(tmp_path: Path, commands: np.ndarray) -> None:
    journal(tmp_path, commands, batch=100, segment_bytes=HEADER_SIZE + 1000 * RECORD_SIZE)
    middle = list_segments(tmp_path, SHARD)[1]
    middle.path.unlink()
    with pytest.raises(JournalCorruptError, match="missing"):
        replay(tmp_path, SHARD)


def test_appending_must_continue_the_journal(tmp_path: Path, commands: np.ndarray) -> None:
    journal(tmp_path, commands[:100])
    with pytest.raises(JournalError, match="already holds seqs up to 100"):
        JournalWriter(tmp_path, SHARD, next_seq=50)
    with JournalWriter(tmp_path, SHARD, next_seq=101) as writer:
        assert writer.append(commands[100:200]) == 101
        assert writer.next_seq == 201
    assert len(list_segments(tmp_path, SHARD)) == 1


def test_a_segment_of_another_shard_is_refused(tmp_path: Path, commands: np.ndarray) -> None:
    journal(tmp_path, commands[:10])
    (segment,) = list_segments(tmp_path, SHARD)
    with pytest.raises(JournalCorruptError, match=f"belongs to shard {SHARD}"):
        scan_segment(segment.path, SHARD + 1)


@pytest.mark.parametrize("keep", [0, 40, HEADER_SIZE - 1, None])
def test_a_last_segment_without_its_header_is_refused_not_dropped(
    tmp_path: Path, commands: np.ndarray, keep: int | None
) -> None:
    """A segment is made whole under a temporary name and linked into place, so no crash
    leaves one without its header: an empty, short or zeroed header, in the last segment
    too, is damage to commands that may have been acknowledged. Before, it was dropped as
    a torn tail -- and the file removed -- and every order in it was silently gone."""
    journal(tmp_path, commands[:100])
    (segment,) = list_segments(tmp_path, SHARD)
    if keep is None:  # the header zeroed, the records intact
        data = bytearray(segment.path.read_bytes())
        data[:HEADER_SIZE] = bytes(HEADER_SIZE)
        segment.path.write_bytes(bytes(data))
    else:
        with segment.path.open("r+b") as f:
            f.truncate(keep)
    with pytest.raises(JournalCorruptError, match="segments are created whole, so this is damage"):
        replay(tmp_path, SHARD)
    with pytest.raises(JournalCorruptError):
        recover(tmp_path, SHARD)
    assert segment.path.exists(), "the damaged segment is left for the operator"


def test_segments_appear_whole_and_a_leftover_temporary_file_is_ignored(
    tmp_path: Path, commands: np.ndarray
) -> None:
    journal(tmp_path, commands, batch=100, segment_bytes=HEADER_SIZE + 1000 * RECORD_SIZE)
    assert not list(tmp_path.glob("*.tmp"))
    segments = list_segments(tmp_path, SHARD)
    # a crash while a segment was being made leaves its temporary file: not a segment
    (tmp_path / (segments[-1].path.name + ".tmp")).write_bytes(b"")
    Path(str(segments[-1].path) + "x.tmp").write_bytes(bytes(10))
    assert replay(tmp_path, SHARD).digest() == reference(commands).digest()


def test_missing_segments_are_named_by_where_the_journal_starts(
    tmp_path: Path, commands: np.ndarray
) -> None:
    journal(tmp_path, commands, batch=100, segment_bytes=HEADER_SIZE + 1000 * RECORD_SIZE)
    first, second = list_segments(tmp_path, SHARD)[:2]
    first.path.unlink()
    with pytest.raises(JournalCorruptError) as info:
        replay(tmp_path, SHARD)
    assert f"the journal starts at seq {second.seq} but seqs from 1 are needed" in str(info.value)
