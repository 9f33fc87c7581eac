"""The supervisor runs the gateway and the market-data sidecar beside the shard workers:
starts them after the workers, waits for their announcements, restarts one that dies,
stops the gateway before the workers drain and the md sidecar after them. Stand-in
sidecars (fake_md.py, fake_gateway.py) keep the contract and report what they saw."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tradsys.config import Config, parse_config
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor, SupervisorError
from tradsys.ring import instance_segments

pytestmark = pytest.mark.multiprocess

FAKES = {"md": "tests.cores.fake_md", "gateway": "tests.cores.fake_gateway"}


def _config(instance: str, data_dir: Path) -> Config:
    text = f"""
[engine]
instance = "{instance}"
data_dir = "{data_dir}"
ring_capacity = 256

[[shard]]
id = 0

[[instrument]]
symbol = "ACME"
symbol_id = 1
reference_price = 100
"""
    return parse_config(text, "test")


@pytest.fixture
def supervisor(instance: str, tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(_config(instance, tmp_path), log=lambda line: None, sidecar_modules=FAKES)
    try:
        yield sup
    finally:
        sup.stop()


def _stopped_record(config: Config, name: str) -> dict[str, object]:
    record: dict[str, object] = json.loads((config.instance_dir / f"{name}.stopped").read_text())
    return record


def test_sidecars_start_after_the_workers_and_announce_where_they_serve(
    supervisor: Supervisor,
) -> None:
    supervisor.start()
    assert [sc.name for sc in supervisor.sidecars] == ["md", "gateway"]
    for sc in supervisor.sidecars:
        assert sc.process is not None
        doc = read_announcement(supervisor.config, sc.name)
        assert doc is not None and doc["pid"] == sc.process.pid
    info = "\n".join(supervisor.connection_info())
    assert "md: endpoint fake://md" in info and "gateway: endpoint fake://gateway" in info
    status = json.loads(supervisor.status_path.read_text())
    assert [s["name"] for s in status["sidecars"]] == ["md", "gateway"]


def test_a_killed_sidecar_is_restarted(supervisor: Supervisor) -> None:
    supervisor.start()
    md = supervisor.sidecars[0]
    assert md.process is not None
    first_pid = md.process.pid
    os.kill(first_pid, signal.SIGKILL)

    def restarted() -> bool:
        return md.process is not None and md.announcement() is not None

    supervisor.watch(until=lambda: md.restarts == 1 and restarted(), tick_s=0.01)
    assert md.process is not None and md.process.pid != first_pid
    assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == "zombie"


def test_stop_takes_the_gateway_down_before_the_workers_and_md_after_them(
    supervisor: Supervisor,
) -> None:
    supervisor.start()
    config = supervisor.config
    pids = [sc.process.pid for sc in supervisor.sidecars if sc.process is not None]
    supervisor.stop()
    assert _stopped_record(config, "gateway")["workers_alive_at_stop"] == [True]
    assert _stopped_record(config, "md")["workers_alive_at_stop"] == [False]
    assert not any(psutil.pid_exists(p) for p in pids)
    assert read_announcement(config, "md") is None
    assert read_announcement(config, "gateway") is None
    assert instance_segments(config.engine.instance) == []


def test_a_sidecar_that_fails_to_start_stops_the_instance(
    supervisor: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SIDECAR_FAIL", "gateway")
    with pytest.raises(SupervisorError, match="gateway exited with code 3"):
        supervisor.start()
    assert supervisor.sidecars == [] and supervisor.shards == []
    assert instance_segments(supervisor.config.engine.instance) == []


def test_a_disabled_sidecar_is_not_started(instance: str, tmp_path: Path) -> None:
    import msgspec

    base = _config(instance, tmp_path)
    config = msgspec.structs.replace(base, md=msgspec.structs.replace(base.md, enabled=False))
    with Supervisor(config, log=lambda line: None, sidecar_modules=FAKES) as sup:
        assert [sc.name for sc in sup.sidecars] == ["gateway"]


def test_status_shows_each_sidecar_and_what_it_announced(supervisor: Supervisor) -> None:
    from tradsys.cores.status import read_status

    supervisor.start()
    report = read_status(supervisor.config, interval_s=0.01).splitlines()
    for sc in supervisor.sidecars:
        assert sc.process is not None
        line = f"{sc.name}: pid {sc.process.pid}, restarts 0; endpoint fake://{sc.name}"
        assert line in report


def test_a_worker_that_dies_while_the_gateway_starts_fails_the_start_by_name(
    instance: str, tmp_path: Path
) -> None:
    """Before, the start waited out the gateway's readiness (its order-image request to
    the dead worker: 30 s) and then failed for a reason nothing named."""
    sidecars = {"md": FAKES["md"], "gateway": "tests.cores.fake_gateway_kills_worker"}
    sup = Supervisor(_config(instance, tmp_path), log=lambda line: None, sidecar_modules=sidecars)
    try:
        with pytest.raises(
            SupervisorError, match=r"shard 0's worker died \(signal 9\) while gateway"
        ) as failed:
            sup.start()
    finally:
        sup.stop()
    assert failed.value.exit_code == 2, "a crash is ours, not the user's (CONVENTIONS)"
    assert instance_segments(instance) == []


def test_status_names_the_pinned_cores_of_the_sidecars(instance: str, tmp_path: Path) -> None:
    """Audit W: `tradsys status` showed the shards' cores, not the gateway's or md's."""
    import msgspec

    from tradsys.config import available_cores
    from tradsys.cores.status import read_status

    core = max(available_cores())
    base = _config(instance, tmp_path)
    config = msgspec.structs.replace(
        base,
        gateway=msgspec.structs.replace(base.gateway, core=core),
        md=msgspec.structs.replace(base.md, core=core),
    )
    with Supervisor(config, log=lambda line: None, sidecar_modules=FAKES) as sup:
        report = read_status(sup.config, interval_s=0.01).splitlines()
        by_name = {sc.name: sc for sc in sup.sidecars}
        gateway, md = by_name["gateway"].process, by_name["md"].process
        assert gateway is not None and md is not None
        assert any(
            line.startswith(f"gateway: pid {gateway.pid}, core {core} (pump), restarts 0")
            for line in report
        ), report
        assert any(line.startswith(f"md: pid {md.pid}, core {core}, restarts 0") for line in report)


def test_status_shows_a_reaped_worker_as_restarting_with_its_restart_counted(
    instance: str, tmp_path: Path
) -> None:
    """Audit W: during the restart back-off status showed the dead pid as "failed" and a
    restart count one behind the metric."""
    import os
    import signal

    from tradsys.cores.status import read_status

    with Supervisor(
        _config(instance, tmp_path), log=lambda line: None, sidecar_modules=FAKES
    ) as sup:
        sp = sup.shards[0]
        assert sp.process is not None
        dead = sp.process.pid
        os.kill(dead, signal.SIGKILL)
        sup.watch(until=lambda: sp.process is None, tick_s=0.01)
        assert sp.restart_due is not None  # reaped, its restart not yet due
        row = read_status(sup.config, interval_s=0.01).splitlines()[2].split()
        assert row[:5] == [str(sp.spec.shard_id), "-", "-", "restarting", "1"], row
