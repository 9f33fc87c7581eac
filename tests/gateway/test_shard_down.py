"""A shard whose worker stays down: its symbols' commands are answered SHARD_UNAVAILABLE
past ``[gateway] shard_down_ms`` and change nothing; the other shards trade on; once the
worker runs again they are taken again. Before, they waited unanswered in a ring nobody
read, and once the pump's stage for that shard was full every other shard's commands
waited behind them (audit R: a full disk crash-looped a worker for minutes).

The worker is kept down by moving its data directory away and killing it: a worker
restarted within a run refuses to start without the journal of what it acknowledged."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.client.edge_rig import KEYS
from tests.cores.test_gateway_e2e import e2e_config_text
from tradsys.client.events import Ack, Cancelled
from tradsys.client.orders import OrderClient, OrderRejected
from tradsys.config import parse_config
from tradsys.cores.gateway import read_stats
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.wire import RejectReason

pytestmark = pytest.mark.multiprocess


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[Supervisor]:
    text = e2e_config_text(instance, tmp_path, lambda i: "cancel_on_disconnect = false\n")
    text = text.replace("[gateway]\n", "[gateway]\nshard_down_ms = 300\n").replace(
        # a market-data sidecar drains the md rings (thousands of orders go to shard 1)
        "[md]\nenabled = false\n",
        '[md]\npublish = ["tcp://127.0.0.1:0"]\nsnapshot = "tcp://127.0.0.1:0"\n',
    )
    with Supervisor(parse_config(text, "test"), log=lambda line: None) as sup:
        yield sup


def _reason(client: OrderClient, order_id: int) -> RejectReason | None:
    try:
        client.wait_for(order_id)
    except OrderRejected as exc:
        return RejectReason(exc.reason)
    return None


def _supervise_until(sup: Supervisor, what: str, check: Callable[[], bool]) -> None:
    """Run the supervisor's watch (it restarts the worker) until ``check()`` holds."""
    deadline = time.monotonic() + 30
    sup.watch(until=lambda: check() or time.monotonic() > deadline, tick_s=0.05)
    assert check(), f"timed out waiting for {what}"


def _shards_down(sup: Supervisor) -> list[int]:
    return list((read_stats(sup.config) or {}).get("shards_down", []))


def test_a_shard_that_stays_down_is_answered_for_and_holds_back_no_other(
    running: Supervisor,
) -> None:
    ann = read_announcement(running.config, "gateway")
    assert ann is not None
    with OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice:
        resting = alice.submit("ZETA", "buy", 2, 45)  # shard 1
        assert isinstance(alice.wait_for(resting), Ack)
        shard_dir = running.config.shard_data_dir(1)
        away = shard_dir.with_name("shard-1.away")
        shard_dir.rename(away)
        worker = running.shards[1].process
        assert worker is not None
        os.kill(worker.pid, signal.SIGKILL)
        # sent while it is down, before it is marked: they wait for it, and fill its ring
        # and then the pump's stage for it
        for _ in range(running.config.engine.ring_capacity + 2 * running.config.gateway.pump_batch):
            alice.submit("ZETA", "sell", 1, 60)
        _supervise_until(running, "shard 1 marked down", lambda: _shards_down(running) == [1])

        assert _reason(alice, alice.submit("ZETA", "buy", 1, 45)) == RejectReason.SHARD_UNAVAILABLE
        alice.cancel(resting)
        assert _reason(alice, resting) == RejectReason.SHARD_UNAVAILABLE
        # symbol_id 0 names the order alone: its shard is found from the order (before,
        # such cancels were staged past the end of the down shard's full stage)
        for _ in range(2 * running.config.gateway.pump_batch):
            alice.cancel(resting, 0)
            assert _reason(alice, resting) == RejectReason.SHARD_UNAVAILABLE
        alice.mass_cancel()
        assert _reason(alice, 0) == RejectReason.SHARD_UNAVAILABLE
        # shard 0 trades on, though shard 1's full stage holds what was sent before
        assert isinstance(alice.wait_for(alice.submit("ACME", "buy", 1, 90)), Ack)

        away.rename(shard_dir)  # back: the next restart recovers the shard
        _supervise_until(running, "shard 1 running again", lambda: _shards_down(running) == [])
        assert isinstance(alice.wait_for(alice.submit("ZETA", "buy", 1, 44)), Ack)
        alice.cancel(resting)  # the order rested through it all
        assert isinstance(alice.wait_for(resting, (Cancelled,)), Cancelled)


def test_a_hung_worker_is_marked_down_while_it_still_says_running(running: Supervisor) -> None:
    """A worker stopped (SIGSTOP) or deadlocked keeps saying RUNNING: its shard used to
    be judged by that alone, so its commands waited until the supervisor killed it
    (heartbeat_timeout_ms, here never: nobody runs the supervisor's watch). The gateway
    now also reads the heartbeat, which a running worker writes every slice."""
    from tests.cores.test_gateway_restart import _until_every_thread_stopped

    ann = read_announcement(running.config, "gateway")
    assert ann is not None
    worker = running.shards[1].process
    assert worker is not None
    with OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1]) as alice:
        assert isinstance(alice.wait_for(alice.submit("ZETA", "buy", 2, 45)), Ack)
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            _until_every_thread_stopped(worker.pid)
            deadline = time.monotonic() + 30
            while _shards_down(running) != [1]:  # the gateway's stats, polled
                assert time.monotonic() < deadline, "the hung shard was never marked down"
            assert running.shards[1].control.state.name == "RUNNING"  # as it still says
            hung = alice.submit("ZETA", "buy", 1, 44)
            assert _reason(alice, hung) == RejectReason.SHARD_UNAVAILABLE
            assert isinstance(alice.wait_for(alice.submit("ACME", "buy", 1, 90)), Ack)
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while _shards_down(running):  # it beats again: up
            assert time.monotonic() < deadline, "the shard never came back"
        assert isinstance(alice.wait_for(alice.submit("ZETA", "buy", 1, 43)), Ack)
