"""The background pruner's thread: where it runs and at which policy.

A worker with no housekeeping core asks for ``idle``: the thread then puts itself (and
only itself, not its creator) at SCHED_IDLE and still prunes. Started with ``start``,
it keeps the CPU mask of the thread that started it, which is how a worker sends it to
the housekeeping cores. The thread is found by its OS name, ``ts-prune-<shard>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cores.test_background_sched_idle import wait_thread
from tests.cores.test_housekeeping import mask
from tests.journal.helpers import SHARD, journal, reference
from tradsys.journal import SnapshotStore
from tradsys.journal.snapshots import BackgroundPruner
from tradsys.matching.workload import mixed_stream

DEADLINE_S = 10.0


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    """A shard with snapshots at 0 (the journal's own), 100 and 200."""
    commands = mixed_stream(300, seed=17)
    journal(tmp_path, commands, batch=100)
    snapshots = SnapshotStore(tmp_path, SHARD)
    for at in (100, 200):
        snapshots.write(reference(commands[:at]), at)
    return snapshots


@pytest.fixture
def pruners() -> Iterator[list[BackgroundPruner]]:
    """Pruners the test makes, each closed at the end (its thread joined)."""
    made: list[BackgroundPruner] = []
    try:
        yield made
    finally:
        for pruner in made:
            pruner.close()


def test_an_idle_pruner_prunes_at_sched_idle_and_leaves_its_creator_alone(
    store: SnapshotStore, pruners: list[BackgroundPruner]
) -> None:
    pruner = BackgroundPruner(store, keep=1, idle=True)
    pruners.append(pruner)
    pruner.request(200)
    assert pruner.wait_idle(DEADLINE_S)
    pruner.check()
    assert [s.seq for s in store.snapshots()] == [200]
    tid = wait_thread(os.getpid(), f"ts-prune-{SHARD}")
    assert os.sched_getscheduler(tid) == os.SCHED_IDLE
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's thread keeps its own


def test_a_pruner_started_early_keeps_its_starters_mask_and_policy(
    store: SnapshotStore, pruners: list[BackgroundPruner]
) -> None:
    own = os.sched_getaffinity(0)
    target = {max(own)}
    pruner = BackgroundPruner(store, keep=1)
    pruners.append(pruner)
    os.sched_setaffinity(0, target)
    try:
        pruner.start()
    finally:
        os.sched_setaffinity(0, own)
    tid = wait_thread(os.getpid(), f"ts-prune-{SHARD}")
    assert mask(Path(f"/proc/self/task/{tid}/status")) == target
    assert os.sched_getscheduler(tid) == os.SCHED_OTHER
    pruner.request(200)
    assert pruner.wait_idle(DEADLINE_S)
    pruner.check()
    assert [s.seq for s in store.snapshots()] == [200]
