"""POSIX shared-memory segments: naming, creation, attachment, clean-up, stale reclaim.

Names follow ``/tradsys.<instance>.<role>.<n>`` so one instance's segments can be listed
(and reclaimed) without touching another's. The creator owns a segment and unlinks it on
close; everyone else only maps and unmaps. Segments are created owner-only (0600).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import posix_ipc

from tradsys._native import ffi
from tradsys.files import reserve
from tradsys.interrupts import interrupts_deferred
from tradsys.ring.errors import RingAttachError, SegmentExistsError

SHM_DIR = Path("/dev/shm")
PREFIX = "tradsys"
_COMPONENT = re.compile(r"^[A-Za-z0-9_-]+$")


def segment_name(instance: str, role: str, n: int = 0) -> str:
    """The segment name for ``role`` number ``n`` of an instance."""
    for label, value in (("instance", instance), ("role", role)):
        if not _COMPONENT.fullmatch(value):
            raise ValueError(
                f"{label} {value!r} may hold only letters, digits, '_' and '-' "
                "(it becomes part of a shared-memory name)"
            )
    if n < 0:
        raise ValueError(f"segment number must be >= 0, got {n}")
    return f"/{PREFIX}.{instance}.{role}.{n}"


def instance_segments(instance: str | None = None) -> list[str]:
    """Names of the TradSys segments present now, of one instance or of all."""
    pattern = f"{PREFIX}.{instance}." if instance else f"{PREFIX}."
    if not SHM_DIR.is_dir():
        return []
    return sorted("/" + p.name for p in SHM_DIR.iterdir() if p.name.startswith(pattern))


def _boot_tag() -> int:
    """16 bits of this boot's id: a process start named only by time since boot could be
    matched by another process after a reboot (same pid, same tick, on a fast fixed boot)."""
    global _BOOT_TAG
    if _BOOT_TAG is None:
        try:
            boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
            _BOOT_TAG = int(boot_id.replace("-", "")[:4], 16)
        except (OSError, ValueError):
            _BOOT_TAG = 0
    return _BOOT_TAG


_BOOT_TAG: int | None = None
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | None) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses):
    index 0 is the state, index 19 the start time in clock ticks since boot."""
    text = Path(f"/proc/{pid if pid is not None else 'self'}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_start_us(pid: int | None = None) -> int:
    """A name for a process's start: this boot's tag in the top 16 bits, the start in µs
    since boot below. Not wall-clock time (psutil's create_time): that moves when the
    clock steps (NTP, a VM resumed, ``date -s``), and a live creator would then look like
    a reused pid, its segments "stale" and reclaimed under it. With the pid it names one
    process; raises OSError if there is no such process."""
    ticks = int(_stat_fields(pid)[19])
    return (_boot_tag() << 48) | (ticks * 1_000_000 // _TICKS_PER_S)


def process_alive(pid: int, start_us: int) -> bool:
    """Whether the process that had ``pid`` and started at ``start_us`` (from
    :func:`process_start_us`; 0: any process with that pid) still runs, not as a zombie."""
    if pid <= 0:
        return False
    try:
        fields = _stat_fields(pid)
    except (OSError, ValueError):
        return False
    if fields[0] in ("Z", "X"):
        return False
    started = (_boot_tag() << 48) | (int(fields[19]) * 1_000_000 // _TICKS_PER_S)
    return start_us == 0 or started == start_us


# Every page of a segment is mapped when it is created or attached (MAP_POPULATE), not at
# its first touch: a ring's pages are first written on the hot path, by the first records
# to reach them, and each such fault (shmem allocation and zeroing on the creator's side, a
# page-table fill on the other) lands on an order.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


class Segment:
    """A mapped POSIX shared-memory segment.

    Use :meth:`create` (the caller becomes the owner and unlinks it on :meth:`close`) or
    :meth:`attach` (map an existing one; close only unmaps).
    """

    def __init__(self, name: str, memory: mmap.mmap, owner: bool) -> None:
        self.name = name
        self.memory = memory
        self.owner = owner
        self._closed = False

    @property
    def size(self) -> int:
        return len(self.memory)

    @classmethod
    def create(cls, name: str, size: int) -> Segment:
        """Create a new owner-only segment of ``size`` bytes, zero-filled.

        Raises SegmentExistsError if the name is taken: the caller decides whether the
        existing one is stale (see :func:`tradsys.ring.reclaim_stale`).
        """
        if size <= 0:
            raise ValueError(f"segment {name}: size must be > 0, got {size}")
        shm: posix_ipc.SharedMemory | None = None
        try:
            # a Ctrl-C landing as the call returns would drop the handle of a segment just
            # made, and nothing would unlink it: it is raised once ``shm`` is set
            with interrupts_deferred():
                shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=size)
            os.fchmod(shm.fd, 0o600)  # the umask may only narrow it, but be explicit
            # /dev/shm full (a container's 64 MiB): told here, not as a SIGBUS mid-run
            reserve(
                shm.fd,
                size,
                f"shared-memory segment {name}",
                f"is {SHM_DIR} full? `df -h {SHM_DIR}`; a container may need --shm-size",
            )
            memory = mmap.mmap(shm.fd, size, flags=_MAP_FLAGS)
        except posix_ipc.ExistentialError:
            raise SegmentExistsError(
                f"shared-memory segment {name} already exists; if its creator is gone, "
                "reclaim it with `tradsys.ring.reclaim_stale()` or remove "
                f"{SHM_DIR}{name}"
            ) from None
        except BaseException:
            if shm is not None:
                shm.close_fd()
                shm.unlink()
            raise
        shm.close_fd()
        return cls(name, memory, owner=True)

    @classmethod
    def attach(cls, name: str) -> Segment:
        """Map an existing segment of whatever size it has."""
        try:
            shm = posix_ipc.SharedMemory(name)
        except posix_ipc.ExistentialError:
            raise RingAttachError(
                f"shared-memory segment {name} does not exist: is the process that creates "
                "it running, and under the same instance name?"
            ) from None
        try:
            if shm.size == 0:
                raise RingAttachError(f"shared-memory segment {name} is empty (size 0)")
            memory = mmap.mmap(shm.fd, shm.size, flags=_MAP_FLAGS)
        finally:
            shm.close_fd()
        return cls(name, memory, owner=False)

    def unlink(self) -> None:
        """Remove the name; the memory stays mapped until every user closes it."""
        with contextlib.suppress(posix_ipc.ExistentialError):
            posix_ipc.unlink_shared_memory(self.name)

    def close(self) -> None:
        """Unmap, and unlink if this process created the segment. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.memory.close()
        if self.owner:
            self.unlink()


def unlink_quietly(names: Iterator[str] | list[str]) -> list[str]:
    """Unlink each named segment that exists; return the names removed."""
    removed = []
    for name in names:
        try:
            posix_ipc.unlink_shared_memory(name)
            removed.append(name)
        except posix_ipc.ExistentialError:
            pass
    return removed


class MappedStruct:
    """A typed view (``cdata``, through the cffi buffer ``_base``) over a mapped
    :class:`Segment`: what closing such a view takes, written once for the control block
    and the stage-latency segment. The view drops its pointers before the unmap, so
    nothing can touch the memory after it."""

    _segment: Segment
    _base: Any
    cdata: Any

    def close(self) -> None:
        """Unmap (and, for the creator, unlink). Idempotent."""
        if self._segment.memory.closed:
            return
        self.cdata = None
        ffi.release(self._base)
        self._segment.close()

    @property
    def closed(self) -> bool:
        return self._segment.memory.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
