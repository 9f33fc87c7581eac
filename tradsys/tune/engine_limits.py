"""The `memlock` and `timer slack` lines of `tradsys tune check`: limits a process
inherits from what starts it, so they are read from the running engine's processes, and
with none running only shown (this shell's say nothing about the engine's: the systemd
unit sets its own)."""

from __future__ import annotations

from tradsys.cores.memory_lock import CAP_IPC_LOCK
from tradsys.tune.findings import Finding, Placement, Verdict
from tradsys.tune.host import Host

# Default timer slack is 50 µs: every timed wait may oversleep by that much.
TIMER_SLACK_OK_NS = 1_000


def memlock_finding(host: Host, place: Placement) -> Finding:
    """Whether the engine may lock its memory: the rule of tradsys/cores/memory_lock.py
    (CAP_IPC_LOCK, or an unlimited RLIMIT_MEMLOCK: with MCL_FUTURE a finite limit surfaces
    later as allocation failures), applied to the running engine's processes. This
    process's own limit says nothing about theirs: the unit that starts the engine sets
    its own (LimitMEMLOCK=infinity)."""
    if not place.lock_memory:
        return Finding(
            "memlock", Verdict.OK, "not needed: [engine] lock_memory = false locks nothing"
        )
    if place.running is None:
        limit = host.memlock_bytes
        shown = "unlimited" if limit is None else f"{limit // 1024} KiB"
        return Finding(
            "memlock",
            Verdict.OK,
            f"no instance running; this shell's RLIMIT_MEMLOCK is {shown}, but the engine "
            "gets its own from what starts it (tradsys.service: LimitMEMLOCK=infinity), "
            "and `tradsys run` refuses to start when it cannot lock",
        )
    limited = []
    for proc in place.running.processes:
        if host.has_capability(proc.pid, CAP_IPC_LOCK):
            continue
        soft = host.soft_limit(proc.pid, "Max locked memory")
        if soft is not None and soft != "unlimited":
            limited.append(f"{proc.name} (pid {proc.pid}) {int(soft) // 1024} KiB")
    if limited:
        return Finding(
            "memlock",
            Verdict.WARN,
            f"RLIMIT_MEMLOCK of the running engine: {', '.join(limited)}, without "
            "CAP_IPC_LOCK: it cannot lock all its memory",
            "LimitMEMLOCK=infinity in the systemd unit (tuning/tradsys.service), then "
            "restart the instance",
        )
    return Finding(
        "memlock",
        Verdict.OK,
        "the running engine's processes may lock their memory (RLIMIT_MEMLOCK unlimited "
        "or CAP_IPC_LOCK)",
    )


def timer_slack_finding(host: Host, place: Placement) -> Finding:
    """The running engine's timer slack (a process inherits its parent's: the unit's
    TimerSlackNSec), not this process's: run from a shell, that is the default 50 µs
    whatever the engine has."""
    if place.running is None:
        slack = host.read("/proc/self/timerslack_ns")
        return Finding(
            "timer slack",
            Verdict.OK,
            f"no instance running; this shell's timer slack is {slack or '?'} ns, but the "
            "engine gets its own from what starts it (tradsys.service: TimerSlackNSec=1)",
        )
    slack_of = {p: host.read(f"/proc/{p.pid}/timerslack_ns") for p in place.running.processes}
    slow = [
        f"{p.name} (pid {p.pid}) {int(ns) // 1000} µs"
        for p, ns in slack_of.items()
        if ns is not None and int(ns) > TIMER_SLACK_OK_NS
    ]
    if slow:
        return Finding(
            "timer slack",
            Verdict.WARN,
            f"timer slack of the running engine: {', '.join(slow)}: a timed wait may "
            "oversleep that much",
            "TimerSlackNSec=1 in the systemd unit (tuning/tradsys.service), then restart "
            "the instance",
        )
    known = sorted({int(ns) for ns in slack_of.values() if ns is not None})
    if not known:
        return Finding(
            "timer slack",
            Verdict.OK,
            "the running engine's timer slack cannot be read here (needs its user or root)",
        )
    return Finding(
        "timer slack",
        Verdict.OK,
        f"timer slack of the running engine: {'/'.join(map(str, known))} ns",
    )
