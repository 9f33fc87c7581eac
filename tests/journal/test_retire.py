"""Pruned files are retired a few MiB at a time (tradsys.journal.snapshots.retire_file).

A pruned segment is first renamed out of the journal's names, then shrunk from its end
in steps, then unlinked: the tests watch the steps (``os.ftruncate`` recorded), and play
the crash between the rename and the unlink -- the half-retired file is never taken for
a segment, recovery gives the same books, and the next prune finishes it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.journal.helpers import SHARD, pruning_fixture, reference
from tradsys.journal import SnapshotStore, list_segments, recover
from tradsys.journal.scan import HEADER_SIZE
from tradsys.journal.snapshots import RETIRING_SUFFIX, retire_file
from tradsys.matching.workload import mixed_stream


def test_a_file_is_shrunk_in_steps_from_its_end_then_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal-005-00000000000000000001.tsj"
    path.write_bytes(os.urandom(10 * 1000 + 123))
    sizes: list[int] = []
    real = os.ftruncate

    def recording(fd: int, size: int) -> None:
        sizes.append(size)
        real(fd, size)

    monkeypatch.setattr(os, "ftruncate", recording)
    retire_file(path, step=1000)
    assert sizes == [10 * 1000 + 123 - k * 1000 for k in range(1, 11)]
    assert list(tmp_path.iterdir()) == []


def test_a_file_within_one_step_is_unlinked_at_once_and_a_missing_one_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "snapshot-005-00000000000000000100.tss"
    path.write_bytes(b"x" * 100)
    calls: list[Any] = []
    monkeypatch.setattr(os, "ftruncate", lambda *a: calls.append(a))
    retire_file(path, step=1000)
    retire_file(path, step=1000)  # gone already: nothing to do, no error
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_a_file_with_other_links_is_only_unlinked_and_they_keep_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment hard-linked elsewhere (a backup made with ``cp -al`` or rsync
    ``--link-dest``, a copy of the data directory) shares its inode: cutting it short
    would cut the other names short too. Its blocks outlive this name anyway, so there
    is nothing for the steps to spread: it is unlinked, and the other name reads whole."""
    data = os.urandom(10 * 1000 + 123)
    path = tmp_path / "journal-005-00000000000000000001.tsj"
    path.write_bytes(data)
    backup = tmp_path / "backup"
    backup.mkdir()
    os.link(path, backup / path.name)
    calls: list[Any] = []
    monkeypatch.setattr(os, "ftruncate", lambda *a: calls.append(a))
    retire_file(path, step=1000)
    assert calls == [] and not path.exists()
    assert not path.with_name(path.name + RETIRING_SUFFIX).exists()
    assert (backup / path.name).read_bytes() == data


def test_a_retirement_a_crash_cut_short_is_no_segment_and_the_next_prune_ends_it(
    tmp_path: Path,
) -> None:
    commands, store = pruning_fixture(tmp_path, seed=11)
    before = list_segments(tmp_path, SHARD)
    # the crash: the oldest segment renamed and cut short, never unlinked
    oldest = before[0].path
    half = oldest.with_name(oldest.name + RETIRING_SUFFIX)
    os.rename(oldest, half)
    os.truncate(half, HEADER_SIZE + 7)
    assert [s.path for s in list_segments(tmp_path, SHARD)] == [s.path for s in before[1:]]
    assert recover(tmp_path, SHARD).engine.digest() == reference(commands).digest()
    removed = store.prune(keep=2)
    assert half in removed and not half.exists()
    assert not list(tmp_path.glob(f"*{RETIRING_SUFFIX}"))
    assert recover(tmp_path, SHARD).engine.digest() == reference(commands).digest()


def test_another_shards_half_retired_file_is_left_to_its_own_prune(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, SHARD)
    store.write(reference(mixed_stream(10, seed=1)), 10)
    store.write(reference(mixed_stream(20, seed=1)), 20)
    other = tmp_path / f"journal-{SHARD + 1:03d}-00000000000000000001.tsj{RETIRING_SUFFIX}"
    other.write_bytes(b"y" * 64)
    store.prune(keep=1)
    assert other.exists()
