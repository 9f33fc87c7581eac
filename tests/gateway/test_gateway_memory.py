"""The gateway's memory is per account that trades, not per account configured: the
position rows (``pos``, max_accounts x the instrument capacity) and the ledger's cells
(the same, in its file) are reserved at start and faulted in per account by the control
call that lets the pump reach it (its first session, a restored order, a drained fill).
The ledger's order slots, which the pump writes on every order, are faulted in when it is
attached; the held-events log is not, though the blocks of both files are allocated."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.conftest import RingFactory
from tests.gateway.rig import GatewayRig, account, command, event
from tests.resident import resident_bytes
from tradsys._native import ffi
from tradsys.config import Config, EngineSection, GatewaySection, ShardSection
from tradsys.gateway.core import instrument_capacity
from tradsys.gateway.ledger import LedgerFile
from tradsys.matching import Instrument
from tradsys.wire import EventKind

SIZE = 4 << 20
ACCOUNTS, SYMBOLS = 2000, 1024
POSITION_BYTES, CELL_BYTES = 48, 80  # gw_position, gw_ledger_cell


def _vm_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def wide_config(instance: str) -> Config:
    """2 000 accounts x 1 024 symbols on one shard."""
    symbols = [f"S{i:05d}" for i in range(SYMBOLS)]
    config = Config(
        engine=EngineSection(instance=instance, ring_capacity=1024, wait="spin-park"),
        shards=[ShardSection(id=0, symbols=symbols)],
        instruments=[Instrument(s, i + 1, reference_price=1000) for i, s in enumerate(symbols)],
        accounts=[account(i) for i in range(1, ACCOUNTS + 1)],
        gateway=GatewaySection(max_live_orders=4096, max_sessions=8, clock_tick_us=0),
    )
    return config


def test_many_accounts_cost_little_until_they_trade(
    instance: str, rings: RingFactory, tmp_path: Path
) -> None:
    config = wide_config(instance)
    before = _vm_rss()
    rig = GatewayRig(rings, config)
    try:
        rig.core.attach_ledger(tmp_path / "ledger", run_id=1)
        capacity = instrument_capacity(SYMBOLS)
        dense = ACCOUNTS * capacity * (POSITION_BYTES + CELL_BYTES)
        ledger = rig.core._ledger
        assert ledger is not None
        ledger_at = int(ffi.cast("uintptr_t", ledger.pointer))
        assert _vm_rss() - before < dense // 10
        assert resident_bytes(ledger_at) < ledger.size // 10
        assert rig.core.stats()["accounts_live"] == 0
        # a login makes the account's rows resident, before any order of it
        formatted = resident_bytes(ledger_at)
        s = rig.session(7)
        assert rig.core.stats()["accounts_live"] == 1
        with_row = resident_bytes(ledger_at)
        assert with_row >= formatted + capacity * CELL_BYTES
        s.send(command(order_id=1, symbol_id=5))
        rig.poll()
        sent = rig.sent(0)
        assert len(sent) == 1
        exch = int(sent["order_id"][0])
        rig.events[0].push_batch(
            event(
                EventKind.TRADE,
                exch,
                account_id=7,
                symbol_id=5,
                side=1,
                price=1000,
                quantity=3,
                leaves_qty=7,
                exec_id=1,
            )
        )
        rig.poll()
        assert rig.core.position(7, 5).position == 3
        assert resident_bytes(ledger_at) == with_row  # the order and its fill faulted nothing
    finally:
        rig.close()


def test_the_held_log_is_not_faulted_in(tmp_path: Path) -> None:
    held = LedgerFile(tmp_path / "held", SIZE)
    try:
        assert resident_bytes(int(ffi.cast("uintptr_t", held.pointer))) == 0
    finally:
        held.close()


def test_both_files_have_their_blocks_so_a_full_disk_is_told_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of a sparse shared mapping that the disk has no room for is a SIGBUS at the
    pump's first write to it (a full disk killed the gateway mid-order, its log silent).
    Both files' blocks are allocated when mapped (the ledger's rows included, though they
    are faulted in only per account), and no room is an error naming the file."""
    for name in ("ledger", "held"):
        f = LedgerFile(tmp_path / name, SIZE)
        f.close()
        assert (tmp_path / name).stat().st_blocks * 512 >= SIZE, name

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match=r"cannot reserve \d+ bytes for .*held2: No space left"):
        LedgerFile(tmp_path / "held2", SIZE)
