"""What a check of `tradsys tune check` returns, and what it looks at besides the host: a
finding (``ok``, ``warn`` or ``bad``, with what to change) and the placement of the
configuration's processes (and, while the instance runs, its processes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from tradsys.config import Config, engine_processes
from tradsys.cores.cpu_latency import NO_REQUEST
from tradsys.tune.host import Host
from tradsys.tune.running import RunningInstance


class Verdict(Enum):
    OK = "ok"
    WARN = "warn"
    BAD = "bad"


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked, what was found, what to change."""

    check: str
    verdict: Verdict
    found: str
    fix: str = ""


@dataclass(frozen=True)
class Placement:
    """The processes the configuration runs and the cores they are pinned to."""

    pinned: dict[str, int]  # process → core
    unpinned: list[str]
    # [engine] cpu_latency_us: the bound on idle exits the instance holds (-1: none)
    cpu_latency_us: int = NO_REQUEST
    # [engine] lock_memory: every engine process locks its memory at start
    lock_memory: bool = False
    # the instance's engine processes while it runs: their own limits are read, not this
    # process's
    running: RunningInstance | None = None

    @classmethod
    def of(cls, config: Config, running: RunningInstance | None = None) -> Placement:
        pinned: dict[str, int] = {}
        unpinned: list[str] = []
        for name, core in engine_processes(config):
            if core is None:
                unpinned.append(name)
            else:
                pinned[name] = core
        return cls(
            pinned, unpinned, config.engine.cpu_latency_us, config.engine.lock_memory, running
        )

    @property
    def cores(self) -> set[int]:
        return set(self.pinned.values())

    @property
    def count(self) -> int:
        return len(self.pinned) + len(self.unpinned)


Check = Callable[[Host, Placement], list[Finding]]
