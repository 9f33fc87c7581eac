"""Kill switch (account and global), throttle, hot reload of limits, cancel on disconnect
and the pump thread."""

from __future__ import annotations

import os
import select
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pytest

from tests.gateway.rig import AAA, BBB, GatewayRig, account, command
from tradsys.cores.order_image import LIVE_ORDER_DTYPE
from tradsys.gateway import GatewayCore, GatewayError, next_epoch
from tradsys.ring import RingAttachError
from tradsys.wire import COMMAND_DTYPE, CommandKind, EventKind, RejectReason, Side

SECOND = 1_000_000_000


def test_account_kill_switch_cancels_and_blocks(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1), account(2)])
    s1, s2 = rig.session(1), rig.session(2)
    s1.send(command(order_id=1))
    rig.poll()
    (live,) = rig.sent(0)
    rig.core.kill(1)
    s1.send(command(order_id=2), command(CommandKind.REPLACE, order_id=1, price=1000, quantity=5))
    s2.send(command(order_id=2))
    rig.poll()
    for shard in (0, 1):
        cmds = rig.sent(shard)
        assert cmds[0]["kind"] == CommandKind.MASS_CANCEL and cmds[0]["account_id"] == 1
        # the other account still trades; nothing of account 1 follows the mass cancel
        assert [c["account_id"] for c in cmds[1:]] == ([2] if shard == 0 else [])
    ev = s1.events()
    assert list(ev["reason"]) == [RejectReason.KILL_SWITCH] * 2
    assert ev[1]["flags"] == 0  # a rejected replace does not end the order
    assert rig.core.account_state(1).killed
    # a cancel still goes through under the kill switch
    s1.send(command(CommandKind.CANCEL, order_id=1))
    rig.poll()
    (cxl,) = rig.sent(0)
    assert cxl["order_id"] == live["order_id"]
    rig.core.kill(1, on=False)
    s1.send(command(order_id=3))
    rig.poll()
    assert len(rig.sent(0)) == 1


def test_global_kill_switch(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1), account(2)])
    s1, s2 = rig.session(1), rig.session(2)
    rig.core.kill(None)
    s1.send(command(order_id=1))
    s2.send(command(order_id=1, symbol_id=BBB))
    rig.poll()
    for shard in (0, 1):
        (mc,) = rig.sent(shard)
        assert mc["kind"] == CommandKind.MASS_CANCEL and mc["account_id"] == 0
    assert s1.events()[0]["reason"] == RejectReason.KILL_SWITCH
    assert s2.events()[0]["reason"] == RejectReason.KILL_SWITCH
    rig.core.kill(None, on=False)
    s1.send(command(order_id=1))
    rig.poll()
    assert len(rig.sent(0)) == 1


def test_kill_unknown_account_is_an_error(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig()
    with pytest.raises(GatewayError, match="kill 42"):
        rig.core.kill(42)


def test_throttle_token_bucket(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1, throttle_per_s=10, throttle_burst=3)])
    s = rig.session()
    # sessions start with a full bucket (3); the test's clock is far past their add time
    now = 10**15
    s.send(*(command(order_id=i) for i in range(1, 6)))
    rig.poll(now)
    assert len(rig.sent(0)) == 3
    assert list(s.events()["reason"]) == [RejectReason.THROTTLED] * 2
    # 0.1 s later exactly one token is back
    s.send(command(order_id=6), command(order_id=7))
    rig.poll(now + SECOND // 10)
    assert len(rig.sent(0)) == 1
    assert list(s.events()["reason"]) == [RejectReason.THROTTLED]
    # cancels are never throttled
    s.send(command(CommandKind.CANCEL, order_id=1))
    rig.poll(now + SECOND // 10)
    assert len(rig.sent(0)) == 1


def test_hot_reload_of_limits(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1, max_order_qty=5)])
    s = rig.session()
    s.send(command(order_id=1, quantity=10))
    rig.poll()
    assert s.events()[0]["reason"] == RejectReason.MAX_ORDER_QTY
    rig.core.set_account_limits(account(1, max_order_qty=10))
    s.send(command(order_id=1, quantity=10))
    rig.poll()
    assert len(rig.sent(0)) == 1 and len(s.events()) == 0
    rig.core.set_account_limits(account(1, max_open_orders=1))
    s.send(command(order_id=2, quantity=10))
    rig.poll()
    assert s.events()[0]["reason"] == RejectReason.MAX_OPEN_ORDERS  # the open one was kept
    # a new account can be added at run time
    rig.core.set_account_limits(account(9))
    rig.session(9)
    with pytest.raises(GatewayError):
        rig.core.set_account_limits(account(1, max_order_qty=-1))


