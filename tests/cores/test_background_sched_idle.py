"""A pinned worker's background work — the snapshot writer thread, its fork children and
the prune thread — runs on the housekeeping cores when there are any, and otherwise
shares the worker's core at SCHED_IDLE, so the worker preempts it whenever it has work.

Real worker processes, driven through their rings. The fork child is held with the
worker's test hook while its policy is read; every wait is on a condition with a
deadline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Children
from tests.cores.test_housekeeping import mask
from tests.cores.test_worker import wait_for
from tests.cores.test_worker_fork_snapshots import fork_spec, proc_stat, stop_process
from tests.cores.test_worker_snapshots import push_all, snapshot_seqs
from tests.cores.worker_rig import ShardRig, shard_rig, spec_json, worker_child
from tradsys.config import available_cores, housekeeping_cores, parse_config
from tradsys.cores.worker import (
    EXIT_OK,
    HOLD_CHILD_ENV,
    WorkerSpec,
    background_placement,
)
from tradsys.matching.workload import mixed_stream

SCHED_OTHER, SCHED_BATCH, SCHED_IDLE = os.SCHED_OTHER, os.SCHED_BATCH, os.SCHED_IDLE


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[ShardRig]:
    yield from shard_rig(instance, tmp_path)


@pytest.fixture
def hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Fork-mode children of workers started from now wait while this file exists;
    removed at the end, also after a failure, so no held child outlives the test."""
    path = tmp_path / "hold-snapshot-child"
    path.touch()
    monkeypatch.setenv(HOLD_CHILD_ENV, str(path))
    yield path
    path.unlink(missing_ok=True)


def config_cores(instance: str, data_dir: Path, shard_cores: list[int]) -> tuple[int, list[int]]:
    """Shard 0's core and its housekeeping cores, as the supervisor gives them, for a
    configuration that pins one shard to each of ``shard_cores`` (gateway and md off)."""
    shards = "".join(f"[[shard]]\nid = {i}\ncore = {c}\n" for i, c in enumerate(shard_cores))
    text = f"""
[engine]
instance = "{instance}"
data_dir = "{data_dir}"
[gateway]
enabled = false
[md]
enabled = false
{shards}
[[instrument]]
symbol = "ACME"
symbol_id = 1
reference_price = 100
"""
    config = parse_config(text, "t")
    core = config.shards[0].core
    assert core is not None
    return core, housekeeping_cores(config)


