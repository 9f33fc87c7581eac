"""The order-entry client: one API whether the gateway is reached through shared memory
(colocated) or TCP.

    with OrderClient.connect("var/default/gateway.sock", account_id=1, api_key="...") as c:
        oid = c.submit(symbol_id=1, side="buy", quantity=10, price=10_000)
        ack = c.wait_for(oid)          # Ack, or OrderRejected is raised
        for event in c.poll(1.0): ...  # Fill, Cancelled, ...

``address`` is a Unix socket path (colocated: ``unix:PATH`` or any path) or
``tcp://host:port`` / ``host:port``. Orders are identified by the client's own ids
(``order_id``, chosen here unless given); every event carries them back. For speed,
``submit_batch`` takes a numpy ``COMMAND_DTYPE`` array and ``poll_records`` returns raw
``EVENT_DTYPE`` records, with no Python object per order. ``AsyncOrderClient`` is the
same for asyncio: awaitable calls and ``async for event in client.events()``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from tradsys import wire
from tradsys.client.commands import (
    SideLike,
    command_bytes,
    first_client_id,
    order_bytes,
)
from tradsys.client.events import (
    Ack,
    Disconnected,
    Event,
    LoginFailed,
    OrderRejected,
    OrderStatus,
    Reject,
    StatusEnd,
    to_event,
)
from tradsys.client.repeats import SeenExecs
from tradsys.client.transport import ColocatedTransport, Records, TcpTransport, Transport
from tradsys.matching.instrument import symbol_named
from tradsys.ring import WaitStrategy
from tradsys.wire import CommandKind

__all__ = [
    "AsyncOrderClient",
    "Disconnected",
    "LoginFailed",
    "OrderClient",
    "OrderRejected",
    "SeenExecs",
    "connect_transport",
]

SymbolLike = int | str  # a symbol id, or a name from the gateway's SYMBOLS directory


WaitLike = WaitStrategy | str | None


def connect_transport(
    address: str, account_id: int, api_key: str, timeout: float = 5.0, wait: WaitLike = None
) -> Transport:
    """Open and log in a transport: ``tcp://host:port`` or ``host:port`` for TCP,
    anything else (``unix:PATH`` or a path) for a colocated session.

    ``wait`` (colocated only): how the client waits on its rings -- a WaitStrategy or its
    config name. The default, ``spin-park``, sleeps when nothing comes, which costs a
    wake-up per event burst (tens of µs on a VM); a latency-sensitive client on a core of
    its own passes ``"busy-spin"``, one that shares a core ``"spin-yield"``."""
    if address.startswith("tcp://") or (
        ":" in address and not address.startswith("unix:") and "/" not in address
    ):
        if wait is not None:
            raise ValueError(
                "wait applies to colocated sessions; a TCP session waits on its socket"
            )
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        return TcpTransport(host, int(port), account_id, api_key, timeout)
    strategy = WaitStrategy.named(wait) if isinstance(wait, str) else wait
    return ColocatedTransport(
        address.removeprefix("unix:"), account_id, api_key, timeout, wait=strategy
    )


class _Unhanded(NamedTuple):
    """An event read from the transport that the application has not been handed yet."""

    number: int  # the event's place in what this client read, from 1
    event: Event
    called: bool  # the callbacks have had it


def _as_commands(records: Records) -> Records:
    """``records`` as ``COMMAND_DTYPE``: an array with its fields but another layout --
    ``np.concatenate`` of ``order_record`` arrays drops the record's padding, giving 63-byte
    items -- is converted field by field; anything else is sent as it is (and refused by
    the transport, saying why)."""
    if records.dtype != wire.COMMAND_DTYPE and records.dtype.names == wire.COMMAND_DTYPE.names:
        return records.astype(wire.COMMAND_DTYPE)
    return records


SYMBOLS_REMEMBERED = 1 << 18
"""How many of its latest orders a client remembers the symbol of, so that a cancel or
replace may name the order alone: bounded, since a session may last all day at a high
rate (as many as a gateway tracks live by default, ``[gateway] max_live_orders``); an
older order is named with its symbol_id too."""


class _Orders:
    """What both clients share: order ids, the symbol each order is on, command records,
    and how much of what the transport returned the application has been handed.

    The transport releases (colocated) or acknowledges (TCP) only records whose events the
    application has been handed, and every event before them: what a client read and kept
    for later (wait_for's other events, the async queue) stays the session's, so a client
    that dies before handing it out loses none of it (the account's next session gets it
    again, with anything of the same batches already handed: repeats with their exec
    ids). At most half the session's ring is held back so: past that the oldest records
    go anyway, so that a client that keeps events and never takes them does not hold the
    gateway's events back for everyone (docs/protocol.md, flow control)."""

    def __init__(self, transport: Transport, seen: SeenExecs | None = None) -> None:
        self.transport = transport
        # drops the events a session of the account got before (see tradsys.client.repeats)
        self.seen = seen
        self.account_id = transport.accepted.account_id
        self.session_id = transport.accepted.session_id
        # events of the account's orders the gateway dropped since its previous login,
        # instead of keeping them for this session (past the 4 096 it keeps): not 0, the
        # events do not tell where the orders stand; order_status() does
        self.events_dropped = transport.accepted.events_dropped
        # client order ids must be unique among the account's live orders, whichever of
        # its sessions sent them (orders belong to the account, and a session takes over
        # another's): see first_client_id; pass order_id= to choose your own
        self._ids = itertools.count(first_client_id())
        self._symbols: dict[int, int] = {}
        # the gateway's SYMBOLS directory: name -> symbol id (orders may name either)
        self.symbols: dict[str, int] = {
            info.name: info.symbol_id for info in getattr(transport, "symbols", [])
        }
        self._events_read = 0
        # per batch read and not given back: (events read up to its end, its records)
        self._batches: deque[tuple[int, int]] = deque()
        self._held = 0  # records the transport returned and has not been told to give back
        self._held_max = max(1, transport.accepted.ring_capacity // 2)

    def _given_back(self, handed: int) -> int:
        """How many of the records the transport returned may go now: those of the oldest
        batches whose events are among the first ``handed`` events read (the application
        has had every one of them), and the oldest beyond the cap on what is held."""
        n = 0
        while self._batches and (self._batches[0][0] <= handed or self._held - n > self._held_max):
            n += self._batches.popleft()[1]
        self._held -= n
        return n

    def _read_records(self, timeout: float, handed: int) -> Records:
        """The transport's next batch without the repeats; ``handed`` as for
        :meth:`_given_back`."""
        records = self.transport.poll(timeout, self._given_back(handed))
        fresh = self._fresh(records)
        if len(records):
            self._events_read += len(fresh)
            self._batches.append((self._events_read, len(records)))
            self._held += len(records)
        return fresh

    def next_order_id(self) -> int:
        return next(self._ids)

    def _fresh(self, records: Records) -> Records:
        return records if self.seen is None else self.seen.fresh(records)

    def symbol_id(self, symbol: SymbolLike) -> int:
        """A symbol's id: an int as it is, a name (any case) from the gateway's directory."""
        if not isinstance(symbol, str):
            return int(symbol)
        name = symbol_named(symbol, self.symbols)
        found = None if name is None else self.symbols[name]
        if found is None:
            known = ", ".join(sorted(self.symbols)) or "none"
            raise ValueError(f"unknown symbol {symbol!r}; the gateway trades: {known}")
        return found

    def _new(self, symbol: SymbolLike, side: SideLike, quantity: int, price: int | None,
             order_id: int | None, kw: dict[str, Any]) -> tuple[int, bytes]:  # fmt: skip
        symbol_id = self.symbol_id(symbol)
        oid = self.next_order_id() if order_id is None else order_id
        record = order_bytes(oid, symbol_id, side, quantity, price, **kw)
        self._symbols[oid] = symbol_id  # only once the record is made: a refused one is not
        if len(self._symbols) > SYMBOLS_REMEMBERED:  # the oldest first (insertion order)
            del self._symbols[next(iter(self._symbols))]
        return oid, record

    def _symbol(self, order_id: int, symbol_id: SymbolLike | None) -> int:
        if symbol_id is not None:
            return self.symbol_id(symbol_id)
        try:
            return self._symbols[order_id]
        except KeyError:
            raise ValueError(
                f"order {order_id} is not among the last {SYMBOLS_REMEMBERED} orders this "
                "client submitted: pass its symbol_id"
            ) from None

    def _status_request(self, symbol_id: SymbolLike) -> tuple[int, bytes, _StatusAnswer]:
        """An ORDER_STATUS command with a fresh request id, and what collects its answer."""
        rid = self.next_order_id()
        sym = self.symbol_id(symbol_id) if symbol_id else 0
        return rid, command_bytes(CommandKind.ORDER_STATUS, rid, sym), _StatusAnswer(rid)

    def _cancel(self, order_id: int, symbol_id: SymbolLike | None) -> bytes:
        return command_bytes(CommandKind.CANCEL, order_id, self._symbol(order_id, symbol_id))

    def _replace(
        self, order_id: int, price: int, quantity: int, symbol_id: SymbolLike | None
    ) -> bytes:
        sym = self._symbol(order_id, symbol_id)
        return command_bytes(CommandKind.REPLACE, order_id, sym, price=price, quantity=quantity)


class OrderClient(_Orders):
    """A blocking order-entry session (see the module docstring)."""

    def __init__(self, transport: Transport, seen: SeenExecs | None = None) -> None:
        super().__init__(transport, seen)
        self._callbacks: list[Callable[[Event], None]] = []
        # read, not yet returned: wait_for's other events, and a raising callback's batch
        self._backlog: deque[_Unhanded] = deque()

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        account_id: int,
        api_key: str,
        timeout: float = 5.0,
        wait: WaitLike = None,
        seen: SeenExecs | None = None,
    ) -> OrderClient:
        """Log in (see :func:`connect_transport` for ``address`` and ``wait``). ``seen``:
        the account's :class:`SeenExecs`, to see each event once across its sessions."""
        return cls(connect_transport(address, account_id, api_key, timeout, wait), seen)

    # ---- commands ------------------------------------------------------------------------

    def submit(
        self,
        symbol_id: SymbolLike,
        side: SideLike,
        quantity: int,
        price: int | None = None,
        *,
        order_id: int | None = None,
        **kw: Any,
    ) -> int:
        """Send one new order; return its client order id. Keywords as
        :func:`order_bytes` (tif, post_only, stop_price, display_qty, order_type)."""
        oid, rec = self._new(symbol_id, side, quantity, price, order_id, kw)
        self.transport.send_one(rec)
        return oid

    def submit_batch(self, records: Records) -> int:
        """Send a ``COMMAND_DTYPE`` array as it is (the caller sets the order ids)."""
        self.transport.send(_as_commands(records))
        return len(records)

    def cancel(self, order_id: int, symbol_id: SymbolLike | None = None) -> None:
        self.transport.send_one(self._cancel(order_id, symbol_id))

    def replace(
        self, order_id: int, *, price: int, quantity: int, symbol_id: SymbolLike | None = None
    ) -> None:
        """New price and new total quantity (FIX cancel/replace semantics)."""
        self.transport.send_one(self._replace(order_id, price, quantity, symbol_id))

    def mass_cancel(self, symbol_id: SymbolLike = 0) -> None:
        """Cancel every live order of this account (in one symbol, or all with 0)."""
        self.transport.send_one(
            command_bytes(CommandKind.MASS_CANCEL, 0, self.symbol_id(symbol_id) if symbol_id else 0)
        )

    # ---- events --------------------------------------------------------------------------

    def on_event(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback`` for every event that :meth:`poll` / :meth:`wait_for` read.
        If it raises, the exception comes out of that call, and the events after the one
        it raised on are kept for the next :meth:`poll` (and passed to it then)."""
        self._callbacks.append(callback)

    def poll_records(self, timeout: float = 0.0) -> Records:
        """Raw event records (no objects); the array is valid until the next call. They
        are new records only: events :meth:`wait_for` kept come from :meth:`poll`."""
        deadline = time.monotonic() + timeout
        while True:
            records = self._read_records(max(0.0, deadline - time.monotonic()), self._handed())
            # a batch of repeats only (a shared SeenExecs dropped them all) is no event:
            # wait on for the first, as the timeout says
            if len(records) or time.monotonic() >= deadline:
                return records

    def poll(self, timeout: float = 0.0) -> list[Event]:
        """The events that arrived, as structs (waiting up to ``timeout`` for the first):
        those kept from earlier calls if any, else new ones."""
        deadline = time.monotonic() + timeout
        while not self._backlog:
            self._read(max(0.0, deadline - time.monotonic()), self._handed())
            if time.monotonic() >= deadline:
                break
        out: list[_Unhanded] = []
        try:
            while self._backlog:
                entry = self._backlog.popleft()
                out.append(entry._replace(called=True))
                if not entry.called:
                    self._call(entry.event)
        except BaseException:
            # a callback raised: what this call took goes back, called, for the next poll()
            # to return (before, it was lost to every poll(), and counted as handed)
            self._backlog.extendleft(reversed(out))
            raise
        return [entry.event for entry in out]

    def _handed(self) -> int:
        """Events read so far that the application has had, all of them before the first
        it has not."""
        return self._backlog[0].number - 1 if self._backlog else self._events_read

    def _read(self, timeout: float, handed: int) -> None:
        """The transport's next batch into the backlog, callbacks not yet called."""
        first = self._events_read + 1
        for k, record in enumerate(self._read_records(timeout, handed)):
            self._backlog.append(_Unhanded(first + k, to_event(record), False))

    def _call(self, event: Event) -> None:
        for callback in self._callbacks:
            callback(event)

    def events(self, timeout: float = 1.0) -> Iterator[Event]:
        """Events as they come, until none arrives within ``timeout``."""
        while batch := self.poll(timeout):
            yield from batch

    def wait_for(
        self, order_id: int, kinds: tuple[type, ...] = (Ack,), timeout: float = 5.0
    ) -> Event:
        """The first event of ``kinds`` for ``order_id``; OrderRejected if the order is
        rejected first, TimeoutError if nothing comes. Other events stay for poll(), and
        in the session until then (see :class:`_Orders`)."""

        def judge(event: Event) -> int:
            return _END if _answers(event, order_id, kinds) else _KEEP

        what = f"no {[k.__name__ for k in kinds]} for order {order_id}"
        return _answer(self._wait(judge, timeout, what), kinds)

    def order_status(self, symbol_id: SymbolLike = 0, timeout: float = 5.0) -> list[OrderStatus]:
        """The account's live orders (in one symbol, or all with 0), by client order id,
        as the gateway holds them at one place in this session's event stream: every event
        before it is in the answer, every event after it is news. OrderRejected if it is
        refused (STATUS_TOO_LARGE: ask per symbol), TimeoutError if it does not come.
        Events that arrive meanwhile stay for poll(), as with :meth:`wait_for`."""
        rid, record, answer = self._status_request(symbol_id)
        self.transport.send_one(record)
        end = self._wait(answer.judge, timeout, f"no ORDER_STATUS answer to request {rid}")
        return answer.result(end)

    def _wait(self, judge: Callable[[Event], int], timeout: float, what: str) -> Event:
        """Events in order until ``judge`` says one ends the wait (returned); those it
        takes are consumed, the others stay for poll(), in order. TimeoutError(what)."""
        deadline = time.monotonic() + timeout
        kept: list[_Unhanded] = []
        looked = False  # what had arrived is read at least once, also with timeout=0
        try:
            while True:
                if not self._backlog:
                    left = deadline - time.monotonic()
                    if left <= 0 and looked:
                        raise TimeoutError(what)
                    self._read(max(left, 0.0), kept[0].number - 1 if kept else self._events_read)
                    looked = True
                    continue
                entry = self._backlog.popleft()
                if not entry.called:
                    self._call(entry.event)
                verdict = judge(entry.event)
                if verdict == _END:
                    return entry.event
                if verdict == _KEEP:
                    kept.append(entry._replace(called=True))
        finally:
            self._backlog.extendleft(reversed(kept))

    # ---- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """End the session (TCP: LOGOUT first; colocated: closing the socket does it).
        Events read and not yet returned by :meth:`poll` go to the account's next session."""
        done = self._given_back(self._handed())
        logout = getattr(self.transport, "logout", None)
        if callable(logout) and not self.transport.closed:
            logout(done=done)
            done = 0
        self.transport.close(done)

    def __enter__(self) -> OrderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _answers(event: Event, order_id: int, kinds: tuple[type, ...]) -> bool:
    """Whether ``event`` ends a wait_for: one of ``kinds`` for the order, or its reject."""
    return event.order_id == order_id and isinstance(event, (*kinds, Reject))


# what a wait's judge says of an event: keep it for later, take it, or end the wait
_KEEP, _TAKE, _END = 0, 1, 2


class _StatusAnswer:
    """Collects one ORDER_STATUS answer: its orders are taken (not left for poll), its
    end or its reject ends the wait."""

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.orders: list[OrderStatus] = []
        self.done: asyncio.Future[Event] | None = None  # the async client's: set at the end

    def judge(self, event: Event) -> int:
        if isinstance(event, OrderStatus) and event.request_id == self.request_id:
            self.orders.append(event)
            return _TAKE
        if isinstance(event, StatusEnd | Reject) and event.order_id == self.request_id:
            return _END
        return _KEEP

    def result(self, end: Event) -> list[OrderStatus]:
        if isinstance(end, Reject):
            raise OrderRejected(end)
        return self.orders


def _answer(event: Event, kinds: tuple[type, ...]) -> Event:
    if isinstance(event, Reject) and Reject not in kinds:
        raise OrderRejected(event)
    return event


class AsyncOrderClient(_Orders):
    """The asyncio twin of :class:`OrderClient`. Sends are immediate (a ring push or a
    socket write); a reader thread waits on the transport with the GIL released and hands
    the events to the loop. An event counts as handed once :meth:`next_event` (or
    :meth:`events`, :meth:`wait_for`) has returned it, and every one before it has been
    too; until then it stays the session's (see :class:`_Orders`)."""

    def __init__(
        self,
        transport: Transport,
        loop: asyncio.AbstractEventLoop,
        seen: SeenExecs | None = None,
    ) -> None:
        super().__init__(transport, seen)
        self.loop = loop
        self.queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._taken = 0  # events taken from the queue (the loop counts)
        # events wait_for passed over, numbered as taken, for next_event first
        self._kept: deque[tuple[int, Event]] = deque()
        # set when wait_for keeps one: a task already waiting in next_event takes it then
        self._kept_added = asyncio.Event()
        # taken from the queue by a next_event that a kept event woke first: they came
        # after the kept ones and before what the queue still holds
        self._ahead: deque[Event | BaseException] = deque()
        self._handed_n = 0  # events handed, all before the first kept one (the reader reads)
        self._closed = False
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True, name="tradsys-events")
        self._reader.start()
        self._sends_waiting = 0  # sends waiting for room (see _send_waiting)
        # order_status answers being waited for, by request id (see _take)
        self._statuses: dict[int, _StatusAnswer] = {}
        self._send_turn = asyncio.Lock()

    @classmethod
    async def connect(
        cls,
        address: str,
        *,
        account_id: int,
        api_key: str,
        timeout: float = 5.0,
        wait: WaitLike = None,
        seen: SeenExecs | None = None,
    ) -> AsyncOrderClient:
        loop = asyncio.get_running_loop()
        transport = await loop.run_in_executor(
            None, connect_transport, address, account_id, api_key, timeout, wait
        )
        return cls(transport, loop, seen)

    def _read(self) -> None:
        put = self.queue.put_nowait
        while not self._stop.is_set():
            try:
                events = [to_event(r) for r in self._read_records(0.05, self._handed_n)]
            except BaseException as exc:  # Disconnected, or the transport was closed
                if not self._stop.is_set():
                    self.loop.call_soon_threadsafe(put, exc)
                return
            for event in events:
                self.loop.call_soon_threadsafe(put, event)

    async def submit(
        self,
        symbol_id: SymbolLike,
        side: SideLike,
        quantity: int,
        price: int | None = None,
        *,
        order_id: int | None = None,
        **kw: Any,
    ) -> int:
        oid, rec = self._new(symbol_id, side, quantity, price, order_id, kw)
        await self._send_one(rec)
        return oid

    async def submit_batch(self, records: Records) -> int:
        rest = records = _as_commands(records)
        if not self._sends_waiting:  # else it queues behind the sends waiting for room
            rest = records[self.transport.try_send(records) :]
        if len(rest):
            await self._send_waiting(rest)
        return len(records)

    async def cancel(self, order_id: int, symbol_id: SymbolLike | None = None) -> None:
        await self._send_one(self._cancel(order_id, symbol_id))

    async def replace(
        self, order_id: int, *, price: int, quantity: int, symbol_id: SymbolLike | None = None
    ) -> None:
        await self._send_one(self._replace(order_id, price, quantity, symbol_id))

    async def mass_cancel(self, symbol_id: SymbolLike = 0) -> None:
        await self._send_one(
            command_bytes(CommandKind.MASS_CANCEL, 0, self.symbol_id(symbol_id) if symbol_id else 0)
        )

    async def _send_one(self, record: bytes) -> None:
        if self._sends_waiting or not self.transport.try_send_one(record):
            await self._send_waiting(np.frombuffer(record, wire.COMMAND_DTYPE))

    async def _send_waiting(self, records: Records) -> None:
        """Send what found no room at once without blocking the loop: the wait runs in a
        worker thread while the loop goes on (handing out events, which is what makes the
        room), and sends made meanwhile queue behind it, in the order they were made."""
        self._sends_waiting += 1
        try:
            async with self._send_turn:  # asyncio.Lock wakes its waiters first come first
                await self.loop.run_in_executor(None, self.transport.send, records)
        finally:
            self._sends_waiting -= 1

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next event: one :meth:`wait_for` passed over first, else the queue's."""
        deadline = None if timeout is None else self.loop.time() + timeout
        while True:
            if not (self._kept or self._ahead or not self.queue.empty()):
                left = None if deadline is None else deadline - self.loop.time()
                if left is not None and left <= 0:
                    raise TimeoutError("no event queued")
                await self._wait_for_event(left)
            if self._kept:
                _, event = self._kept.popleft()
            else:
                try:
                    event = await self._take(0)
                except TimeoutError:  # what came was a record of an order_status answer
                    continue
            self._note_handed()
            return event

    async def _wait_for_event(self, timeout: float | None) -> None:
        """Until the queue has an event or :meth:`wait_for` keeps one (it may be taking
        from the queue meanwhile: what it passes over is this waiter's, and comes first)."""
        self._kept_added.clear()
        getter = asyncio.ensure_future(self.queue.get())
        kept = asyncio.ensure_future(self._kept_added.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, kept}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (getter, kept):
                waiter.cancel()  # a Queue.get cancelled before it took leaves the item
        if getter.done() and not getter.cancelled():
            self._ahead.append(getter.result())
        if not done:
            raise TimeoutError("no event came")

    async def _take(self, timeout: float | None) -> Event:
        """The next event out of the queue, past the records of the order_status answers
        being waited for, which go to their request whichever task takes them."""
        while True:
            event = await self._take_one(timeout)
            if not (self._statuses and self._route_status(event)):
                return event
            self._note_handed()
            if timeout is not None and timeout <= 0 and not (self._ahead or self.queue.qsize()):
                raise TimeoutError("no event queued")

    def _route_status(self, event: Event) -> bool:
        """Whether ``event`` belongs to an order_status answer waited for (taken by it)."""
        for answer in self._statuses.values():
            verdict = answer.judge(event)
            if verdict == _END and answer.done is not None and not answer.done.done():
                answer.done.set_result(event)
            if verdict != _KEEP:
                return True
        return False

    async def _take_one(self, timeout: float | None) -> Event:
        if self._ahead:
            item = self._ahead.popleft()
            if isinstance(item, BaseException):
                self._ahead.appendleft(item)  # every later call sees it too
                raise Disconnected(str(item)) from item
            self._taken += 1
            return item
        if timeout is not None and timeout <= 0:
            # asyncio.wait_for(..., 0) cancels before the getter runs, even with an event
            # queued: with no time to wait, take what is there
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                raise TimeoutError("no event queued") from None
        else:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        if isinstance(item, BaseException):
            self.queue.put_nowait(item)  # every later call sees it too
            raise Disconnected(str(item)) from item
        self._taken += 1
        return item

    def _note_handed(self) -> None:
        self._handed_n = self._kept[0][0] - 1 if self._kept else self._taken

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in order, until the session ends (Disconnected)."""
        while True:
            yield await self.next_event()

    async def wait_for(
        self, order_id: int, kinds: tuple[type, ...] = (Ack,), timeout: float = 5.0
    ) -> Event:
        """As :meth:`OrderClient.wait_for`: the events it passes over stay, in order, for
        :meth:`next_event` / :meth:`events` (and in the session until then); a task
        already waiting there is woken for each, in order."""

        for i, (_, event) in enumerate(self._kept):
            if _answers(event, order_id, kinds):
                del self._kept[i]
                self._note_handed()
                return _answer(event, kinds)
        async with asyncio.timeout(timeout):
            while True:
                event = await self._take(None)  # past order_status answers' records
                if _answers(event, order_id, kinds):
                    self._note_handed()
                    return _answer(event, kinds)
                self._kept.append((self._taken, event))
                self._kept_added.set()
                self._note_handed()

    async def order_status(
        self, symbol_id: SymbolLike = 0, timeout: float = 5.0
    ) -> list[OrderStatus]:
        """As :meth:`OrderClient.order_status`; events passed over stay for
        :meth:`next_event`, as with :meth:`wait_for`. The answer's records go to it
        whichever task takes them from the queue (a consumer in :meth:`events`, a
        :meth:`wait_for` beside it): none of them reaches another caller."""
        rid, record, answer = self._status_request(symbol_id)
        done: asyncio.Future[Event] = self.loop.create_future()
        answer.done = done
        self._statuses[rid] = answer
        try:
            await self._send_one(record)
            for entry in list(self._kept):  # passed over before it was asked for: none
                if self._route_status(entry[1]):
                    self._kept.remove(entry)
                    self._note_handed()
            async with asyncio.timeout(timeout):
                while not done.done():
                    await self._take_unless(done)
        finally:
            del self._statuses[rid]
        return answer.result(done.result())

    async def _take_unless(self, done: asyncio.Future[Event]) -> None:
        """Take one event for :meth:`next_event` (kept, in order), or return once
        ``done`` is set by whichever task took the answer's last record."""
        if not (self._ahead or self.queue.qsize()):
            getter = asyncio.ensure_future(self.queue.get())
            try:
                waiters: set[asyncio.Future[Any]] = {getter, done}
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                getter.cancel()  # a Queue.get cancelled before it took leaves the item
            if getter.done() and not getter.cancelled():
                self._ahead.append(getter.result())
            if not self._ahead:
                return
        try:
            event = await self._take(0)
        except TimeoutError:  # it was a record of an answer
            return
        self._kept.append((self._taken, event))
        self._kept_added.set()
        self._note_handed()

    async def close(self) -> None:
        """End the session. Whoever waits on :meth:`events` or :meth:`next_event` gets
        what was queued, then Disconnected; what was queued and not taken goes to the
        account's next session."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        await self.loop.run_in_executor(None, self._reader.join, 2.0)
        # the reader puts nothing once stopped: this ends the waiting iterators
        self.queue.put_nowait(Disconnected("the client is closed"))
        done = self._given_back(self._handed_n)
        logout = getattr(self.transport, "logout", None)
        if callable(logout) and not self.transport.closed:
            await self.loop.run_in_executor(None, lambda: logout(done=done))
            done = 0
        self.transport.close(done)

    async def __aenter__(self) -> AsyncOrderClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