@pytest.mark.parametrize("cod", [True, False])
def test_remove_session_cancel_on_disconnect(
    make_rig: Callable[..., GatewayRig], cod: bool
) -> None:
    rig = make_rig([account(1)])
    s = rig.session(cancel_on_disconnect=cod)
    s.send(command(order_id=1), command(order_id=2), command(order_id=3, symbol_id=BBB))
    rig.poll()
    a, b = rig.sent(0)
    (c,) = rig.sent(1)
    rig.answer(0, EventKind.ACCEPTED, a)
    rig.answer(0, EventKind.CANCELLED, a, reason=1)  # a is finished before the disconnect
    rig.poll()
    assert len(s.events()) == 2  # read: nothing unread to hold (tests/gateway/test_unread*)
    rig.core.remove_session(s.id)
    rig.answer(0, EventKind.ACCEPTED, b)
    rig.poll()
    if cod:
        (cb,) = rig.sent(0)
        (cc,) = rig.sent(1)
        assert cb["kind"] == cc["kind"] == CommandKind.CANCEL
        assert (cb["order_id"], cc["order_id"]) == (b["order_id"], c["order_id"])
    else:
        assert len(rig.sent(0)) == 0 and len(rig.sent(1)) == 0
    # events of the gone session's orders still count in the account and are kept for
    # its next session -- with cancel-on-disconnect too: what an order does before the
    # cancel lands (this ACCEPTED, a fill that races it) and the cancel are the client's
    stats = rig.core.stats()
    assert (stats["events_orphaned"], stats["events_held"]) == (0, 1)
    assert rig.core.account_state(1).open_orders == 2
    rig.answer(0, EventKind.CANCELLED, b, reason=1)
    rig.poll()
    assert rig.core.account_state(1).open_orders == 1
    with pytest.raises(GatewayError):
        rig.core.remove_session(s.id)


def test_pump_thread_moves_orders_and_signals_the_eventfd(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig()
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        s = rig.session(notify_fd=efd)
        rig.core.start()
        try:
            s.send(command(order_id=1))
            got = np.zeros(4, dtype=COMMAND_DTYPE)
            assert rig.commands[0].pop_wait(got, timeout=10) == 1
            rig.answer(0, EventKind.ACCEPTED, got[0])
            assert select.select([efd], [], [], 10)[0] == [efd]
            assert os.eventfd_read(efd) >= 1
            (ev,) = s.events()
            assert ev["kind"] == EventKind.ACCEPTED and ev["order_id"] == 1
        finally:
            rig.core.stop()
        assert rig.core.stats()["commands_in"] == 1
    finally:
        os.close(efd)


def test_reload_accounts_from_a_config(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1)])
    s = rig.session()
    new = msgspec.structs.replace(rig.config, accounts=[account(1, max_order_qty=1), account(2)])
    rig.core.reload_accounts(new)
    s.send(command(order_id=1, quantity=2))
    rig.poll()
    assert s.events()[0]["reason"] == RejectReason.MAX_ORDER_QTY
    rig.session(2)  # added by the reload
    bad = msgspec.structs.replace(rig.config, accounts=[account(1), account(2, credit_limit=-1)])
    with pytest.raises(GatewayError, match="credit_limit"):
        rig.core.reload_accounts(bad)


def test_errors_name_what_is_wrong(make_rig: Callable[..., GatewayRig], instance: str) -> None:
    rig = make_rig()
    with pytest.raises(GatewayError, match="session for account 77: unknown"):
        rig.session(77)
    with pytest.raises(GatewayError, match="epoch"):
        GatewayCore(rig.config, epoch=0)
    other = msgspec.structs.replace(
        rig.config, engine=msgspec.structs.replace(rig.config.engine, instance=instance + "x")
    )
    with pytest.raises(RingAttachError):
        GatewayCore(other, epoch=1)  # no shard rings under that instance


def test_next_epoch_grows(tmp_path: Path) -> None:
    path = tmp_path / "epoch"
    first = next_epoch(path)
    assert next_epoch(path) == first + 1
    assert int(path.read_text()) == first + 1


def test_a_client_that_stops_reading_is_named_and_holds_back_its_shard(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1), account(2)], pump_batch=8)
    slow = rig.session(1, capacity=16)  # room for 16 in its ring + 8 in the pump's stage
    other = rig.session(2)
    slow.send(*(command(order_id=i) for i in range(1, 11)))
    for _ in range(2):  # 8 commands a pass
        rig.poll()
    sent = rig.sent(0)
    assert len(sent) == 10
    for cmd in sent:  # 30 events for the slow client
        rig.answer(0, EventKind.ACCEPTED, cmd)
        rig.answer(0, EventKind.TRADE, cmd, quantity=1, leaves_qty=9)
        rig.answer(0, EventKind.CANCELLED, cmd, reason=1)
    other.send(command(order_id=1))
    for _ in range(6):
        rig.poll()
    (theirs,) = rig.sent(0)
    rig.answer(0, EventKind.ACCEPTED, theirs)
    for _ in range(6):
        rig.poll()
    assert rig.core.stalled_sessions() == [slow.id]
    assert rig.core.stats()["event_stalls"] >= 1
    assert len(other.events()) == 0  # its ACCEPTED is behind the slow client's events
    got = 0
    for _ in range(10):
        got += len(slow.events())
        rig.poll()
    assert got == 30
    assert rig.core.stalled_sessions() == []
    assert list(other.events()["order_id"]) == [1]


