"""Through the Supervisor: a gateway killed with SIGKILL while an account has held events
(fills of its resting orders that came after it disconnected) is restarted, and the
account's next session receives every one of them, in order, once; a gateway killed again
after that delivery gives them to nobody again. The restarted gateway's account throttle
starts empty: the restart grants no second burst."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.accounts_toml import account_tables
from tests.client.edge_rig import KEYS
from tradsys.client.events import Ack, Event, Fill, Reject
from tradsys.client.orders import OrderClient
from tradsys.config import Config, parse_config
from tradsys.cores.gateway import read_stats
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.ring import instance_segments
from tradsys.wire import RejectReason

pytestmark = pytest.mark.multiprocess

ACME = 1
CAROL_RATE, CAROL_BURST = 1, 100  # account 3's throttle: 1 order/s, 100 deep


def held_config(instance: str, data_dir: Path) -> Config:
    carol = f"account_throttle_per_s = {CAROL_RATE}\naccount_throttle_burst = {CAROL_BURST}\n"
    accounts = account_tables(
        KEYS, lambda i: "cancel_on_disconnect = false\n" + (carol if i == 3 else "")
    )
    return parse_config(
        f"""
[engine]
instance = "{instance}"
data_dir = "{data_dir}"

[journal]
durability = "none"

[[shard]]
id = 0
symbols = ["ACME"]

[[instrument]]
symbol = "ACME"
symbol_id = {ACME}
reference_price = 100

[gateway]
tcp_listen = "127.0.0.1:0"
heartbeat_ms = 500

