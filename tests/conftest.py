"""Fixtures shared by the whole suite: unique instance names with a shared-memory leak
check, rings that are closed at teardown, and child processes that are always stopped.

Nothing a test makes may outlive it in /dev/shm: the ``instance`` fixture removes what a
test left behind and, if the test had otherwise passed, fails it for the leak. A last
check at the end of the session catches anything made outside that fixture.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

import pytest

from tradsys.ring import Ring, instance_segments, segment_name
from tradsys.ring.segment import unlink_quietly
from tradsys.wire import LAYOUT_VERSION, RECORD_SIZE

# Every instance name of this run starts with this, so the session check can tell this
# run's segments from another run's (or a live engine's) and touch only its own.
RUN_PREFIX = f"t{os.getpid()}-"
_instance_numbers = itertools.count()

# Seconds a child gets to die after SIGKILL before the fixture reports it as stuck.
CHILD_JOIN_TIMEOUT = 10.0


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep each phase's report on the item so fixtures can see how the test went.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _test_passed(node: pytest.Item) -> bool:
    report = getattr(node, "report_call", None)
    return report is not None and report.passed


@pytest.fixture
def instance(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh instance name; its segments must all be gone when the test ends."""
    name = f"{RUN_PREFIX}{next(_instance_numbers)}"
    yield name
    leftovers = instance_segments(name)
    unlink_quietly(leftovers)
    if leftovers and _test_passed(request.node):
        pytest.fail(f"the test left shared-memory segments behind: {', '.join(leftovers)}")


@dataclass
class RingPair:
    """Both ends of one ring, made in the test process."""

    name: str
    producer: Ring
    consumer: Ring


class RingFactory:
    """Makes rings under one instance name and closes them all (attachers first)."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self._numbers = itertools.count()
        self._rings: list[Ring] = []

    def name(self, role: str = "ring") -> str:
        return segment_name(self.instance, role, next(self._numbers))

    def create(
        self,
        name: str | None = None,
        *,
        capacity: int = 16,
        slot_size: int = RECORD_SIZE,
        layout_version: int = LAYOUT_VERSION,
        role: Any = "producer",
    ) -> Ring:
        ring = Ring.create(
            name or self.name(),
            slot_size=slot_size,
            capacity=capacity,
            layout_version=layout_version,
            role=role,
        )
        self._rings.append(ring)
        return ring

    def attach(
        self,
        name: str,
        *,
        slot_size: int = RECORD_SIZE,
        layout_version: int = LAYOUT_VERSION,
        capacity: int | None = None,
        role: Any = "consumer",
    ) -> Ring:
        ring = Ring.attach(
            name,
            slot_size=slot_size,
            layout_version=layout_version,
            capacity=capacity,
            role=role,
        )
        self._rings.append(ring)
        return ring

    def pair(self, *, capacity: int = 16, slot_size: int = RECORD_SIZE) -> RingPair:
        """A ring created as the producer and attached as the consumer."""
        producer = self.create(capacity=capacity, slot_size=slot_size, role="producer")
        consumer = self.attach(producer.name, slot_size=slot_size, role="consumer")
        return RingPair(producer.name, producer, consumer)

    def close_all(self) -> None:
        # Attachers before owners, so every unmap happens before the unlink.
        for ring in sorted(self._rings, key=lambda r: r.is_owner):
            ring.close()
        self._rings.clear()


@pytest.fixture
def rings(instance: str) -> Iterator[RingFactory]:
    """Make rings for the test; every one is closed (and the owners unlinked) after it."""
    factory = RingFactory(instance)
    try:
        yield factory
    finally:
        factory.close_all()


class Children:
    """Starts child processes with the "spawn" context and stops every one of them.

    ``stop_all`` (run by the fixture, also when the test fails) SIGKILLs whatever still
    runs and joins it with a timeout, so no test leaves a process behind.
    """

    def __init__(self) -> None:
        self.ctx: SpawnContext = multiprocessing.get_context("spawn")
        self._procs: list[SpawnProcess] = []

    def start(self, target: Callable[..., Any], *args: Any) -> SpawnProcess:
        proc = self.ctx.Process(target=target, args=args, daemon=True)
        proc.start()
        self._procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self._procs:
            if proc.exitcode is None:
                proc.kill()
        stuck = []
        for proc in self._procs:
            proc.join(CHILD_JOIN_TIMEOUT)
            if proc.exitcode is None:
                stuck.append(proc.pid)
            else:
                proc.close()
        self._procs.clear()
        if stuck:
            raise RuntimeError(f"child processes {stuck} did not die after SIGKILL")


@pytest.fixture
def children(instance: str) -> Iterator[Children]:
    """Start child processes; all are killed and joined when the test ends.

    It depends on ``instance`` only for the order of teardown: the children are gone
    before the instance's leak check looks at /dev/shm.
    """
    procs = Children()
    try:
        yield procs
    finally:
        procs.stop_all()


_session_leftovers: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Last line of defence: no segment of this run may survive the session."""
    leftovers = [n for n in instance_segments() if n.startswith(f"/tradsys.{RUN_PREFIX}")]
    if leftovers:
        unlink_quietly(leftovers)
        _session_leftovers.extend(leftovers)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _session_leftovers:
        terminalreporter.section("shared-memory leak", sep="=", red=True)
        terminalreporter.write_line(
            f"segments left after the session (now removed): {', '.join(_session_leftovers)}"
        )
