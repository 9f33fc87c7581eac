"""`tradsys status`: what a running instance is doing, read from shared memory.

Everything comes from the instance's control blocks and ring headers (and the
supervisor's status file for pids and restarts), so asking costs the engine nothing.
Rates are the difference of two samples ``interval_s`` apart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tradsys import wire
from tradsys.config import Config
from tradsys.cores.control import WorkerControl, WorkerState
from tradsys.cores.kill_switches import KILL_FILE, KillSwitchFileError, read_kill_switches
from tradsys.ring import Ring
from tradsys.ring.segment import process_alive

SYMBOLS_SHOWN = 12
"""Symbols a line names one by one; beyond, it gives the count and a few (a shard of
1 000 symbols made the `ready` banner's line several KB)."""


def symbols_text(names: list[str]) -> str:
    """``ACME, GLOBEX, INITECH``; past SYMBOLS_SHOWN, ``1000 symbols: S0, S1, S2, ..., S999``."""
    if len(names) <= SYMBOLS_SHOWN:
        return ", ".join(names)
    return f"{len(names)} symbols: {', '.join(names[:3])}, ..., {names[-1]}"


def announcement_text(doc: dict[str, Any]) -> str:
    """A sidecar's announcement on one line (``key value, ...``), a long list of symbols
    abbreviated."""
    parts = []
    for key, value in doc.items():
        if key in ("name", "pid"):
            continue
        if isinstance(value, list) and len(value) > SYMBOLS_SHOWN:
            value = f"[{symbols_text([str(v) for v in value])}]"
        parts.append(f"{key} {value}")
    return ", ".join(parts)


def _fill(name: str) -> str:
    try:
        with Ring.attach(
            name, slot_size=wire.RECORD_SIZE, layout_version=wire.LAYOUT_VERSION
        ) as ring:
            info = ring.info()
            return f"{info.fill}/{info.capacity}"
    except Exception:
        return "?"


def supervisor_doc(config: Config) -> dict[str, Any]:
    """The running supervisor's status file (its pid, shards, segments, sidecars).

    FileNotFoundError, with a sentence, when the instance is not running: no file, or a
    file whose supervisor died without stopping the instance (a SIGKILL leaves it)."""
    status_file = Path(config.engine.data_dir) / config.engine.instance / "supervisor.json"
    if not status_file.exists():
        raise FileNotFoundError(
            f"instance {config.engine.instance!r} is not running (no {status_file}); "
            "start it with `tradsys run`, or pass the --config it runs with"
        )
    doc: dict[str, Any] = json.loads(status_file.read_text())
    pid, start_us = int(doc["supervisor_pid"]), int(doc.get("supervisor_start_us", 0))
    if not process_alive(pid, start_us):
        raise FileNotFoundError(
            f"instance {config.engine.instance!r} is not running: its supervisor (pid {pid}) "
            "died without stopping it; `tradsys run` starts it again from its snapshots and "
            "removes what the dead one left"
        )
    return doc


def shard_row_state(shard: dict[str, Any], snap: Any, now_ns: int) -> tuple[str, str, str]:
    """(pid, state, heartbeat age) of one shard's row, from the supervisor's doc and its
    worker's control block. A worker being replaced reads "restarting" from its reap until
    its successor has recovered -- reaped with its restart not yet due (the doc has no
    pid; the control block still names the dead one), then a new process whose control
    block is fresh (no pid, EMPTY) or that is still replaying -- and no heartbeat is "-",
    not an age."""
    age = f"{(now_ns - snap.heartbeat_ns) / 1e6:.0f}ms" if snap.heartbeat_ns else "-"
    down = shard.get("pid", snap.pid) is None
    early = not snap.pid or snap.state in (
        WorkerState.EMPTY,
        WorkerState.STARTING,
        WorkerState.RECOVERING,
    )
    if down or (early and shard["restarts"]):
        return (str(snap.pid) if snap.pid and not down else "-"), "restarting", age
    return (str(snap.pid) if snap.pid else "-"), WorkerState(snap.state).name.lower(), age


def read_status(config: Config, interval_s: float = 0.5) -> str:
    """A human report of every shard of the configured instance.

    Raises FileNotFoundError (with a sentence) when the instance is not running.
    """
    doc = supervisor_doc(config)
    controls = [WorkerControl.attach(s["control"]) for s in doc["shards"]]
    try:
        before = [c.snapshot() for c in controls]
        t0 = time.monotonic()
        time.sleep(interval_s)  # two samples make a rate
        after = [c.snapshot() for c in controls]
        dt = time.monotonic() - t0
    finally:
        for c in controls:
            c.close()
    now_ns = time.monotonic_ns()
    lines = [
        f"instance {doc['instance']!r}: supervisor pid {doc['supervisor_pid']}, "
        f"{len(doc['shards'])} shard(s)",
        f"{'shard':>5} {'pid':>7} {'core':>4} {'state':<10} {'restarts':>8} {'cmds/s':>10} "
        f"{'journaled':>10} {'synced':>10} {'snapshot':>10} {'cmd ring':>12} {'evt ring':>12} "
        f"{'md ring':>12} {'heartbeat':>10}",
    ]
    for shard, b, a in zip(doc["shards"], before, after, strict=True):
        rate = max(0, a.commands - b.commands) / dt if a.pid == b.pid else 0.0
        core = "-" if shard["core"] is None else str(shard["core"])
        cmd, evt, md = (_fill(n) for n in shard["rings"])
        pid, state, age = shard_row_state(shard, a, now_ns)
        lines.append(
            f"{shard['shard']:>5} {pid:>7} {core:>4} {state:<10} "
            f"{shard['restarts']:>8} {rate:>10.0f} {a.journaled_seq:>10} {a.synced_seq:>10} "
            f"{a.snapshot_seq:>10} {cmd:>12} {evt:>12} {md:>12} {age:>10}"
        )
        if a.error:
            lines.append(f"      last error: {a.error}")
    sidecars = doc.get("sidecars", [])
    lines.extend(_sidecar_lines(config, sidecars))
    running = {str(sc["name"]): sc["pid"] for sc in sidecars}
    if "gateway" in running:
        lines.extend(_sessions_line(config, running["gateway"]))
    if config.gateway.enabled:  # no gateway, no kill switch to apply
        lines.append(_kill_switch_line(config))
    if "md" in running:
        lines.extend(_phases_line(config, running["md"]))
    return "\n".join(lines)


def _stats_of(path: Path, pid: object) -> dict[str, Any] | None:
    """A sidecar's stats file, if its running process (``pid``) wrote it: one a dead
    predecessor left would pass for the present."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if doc.get("pid") == pid else None


def _sessions_line(config: Config, pid: object) -> list[str]:
    """How many sessions the gateway serves and live orders it holds (its stats file,
    rewritten a few times a second); nothing before it first wrote one."""
    from tradsys.cores.gateway import stats_path

    stats = _stats_of(stats_path(config), pid)
    if stats is None:
        return []
    live = stats.get("core", {}).get("live_orders", 0)
    down = stats.get("shards_down") or []
    return [
        f"gateway sessions: {stats.get('sessions', 0)} ({stats.get('colocated_connections', 0)} "
        f"colocated, {stats.get('tcp_connections', 0)} TCP), {live} live order(s)"
        + (f"; shard(s) {', '.join(map(str, down))} down: SHARD_UNAVAILABLE" if down else "")
    ]


def _phases_line(config: Config, pid: object) -> list[str]:
    """The symbols not trading continuously (a halt someone left on, an auction call),
    as the md sidecar last published them (its stats file, once a second)."""
    from tradsys.marketdata.stats import stats_path

    stats = _stats_of(stats_path(config.instance_dir), pid)
    if stats is None or "phases" not in stats:
        return []
    phases: dict[str, str] = stats["phases"]
    if not phases:
        return ["trading phases: every symbol continuous"]
    by_phase: dict[str, list[str]] = {}
    for symbol, phase in sorted(phases.items()):
        by_phase.setdefault(phase, []).append(symbol)
    parts = [f"{phase} {symbols_text(names)}" for phase, names in sorted(by_phase.items())]
    return ["trading phases: " + "; ".join(parts) + " (the rest continuous)"]


def _kill_switch_line(config: Config) -> str:
    """The kill switches an operator left on (tradsys.cores.kill_switches): what every
    gateway of the instance applies, this run's and the next's."""
    try:
        switches = read_kill_switches(config.instance_dir / KILL_FILE)
    except KillSwitchFileError as exc:
        return f"kill switches: unreadable: {exc}"
    return f"kill switches: {switches.describe()}"


def _sidecar_lines(config: Config, sidecars: list[dict[str, object]]) -> list[str]:
    """One line per sidecar: its pid and restarts, and what it announced (endpoints,
    sockets, counters it chooses to publish)."""
    from tradsys.cores.sidecar import read_announcement

    lines = []
    for sc in sidecars:
        name = str(sc["name"])
        doc = read_announcement(config, name) or {}
        extra = announcement_text(doc)
        # the gateway's core pins its pump thread alone (the event loop is elsewhere)
        where = "" if sc.get("core") is None else f", core {sc['core']}"
        if name == "gateway" and where:
            where += " (pump)"
        lines.append(
            f"{name}: pid {sc['pid']}{where}, restarts {sc['restarts']}"
            + (f"; {extra}" if extra else "; not serving")
        )
    return lines
