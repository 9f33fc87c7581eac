"""The gateway's note of whose each session ring is, read back by its successor."""

from __future__ import annotations

from pathlib import Path

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
