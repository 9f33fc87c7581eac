"""The engine's big blocks go back on huge pages after a fork split them
(``ts_huge_recollapse``, native/huge_alloc.h): a snapshot child's copy-on-write leaves the
parent's 2 MiB mappings split into 4 KiB pages for good, which measured 23-35 % slower
random access, and the snapshot writer collapses them again once the child is gone.

The block is checked through the kernel's own account of its mapping (/proc/self/smaps,
AnonHugePages of the VMA that holds it). Where the kernel gives it no huge pages in the
first place (THP off), there is nothing to restore and the call must say so."""

from __future__ import annotations

import os
from pathlib import Path

from tradsys._native import ffi, lib

BLOCK = 16 << 20
PAGE = 4096


def huge_kib(address: int) -> int:
    """AnonHugePages of the mapping that holds ``address``."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=1)[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "AnonHugePages:":
            return int(line.split()[1])
    return 0


def split_by_a_fork(block: memoryview) -> None:
    """Write every page of the block while a forked child lives, as the worker does while
    a snapshot child walks the engine."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only waits and leaves
        os.read(r, 1)
        os._exit(0)
    try:
        for offset in range(0, len(block), PAGE):
            block[offset] = 2
    finally:
        os.write(w, b"x")
        os.waitpid(child, 0)
        os.close(r)
        os.close(w)


def test_a_block_split_by_a_fork_is_put_back_on_huge_pages() -> None:
    p = lib.ts_huge_alloc(BLOCK)
    assert p != ffi.NULL
    try:
        address = int(ffi.cast("uintptr_t", p))
        block = ffi.buffer(p, BLOCK)
        block[0:BLOCK] = b"\1" * BLOCK  # fault it all in
        before = huge_kib(address)
        split_by_a_fork(memoryview(block))
        after_fork = huge_kib(address)
        collapsed = lib.ts_huge_recollapse()
        if before == 0:  # no transparent huge pages here: nothing was split, nothing to do
            assert (after_fork, huge_kib(address)) == (0, 0)
            return
        assert after_fork < before  # the fork's copy-on-write split the mapping
        assert collapsed >= BLOCK
        assert huge_kib(address) == before
        assert (block[0], block[1], block[PAGE]) == (b"\2", b"\1", b"\2")  # data kept
    finally:
        lib.ts_huge_free(p, BLOCK)
