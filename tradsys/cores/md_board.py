"""The conflated BBO board: the latest BBO record of every symbol, sent whole on the
``[md] conflated_bbo`` socket (ZMQ_CONFLATE), for subscribers that only need prices
(docs/marketdata.md, "Slow subscribers")."""

from __future__ import annotations

from typing import Any

import numpy as np

from tradsys.marketdata.l2store import L2Store
from tradsys.marketdata.protocol import BBO_BOARD_TOPIC
from tradsys.marketdata.stats import PublishStats
from tradsys.wire import MD_DTYPE, RECORD_SIZE, MdKind


class ConflatedBoard:
    """One MD_DTYPE row per symbol index (kind 0 = no BBO yet).

    The socket stays the sidecar's: :meth:`send` is given the one to send on."""

    def __init__(self, n_symbols: int, stats: PublishStats) -> None:
        self.rows = np.zeros(n_symbols, MD_DTYPE)
        # the same bytes, for the scalar path to copy a record in without numpy
        self.raw = self.rows.view(np.uint8).data
        self.stats = stats

    def send(self, sock: Any) -> None:
        """The whole board, one message."""
        sock.send(BBO_BOARD_TOPIC + self.rows.tobytes())
        self.stats.board_messages += 1

    def take_last_bbos(self, batch: np.ndarray, sym: np.ndarray) -> bool:
        """Take each symbol's last BBO record of a published batch (``sym``: the records'
        symbol indexes); True if the batch held any, so the board changed."""
        bbo = batch["kind"] == MdKind.BBO
        if not bbo.any():
            return False
        # the last BBO of each symbol in the batch (seqs grow, so the greatest)
        rows, s = batch[bbo], sym[bbo]
        last = len(s) - 1 - np.unique(s[::-1], return_index=True)[1]
        self.rows[s[last]] = rows[last]
        return True

    def fill_from_books(self, symbols: list[int], store: L2Store) -> bool:
        """Rows for symbols whose refresh image just completed, from their books; True if
        any changed. The image carries the BBO's seq but not its values, so a restarted
        sidecar would say "no BBO" for every quiet symbol until its BBO next changed; the
        book's best levels are those values (L2Store.bbo_record). A symbol that never had a
        BBO (seq 0) keeps its empty row; a row already at the seq came from the record
        itself and keeps its engine time."""
        board, seqs, changed = self.rows, store.bbo_seq, False
        for si in symbols:
            row = board[si]
            if seqs[si] == 0 or (row["kind"] == MdKind.BBO and row["seq"] >= seqs[si]):
                continue
            rec = store.bbo_record(si)
            self.raw[si * RECORD_SIZE : (si + 1) * RECORD_SIZE] = rec.tobytes()
            changed = True
        return changed
