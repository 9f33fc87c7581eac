"""The accounts' figures in the gateway's stats file, at a bounded cost per write.

The stats file is rewritten once a second on the event loop's thread, which every TCP
round trip, login and heartbeat waits for. It used to list every account's position in
every symbol (up to 64 accounts): 1 000 symbols x 64 accounts made a 1.1 MB file and
stalled the loop 234-414 ms per write (scale audit). Now the native core walks the
positions (``ts_gateway_figures``: one account at a time under its lock, so the pump
waits at most one account's scan) and returns only the accounts that are not idle —
open orders, notional, a kill, or a position that is not flat — with their non-flat
positions. Each write looks at no more than :data:`FIGURES_BUDGET` positions, going on
where the last one stopped, so with accounts x symbols beyond it the figures are
refreshed in slices over several writes (``account_figures.pass_writes`` says how
many); and no more than :data:`MAX_ACCOUNTS_IN_STATS` accounts and
:data:`MAX_POSITIONS_IN_STATS` positions are written (the rest counted as omitted).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tradsys.config import Config
from tradsys.gateway.core import FIGURE_ROW_DTYPE, GatewayCore

FIGURES_BUDGET = 1 << 18
"""Positions looked at per stats write (48 bytes each: ~12 MB, a few ms at most)."""
MAX_ACCOUNTS_IN_STATS = 1024
"""Accounts one stats file lists at most (the not-idle ones, in the gateway's order)."""
MAX_POSITIONS_IN_STATS = 4096
"""Non-flat positions one stats file lists at most, over all its accounts."""
MIN_ROWS = 4096


class AccountFigures:
    """What the stats file says of the accounts; :meth:`refresh` once per write."""

    def __init__(self, core: GatewayCore, config: Config, budget: int = FIGURES_BUDGET) -> None:
        self.core = core
        self.budget = budget
        self.symbols: dict[int, str] = {}
        self.rows = np.zeros(MIN_ROWS, FIGURE_ROW_DTYPE)
        self.reconfigure(config)
        self.cursor = 0
        # account index -> (account id, its figures), as last looked at
        self.known: dict[int, tuple[int, dict[str, Any]]] = {}
        self.positions = 0  # non-flat positions in ``known``
        self.passes = 0  # whole passes over the accounts done
        self.pass_writes = 0  # the writes the last whole pass took
        self._writes_this_pass = 0

    def reconfigure(self, config: Config) -> None:
        """The symbols' names (a reload may add instruments), and room for one account's
        rows whatever its number of non-flat positions."""
        self.symbols = {ins.symbol_id: ins.symbol for ins in config.instruments}
        need = max(MIN_ROWS, len(config.instruments) + 1)
        if len(self.rows) < need:
            self.rows = np.zeros(need, FIGURE_ROW_DTYPE)

    def refresh(self) -> None:
        """Look at the next slice of accounts (all of them when they fit the budget)."""
        start = self.cursor
        rows, self.cursor = self.core.figures(start, self.budget, self.rows)
        self._writes_this_pass += 1
        if self.cursor == 0:  # done through the last account
            gone = [i for i in self.known if i >= start]
            self.passes += 1
            self.pass_writes, self._writes_this_pass = self._writes_this_pass, 0
        else:
            gone = [i for i in range(start, self.cursor) if i in self.known]
        for i in gone:
            self.positions -= len(self.known.pop(i)[1]["positions"])
        for index, account_id, symbol_id, killed, a, b, c in rows.tolist():
            if symbol_id == 0:
                figures: dict[str, Any] = {
                    "open_orders": a,
                    "open_notional": b,
                    "filled_notional": c,
                    "killed": bool(killed),
                    "positions": {},
                }
                self.known[index] = (account_id, figures)
            else:
                figures["positions"][self.symbols.get(symbol_id, str(symbol_id))] = [a, b, c]
                self.positions += 1

    def summary(self) -> dict[str, Any]:
        """What the stats file says of the figures themselves."""
        listed = min(len(self.known), MAX_ACCOUNTS_IN_STATS)
        return {
            "accounts_listed": listed,
            "accounts_omitted": len(self.known) - listed,
            "positions": self.positions,
            "passes": self.passes,
            "pass_writes": self.pass_writes,
        }

    def accounts(self) -> dict[str, Any]:
        """The not-idle accounts' figures (account id → open orders, notional, killed and
        the non-flat positions, symbol → [position, open buy, open sell]), within the
        file's bounds: an account left out past them is counted in :meth:`summary`."""
        out: dict[str, Any] = {}
        room = MAX_POSITIONS_IN_STATS
        for account_id, figures in self.known.values():
            if len(out) == MAX_ACCOUNTS_IN_STATS:
                break
            positions = figures["positions"]
            if len(positions) > room:
                positions = dict(list(positions.items())[:room])
                figures = {**figures, "positions": positions, "positions_omitted": True}
            room -= len(positions)
            out[str(account_id)] = figures
        return out
