"""A gateway that replaces a dead one, in-process: the ledger counts each trade once
(a trade the dead gateway had counted but left in the event ring is not counted again),
a torn cell update is never read, and orders restored from a worker's image get their
client ids back and go to their account's first session."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from tests.gateway.rig import AAA, GatewayRig, account, command
from tradsys.cores.order_image import LIVE_ORDER_DTYPE
from tradsys.gateway import GatewayCore
from tradsys.gateway.core import instrument_capacity
from tradsys.wire import CommandKind, EventKind, Side

RUN = 42


def _successor(rig: GatewayRig, ledger: Path, run_id: int = RUN) -> tuple[GatewayCore, bool]:
    """Close the rig's gateway (its ledger stays) and start another on the same rings."""
    rig.core.close()
    rig.core = GatewayCore(rig.config, epoch=rig.epoch + 1, cancel_on_start=False)
    return rig.core, rig.core.attach_ledger(ledger, run_id)


def _image(sent: Any, leaves: int) -> np.ndarray[Any, Any]:
    img = np.zeros(1, dtype=LIVE_ORDER_DTYPE)
    img[0] = (sent["order_id"], AAA, 1, Side.BUY, 1, sent["price"], 0, sent["quantity"], leaves)
    return img


def _trade_and_crash(make_rig: Callable[..., GatewayRig], ledger: Path) -> tuple[GatewayRig, Any]:
    rig = make_rig([account(1, cancel_on_disconnect=False, max_position=12)])
    assert rig.core.attach_ledger(ledger, RUN) is False  # a new ledger
    s = rig.session(1)
    s.send(command(order_id=5, quantity=10, price=1000))
    rig.poll()
    (sent,) = rig.sent(0)
    rig.answer(0, EventKind.ACCEPTED, sent)
    rig.answer(0, EventKind.TRADE, sent, quantity=4, leaves_qty=6, price=990)
    rig.poll()
    assert rig.core.position(1, AAA).position == 4
    return rig, sent


