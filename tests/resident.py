"""How much of a mapping this process has mapped in (its page-table entries, not the page
cache): ``Rss`` of the mapping's line in /proc/self/smaps. Tests of what is faulted in
up front use it; a page cache residency check (mincore) could not tell a mapping whose
pages another process created from one this process has touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tradsys._native import ffi


def address_of(buffer: Any) -> int:
    """The address of a buffer (an mmap, a bytearray...)."""
    return int(ffi.cast("uintptr_t", ffi.from_buffer(buffer)))


def resident_bytes(address: int) -> int:
    """Rss of the mapping that holds ``address``."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=1)[0]
        if "-" in head and ":" not in head:  # a mapping's first line: "start-end perms ..."
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and head == "Rss:":
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no mapping holds {address:#x}")
