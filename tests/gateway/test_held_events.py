"""Held events outlive the gateway, in-process: the events held for an account without a
session are in the held-events log (``native/gateway_held.c``), so a successor hands them
to the account's next session in order; one delivered before the crash does not come
again; a torn record ends the log there; a drained event the log has already is not kept
twice. And a successor's account throttle starts empty, not with a second burst."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from tests.gateway.rig import AAA, GatewayRig, Session, account, command
from tradsys.cores.order_image import LIVE_ORDER_DTYPE
from tradsys.gateway import GatewayCore
from tradsys.wire import EventKind, RejectReason, Side

RUN = 42
RECORD = 96  # bytes of one log record
HALF = 65536  # records per half (TS_GW_HELD_LOG)


class Files:
    def __init__(self, tmp_path: Path) -> None:
        self.ledger = tmp_path / "gateway.ledger"
        self.held = tmp_path / "gateway.held"


def _attach(core: GatewayCore, files: Files) -> int:
    core.attach_ledger(files.ledger, RUN)
    return core.attach_held(files.held)


def _successor(rig: GatewayRig, files: Files, *, image: Any = None) -> tuple[GatewayCore, int]:
    """The rig's gateway dies (closed: what it held in memory is gone, its files stay) and
    another starts on the same rings: attach, drain, restore, hold."""
    rig.core.close()
    rig.epoch += 1
    rig.core = GatewayCore(rig.config, epoch=rig.epoch, cancel_on_start=False)
    found = _attach(rig.core, files)
    rig.core.drain()
    if image is not None:
        rig.core.restore(image)
    rig.core.hold_drained()
    return rig.core, found


def _image(sent: Any, leaves: int) -> np.ndarray[Any, Any]:
    img = np.zeros(1, dtype=LIVE_ORDER_DTYPE)
    img[0] = (sent["order_id"], AAA, 1, Side.SELL, 1, sent["price"], 0, sent["quantity"], leaves)
    return img


def _held_fills(
    make_rig: Callable[..., GatewayRig], files: Files, n: int
) -> tuple[GatewayRig, Any, list[int]]:
    """Account 1 rests a sell of 100, disconnects (its order stays), and n fills of it come
    while it has no session: held. Returns the rig, the order as the shard saw it, and
    the fills' exec ids."""
    rig = make_rig([account(1, cancel_on_disconnect=False)])
    assert _attach(rig.core, files) == 0
    s = rig.session(1)
    sent = rig.rest(s, command(order_id=5, side=Side.SELL, quantity=100, price=1000))
    assert [int(e["kind"]) for e in s.events()] == [EventKind.ACCEPTED]
    rig.core.remove_session(s.id)
    execs = []
    for i in range(n):
        rig.answer(0, EventKind.TRADE, sent, quantity=1, leaves_qty=99 - i, price=1000)
        execs.append(rig.exec_id)
    rig.poll()
    assert rig.core.stats()["events_held"] == n
    return rig, sent, execs


def _fills(s: Session) -> list[tuple[int, int, int]]:
    return [(int(e["kind"]), int(e["order_id"]), int(e["exec_id"])) for e in s.events()]


