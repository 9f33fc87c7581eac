"""The ledger file is faulted in writable when the gateway maps it (the pump writes a
slot of it on every order); the held-events log is not, though the blocks of both are
allocated."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.resident import resident_bytes
from tradsys._native import ffi
from tradsys.gateway.ledger import LedgerFile

SIZE = 4 << 20


def test_the_ledger_is_faulted_in_and_the_held_log_is_not(tmp_path: Path) -> None:
    ledger = LedgerFile(tmp_path / "ledger", SIZE, prefault=True)
    held = LedgerFile(tmp_path / "held", SIZE)
    try:
        for f, expected in ((ledger, SIZE), (held, 0)):
            address = int(ffi.cast("uintptr_t", f.pointer))
            assert resident_bytes(address) == expected
    finally:
        ledger.close()
        held.close()


def test_both_files_have_their_blocks_so_a_full_disk_is_told_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of a sparse shared mapping that the disk has no room for is a SIGBUS at the
    pump's first write to it (a full disk killed the gateway mid-order, its log silent).
    Both files' blocks are allocated when mapped, and no room is an error naming the
    file."""
    for name, prefault in (("ledger", True), ("held", False)):
        f = LedgerFile(tmp_path / name, SIZE, prefault=prefault)
        f.close()
        assert (tmp_path / name).stat().st_blocks * 512 >= SIZE, name

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match=r"cannot reserve \d+ bytes for .*held2: No space left"):
        LedgerFile(tmp_path / "held2", SIZE)
