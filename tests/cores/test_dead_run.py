"""What the next run reads of a run killed whole (``tradsys.cores.dead_run``) and how its
supervisor carries it into the new rings. The rings here are this process's own, named
as a dead run's would be: ``read_dead_run`` is told which names are stale, it does not
judge. The whole path, with real processes killed, is in ``test_supervisor_death.py``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.engine_toml import one_shard_instance
from tradsys import wire
from tradsys._native import lib
from tradsys.cli import main
from tradsys.config import parse_config
from tradsys.cores.control import WorkerControl
from tradsys.cores.dead_run import (
    DeadRun,
    ShardLeftovers,
    load_dead_run,
    orphaned_events,
    read_dead_run,
    save_dead_run,
)
from tradsys.cores.supervisor import Supervisor, SupervisorError
from tradsys.ring import Ring, instance_segments, segment_name


def _ring(instance: str, role: str, capacity: int = 64) -> Ring:
    return Ring.create(
        segment_name(instance, role, 0),
        slot_size=wire.RECORD_SIZE,
        capacity=capacity,
        layout_version=wire.LAYOUT_VERSION,
    )


def _events(exec_ids: range) -> np.ndarray:
    ev = np.zeros(len(exec_ids), dtype=wire.EVENT_DTYPE)
    ev["exec_id"] = list(exec_ids)
    ev["account_id"] = 1
    return ev


@pytest.fixture
def dead(instance: str) -> Iterator[tuple[Ring, Ring, WorkerControl]]:
    """A "dead run's" cmd and evt rings and control block of shard 0."""
    cmd, evt = _ring(instance, "cmd"), _ring(instance, "evt")
    control = WorkerControl.create(segment_name(instance, "ctl", 0))
    yield cmd, evt, control
    for seg in (cmd, evt, control):
        seg.close()


def _md(n: int) -> np.ndarray:
    out = np.zeros(n, dtype=wire.MD_DTYPE)
    out["seq"] = np.arange(1, n + 1)
    return out


def _stale(instance: str) -> list[str]:
    return [segment_name(instance, role, 0) for role in ("cmd", "evt", "md", "ctl")]


def test_the_unread_events_and_the_last_one_pushed_are_read(
    instance: str, dead: tuple[Ring, Ring, WorkerControl]
) -> None:
    _, evt, _ = dead
    assert evt.push_batch(_events(range(1, 41))) == 40
    taken = np.zeros(25, dtype=wire.EVENT_DTYPE)
    assert evt.pop_batch(taken) == 25  # the dead gateway took these
    run = read_dead_run(instance, _stale(instance), [0])
    assert run is not None
    left = run.shards[0]
    assert list(left.unread["exec_id"]) == list(range(26, 41))
    assert left.last_pushed_exec_id == 40
    assert evt.readable == 15  # only read: the segment is removed by the caller


def test_a_ring_read_to_the_end_still_names_the_last_event_pushed(
    instance: str, dead: tuple[Ring, Ring, WorkerControl]
) -> None:
    _, evt, _ = dead
    evt.push_batch(_events(range(7, 17)))
    evt.pop_batch(np.zeros(10, dtype=wire.EVENT_DTYPE))
    run = read_dead_run(instance, _stale(instance), [0])
    assert run is not None
    assert len(run.shards[0].unread) == 0
    assert run.shards[0].last_pushed_exec_id == 16


@pytest.mark.parametrize(
    ("base", "inherited", "floor"),
    [((1, 70), (0, 0), 70), ((0, 0), (1, 55), 55), ((0, 0), (0, 0), None)],
)
def test_a_ring_never_pushed_to_takes_the_floor_from_the_control_block(
    instance: str,
    dead: tuple[Ring, Ring, WorkerControl],
    base: tuple[int, int],
    inherited: tuple[int, int],
    floor: int | None,
) -> None:
    """Nothing pushed: where the dead run's own output began (its base), or what it had
    inherited from the run before it, or nothing known."""
    _, _, control = dead
    control.cdata.base_set, control.cdata.base_exec_id = base
    control.cdata.inherited_set, control.cdata.inherited_exec_id = inherited
    run = read_dead_run(instance, _stale(instance), [0])
    assert run is not None
    assert run.shards[0].last_pushed_exec_id == floor


@pytest.mark.parametrize(
    ("fields", "pushed"),
    [
        # a block whose worker recovered: its base plus the engine records in the ring
        ({"base_set": 1, "base_md": 100, "md_refresh_records": 2}, 100 + 10 - 2),
        # one that died recovering as a dead run's successor: what it inherited, plus
        # what it re-sent (the ring's records less the carried ones)
        (
            {"inherited_set": lib.TS_INHERITED_MD, "inherited_md": 50, "inherited_md_carried": 3},
            50 + 10 - 3,
        ),
        ({}, None),  # nothing known: no md is re-sent
    ],
)
def test_the_md_left_unpublished_and_the_count_pushed_are_read(
    instance: str,
    dead: tuple[Ring, Ring, WorkerControl],
    fields: dict[str, int],
    pushed: int | None,
) -> None:
    _, _, control = dead
    for name, value in fields.items():
        setattr(control.cdata, name, value)
    with _ring(instance, "md") as md:
        records = np.zeros(10, dtype=wire.MD_DTYPE)
        records["seq"] = np.arange(1, 11)
        md.push_batch(records)
        md.pop_batch(np.zeros(4, dtype=wire.MD_DTYPE))  # the md sidecar published these
        run = read_dead_run(instance, _stale(instance), [0])
    assert run is not None
    left = run.shards[0]
    assert list(left.md_unread["seq"]) == [5, 6, 7, 8, 9, 10]
    assert left.md_pushed == pushed


def test_no_stale_ring_of_a_shard_is_no_dead_run(
    instance: str, dead: tuple[Ring, Ring, WorkerControl]
) -> None:
    assert read_dead_run(instance, [], [0]) is None
    other = read_dead_run(instance, _stale(instance), [3])  # shard 0: not this config's
    assert other is not None and orphaned_events(other, [3]) == {}  # it left no event


def test_events_of_a_shard_no_longer_configured_refuse_the_start(
    instance: str, tmp_path: Path, dead: tuple[Ring, Ring, WorkerControl]
) -> None:
    """A run killed whole left shard 0's acks and fills untaken, and the next config has
    only shard 1: they were dropped unsaid with the stale rings. Now the start is refused,
    naming them, before anything is unlinked or written; the same config with shard 0
    back carries them."""
    _, evt, _ = dead
    assert evt.push_batch(_events(range(1, 8))) == 7
    run = read_dead_run(instance, _stale(instance), [1])
    assert run is not None and orphaned_events(run, [1]) == {0: 7}
    assert orphaned_events(run, [0, 1]) == {}
    toml = one_shard_instance(instance, tmp_path).replace("id = 0", "id = 1")
    config = parse_config(toml + "[gateway]\nenabled = false\n", "t")
    assert [s.id for s in config.shards] == [1]
    sup = Supervisor(config, log=lambda line: None)
    with pytest.raises(SupervisorError, match=r"shard 0: 7\).*reclaim --force"):
        sup._read_dead_run(_stale(instance))
    assert not sup._dead_run_file.exists()  # nothing written: the next start reads the rings
    assert evt.readable == 7


def test_what_a_smaller_ring_cannot_hold_is_left_to_the_worker_and_said(
    instance: str, tmp_path: Path
) -> None:
    """The config's ring_capacity was lowered between the runs: the oldest unread events
    go into the new ring, and the worker is told to re-send from the first that did not
    fit (those it replays: the ones after its snapshot)."""
    config = parse_config(
        one_shard_instance(instance, tmp_path).replace("ring_capacity = 1024", "ring_capacity = 64")
        + "[gateway]\nenabled = false\n",
        "t",
    )
    lines: list[str] = []
    sup = Supervisor(config, log=lines.append)
    try:
        sup.shards.append(sup._prepare(0, None))
        unread = _events(range(101, 201))
        sup._continue_dead_run(DeadRun({0: ShardLeftovers(0, unread, 200)}))
        evt = next(r for r in sup.rings if r.name == segment_name(instance, "evt", 0))
        out = np.zeros(100, dtype=wire.EVENT_DTYPE)
        assert evt.peek_batch(out) == 64
        assert list(out[:64]["exec_id"]) == list(range(101, 165))
        control = sup.shards[0].control
        assert (control.inherited_set, control.inherited_exec_id) == (1, 164)
        assert any("do not fit" in line and "36 event(s)" in line for line in lines), lines
    finally:
        sup.stop()


def test_everything_fits_and_the_floor_is_the_last_event_pushed(
    instance: str, tmp_path: Path
) -> None:
    config = parse_config(
        one_shard_instance(instance, tmp_path) + "[gateway]\nenabled = false\n", "t"
    )
    lines: list[str] = []
    sup = Supervisor(config, log=lines.append)
    try:
        sup.shards.append(sup._prepare(0, None))
        sup._continue_dead_run(DeadRun({0: ShardLeftovers(0, _events(range(5, 9)), 12)}))
        evt = next(r for r in sup.rings if r.name == segment_name(instance, "evt", 0))
        assert evt.readable == 4
        control = sup.shards[0].control
        assert (control.inherited_set, control.inherited_exec_id) == (1, 12)
        assert any("carried 4 event(s)" in line for line in lines), lines
    finally:
        sup.stop()


def test_the_leftovers_survive_a_file_round_trip(tmp_path: Path) -> None:
    dead = DeadRun(
        {
            0: ShardLeftovers(0, _events(range(4, 9)), 8, _md(2), 40),
            2: ShardLeftovers(2, _events(range(0)), None),
        },
    )
    path = tmp_path / "dead_run.npz"
    save_dead_run(dead, path)
    back = load_dead_run(path)
    assert back is not None and set(back.shards) == {0, 2}
    assert list(back.shards[0].md_unread["seq"]) == [1, 2]
    assert (back.shards[0].md_pushed, back.shards[2].md_pushed) == (40, None)
    assert list(back.shards[0].unread["exec_id"]) == [4, 5, 6, 7, 8]
    assert back.shards[0].unread.tobytes() == dead.shards[0].unread.tobytes()
    assert (back.shards[0].last_pushed_exec_id, back.shards[2].last_pushed_exec_id) == (8, None)
    assert load_dead_run(tmp_path / "none.npz") is None


def test_a_file_that_cannot_be_read_is_set_aside_not_a_failed_start(tmp_path: Path) -> None:
    path = tmp_path / "dead_run.npz"
    path.write_bytes(b"not a zip")
    assert load_dead_run(path) is None
    assert not path.exists() and (tmp_path / "dead_run.npz.bad").exists()


def test_a_run_that_died_while_continuing_another_keeps_what_it_never_carried() -> None:
    """Run B died while starting as A's successor: a shard B pushed nothing to and
    inherited nothing for keeps A's leftovers; one B knows supersedes A's."""
    older = DeadRun(
        {
            0: ShardLeftovers(0, _events(range(1, 4)), 3),
            1: ShardLeftovers(1, _events(range(5, 6)), 5),
        },
    )
    newer = DeadRun(
        {
            0: ShardLeftovers(0, _events(range(0)), None),
            1: ShardLeftovers(1, _events(range(5, 8)), 9),
        },
    )
    both = newer.after(older)
    assert both.shards[0] is older.shards[0]
    assert both.shards[1] is newer.shards[1]
    assert newer.after(None) is newer


def test_shm_reclaim_keeps_a_dead_run_that_left_events_unless_forced(
    instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tradsys shm reclaim` used to unlink a dead run's events ring with the events in
    it; the next `tradsys run` would have delivered them."""
    made_by_a_dead_process = f"""
import os, numpy as np
from tradsys import wire
from tradsys.ring import Ring, segment_name
ring = Ring.create(segment_name({instance!r}, "evt", 0), slot_size=wire.RECORD_SIZE,
                   capacity=64, layout_version=wire.LAYOUT_VERSION)
ring.push_batch(np.zeros(3, dtype=wire.EVENT_DTYPE))
os._exit(0)  # no close: the segment outlives its creator, as a SIGKILL leaves it
"""
    subprocess.run([sys.executable, "-c", made_by_a_dead_process], check=True, timeout=60)
    evt = segment_name(instance, "evt", 0)
    assert main(["shm", "reclaim", "--instance", instance]) == 0
    out, err = capsys.readouterr()
    assert f"kept the stale segments of instance {instance!r}" in err
    assert "left 3 record(s) unread" in err and "no stale segments removed" in out
    assert evt in instance_segments(instance)
    assert main(["shm", "reclaim", "--instance", instance, "--force"]) == 0
    assert f"removed stale segment {evt}" in capsys.readouterr().out
    assert instance_segments(instance) == []
