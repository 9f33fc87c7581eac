"""The ledger file is faulted in writable when the gateway maps it (the pump writes a
slot of it on every order); the held-events log is left sparse."""

from __future__ import annotations

from pathlib import Path

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
