"""Through the Supervisor, with real processes: a client killed (SIGKILL) with events in
its session that it never read loses none of them. Alice rests asks and is killed after
bob's buys filled them, with the fills in her session unread; one more fill comes after
the gateway removed her session; her next session gets every fill she missed, by exec id
and quantity, in order, each once, then the later one (issue 5: nothing acknowledged is
ever lost)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.accounts_toml import account_tables
from tests.client.edge_rig import KEYS
from tradsys.client.commands import order_record
from tradsys.client.events import Ack, Cancelled, Event, Fill
from tradsys.client.orders import OrderClient
from tradsys.config import Config, parse_config
from tradsys.cores.gateway import read_stats
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.ring import Ring, instance_segments, segment_name
from tradsys.wire import COMMAND_DTYPE, LAYOUT_VERSION, RECORD_SIZE, EventFlag

pytestmark = pytest.mark.multiprocess

ACME = 1
ASKS = ((1, 101), (2, 102), (3, 103))  # alice's resting asks of 10: (client id, price)

# Alice: rest the asks, read their acks, say which ring her events come in, then never
# read again until killed. (The empty poll says she is done with the acks: a colocated
# client's batch leaves its ring at its next poll.)
ALICE = """
import sys
from tradsys.client.events import Ack
from tradsys.client.commands import order_record
from tradsys.client.orders import OrderClient
c = OrderClient.connect(sys.argv[1], account_id=1, api_key=sys.argv[2])
for oid, px in {asks}:
    ev = c.wait_for(c.submit({symbol}, "sell", 10, px, order_id=oid))
    assert isinstance(ev, Ack), ev
assert not c.poll()
print(c.transport.accepted.outbound, flush=True)
sys.stdin.read()
"""


def unread_config(
    instance: str,
    data_dir: Path,
    *,
    alice_cod: bool = False,
    ring: int = 8192,
    heartbeat_ms: int = 500,
    md: bool = False,
) -> Config:
    """The instance; ``md`` runs the market-data sidecar (a worker whose md ring nobody
    reads stops after ring_capacity records of it: fine for a few trades, not for many)."""
    md_section = (
        '[md]\npublish = ["tcp://127.0.0.1:0"]\nsnapshot = "tcp://127.0.0.1:0"\n'
        if md
        else "[md]\nenabled = false\n"
    )
    accounts = account_tables(
        KEYS,
        lambda i: f"cancel_on_disconnect = {'true' if i == 1 and alice_cod else 'false'}\n",
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
heartbeat_ms = {heartbeat_ms}
session_ring_capacity = {ring}

{md_section}
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


def _sessions_closed(config: Config) -> int:
    """Sessions the gateway has removed (the stats file may be older than the last login,
    so its count of open sessions proves nothing; this one only grows)."""
    return int((read_stats(config) or {}).get("sessions_closed", 0))


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
    """Bob's IOC buys (quantity, price), each until its fills; returns his fills, done
    with: his acks, which wait_for kept, are handed to him by a poll, and the next poll,
    which finds nothing more, releases everything from his ring (otherwise a gateway
    crash would owe it to him again)."""
    fills: list[Fill] = []
    for qty, px in quantities:
        oid = bob.submit(ACME, "buy", qty, px, tif="ioc")
        got = 0
        while got < qty:
            ev = bob.wait_for(oid, (Fill,))
            assert isinstance(ev, Fill), ev
            fills.append(ev)
            got += ev.quantity
    assert all(isinstance(e, Ack) for e in bob.poll())
    assert not len(bob.poll_records())
    return fills


@contextlib.contextmanager
def alice_resting(address: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Alice's process with her asks resting and acknowledged, and the name of her
    session's event ring; she reads nothing more. Killed at the end whatever happened."""
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
        yield alice, ring_name
    finally:
        stop(alice)


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a test's client process if it still runs, reap it, close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


@contextlib.contextmanager
def alice_on_tcp(config: Config) -> Iterator[subprocess.Popen[str]]:
    """ALICE_TCP (below) running, her big ask rested and acknowledged; she reads nothing
    more. Killed at the end whatever happened."""
    alice = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ALICE_TCP.format(symbol=ACME, qty=TCP_QTY),
            _tcp_address(config),
            KEYS[1],
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert alice.stdout is not None
        assert alice.stdout.readline().strip() == "rested", "alice did not rest her ask"
        yield alice
    finally:
        stop(alice)


