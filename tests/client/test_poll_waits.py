"""poll() and wait_for() against a scripted transport, so each batch's timing is known:
a batch of repeats only is no event (poll waits on for the first, as its timeout says),
and wait_for(timeout=0) looks at what has arrived before it gives up."""

from __future__ import annotations

from typing import Any

import numpy as np

from tradsys import wire
from tradsys.client.events import Ack, Fill
from tradsys.client.orders import OrderClient
from tradsys.client.repeats import SeenExecs
from tradsys.protocols.binary import Accepted


def fill(order_id: int, exec_id: int) -> np.ndarray:
    rec = np.zeros(1, wire.EVENT_DTYPE)
    rec["kind"], rec["order_id"], rec["symbol_id"], rec["side"] = 3, order_id, 1, 1
    rec["price"], rec["quantity"], rec["exec_id"] = 100, 1, exec_id
    return rec


def ack(order_id: int) -> np.ndarray:
    rec = np.zeros(1, wire.EVENT_DTYPE)
    rec["kind"], rec["order_id"], rec["symbol_id"], rec["side"] = 1, order_id, 1, 1
    rec["price"], rec["quantity"], rec["leaves_qty"] = 100, 1, 1
    return rec


class ScriptedTransport:
    """Hands out the given batches one poll at a time, then nothing."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self.batches = list(batches)
        self.polls: list[float] = []
        self.accepted = Accepted(1, 1000, 1, 1, 1, 1024, "", "")
        self.symbols: list[Any] = []
        self.closed = False

    def poll(self, timeout: float, done: int | None = None) -> np.ndarray:
        self.polls.append(timeout)
        return self.batches.pop(0) if self.batches else np.zeros(0, wire.EVENT_DTYPE)

    def close(self, done: int | None = None) -> None:
        self.closed = True


def test_a_batch_of_repeats_only_does_not_end_the_wait() -> None:
    seen = SeenExecs()
    seen.fresh(fill(7, 1))  # exec 1 of order 7 was had by an earlier session
    transport = ScriptedTransport([fill(7, 1), fill(7, 2)])
    client = OrderClient(transport, seen)  # type: ignore[arg-type]
    got = client.poll(5.0)  # before: [] at once, the repeat having been dropped
    assert [(type(e), e.exec_id) for e in got] == [(Fill, 2)]  # type: ignore[union-attr]
    assert seen.dropped == 1 and len(transport.polls) == 2


def test_poll_records_waits_past_repeats_too() -> None:
    seen = SeenExecs()
    seen.fresh(fill(7, 1))
    client = OrderClient(ScriptedTransport([fill(7, 1), fill(7, 2)]), seen)  # type: ignore[arg-type]
    assert client.poll_records(5.0)["exec_id"].tolist() == [2]


def test_wait_for_with_no_time_left_still_reads_what_came() -> None:
    client = OrderClient(ScriptedTransport([ack(9)]))  # type: ignore[arg-type]
    assert isinstance(client.wait_for(9, timeout=0), Ack)  # before: TimeoutError
