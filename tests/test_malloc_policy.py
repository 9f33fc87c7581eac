"""Keeping freed memory in the process (tradsys.malloc_policy).

The policy changes the allocator for good, so it is only ever set in child processes.
Each child allocates and touches a 256 MiB block, frees it, and reports how much of its
memory is still resident: with the policy the block stays (to be reused), without it
glibc unmaps it at once -- the control that makes the first assertion able to fail."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BLOCK_MIB = 256

CHILD = f"""
import ctypes, sys
from tradsys.malloc_policy import keep_freed_memory

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

kept = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = {BLOCK_MIB} << 20
block = libc.malloc(size)
ctypes.memset(block, 1, size)  # touched: resident
touched = rss_kib()
libc.free(block)
print(kept, touched, rss_kib())
"""


def run_child(mode: str) -> tuple[str, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    return out[0], int(out[1]), int(out[2])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc: Linux")
def test_freed_memory_stays_with_the_process_only_under_the_policy() -> None:
    kept, touched, after_free = run_child("keep")
    assert kept == "True"
    assert after_free > touched - (BLOCK_MIB << 10) // 8  # the block is still resident
    _, touched, after_free = run_child("default")
    assert after_free < touched - (BLOCK_MIB << 10) // 2  # glibc's own default unmaps it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc: Linux")
def test_the_kept_memory_is_reused_not_grown_again() -> None:
    """A second block of the same size comes from the kept one: the footprint is the
    high-water mark, not the sum of what was ever allocated."""
    code = CHILD.replace(
        "print(kept, touched, rss_kib())",
        "again = libc.malloc(size)\nctypes.memset(again, 2, size)\nprint(kept, touched, rss_kib())",
    )
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), "keep"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    touched, after = int(out[1]), int(out[2])
    assert after < touched + (BLOCK_MIB << 10) // 8
