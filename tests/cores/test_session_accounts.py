"""The gateway's note of whose each session ring is, read back by its successor."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradsys.cores import session_accounts
from tradsys.cores.session_accounts import (
    SessionAccounts,
    forget_session_accounts,
    read_session_accounts,
)


def test_the_last_note_of_a_ring_number_wins_and_a_torn_tail_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "instance" / "gateway.sessions"
    notes = SessionAccounts(path)
    notes.note(0, 7)
    notes.note(1, 8)
    notes.note(0, 9)  # number 0 again: a later session of another account
    notes.close()
    notes.close()  # idempotent
    with path.open("ab") as f:
        f.write(b"\x02\x00\x00")  # a crash mid-write
    assert read_session_accounts(path) == {0: 9, 1: 8}
    forget_session_accounts(path)
    assert read_session_accounts(path) == {}


def test_a_long_lived_gateway_rewrites_the_file_with_the_live_rings_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ring numbers only grow: without a rewrite the file grew by every login (audit S)."""
    monkeypatch.setattr(session_accounts, "COMPACT_AFTER", 3)
    path = tmp_path / "gateway.sessions"
    notes = SessionAccounts(path)
    for number in range(3):
        notes.note(number, 7)
    assert not notes.due()
    notes.note(3, 8)
    assert notes.due()
    notes.compact({1: 7, 3: 8})  # rings 0 and 2 are gone
    assert read_session_accounts(path) == {1: 7, 3: 8}
    assert not notes.due() and path.stat().st_size == 2 * session_accounts.RECORD.size
    notes.note(4, 9)  # appends to the rewritten file
    notes.close()
    assert read_session_accounts(path) == {1: 7, 3: 8, 4: 9}
