"""Locking an engine process's memory in RAM (``[engine] lock_memory``).

A page the kernel reclaims is read back on its next touch: a major fault, tens of µs to
milliseconds, on whatever path touches it first. A long-running engine has code and data
that stay cold for minutes (a rare reject, the login path, the snapshot writer) and
reclaim takes exactly those: memory pressure, or proactive reclaim such as a DAMON
``pageout`` scheme (``kdamond``, which VM hosts run to hand idle guest memory back).

``mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`` pins every page the process has and
every page it faults in later, without touching pages it never uses (MCL_ONFAULT: a
thread's 8 MiB stack reservation stays a reservation). Each engine process (shard worker,
gateway, market-data sidecar) locks itself at start when the instance asks for it.

With MCL_FUTURE, a process over its ``RLIMIT_MEMLOCK`` gets allocation failures later,
anywhere; so locking is only attempted with no limit in the way: CAP_IPC_LOCK (root), or
an unlimited RLIMIT_MEMLOCK (``LimitMEMLOCK=infinity``, tuning/tradsys.service).
"""

from __future__ import annotations

import ctypes
import os
import resource
from collections.abc import Callable
from pathlib import Path

MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4
CAP_IPC_LOCK = 14

_libc = ctypes.CDLL(None, use_errno=True)


class MemoryLockError(OSError):
    """Memory cannot be locked here; the message says why and what to change."""


def _has_cap_ipc_lock(status: Path = Path("/proc/self/status")) -> bool:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_IPC_LOCK & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def why_not_lockable() -> str | None:
    """None if this process may lock all of its memory, else the reason it may not."""
    if _has_cap_ipc_lock():
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY:
        return None
    return (
        f"RLIMIT_MEMLOCK is {soft // 1024} KiB and the process lacks CAP_IPC_LOCK: set "
        "LimitMEMLOCK=infinity (tuning/tradsys.service, or ulimit -l unlimited), or run "
        "as root"
    )


def lock_memory() -> None:
    """Lock every page this process has and will fault in. MemoryLockError if it may
    not (checked first: a limit would only bite later, as an allocation failure)."""
    reason = why_not_lockable()
    if reason is not None:
        raise MemoryLockError(1, f"cannot lock memory: {reason}")
    if _libc.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0:
        err = ctypes.get_errno()
        raise MemoryLockError(err, f"cannot lock memory: mlockall: {os.strerror(err)}")


def locked_kib(pid: int | str = "self") -> int:
    """How much of a process's resident memory is locked (KiB, smaps_rollup ``Locked``).
    Not VmLck: that counts whole locked mappings, reservations never touched included."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Locked:"):
            return int(line.split()[1])
    return 0


def lock_if_asked(wanted: bool, who: str, log: Callable[[str], None]) -> bool:
    """At a process's start: lock its memory when the instance asks ([engine]
    lock_memory); False (after logging why) if it asked and cannot have it."""
    if not wanted:
        return True
    try:
        lock_memory()
    except MemoryLockError as exc:
        log(f"{who}: engine.lock_memory = true: {exc.strerror}")
        return False
    return True
