"""A client order id names one order of the account at a time, and an order's last events
never look like the end of another order under the same id: an order cancelled at its
session's disconnect keeps its client id until it is done (a NEW reusing the id is
DUPLICATE_CLIENT_ID, a CANCEL or REPLACE naming it UNKNOWN_CLIENT_ID), and the engine's
REJECTED answering a CANCEL or REPLACE reaches the client without DONE, also when a fill
finished the order first (routed or held). The C pump and the reference model agree."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import RUN_PREFIX, RingFactory
from tests.gateway.fake_shard import FakeShard
from tests.gateway.rig import GatewayRig, account, command
from tests.gateway.test_reference_model import Differential
from tradsys.cores.order_image import LIVE_ORDER_DTYPE
from tradsys.gateway import GatewayCore
from tradsys.ring import instance_segments
from tradsys.ring.segment import unlink_quietly
from tradsys.wire import CancelReason, CommandKind, EventFlag, EventKind, RejectReason, Side


def summary(events: Any) -> list[tuple[int, int, int, int, int]]:
    """(kind, client order id, reason, flags, quantity) of each event, in order."""
    return [
        (int(e["kind"]), int(e["order_id"]), int(e["reason"]), int(e["flags"]), int(e["quantity"]))
        for e in events
    ]


REJECTED, TRADE, CANCELLED = EventKind.REJECTED, EventKind.TRADE, EventKind.CANCELLED
DONE, MAKER = int(EventFlag.DONE), int(EventFlag.MAKER)


def test_a_client_id_cancelled_on_disconnect_stays_taken_until_the_order_is_done(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1, cancel_on_disconnect=True)])
    old = rig.session(1)
    sent = rig.rest(old, command(order_id=7, quantity=10))
    assert len(old.events()) == 1
    rig.core.remove_session(old.id)
    rig.poll()
    (cancel,) = rig.sent(0)
    assert (cancel["kind"], cancel["order_id"]) == (CommandKind.CANCEL, sent["order_id"])
    # the order still rests: its id is taken, yet out of reach of amends
    new = rig.session(1)
    new.send(
        command(order_id=7, side=Side.SELL, quantity=5, price=1100),
        command(CommandKind.CANCEL, order_id=7),
        command(CommandKind.REPLACE, order_id=7, quantity=12),
    )
    rig.poll()
    assert summary(new.events()) == [
        (REJECTED, 7, RejectReason.DUPLICATE_CLIENT_ID, DONE, 5),
        (REJECTED, 7, RejectReason.UNKNOWN_CLIENT_ID, 0, 0),
        (REJECTED, 7, RejectReason.UNKNOWN_CLIENT_ID, 0, 12),
    ]
    assert len(rig.sent(0)) == 0
    # a fill racing the cancel, then the cancel: the old order's, under its id
    rig.answer(0, TRADE, sent, quantity=4, leaves_qty=6, flags=MAKER)
    rig.poll()
    new.send(command(order_id=7))  # still live: still taken
    rig.poll()
    rig.answer(0, CANCELLED, cancel, quantity=6, leaves_qty=0, reason=CancelReason.USER)
    rig.poll()
    assert summary(new.events()) == [
        (TRADE, 7, 0, MAKER, 4),
        (REJECTED, 7, RejectReason.DUPLICATE_CLIENT_ID, DONE, 10),
        (CANCELLED, 7, CancelReason.USER, DONE, 6),
    ]
    assert rig.core.account_state(1).open_orders == 0
    # done: the id is free again
    new.send(command(order_id=7, side=Side.SELL, quantity=5, price=1100))
    rig.poll()
    (again,) = rig.sent(0)
    assert again["order_id"] != sent["order_id"] and again["quantity"] == 5
    assert len(new.events()) == 0
    assert rig.core.account_state(1).open_orders == 1


def test_a_replace_rejected_after_a_full_fill_has_no_done_flag(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1)])
    s = rig.session(1)
    sent = rig.rest(s, command(order_id=5, quantity=10))
    s.events()
    s.send(command(CommandKind.REPLACE, order_id=5, quantity=12))
    rig.poll()
    (replace,) = rig.sent(0)
    # the engine filled the order before the replace reached it
    rig.answer(0, TRADE, sent, quantity=10, leaves_qty=0, flags=DONE | MAKER)
    rig.poll()
    # the fill freed id 5, and a new order takes it before the replace's answer comes
    s.send(command(order_id=5, quantity=3))
    rig.poll()
    (reuse,) = rig.sent(0)
    rig.answer(0, REJECTED, replace, reason=RejectReason.UNKNOWN_ORDER)
    rig.poll()
    assert summary(s.events()) == [
        (TRADE, 5, 0, DONE | MAKER, 10),
        (REJECTED, 5, RejectReason.UNKNOWN_ORDER, 0, 12),  # not the new order 5's end
    ]
    assert rig.core.account_state(1).open_orders == 1
    s.send(command(CommandKind.CANCEL, order_id=5))  # the new order 5 lives on
    rig.poll()
    (cancel,) = rig.sent(0)
    assert cancel["order_id"] == reuse["order_id"]


def test_a_held_cancel_reject_after_a_full_fill_has_no_done_flag(
    make_rig: Callable[..., GatewayRig],
) -> None:
    """The same on the held path: the events come while the account has no session."""
    rig = make_rig([account(1, cancel_on_disconnect=False)])
    s = rig.session(1)
    sent = rig.rest(s, command(order_id=5, quantity=10))
    s.send(command(CommandKind.CANCEL, order_id=5))
    rig.poll()
    (cancel,) = rig.sent(0)
    s.events()
    rig.core.remove_session(s.id)
    rig.answer(0, TRADE, sent, quantity=10, leaves_qty=0, flags=DONE | MAKER)
    rig.answer(0, REJECTED, cancel, reason=RejectReason.UNKNOWN_ORDER, quantity=0)
    rig.poll()
    assert rig.core.stats()["events_held"] == 2
    nxt = rig.session(1)
    rig.poll()
    assert summary(nxt.events()) == [
        (TRADE, 5, 0, DONE | MAKER, 10),
        (REJECTED, 5, RejectReason.UNKNOWN_ORDER, 0, 0),
    ]


def test_drained_rejects_keep_done_only_for_a_new(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    """Events a successor drains from a shard ring: a REJECTED answering a NEW keeps DONE,
    one answering a CANCEL or REPLACE loses it, also when the order is gone (not
    restored) by then."""
    ledger = tmp_path / "gateway.ledger"
    rig = make_rig([account(1, cancel_on_disconnect=False)])
    assert rig.core.attach_ledger(ledger, 42) is False
    s = rig.session(1)
    s.send(command(order_id=5, quantity=10), command(order_id=6), command(order_id=7))
    rig.poll()
    five, six, seven = rig.sent(0)
    rig.answer(0, EventKind.ACCEPTED, five)
    rig.poll()
    s.send(
        command(CommandKind.REPLACE, order_id=5, quantity=12),
        command(CommandKind.CANCEL, order_id=7),
    )
    rig.poll()
    replace, cancel = rig.sent(0)
    s.events()
    # the gateway dies; meanwhile the shard fills 5 (then rejects its replace), rejects
    # the NEW of 6, and the NEW of 7 and its cancel
    rig.answer(0, TRADE, five, quantity=10, leaves_qty=0, flags=DONE | MAKER)
    rig.answer(0, REJECTED, replace, reason=RejectReason.UNKNOWN_ORDER)
    rig.answer(0, REJECTED, six, reason=RejectReason.HALTED)
    rig.answer(0, REJECTED, seven, reason=RejectReason.HALTED)
    rig.answer(0, REJECTED, cancel, reason=RejectReason.UNKNOWN_ORDER)
    rig.core.close()
    rig.core = GatewayCore(rig.config, epoch=rig.epoch + 1, cancel_on_start=False)
    assert rig.core.attach_ledger(ledger, 42)
    assert rig.core.drain() == 5
    assert rig.core.restore(np.zeros(0, dtype=LIVE_ORDER_DTYPE)) == 0
    assert rig.core.hold_drained() == 5
    nxt = rig.session(1)
    rig.poll()
    assert summary(nxt.events()) == [
        (TRADE, 5, 0, DONE | MAKER, 10),
        (REJECTED, 5, RejectReason.UNKNOWN_ORDER, 0, 12),
        (REJECTED, 6, RejectReason.HALTED, DONE, 10),
        (REJECTED, 7, RejectReason.HALTED, DONE, 10),
        (REJECTED, 7, RejectReason.UNKNOWN_ORDER, 0, 0),
    ]


class _Fixed(random.Random):
    """The toy engine's choices made plain: every order rests, fills are whole."""

    def random(self) -> float:
        return 0.5

    def randint(self, a: int, b: int) -> int:
        return b

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[0]


