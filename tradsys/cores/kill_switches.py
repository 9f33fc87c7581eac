"""The operator's kill switches, kept in a file of the instance directory so that a new
run honours them.

A kill switch is the operator's word that an account (or every account) must not trade;
a restart of the instance -- a crash that the systemd unit restarts, a stop and a start --
must not lift it behind the operator's back. The gateway's ledger carries the switches
across a gateway's restart and into the next run, but a run started as a new trading day
starts a new ledger (flat positions). This file is not tied to a run or a day: the admin
channel rewrites it whole
(atomically, and synced: a switch turned on must survive a power cut too) at every
switch, and every gateway applies it at start, before it serves a session, and logs what
it found. A file that cannot be read stops the gateway's start with the file named, rather
than let an account the operator stopped trade again.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from tradsys.files import replace_file

KILL_FILE = "kill_switches.json"


class KillSwitches(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which kill switches are on: every account's (the global one), and each account's."""

    every_account: bool = False
    accounts: tuple[int, ...] = ()

    def switched(self, account_id: int | None, on: bool) -> KillSwitches:
        """These switches after one is turned on or off (``None``: the global one)."""
        if account_id is None:
            return KillSwitches(on, self.accounts)
        ids = set(self.accounts) | {account_id} if on else set(self.accounts) - {account_id}
        return KillSwitches(self.every_account, tuple(sorted(ids)))

    def describe(self) -> str:
        """For the log: what is on."""
        parts = ["every account"] if self.every_account else []
        if self.accounts:
            parts.append("account(s) " + ", ".join(map(str, self.accounts)))
        return "; ".join(parts) or "none"


class KillSwitchFileError(Exception):
    """The file exists and cannot be read as kill switches (the message names it)."""


def read_kill_switches(path: Path) -> KillSwitches:
    """The switches the file holds; none when there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return KillSwitches()
    except OSError as exc:
        raise KillSwitchFileError(f"cannot read the kill switches in {path}: {exc}") from None
    try:
        return msgspec.json.decode(data, type=KillSwitches)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise KillSwitchFileError(
            f"{path} does not hold kill switches ({exc}): put it right, or remove it to "
            "start with every switch off"
        ) from None


def write_kill_switches(path: Path, switches: KillSwitches) -> None:
    replace_file(path, msgspec.json.encode(switches), durable=True, mode=0o600)
