"""Crash recovery under load: the shard worker is killed with SIGKILL at seeded random
points while the test streams commands into it; the test, acting as the supervisor,
starts a new worker on the same rings and control block each time.

At the end, however the kills fell: every command the test pushed was journaled exactly
once and matched in order (the books equal a reference engine fed every command), and
the events and market data the test received across all incarnations are exactly the
reference's — no gap, no duplicate, exec ids 1, 2, 3, ... So every order the test saw
acknowledged (ACCEPTED) is in the final books or has a later terminal event.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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
from tradsys.cores.control import WorkerState
from tradsys.journal import SnapshotStore, replay
from tradsys.matching.reference_snapshot import decode
from tradsys.matching.workload import mixed_stream
from tradsys.wire import EventFlag, EventKind

pytestmark = pytest.mark.multiprocess

SEED = 20240611
KILLS = 20
COMMANDS = 60_000
JOIN_S = 30.0


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[ShardRig]:
    yield from shard_rig(instance, tmp_path)


def _stream_until(
    rig: ShardRig,
    commands: np.ndarray,
    state: dict[str, int],
    events: int,
    proc_alive: Callable[[], bool],
    rng: random.Random,
) -> None:
    """Push commands in random-size chunks and collect output until the test has seen
    ``events`` events (or all of them)."""
    deadline = time.monotonic() + JOIN_S
    while state["events"] < events:
        assert time.monotonic() < deadline, f"stuck at {state['events']} events"
        if state["pushed"] < len(commands):
            chunk = rng.randint(1, 700)
            state["pushed"] += rig.push(commands[state["pushed"] : state["pushed"] + chunk])
        rig.collect(wait_s=0.002)
        state["events"] = rig.n_events
        assert proc_alive(), "the worker exited on its own"


@pytest.mark.parametrize("durability", ["group", "none"])
def test_kill_9_at_random_points_loses_and_repeats_nothing(
    rig: ShardRig, children: Children, durability: str
) -> None:
    rng = random.Random(f"{SEED}-{durability}")
    commands = mixed_stream(COMMANDS, seed=SEED)
    engine, events, md = reference_output(commands)
    spec = spec_json(
        rig.spec(
            durability=durability,
            snapshot_every=2_500,
            segment_bytes=256 << 10,
            wait="spin-yield",
        )
    )
    state = {"pushed": 0, "events": 0}
    started = time.monotonic()
    for _ in range(KILLS):
        proc = children.start(worker_child, spec)
        # where to kill: at once (during start-up or recovery), soon, or well into it
        more = rng.choice([0, rng.randint(1, 400), rng.randint(400, 6000)])
        target = min(len(events), state["events"] + more)
        _stream_until(rig, commands, state, target, lambda p=proc: p.exitcode is None, rng)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(JOIN_S)
        assert proc.exitcode == -signal.SIGKILL
    proc = children.start(worker_child, spec)
    _stream_until(rig, commands, state, len(events), lambda: proc.exitcode is None, rng)
    rig.ctl.request_stop()
    rig.wake()
    proc.join(JOIN_S)
    assert proc.exitcode == 0
    assert rig.ctl.state == WorkerState.STOPPED
    rig.collect()
    elapsed = time.monotonic() - started

    # every command journaled exactly once, in order: the books are the reference's
    assert state["pushed"] == COMMANDS
    assert rig.ctl.journaled_seq == COMMANDS
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()
    final = SnapshotStore(rig.data_dir, SHARD).load_newest_valid()
    assert final is not None and final.seq == COMMANDS
    assert final.engine.digest() == engine.digest()

    # exactly-once output across every restart
    got = rig.received_events()
    assert got["exec_id"].tolist() == list(range(1, len(events) + 1))
    assert got.tobytes() == events.tobytes()
    assert rig.received_md().tobytes() == md.tobytes()

    # every acknowledged order is in the final books or has a later terminal event
    accepted = set(got["order_id"][got["kind"] == EventKind.ACCEPTED].tolist())
    terminal = (got["kind"] == EventKind.CANCELLED) | (
        (got["kind"] == EventKind.TRADE) & ((got["flags"] & EventFlag.DONE) != 0)
    )
    finished = set(got["order_id"][terminal].tolist())
    live = {o.order_id for sym in decode(final.engine.snapshot()).symbols for o in sym.orders}
    assert accepted <= finished | live
    assert elapsed < 60, f"the crash test took {elapsed:.0f} s"
