"""Whose each session's rings are, in a file of the instance directory.

A gateway that dies leaves its sessions' command rings in /dev/shm, holding the commands
their clients had sent and it had not taken. Its successor answers them
(``gateway_stale.answer_unsent``), which needs the account each ring served -- known
only to the dead gateway: the ring's content is the client's to write, so the account
cannot be read from there. The gateway notes it here at every login (8 bytes appended;
a process's death loses no write the kernel has taken), and its successor reads the file
once, at start, then removes it: the ring numbers were the dead gateway's. Ring numbers
only grow, so a gateway that lives for weeks would grow the file by every login it ever
took: past COMPACT_AFTER records it is rewritten (atomically: a crash leaves the old file
or the new) with the rings that still exist only.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from tradsys.files import replace_file

SESSIONS_FILE = "gateway.sessions"
RECORD = struct.Struct("<II")  # session ring number, account id
COMPACT_AFTER = 4096  # records appended before the file is rewritten with the live rings


class SessionAccounts:
    """The append side: one record per session opened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = self._open()
        self.records = 0  # appended since the file was last written whole

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def note(self, ring_number: int, account_id: int) -> None:
        os.write(self.fd, RECORD.pack(ring_number, account_id))
        self.records += 1

    def due(self) -> bool:
        """Whether the file should be rewritten with the live rings (:meth:`compact`)."""
        return self.records > COMPACT_AFTER

    def compact(self, live: dict[int, int]) -> None:
        """Rewrite the file with ``live`` (ring number -> account: every ring that still
        exists, the one just noted included) only."""
        data = b"".join(RECORD.pack(n, a) for n, a in sorted(live.items()))
        replace_file(self.path, data, mode=0o600)
        os.close(self.fd)
        self.fd = self._open()
        self.records = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_session_accounts(path: Path) -> dict[int, int]:
    """Ring number -> account, the last record of a number winning (a torn last record,
    cut by a crash mid-write, is left out); empty when there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    whole = len(data) - len(data) % RECORD.size
    return dict(RECORD.iter_unpack(data[:whole]))


def forget_session_accounts(path: Path) -> None:
    """Empty the file: a new gateway numbers its sessions from 0 again."""
    path.unlink(missing_ok=True)
