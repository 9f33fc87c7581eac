"""A hung sidecar is killed and restarted like a dead one (``tradsys.cores.liveness``):
before, a gateway or md sidecar stopped by SIGSTOP (or deadlocked) was alive to waitpid,
so clients waited on a gateway that never answered, and a stalled md sidecar would have
stopped the workers once its rings were full."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.accounts_toml import account_tables
from tests.client.edge_rig import KEYS
from tests.cores.test_supervisor_death import whole_instance
from tradsys.client.events import Ack
from tradsys.client.orders import OrderClient
from tradsys.config import parse_config
from tradsys.cores.liveness import ENV, Beater, BeatPipe
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.ring import instance_segments

pytestmark = pytest.mark.multiprocess


def test_beats_reach_the_pipe_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = BeatPipe()
    try:
        monkeypatch.setenv(ENV, str(pipe.write_fd))
        beater = Beater(interval_s=1.0)
        pipe.read(now=5.0)
        assert pipe.last is None  # nothing beat yet
        beater.maybe_beat(now=100.0)
        beater.maybe_beat(now=100.5)  # within the interval: not written
        pipe.read(now=7.0)
        assert pipe.last == 7.0
        beater.maybe_beat(now=101.0)
        pipe.read(now=9.0)
        assert pipe.last == 9.0
    finally:
        pipe.close()


def test_a_beater_without_a_supervisor_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    Beater(interval_s=0.0).maybe_beat()  # a sidecar run by hand: no pipe, no error


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[tuple[Supervisor, list[str]]]:
    text = (
        whole_instance(instance, tmp_path, "heartbeat_timeout_ms = 1000")
        + "\n"
        + account_tables(KEYS)
    )
    lines: list[str] = []
    sup = Supervisor(parse_config(text, "t"), log=lines.append)
    try:
        sup.start()
        yield sup, lines
    finally:
        sup.stop()
    assert instance_segments(instance) == []


def _watch_until(sup: Supervisor, what: str, done: Callable[[], object]) -> None:
    deadline = time.monotonic() + 30
    sup.watch(until=lambda: bool(done()) or time.monotonic() > deadline, tick_s=0.05)
    assert done(), what


@pytest.mark.parametrize("name", ["gateway", "md"])
def test_a_stopped_sidecar_is_killed_and_restarted(
    running: tuple[Supervisor, list[str]], name: str
) -> None:
    sup, lines = running
    sidecar = next(sc for sc in sup.sidecars if sc.name == name)
    _watch_until(
        sup, f"{name} never beat", lambda: sidecar.beats is not None and sidecar.beats.last
    )
    ann = read_announcement(sup.config, name)
    assert ann is not None
    first = int(ann["pid"])
    os.kill(first, signal.SIGSTOP)  # alive to waitpid, and silent

    def restarted() -> bool:
        doc = read_announcement(sup.config, name)
        return doc is not None and int(doc["pid"]) != first

    _watch_until(sup, f"the stopped {name} was not restarted: {lines[-5:]}", restarted)
    assert any(f"{name} pid {first} has given no sign of life" in line for line in lines)
    if name == "gateway":  # and it serves again
        gw = read_announcement(sup.config, "gateway")
        assert gw is not None
        with OrderClient.connect(gw["unix_socket"], account_id=1, api_key=KEYS[1]) as alice:
            oid = alice.submit(1, "buy", 1, 90)
            assert isinstance(alice.wait_for(oid), Ack)


def test_a_sidecar_that_beats_is_left_alone(running: tuple[Supervisor, list[str]]) -> None:
    """Three timeouts of watching a healthy instance kill nothing."""
    sup, lines = running
    pids = {sc.name: sc.process.pid for sc in sup.sidecars if sc.process is not None}
    end = time.monotonic() + 3.0
    sup.watch(until=lambda: time.monotonic() > end, tick_s=0.05)
    assert {sc.name: sc.process.pid for sc in sup.sidecars if sc.process is not None} == pids
    assert not any("no sign of life" in line for line in lines), lines
