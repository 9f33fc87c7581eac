"""Background snapshots in the shard worker: written while commands keep flowing, never
visible before the journal (and the output) through their seq are durable and pushed,
requests served asynchronously, the stop waiting for a write in flight, and a kill -9 in
the middle of one leaving only a .tmp that the next prune removes.

The writer is held deterministically, without sleeps or test hooks in the process: under
GROUP durability with a 30-second group interval the journal is synced once (the first
commit is due at once) and then not again until something quiesces the loop — a stop or
a market-data refresh — so a snapshot handed off meanwhile waits at its gate.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import Children
from tests.cores.test_worker import JOIN_S, ThreadWorker, feed, stop, wait_for
from tests.cores.worker_rig import (
    SHARD,
    ShardRig,
    reference_output,
    shard_rig,
    spec_json,
    worker_child,
)
from tradsys.cores.control import WorkerState
from tradsys.cores.worker import EXIT_FAILURE, EXIT_OK
from tradsys.journal import SnapshotStore, list_snapshots, replay
from tradsys.journal.files import list_additions
from tradsys.journal.recovery import start_state
from tradsys.matching.workload import mixed_stream, sample_instruments

HELD_GROUP_US = 30_000_000
EVERY = 1000


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[ShardRig]:
    yield from shard_rig(instance, tmp_path)


def tmp_files(rig: ShardRig) -> list[Path]:
    return sorted(rig.data_dir.glob("snapshot-*.tss.tmp"))


def snapshot_seqs(rig: ShardRig) -> list[int]:
    return [s.seq for s in list_snapshots(rig.data_dir, SHARD)]


def push_all(rig: ShardRig, commands: np.ndarray, upto_seq: int) -> None:
    """Push every command, waiting (with a deadline) until the worker has matched them:
    the worker's processed_seq reaching ``upto_seq`` is the proof that it kept going."""
    pushed = 0
    while pushed < len(commands):
        pushed += rig.push(commands[pushed : pushed + 512])
        rig.collect()
        assert wait_for(lambda p=pushed: rig.ctl.processed_seq >= upto_seq - len(commands) + p)
    assert rig.ctl.processed_seq == upto_seq


def start_held(rig: ShardRig, commands: np.ndarray, **spec: object) -> ThreadWorker:
    """A worker whose journal is synced through seq 1 and then not for 30 s."""
    worker = ThreadWorker(
        rig.spec(durability="group", group_commit_us=HELD_GROUP_US, snapshot_every=EVERY, **spec)
    )
    rig.push(commands[:1])
    assert wait_for(lambda: rig.ctl.synced_seq == 1)
    return worker


def test_a_periodic_snapshot_is_written_while_commands_flow(rig: ShardRig) -> None:
    commands = mixed_stream(5000, seed=51)
    engine, events, _ = reference_output(commands)
    worker = start_held(rig, commands)
    push_all(rig, commands[1:], 5000)
    # the loop never stopped for a snapshot: it matched all 5000 commands while the one
    # handed off near seq 1000 waited for its journal to be durable (synced_seq is 1)
    ctl = rig.ctl
    assert ctl.state == WorkerState.RUNNING
    assert ctl.synced_seq == 1
    assert ctl.cdata.snapshots_deferred >= 1  # the ones due at ~2000.. waited for it
    assert (ctl.snapshots_taken, ctl.snapshot_seq) == (1, 0)  # recovery's, at seq 0
    assert wait_for(lambda: len(tmp_files(rig)) == 1)
    assert snapshot_seqs(rig) == [0]  # only recovery's; nothing renamed before the sync
    [held] = tmp_files(rig)
    held_seq = int(held.name.split("-")[2].split(".")[0])
    assert EVERY <= held_seq < EVERY + 1024
    # the stop quiesces (syncs): the held write becomes visible, then the stop's own
    assert stop(rig, worker) == EXIT_OK
    assert ctl.synced_seq == 5000
    assert snapshot_seqs(rig) == [held_seq, 5000]  # pruning kept two
    assert ctl.snapshot_seq == 5000
    assert tmp_files(rig) == []
    rig.collect()
    assert rig.received_events().tobytes() == events.tobytes()
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()
    # the background snapshot holds the state at its seq
    loaded = SnapshotStore(rig.data_dir, SHARD).load(
        SnapshotStore(rig.data_dir, SHARD).path_for(held_seq)
    )
    at_held, _, _ = reference_output(commands[:held_seq])
    assert loaded.engine.digest() == at_held.digest()


def test_a_requested_snapshot_is_served_asynchronously(rig: ShardRig) -> None:
    commands = mixed_stream(600, seed=52)
    worker = start_held(rig, commands)
    push_all(rig, commands[1:300], 300)
    wanted = rig.ctl.request_snapshot()
    # handed off at once (at seq 300), held at its gate, and the loop goes on matching
    assert wait_for(lambda: len(tmp_files(rig)) == 1)
    assert rig.ctl.snapshots_served != wanted
    push_all(rig, commands[300:], 600)
    assert rig.ctl.snapshots_served != wanted
    # a market-data refresh quiesces the loop (sync, push): the gate opens
    rig.ctl.request_md_refresh()
    assert wait_for(lambda: rig.ctl.snapshots_served == wanted)
    assert rig.ctl.snapshot_seq == 300
    assert 300 in snapshot_seqs(rig)
    assert rig.ctl.state == WorkerState.RUNNING
    assert stop(rig, worker) == EXIT_OK