def test_a_trade_counted_before_the_crash_is_not_counted_again(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    ledger = tmp_path / "gateway.ledger"
    rig, sent = _trade_and_crash(make_rig, ledger)
    core, carried = _successor(rig, ledger)
    assert carried
    assert core.position(1, AAA).position == 4
    assert core.account_state(1).filled_notional == 4 * 990
    # the dead gateway's last event, counted by it but never released, comes again
    rig.exec_id -= 1
    rig.answer(0, EventKind.TRADE, sent, quantity=4, leaves_qty=6, price=990)
    rig.answer(0, EventKind.TRADE, sent, quantity=1, leaves_qty=5, price=995)
    assert core.drain() == 2
    assert core.position(1, AAA).position == 5
    assert core.account_state(1).filled_notional == 4 * 990 + 995
    assert core.stats()["recovery_events"] == 2


def test_restored_orders_keep_their_client_ids_and_go_to_the_next_session(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    ledger = tmp_path / "gateway.ledger"
    rig, sent = _trade_and_crash(make_rig, ledger)
    core, _ = _successor(rig, ledger)
    assert core.restore(_image(sent, leaves=6)) == 1
    state = core.account_state(1)
    assert (state.open_orders, state.open_notional) == (1, 6 * 1000)
    assert core.position(1, AAA).open_buy == 6
    # limits see the restored exposure: 4 bought + 6 open + 3 > 12
    s = rig.session(1)
    s.send(command(order_id=6, quantity=3))
    rig.poll()
    assert s.events()[0]["reason"] == 22  # MAX_POSITION
    s.send(command(order_id=5, quantity=1))  # client id 5 is live again
    rig.poll()
    assert s.events()[0]["reason"] == 24  # DUPLICATE_CLIENT_ID
    # its fills reach the session, under the client's id; it can cancel it by that id
    rig.answer(0, EventKind.TRADE, sent, quantity=2, leaves_qty=4, price=1000)
    rig.poll()
    (fill,) = s.events()
    assert (fill["order_id"], fill["quantity"]) == (5, 2)
    s.send(command(CommandKind.CANCEL, order_id=5))
    rig.poll()
    (cxl,) = rig.sent(0)
    assert cxl["order_id"] == sent["order_id"]
    # new exchange ids are above every restored one (the epoch grew)
    s.send(command(order_id=9, quantity=1))
    rig.poll()
    (new,) = rig.sent(0)
    assert new["order_id"] > sent["order_id"]


def test_a_torn_cell_update_is_never_read(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    ledger = tmp_path / "gateway.ledger"
    rig, _ = _trade_and_crash(make_rig, ledger)
    # a gateway killed in the middle of its next trade: the copy it was writing holds
    # garbage, the commit word still names the old copy
    cfg = rig.config
    max_orders = cfg.gateway.max_live_orders
    max_accounts = max(cfg.gateway.max_accounts, len(cfg.accounts), 1)
    max_instr = instrument_capacity(len(cfg.instruments))

    def align(n: int) -> int:
        return (n + 63) & ~63

    cells = align(align(align(64 + max_orders * 16) + max_accounts * 8) + max_instr * 16)
    data = bytearray(ledger.read_bytes())
    (commit,) = struct.unpack_from("<Q", data, cells)
    other = (commit & 1) ^ 1
    struct.pack_into("<16s", data, cells + 16 + 16 * other, b"\x7f" * 16)  # position
    struct.pack_into("<16s", data, cells + 48 + 16 * other, b"\x7f" * 16)  # filled
    rig.core.close()
    ledger.write_bytes(bytes(data))
    core, carried = _successor(rig, ledger)
    assert carried
    assert core.position(1, AAA).position == 4
    assert core.account_state(1).filled_notional == 4 * 990


def test_a_ledger_of_another_run_starts_empty_but_keeps_client_ids(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    ledger = tmp_path / "gateway.ledger"
    rig, sent = _trade_and_crash(make_rig, ledger)
    core, carried = _successor(rig, ledger, run_id=RUN + 1)
    assert not carried
    assert core.position(1, AAA).position == 0
    assert core.restore(_image(sent, leaves=6)) == 1
    assert core.stats()["restore_no_client_id"] == 0


def test_an_image_order_of_an_unknown_account_is_skipped(
    make_rig: Callable[..., GatewayRig],
) -> None:
    rig = make_rig([account(1)])
    img = np.zeros(2, dtype=LIVE_ORDER_DTYPE)
    img[0] = (1 << 40 | 1, AAA, 99, Side.BUY, 1, 1000, 0, 5, 5)  # account 99 is not configured
    img[1] = (1 << 40 | 2, AAA, 1, Side.SELL, 1, 1000, 0, 5, 3)  # no ledger: no client id
    assert rig.core.restore(img) == 1
    stats = rig.core.stats()
    assert (stats["restore_skipped"], stats["restore_no_client_id"]) == (1, 1)
    assert rig.core.position(1, AAA).open_sell == 3
    assert rig.core.stats()["live_orders"] == 1


def test_events_that_came_while_no_gateway_ran_reach_the_next_session(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    ledger = tmp_path / "gateway.ledger"
    rig, sent = _trade_and_crash(make_rig, ledger)
    other = rig.session(1)
    other.send(command(order_id=6, quantity=2, price=1000))
    rig.poll()
    (sent6,) = rig.sent(0)
    rig.core.close()  # dies with order 6 sent, unanswered
    # while no gateway runs: order 6 is accepted and fills completely (gone from the
    # engine, so from the image too), order 5 fills 1 more
    rig.answer(0, EventKind.ACCEPTED, sent6)
    rig.answer(0, EventKind.TRADE, sent6, quantity=2, leaves_qty=0, price=1000, flags=4)
    rig.answer(0, EventKind.TRADE, sent, quantity=1, leaves_qty=5, price=1001)
    core, _ = _successor(rig, ledger)
    assert core.drain() == 3
    assert core.restore(_image(sent, leaves=5)) == 1
    assert core.hold_drained() == 3  # order 6's client id comes from the ledger
    assert core.position(1, AAA).position == 4 + 2 + 1
    new = rig.session(1)
    rig.answer(0, EventKind.TRADE, sent, quantity=2, leaves_qty=3, price=1002)
    rig.poll()
    got = [(int(e["kind"]), int(e["order_id"]), int(e["quantity"])) for e in new.events()]
    assert got == [
        (EventKind.ACCEPTED, 6, 2),
        (EventKind.TRADE, 6, 2),
        (EventKind.TRADE, 5, 1),
        (EventKind.TRADE, 5, 2),
    ]


def test_a_successor_with_the_accounts_in_another_order_keeps_their_figures(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    ledger = tmp_path / "gateway.ledger"
    rig, _ = _trade_and_crash(make_rig, ledger)
    rig.core.kill(1)
    rig.core.close()
    # the operator's config now lists a new account first
    config = msgspec.structs.replace(rig.config, accounts=[account(7), *rig.config.accounts])
    rig.core = GatewayCore(config, epoch=rig.epoch + 1, cancel_on_start=False)
    assert rig.core.attach_ledger(ledger, RUN)
    assert rig.core.position(1, AAA).position == 4
    state = rig.core.account_state(1)
    assert (state.filled_notional, state.killed) == (4 * 990, True)
    assert rig.core.position(7, AAA).position == 0
