"""Through the Supervisor, with real processes: a client killed (SIGKILL) with events in
its session that it never read loses none of them. Alice rests asks and is killed after
bob's buys filled them, with the fills in her session unread; one more fill comes after
the gateway removed her session; her next session gets every fill she missed, by exec id
and quantity, in order, each once, then the later one (issue 5: nothing acknowledged is
ever lost)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.accounts_toml import account_tables
from tests.client.edge_rig import KEYS
from tradsys.client.events import Ack, Event, Fill
from tradsys.client.orders import OrderClient
from tradsys.config import Config, parse_config
from tradsys.cores.gateway import read_stats
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.ring import Ring, instance_segments
from tradsys.wire import LAYOUT_VERSION, RECORD_SIZE

pytestmark = pytest.mark.multiprocess

ACME = 1
ASKS = ((1, 101), (2, 102), (3, 103))  # alice's resting asks of 10: (client id, price)

# Alice: rest the asks, read their acks, say which ring her events come in, then never
# read again until killed.
ALICE = """
import sys
from tradsys.client.events import Ack
from tradsys.client.orders import OrderClient
c = OrderClient.connect(sys.argv[1], account_id=1, api_key=sys.argv[2])
for oid, px in {asks}:
    ev = c.wait_for(c.submit({symbol}, "sell", 10, px, order_id=oid))
    assert isinstance(ev, Ack), ev
print(c.transport.accepted.outbound, flush=True)
sys.stdin.read()
"""


def unread_config(instance: str, data_dir: Path) -> Config:
    accounts = account_tables(KEYS, lambda i: "cancel_on_disconnect = false\n")
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
        "unread-sessions",
    )


def _address(config: Config) -> str:
    ann = read_announcement(config, "gateway")
    assert ann is not None
    return str(ann["unix_socket"])


def _core_stats(config: Config) -> dict[str, int]:
    stats = read_stats(config)
    return {} if stats is None else dict(stats.get("core", {}))


def _await(what: str, check: object, timeout: float = 30.0) -> None:
    """Until ``check()`` is true (the gateway's stats file is rewritten every 0.25 s)."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _fills_until_ack(client: OrderClient, order_id: int) -> list[Event]:
    seen: list[Event] = []
    deadline = time.monotonic() + 10
    while not any(isinstance(e, Ack) and e.order_id == order_id for e in seen):
        assert time.monotonic() < deadline, f"no ack of {order_id}; got {seen}"
        seen.extend(client.poll(1.0))
    return seen


def _bob_buys(bob: OrderClient, quantities: list[tuple[int, int]]) -> list[Fill]:
    """Bob's IOC buys (quantity, price), each until its fills; returns his fills."""
    fills: list[Fill] = []
    for qty, px in quantities:
        oid = bob.submit(ACME, "buy", qty, px, tif="ioc")
        got = 0
        while got < qty:
            ev = bob.wait_for(oid, (Fill,))
            assert isinstance(ev, Fill), ev
            fills.append(ev)
            got += ev.quantity
    return fills


def test_a_killed_colocated_client_loses_no_unread_event(instance: str, tmp_path: Path) -> None:
    config = unread_config(instance, tmp_path / "data")
    with Supervisor(config, log=lambda line: None) as sup:
        assert sup is not None
        address = _address(config)
        alice = subprocess.Popen(
            [sys.executable, "-c", ALICE.format(asks=ASKS, symbol=ACME), address, KEYS[1]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert alice.stdout is not None
            ring_name = alice.stdout.readline().strip()
            assert ring_name, "alice did not log in"
            watch = Ring.attach(ring_name, slot_size=RECORD_SIZE, layout_version=LAYOUT_VERSION)
            with OrderClient.connect(address, account_id=2, api_key=KEYS[2]) as bob:
                taker = _bob_buys(bob, [(4, 101), (10, 102), (3, 102)])
                assert [(f.price, f.quantity) for f in taker] == [
                    (101, 4),
                    (101, 6),
                    (102, 4),
                    (102, 3),
                ]
                # her four fills are in her ring, unread
                _await("alice's fills in her ring", lambda: watch.info().fill == 4, 10)
                watch.close()
                alice.send_signal(signal.SIGKILL)
                alice.wait(10)
                _await("alice's session removed", lambda: _core_stats(config).get("sessions") == 1)
                assert _core_stats(config)["events_unread_held"] == 4
                # one more fill of her second ask, routed after her session is gone
                _bob_buys(bob, [(2, 103)])
            with OrderClient.connect(address, account_id=1, api_key=KEYS[1]) as again:
                seen = _fills_until_ack(again, again.submit(ACME, "buy", 1, 50, order_id=9))
        finally:
            if alice.poll() is None:
                alice.kill()
                alice.wait(10)
    fills = [e for e in seen if isinstance(e, Fill)]
    assert [(f.order_id, f.price, f.quantity, f.leaves_qty) for f in fills] == [
        (1, 101, 4, 6),
        (1, 101, 6, 0),
        (2, 102, 4, 6),
        (2, 102, 3, 3),
        (2, 102, 2, 1),
    ]
    execs = [f.exec_id for f in fills]
    assert execs == sorted(set(execs))  # in order, none twice
    assert isinstance(seen[-1], Ack) and all(isinstance(e, Fill) for e in seen[:-1])
    assert instance_segments(instance) == []
