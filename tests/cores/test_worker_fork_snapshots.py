"""Fork-mode snapshots (``[journal] snapshot_writer = "fork"``): a child forked at the batch
boundary serializes the books and writes the file while the worker keeps matching.

Held deterministically with the worker's test hook (``HOLD_CHILD_ENV``: the child waits
after its walk while a file exists), never with sleeps: while the child is held the
worker must go on matching, and nothing is written; released, the writer thread writes the
file from the child's buffer and publishes it through the same gates as a background one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Children
from tests.cores.test_housekeeping import mask
from tests.cores.test_worker import JOIN_S, ThreadWorker, stop, wait_for
from tests.cores.test_worker_snapshots import push_all, snapshot_seqs, tmp_files
from tests.cores.worker_rig import (
    SHARD,
    ShardRig,
    reference_output,
    shard_rig,
    spec_json,
    worker_child,
)
from tradsys.config import ConfigError, JournalSection, available_cores, parse_config
from tradsys.cores.control import WorkerState
from tradsys.cores.worker import EXIT_OK, FAIL_CHILD_ENV, HOLD_CHILD_ENV, WorkerSpec
from tradsys.journal import SnapshotStore, replay
from tradsys.journal.recovery import replay_tail, start_state
from tradsys.matching.workload import mixed_stream, sample_instruments

EVERY = 1000
HELD_GROUP_US = 30_000_000
_examples = itertools.count()


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[ShardRig]:
    yield from shard_rig(instance, tmp_path)


@pytest.fixture
def hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The hold file, made: fork-mode children of workers started from now wait on it.
    Removed at the end, also after a failure, so that no held child outlives the test."""
    path = tmp_path / "hold-snapshot-child"
    path.touch()
    monkeypatch.setenv(HOLD_CHILD_ENV, str(path))
    yield path
    path.unlink(missing_ok=True)


