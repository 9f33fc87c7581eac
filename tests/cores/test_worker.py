"""The shard worker, run in a thread of the test process (its C loop releases the GIL):
the same events and market data as the engine fed directly, clean stops, restarts from a
snapshot, a torn tail truncated at start-up, corruption refused with exit code 2."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from tests.conftest import Children
from tests.cores.worker_rig import (
    SHARD,
    ShardRig,
    reference_output,
    shard_rig,
    spec_json,
    worker_child,
)
from tradsys.cores.control import WorkerControl, WorkerState
from tradsys.cores.worker import EXIT_FAILURE, EXIT_OK, EXIT_USER_ERROR, WorkerSpec, run_worker
from tradsys.journal import list_segments, list_snapshots, replay
from tradsys.journal.scan import HEADER_SIZE, RECORD_SIZE
from tradsys.matching.workload import mixed_stream
from tradsys.ring import RingAttachError

JOIN_S = 30.0


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[ShardRig]:
    yield from shard_rig(instance, tmp_path)


class ThreadWorker:
    """run_worker(spec) in a thread; ``code`` is its return value once it ends."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.code: int | None = None
        self.thread = threading.Thread(target=self._body, args=(spec,), daemon=True)
        self.thread.start()

    def _body(self, spec: WorkerSpec) -> None:
        self.code = run_worker(spec)

    def join(self) -> int | None:
        self.thread.join(JOIN_S)
        assert not self.thread.is_alive(), "the worker did not stop"
        return self.code


def feed(rig: ShardRig, commands: np.ndarray, events_wanted: int, md_wanted: int = 0) -> None:
    """Push every command and collect output until ``events_wanted`` events (and
    ``md_wanted`` md records: a batch's md is pushed after its events) came."""
    pushed = 0
    deadline = time.monotonic() + JOIN_S
    while time.monotonic() < deadline:
        if pushed < len(commands):
            pushed += rig.push(commands[pushed : pushed + 512])
        rig.collect(wait_s=0.01)
        n_md = len(rig.md_bytes) // 64
        if pushed == len(commands) and rig.n_events >= events_wanted and n_md >= md_wanted:
            return
    raise AssertionError(f"only {rig.n_events} of {events_wanted} events arrived")


