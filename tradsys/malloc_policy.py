"""Keeping what a process frees (glibc ``mallopt``), for hosts that take freed memory back.

A VM with free page reporting (virtio-balloon ``VIRTIO_BALLOON_F_REPORTING``) hands each
free 2 MiB block of the guest back to its host, a pass every couple of seconds while
there is freed memory to report. On the 2-vCPU sandbox the benches run on, each pass
stopped the whole VM -- both vCPUs at once -- for 10-30 ms (``tradsys tune stalls``
beside ``/sys/module/page_reporting/parameters/reported_kib``: every machine-wide stall
of an e2e run fell inside a reporting pass). A process that frees a few GiB (a load
generator's per-order arrays after an overloaded run) thereby stalls every process of
the machine for the next ~10 s, and the next touch of that memory faults it back in
from the host (~12 µs per 4 KiB page there).

glibc returns memory two ways: a big block (over the dynamic ``mmap`` threshold, 128 KiB
to 32 MiB) is its own mapping and ``free`` unmaps it; the heap's free top is trimmed
past ``M_TRIM_THRESHOLD``. :func:`keep_freed_memory` turns both off, so freed memory
stays with the process for its next allocations. The cost: the process's footprint is
its high-water mark, and big blocks share the heap (fragmentation), which suits a process
with a steady working set -- a load generator, an order-entry client -- not every one.
"""

from __future__ import annotations

import ctypes

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = -1  # M_TRIM_THRESHOLD -1: no trimming at all


def keep_freed_memory() -> bool:
    """Stop this process handing freed memory back to the kernel: no ``mmap``'d blocks,
    no heap trimming. False where it cannot be set (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
