"""Pre-trade risk limits and state as the native gateway holds them.

``AccountSection`` (tradsys.config) is what an operator writes; :func:`limits_cdata`
turns it into the C ``ts_risk_limits`` the pump checks, so a hot reload is one call with
the new section. :class:`AccountState` and :class:`PositionState` are copies of what the
pump keeps per account and per (account, symbol), for tests, the admin API and audits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tradsys._native import ffi
from tradsys.config import RISK_LIMIT_FIELDS, AccountSection

LIMIT_FIELDS = RISK_LIMIT_FIELDS
"""The AccountSection fields that are risk limits; ts_risk_limits has the same names."""

MAX_THROTTLE = 1_000_000_000
"""The largest throttle rate and burst the pump accepts (its bucket counts 1e-9 tokens)."""


def limits_cdata(account: AccountSection) -> Any:
    """A new ``ts_risk_limits *`` holding the account's limits."""
    c = ffi.new("ts_risk_limits *")
    for name in LIMIT_FIELDS:
        setattr(c, name, getattr(account, name))
    c.cancel_on_disconnect = int(account.cancel_on_disconnect)
    return c


def limit_problems(account: AccountSection) -> list[str]:
    """What the pump would refuse in these limits; [] when they are fine."""
    where = f"account {account.id} ({account.name!r})"
    out = [f"{where}: {n} must be >= 0" for n in LIMIT_FIELDS if getattr(account, n) < 0]
    for name in (
        "throttle_per_s",
        "throttle_burst",
        "account_throttle_per_s",
        "account_throttle_burst",
    ):
        if getattr(account, name) > MAX_THROTTLE:
            out.append(f"{where}: {name} must be <= {MAX_THROTTLE}")
    if not 0 < account.id < 2**32:
        out.append(f"{where}: id must be in 1..{2**32 - 1}")
    return out


@dataclass(frozen=True)
class AccountState:
    """An account's open and filled exposure as the gateway counts it."""

    open_orders: int
    open_notional: int
    filled_notional: int
    killed: bool


@dataclass(frozen=True)
class PositionState:
    """One symbol of one account: position from fills, quantity open on each side."""

    position: int
    open_buy: int
    open_sell: int