def fork_spec(rig: ShardRig, **overrides: object) -> WorkerSpec:
    # the test books are small: fork for every snapshot, whatever its size
    fields: dict[str, object] = {
        "snapshot_writer": "fork",
        "snapshot_every": EVERY,
        "fork_min_bytes": 0,
    }
    fields.update(overrides)
    return rig.spec(**fields)


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields (the comm field removed), or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return text[text.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """Running, not a zombie (state is stat field 3; [0] once the comm is cut)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def payload(path: Path) -> bytes:
    """A snapshot file's engine bytes (after its 64-byte header)."""
    return path.read_bytes()[64:]


def stop_process(rig: ShardRig, proc: Any) -> int | None:
    """Stop a worker child process as the supervisor does; its exit code."""
    rig.ctl.request_stop()
    rig.wake()
    proc.join(JOIN_S)
    rig.collect()
    code: int | None = proc.exitcode
    return code


def test_the_worker_keeps_matching_while_its_child_is_held(
    rig: ShardRig, children: Children, hold: Path
) -> None:
    cores = sorted(available_cores())
    commands = mixed_stream(4000, seed=61)
    engine, events, _ = reference_output(commands)
    # pinned to the last core, housekeeping on the others (one core: beside it)
    spec = fork_spec(rig, durability="fsync", core=cores[-1], housekeeping_cpus=cores[:-1] or cores)
    proc = children.start(worker_child, spec_json(spec))
    push_all(rig, commands[:1100], 1100)
    ctl = rig.ctl
    assert wait_for(lambda: ctl.cdata.snapshot_child_pid != 0)
    child = int(ctl.cdata.snapshot_child_pid)
    assert ctl.cdata.snapshot_fork_ns > 0
    # the child left the worker's core and priority behind
    assert mask(Path(f"/proc/{child}/status")) == set(cores[:-1] or cores)
    stat = proc_stat(child)
    assert stat is not None and proc.pid is not None
    parent = proc_stat(proc.pid)
    assert parent is not None
    if len(cores) > 1:  # on housekeeping cores: batch, and nicer than the worker
        assert int(stat[16]) == min(int(parent[16]) + 10, 19)  # nice: stat field 19
        assert int(stat[38]) == 3  # policy: SCHED_BATCH
    else:  # one core: it shares the worker's, idle-only (test_background_sched_idle.py)
        assert int(stat[38]) == 5  # policy: SCHED_IDLE
    # held: the worker matches 2900 more commands; nothing becomes visible meanwhile
    push_all(rig, commands[1100:], 4000)
    assert ctl.cdata.snapshot_child_pid == child and alive(child)
    assert ctl.snapshots_taken == 1  # recovery's, at seq 0
    assert snapshot_seqs(rig) == [0] and tmp_files(rig) == []
    # released: published, and the child reaped by the worker (not a zombie)
    hold.unlink()
    assert wait_for(lambda: len(snapshot_seqs(rig)) > 1)
    held_seq = snapshot_seqs(rig)[1]
    assert EVERY <= held_seq < 1100
    assert wait_for(lambda: proc_stat(child) is None or not alive(child))
    assert wait_for(lambda: ctl.cdata.snapshot_child_pid == 0 or ctl.snapshot_seq > held_seq)
    assert proc_stat(child) is None  # reaped: no zombie left
    # and once it was gone, the writer put the engine's blocks back on huge pages
    assert wait_for(lambda: ctl.cdata.snapshot_collapse_ns > 0)
    at_held, _, _ = reference_output(commands[:held_seq])
    store = SnapshotStore(rig.data_dir, SHARD)
    assert payload(store.path_for(held_seq)) == at_held.snapshot()
    assert stop_process(rig, proc) == EXIT_OK
    assert tmp_files(rig) == []
    rig.collect()
    assert rig.received_events().tobytes() == events.tobytes()
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()


def test_a_failing_child_is_an_error_result_and_the_next_snapshot_works(
    rig: ShardRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAIL_CHILD_ENV, "1")
    commands = mixed_stream(600, seed=62)
    worker = ThreadWorker(fork_spec(rig, durability="fsync", snapshot_every=0))
    push_all(rig, commands[:300], 300)
    wanted = rig.ctl.request_snapshot()
    # the first child exits non-zero: counted, named, its .tmp removed; the request is
    # served by the next child, which works
    assert wait_for(lambda: rig.ctl.snapshots_served == wanted)
    ctl = rig.ctl
    assert ctl.cdata.snapshots_failed == 1
    assert "ended without finishing it (exit status 4)" in ctl.error
    assert "snapshot-000-00000000000000000300.tss.tmp" in ctl.error
    assert ctl.state == WorkerState.RUNNING
    assert ctl.snapshot_seq == 300
    assert snapshot_seqs(rig) == [0, 300]
    assert tmp_files(rig) == []
    at_300, _, _ = reference_output(commands[:300])
    assert payload(SnapshotStore(rig.data_dir, SHARD).path_for(300)) == at_300.snapshot()
    push_all(rig, commands[300:], 600)
    assert stop(rig, worker) == EXIT_OK
    assert ctl.cdata.snapshot_child_pid == 0


def test_a_stop_waits_for_a_held_child(rig: ShardRig, hold: Path) -> None:
    commands = mixed_stream(1500, seed=63)
    engine, events, _ = reference_output(commands)
    worker = ThreadWorker(fork_spec(rig, durability="group"))
    push_all(rig, commands, 1500)
    ctl = rig.ctl
    assert wait_for(lambda: ctl.cdata.snapshot_child_pid != 0)
    child = int(ctl.cdata.snapshot_child_pid)
    ctl.request_stop()
    rig.wake()
    assert wait_for(lambda: ctl.state == WorkerState.STOPPING)
    # the stop waits for the child (it is this process's child: still running)
    assert alive(child) and worker.thread.is_alive()
    hold.unlink()
    assert worker.join() == EXIT_OK
    assert proc_stat(child) is None  # reaped
    seqs = snapshot_seqs(rig)
    assert seqs[-1] == 1500 and len(seqs) == 2 and EVERY <= seqs[0] < 1500
    rig.collect()
    assert rig.received_events().tobytes() == events.tobytes()
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()


@pytest.mark.multiprocess
def test_kill_9_while_a_child_serializes(rig: ShardRig, children: Children, hold: Path) -> None:
    commands = mixed_stream(3000, seed=64)
    engine, events, _ = reference_output(commands)
    proc = children.start(worker_child, spec_json(fork_spec(rig, durability="fsync")))
    push_all(rig, commands[:1500], 1500)
    assert wait_for(lambda: rig.ctl.cdata.snapshot_child_pid != 0)
    child = int(rig.ctl.cdata.snapshot_child_pid)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(JOIN_S)
    assert proc.exitcode == -signal.SIGKILL
    # the child dies with its parent (PR_SET_PDEATHSIG), and it wrote nothing
    assert wait_for(lambda: not alive(child))
    assert snapshot_seqs(rig) == [0] and tmp_files(rig) == []
    hold.unlink()
    rig.ctl.prepare_spawn()
    worker = ThreadWorker(fork_spec(rig, durability="fsync"))
    push_all(rig, commands[1500:], 3000)
    assert rig.ctl.recovered_from_seq == 0
    assert stop(rig, worker) == EXIT_OK
    rig.collect()
    assert rig.received_events().tobytes() == events.tobytes()
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()


@pytest.mark.multiprocess
def test_kill_9_while_the_writer_waits_leaves_a_tmp_recovery_ignores(
    rig: ShardRig, children: Children
) -> None:
    """The child is done, the writer has written the .tmp from its buffer and waits for
    the journal (GROUP with a 30 s interval: synced once, then not until a quiesce)."""
    commands = mixed_stream(4000, seed=66)
    engine, events, _ = reference_output(commands)
    spec = fork_spec(rig, durability="group", group_commit_us=HELD_GROUP_US)
    proc = children.start(worker_child, spec_json(spec))
    rig.push(commands[:1])
    assert wait_for(lambda: rig.ctl.synced_seq == 1)
    push_all(rig, commands[1:2500], 2500)
    # the pid is cleared as the writer reaps the child, also while the worker idles
    assert wait_for(lambda: len(tmp_files(rig)) == 1 and rig.ctl.cdata.snapshot_child_pid == 0)
    assert rig.ctl.cdata.snapshot_fork_ns > 0  # a child serialized it
    [left] = tmp_files(rig)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(JOIN_S)
    assert proc.exitcode == -signal.SIGKILL
    assert left.exists() and snapshot_seqs(rig) == [0]
    # recovery ignores the .tmp; the next incarnation's snapshot prunes it
    assert start_state(rig.data_dir, SHARD, sample_instruments()).snapshot_seq == 0
    rig.ctl.prepare_spawn()
    worker = ThreadWorker(fork_spec(rig, durability="fsync"))
    push_all(rig, commands[2500:], 4000)
    assert rig.ctl.recovered_from_seq == 0
    assert wait_for(lambda: not left.exists())
    assert stop(rig, worker) == EXIT_OK
    assert tmp_files(rig) == []
    rig.collect()
    assert rig.received_events().tobytes() == events.tobytes()
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    n=st.integers(min_value=800, max_value=2500),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    every=st.integers(min_value=100, max_value=700),
)
def test_fork_snapshots_are_the_inline_bytes_and_recover_the_same_books(
    instance: str, tmp_path: Path, n: int, seed: int, every: int
) -> None:
    """Every fork snapshot's payload is the canonical snapshot of an engine fed the same
    commands (what the inline path writes), and recovering from it (snapshot + journal
    tail) gives the books of the whole stream."""
    k = next(_examples)
    with contextlib.contextmanager(shard_rig)(f"{instance}h{k}", tmp_path / f"ex{k}") as shard:
        commands = mixed_stream(n, seed=seed)
        engine, _, _ = reference_output(commands)
        worker = ThreadWorker(fork_spec(shard, durability="fsync", snapshot_every=every))
        push_all(shard, commands, n)
        # at least one periodic snapshot was due (n > every): wait for it to be visible
        ctl = shard.ctl
        assert wait_for(lambda: ctl.snapshot_seq >= every)
        assert stop(shard, worker) == EXIT_OK
        assert shard.ctl.cdata.snapshots_failed == 0
        # pruning kept the newest periodic (fork) snapshot and the stop's (inline, at n,
        # unless the fork one was at n already)
        seqs = [s for s in snapshot_seqs(shard) if s > 0]
        assert seqs and seqs[0] >= every
        store = SnapshotStore(shard.data_dir, SHARD)
        for seq in seqs:
            at, _, _ = reference_output(commands[:seq])
            assert payload(store.path_for(seq)) == at.snapshot()
            state = start_state(shard.data_dir, SHARD, sample_instruments(), upto=seq)
            assert state.snapshot_seq == seq
            replay_tail(shard.data_dir, SHARD, state.engine, seq)
            assert state.engine.digest() == engine.digest()


