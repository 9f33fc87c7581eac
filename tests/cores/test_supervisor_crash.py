"""Crash recovery through the real supervisor: an in-process ``Supervisor`` runs two shard
workers and its ``watch()`` loop in a thread; the test plays the gateway of both shards
(producer of commands, consumer of events and market data) and streams a seeded mixed
stream into each while it SIGKILLs the workers at seeded random points — during start-up
or recovery, soon after, or well into the stream. The supervisor alone notices each death
and restarts the worker from its journal, with its back-off.

At the end the last commands are pushed and the supervisor is stopped at once, the way
SIGTERM stops it (each worker drains its commands ring, snapshots and exits 0; the test
keeps draining the output rings meanwhile). Then, for each shard, however the kills fell:

- every command the test pushed is journaled exactly once: the offline replay of the
  shard's journal and its final snapshot have the digest of a reference engine fed every
  command;
- the events and market data the test received across all incarnations are exactly the
  reference's — exec ids 1, 2, 3, ... with no gap or duplicate;
- every order the test saw acknowledged (ACCEPTED) is in the final books or has a later
  terminal event;
- nothing is left in /dev/shm and no worker process survives.

A second test pins a supervisor bug this one could hit by chance: a worker that had
published RUNNING but not yet written its first heartbeat was killed as hung.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psutil
import pytest

from tradsys import wire
from tradsys.config import Config, parse_config
from tradsys.cores.control import WorkerControl, WorkerState
from tradsys.cores.supervisor import Supervisor
from tradsys.journal import SnapshotStore, replay
from tradsys.matching import CEngine, Instrument
from tradsys.matching.reference_snapshot import decode
from tradsys.matching.workload import mixed_stream, sample_instruments
from tradsys.ring import Ring, WaitStrategy, instance_segments, segment_name
from tradsys.wire import COMMAND_DTYPE, EVENT_DTYPE, MD_DTYPE, EventFlag, EventKind

pytestmark = pytest.mark.multiprocess

SEED = 20240613
SHARDS = (0, 1)
KILLS_PER_SHARD = 6
COMMANDS = 30_000  # per shard
TAIL = 200  # pushed just before the stop, which must drain them (< ring_capacity)
DEADLINE_S = 30.0  # for any one thing the test waits for (a restart, some events)
POLITE = WaitStrategy.spin_park()
LAYOUT = {"slot_size": wire.RECORD_SIZE, "layout_version": wire.LAYOUT_VERSION}


def _shard_instruments() -> dict[int, list[Instrument]]:
    """Shard 0 trades the sample instruments; shard 1 the same rules under other names."""
    base = sample_instruments()
    other = [
        msgspec.structs.replace(ins, symbol=f"{ins.symbol}1", symbol_id=ins.symbol_id + 10)
        for ins in base
    ]
    return {0: base, 1: other}


def _config_text(instance: str, data_dir: Path, durability: str) -> str:
    lines = [
        "[engine]",
        f'instance = "{instance}"',
        f'data_dir = "{data_dir}"',
        'wait = "spin-park"',
        "ring_capacity = 256",  # small: the worker often waits for the test's room
        "heartbeat_timeout_ms = 3000",
        "stop_timeout_ms = 30000",
        "[journal]",
        f'durability = "{durability}"',
        "group_commit_us = 200",
        "segment_mb = 1",  # rotation
        "snapshot_every = 2500",  # restarts start from a snapshot + a journal tail
        # the test drives the rings itself: no gateway, no md sidecar
        "[gateway]",
        "enabled = false",
        "[md]",
        "enabled = false",
        "external_reader = true",  # the test reads the md rings (no sidecar)
    ]
    for shard, instruments in _shard_instruments().items():
        symbols = ", ".join(f'"{i.symbol}"' for i in instruments)
        lines += ["[[shard]]", f"id = {shard}", f"symbols = [{symbols}]"]
    for instruments in _shard_instruments().values():
        for ins in instruments:
            lines.append("[[instrument]]")
            for key, value in msgspec.structs.asdict(ins).items():
                lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines) + "\n"


@dataclass
class ShardClient:
    """The test's ends of one shard's rings, what it pushed and what it received."""

    shard: int
    commands: np.ndarray
    cmd: Ring
    evt: Ring
    md: Ring
    ctl: WorkerControl
    pushed: int = 0
    limit: int = 0
    """How far the stream may be pushed for now (the next planned kill's point + slack)."""
    event_bytes: bytearray = field(default_factory=bytearray)
    md_bytes: bytearray = field(default_factory=bytearray)
    killed_incarnation: int = 0
    kills: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ev_buf = np.zeros(512, EVENT_DTYPE)
        self._md_buf = np.zeros(512, MD_DTYPE)

    @classmethod
    def attach(cls, instance: str, shard: int, commands: np.ndarray) -> ShardClient:
        cmd = Ring.attach(segment_name(instance, "cmd", shard), role="producer", **LAYOUT)
        evt = Ring.attach(segment_name(instance, "evt", shard), role="consumer", **LAYOUT)
        md = Ring.attach(segment_name(instance, "md", shard), role="consumer", **LAYOUT)
        ctl = WorkerControl.attach(segment_name(instance, "ctl", shard))
        return cls(shard, commands, cmd, evt, md, ctl)

    def pump(self, rng: random.Random) -> None:
        """Push a random-size chunk (what fits), then drain events and market data."""
        if self.pushed < self.limit:
            end = min(self.limit, self.pushed + rng.randint(1, 300))
            chunk = self.commands[self.pushed : end]
            self.pushed += self.cmd.push_batch(chunk)
        while (n := self.evt.pop_batch(self._ev_buf)) > 0:
            self.event_bytes += self._ev_buf[:n].tobytes()
        while (n := self.md.pop_batch(self._md_buf)) > 0:
            self.md_bytes += self._md_buf[:n].tobytes()

    def has_events(self, n: int) -> Callable[[], bool]:
        return lambda: self.n_events >= n

    @property
    def n_events(self) -> int:
        return len(self.event_bytes) // wire.RECORD_SIZE

    def received_events(self) -> Any:
        return np.frombuffer(bytes(self.event_bytes), EVENT_DTYPE)

    def received_md(self) -> Any:
        return np.frombuffer(bytes(self.md_bytes), MD_DTYPE)

    def close(self) -> None:
        for ring in (self.cmd, self.evt, self.md):
            ring.close()
        self.ctl.close()


@dataclass
class Reference:
    """A CEngine fed the whole stream, and its output (``cum_events[k]``: how many
    events the first ``k`` commands make)."""

    engine: CEngine
    events: Any
    md: Any
    cum_events: dict[int, int]


def _reference(instruments: list[Instrument], commands: np.ndarray, cuts: list[int]) -> Reference:
    engine = CEngine()
    for ins in instruments:
        engine.add_instrument(ins)
    events, md = bytearray(), bytearray()
    cum, done = {}, 0
    for cut in [*sorted(set(cuts)), len(commands)]:
        out = engine.process(np.ascontiguousarray(commands[done:cut], COMMAND_DTYPE))
        events += out.events.tobytes()  # not np.concatenate: it packs the padding away
        md += out.md.tobytes()
        done = cut
        cum[cut] = len(events) // wire.RECORD_SIZE
    return Reference(
        engine, np.frombuffer(bytes(events), EVENT_DTYPE), np.frombuffer(bytes(md), MD_DTYPE), cum
    )


class Harness:
    """A supervisor started in this process, its watch loop in a thread, and the test's
    clients of every shard. ``shutdown`` always runs (fixture finalizer)."""

    def __init__(self, config: Config, rng: random.Random, python: str = sys.executable) -> None:
        self.config = config
        self.rng = rng
        self.log: list[str] = []
        self.supervisor = Supervisor(config, log=self.log.append, python=python)
        self.clients: dict[int, ShardClient] = {}
        self.thread: threading.Thread | None = None
        self.watch_error: BaseException | None = None
        self.worker_pids: set[int] = set()
        self.stopped = False
        self.stopper: threading.Thread | None = None
        self.stop_error: BaseException | None = None

    def start(self, streams: dict[int, np.ndarray], tick_s: float = 0.02) -> None:
        self.supervisor.start()
        for shard, commands in streams.items():
            self.clients[shard] = ShardClient.attach(self.config.engine.instance, shard, commands)
        self.thread = threading.Thread(
            target=self._watch, args=(tick_s,), name="supervisor-watch", daemon=True
        )
        self.thread.start()

    def _watch(self, tick_s: float) -> None:
        try:
            self.supervisor.watch(tick_s=tick_s)
        except BaseException as exc:  # surfaced by wait_for
            self.watch_error = exc

    def diagnostics(self) -> str:
        ctl = {
            s: (c.ctl.state.name, c.ctl.incarnations, c.ctl.pid, c.pushed, c.n_events)
            for s, c in self.clients.items()
        }
        kills = {s: c.kills for s, c in self.clients.items()}
        return (
            f"control (state, incarnations, pid, pushed, events): {ctl}\n"
            f"kills so far (the victim's state): {kills}\n" + "\n".join(self.log[-30:])
        )

    def wait_for(self, cond: Callable[[], bool], what: str, wait_on: ShardClient) -> None:
        """Keep every stream flowing until ``cond()`` holds; waiting is on ``wait_on``'s
        events ring, bounded by DEADLINE_S."""
        deadline = time.monotonic() + DEADLINE_S
        while not cond():
            assert self.watch_error is None, f"watch() raised {self.watch_error!r}"
            if not self.stopped:
                assert self.thread is not None and self.thread.is_alive(), "watch() returned"
            assert time.monotonic() < deadline, f"{what}: not after {DEADLINE_S} s\n" + (
                self.diagnostics()
            )
            for client in self.clients.values():
                client.pump(self.rng)
            wait_on.evt.wait_readable(POLITE, timeout=0.002)

    def successor_claimed(self, client: ShardClient) -> Callable[[], bool]:
        """The worker after the last one killed has claimed the control block."""
        return lambda: client.ctl.incarnations > client.killed_incarnation and client.ctl.pid != 0

    def finished(self, client: ShardClient, events: int) -> Callable[[], bool]:
        """All pushed (up to the limit), their events in, and a worker (not one killed)
        running: a stop now drains its ring."""
        claimed, received = self.successor_claimed(client), client.has_events(events)
        return lambda: (
            client.pushed == client.limit
            and received()
            and claimed()
            and client.ctl.state == WorkerState.RUNNING
        )

    def kill(self, client: ShardClient) -> None:
        """SIGKILL the shard's current worker (one the supervisor started)."""
        incarnation, pid, state = client.ctl.incarnations, client.ctl.pid, client.ctl.state
        assert incarnation > client.killed_incarnation and pid
        assert psutil.Process(pid).ppid() == os.getpid(), "a worker the supervisor started"
        self.worker_pids.add(pid)
        os.kill(pid, signal.SIGKILL)
        client.killed_incarnation = incarnation
        client.kills.append(state.name)

    def stop_in_background(self) -> None:
        """``stop`` in a thread, so the test can keep draining the output rings."""

        def run() -> None:
            try:
                self.stop()
            except BaseException as exc:
                self.stop_error = exc

        self.stopper = threading.Thread(target=run, name="supervisor-stop", daemon=True)
        self.stopper.start()

    def stopped_cleanly(self) -> bool:
        assert self.stopper is not None
        if self.stopper.is_alive():
            return False
        assert self.stop_error is None, f"stop() raised {self.stop_error!r}"
        return True

    def stop(self) -> None:
        """Stop as SIGTERM would: end watch(), then drain, snapshot and unlink."""
        if self.stopped:
            return
        self.stopped = True
        self.supervisor.request_stop()
        if self.thread is not None:
            self.thread.join(timeout=DEADLINE_S)
            assert not self.thread.is_alive(), "watch() did not return after request_stop"
        self.supervisor.stop()

    def shutdown(self) -> None:
        """Finalizer: whatever state the test left, no process or segment survives."""
        try:
            self.stop()
        finally:
            for client in self.clients.values():
                client.close()
            for child in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    if self.config.engine.instance in " ".join(child.cmdline()):
                        child.kill()
                        child.wait(timeout=DEADLINE_S)


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(durability: str, python: str = sys.executable) -> Harness:
        text = _config_text(instance, tmp_path / "var", durability)
        rng = random.Random(f"{SEED}-{durability}")
        h = Harness(parse_config(text, "<crash test>"), rng, python)
        made.append(h)
        return h

    yield make
    for h in made:
        h.shutdown()


@dataclass(frozen=True)
class Kill:
    shard: int
    at: int | None
    """Kill once the events of the first ``at`` commands are in; None: as soon as the
    restarted worker claims its control block (start-up / recovery)."""
    slack: int
    """Commands pushed past ``at`` (in flight when the kill lands)."""


def _kill_plan(rng: random.Random) -> list[Kill]:
    """KILLS_PER_SHARD kills per shard, about a third of them during recovery, the rest
    at sorted random points of the stream; the shards' kills interleaved at random."""
    per_shard: dict[int, list[Kill]] = {}
    for shard in SHARDS:
        points = iter(sorted(rng.sample(range(1, COMMANDS * 19 // 20), KILLS_PER_SHARD)))
        per_shard[shard] = [
            Kill(shard, None if rng.random() < 1 / 3 else next(points), rng.randint(0, 2000))
            for _ in range(KILLS_PER_SHARD)
        ]
    turns = [s for s in SHARDS for _ in range(KILLS_PER_SHARD)]
    rng.shuffle(turns)
    return [per_shard[s].pop(0) for s in turns]


def _next_limit(plan: list[Kill], shard: int) -> int:
    """Where the shard's stream may go until its next kill in the stream."""
    ahead = [k.at + k.slack for k in plan if k.shard == shard and k.at is not None]
    return min(COMMANDS - TAIL, ahead[0]) if ahead else COMMANDS - TAIL


@pytest.mark.parametrize("durability", ["group", "none"])
def test_supervisor_restarts_killed_workers_losing_and_repeating_nothing(
    harness: Callable[..., Harness], instance: str, durability: str
) -> None:
    started = time.monotonic()
    h = harness(durability)
    rng = h.rng
    plan = _kill_plan(rng)
    instruments = _shard_instruments()
    streams = {s: mixed_stream(COMMANDS, seed=SEED + s, instruments=instruments[s]) for s in SHARDS}
    refs = {
        s: _reference(
            instruments[s],
            streams[s],
            [COMMANDS - TAIL] + [k.at for k in plan if k.shard == s and k.at],
        )
        for s in SHARDS
    }
    h.start(streams)
    for shard, client in h.clients.items():
        client.limit = _next_limit(plan, shard)

    for i, kill in enumerate(plan):
        client = h.clients[kill.shard]
        claimed = h.successor_claimed(client)
        h.wait_for(claimed, f"kill {i}: shard {kill.shard} restarted", client)
        if kill.at is not None:
            want = refs[kill.shard].cum_events[kill.at]
            h.wait_for(
                client.has_events(want),
                f"kill {i}: shard {kill.shard}'s events up to command {kill.at}",
                client,
            )
        h.kill(client)
        client.limit = _next_limit(plan[i + 1 :], kill.shard)

    # the last incarnations run: stream all but a tail through, push the tail and stop
    # at once (as SIGTERM would), still draining the output rings while the stop runs
    for shard, client in h.clients.items():
        want = refs[shard].cum_events[COMMANDS - TAIL]
        what = f"shard {shard}: {want} events (commands 1..{COMMANDS - TAIL}), a worker running"
        h.wait_for(h.finished(client, want), what, client)
        h.worker_pids.add(client.ctl.pid)
    restarts = {sp.spec.shard_id: sp.restarts for sp in h.supervisor.shards}
    for client in h.clients.values():
        client.limit = COMMANDS
        client.pushed += client.cmd.push_batch(client.commands[client.pushed :])
        assert client.pushed == COMMANDS, "the tail fits in the commands ring"
    h.stop_in_background()
    h.wait_for(h.stopped_cleanly, "the stop", h.clients[0])
    elapsed = time.monotonic() - started
    log = "\n".join(h.log)

    assert restarts == dict.fromkeys(SHARDS, KILLS_PER_SHARD), log
    assert log.count("worker died (signal 9)") == KILLS_PER_SHARD * len(SHARDS), log
    assert "heart-beaten" not in log and "exited with" not in log, log
    for shard, client in h.clients.items():
        ref = refs[shard]
        assert client.ctl.incarnations == KILLS_PER_SHARD + 1, h.diagnostics()
        assert client.ctl.state == WorkerState.STOPPED and client.ctl.exit_code == 0
        client.pump(rng)  # anything published during the stop

        # every pushed command journaled exactly once, in order: the reference's books
        data_dir = h.config.shard_data_dir(shard)
        assert client.ctl.journaled_seq == COMMANDS
        assert replay(data_dir, shard).digest() == ref.engine.digest()
        final = SnapshotStore(data_dir, shard).load_newest_valid()
        assert final is not None and final.seq == COMMANDS
        assert final.engine.digest() == ref.engine.digest()

        # exactly-once output across every restart
        got = client.received_events()
        assert got["exec_id"].tolist() == list(range(1, len(ref.events) + 1))
        assert got.tobytes() == ref.events.tobytes()
        assert client.received_md().tobytes() == ref.md.tobytes()

        # every acknowledged order is in the final books or has a later terminal event
        accepted = set(got["order_id"][got["kind"] == EventKind.ACCEPTED].tolist())
        terminal = (got["kind"] == EventKind.CANCELLED) | (
            (got["kind"] == EventKind.TRADE) & ((got["flags"] & EventFlag.DONE) != 0)
        )
        finished = set(got["order_id"][terminal].tolist())
        book = decode(final.engine.snapshot())
        live = {o.order_id for sym in book.symbols for o in sym.orders}
        assert accepted and accepted <= finished | live

    # nothing left behind
    assert instance_segments(instance) == []
    alive = [p for p in h.worker_pids if psutil.pid_exists(p)]
    assert not [p for p in alive if psutil.Process(p).status() != psutil.STATUS_ZOMBIE], alive
    assert elapsed < 60, f"the supervisor crash test took {elapsed:.0f} s"


# The worker, except that it stalls for PAUSE_S right after it publishes RUNNING, before
# its C loop writes the first heartbeat (as a preempted worker on a busy host would).
PAUSE_S = 0.5
PAUSED_WORKER = """#!/bin/sh
exec {python} -c '
import sys, time
import tradsys.cores.worker as w
set_state = w.WorkerControl.set_state
def paused(self, state):
    set_state(self, state)
    if state == w.WorkerState.RUNNING:
        time.sleep({pause})
w.WorkerControl.set_state = paused
sys.exit(w.main(sys.argv[1:]))
' "$3" "$4"
"""


def test_a_worker_not_yet_heart_beating_is_not_taken_for_a_hung_one(
    harness: Callable[..., Harness], tmp_path: Path
) -> None:
    """Regression: the supervisor judged a worker that had published RUNNING but not yet
    written its first heartbeat (prepare_spawn zeroes it) by a heartbeat of 0 — "has not
    heart-beaten for 5927.7 s" — and killed it."""
    python = tmp_path / "paused-worker"
    python.write_text(PAUSED_WORKER.format(python=sys.executable, pause=PAUSE_S))
    python.chmod(0o755)
    h = harness("none", str(python))  # heartbeat timeout 3 s, well over the pause
    h.start({}, tick_s=0.005)  # ~100 looks at the workers during the pause
    controls = [
        WorkerControl.attach(segment_name(h.config.engine.instance, "ctl", s)) for s in SHARDS
    ]
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not all(c.heartbeat_ns for c in controls) and "heart-beaten" not in str(h.log):
            assert time.monotonic() < deadline, h.diagnostics()
            time.sleep(0.01)  # polling shared memory: the condition is the data above
        restarts = [sp.restarts for sp in h.supervisor.shards]
    finally:
        for c in controls:
            c.close()
    h.stop()
    assert restarts == [0, 0], "\n".join(h.log)
    assert "heart-beaten" not in str(h.log)
