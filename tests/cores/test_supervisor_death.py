"""When the supervisor itself dies (SIGKILL, the OOM killer), its engine processes stop
the way a clean stop stops them, and the next supervisor of the instance starts from
what they left (tradsys/cores/parent_watch.py, control.find_stale_controls).

The supervisor runs in a child process here (a script), so that the test can kill it;
the test plays the gateway of its one shard where it needs commands in."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.engine_toml import one_shard_instance
from tradsys.config import parse_config
from tradsys.cores.control import find_stale_controls
from tradsys.cores.dead_run import DEAD_RUN_FILE
from tradsys.cores.status import read_status
from tradsys.cores.supervisor import Supervisor, SupervisorError
from tradsys.matching.commands import batch, new_order
from tradsys.ring import Ring, WaitStrategy, segment_name
from tradsys.ring.segment import instance_segments
from tradsys.wire import LAYOUT_VERSION, RECORD_SIZE, Side

pytestmark = pytest.mark.multiprocess

SUPERVISOR = textwrap.dedent(
    """
    import json, sys
    from tradsys.config import parse_config
    from tradsys.cores.supervisor import Supervisor
    sup = Supervisor(parse_config(open(sys.argv[1]).read(), "t"), log=lambda line: None)
    sup.start()
    pids = [sp.process.pid for sp in sup.shards] + [sc.process.pid for sc in sup.sidecars]
    print(json.dumps(pids), flush=True)
    sup.watch()
    """
)
ORDERS = 300


def engine_only(instance: str, data_dir: Path) -> str:
    return one_shard_instance(
        instance, data_dir, sections="[gateway]\nenabled = false\n[md]\nenabled = false"
    )


FROZEN_SIDECARS_OK = "heartbeat_timeout_ms = 600000"
"""For a test that freezes a sidecar on purpose while its supervisor watches: a slow
machine must not see it killed as hung (tradsys.cores.liveness) before the test is done."""


def whole_instance(instance: str, data_dir: Path, engine: str = "") -> str:
    return one_shard_instance(
        instance,
        data_dir,
        engine,
        sections=f"""[journal]
durability = "none"
[gateway]
tcp_listen = "127.0.0.1:0"
[md]
publish = ["ipc://{data_dir}/md-pub"]
snapshot = "ipc://{data_dir}/md-snap\"""",
    )


class SupervisorProcess:
    """A supervisor in a process of its own, and the engine processes it started."""

    def __init__(self, config_file: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SUPERVISOR, str(config_file)],
                stdout=subprocess.PIPE,
                stderr=out,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until started (or it died)
        if not line:
            self.proc.wait(10)
            raise AssertionError(f"the supervisor did not start:\n{log.read_text()}")
        self.children = [psutil.Process(pid) for pid in json.loads(line)]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def kill_whole(self) -> None:
        """Every process of the run at once, as a cgroup OOM kill does: the supervisor
        frozen first, so that it restarts nothing, then each engine process and it."""
        self.proc.send_signal(signal.SIGSTOP)
        _until_stopped([psutil.Process(self.proc.pid)])
        for p in self.children:
            p.kill()
        self.kill()
        psutil.wait_procs(self.children, timeout=30)

    def cleanup(self) -> None:
        for p in [*self.children]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        if self.proc.poll() is None:
            self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def start_supervisor(tmp_path: Path) -> Iterator[Callable[[str], SupervisorProcess]]:
    made: list[SupervisorProcess] = []

    def start(text: str) -> SupervisorProcess:
        config_file = tmp_path / f"config-{len(made)}.toml"
        config_file.write_text(text)
        sp = SupervisorProcess(config_file, tmp_path / f"supervisor-{len(made)}.log")
        made.append(sp)
        return sp

    yield start
    for sp in made:  # also when the test failed: no engine process outlives it
        sp.cleanup()