def test_the_inline_writer_is_still_there(rig: ShardRig) -> None:
    commands = mixed_stream(3000, seed=53)
    engine, events, _ = reference_output(commands)
    worker = ThreadWorker(rig.spec(snapshot_every=EVERY, snapshot_writer="inline"))
    push_all(rig, commands, 3000)
    assert wait_for(lambda: rig.ctl.snapshots_taken >= 2)
    assert rig.ctl.cdata.snapshot_serialize_ns == 0  # nothing went through the writer
    assert stop(rig, worker) == EXIT_OK
    rig.collect()
    assert rig.received_events().tobytes() == events.tobytes()
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()


def test_a_failed_background_write_fails_the_worker_naming_the_file(rig: ShardRig) -> None:
    commands = mixed_stream(10, seed=55)
    worker = ThreadWorker(rig.spec(durability="fsync", snapshot_every=0))
    push_all(rig, commands, 10)
    # a directory where the writer's .tmp must go: its open() fails (as root, too)
    blocker = SnapshotStore(rig.data_dir, SHARD).path_for(10).with_suffix(".tss.tmp")
    blocker.mkdir()
    rig.ctl.request_snapshot()
    assert worker.join() == EXIT_FAILURE
    assert rig.ctl.state == WorkerState.FAILED
    assert str(blocker) in rig.ctl.error
    assert "cannot create" in rig.ctl.error
    blocker.rmdir()


@pytest.mark.multiprocess
def test_kill_9_during_a_background_write(rig: ShardRig, children: Children) -> None:
    commands = mixed_stream(4000, seed=54)
    engine, events, _ = reference_output(commands)
    spec = rig.spec(durability="group", group_commit_us=HELD_GROUP_US, snapshot_every=EVERY)
    proc = children.start(worker_child, spec_json(spec))
    rig.push(commands[:1])
    assert wait_for(lambda: rig.ctl.synced_seq == 1)
    push_all(rig, commands[1:2500], 2500)
    assert wait_for(lambda: len(tmp_files(rig)) == 1)
    [left] = tmp_files(rig)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(JOIN_S)
    assert proc.exitcode == -signal.SIGKILL
    assert left.exists()
    assert snapshot_seqs(rig) == [0]
    # recovery ignores the .tmp: it starts from the previous snapshot (seq 0)
    assert start_state(rig.data_dir, SHARD, sample_instruments()).snapshot_seq == 0
    rig.ctl.prepare_spawn()
    worker = ThreadWorker(rig.spec(durability="fsync", snapshot_every=EVERY))
    push_all(rig, commands[2500:], 4000)
    assert rig.ctl.recovered_from_seq == 0
    # the new incarnation's next snapshot (its seq above the .tmp's) is followed by a
    # prune, which clears the .tmp away while the worker runs
    assert wait_for(lambda: not left.exists())
    assert rig.ctl.snapshot_seq > EVERY + 1024
    assert stop(rig, worker) == EXIT_OK
    assert tmp_files(rig) == []
    rig.collect()
    assert rig.received_events().tobytes() == events.tobytes()
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()


def test_prune_keeps_a_newer_tmp_a_writer_may_be_writing(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, SHARD)
    old, newer = store.path_for(5).with_suffix(".tss.tmp"), store.path_for(9)
    newer_tmp = newer.with_suffix(".tss.tmp")
    old.write_bytes(b"x")
    newer_tmp.write_bytes(b"x")
    removed = store.prune(2, tmp_below=7)
    assert removed == [old]
    assert newer_tmp.exists()
    assert store.prune(2) == [newer_tmp]


def test_a_restart_that_adds_an_instrument_keeps_a_copy_of_its_snapshot(rig: ShardRig) -> None:
    """The snapshot at the addition is the only record of the new instrument, and the
    previous snapshot lacks it: SnapshotStore.keep_addition's copy stands in for it."""
    first, *_ = instruments = sample_instruments()
    commands = mixed_stream(500, seed=57, instruments=[first])
    _, events, _ = reference_output(commands, [first])
    worker = ThreadWorker(rig.spec(instruments=[first]))
    feed(rig, commands, len(events))
    assert stop(rig, worker) == EXIT_OK
    assert list_additions(rig.data_dir, SHARD) == []
    rig.ctl.clear_stop()
    worker = ThreadWorker(rig.spec(instruments=instruments))
    assert wait_for(lambda: rig.ctl.state == WorkerState.RUNNING)
    assert stop(rig, worker) == EXIT_OK
    (copy,) = list_additions(rig.data_dir, SHARD)
    assert copy.seq == 500 in snapshot_seqs(rig)
    assert copy.path.read_bytes() == SnapshotStore(rig.data_dir, SHARD).path_for(500).read_bytes()
