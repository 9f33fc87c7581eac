"""Instruments added at a restart live only in snapshots (the journal holds commands): the
snapshot taken at the addition is kept twice, and recovery never falls back past it to a
snapshot without them, which would rebuild books the live shard never had."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradsys.journal import JournalWriter, SnapshotStore, recover
from tradsys.journal.errors import SnapshotError
from tradsys.journal.files import list_additions
from tradsys.matching import CEngine, Instrument
from tradsys.matching.commands import batch, new_order
from tradsys.wire import Side

SHARD = 7
A = Instrument("AAA", 1, reference_price=100)
B = Instrument("BBB", 2, reference_price=100)


def damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF
    path.write_bytes(bytes(data))


def journal(directory: Path, engine: CEngine, first_seq: int, commands: object) -> None:
    writer = JournalWriter(directory, SHARD, next_seq=first_seq)
    writer.append(commands)
    writer.close()
    engine.process(commands)


@pytest.fixture
def added(tmp_path: Path) -> tuple[Path, CEngine]:
    """Snapshots at 0 and 5 with AAA only; a restart at 8 adds BBB (snapshot + copy), and
    BBB trades at 9 and 10. Returns the directory and the live engine."""
    store = SnapshotStore(tmp_path, SHARD)
    live = CEngine()
    live.add_instrument(A)
    store.write(live, 0)
    journal(
        tmp_path, live, 1, batch(*[new_order(i, 1, 1, Side.BUY, 10, 90 + i) for i in range(1, 6)])
    )
    store.write(live, 5)
    journal(
        tmp_path, live, 6, batch(*[new_order(i, 1, 2, Side.SELL, 10, 200 + i) for i in range(6, 9)])
    )
    restarted = recover(tmp_path, SHARD, [A, B]).engine  # what ShardWorker.recover does
    store.write(restarted, 8)
    store.keep_addition(8)
    store.prune(2)
    journal(
        tmp_path,
        restarted,
        9,
        batch(new_order(9, 2, 1, Side.BUY, 10, 100), new_order(10, 2, 2, Side.SELL, 4, 100)),
    )
    return tmp_path, restarted


def test_a_damaged_addition_snapshot_is_stood_in_for_by_its_copy(
    added: tuple[Path, CEngine],
) -> None:
    directory, live = added
    store = SnapshotStore(directory, SHARD)
    damage(store.path_for(8))
    recovered = recover(directory, SHARD, [A, B])
    assert recovered.snapshot_seq == 8 and recovered.seq == 10
    assert recovered.engine.digest() == live.digest()
    assert recovered.engine.depth(2, Side.BUY, 5).tolist() == live.depth(2, Side.BUY, 5).tolist()


def test_with_both_damaged_recovery_refuses_to_fall_back_past_the_addition(
    added: tuple[Path, CEngine],
) -> None:
    """Before, it fell back to the snapshot at 5: BBB's orders were rejected on replay as
    UNKNOWN_SYMBOL and the books came back without them."""
    directory, _ = added
    store = SnapshotStore(directory, SHARD)
    damage(store.path_for(8))
    damage(list_additions(directory, SHARD)[0].path)
    with pytest.raises(SnapshotError, match="instruments were added at seq 8"):
        recover(directory, SHARD, [A, B])


def test_the_copy_goes_once_every_kept_snapshot_has_the_instruments(
    added: tuple[Path, CEngine],
) -> None:
    directory, live = added
    store = SnapshotStore(directory, SHARD)
    store.write(live, 10)
    store.prune(2)  # kept: 8 and 10, both with BBB
    assert [a.seq for a in list_additions(directory, SHARD)] == [8]
    journal(directory, live, 11, batch(new_order(11, 2, 2, Side.SELL, 6, 100)))
    store.write(live, 11)
    store.prune(2)  # kept: 10 and 11
    assert list_additions(directory, SHARD) == []
    assert recover(directory, SHARD, [A, B]).engine.digest() == live.digest()
