"""`tradsys run` end to end: started from the CLI in a subprocess, traded through its
rings, stopped with SIGTERM — nothing left in /dev/shm, no process left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests.cores.run_instance import RunningInstance
from tradsys import wire
from tradsys.journal import replay
from tradsys.logs import parse_logfmt
from tradsys.matching import CEngine
from tradsys.matching.commands import batch, new_order
from tradsys.ring import Ring, WaitStrategy, instance_segments, segment_name

pytestmark = pytest.mark.multiprocess

CONFIG = """
[engine]
instance = "{instance}"
data_dir = "{data_dir}"
wait = "spin-park"
ring_capacity = 1024

[journal]
durability = "{durability}"

# this test is the rings' producer and consumer itself: no gateway, no md sidecar
[gateway]
enabled = false

[md]
enabled = false
external_reader = {md_reader}

[[shard]]
id = 0
symbols = ["ACME"]

[[shard]]
id = 1

[[instrument]]
symbol = "ACME"
symbol_id = 1
reference_price = 100

[[instrument]]
symbol = "ZETA"
symbol_id = 2
reference_price = 100
"""

LAYOUT = {"slot_size": wire.RECORD_SIZE, "layout_version": wire.LAYOUT_VERSION}


@pytest.fixture
def run_instance(instance: str, tmp_path: Path) -> Iterator[tuple[RunningInstance, Path]]:
    made: list[RunningInstance] = []

    def start(durability: str = "group", md_reader: bool = True) -> tuple[RunningInstance, Path]:
        data = tmp_path / "var"
        config = tmp_path / "tradsys.toml"
        reader = "true" if md_reader else "false"
        text = CONFIG.format(
            instance=instance, data_dir=data, durability=durability, md_reader=reader
        )
        config.write_text(text)
        inst = RunningInstance(config)
        made.append(inst)
        return inst, data

    yield start  # type: ignore[misc]
    for inst in made:
        inst.kill_all()


def attach(instance: str, shard: int) -> tuple[Ring, Ring, Ring]:
    cmd = Ring.attach(segment_name(instance, "cmd", shard), role="producer", **LAYOUT)
    evt = Ring.attach(segment_name(instance, "evt", shard), role="consumer", **LAYOUT)
    md = Ring.attach(segment_name(instance, "md", shard), role="consumer", **LAYOUT)
    return cmd, evt, md


def collect(ring: Ring, dtype: np.dtype, count: int, timeout: float = 30.0) -> np.ndarray:
    """Exactly ``count`` records from a ring, waiting on the ring itself."""
    out = np.zeros(count, dtype)
    got = 0
    deadline = time.monotonic() + timeout
    while got < count and time.monotonic() < deadline:
        got += ring.pop_wait(out[got:], WaitStrategy.spin_park(), timeout=1.0)
    assert got == count, f"expected {count} records from {ring.name}, got {got}"
    return out


@pytest.mark.parametrize("durability", ["none", "group", "fsync"])
def test_trade_through_a_running_instance_then_stop_cleanly(
    run_instance, instance: str, durability: str
) -> None:
    inst, data = run_instance(durability)
    inst.wait_for("ready;")
    pids = [p.pid for p in psutil.Process(inst.proc.pid).children(recursive=True)]
    assert len(pids) == 2, "one worker per shard"

    orders = batch(
        new_order(1, 1, account_id=7, side=wire.Side.SELL, quantity=10, price=101),
        new_order(2, 1, account_id=8, side=wire.Side.BUY, quantity=4, price=102),
    )
    expected = CEngine()
    for ins in ("ACME",):
        from tradsys.config import load_config

        cfg = load_config(data.parent / "tradsys.toml")
        for i in cfg.instruments:
            if i.symbol == ins:
                expected.add_instrument(i)
    want = expected.process(orders)

    cmd, evt, md = attach(instance, 0)
    try:
        assert cmd.push_all(orders, timeout=10.0) == len(orders)
        events = collect(evt, wire.EVENT_DTYPE, len(want.events))
        assert events.tobytes() == want.events.tobytes()
        trades = events[events["kind"] == wire.EventKind.TRADE]
        assert trades["quantity"].tolist() == [4, 4] and trades["price"].tolist() == [101, 101]
        collect(md, wire.MD_DTYPE, len(want.md))
    finally:
        for ring in (cmd, evt, md):
            ring.close()

    assert inst.stop() == 0, "".join(inst.lines)
    assert "stopped cleanly" in "".join(inst.lines)
    assert instance_segments(instance) == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    # structured logs: every log line names its process, a worker's its shard too
    logged = [parse_logfmt(line.strip()) for line in inst.lines if line.startswith("ts=")]
    assert {entry["proc"] for entry in logged} == {"supervisor", "worker"}
    assert {entry["shard"] for entry in logged if entry["proc"] == "worker"} == {"0", "1"}
    # what was acknowledged is in the journal: an offline replay rebuilds the same book
    assert replay(data / instance / "shard-0", 0).digest() == expected.digest()


def test_with_no_md_reader_the_worker_drops_market_data_and_keeps_trading(
    run_instance, instance: str
) -> None:
    """[md] enabled = false and no external reader: nobody drains the md ring, so the
    worker must not wait for room in it. Buys that rest at one price, each changing the
    level and the best bid (an L2 update and a BBO), make ten times the ring's 1 024
    slots of market data; before, the worker stopped at the first full md ring and
    answered nothing more."""
    inst, _ = run_instance(md_reader=False)
    inst.wait_for("ready;")
    cmd, evt, md = attach(instance, 0)
    n = 5 * 1024
    try:
        orders = batch(*[new_order(i, 1, 7, wire.Side.BUY, 1, 99) for i in range(1, n + 1)])
        sent = 0
        events = []
        deadline = time.monotonic() + 60
        while sent < n or sum(map(len, events)) < n:
            assert time.monotonic() < deadline, f"{sum(map(len, events))} of {n} answered"
            sent += cmd.push_batch(orders[sent:])
            out = np.zeros(1024, wire.EVENT_DTYPE)
            got = evt.pop_wait(out, WaitStrategy.spin_park(), timeout=0.1)
            events.append(out[:got])
        answered = np.concatenate(events)
        assert (answered["kind"] == wire.EventKind.ACCEPTED).all()
        assert md.readable == 0 and md.info().head == 0  # nothing was pushed to it
    finally:
        for ring in (cmd, evt, md):
            ring.close()
    assert inst.stop() == 0, "".join(inst.lines)


def test_a_bad_config_starts_nothing(instance: str, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        CONFIG.format(instance=instance, data_dir=tmp_path, durability="group", md_reader="true")
        + "[[shard]]\nid = 2\nsymbols = ['ACME']\ncore = 4096\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tradsys.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "symbol 'ACME' is on two shards" in proc.stderr
    assert "core 4096 does not exist" in proc.stderr
    assert str(config) in proc.stderr
    assert instance_segments(instance) == []


def test_a_data_dir_that_is_a_file_is_named_and_starts_nothing(
    instance: str, tmp_path: Path
) -> None:
    """Before, each worker failed to journal and the run ended in an internal error."""
    config = tmp_path / "file.toml"
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    config.write_text(
        CONFIG.format(instance=instance, data_dir=not_a_dir, durability="group", md_reader="true")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tradsys.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"engine.data_dir = '{not_a_dir}': cannot make the instance's directory" in proc.stderr
    assert "Not a directory" in proc.stderr and "internal error" not in proc.stderr
    assert "worker pid" not in proc.stderr  # nothing was started
    assert instance_segments(instance) == []


def test_a_second_run_of_the_same_instance_is_refused(run_instance, instance: str) -> None:
    inst, _ = run_instance()
    inst.wait_for("ready;")
    second, _ = run_instance()
    assert second.proc.wait(timeout=60) == 1
    assert "already running" in second.rest()
    assert inst.proc.poll() is None, "the first instance must be untouched"
    assert inst.stop() == 0
    assert instance_segments(instance) == []


def test_a_killed_worker_is_restarted_from_its_journal(run_instance, instance: str) -> None:
    inst, _ = run_instance()
    inst.wait_for("ready;")
    cmd, evt, md = attach(instance, 0)
    try:
        first = batch(*[new_order(i, 1, 7, wire.Side.SELL, 1, 100 + i) for i in range(1, 6)])
        cmd.push_all(first, timeout=10.0)
        collect(evt, wire.EVENT_DTYPE, 5)
        collect(md, wire.MD_DTYPE, 6)  # an L2 update per order, one BBO (the first sets it)
        worker = next(
            p for p in psutil.Process(inst.proc.pid).children(recursive=True) if _shard_of(p) == "0"
        )
        os.kill(worker.pid, signal.SIGKILL)
        inst.wait_for("restarting from its journal")
        inst.wait_for("recovered at seq 5")
        # the restarted worker has the book: this buy trades with order 1 at 101
        cmd.push_all(batch(new_order(6, 1, 8, wire.Side.BUY, 1, 101)), timeout=10.0)
        events = collect(evt, wire.EVENT_DTYPE, 3)
        assert events["kind"].tolist() == [
            wire.EventKind.ACCEPTED,
            wire.EventKind.TRADE,
            wire.EventKind.TRADE,
        ]
        assert events["contra_order_id"][1] == 1 and events["price"][1] == 101
    finally:
        for ring in (cmd, evt, md):
            ring.close()
    assert inst.stop() == 0
    assert instance_segments(instance) == []


def _shard_of(proc: psutil.Process) -> str:
    """The shard id a worker process was started for, from its command line (the path
    of its spec file, ``.../worker-<shard>.spec.json``)."""
    match = re.search(r"/worker-(\d+)\.spec\.json$", " ".join(proc.cmdline()))
    return match.group(1) if match else ""


def test_status_and_replay_commands(run_instance, instance: str, tmp_path: Path) -> None:
    inst, data = run_instance()
    inst.wait_for("ready;")
    config = str(tmp_path / "tradsys.toml")
    cli = [sys.executable, "-m", "tradsys.cli"]
    status = subprocess.run(
        [*cli, "status", "--config", config, "--interval", "0.05"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    rows = [line.split() for line in status.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == ["0", "1"] and all(r[3] == "running" for r in rows)

    cmd, evt, md = attach(instance, 0)
    try:
        orders = batch(*[new_order(i, 1, 7, wire.Side.BUY, 1, 90 + i) for i in range(1, 4)])
        cmd.push_all(orders, timeout=10.0)
        collect(evt, wire.EVENT_DTYPE, 3)
    finally:
        for ring in (cmd, evt, md):
            ring.close()
    assert inst.stop() == 0

    gone = subprocess.run([*cli, "status", "--config", config], capture_output=True, text=True)
    assert gone.returncode == 1 and "is not running" in gone.stderr
    shard_dir = str(data / instance / "shard-0")

    def replay(*upto: str) -> str:
        done = subprocess.run([*cli, "replay", shard_dir, *upto], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert replay().startswith("shard 0 at seq 3: 3 live orders, digest ")
    assert replay("--upto", "2").startswith("shard 0 at seq 2: 2 live orders, digest ")
    # past the journal's end: said, not passed off as the state at 99
    past = replay("--upto", "99")
    assert past.startswith("shard 0 at seq 3 (the journal ends there, short of --upto 99): 3 ")
