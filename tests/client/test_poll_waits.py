"""poll() and wait_for() against a scripted transport, so each batch's timing is known:
a batch of repeats only is no event (poll waits on for the first, as its timeout says),
and wait_for(timeout=0) looks at what has arrived before it gives up."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from tradsys import wire
from tradsys.client.events import Ack, Fill
from tradsys.client.orders import AsyncOrderClient, OrderClient
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
        self.go = threading.Event()  # cleared: the batches wait for it
        self.go.set()

    def poll(self, timeout: float, done: int | None = None) -> np.ndarray:
        self.polls.append(timeout)
        if self.batches and self.go.wait(timeout):
            return self.batches.pop(0)
        time.sleep(min(timeout, 0.005))  # nothing more: as a real poll, not a spin
        return np.zeros(0, wire.EVENT_DTYPE)

    def close(self, done: int | None = None) -> None:
        self.closed = True

    def send(self, records: np.ndarray, timeout: float | None = None) -> None:
        assert records.dtype == wire.COMMAND_DTYPE, records.dtype
        self.sent = records


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


def test_async_next_event_with_no_time_left_takes_what_is_queued() -> None:
    """asyncio.wait_for(get(), 0) cancels the getter before it runs: next_event(0) raised
    TimeoutError with an event queued, so the async form had no non-blocking poll."""

    async def scenario() -> None:
        client = AsyncOrderClient(ScriptedTransport([ack(9)]), asyncio.get_running_loop())  # type: ignore[arg-type]
        try:
            deadline = time.monotonic() + 10
            while client.queue.empty():  # the reader thread queues the scripted Ack
                assert time.monotonic() < deadline, "the reader queued nothing"
                await asyncio.sleep(0.001)
            assert isinstance(await client.next_event(0), Ack)
            with pytest.raises(TimeoutError):
                await client.next_event(0)
        finally:
            await client.close()

    asyncio.run(scenario())


def test_a_raising_callback_loses_no_event_to_poll() -> None:
    """The callback raised on the 2nd of 4 events: no poll() ever returned the first two
    (they counted as handed, so they were acknowledged and never came again)."""
    batch = np.concatenate([ack(1), ack(2), ack(3), ack(4)])
    client = OrderClient(ScriptedTransport([batch]))  # type: ignore[arg-type]
    called: list[int] = []

    def callback(event: Any) -> None:
        called.append(event.order_id)
        if event.order_id == 2 and called.count(2) == 1:
            raise RuntimeError("a bug in the application's callback")

    client.on_event(callback)
    with pytest.raises(RuntimeError):
        client.poll(1.0)
    assert [e.order_id for e in client.poll(1.0)] == [1, 2, 3, 4]
    assert called == [1, 2, 3, 4]  # each callback once, the raising one included


def test_a_concatenated_batch_of_order_records_is_sent() -> None:
    """np.concatenate drops COMMAND_DTYPE's padding (63-byte items), which the transport
    refused; order_record says it is for building batches."""
    from tradsys.client.commands import order_record

    transport = ScriptedTransport([])
    client = OrderClient(transport)  # type: ignore[arg-type]
    batch = np.concatenate([order_record(i, 1, "buy", 1, 90 + i) for i in (1, 2)])
    assert client.submit_batch(batch) == 2
    assert transport.sent["order_id"].tolist() == [1, 2]
    assert transport.sent["price"].tolist() == [91, 92]


def test_async_wait_for_beside_a_waiting_consumer_hands_it_what_it_passed_over() -> None:
    """wait_for took Ack 1 (not its answer) while a consumer task waited in next_event:
    the consumer kept waiting on the queue, got Ack 2 first, and wait_for(2) never saw
    its answer. Each event kept now wakes the consumer, which gets them in order."""

    async def scenario() -> None:
        transport = ScriptedTransport([np.concatenate([ack(1), ack(2)])])
        transport.go.clear()
        client = AsyncOrderClient(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        try:
            answer = asyncio.ensure_future(client.wait_for(2, timeout=10))
            for _ in range(5):  # wait_for is first in the queue's line
                await asyncio.sleep(0)
            consumer = asyncio.ensure_future(client.next_event(10))
            for _ in range(5):
                await asyncio.sleep(0)
            transport.go.set()
            assert (await answer).order_id == 2
            assert (await consumer).order_id == 1
        finally:
            await client.close()

    asyncio.run(scenario())
