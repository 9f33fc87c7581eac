"""`tradsys latency` against a running instance, and its exit codes: 0 with a report,
1 when the instance is not running or an argument is wrong, 2 when a segment the
supervisor lists cannot be read."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine_toml import one_shard_instance
from tests.metrics.test_stage_latency import push_and_drain
from tradsys import wire
from tradsys.cli import main
from tradsys.config import parse_config
from tradsys.cores.supervisor import Supervisor
from tradsys.matching.commands import batch, new_order

pytestmark = pytest.mark.multiprocess


def config_text(instance: str, data_dir: Path) -> str:
    return one_shard_instance(
        instance,
        data_dir,
        sections='[journal]\ndurability = "none"\n[gateway]\nenabled = false\n'
        "[md]\nenabled = false",
    )


@pytest.fixture
def running(instance: str, tmp_path: Path) -> Iterator[Path]:
    """A running instance; yields its config file."""
    text = config_text(instance, tmp_path)
    path = tmp_path / "tradsys.toml"
    path.write_text(text)
    sup = Supervisor(parse_config(text, str(path)), log=lambda line: None)
    try:
        sup.start()
        yield path
    finally:
        sup.stop()


def test_report_after_orders(
    running: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = batch(
        *[new_order(i, 1, account_id=7, side=wire.Side.BUY, quantity=1, price=95) for i in (1, 2)]
    )
    push_and_drain(instance, orders, 2)
    assert main(["latency", "--config", str(running)]) == 0
    out = capsys.readouterr().out
    assert f"instance {instance!r}: stage latencies, since start" in out
    lines = {tuple(line.split()[:3]): line.split() for line in out.splitlines()[2:]}
    assert int(lines[("shard", "0", "shard_to_matched")][3]) == 2
    assert int(lines[("shard", "0", "matched_to_event")][3]) == 2
    assert int(lines[("shard", "0", "gateway_to_shard")][3]) == 0
    assert lines[("shard", "0", "gateway_to_shard")][4:] == ["-"] * 4  # no sample, no figure

    assert main(["latency", "--config", str(running), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_stage = {r["stage"]: r for r in doc["stages"] if r["where"] == "shard 0"}
    matched = by_stage["shard_to_matched"]
    assert matched["count"] == 2
    assert 0 < matched["p50_us"] <= matched["p99_us"] <= matched["p99_9_us"]
    assert matched["max_us"] < 1e6

    # a window with no traffic in it counts nothing
    assert main(["latency", "--config", str(running), "--json", "--window", "0.05"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all(r["count"] == 0 for r in doc["stages"])
    assert doc["window_s"] == 0.05  # what the figures cover (None: since start)


def test_not_running_is_a_user_error(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tradsys.toml"
    path.write_text(config_text(instance, tmp_path))
    assert main(["latency", "--config", str(path)]) == 1
    assert "is not running" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:  # argparse's usage error, the option named
        main(["latency", "--config", str(path), "--window", "-1"])
    assert exited.value.code == 1
    assert "argument --window: '-1': give a number at least 0" in capsys.readouterr().err


def test_unreadable_segment_is_an_internal_error(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tradsys.toml"
    path.write_text(config_text(instance, tmp_path))
    status = tmp_path / instance / "supervisor.json"
    status.parent.mkdir(parents=True)
    gone = f"/tradsys.{instance}.lat.0"
    # a live supervisor (this process) whose segment is gone
    status.write_text(
        json.dumps({"supervisor_pid": os.getpid(), "shards": [{"shard": 0, "latency": gone}]})
    )
    assert main(["latency", "--config", str(path)]) == 2
    assert f"{gone} does not exist" in capsys.readouterr().err
