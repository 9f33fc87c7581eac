"""Trading status end to end (docs/marketdata.md "Trading status"): shard workers and the
md sidecar run by a Supervisor, subscribers using tradsys.client.marketdata. A halt, an
auction call and its uncross reach a subscriber in order with the trades around them; a
late joiner, and a subscriber of a restarted sidecar, learn the phase from the snapshot."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.marketdata.md_rig import DEADLINE_S, MdRig, md_config, md_rig
from tradsys.client.md_feed import MdEvent, StatusChange, Trades
from tradsys.marketdata.protocol import Channel
from tradsys.matching import Phase, StatusReason
from tradsys.matching.commands import batch, control, new_order
from tradsys.wire import ControlCode, Side

pytestmark = pytest.mark.multiprocess

ACME, ACMEX, BRKR = 1, 2, 3  # symbol ids of md_rig's instruments
CTL = ControlCode


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[MdRig]:
    yield from md_rig(md_config(instance, tmp_path))


def story(events: list[MdEvent], symbol: str) -> list[tuple[str, int]]:
    """A symbol's trades (by seq) and status changes (by phase), in arrival order."""
    out: list[tuple[str, int]] = []
    for ev in events:
        if isinstance(ev, Trades) and ev.symbol == symbol:
            out += [("trade", int(seq)) for seq in ev.records["seq"]]
        elif isinstance(ev, StatusChange) and ev.symbol == symbol and ev.reason is not None:
            out.append((Phase(ev.phase).name, ev.seq))
    return out


def halt_call_uncross() -> list[object]:
    """On ACME (order ids ascend, as the engine requires): a trade; HALT; AUCTION_START;
    a crossing bid rests; the uncross trades; a trade in continuous trading again.
    Resting orders on other levels make the batch big enough for the sidecar's batch
    path, which reorders a batch by channel."""
    resting = [new_order(1 + i, ACME, 3, Side.BUY, 1, 900 + i) for i in range(12)]
    return [
        *resting,
        new_order(21, ACME, 1, Side.SELL, 5, 1000),
        new_order(22, ACME, 2, Side.BUY, 2, 1000),  # trade 1
        control(CTL.HALT, ACME),
        control(CTL.AUCTION_START, ACME),
        new_order(23, ACME, 2, Side.BUY, 4, 1001),  # rests crossed: a call phase
        control(CTL.AUCTION_UNCROSS, ACME),  # trade 2, then continuous
        new_order(24, ACME, 1, Side.SELL, 1, 1001),  # trade 3
    ]


def test_a_halt_and_an_auction_reach_the_subscriber_in_order_with_the_trades(
    rig: MdRig,
) -> None:
    events: list[MdEvent] = []
    client = rig.client(["ACME"], on_event=events.append)
    rig.wait_converged(client)
    assert client.books["ACME"].phase == Phase.CONTINUOUS  # from the snapshot
    rig.send(0, batch(*halt_call_uncross()))  # one push: the worker drains it at once
    want = [
        ("trade", 1),
        ("HALTED", 1),
        ("AUCTION", 2),
        ("trade", 2),
        ("CONTINUOUS", 3),
        ("trade", 3),
    ]
    assert client.run_until(lambda: len(story(events, "ACME")) >= len(want), DEADLINE_S)
    assert story(events, "ACME") == want
    changes = [e for e in events if isinstance(e, StatusChange) and e.reason is not None]
    assert [(c.previous, c.reason) for c in changes] == [
        (Phase.CONTINUOUS, StatusReason.HALT),
        (Phase.HALTED, StatusReason.AUCTION_START),
        (Phase.AUCTION, StatusReason.AUCTION_UNCROSS),
    ]
    rig.wait_converged(client)
    book = client.books["ACME"]
    assert (book.phase, book.status_seq) == (Phase.CONTINUOUS, 3)


def test_a_late_joiner_learns_the_status_from_the_snapshot(rig: MdRig) -> None:
    rig.send(0, batch(control(CTL.HALT, BRKR)))
    rig.send(1, batch(control(CTL.AUCTION_START, ACMEX)))
    events: list[MdEvent] = []
    late = rig.client(on_event=events.append)  # after the changes were published
    rig.wait_converged(late)
    assert {s: (b.phase, b.status_seq) for s, b in late.books.items()} == {
        "ACME": (Phase.CONTINUOUS, 0),
        "ACMEX": (Phase.AUCTION, 1),
        "BRKR": (Phase.HALTED, 1),
    }
    learnt = {e.symbol: e.phase for e in events if isinstance(e, StatusChange)}
    assert learnt == {"ACME": Phase.CONTINUOUS, "ACMEX": Phase.AUCTION, "BRKR": Phase.HALTED}
    # and the next change arrives live, next in the status sequence
    rig.send(0, batch(control(CTL.RESUME, BRKR)))
    assert late.run_until(lambda: late.books["BRKR"].phase == Phase.CONTINUOUS, DEADLINE_S)
    assert late.books["BRKR"].status_seq == 2


def test_a_restarted_sidecar_knows_the_status_from_the_workers(rig: MdRig) -> None:
    rig.send(0, batch(control(CTL.HALT, BRKR)))
    first = rig.client(["BRKR"])
    assert first.run_until(lambda: first.books["BRKR"].phase == Phase.HALTED, DEADLINE_S)
    os.kill(rig.sidecar_pid, signal.SIGKILL)
    rig.restart_sidecar()  # knows nothing but what the refresh images tell it
    fresh = rig.client()
    rig.wait_converged(fresh)
    assert (fresh.books["BRKR"].phase, fresh.books["BRKR"].status_seq) == (Phase.HALTED, 1)
    assert fresh.books["ACME"].phase == Phase.CONTINUOUS
    # its heartbeat names the status seq too
    assert fresh.run_until(
        lambda: (
            (hb := fresh.core.last_heartbeat) is not None
            and {s.symbol: s.status_seq for s in hb.symbols}["BRKR"] == 1
        ),
        DEADLINE_S,
    )


def test_a_status_only_subscriber_keeps_no_book_but_knows_the_phase(rig: MdRig) -> None:
    rig.send(0, batch(new_order(1, ACME, 1, Side.SELL, 5, 1000), control(CTL.HALT, ACME)))
    client = rig.client(["ACME"], channels=[Channel.STATUS])
    assert client.run_until(lambda: client.books["ACME"].phase == Phase.HALTED, DEADLINE_S)
    book = client.books["ACME"]
    assert not book.synced and book.asks == {}