def test_the_workers_of_a_killed_supervisor_stop_cleanly_and_lose_nothing(
    instance: str, tmp_path: Path, start_supervisor: Callable[[str], SupervisorProcess]
) -> None:
    text = engine_only(instance, tmp_path)
    sup = start_supervisor(text)
    (worker,) = sup.children
    cmd = Ring.attach(
        segment_name(instance, "cmd", 0),
        role="producer",
        slot_size=RECORD_SIZE,
        layout_version=LAYOUT_VERSION,
    )
    try:
        orders = batch(*(new_order(i, 1, 1, Side.BUY, 1, 90) for i in range(1, ORDERS + 1)))
        assert cmd.push_all(orders, WaitStrategy.spin_park(), timeout=10) == ORDERS
    finally:
        cmd.close()
    sup.kill()
    # nobody asked it to stop but the kernel, on its parent's death
    _, alive = psutil.wait_procs([worker], timeout=30)
    assert alive == [], "the worker outlived its supervisor"
    log = sup.log.read_text()
    assert "signal 15: stopping" in log and f"stopped cleanly at seq {ORDERS}" in log
    # `tradsys status` does not take the dead supervisor's file for a running instance
    with pytest.raises(FileNotFoundError, match=r"supervisor \(pid \d+\) died"):
        read_status(parse_config(text, "t"), interval_s=0.01)
    # what the dead supervisor left is judged stale, and a new one starts over it
    assert find_stale_controls(instance) == [segment_name(instance, "ctl", 0)]
    with Supervisor(parse_config(text, "t"), log=lambda line: None) as again:
        control = again.shards[0].control
        assert (control.recovered_from_seq, control.replayed) == (ORDERS, 0)
    assert instance_segments(instance) == []


def test_gateway_and_md_stop_with_their_supervisor_and_the_instance_restarts(
    instance: str, tmp_path: Path, start_supervisor: Callable[[str], SupervisorProcess]
) -> None:
    text = whole_instance(instance, tmp_path)
    sup = start_supervisor(text)
    assert len(sup.children) == 3  # the worker, md, the gateway
    sup.kill()
    _, alive = psutil.wait_procs(sup.children, timeout=30)
    assert [p.pid for p in alive] == []
    log = sup.log.read_text()
    assert "md: stopped after" in log and "proc=gateway" in log and "stopped cleanly" in log
    with Supervisor(parse_config(text, "t"), log=lambda line: None) as again:
        assert {sc.name for sc in again.sidecars} == {"md", "gateway"}
    assert instance_segments(instance) == []


def test_a_live_supervisors_control_blocks_are_never_stale(instance: str, tmp_path: Path) -> None:
    with Supervisor(parse_config(engine_only(instance, tmp_path), "t"), log=lambda line: None):
        assert find_stale_controls(instance) == []


