"""Records of a symbol the md sidecar does not know: dropped, counted, and logged once per
symbol id.

Such a record cannot be published (there is no topic for it) and says something is wrong
upstream — a worker run with another instrument list, or a corrupt record — so the
operator must hear of it; but one warning per record turned a steady stream of them into
a log flood (and a log write per record on the quiet path, which is the latency path).
Each id is named once; the count of every dropped record is
``unknown_symbol_records`` in the sidecar's stats file (``md.stats.json``).
"""

from __future__ import annotations

import logging

import numpy as np

from tradsys.marketdata.stats import PublishStats

# symbol ids named in the log at most; past it (garbage, not a misconfiguration) one more
# line says so and the rest are only counted, so no input can flood the log
IDS_LOGGED_MAX = 64

log = logging.getLogger("tradsys.md")


class UnknownSymbols:
    """Drop accounting for records whose symbol id is not in the sidecar's config."""

    def __init__(self, stats: PublishStats) -> None:
        self.stats = stats
        self.logged: set[int] = set()
        self._gave_up = False

    def dropped(self, symbol_id: int, n: int = 1) -> None:
        """``n`` records of ``symbol_id`` were dropped."""
        self.stats.unknown_symbol_records += n
        if symbol_id in self.logged or self._gave_up:
            return
        if len(self.logged) >= IDS_LOGGED_MAX:
            self._gave_up = True
            log.warning(
                "md: records of more than %d unknown symbol ids; the others are dropped and "
                "counted (unknown_symbol_records in md.stats.json), not logged",
                IDS_LOGGED_MAX,
            )
            return
        self.logged.add(symbol_id)
        log.warning(
            "md: dropping records of symbol id %d, which is not in the sidecar's config "
            "(is a worker running with another instrument list?); this is said once per "
            "id, every such record is counted (unknown_symbol_records in md.stats.json)",
            symbol_id,
        )

    def dropped_many(self, symbol_ids: np.ndarray) -> None:
        """The records of these symbol ids (one entry per record) were dropped."""
        ids, counts = np.unique(symbol_ids, return_counts=True)
        for symbol_id, n in zip(ids.tolist(), counts.tolist(), strict=True):
            self.dropped(symbol_id, n)
