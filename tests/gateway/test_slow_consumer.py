"""Through the Supervisor, with real processes: a colocated client that stops reading
fills its event ring and the pump's stage for it, and from then on its shard's events
wait for everyone -- bob's fills too. After ``[gateway] stalled_session_ms`` the gateway
ends that session (a slow consumer), the shard's events flow again, and nothing is lost:
the stuck client's unread fills go to its account's next session, each once, in order."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pytest

from tests.client.edge_rig import KEYS
from tests.gateway.test_unread_sessions import (
    ACME,
    ASKS,
    TCP_QTY,
    _address,
    _await,
    _fills_until_ack,
    _sessions_closed,
    _tcp_address,
    alice_on_tcp,
    alice_resting,
    alices_next_session,
    unread_config,
)
from tradsys.client.commands import order_bytes, order_record
from tradsys.client.events import Fill
from tradsys.client.orders import OrderClient
from tradsys.cores.gateway import read_stats
from tradsys.cores.supervisor import Supervisor
from tradsys.wire import COMMAND_DTYPE, EventFlag

pytestmark = pytest.mark.multiprocess

LOTS = 30  # alice's three asks of 10; her ring (16) and the stage (8) hold 24 of them


def test_a_client_that_stops_reading_is_ended_and_the_shard_flows_again(
    instance: str, tmp_path: Path
) -> None:
    config = unread_config(instance, tmp_path / "data", ring=16)
    gateway = msgspec.structs.replace(config.gateway, pump_batch=8, stalled_session_ms=300)
    config = msgspec.structs.replace(config, gateway=gateway)
    with Supervisor(config, log=lambda line: None):
        address = _address(config)
        with alice_resting(address):
            with OrderClient.connect(address, account_id=2, api_key=KEYS[2]) as bob:
                top = max(px for _, px in ASKS)
                fills: list[Fill] = []
                for _ in range(LOTS):
                    rec = order_bytes(bob.next_order_id(), ACME, "buy", 1, top, tif="ioc")
                    # he reads as he sends: the gateway takes a session's commands only
                    # while its event ring has room for their answers (two for an IOC),
                    # so a bob who waited in a send while they filled it would stop
                    # himself; with no room for the command, he reads what came
                    while not bob.transport.try_send_one(rec):
                        fills += [e for e in bob.poll(0.05) if isinstance(e, Fill)]
                    fills += [e for e in bob.poll() if isinstance(e, Fill)]
                deadline = time.monotonic() + 20
                while len(fills) < LOTS:  # the later ones wait until alice is ended
                    assert time.monotonic() < deadline, f"bob got {len(fills)} fills"
                    fills += [e for e in bob.poll(1.0) if isinstance(e, Fill)]
            _await(
                "the slow consumer counted",
                lambda: (read_stats(config) or {}).get("slow_consumers") == 1,
            )
            seen = alices_next_session(address)
    got = [e for e in seen if isinstance(e, Fill)]
    want = [(oid, px) for oid, px in ASKS for _ in range(10)]
    assert [(f.order_id, f.price) for f in got] == want
    execs = [f.exec_id for f in got]
    assert execs == sorted(set(execs))


def _sweep(bob: OrderClient, done: Callable[[], bool]) -> None:
    """Batches of 8 IOC buys of 1 lot at 101 until ``done()``, each batch once bob has
    its answers: small enough for his own ring of 16 both ways, so that his session is
    never the one that holds the shard back."""
    oid, deadline = 1000, time.monotonic() + 60
    while not done():
        assert time.monotonic() < deadline, "alice was never ended"
        batch = np.zeros(8, COMMAND_DTYPE)
        for j in range(8):
            batch[j] = order_record(oid + j, ACME, "buy", 1, 101, tif="ioc")[0]
        oid += 8
        bob.submit_batch(batch)
        finished = 0
        while finished < 8 and not done():
            assert time.monotonic() < deadline, f"{finished} of bob's batch answered"
            records = bob.poll_records(0.05)
            finished += int(np.count_nonzero(records["flags"] & EventFlag.DONE))


def test_a_tcp_client_that_stops_reading_is_ended_and_owed_what_was_not_written(
    instance: str, tmp_path: Path
) -> None:
    """The same over TCP: alice's socket, the edge's transport, then her ring and the
    pump's stage fill; the gateway aborts her connection (a close would wait for her to
    read) and keeps for her account what its transport had not written and what her ring
    held: her next session gets one run of fills, in order, ending with her last."""
    # md on: it takes many trades to fill her socket, and a worker whose md ring nobody
    # reads stops once the ring is full
    config = unread_config(
        instance, tmp_path / "data", alice_cod=True, ring=16, heartbeat_ms=60_000, md=True
    )
    gateway = msgspec.structs.replace(config.gateway, pump_batch=8, stalled_session_ms=300)
    config = msgspec.structs.replace(config, gateway=gateway)
    with Supervisor(config, log=lambda line: None), alice_on_tcp(config):
        with OrderClient.connect(_address(config), account_id=2, api_key=KEYS[2]) as bob:
            _sweep(bob, lambda: (read_stats(config) or {}).get("slow_consumers") == 1)
        _await("alice's session removed", lambda: _sessions_closed(config) == 2)
        stats = read_stats(config)
        assert stats is not None
        bought = stats["accounts"]["2"]["positions"]["ACME"][0]
        with OrderClient.connect(
            f"tcp://{_tcp_address(config)}", account_id=1, api_key=KEYS[1]
        ) as again:
            seen = _fills_until_ack(again, again.submit(ACME, "buy", 1, 50, order_id=9))
    fills = [e for e in seen if isinstance(e, Fill)]
    assert fills, "nothing was kept for her"
    leaves = [f.leaves_qty for f in fills]
    assert leaves == list(range(leaves[0], leaves[0] - len(fills), -1))
    assert leaves[-1] == TCP_QTY - bought  # her last fill is there
    execs = [f.exec_id for f in fills]
    assert execs == sorted(set(execs))