def test_a_small_book_is_serialized_on_the_workers_thread(rig: ShardRig) -> None:
    """Under fork_min_bytes (the default 1 MiB) fork() would cost more than the walk."""
    commands = mixed_stream(300, seed=65)
    spec = rig.spec(snapshot_writer="fork", durability="fsync", snapshot_every=0)
    assert spec.fork_min_bytes == 1 << 20
    worker = ThreadWorker(spec)
    push_all(rig, commands, 300)
    wanted = rig.ctl.request_snapshot()
    assert wait_for(lambda: rig.ctl.snapshots_served == wanted)
    cdata = rig.ctl.cdata
    assert cdata.snapshot_serialize_ns > 0
    assert (cdata.snapshot_fork_ns, cdata.snapshot_child_ns, cdata.snapshot_collapse_ns) == (
        0,
        0,
        0,
    )
    at_300, _, _ = reference_output(commands)
    assert payload(SnapshotStore(rig.data_dir, SHARD).path_for(300)) == at_300.snapshot()
    assert stop(rig, worker) == EXIT_OK


def test_fork_is_the_default_writer() -> None:
    assert JournalSection().snapshot_writer == "fork"
    text = '[journal]\nsnapshot_writer = "forked"\n'
    with pytest.raises(ConfigError, match="snapshot_writer"):
        parse_config(text, "t.toml")
