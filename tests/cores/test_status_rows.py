"""`tradsys status`'s row for a shard: a worker being replaced reads "restarting" from its
reap until its successor has recovered, and a missing heartbeat is "-", not "nanms"."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from tests.engine_toml import one_shard_instance
from tradsys.config import parse_config
from tradsys.cores.control import WorkerState
from tradsys.cores.gateway import stats_path
from tradsys.cores.status import _sessions_line, shard_row_state

NOW = 10_000_000_000


def snap(pid: int, state: WorkerState, heartbeat_ns: int = 0) -> SimpleNamespace:
    return SimpleNamespace(pid=pid, state=state, heartbeat_ns=heartbeat_ns)


def test_a_running_worker_shows_its_pid_state_and_heartbeat_age() -> None:
    row = shard_row_state({"pid": 41, "restarts": 0}, snap(41, WorkerState.RUNNING, NOW - 5e6), NOW)
    assert row == ("41", "running", "5ms")


def test_reaped_and_not_yet_restarted_is_restarting() -> None:
    row = shard_row_state({"pid": None, "restarts": 1}, snap(41, WorkerState.RUNNING, NOW), NOW)
    assert row[:2] == ("-", "restarting")


def test_a_successor_not_yet_recovered_is_restarting_with_no_heartbeat() -> None:
    """Before, its fresh control block read `pid 0 ... empty ... nanms`."""
    fresh = shard_row_state({"pid": 52, "restarts": 1}, snap(0, WorkerState.EMPTY), NOW)
    assert fresh == ("-", "restarting", "-")
    replaying = shard_row_state({"pid": 52, "restarts": 1}, snap(52, WorkerState.RECOVERING), NOW)
    assert replaying == ("52", "restarting", "-")


def test_the_first_start_says_what_it_is_doing() -> None:
    row = shard_row_state({"pid": 52, "restarts": 0}, snap(52, WorkerState.RECOVERING), NOW)
    assert row == ("52", "recovering", "-")


def test_the_gateway_line_names_the_shards_it_answers_for(tmp_path: Path) -> None:
    """A shard the gateway marked down (its worker down or hung) is said beside the
    sessions: the shard's own row may still read "running" from a hung worker."""
    config = parse_config(one_shard_instance("rows", tmp_path), "t")
    config.instance_dir.mkdir(parents=True)
    doc = {"pid": 77, "sessions": 2, "colocated_connections": 1, "tcp_connections": 1}
    doc |= {"core": {"live_orders": 3}, "shards_down": [1]}
    stats_path(config).write_text(json.dumps(doc))
    assert _sessions_line(config, 77) == [
        "gateway sessions: 2 (1 colocated, 1 TCP), 3 live order(s); "
        "shard(s) 1 down: SHARD_UNAVAILABLE"
    ]
    assert _sessions_line(config, 78) == []  # a dead predecessor's file is not the present
