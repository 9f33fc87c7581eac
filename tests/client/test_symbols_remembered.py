"""A client remembers the symbol of its latest SYMBOLS_REMEMBERED orders only, so that a
session that runs all day does not grow by every order it ever sent (audit S: 87 bytes an
order, for good); an older order is cancelled with its symbol_id named."""

from __future__ import annotations

import numpy as np
import pytest

from tests.client.test_poll_waits import ScriptedTransport
from tradsys import wire
from tradsys.client import orders
from tradsys.client.orders import OrderClient


class SendingTransport(ScriptedTransport):
    def send_one(self, record: bytes) -> None:
        self.sent_one = record


def _cancelled_symbol(transport: SendingTransport) -> int:
    rec = np.frombuffer(transport.sent_one, wire.COMMAND_DTYPE)[0]
    assert rec["kind"] == wire.CommandKind.CANCEL
    return int(rec["symbol_id"])


def test_the_oldest_orders_symbols_go_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orders, "SYMBOLS_REMEMBERED", 3)
    transport = SendingTransport([])
    client = OrderClient(transport)  # type: ignore[arg-type]
    for oid, symbol_id in ((1, 11), (2, 12), (3, 13), (4, 14)):
        client.submit(symbol_id, "buy", 1, 100, order_id=oid)
    assert len(client._symbols) == 3
    client.cancel(2)  # still remembered
    assert _cancelled_symbol(transport) == 12
    with pytest.raises(ValueError, match="order 1 is not among the last 3 orders"):
        client.cancel(1)
    client.cancel(1, 11)  # named: fine
    assert _cancelled_symbol(transport) == 11
