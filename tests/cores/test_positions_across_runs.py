"""An account's positions outlive a stop: the next run's gateway goes on with the ledger
of the run before (positions, filled notional), so a restart in the middle of a trading
day does not hand an account its position limit afresh. A run started as a new trading
day (``tradsys run --new-day``, ``Supervisor(new_day=True)``) starts flat. Before
2026-11-29 every run after a stop started flat, and fills that came after the stop's
gateway had left were then the only ones the next run counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.accounts_toml import account_tables
from tests.client.edge_rig import KEYS
from tests.cores.run_instance import RunningInstance
from tests.cores.test_supervisor_death import whole_instance
from tradsys.cli import build_parser
from tradsys.client.events import Ack, Fill, OrderRejected
from tradsys.client.orders import OrderClient
from tradsys.config import Config, parse_config
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor
from tradsys.ring.segment import instance_segments
from tradsys.wire import RejectReason

pytestmark = pytest.mark.multiprocess

LIMIT = 3  # alice's max_position in symbol 1


CONTINUES = "continues the ledger of the run before this one"


def _config_text(instance: str, tmp_path: Path) -> str:
    limits = {1: f"max_position = {LIMIT}\n", 2: ""}
    return (
        whole_instance(instance, tmp_path)
        + "\n"
        + account_tables(KEYS, lambda i: "cancel_on_disconnect = false\n" + limits.get(i, ""))
    )


def _config(instance: str, tmp_path: Path) -> Config:
    return parse_config(_config_text(instance, tmp_path), "t")


def _clients(config: Config) -> tuple[OrderClient, OrderClient]:
    ann = read_announcement(config, "gateway")
    assert ann is not None
    alice = OrderClient.connect(ann["unix_socket"], account_id=1, api_key=KEYS[1])
    bob = OrderClient.connect(ann["unix_socket"], account_id=2, api_key=KEYS[2])
    return alice, bob


def _one_more_buy(config: Config, order_id: int) -> Ack | RejectReason:
    """What alice's buy of one more lot gets: its ACCEPTED, or the reason it is refused."""
    alice, bob = _clients(config)
    with alice, bob:
        oid = alice.submit(1, "buy", 1, 100, order_id=order_id)
        try:
            ack = alice.wait_for(oid, timeout=30)
        except OrderRejected as exc:
            return exc.reason
        assert isinstance(ack, Ack)
        return ack


def test_a_stopped_runs_positions_go_on_and_a_new_day_starts_flat(
    instance: str, tmp_path: Path
) -> None:
    """Each run is a `tradsys run` process of its own: a run is named by its supervisor's
    process (two supervisors of one process would be one run to the ledger)."""
    config = _config(instance, tmp_path)
    path = tmp_path / "instance.toml"
    path.write_text(_config_text(instance, tmp_path))
    runs: list[RunningInstance] = []

    def run(*args: str) -> str:
        """Start a run; what it said before it was ready."""
        runs.append(RunningInstance(path, *args))
        runs[-1].ready()
        return "".join(runs[-1].lines)

    try:
        said = run()
        assert CONTINUES not in said, said  # the first run: nothing to go on with
        alice, bob = _clients(config)
        with alice, bob:
            for oid in range(1, LIMIT + 1):  # alice buys her limit from bob
                bob.submit(1, "sell", 1, 100, order_id=oid)
                assert isinstance(bob.wait_for(oid, timeout=30), Ack)
                alice.submit(1, "buy", 1, 100, order_id=oid)
                fill = alice.wait_for(oid, kinds=(Fill,), timeout=30)
                assert isinstance(fill, Fill) and fill.quantity == 1
        # at her limit: a buy more is refused, in this run
        assert _one_more_buy(config, 50) == RejectReason.MAX_POSITION
        assert runs[-1].stop() == 0

        said = run()
        assert CONTINUES in said, said
        assert _one_more_buy(config, 51) == RejectReason.MAX_POSITION  # still at her limit
        assert runs[-1].stop() == 0

        said = run("--new-day")
        assert CONTINUES not in said and "a new trading day" in said, said
        answer = _one_more_buy(config, 52)
        assert isinstance(answer, Ack) and answer.order_id == 52, answer  # flat: allowed
        assert runs[-1].stop() == 0

        said = run()  # the new day goes on after a stop too
        assert CONTINUES in said, said
        # her resting buy of the new day counts against her limit: 1 open + 3 more > 3
        alice, bob = _clients(config)
        with alice, bob:
            oid = alice.submit(1, "buy", LIMIT, 100, order_id=53)
            with pytest.raises(OrderRejected) as refused:
                alice.wait_for(oid, timeout=30)
            assert refused.value.reason == RejectReason.MAX_POSITION
            # and a buy within it is allowed: she is flat, 1 open + 2 = 3
            assert isinstance(alice.wait_for(alice.submit(1, "buy", 2, 100, order_id=54)), Ack)
        assert runs[-1].stop() == 0
    finally:
        for inst in runs:
            inst.kill_all()
    assert instance_segments(instance) == []


def test_a_new_day_starts_flat_also_for_a_run_of_the_same_process(
    instance: str, tmp_path: Path
) -> None:
    """Two supervisors of one process are one run to the ledger (its id names the rings'
    creator), so the ledger would go on by itself: a new day retires it instead."""
    config = _config(instance, tmp_path)
    with Supervisor(config, log=lambda line: None):
        alice, bob = _clients(config)
        with alice, bob:
            bob.submit(1, "sell", LIMIT, 100, order_id=1)
            alice.submit(1, "buy", LIMIT, 100, order_id=1)
            assert isinstance(alice.wait_for(1, kinds=(Fill,), timeout=30), Fill)
    with Supervisor(config, log=lambda line: None):
        assert _one_more_buy(config, 2) == RejectReason.MAX_POSITION  # goes on
    with Supervisor(config, log=lambda line: None, new_day=True):
        assert isinstance(_one_more_buy(config, 3), Ack)
    assert instance_segments(instance) == []


def test_tradsys_run_takes_new_day() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "--new-day"]).new_day is True
    assert parser.parse_args(["run"]).new_day is False