def _until_stopped(procs: list[psutil.Process], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(p.status() != psutil.STATUS_STOPPED for p in procs):
        assert time.monotonic() < deadline, "the processes did not stop"
        time.sleep(0.005)  # the kernel's stop is asynchronous: polling its outcome


def test_a_supervisor_killed_while_suspended_still_stops_its_engine_cleanly(
    instance: str, tmp_path: Path, start_supervisor: Callable[[str], SupervisorProcess]
) -> None:
    """Ctrl-Z stops every engine process and then the supervisor; a `kill -9` of the
    suspended supervisor leaves stopped process groups with no parent, which the kernel
    sends SIGHUP and SIGCONT. SIGHUP asks for the same clean stop as the parent's death
    (before, by default it killed them: no final snapshot, segments left behind)."""
    text = whole_instance(instance, tmp_path)
    sup = start_supervisor(text)
    for child in sup.children:  # as Supervisor.suspend does: each leads its own group
        os.killpg(child.pid, signal.SIGSTOP)
    sup.proc.send_signal(signal.SIGSTOP)
    # stopped, not only sent the signal: the kernel sends SIGHUP and SIGCONT to a group
    # orphaned with stopped members; one still stopping when its parent dies gets neither
    # (a loaded CI run killed the supervisor first, and the engine stayed stopped)
    _until_stopped([*sup.children, psutil.Process(sup.proc.pid)])
    sup.kill()
    _, alive = psutil.wait_procs(sup.children, timeout=30)
    assert [p.pid for p in alive] == []
    log = sup.log.read_text()
    assert "shard 0: stopped cleanly at seq" in log, log
    assert "md: stopped after" in log and "proc=gateway" in log, log
    with Supervisor(parse_config(text, "t"), log=lambda line: None) as again:
        assert {sc.name for sc in again.sidecars} == {"md", "gateway"}
    assert instance_segments(instance) == []


def test_shm_reclaim_removes_everything_a_killed_supervisor_left(
    instance: str,
    tmp_path: Path,
    start_supervisor: Callable[[str], SupervisorProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its control blocks too (before, only the next `tradsys run` removed those)."""
    from tradsys.cli import main

    sup = start_supervisor(engine_only(instance, tmp_path))
    sup.kill()
    _, alive = psutil.wait_procs(sup.children, timeout=30)
    assert alive == []
    ctl = segment_name(instance, "ctl", 0)
    assert main(["shm", "ls", "--instance", instance]) == 0
    assert f"{ctl}  (stale: creator gone)" in capsys.readouterr().out
    assert main(["shm", "reclaim", "--instance", instance]) == 0
    assert f"removed stale segment {ctl}" in capsys.readouterr().out
    assert instance_segments(instance) == []


def test_a_run_killed_whole_leaves_its_sessions_to_the_next_run(
    instance: str, tmp_path: Path, start_supervisor: Callable[[str], SupervisorProcess]
) -> None:
    """Every engine process SIGKILLed in the same instant (a cgroup OOM kill, `systemctl
    kill -s KILL`): the next run's gateway reads the dead sessions' rings -- the acks a
    client had not read come first in its account's next session, and the commands it
    had sent and nobody took are answered GATEWAY_RESTARTED. The next run's supervisor
    used to unlink those rings as stale before its gateway could read them: the acks were
    lost, and the commands never answered."""
    from tests.accounts_toml import account_tables
    from tests.client.edge_rig import KEYS
    from tests.cores.test_gateway_restart import _until_every_thread_stopped
    from tradsys.client.events import Ack, Reject
    from tradsys.client.orders import OrderClient
    from tradsys.cores.sidecar import read_announcement
    from tradsys.wire import RejectReason

    text = (
        whole_instance(instance, tmp_path, FROZEN_SIDECARS_OK)
        + "\n"
        + account_tables(KEYS, lambda i: "cancel_on_disconnect = false\n")
    )
    config = parse_config(text, "t")
    sup = start_supervisor(text)
    ann = read_announcement(config, "gateway")
    assert ann is not None
    alice = OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1])
    try:
        unread = {alice.submit(1, "buy", 1, 90, order_id=oid) for oid in range(1, 6)}
        deadline = time.monotonic() + 30
        while alice.transport.outbound.readable < len(unread):  # acked, and never read
            assert time.monotonic() < deadline, "the acks never reached the session's ring"
        gateway = int(ann["pid"])
        os.kill(gateway, signal.SIGSTOP)  # it takes nothing more from alice's ring
        _until_every_thread_stopped(gateway)
        unsent = {alice.submit(1, "buy", 1, 91, order_id=oid) for oid in range(6, 9)}
        sup.kill_whole()
    finally:
        alice.transport.close()
    with (
        Supervisor(config, log=lambda line: None) as again,
        OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice,
    ):
        assert again.config.gateway.enabled
        answers: dict[int, Any] = {}
        deadline = time.monotonic() + 30
        while len(answers) < len(unread | unsent):
            assert time.monotonic() < deadline, f"answered: {sorted(answers)}"
            answers.update((ev.order_id, ev) for ev in alice.poll(1.0))
        assert set(answers) == unread | unsent
        assert all(isinstance(answers[oid], Ack) for oid in unread)
        for oid in unsent:
            ev = answers[oid]
            assert isinstance(ev, Reject) and ev.reason == RejectReason.GATEWAY_RESTARTED, ev
    assert instance_segments(instance) == []


def _md_records(config: Any) -> dict[str, int]:
    """The records the running md sidecar published, by channel (its stats file)."""
    try:
        doc = json.loads((config.instance_dir / "md.stats.json").read_text())
    except (OSError, ValueError):
        return {}
    return dict(doc.get("records", {}))


@pytest.mark.parametrize("first_start", ["succeeds", "fails"])
def test_a_run_killed_whole_loses_no_event_its_workers_made(
    instance: str,
    tmp_path: Path,
    start_supervisor: Callable[[str], SupervisorProcess],
    first_start: str,
) -> None:
    """The events a run killed whole had made and nobody had taken: the worker pushed
    what fitted in its events ring (64 slots), the gateway, frozen, took none of it, and
    the rest waited in the worker, journaled, for room. The next run carries the ring's
    unread records over and its worker re-sends the rest, so each side of every trade
    gets its ack and its fill, once; and the next run continues the dead run's positions:
    a buy past max_position, counted from the trades of both runs, is refused. Before
    2026-11-29 the next run started new rings and re-sent nothing: those acks and fills
    never came, and its positions started flat.

    ``fails``: the first start after the kill fails once it has carried the events in
    (its md sidecar cannot bind its endpoint) and stops; the next start still delivers
    them all, from the dead-run file, and still continues the positions.

    The md sidecar is frozen too: the trades' market data, which it never published,
    is published by the next run's (carried from its ring, or re-sent by the worker)."""
    from tests.accounts_toml import account_tables
    from tests.client.edge_rig import KEYS
    from tests.cores.test_gateway_restart import _until_every_thread_stopped
    from tradsys.client.events import Ack, Fill, Reject
    from tradsys.client.orders import OrderClient
    from tradsys.cores.control import WorkerControl
    from tradsys.cores.sidecar import read_announcement
    from tradsys.wire import RejectReason

    before, frozen = 3, 25  # trades delivered before the freeze; made while frozen
    limits = {1: f"max_position = {before + frozen}\n", 2: ""}
    text = (
        whole_instance(instance, tmp_path, FROZEN_SIDECARS_OK + "\nstop_timeout_ms = 2000")
        .replace("ring_capacity = 1024", "ring_capacity = 64")
        .replace("[gateway]\n", "[gateway]\nclock_tick_us = 0\n")
        + "\n"
        + account_tables(KEYS, lambda i: "cancel_on_disconnect = false\n" + limits.get(i, ""))
    )
    config = parse_config(text, "t")
    sup = start_supervisor(text)
    ann = read_announcement(config, "gateway")
    assert ann is not None
    worker = sup.children[0]

    def events_of(client: OrderClient, oids: set[int], want: int) -> list[Any]:
        got: list[Any] = []
        deadline = time.monotonic() + 60
        while len(got) < want:
            assert time.monotonic() < deadline, f"{len(got)} of {want} events: {got[-3:]}"
            got += [ev for ev in client.poll(1.0) if ev.order_id in oids]
        return got

    def until(what: str, ok: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not ok():  # state in shared memory, polled: no sleep
            assert time.monotonic() < deadline, what

    alice = OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1])
    bob = OrderClient.connect(ann["unix_socket"], account_id=2, api_key=KEYS[2])
    cmd = Ring.attach(
        segment_name(instance, "cmd", 0), slot_size=RECORD_SIZE, layout_version=LAYOUT_VERSION
    )
    evt = Ring.attach(
        segment_name(instance, "evt", 0), slot_size=RECORD_SIZE, layout_version=LAYOUT_VERSION
    )
    control = WorkerControl.attach(segment_name(instance, "ctl", 0))
    try:
        early = {alice.submit(1, "buy", 1, 100, order_id=oid) for oid in range(1, before + 1)}
        sold = {bob.submit(1, "sell", 1, 100, order_id=oid) for oid in range(1, before + 1)}
        events_of(alice, early, 2 * before)  # acked and filled, through the gateway
        events_of(bob, sold, 2 * before)
        # and printed by this run's md sidecar: frozen before it had, the next run's would
        # print them too (carried from its ring), and the count below would be off by them
        until("the early trades printed", lambda: _md_records(config).get("trade", 0) == before)
        worker.suspend()
        _until_every_thread_stopped(worker.pid)
        bought = set(range(100, 100 + frozen))
        for oid in sorted(bought):
            alice.submit(1, "buy", 1, 100, order_id=oid)
        until("alice's buys in the ring", lambda: cmd.info().head == 2 * before + frozen)
        sold = set(range(100, 100 + frozen))
        for oid in sorted(sold):
            bob.submit(1, "sell", 1, 100, order_id=oid)
        until("bob's sells in the ring", lambda: cmd.info().head == 2 * (before + frozen))
        gateway = int(ann["pid"])
        md = read_announcement(config, "md")
        assert md is not None
        for pid in (gateway, int(md["pid"])):  # they take nothing from here on
            os.kill(pid, signal.SIGSTOP)
            _until_every_thread_stopped(pid)
        worker.resume()
        # every command taken (journaled), the events ring full, more events waiting
        until("the worker took every command", lambda: cmd.info().tail == cmd.info().head)
        until("the events ring full", lambda: evt.writable == 0)
        until("the worker waiting for room", lambda: control.out_waits > 0)
        sup.kill_whole()
    finally:
        for ring in (cmd, evt):
            ring.close()
        control.close()
        alice.transport.close()
        bob.transport.close()
    lines: list[str] = []
    if first_start == "fails":
        unbindable = text.replace(f"ipc://{tmp_path}/md-pub", "ipc:///proc/no-such-dir/md-pub")
        with pytest.raises(SupervisorError, match="md exited with code 1"):
            Supervisor(parse_config(unbindable, "t"), log=lines.append).start()
        assert (config.instance_dir / DEAD_RUN_FILE).exists(), lines
        assert instance_segments(instance) == []
    with (
        Supervisor(config, log=lines.append),
        OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice,
        OrderClient.connect(ann["unix_socket"], account_id=2, api_key=KEYS[2]) as bob,
    ):
        for client, oids in ((alice, bought), (bob, sold)):
            got = events_of(client, oids, 2 * frozen)
            acks = sorted(ev.order_id for ev in got if isinstance(ev, Ack))
            fills = sorted(ev.order_id for ev in got if isinstance(ev, Fill))
            assert acks == fills == sorted(oids), got
            assert all(ev.price == 100 and ev.quantity == 1 for ev in got if isinstance(ev, Fill))
        assert any("killed whole" in line for line in lines), lines
        assert any("continues the ledger" in line for line in lines), lines
        # alice's position is before + frozen, her max_position: one more buy is refused
        extra = alice.submit(1, "buy", 1, 100, order_id=999)
        answer = events_of(alice, {extra}, 1)[0]
        assert isinstance(answer, Reject) and answer.reason == RejectReason.MAX_POSITION, answer
        assert not (config.instance_dir / DEAD_RUN_FILE).exists()  # carried in: done
        # and the market data of the frozen run's trades, which its md sidecar never
        # published, is published by this run's: each trade printed once
        deadline = time.monotonic() + 30
        while (printed := _md_records(config).get("trade", 0)) < frozen:
            assert time.monotonic() < deadline, f"{printed} of {frozen} trades printed"
        assert printed == frozen
    assert instance_segments(instance) == []


def test_the_cancels_of_a_stop_reach_the_accounts_next_session(
    instance: str, tmp_path: Path
) -> None:
    """A stop ends every session, and with cancel-on-disconnect the gateway cancels their
    orders on its way out. Their CANCELLEDs reach the account's next session, in the next
    run, once: the gateway held them, and the copies the stop found still unreleased in
    the events rings (kept for the next run's gateway, tradsys.cores.dead_run) are known
    to its held-events log and not delivered again."""
    from tests.accounts_toml import account_tables
    from tests.client.edge_rig import KEYS
    from tradsys.client.events import Ack, Cancelled
    from tradsys.client.orders import OrderClient
    from tradsys.cores.sidecar import read_announcement

    text = whole_instance(instance, tmp_path) + "\n" + account_tables(KEYS)
    config = parse_config(text, "t")
    with Supervisor(config, log=lambda line: None):
        ann = read_announcement(config, "gateway")
        assert ann is not None
        alice = OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1])
        resting = {alice.submit(1, "buy", 1, 90 - i, order_id=10 + i) for i in range(3)}
        for oid in resting:
            assert isinstance(alice.wait_for(oid), Ack)
    alice.transport.close()  # connected through the stop: the gateway ended the session
    with (
        Supervisor(config, log=lambda line: None),
        OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice,
    ):
        cancels: list[int] = []
        deadline = time.monotonic() + 30
        while set(cancels) != resting:
            assert time.monotonic() < deadline, f"cancelled: {sorted(cancels)}"
            cancels += [e.order_id for e in alice.poll(1.0) if isinstance(e, Cancelled)]
        # and none twice: what else the session gets within a status round trip
        alice.order_status()
        cancels += [e.order_id for e in alice.poll(0.0) if isinstance(e, Cancelled)]
        assert sorted(cancels) == sorted(resting), cancels
        assert not (config.instance_dir / DEAD_RUN_FILE).exists()
    assert instance_segments(instance) == []