def alices_next_session(address: str) -> list[Event]:
    """What a new session of alice's account gets, up to the ack of a probe order."""
    with OrderClient.connect(address, account_id=1, api_key=KEYS[1]) as again:
        return _fills_until_ack(again, again.submit(ACME, "buy", 1, 50, order_id=9))


def test_a_killed_colocated_client_loses_no_unread_event(instance: str, tmp_path: Path) -> None:
    config = unread_config(instance, tmp_path / "data")
    with Supervisor(config, log=lambda line: None) as sup:
        assert sup is not None
        address = _address(config)
        with alice_resting(address) as (alice, ring_name):
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
                _await("alice's session removed", lambda: _sessions_closed(config) == 1)
                assert _core_stats(config)["events_unread_held"] == 4
                # one more fill of her second ask, routed after her session is gone
                _bob_buys(bob, [(2, 103)])
            seen = alices_next_session(address)
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


# Alice over TCP with a small receive buffer: rest one big ask, read its ack, then never
# read again, so the gateway's socket, its transport's buffer and then her ring fill up.
ALICE_TCP = """
import socket, sys
import numpy as np
from tests.client.raw import RawPeer
from tradsys import wire
from tradsys.client.commands import order_record
from tradsys.protocols.binary import MessageType, encode_records
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
s.connect((host, int(port)))
peer = RawPeer(s)
peer.login(1, sys.argv[2])
assert peer.next_frame()[0] == MessageType.SYMBOLS
peer.send(encode_records(MessageType.COMMANDS, 1, order_record(1, {symbol}, "sell", {qty}, 101)))
kind, _, body = peer.next_frame()
assert kind == MessageType.EVENTS, kind
assert np.frombuffer(body, wire.EVENT_DTYPE)[0]["kind"] == wire.EventKind.ACCEPTED
print("rested", flush=True)
sys.stdin.read()
"""
TCP_QTY = 1_000_000
TCP_BATCH = 100


def _tcp_address(config: Config) -> str:
    ann = read_announcement(config, "gateway")
    assert ann is not None
    return str(ann["tcp"])


def _sweep_until(bob: OrderClient, done: Callable[[], bool], first_id: int) -> None:
    """Batches of IOC buys of 1 lot at 101 until ``done()``; each batch once bob has the
    last answer of the one before (his own events read as they come, so neither his
    rings nor his session ever hold the pipeline back)."""
    oid = first_id
    deadline = time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline, "alice's ring never filled"
        batch = np.zeros(TCP_BATCH, COMMAND_DTYPE)  # np.concatenate would drop the padding
        for j in range(TCP_BATCH):
            batch[j] = order_record(oid + j, ACME, "buy", 1, 101, tif="ioc")[0]
        oid += TCP_BATCH
        bob.submit_batch(batch)
        finished = 0
        while finished < TCP_BATCH and not done():
            assert time.monotonic() < deadline, f"{finished} of bob's batch answered"
            records = bob.poll_records(0.05)
            finished += int(np.count_nonzero(records["flags"] & EventFlag.DONE))


def test_a_killed_tcp_client_loses_no_event_the_gateway_had_not_written(
    instance: str, tmp_path: Path
) -> None:
    """Alice stops reading: the kernel's socket buffers fill, then the TCP edge's transport
    buffer (it stops draining her ring), then her ring. Killed then, her next session gets
    the events of the frames the gateway had not written, then those of her ring: one run
    of her fills, in order, none twice, then the fills that raced the cancel-on-disconnect
    and the CANCELLED. (What the kernel had is step 3's, acknowledgements.)"""
    # a long heartbeat: her silence must not end the session before she is killed
    config = unread_config(
        instance, tmp_path / "data", alice_cod=True, ring=2048, heartbeat_ms=60_000, md=True
    )
    with Supervisor(config, log=lambda line: None), alice_on_tcp(config) as alice:
        # her session's rings are the first the gateway made
        watch = Ring.attach(
            segment_name(instance, "sout", 0),
            slot_size=RECORD_SIZE,
            layout_version=LAYOUT_VERSION,
        )
        with OrderClient.connect(_address(config), account_id=2, api_key=KEYS[2]) as bob:

            def backed_up() -> bool:
                # the edge stopped draining her ring: its transport holds frames back
                paused = (read_stats(config) or {}).get("tcp_writes_paused", 0)
                return watch.info().fill >= 256 and paused > 0

            _sweep_until(bob, backed_up, 1000)
            alice.send_signal(signal.SIGKILL)
            alice.wait(10)
            _await("alice's session removed", lambda: _sessions_closed(config) == 1)
            # records the edge took from her ring: the ACCEPTED, then fills 1, 2, ...
            taken = watch.info().tail
            watch.close()
        stats = read_stats(config)
        assert stats is not None
        held = stats["core"]["events_unread_held"]
        unsent = stats["tcp_unsent_held"]
        with OrderClient.connect(
            f"tcp://{_tcp_address(config)}", account_id=1, api_key=KEYS[1]
        ) as again:
            seen = _fills_until_ack(again, again.submit(ACME, "buy", 1, 50, order_id=9))
    fills = [e for e in seen if isinstance(e, Fill)]
    assert unsent > 0, "no frame was left unwritten: the test did not fill the socket"
    assert stats["core"]["events_unread_dropped"] == 0
    assert len(fills) >= held > unsent
    # after her fills, the cancel her disconnect sent, then the probe's ack
    assert [type(e) for e in seen[len(fills) :]] == [Cancelled, Ack]
    # one run, in order: the fills of the frames never written (the last `unsent` the edge
    # took), then those left in her ring, then those that raced the cancel
    leaves = [f.leaves_qty for f in fills]
    assert leaves[0] == TCP_QTY - (taken - unsent)
    assert leaves == list(range(leaves[0], leaves[0] - len(fills), -1))
    execs = [f.exec_id for f in fills]
    assert execs == sorted(set(execs))
    assert all(f.order_id == 1 and f.quantity == 1 for f in fills)
    assert instance_segments(instance) == []


