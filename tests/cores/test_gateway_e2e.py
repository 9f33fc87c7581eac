"""End to end through the Supervisor and the real gateway process and native core: two
accounts trade against each other, one colocated (shared memory), one over TCP; each sees
its own acks and fills with the right quantities and prices. Stopping leaves nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.accounts_toml import account_tables
from tests.client.edge_rig import KEYS
from tradsys.client.events import Ack, Cancelled, Fill
from tradsys.client.orders import Disconnected, OrderClient
from tradsys.config import Config, parse_config
from tradsys.cores.gateway import read_stats
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.ring import instance_segments

pytestmark = pytest.mark.multiprocess


def e2e_config_text(
    instance: str, data_dir: Path, account_extra: Callable[[int], str] = lambda i: ""
) -> str:
    """Two shards (ACME on 0, ZETA on 1), TCP on a free port, md off, the test accounts
    with ``account_extra(id)`` added to each."""
    accounts = account_tables(KEYS, account_extra)
    return f"""
[engine]
instance = "{instance}"
data_dir = "{data_dir}"
ring_capacity = 4096

[journal]
durability = "none"

[[shard]]
id = 0
symbols = ["ACME"]

[[shard]]
id = 1

[[instrument]]
symbol = "ACME"
symbol_id = 1
reference_price = 100

[[instrument]]
symbol = "ZETA"
symbol_id = 2
reference_price = 50

[gateway]
tcp_listen = "127.0.0.1:0"
heartbeat_ms = 500

