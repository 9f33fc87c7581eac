"""A worker restarted within a run refuses to start from less than the shard had already
acknowledged: its data directory moved or deleted, or its journal removed or cut short
under the running instance. Before, the restart made an empty directory (or replayed
what was left), "recovered" at an earlier seq with orders clients had been told of gone,
and journaled new commands under the lost ones' seqs."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import Children
from tests.cores.worker_rig import ShardRig, shard_rig, spec_json, worker_child
from tradsys.cores.control import WorkerState
from tradsys.exit_codes import EXIT_INTERNAL
from tradsys.journal.files import list_segments, list_snapshots
from tradsys.matching.workload import mixed_stream

pytestmark = pytest.mark.multiprocess

COMMANDS = 3_000
JOIN_S = 30.0


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[ShardRig]:
    yield from shard_rig(instance, tmp_path)


def _push_until_acked(rig: ShardRig, commands: np.ndarray, acked: int) -> None:
    """Push ``commands`` and read the output until the worker has acknowledged (pushed
    the output of) seq ``acked``."""
    pushed = 0
    deadline = time.monotonic() + JOIN_S
    while rig.ctl.acked_seq < acked:
        assert time.monotonic() < deadline, f"acked {rig.ctl.acked_seq} of {acked}"
        pushed += rig.push(commands[pushed:])
        rig.collect(wait_s=0.002)


def _acknowledged_then_killed(rig: ShardRig, children: Children, spec: str) -> int:
    """Run a worker until it has acknowledged every command, then SIGKILL it; the seq
    it had acknowledged."""
    proc = children.start(worker_child, spec)
    _push_until_acked(rig, mixed_stream(COMMANDS, seed=7), COMMANDS)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(JOIN_S)
    return int(rig.ctl.acked_seq)


def _refused(rig: ShardRig, children: Children, spec: str) -> str:
    proc = children.start(worker_child, spec)
    proc.join(JOIN_S)
    assert proc.exitcode == EXIT_INTERNAL
    assert rig.ctl.state == WorkerState.FAILED
    return rig.ctl.error


def test_a_data_directory_gone_under_the_run_is_refused_not_recreated(
    rig: ShardRig, children: Children
) -> None:
    spec = spec_json(rig.spec(segment_bytes=64 << 10, snapshot_every=1_000))
    _acknowledged_then_killed(rig, children, spec)
    moved = rig.data_dir.with_name("shard-0.moved")
    rig.data_dir.rename(moved)
    error = _refused(rig, children, spec)
    assert f"data directory {rig.data_dir} is gone (moved or deleted while the" in error
    assert not rig.data_dir.exists()
    moved.rename(rig.data_dir)  # put back: the restart recovers everything
    proc = children.start(worker_child, spec)
    _push_until_acked(rig, mixed_stream(10, seed=8), COMMANDS + 10)
    assert rig.ctl.journaled_seq == COMMANDS + 10
    rig.ctl.request_stop()
    rig.wake()
    proc.join(JOIN_S)
    assert proc.exitcode == 0


def test_a_journal_cut_short_under_the_run_is_refused(rig: ShardRig, children: Children) -> None:
    spec = spec_json(rig.spec(segment_bytes=64 << 10, snapshot_every=100_000))
    acked = _acknowledged_then_killed(rig, children, spec)
    segments = list_segments(rig.data_dir, 0)
    assert len(segments) > 1
    os.truncate(segments[-2].path, 64)  # a middle segment down to its header
    for later in segments[-1:]:
        later.path.unlink()
    assert list_snapshots(rig.data_dir, 0)  # the one taken at the first start, seq 0
    error = _refused(rig, children, spec)
    assert f"but this shard acknowledged commands up to seq {acked} earlier in this run" in error
