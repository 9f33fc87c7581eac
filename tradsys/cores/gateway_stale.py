"""A dead gateway's session command rings: what its clients had sent that it never took.

Each such command's ``submit()`` returned, and before, the successor unlinked the ring
unread: no answer ever came, and the client could only guess the order's fate from an
UNKNOWN_CLIENT_ID to a cancel. Now each gets a definite one, REJECTED with reason
GATEWAY_RESTARTED, kept for the account's next session like any unread event.

Rejected, not acted on: they were sent to a gateway that died, up to a restart's back-off
before its successor could read them, and an exchange does not trade a market order or
an IOC against a book that has moved on since (a TCP client's bytes in flight die with
the gateway too). None of them can have reached a shard: the pump forwards a pass's
commands only after giving their slots back (native/gateway_pump.c), so what the ring
still holds past its consumer's index was never forwarded.

The account of a ring comes from ``session_accounts`` (the ring's content is the
client's to write); the answers reach the account through a session opened and closed
at once, as what that session's client had not read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradsys.config import Config
from tradsys.cores.gateway_auth import LoginRefusedError
from tradsys.cores.gateway_rings import attach_each, ring_number
from tradsys.cores.gateway_sessions import SessionTable
from tradsys.ring.segment import unlink_quietly
from tradsys.wire import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CommandKind,
    EventFlag,
    EventKind,
    RejectReason,
)

log = logging.getLogger("tradsys.gateway")


@dataclass(frozen=True)
class UnsentCommands:
    """The commands one dead session's client sent and its gateway never took."""

    ring: str
    account_id: int
    commands: np.ndarray[Any, Any]


def read_unsent(rings: list[str], accounts: dict[int, int]) -> list[UnsentCommands]:
    """Read each ring's records from its consumer's index to its producer's (at most its
    capacity: indices a client garbled cannot make it more), then unlink the rings. A ring
    whose account is unknown (no record of its login survived) is dropped, and logged."""
    found: list[UnsentCommands] = []
    try:
        for name, ring in attach_each(rings, "commands never taken"):
            commands = np.zeros(min(ring.readable, ring.info().capacity), COMMAND_DTYPE)
            commands = commands[: ring.peek_batch(commands)]
            if not len(commands):
                continue
            account = accounts.get(ring_number(name))
            if account is None:
                log.warning(
                    "%s holds %d command(s) the dead gateway never took, of an unknown "
                    "account: dropped",
                    name,
                    len(commands),
                )
                continue
            found.append(UnsentCommands(name, account, commands))
    finally:
        for name in unlink_quietly(rings):
            log.info("removed stale segment %s (its creator is gone)", name)
    return found


def rejects_of(commands: np.ndarray[Any, Any], account_id: int) -> np.ndarray[Any, Any]:
    """The REJECTED events answering ``commands`` (GATEWAY_RESTARTED), as the gateway's own
    rejects are made: under the client's order ids, a NEW's marked done."""
    out = np.zeros(len(commands), EVENT_DTYPE)
    out["kind"] = EventKind.REJECTED
    out["reason"] = RejectReason.GATEWAY_RESTARTED
    out["flags"] = np.where(commands["kind"] == CommandKind.NEW_ORDER, EventFlag.DONE, 0)
    out["account_id"] = account_id
    for field in ("side", "symbol_id", "order_id", "price", "quantity"):
        out[field] = commands[field]
    return out


def answer_unsent(table: SessionTable, config: Config, unsent: list[UnsentCommands]) -> int:
    """Answer each dead session's commands (before any client's session); returns how
    many were answered."""
    accounts = {a.id: a for a in config.accounts}
    answered = 0
    for u in unsent:
        account = accounts.get(u.account_id)
        if account is None:
            log.warning(
                "%s: %d command(s) of account %d, no longer configured: dropped",
                u.ring,
                len(u.commands),
                u.account_id,
            )
            continue
        try:
            session = table.open(account, "recovered")
        except LoginRefusedError as exc:
            log.error("%s: %d command(s) not answered: %s", u.ring, len(u.commands), exc.text)
            continue
        table.close(session, rejects_of(u.commands, u.account_id))
        answered += len(u.commands)
        log.info(
            "%d command(s) a session of account %d had sent to the dead gateway, never "
            "taken: rejected GATEWAY_RESTARTED, kept for the account's next session",
            len(u.commands),
            u.account_id,
        )
    return answered