[md]
enabled = false
{accounts}"""


def e2e_config(instance: str, data_dir: Path) -> Config:
    return parse_config(e2e_config_text(instance, data_dir), "e2e")


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(e2e_config(instance, tmp_path), log=lambda line: None)
    sup.start()
    try:
        yield sup
    finally:
        sup.stop()


def test_colocated_and_tcp_accounts_trade_with_each_other(running: Supervisor) -> None:
    config = running.config
    ann = read_announcement(config, "gateway")
    assert ann is not None and ann["tcp"] and ann["unix_socket"]
    with (
        OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice,
        OrderClient.connect(f"tcp://{ann['tcp']}", account_id=2, api_key=KEYS[2]) as bob,
    ):
        ask = alice.submit(1, "sell", 10, 101, order_id=5)
        assert alice.wait_for(ask) == Ack(5, 1, 2, 101, 10, 10)
        bid = bob.submit(1, "buy", 4, 102, order_id=5)  # the same client id: per account
        assert isinstance(bob.wait_for(bid), Ack)
        taker = bob.wait_for(bid, (Fill,))
        maker = alice.wait_for(ask, (Fill,))
        assert isinstance(taker, Fill) and isinstance(maker, Fill)
        assert (taker.price, taker.quantity, taker.leaves_qty, taker.maker) == (101, 4, 0, False)
        assert (maker.price, maker.quantity, maker.leaves_qty, maker.maker) == (101, 4, 6, True)
        # second trade the other way round: bob rests on ZETA (shard 1), alice takes over shm
        bob.submit(2, "buy", 3, 50, order_id=6)
        bob.wait_for(6)
        alice.submit(2, "sell", 5, 49, order_id=7, tif="ioc")
        assert isinstance(alice.wait_for(7), Ack)
        fill = alice.wait_for(7, (Fill,))
        assert isinstance(fill, Fill) and (fill.price, fill.quantity) == (50, 3)
        assert isinstance(bob.wait_for(6, (Fill,)), Fill)
    stats = read_stats(config)
    assert stats is not None and stats["gc"]["gen2"] == 0


def test_stopping_the_instance_ends_sessions_and_leaves_nothing(running: Supervisor) -> None:
    config = running.config
    ann = read_announcement(config, "gateway")
    assert ann is not None
    gateway_pid = int(ann["pid"])
    alice = OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1])
    bob = OrderClient.connect(f"tcp://{ann['tcp']}", account_id=2, api_key=KEYS[2])
    try:
        alice.wait_for(alice.submit(1, "buy", 1, 99))
        running.stop()
        for client in (alice, bob):
            with pytest.raises(Disconnected):
                for _ in range(200):
                    client.poll(0.05)
    finally:
        alice.close()
        bob.close()
    assert not psutil.pid_exists(gateway_pid) or psutil.Process(gateway_pid).status() == "zombie"
    assert instance_segments(config.engine.instance) == []
    assert read_announcement(config, "gateway") is None


def test_a_killed_colocated_client_loses_its_orders_and_nothing_leaks(
    running: Supervisor, children, tmp_path: Path
) -> None:
    import os
    import signal
    import time

    from tests.cores.test_gateway_edge import _colocated_child

    config = running.config
    ann = read_announcement(config, "gateway")
    assert ann is not None
    ready = tmp_path / "ready"
    proc = children.start(_colocated_child, ann["unix_socket"], str(ready))
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline, "the child never got its ack"
        time.sleep(0.01)
    assert any(".sin." in n for n in instance_segments(config.engine.instance))
    os.kill(proc.pid, signal.SIGKILL)
    while any(".sin." in n for n in instance_segments(config.engine.instance)):
        assert time.monotonic() < deadline, "the session's rings were not removed"
        time.sleep(0.01)
    # cancel-on-disconnect: the child's resting sell (5 @ 120) is gone from the book
    with OrderClient.connect(f"tcp://{ann['tcp']}", account_id=2, api_key=KEYS[2]) as bob:
        oid = bob.submit(1, "buy", 5, 120, tif="ioc")
        assert isinstance(bob.wait_for(oid), Ack)
        cxl = bob.wait_for(oid, (Cancelled, Fill))
        assert isinstance(cxl, Cancelled) and cxl.quantity == 5, cxl  # nothing to trade with


def test_a_thousand_sessions_come_and_go_through_the_real_gateway(running: Supervisor) -> None:
    """Half colocated, half TCP, each dropped without a goodbye: the gateway process
    (the same one: it never crashed) ends with no session, ring or descriptor left."""
    import os
    import time

    config = running.config
    ann = read_announcement(config, "gateway")
    assert ann is not None
    pid = int(ann["pid"])
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    for i in range(1000):
        if i % 2:
            c = OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1])
        else:
            c = OrderClient.connect(f"tcp://{ann['tcp']}", account_id=2, api_key=KEYS[2])
        if i % 100 == 0:
            assert isinstance(c.wait_for(c.submit(1, "buy", 1, 90, tif="ioc")), Ack)
        c.transport.close()
    deadline = time.monotonic() + 30
    while True:
        stats = read_stats(config)
        done = (
            stats is not None
            and stats["sessions_closed"] == 1000
            and stats["sessions"] == 0
            and stats["sessions_retiring"] == 0
            and len(os.listdir(f"/proc/{pid}/fd")) <= fds_before
        )
        if done:
            break
        assert time.monotonic() < deadline, f"not back to idle: {stats}"
        time.sleep(0.05)
    assert read_announcement(config, "gateway")["pid"] == pid, "the gateway was restarted"
    assert not any(".sin." in n or ".sout." in n for n in instance_segments(config.engine.instance))


def test_gateway_core_pins_the_pump_alone(instance: str, tmp_path: Path) -> None:
    import os

    import msgspec

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.fail("this test needs two CPUs (CI and the dev machines have them)")
    cpu = cpus[-1]
    base = e2e_config(instance, tmp_path)
    config = msgspec.structs.replace(base, gateway=msgspec.structs.replace(base.gateway, core=cpu))
    with Supervisor(config, log=lambda line: None):
        ann = read_announcement(config, "gateway")
        assert ann is not None
        pid = int(ann["pid"])
        affinity = {
            int(tid): os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")
        }
        assert cpu not in affinity[pid], "the event loop (main thread) is off the pump's CPU"
        assert sum(1 for a in affinity.values() if a == {cpu}) == 1, affinity
