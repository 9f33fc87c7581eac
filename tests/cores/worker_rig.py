"""What the worker tests share: a shard's rings and control block made the way the
supervisor makes them (the test keeps them across worker restarts), the test's own ends
of the rings, and the bodies of worker child processes.

The test plays the gateway (producer of commands, consumer of events and market data)
and, in the crash test, the supervisor.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from tradsys.cores.control import WorkerControl
from tradsys.cores.worker import WorkerSpec, main
from tradsys.matching import CEngine, Instrument
from tradsys.matching.workload import sample_instruments
from tradsys.ring import Ring, WaitStrategy, segment_name
from tradsys.wire import COMMAND_DTYPE, EVENT_DTYPE, LAYOUT_VERSION, MD_DTYPE, RECORD_SIZE

SHARD = 0
POLITE = WaitStrategy.spin_park()


@dataclass
class ShardRig:
    """The rings and control block of one shard, plus the test's ends of the rings."""

    instance: str
    data_dir: Path
    capacity: int = 4096
    owned: list[Ring] = field(default_factory=list)
    control: WorkerControl | None = None
    commands: Ring | None = None
    events: Ring | None = None
    md: Ring | None = None
    event_bytes: bytearray = field(default_factory=bytearray)
    md_bytes: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        for role in ("cmd", "evt", "md"):
            self.owned.append(
                Ring.create(
                    segment_name(self.instance, role, SHARD),
                    slot_size=RECORD_SIZE,
                    capacity=self.capacity if role == "cmd" else self.capacity * 4,
                    layout_version=LAYOUT_VERSION,
                )
            )
        self.control = WorkerControl.create(segment_name(self.instance, "ctl", SHARD))
        attach = {"slot_size": RECORD_SIZE, "layout_version": LAYOUT_VERSION}
        self.commands = Ring.attach(self.owned[0].name, role="producer", **attach)
        self.events = Ring.attach(self.owned[1].name, role="consumer", **attach)
        self.md = Ring.attach(self.owned[2].name, role="consumer", **attach)
        self._ev_buf = np.zeros(1024, EVENT_DTYPE)
        self._md_buf = np.zeros(1024, MD_DTYPE)

    def spec(self, **overrides: Any) -> WorkerSpec:
        fields: dict[str, Any] = {
            "instance": self.instance,
            "shard_id": SHARD,
            "instruments": sample_instruments(),
            "data_dir": str(self.data_dir),
            "durability": "group",
            "group_commit_us": 200,
            "wait": "spin-park",
            "commands": self.owned[0].name,
            "events": self.owned[1].name,
            "md": self.owned[2].name,
            "control": self.ctl.name,
        }
        fields.update(overrides)
        return WorkerSpec(**fields)

    @property
    def ctl(self) -> WorkerControl:
        assert self.control is not None
        return self.control

    def push(self, commands: Any) -> int:
        """Push what fits now; return how many went in."""
        assert self.commands is not None
        return self.commands.push_batch(commands)

    def collect(self, wait_s: float = 0.0) -> int:
        """Move whatever the worker published into event_bytes / md_bytes (waiting up to
        wait_s for the first event); return how many events came."""
        assert self.events is not None and self.md is not None
        if wait_s:
            self.events.wait_readable(POLITE, timeout=wait_s)
        got = 0
        while (n := self.events.pop_batch(self._ev_buf)) > 0:
            self.event_bytes += self._ev_buf[:n].tobytes()
            got += n
        while (n := self.md.pop_batch(self._md_buf)) > 0:
            self.md_bytes += self._md_buf[:n].tobytes()
        return got

    @property
    def n_events(self) -> int:
        return len(self.event_bytes) // RECORD_SIZE

    def received_events(self) -> Any:
        return np.frombuffer(bytes(self.event_bytes), EVENT_DTYPE)

    def received_md(self) -> Any:
        return np.frombuffer(bytes(self.md_bytes), MD_DTYPE)

    def wake(self) -> None:
        for ring in self.owned:
            ring.wake()

    def close(self) -> None:
        for ring in (self.commands, self.events, self.md):
            if ring is not None:
                ring.close()
        for ring in self.owned:
            ring.close()
        if self.control is not None:
            self.control.close()


def shard_rig(instance: str, tmp_path: Path) -> Iterator[ShardRig]:
    """The body of each test module's ``rig`` fixture: a rig, always closed."""
    shard = ShardRig(instance, tmp_path / "shard-0")
    try:
        yield shard
    finally:
        shard.close()


def reference_output(
    commands: Any, instruments: list[Instrument] | None = None
) -> tuple[CEngine, Any, Any]:
    """A CEngine fed every command directly: the engine, its events and market data."""
    engine = CEngine()
    for ins in instruments or sample_instruments():
        engine.add_instrument(ins)
    out = engine.process(np.ascontiguousarray(commands, COMMAND_DTYPE))
    return engine, out.events, out.md


def worker_child(spec_json: str) -> None:
    """A worker process body for ``Children.start`` (exit code = run_worker's)."""
    sys.exit(main([spec_json]))


def spec_json(spec: WorkerSpec) -> str:
    return msgspec.json.encode(spec).decode()