def test_every_client_that_stopped_reading_is_named_at_once(
    make_rig: Callable[..., GatewayRig],
) -> None:
    """Two clients that stopped reading, their events interleaved in one shard's ring: the
    pump stops at the first whose stage is full, and the other, its ring full with events
    waiting in its stage, is named too -- both are ended after one stalled_session_ms,
    not the second one a whole stall after the first (before, only the first was named)."""
    rig = make_rig([account(1), account(2)], pump_batch=8)
    slow = [rig.session(1, capacity=16), rig.session(2, capacity=16)]
    for s in slow:
        s.send(*(command(order_id=i) for i in range(1, 11)))
    for _ in range(4):
        rig.poll()
    sent = rig.sent(0)
    assert len(sent) == 20
    for a, b in zip(sent[0::2], sent[1::2], strict=True):  # 30 events each, interleaved
        for cmd in (a, b):
            rig.answer(0, EventKind.ACCEPTED, cmd)
        for cmd in (a, b):
            rig.answer(0, EventKind.TRADE, cmd, quantity=1, leaves_qty=9)
        for cmd in (a, b):
            rig.answer(0, EventKind.CANCELLED, cmd, reason=1)
    for _ in range(8):
        rig.poll()
    assert sorted(rig.core.stalled_sessions()) == sorted(s.id for s in slow)
    got = [0, 0]
    for _ in range(12):
        for i, s in enumerate(slow):
            got[i] += len(s.events())
        rig.poll()
    assert got == [30, 30]
    assert rig.core.stalled_sessions() == []


def test_start_cancels_what_an_earlier_gateway_left_for_cod_accounts(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig(
        [account(1), account(2, cancel_on_disconnect=False), account(3)], cancel_on_start=True
    )
    rig.poll()
    for shard in (0, 1):
        cmds = rig.sent(shard)
        assert list(cmds["kind"]) == [CommandKind.MASS_CANCEL] * 2
        assert list(cmds["account_id"]) == [1, 3]


def test_start_cancels_only_for_cod_accounts_the_images_name(
    make_rig: Callable[..., GatewayRig],
) -> None:
    """Once the workers' images are restored, a cancel-on-disconnect account with no
    order in them has nothing resting: no MASS_CANCEL for it (10 000 such accounts were
    10 000 journal records per shard at every start)."""
    rig = make_rig(
        [account(1), account(2, cancel_on_disconnect=False), account(3), account(4)],
        cancel_on_start=True,
    )
    image = np.zeros(2, dtype=LIVE_ORDER_DTYPE)
    image[["order_id", "symbol_id", "account_id", "quantity", "leaves_qty"]] = [
        (1 << 40 | 1, AAA, 3, 10, 10),
        (1 << 40 | 2, AAA, 2, 10, 10),
    ]
    image["side"] = Side.BUY
    image["price"] = 1000
    assert rig.core.restore(image) == 2
    rig.poll()
    for shard in (0, 1):
        cmds = rig.sent(shard)
        assert list(cmds["kind"]) == [CommandKind.MASS_CANCEL]
        assert list(cmds["account_id"]) == [3]


def test_mass_cancel_blocks_nothing(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig([account(1), account(2)])
    s = rig.session(1)
    rig.core.mass_cancel(None)
    rig.core.mass_cancel(1)
    s.send(command(order_id=1))
    rig.poll()
    cmds = rig.sent(0)
    assert list(cmds["kind"]) == [CommandKind.MASS_CANCEL] * 2 + [CommandKind.NEW_ORDER]
    assert list(cmds["account_id"]) == [0, 1, 1]
    with pytest.raises(GatewayError, match="mass_cancel 9: unknown"):
        rig.core.mass_cancel(9)


def test_the_pump_thread_can_be_pinned_alone(make_rig: Callable[..., GatewayRig]) -> None:
    rig = make_rig()
    cpus = os.sched_getaffinity(0)
    cpu = max(cpus)
    rig.core.start(cpu=cpu)
    try:
        s = rig.session()
        s.send(command(order_id=1))
        got = np.zeros(1, dtype=COMMAND_DTYPE)
        assert rig.commands[0].pop_wait(got, timeout=10) == 1  # the pump runs, pinned
        tid = rig.core.pump_thread_id
        assert tid is not None
        assert os.sched_getaffinity(tid) == {cpu}
        assert os.sched_getaffinity(0) == cpus  # the caller's thread is untouched
    finally:
        rig.core.stop()
    with pytest.raises(GatewayError, match="cpu"):
        rig.core.start(cpu=max(cpus) + 1000)