def test_held_events_reach_the_next_session_after_the_gateway_dies(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    files = Files(tmp_path)
    rig, sent, execs = _held_fills(make_rig, files, 3)
    core, found = _successor(rig, files, image=_image(sent, leaves=97))
    assert found == 3 and core.stats()["events_held_restored"] == 3
    s = rig.session(1)
    rig.answer(0, EventKind.TRADE, sent, quantity=1, leaves_qty=96, price=1000)
    rig.poll()
    # the held ones first, in order, then the newer one, each once
    assert _fills(s) == [(EventKind.TRADE, 5, x) for x in [*execs, rig.exec_id]]
    # delivered: a gateway that dies now gives them to nobody again
    core, found = _successor(rig, files, image=_image(sent, leaves=96))
    assert found == 0
    s2 = rig.session(1)
    rig.poll()
    assert _fills(s2) == []


def test_events_held_again_after_a_restart_and_the_drain_are_kept_in_order(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    files = Files(tmp_path)
    rig, sent, execs = _held_fills(make_rig, files, 2)
    rig.core.close()
    # while no gateway runs, one more fill; the successor drains it (into the log too)
    rig.answer(0, EventKind.TRADE, sent, quantity=1, leaves_qty=97, price=1000)
    execs.append(rig.exec_id)
    _, found = _successor(rig, files, image=_image(sent, leaves=97))
    assert found == 2
    # and dies before any session came: a third gateway has all three, in order
    _, found = _successor(rig, files, image=_image(sent, leaves=97))
    assert found == 3
    s = rig.session(1)
    rig.poll()
    assert _fills(s) == [(EventKind.TRADE, 5, x) for x in execs]


def test_a_drained_event_the_log_has_already_is_not_kept_twice(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    files = Files(tmp_path)
    rig, sent, execs = _held_fills(make_rig, files, 2)
    # the dead gateway had held the last fill but not released its ring slot: it comes again
    rig.exec_id -= 1
    rig.answer(0, EventKind.TRADE, sent, quantity=1, leaves_qty=98, price=1000)
    core, found = _successor(rig, files, image=_image(sent, leaves=98))
    assert found == 2
    assert core.stats()["recovery_duplicates"] == 1
    s = rig.session(1)
    rig.poll()
    assert _fills(s) == [(EventKind.TRADE, 5, x) for x in execs]


def _record_offset(files: Files, config_accounts: int, index: int) -> int:
    data = files.held.read_bytes()
    commit: int = struct.unpack_from("<Q", data, 16)[0]
    halves = (64 + config_accounts * 16 + 63) & ~63
    return halves + (commit & 1) * HALF * RECORD + index * RECORD


def test_a_torn_record_ends_the_log_there(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    files = Files(tmp_path)
    rig, sent, execs = _held_fills(make_rig, files, 3)
    rig.core.close()
    # killed in the middle of writing the third record: half of its event is new bytes
    cfg = rig.config
    accounts = max(cfg.gateway.max_accounts, len(cfg.accounts), 1)
    at = _record_offset(files, accounts, 2) + 32 + 40  # its event's quantity
    data = bytearray(files.held.read_bytes())
    data[at : at + 8] = struct.pack("<q", 7)
    files.held.write_bytes(bytes(data))
    _, found = _successor(rig, files, image=_image(sent, leaves=97))
    assert found == 2
    s = rig.session(1)
    rig.poll()
    assert _fills(s) == [(EventKind.TRADE, 5, x) for x in execs[:2]]


def test_a_restarted_gateway_grants_no_second_burst(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    files = Files(tmp_path)
    limits = {"account_throttle_per_s": 10, "account_throttle_burst": 5}
    rig = make_rig([account(1, **limits)])
    _attach(rig.core, files)
    s = rig.session(1)
    now = time.monotonic_ns()
    s.send(*(command(order_id=i) for i in range(1, 6)))
    rig.poll(now)
    assert len(rig.sent(0)) == 5 and len(s.events()) == 0  # a new run: the full burst
    rig.core.close()
    rig.core = GatewayCore(rig.config, epoch=rig.epoch + 1, cancel_on_start=False)
    assert rig.core.attach_ledger(files.ledger, RUN)  # the same run: a restart
    attached = time.monotonic_ns()
    s = rig.session(1)
    s.send(*(command(order_id=i) for i in range(10, 15)))
    rig.poll(attached)  # no time has passed for the bucket: it is empty
    rejects = s.events()
    assert [int(r["reason"]) for r in rejects] == [RejectReason.ACCOUNT_THROTTLED] * 5
    assert rig.core.stats()["rejects.ACCOUNT_THROTTLED"] == 5
    # it refills at the configured rate from the restart: 1 token per 100 ms
    later = attached + 150_000_000
    s.send(command(order_id=20), command(order_id=21))
    rig.poll(later)
    assert len(rig.sent(0)) == 1
    assert [int(r["reason"]) for r in s.events()] == [RejectReason.ACCOUNT_THROTTLED]


def test_a_new_run_starts_with_full_account_buckets(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    files = Files(tmp_path)
    rig = make_rig([account(1, account_throttle_per_s=10, account_throttle_burst=5)])
    _attach(rig.core, files)
    rig.core.close()
    rig.core = GatewayCore(rig.config, epoch=rig.epoch + 1, cancel_on_start=False)
    assert not rig.core.attach_ledger(files.ledger, RUN + 1)
    s = rig.session(1)
    s.send(*(command(order_id=i) for i in range(1, 6)))
    rig.poll(time.monotonic_ns())
    assert len(rig.sent(0)) == 5 and len(s.events()) == 0


def test_a_log_of_another_layout_starts_empty(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    files = Files(tmp_path)
    rig, _sent, _ = _held_fills(make_rig, files, 2)
    rig.core.close()
    # the operator raised [gateway] max_accounts: the marks table, so the layout, moved
    config = rig.config
    bigger = config.gateway.max_accounts * 2
    rig.config = msgspec.structs.replace(
        config, gateway=msgspec.structs.replace(config.gateway, max_accounts=bigger)
    )
    rig.core = GatewayCore(rig.config, epoch=rig.epoch + 1, cancel_on_start=False)
    # what the file held past its header is left as it was, not rewritten (12 MB at every
    # such start): the new generation makes it unreadable. A pattern shows what is touched
    size = files.held.stat().st_size
    files.held.write_bytes(files.held.read_bytes()[:4096] + b"\xa5" * (size - 4096))
    assert rig.core.attach_held(files.held) == 0
    assert files.held.read_bytes().count(b"\xa5") > size - (1 << 20)


def test_only_what_reached_the_session_ring_is_crossed_off(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    files = Files(tmp_path)
    rig, sent, execs = _held_fills(make_rig, files, 10)
    s = rig.session(1, capacity=4)  # room for 4 of the 10
    rig.poll()
    assert _fills(s) == [(EventKind.TRADE, 5, x) for x in execs[:4]]
    # the gateway dies with 6 not yet handed over: those, and only those, come back
    _, found = _successor(rig, files, image=_image(sent, leaves=90))
    assert found == 6
    s2 = rig.session(1, capacity=16)
    rig.poll()
    assert _fills(s2) == [(EventKind.TRADE, 5, x) for x in execs[4:]]


def test_held_events_go_out_as_the_ring_makes_room_newer_ones_after(
    make_rig: Callable[..., GatewayRig], tmp_path: Path
) -> None:
    files = Files(tmp_path)
    rig, sent, execs = _held_fills(make_rig, files, 10)
    s = rig.session(1, capacity=4)
    rig.answer(0, EventKind.TRADE, sent, quantity=1, leaves_qty=89, price=1000)
    got: list[tuple[int, int, int]] = []
    for _ in range(4):  # 4 + 4 + 3 (2 held, then the newer one) + nothing
        rig.poll()
        got += _fills(s)
    assert got == [(EventKind.TRADE, 5, x) for x in [*execs, rig.exec_id]]
    assert rig.core.stalled_sessions() == []
    # all crossed off: nothing comes back
    _, found = _successor(rig, files, image=_image(sent, leaves=89))
    assert found == 0
