"""What ``Supervisor.stop`` reports, and how the supervisor starts its engine processes:
each in a process group of its own (a terminal's Ctrl-C is the supervisor's alone), a stop that
had to kill a process or saw one fail is reported (``tradsys run`` exits 2 for it), and a
SIGINT/SIGTERM during the start ends the start."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.engine_toml import one_shard_instance
from tradsys.config import parse_config
from tradsys.cores.supervisor import Supervisor, SupervisorError
from tradsys.ring import instance_segments

pytestmark = pytest.mark.multiprocess

FAKES = {"md": "tests.cores.fake_md", "gateway": "tests.cores.fake_gateway"}
STUBBORN_MD = {**FAKES, "md": "tests.cores.fake_stubborn_md"}


@pytest.fixture
def make_supervisor(instance: str, tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    made: list[Supervisor] = []

    def make(sidecars: dict[str, str] = FAKES, stop_timeout_ms: int = 10_000) -> Supervisor:
        text = one_shard_instance(instance, tmp_path, engine=f"stop_timeout_ms = {stop_timeout_ms}")
        sup = Supervisor(
            parse_config(text, "test"), log=lambda line: None, sidecar_modules=sidecars
        )
        made.append(sup)
        return sup

    yield make
    for sup in made:  # also when the test failed: every process stopped or killed
        sup.stop()


def test_every_engine_process_starts_in_a_process_group_of_its_own(
    make_supervisor: Callable[..., Supervisor],
) -> None:
    sup = make_supervisor()
    sup.start()
    pids = [sp.process.pid for sp in sup.shards if sp.process is not None]
    pids += [sc.process.pid for sc in sup.sidecars if sc.process is not None]
    assert len(pids) == 3  # the worker, md, the gateway
    for pid in pids:
        assert os.getpgid(pid) == pid
        # the supervisor's session still: autogroup scheduling treats a session as one
        # entity, and a pump and its colocated client in two of them stop sharing the CPU
        assert os.getsid(pid) == os.getsid(0)
    assert os.getpgid(0) not in [os.getpgid(pid) for pid in pids]


def test_a_clean_stop_reports_nothing(make_supervisor: Callable[..., Supervisor]) -> None:
    sup = make_supervisor()
    sup.start()
    assert sup.stop() == []
    assert sup.stop() == []  # idempotent
    assert instance_segments(sup.instance) == []


def test_a_worker_that_died_is_reported(make_supervisor: Callable[..., Supervisor]) -> None:
    sup = make_supervisor()
    sup.start()
    process = sup.shards[0].process
    assert process is not None
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert sup.stop() == ["shard 0 worker stopped with signal 9"]
    assert instance_segments(sup.instance) == []


def test_a_worker_down_awaiting_its_restart_at_the_stop_is_reported(
    make_supervisor: Callable[..., Supervisor],
) -> None:
    """A worker that died and waits out its restart back-off when the instance stops is
    no clean stop either (it was reported as one: a crash-looping shard, "stopped
    cleanly", exit 0)."""
    sup = make_supervisor()
    sup.start()
    sp = sup.shards[0]
    assert sp.process is not None
    sp.backoff_s = 60.0  # the restart is not due before the stop
    sp.process.send_signal(signal.SIGKILL)
    sup.watch(until=lambda: sp.process is None, tick_s=0.01)
    assert sp.restart_due is not None
    (failure,) = sup.stop()
    assert failure.startswith("shard 0 worker was down when the instance stopped"), failure
    assert instance_segments(sup.instance) == []


def test_a_sidecar_restarting_at_the_stop_is_let_up_and_stopped_cleanly(
    make_supervisor: Callable[..., Supervisor],
) -> None:
    """A stop that finds a sidecar just restarted (its SIGTERM handler not yet set) waits
    for its announcement before signalling it: it died of the SIGTERM before, and the stop
    said "md stopped with signal 15"."""
    sup = make_supervisor()
    sup.start()
    md = next(sc for sc in sup.sidecars if sc.name == "md")
    assert md.process is not None
    md.process.send_signal(signal.SIGKILL)
    md.process.wait(timeout=30)
    sup.watch(until=lambda: md.restarts > 0 and md.process is not None, tick_s=0.001)
    assert md.announcement() is None  # just spawned: the stop comes before it is up
    assert sup.stop() == []


def test_a_sidecar_killed_at_the_stop_deadline_is_reported(
    make_supervisor: Callable[..., Supervisor],
) -> None:
    sup = make_supervisor(STUBBORN_MD, stop_timeout_ms=300)
    sup.start()
    md = sup.sidecars[0]
    assert md.name == "md" and md.process is not None
    process = md.process
    report = sup.stop()
    assert report[-1] == "md did not stop within 0.3 s and was killed"
    # a loaded host can make a worker miss 300 ms too (its own stop is not what this
    # test is about): it is then reported first, as the stop takes the workers first
    assert all("worker did not stop within" in line for line in report[:-1]), report
    assert process.returncode == -signal.SIGKILL
    assert instance_segments(sup.instance) == []


def test_a_stop_asked_for_while_starting_ends_the_start(
    make_supervisor: Callable[..., Supervisor],
) -> None:
    sup = make_supervisor()
    sup.request_stop()  # what the SIGINT/SIGTERM handler does
    with pytest.raises(SupervisorError, match="stopped while starting"):
        sup.start()
    assert sup.shards == [] and sup.sidecars == []
    assert instance_segments(sup.instance) == []