[md]
enabled = false
{accounts}""",
        "held-restart",
    )


def _connect(config: Config, account_id: int, *, tcp: bool = False) -> OrderClient:
    ann = read_announcement(config, "gateway")
    assert ann is not None
    address = f"tcp://{ann['tcp']}" if tcp else ann["unix_socket"]
    return OrderClient.connect(address, account_id=account_id, api_key=KEYS[account_id])


def _gateway_pid(config: Config) -> int:
    ann = read_announcement(config, "gateway")
    assert ann is not None
    return int(ann["pid"])


def _kill_and_await_restart(sup: Supervisor) -> None:
    """SIGKILL the gateway, then let the Supervisor notice and start another one."""
    config = sup.config
    old = _gateway_pid(config)
    os.kill(old, signal.SIGKILL)

    def restarted() -> bool:
        doc = read_announcement(config, "gateway")
        return doc is not None and int(doc["pid"]) != old

    deadline = time.monotonic() + 60
    sup.watch(until=lambda: restarted() or time.monotonic() > deadline, tick_s=0.05)
    assert restarted(), "the supervisor did not restart the gateway"


def _await_held(config: Config, count: int) -> None:
    """Until the running gateway's stats say it holds ``count`` events (the stats file is
    rewritten every 0.25 s)."""
    deadline = time.monotonic() + 30
    while True:
        stats = read_stats(config)
        if stats is not None and stats.get("core", {}).get("events_held", 0) >= count:
            return
        assert time.monotonic() < deadline, f"the gateway held no {count} events: {stats}"
        time.sleep(0.05)


def _await_no_session(config: Config) -> None:
    """Until the gateway has removed every session (a closed client's included), so what
    comes next for their orders is held, not routed to a session on its way out."""
    deadline = time.monotonic() + 30
    while True:
        stats = read_stats(config)
        if stats is not None and stats.get("core", {}).get("sessions") == 0:
            return
        assert time.monotonic() < deadline, f"sessions still open: {stats}"
        time.sleep(0.05)


def _until_ack(client: OrderClient, order_id: int) -> list[Event]:
    """Every event the session receives up to and including the ack of ``order_id``."""
    seen: list[Event] = []
    deadline = time.monotonic() + 10
    while not any(isinstance(e, Ack) and e.order_id == order_id for e in seen):
        assert time.monotonic() < deadline, f"no ack of {order_id}; got {seen}"
        seen.extend(client.poll(1.0))
    return seen


def _answers(client: OrderClient, ids: range) -> dict[int, Event]:
    """The first answer (ack or reject) of each order in ``ids``."""
    got: dict[int, Event] = {}
    deadline = time.monotonic() + 30
    while len(got) < len(ids):
        assert time.monotonic() < deadline, f"{len(got)} of {len(ids)} answered"
        for ev in client.poll(1.0):
            if ev.order_id in ids and isinstance(ev, Ack | Reject):
                got.setdefault(ev.order_id, ev)
    return got


def _trade(sup: Supervisor) -> dict[str, Any]:
    config = sup.config
    # alice rests two asks and leaves (her orders stay: not cancel-on-disconnect)
    with _connect(config, 1) as alice:
        for oid, px in ((1, 101), (2, 102)):
            assert isinstance(alice.wait_for(alice.submit(ACME, "sell", 10, px, order_id=oid)), Ack)
    # carol uses half of her burst before the crash: a bucket that survives has ~50 left
    carol = _connect(config, 3)
    for oid in range(1000, 1000 + CAROL_BURST // 2):
        carol.submit(ACME, "buy", 1, 10, order_id=oid)
    first = _answers(carol, range(1000, 1000 + CAROL_BURST // 2))
    assert all(isinstance(ev, Ack) for ev in first.values())
    carol.close()
    _await_no_session(config)
    # bob takes all of ask 1 and 4 of ask 2 while alice has no session: held for her
    with _connect(config, 2, tcp=True) as bob:
        assert isinstance(bob.wait_for(bob.submit(ACME, "buy", 4, 101, tif="ioc"), (Fill,)), Fill)
        sweep = bob.submit(ACME, "buy", 10, 102, tif="ioc")
        fills = [bob.wait_for(sweep, (Fill,)), bob.wait_for(sweep, (Fill,))]
        assert [(f.price, f.quantity) for f in fills if isinstance(f, Fill)] == [(101, 6), (102, 4)]
    _await_held(config, 3)
    _kill_and_await_restart(sup)

    # her next session: the three fills, in order, each once, before anything newer
    alice = _connect(config, 1)
    try:
        seen = _until_ack(alice, alice.submit(ACME, "buy", 1, 50, order_id=3))
        held = [e for e in seen if isinstance(e, Fill)]
        assert [(f.order_id, f.price, f.quantity, f.leaves_qty) for f in held] == [
            (1, 101, 4, 6),
            (1, 101, 6, 0),
            (2, 102, 4, 6),
        ]
        execs = [f.exec_id for f in held]
        assert execs == sorted(set(execs))
        assert isinstance(seen[-1], Ack) and all(isinstance(e, Fill) for e in seen[:-1])
    finally:
        alice.close()

    # carol's bucket after the restart: empty then, refilled at 1/s since
    carol = _connect(config, 3)
    try:
        for oid in range(2000, 2000 + CAROL_BURST // 2):
            carol.submit(ACME, "buy", 1, 10, order_id=oid)
        after = _answers(carol, range(2000, 2000 + CAROL_BURST // 2))
    finally:
        carol.close()
    throttled = [
        ev
        for ev in after.values()
        if isinstance(ev, Reject) and ev.reason == RejectReason.ACCOUNT_THROTTLED
    ]
    # a full bucket (the old behaviour) would have taken all 50; an empty one refilled at
    # 1/s takes one per second since the restart
    assert len(throttled) >= CAROL_BURST // 4, f"{len(throttled)} of 50 throttled"
    assert len(throttled) + sum(isinstance(e, Ack) for e in after.values()) == len(after)

    # killed again after the delivery: they are not handed over a second time
    _kill_and_await_restart(sup)
    alice = _connect(config, 1)
    try:
        seen = _until_ack(alice, alice.submit(ACME, "buy", 1, 50, order_id=4))
        assert [e for e in seen if isinstance(e, Fill)] == []
    finally:
        alice.close()
    stats = read_stats(config)
    return {"execs": execs, "stats": stats}


def test_held_events_survive_a_killed_gateway_once_and_in_order(
    instance: str, tmp_path: Path
) -> None:
    config = held_config(instance, tmp_path / "data")
    with Supervisor(config, log=lambda line: None) as sup:
        _trade(sup)
    assert instance_segments(instance) == []