# Alice with the client library over TCP (it acknowledges what it processed): rest an
# ask, take its ack, then never read again; her fills reach her socket, unread.
ALICE_ACKING = """
import sys
from tradsys.client.events import Ack
from tradsys.client.orders import OrderClient
c = OrderClient.connect("tcp://" + sys.argv[1], account_id=1, api_key=sys.argv[2])
assert isinstance(c.wait_for(c.submit({symbol}, "sell", 10, 101, order_id=1)), Ack)
c.poll(0.0)  # done with it: the library acknowledges it at its next heartbeat tick
print("rested", flush=True)
sys.stdin.read()
"""


def test_a_killed_tcp_client_loses_no_event_written_to_its_socket_unacknowledged(
    instance: str, tmp_path: Path
) -> None:
    config = unread_config(instance, tmp_path / "data")
    with Supervisor(config, log=lambda line: None) as sup:
        assert sup is not None
        alice = subprocess.Popen(
            [sys.executable, "-c", ALICE_ACKING.format(symbol=ACME), _tcp_address(config), KEYS[1]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert alice.stdout is not None
            assert alice.stdout.readline().strip() == "rested", "alice did not rest her ask"
            _await("alice's ACK", lambda: (read_stats(config) or {}).get("tcp_acks", 0) >= 1)
            watch = Ring.attach(
                segment_name(instance, "sout", 0),
                slot_size=RECORD_SIZE,
                layout_version=LAYOUT_VERSION,
            )
            with OrderClient.connect(_address(config), account_id=2, api_key=KEYS[2]) as bob:
                _bob_buys(bob, [(2, 101), (3, 101), (1, 101)])
                # all three fills are in her ring, and stay there until acknowledged (her
                # ACK released the ACCEPTED only: the edge reads without consuming). The
                # edge sent them as they came: the pump rang her eventfd with the push,
                # so the edge's loop saw that before the end of her connection below.
                _await(
                    "her fills routed",
                    lambda: (watch.info().head, watch.info().tail) == (1 + 3, 1),
                    10,
                )
                watch.close()
                alice.send_signal(signal.SIGKILL)
                alice.wait(10)
                _await("alice's session removed", lambda: _sessions_closed(config) == 1)
            stats = read_stats(config)
            assert stats is not None
            with OrderClient.connect(
                f"tcp://{_tcp_address(config)}", account_id=1, api_key=KEYS[1]
            ) as again:
                seen = _fills_until_ack(again, again.submit(ACME, "buy", 1, 50, order_id=9))
        finally:
            if alice.poll() is None:
                alice.kill()
                alice.wait(10)
    # the three she never processed (not the ACCEPTED she acknowledged), in order, once
    assert stats["tcp_unsent_held"] == 3 and stats["core"]["events_unread_held"] == 3
    fills = [e for e in seen if isinstance(e, Fill)]
    assert [(f.order_id, f.quantity, f.leaves_qty) for f in fills] == [
        (1, 2, 8),
        (1, 3, 5),
        (1, 1, 4),
    ]
    assert isinstance(seen[-1], Ack) and len(seen) == 4
    assert instance_segments(instance) == []