def thread_named(pid: int, name: str) -> int | None:
    """The id of the thread of ``pid`` whose OS name is ``name``, or None."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == name:
                return int(task.name)
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return None


def wait_thread(pid: int, name: str) -> int:
    found: list[int] = []

    def named() -> bool:
        tid = thread_named(pid, name)
        if tid is not None:
            found.append(tid)
        return tid is not None

    assert wait_for(named), f"no thread {name!r} in worker {pid}"
    return found[0]


def nice_of(pid: int) -> int:
    stat = proc_stat(pid)
    assert stat is not None
    return int(stat[16])  # stat field 19 once the comm is cut


class Seen:
    """What the background work of a running worker looks like while its child is held,
    and once a snapshot was published and pruned."""

    def __init__(self, rig: ShardRig, children: Children, hold: Path, spec: WorkerSpec) -> None:
        commands = mixed_stream(1100, seed=83)
        proc = children.start(worker_child, spec_json(spec))
        assert proc.pid is not None
        self.pid = proc.pid
        push_all(rig, commands, 1100)
        ctl = rig.ctl
        assert wait_for(lambda: ctl.cdata.snapshot_child_pid != 0)
        child = int(ctl.cdata.snapshot_child_pid)
        # the child steps aside itself, just after the fork: wait until it has
        assert wait_for(lambda: os.sched_getscheduler(child) != SCHED_OTHER)
        self.child_policy = os.sched_getscheduler(child)
        self.child_nice = nice_of(child)
        self.child_cpus = mask(Path(f"/proc/{child}/status"))
        self.writer = wait_thread(self.pid, "ts-snapwriter")
        self.main_policy = os.sched_getscheduler(self.pid)
        self.main_nice = nice_of(self.pid)
        self.main_cpus = mask(Path(f"/proc/{self.pid}/status"))
        # released: published, then the older snapshot (recovery's, at 0) pruned
        hold.unlink()
        assert wait_for(lambda: len(snapshot_seqs(rig)) == 1 and snapshot_seqs(rig)[0] > 0)
        self.pruner = wait_thread(self.pid, "ts-prune-0")
        self.writer_policy = os.sched_getscheduler(self.writer)
        self.pruner_policy = os.sched_getscheduler(self.pruner)
        self.writer_cpus = mask(Path(f"/proc/{self.pid}/task/{self.writer}/status"))
        self.pruner_cpus = mask(Path(f"/proc/{self.pid}/task/{self.pruner}/status"))
        assert stop_process(rig, proc) == EXIT_OK


def test_without_housekeeping_cores_background_work_shares_the_core_at_sched_idle(
    rig: ShardRig, children: Children, hold: Path, instance: str, tmp_path: Path
) -> None:
    cores = sorted(available_cores())
    # every core runs a shard: no housekeeping core is left; run shard 0's worker
    core, housekeeping = config_cores(instance, tmp_path, [cores[-1], *cores[:-1]])
    assert housekeeping == []
    spec = fork_spec(rig, core=core, housekeeping_cpus=housekeeping, keep_snapshots=1)
    seen = Seen(rig, children, hold, spec)
    assert seen.main_cpus == {core}
    assert seen.main_policy == SCHED_OTHER  # the loop's thread keeps its policy
    assert seen.writer_cpus == seen.pruner_cpus == seen.child_cpus == {core}
    assert seen.writer_policy == SCHED_IDLE
    assert seen.child_policy == SCHED_IDLE
    assert seen.child_nice == seen.main_nice  # no nice: SCHED_IDLE does not weigh it
    assert seen.pruner_policy == SCHED_IDLE


def test_with_housekeeping_cores_background_work_goes_there_at_its_usual_policy(
    rig: ShardRig, children: Children, hold: Path, instance: str, tmp_path: Path
) -> None:
    cores = sorted(available_cores())
    # only shard 0 is pinned (gateway and md off): the other cores are housekeeping
    core, housekeeping = config_cores(instance, tmp_path, [cores[-1]])
    assert housekeeping == cores[:-1]
    spec = fork_spec(rig, core=core, housekeeping_cpus=housekeeping, keep_snapshots=1)
    seen = Seen(rig, children, hold, spec)
    assert seen.main_cpus == {core}
    assert seen.main_policy == SCHED_OTHER
    if not housekeeping:  # a 1-CPU host: nowhere to go but beside the worker
        assert seen.writer_cpus == seen.pruner_cpus == seen.child_cpus == {core}
        assert seen.writer_policy == seen.child_policy == seen.pruner_policy == SCHED_IDLE
        return
    assert seen.writer_cpus == seen.pruner_cpus == seen.child_cpus == set(housekeeping)
    assert seen.writer_policy == SCHED_OTHER
    assert seen.child_policy == SCHED_BATCH
    assert seen.child_nice == min(seen.main_nice + 10, 19)
    assert seen.pruner_policy == SCHED_OTHER


def test_an_unpinned_workers_background_work_keeps_its_usual_policy(
    rig: ShardRig, children: Children, hold: Path
) -> None:
    spec = fork_spec(rig, core=None, housekeeping_cpus=[], keep_snapshots=1)
    seen = Seen(rig, children, hold, spec)
    assert seen.main_policy == seen.writer_policy == seen.pruner_policy == SCHED_OTHER
    assert seen.child_policy == SCHED_BATCH
    assert seen.child_nice == min(seen.main_nice + 10, 19)


@pytest.mark.parametrize(
    ("core", "housekeeping", "cpus", "idle", "line"),
    [
        (None, [], [], False, "shard 0: not pinned: background work"),
        (1, [], [], True, "shard 0: no housekeeping core: background work"),
        (1, [1], [], True, "shares core 1 at SCHED_IDLE"),
        (1, [0, 2], [0, 2], False, "(snapshot writer, fork children, pruning) on CPUs [0, 2]"),
    ],
)
def test_the_placement_and_its_log_line(
    rig: ShardRig,
    core: int | None,
    housekeeping: list[int],
    cpus: list[int],
    idle: bool,
    line: str,
) -> None:
    spec = rig.spec(core=core, housekeeping_cpus=housekeeping)
    placement = background_placement(spec)
    assert (placement.cpus, placement.idle) == (cpus, idle)
    assert line in placement.describe(spec)
