"""Shared by the journal tests: journaling a stream, and the engine it should give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tradsys.journal import JournalWriter, SnapshotStore
from tradsys.journal.scan import HEADER_SIZE, RECORD_SIZE
from tradsys.matching import CEngine, Instrument
from tradsys.matching.workload import mixed_stream, sample_instruments

SHARD = 5


def engine_with(instruments: list[Instrument] | None = None) -> CEngine:
    engine = CEngine()
    for ins in instruments if instruments is not None else sample_instruments():
        engine.add_instrument(ins)
    return engine


def reference(commands: Any, instruments: list[Instrument] | None = None) -> CEngine:
    """An engine that processed every command directly, without any journal."""
    engine = engine_with(instruments)
    engine.process(commands)
    return engine


def journal(
    directory: Path,
    commands: Any,
    *,
    batch: int = 500,
    segment_bytes: int = 64 << 20,
    instruments: list[Instrument] | None = None,
    first_seq: int = 1,
) -> None:
    """Journal ``commands`` in batches, with the seq-0 snapshot a worker writes first
    (it is where the instruments live)."""
    if first_seq == 1:
        SnapshotStore(directory, SHARD).write(engine_with(instruments), 0)
    with JournalWriter(directory, SHARD, segment_bytes=segment_bytes, next_seq=first_seq) as writer:
        for i in range(0, len(commands), batch):
            writer.append(commands[i : i + batch])


PER_SEGMENT = 500  # commands per segment in the pruning tests


def pruning_fixture(directory: Path, seed: int) -> tuple[Any, SnapshotStore]:
    """6 000 mixed commands journaled in segments of PER_SEGMENT, with snapshots at 2 000
    and 4 200: what the pruning tests prune. Returns the commands and the store."""
    commands = mixed_stream(6000, seed=seed)
    journal(directory, commands, batch=100, segment_bytes=HEADER_SIZE + PER_SEGMENT * RECORD_SIZE)
    store = SnapshotStore(directory, SHARD)
    for at in (2000, 4200):
        store.write(reference(commands[:at]), at)
    return commands, store
