"""The engine processes of a running instance, as `tradsys tune` needs them.

A check run from a shell reads that shell's limits unless it is told whose to read, and
a probe that spins on a CPU takes it from whatever runs there. So `tune check` reads the
running engine's own limits and timer slack (/proc/PID/...), and `tune check` and `tune
jitter` keep off the CPUs the running engine holds. Everything comes from the
supervisor's status file (the pids and cores it started) and /proc (the CPUs an unpinned
process may use); nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tradsys.tune.host import Host, format_cpu_list

if TYPE_CHECKING:
    from tradsys.config import Config


@dataclass(frozen=True)
class EngineProcess:
    """A shard worker or sidecar (gateway, md) of the running instance."""

    name: str  # "shard 0", "gateway", "md"
    pid: int
    core: int | None  # the core the supervisor pinned it to; None: unpinned


@dataclass(frozen=True)
class RunningInstance:
    """The instance a configuration names, while its supervisor runs."""

    instance: str
    processes: tuple[EngineProcess, ...]

    def cpus(self, host: Host) -> dict[int, list[str]]:
        """CPU → the engine processes that run there: a pinned process's core (the
        gateway pins its pump thread there and keeps its other threads off it), an
        unpinned one's allowed CPUs (every online CPU when they cannot be read)."""
        out: dict[int, list[str]] = {}
        for proc in self.processes:
            if proc.core is not None:
                cpus = {proc.core}
            else:
                cpus = host.cpus_allowed(proc.pid) or host.online_cpus()
            for cpu in cpus:
                out.setdefault(cpu, []).append(proc.name)
        return dict(sorted(out.items()))

    def describe(self, host: Host, only: set[int] | None = None) -> str:
        """Which process holds which CPU, for a message: "shard 0 on 2, gateway on 3"."""
        by_name: dict[str, set[int]] = {}
        for cpu, names in self.cpus(host).items():
            if only is None or cpu in only:
                for name in names:
                    by_name.setdefault(name, set()).add(cpu)
        return ", ".join(f"{name} on {format_cpu_list(cpus)}" for name, cpus in by_name.items())


def running_instance(config: Config) -> RunningInstance | None:
    """The configuration's instance if its supervisor runs, else None."""
    from tradsys.cores.status import supervisor_doc

    try:
        doc = supervisor_doc(config)
    except FileNotFoundError:
        return None
    procs = [
        EngineProcess(f"shard {s['shard']}", int(s["pid"]), s.get("core"))
        for s in doc.get("shards", [])
        if s.get("pid")  # None while it restarts
    ]
    procs += [
        EngineProcess(str(sc["name"]), int(sc["pid"]), sc.get("core"))
        for sc in doc.get("sidecars", [])
        if sc.get("pid")
    ]
    return RunningInstance(config.engine.instance, tuple(procs))
