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


def limits_cdata(account: AccountSection) -> Any:
    """A new ``ts_risk_limits *`` holding the account's limits."""
    c = ffi.new("ts_risk_limits *")
    for name in LIMIT_FIELDS:
        setattr(c, name, getattr(account, name))
    c.cancel_on_disconnect = int(account.cancel_on_disconnect)
    return c


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