class _HoldingShard(FakeShard):
    """A toy engine whose answers wait, while `holding`, for the test to deliver them
    (after events it made earlier): what a shard does before the gateway reads it."""

    def __init__(self) -> None:
        super().__init__(_Fixed())
        self.holding = False
        self.later: list[dict[str, Any]] = []

    def on_command(self, c: dict[str, Any]) -> list[dict[str, Any]]:
        out = super().on_command(c)
        if not self.holding:
            return out
        self.later += out
        return []


def _new(order_id: int, quantity: int = 10) -> dict[str, int]:
    return {"kind": int(CommandKind.NEW_ORDER), "order_id": order_id, "symbol_id": 1,
            "side": 1, "order_type": 1, "tif": 1, "price": 1000, "quantity": quantity}  # fmt: skip


def _amend(kind: CommandKind, order_id: int, quantity: int = 0) -> dict[str, int]:
    return {"kind": int(kind), "order_id": order_id, "price": 1000, "quantity": quantity}


def test_client_id_reuse_agrees_with_the_model() -> None:
    """Both races through the C pump and the model side by side (every record compared
    by the differential rig)."""
    instance = f"{RUN_PREFIX}gwreuse"
    rings = RingFactory(instance)
    tmp = Path(tempfile.mkdtemp(prefix="gwreuse"))
    diff = None
    try:
        cod = {"cancel_on_disconnect": True}
        diff = Differential(rings, {1: cod, 2: cod}, 0, tmp / "gateway.ledger")
        shard = _HoldingShard()
        diff.shards = [shard, _HoldingShard()]
        # cancel-on-disconnect racing a fill: session 2 (account 1) inherits the order
        diff.step(("send", 0, [_new(7)]))
        early = shard.fill()
        shard.holding = True
        diff.step(("leave", 0, 0))
        diff.step(("send", 2, [_new(7), _amend(CommandKind.CANCEL, 7)]))
        assert (1, 7) in diff.model.by_client  # still taken: the old order is not done
        shard.holding = False
        diff._deliver([early + shard.later, []])
        shard.later = []
        diff.check_state()
        diff.step(("send", 2, [_new(7)]))  # done: free again
        # a replace racing a full fill, its id reused before its reject comes
        diff.step(("send", 2, [_new(5)]))
        early = shard.fill()  # the oldest live order: 7
        shard.holding = True
        diff.step(("send", 2, [_amend(CommandKind.REPLACE, 7, 12)]))
        shard.holding = False
        diff._deliver([early, []])
        shard.holding = True
        diff.step(("send", 2, [_new(7, 3)]))
        shard.holding = False
        diff._deliver([shard.later, []])
        diff.check_state()
        assert diff.model.accounts[1].open_orders == 2
    finally:
        if diff is not None:
            diff.rig.close()
        shutil.rmtree(tmp, ignore_errors=True)
        rings.close_all()
        unlink_quietly(instance_segments(instance))
