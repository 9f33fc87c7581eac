"""AsyncOrderClient.order_status beside other tasks reading the same session: the
answer's records go to the request whichever task takes them from the queue (a consumer
in next_event, a wait_for), and every other event still reaches those tasks, in order."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import numpy as np

from tests.client.test_poll_waits import ScriptedTransport, ack
from tradsys import wire
from tradsys.client.events import Ack, Event
from tradsys.client.orders import AsyncOrderClient

RID = 500  # the request id the client picks (its next order id)


def answer(*order_ids: int) -> list[np.ndarray[Any, Any]]:
    """An ORDER_STATUS answer listing ``order_ids``, one record per batch."""
    rows = []
    for oid in order_ids:
        rec = np.zeros(1, wire.EVENT_DTYPE)
        rec["kind"], rec["contra_order_id"], rec["symbol_id"] = wire.EventKind.ORDER_STATUS, RID, 1
        rec["order_id"], rec["side"], rec["reason"] = oid, wire.Side.BUY, wire.OrderState.OPEN
        rec["price"], rec["quantity"], rec["leaves_qty"] = 100, 5, 5
        rows.append(rec)
    end = np.zeros(1, wire.EVENT_DTYPE)
    end["kind"], end["flags"] = wire.EventKind.ORDER_STATUS, wire.EventFlag.LAST
    end["order_id"], end["contra_order_id"], end["quantity"] = RID, RID, len(order_ids)
    return [*rows, end]


class SlowTransport(ScriptedTransport):
    """One record per poll, a little apart, once ``go`` is set: the tasks interleave."""

    def poll(self, timeout: float, done: int | None = None) -> np.ndarray[Any, Any]:
        time.sleep(0.01)
        return super().poll(timeout, done)

    def try_send_one(self, record: bytes) -> bool:
        return True


async def _client(batches: list[np.ndarray[Any, Any]]) -> AsyncOrderClient:
    transport = SlowTransport(batches)
    transport.go.clear()
    client = AsyncOrderClient(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    client._ids = itertools.count(RID)
    return client


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_consumer_in_next_event_gets_none_of_the_answer() -> None:
    async def scenario() -> tuple[list[int], list[Event]]:
        client = await _client([ack(1), *answer(10, 20, 30, 40), ack(2)])
        got: list[Event] = []

        async def consume() -> None:
            while len(got) < 2:
                got.append(await client.next_event(5.0))

        try:
            consumer = asyncio.ensure_future(consume())
            await _settle()
            status = asyncio.ensure_future(client.order_status(timeout=5.0))
            await _settle()
            client.transport.go.set()  # type: ignore[attr-defined]
            live = await status
            await consumer
            return [o.order_id for o in live], got
        finally:
            await client.close()

    live, got = asyncio.run(scenario())
    assert live == [10, 20, 30, 40]
    assert [(type(e), e.order_id) for e in got] == [(Ack, 1), (Ack, 2)]


def test_a_wait_for_beside_it_takes_its_own_and_keeps_the_rest() -> None:
    async def scenario() -> tuple[Event, list[int], Event]:
        client = await _client([*answer(10, 20)[:2], ack(1), ack(3), *answer(10, 20)[2:]])
        try:
            acked = asyncio.ensure_future(client.wait_for(1, timeout=5.0))
            await _settle()
            status = asyncio.ensure_future(client.order_status(timeout=5.0))
            await _settle()
            client.transport.go.set()  # type: ignore[attr-defined]
            first, live = await asyncio.gather(acked, status)
            kept = await client.next_event(1.0)  # what neither asked for stays, in order
            return first, [o.order_id for o in live], kept
        finally:
            await client.close()

    first, live, kept = asyncio.run(scenario())
    assert isinstance(first, Ack) and first.order_id == 1
    assert live == [10, 20]
    assert isinstance(kept, Ack) and kept.order_id == 3