def wait_for(condition: Callable[[], bool], timeout_s: float = JOIN_S) -> bool:
    """Poll a condition the worker makes true (a counter in its control block) until it
    holds or the time is up."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.001)
    return True


def stop(rig: ShardRig, worker: ThreadWorker) -> int | None:
    rig.ctl.request_stop()
    rig.wake()
    code = worker.join()
    rig.collect()
    return code


def test_worker_gives_the_engines_events_and_market_data(rig: ShardRig) -> None:
    commands = mixed_stream(20_000, seed=21)
    engine, events, md = reference_output(commands)
    worker = ThreadWorker(rig.spec(snapshot_every=6000, segment_bytes=1 << 20))
    feed(rig, commands, len(events), len(md))
    assert rig.received_events().tobytes() == events.tobytes()
    assert rig.received_md().tobytes() == md.tobytes()
    ctl = rig.ctl
    assert ctl.state == WorkerState.RUNNING
    assert (ctl.processed_seq, ctl.journaled_seq) == (20_000, 20_000)
    assert stop(rig, worker) == EXIT_OK
    # the counters follow the pushes, so they are read once the worker is done
    assert ctl.acked_seq == ctl.synced_seq == 20_000
    assert ctl.last_exec_id == int(events["exec_id"][-1])
    assert ctl.state == WorkerState.STOPPED
    assert ctl.snapshot_seq == 20_000
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()
    # periodic snapshots were taken, and pruning kept two of them
    assert [s.seq for s in list_snapshots(rig.data_dir, SHARD)][-1] == 20_000
    assert len(list_snapshots(rig.data_dir, SHARD)) == 2


def test_restart_recovers_from_the_snapshot_and_carries_on(rig: ShardRig) -> None:
    commands = mixed_stream(12_000, seed=22)
    engine, events, md = reference_output(commands)
    _, first_events, _ = reference_output(commands[:7000])
    worker = ThreadWorker(rig.spec(durability="fsync"))
    feed(rig, commands[:7000], len(first_events))
    assert stop(rig, worker) == EXIT_OK
    rig.ctl.clear_stop()  # as a supervisor does before it starts a worker again
    worker = ThreadWorker(rig.spec(durability="none"))
    feed(rig, commands[7000:], len(events), len(md))
    assert rig.ctl.recovered_from_seq == 7000
    assert rig.ctl.replayed == 0
    assert rig.ctl.reemitted_events == 0
    assert rig.ctl.incarnations == 2
    assert stop(rig, worker) == EXIT_OK
    assert rig.received_events().tobytes() == events.tobytes()
    assert rig.received_md().tobytes() == md.tobytes()
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()


def test_a_requested_snapshot_is_taken(rig: ShardRig) -> None:
    commands = mixed_stream(2, seed=23)
    worker = ThreadWorker(rig.spec(snapshot_every=0))
    feed(rig, commands[:1], len(reference_output(commands[:1])[1]))
    wanted = rig.ctl.request_snapshot()
    feed(rig, commands, len(reference_output(commands)[1]))
    # the worker serves it between two slices, after a command or two
    assert wait_for(lambda: rig.ctl.snapshots_served == wanted)
    assert rig.ctl.snapshot_seq in (1, 2)
    assert stop(rig, worker) == EXIT_OK


def test_a_torn_tail_is_truncated_at_start_up(rig: ShardRig) -> None:
    commands = mixed_stream(3000, seed=24)
    engine, events, _ = reference_output(commands)
    worker = ThreadWorker(rig.spec())
    feed(rig, commands, len(events))
    assert stop(rig, worker) == EXIT_OK
    last = list_segments(rig.data_dir, SHARD)[-1].path
    size = last.stat().st_size
    with open(last, "ab") as f:
        f.write(b"\x5a" * (RECORD_SIZE + 17))  # a write the crash interrupted
    rig.ctl.clear_stop()
    worker = ThreadWorker(rig.spec())
    rig.collect(wait_s=0.0)
    assert stop(rig, worker) == EXIT_OK
    assert rig.ctl.truncated_bytes == RECORD_SIZE + 17
    assert last.stat().st_size == size
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()


def test_a_corrupt_journal_stops_start_up_with_exit_code_2(rig: ShardRig) -> None:
    commands = mixed_stream(3000, seed=25)
    _, events, _ = reference_output(commands)
    worker = ThreadWorker(rig.spec(snapshot_every=0))
    feed(rig, commands, len(events))
    # a kill -9: nothing final is written, the journal is all there is past seq 0
    rig.ctl.request_stop()
    rig.wake()
    assert worker.join() == EXIT_OK
    for snap in list_snapshots(rig.data_dir, SHARD)[1:]:
        snap.path.unlink()
    segment = list_segments(rig.data_dir, SHARD)[0].path
    bad = HEADER_SIZE + 1000 * RECORD_SIZE
    data = bytearray(segment.read_bytes())
    data[bad + 33] ^= 0x01
    segment.write_bytes(bytes(data))
    rig.ctl.clear_stop()
    assert run_worker(rig.spec()) == EXIT_FAILURE
    assert rig.ctl.state == WorkerState.FAILED
    assert rig.ctl.exit_code == EXIT_FAILURE
    assert str(segment) in rig.ctl.error
    assert f"offset {bad}" in rig.ctl.error


def test_a_missing_ring_is_a_user_error(rig: ShardRig) -> None:
    spec = rig.spec(events=rig.owned[1].name + "-nope")
    assert run_worker(spec) == EXIT_USER_ERROR
    assert rig.ctl.state == WorkerState.FAILED
    assert "does not exist" in rig.ctl.error


def test_the_spec_travels_as_json(rig: ShardRig) -> None:
    spec = rig.spec(core=0, durability="fsync")
    assert msgspec.json.decode(spec_json(spec), type=WorkerSpec) == spec
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"instance": "x", "bogus": 1}', type=WorkerSpec)


def test_a_control_block_refuses_other_segments(rig: ShardRig) -> None:
    with pytest.raises(RingAttachError, match="not a worker control block"):
        WorkerControl.attach(rig.owned[0].name)
    ctl = WorkerControl.attach(rig.ctl.name)
    try:
        assert ctl.shard_id == SHARD
        assert ctl.state == WorkerState.EMPTY
        assert ctl.snapshot().error == ""
        ctl.set_state(WorkerState.RUNNING)  # as a worker that then died would leave it
        rig.ctl.prepare_spawn()
        assert (ctl.state, ctl.pid, ctl.heartbeat_ns) == (WorkerState.EMPTY, 0, 0)
    finally:
        ctl.close()


@pytest.mark.multiprocess
def test_sigterm_stops_the_worker_process_cleanly(rig: ShardRig, children: Children) -> None:
    commands = mixed_stream(500, seed=26)
    _, events, _ = reference_output(commands)
    proc = children.start(worker_child, spec_json(rig.spec()))
    feed(rig, commands, len(events))  # it runs: its events came back
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(JOIN_S)
    assert proc.exitcode == EXIT_OK
    assert rig.ctl.state == WorkerState.STOPPED
    assert rig.ctl.stop_requested == 0  # the next worker must not inherit the stop
    assert rig.ctl.snapshot_seq == 500
    assert Path(rig.data_dir).is_dir()
