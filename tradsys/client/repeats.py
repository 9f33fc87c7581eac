"""Seeing each event once: the events an account's session gets again after a crash.

The gateway delivers every event of an account's orders at least once
(docs/protocol.md, "Nothing acknowledged is lost"); around a crash, or when a session
ends with events its client had already processed but not acknowledged, the account's
next session gets some of them again, with the same ``exec_id``. An order's events come
in their order, and exec ids grow within a symbol, so an event of an order whose exec id
is not above the highest one already seen for that order is a repeat.

The key is the order (symbol id and client order id), not the symbol: a session that
takes over what another session of the account left unread gets those events after newer
events of its own orders on the same symbol, and a per-symbol high-water mark would drop
them. The gateway's own answers (REJECTED with exec id 0) are never dropped: they change
no state, so taking one twice is harmless.

One :class:`SeenExecs` follows an account's events across its sessions: pass the same one
to each ``OrderClient.connect(..., seen=...)`` of the account. It assumes what
``tradsys.client`` does by default: client order ids are not reused (an old order's
events held for a later session could otherwise pass for repeats of a new order with the
same id). It belongs to the engine's exec-id history: an instance started on an empty
data directory numbers its events from 1 again, so start a new one with it.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from tradsys.client.transport import Records

DEFAULT_ORDERS = 1 << 16
"""Orders remembered. A repeat comes within the events a session can hold unread or
unacknowledged (a ring, the account's 4 096 held events), far fewer orders than this."""


class SeenExecs:
    """The highest exec id seen per order; drops the repeats from each batch."""

    def __init__(self, orders: int = DEFAULT_ORDERS) -> None:
        if orders < 1:
            raise ValueError(f"orders must be >= 1, not {orders}")
        self._orders = orders
        self._high: OrderedDict[tuple[int, int], int] = OrderedDict()
        self.dropped = 0  # repeats dropped so far

    def fresh(self, records: Records) -> Records:
        """``records`` without the events seen before (the same array when there are
        none, so the usual batch costs no copy)."""
        if not len(records):
            return records
        high, repeats = self._high, []
        columns = zip(
            records["symbol_id"].tolist(),
            records["order_id"].tolist(),
            records["exec_id"].tolist(),
            strict=True,
        )
        for i, (symbol_id, order_id, exec_id) in enumerate(columns):
            if not exec_id:
                continue
            key = (symbol_id, order_id)
            if exec_id <= high.get(key, 0):
                repeats.append(i)
                continue
            high[key] = exec_id
            high.move_to_end(key)
            if len(high) > self._orders:
                high.popitem(last=False)
        if not repeats:
            return records
        self.dropped += len(repeats)
        return np.delete(records, repeats)
