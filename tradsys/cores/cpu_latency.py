"""The CPU latency request an instance holds while it runs (Linux PM QoS).

An idle CPU sleeps in an idle state, and a thread woken onto it runs only once the CPU has
come out of that state again. On bare metal a deep C-state takes tens to hundreds of µs
to leave; on a VM an idle vCPU halts, and waking it is a VM exit and a host scheduling
decision: 45-60 µs measured here, against 6-30 µs for a wake-up on a busy CPU. A
market-data print passes five wake-ups (worker, sidecar, two ZeroMQ I/O threads,
subscriber), so idle exits alone put its median near 100 µs.

Linux lets a process ask for a bound: writing a 32-bit µs value to
``/dev/cpu_dma_latency`` and keeping the file open keeps every CPU in idle states that
wake within that bound (0: polling only). The request lasts exactly as long as the file
is open, so it dies with the process that holds it, a crash included: nothing to undo.
It costs what it saves: idle CPUs stay awake (power, and on a VM host CPU time).

``[engine] cpu_latency_us`` (-1: no request, the default) makes the supervisor hold one
for the instance's lifetime. Opening the file needs root (or a udev rule giving the
engine's user write access to it).

The request binds only a cpuidle driver's choice of state. A kernel with no cpuidle
driver (``current_driver`` "none": some VMs, Firecracker's among them) idles every CPU
in its default loop -- ``HLT``, a VM exit -- whatever is asked; there only ``idle=poll``
on the kernel command line makes idle CPUs poll. :func:`cpuidle_driver` tells which
host this is, so that the supervisor and ``tradsys tune check`` say so instead of
reporting a request that changes nothing.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

DEVICE = Path("/dev/cpu_dma_latency")
CPUIDLE_DRIVER = "sys/devices/system/cpu/cpuidle/current_driver"
NO_REQUEST = -1
MAX_LATENCY_US = 2_000_000_000  # the kernel takes a signed 32-bit value
_VALUE = struct.Struct("=i")


class CpuLatencyError(OSError):
    """The request could not be made; the message names the file and the reason."""


class CpuLatencyRequest:
    """One held request: made on construction, withdrawn by :meth:`close`."""

    def __init__(self, latency_us: int, device: Path = DEVICE) -> None:
        if not 0 <= latency_us <= MAX_LATENCY_US:
            raise ValueError(f"cpu latency {latency_us} µs: 0..{MAX_LATENCY_US}")
        self.latency_us = latency_us
        self.device = device
        try:
            self._fd: int | None = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise CpuLatencyError(
                exc.errno, f"cannot hold a CPU latency request: {device}: {exc.strerror}"
            ) from None
        try:
            os.write(self._fd, _VALUE.pack(latency_us))
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            raise CpuLatencyError(
                exc.errno, f"cannot hold a CPU latency request: writing {device}: {exc.strerror}"
            ) from None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        """Withdraw the request (closing the file is what withdraws it). Idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CpuLatencyRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def effective_latency_us(device: Path = DEVICE) -> int | None:
    """The bound every CPU now keeps (the smallest request held by anyone), or None when
    it cannot be read (not Linux, or not root)."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, _VALUE.size)
    finally:
        os.close(fd)
    return int(_VALUE.unpack(raw)[0]) if len(raw) == _VALUE.size else None


def cpuidle_driver(root: Path = Path("/")) -> str | None:
    """The cpuidle driver choosing idle states (``intel_idle``, ``acpi_idle``,
    ``haltpoll``...), or None when there is none: then no latency request has anything
    to act on. ``root`` is "/" except in tests."""
    try:
        name = (root / CPUIDLE_DRIVER).read_text().strip()
    except OSError:
        return None
    return None if name in ("", "none") else name


def halts_whatever_is_asked(root: Path = Path("/")) -> bool:
    """Whether idle CPUs halt on this host whatever a latency request asks: no cpuidle
    driver, and the kernel not booted with ``idle=poll`` (which polls without one)."""
    if cpuidle_driver(root) is not None:
        return False
    try:
        words = (root / "proc/cmdline").read_text().split()
    except OSError:
        return True
    return "idle=poll" not in words
