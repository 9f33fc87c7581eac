"""A pinned worker's background thread (the snapshot writer) runs on the housekeeping
cores — those no engine process is pinned to — not on the worker's own core."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from tradsys.config import available_cores, engine_cores, housekeeping_cores, parse_config
from tradsys.cores.control import WorkerState
from tradsys.cores.supervisor import Supervisor


def config_text(instance: str, data_dir: Path, core: int, gateway: str = "") -> str:
    return f"""
[engine]
instance = "{instance}"
data_dir = "{data_dir}"
ring_capacity = 1024
[gateway]
enabled = false
{gateway}
[md]
enabled = false
[[shard]]
id = 0
core = {core}
[[instrument]]
symbol = "ACME"
symbol_id = 1
reference_price = 100
"""


def mask(status: Path) -> set[int]:
    for line in status.read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return parse_cpu_list(line.split(":", 1)[1].strip())
    raise AssertionError(f"no Cpus_allowed_list in {status}")


def cpus_of(pid: int, thread_name: str) -> set[int]:
    """The CPU mask of the thread of ``pid`` called ``thread_name``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == thread_name:
            return mask(task / "status")
    raise AssertionError(f"no thread {thread_name!r} in process {pid}")


def parse_cpu_list(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def test_housekeeping_cores_are_the_ones_no_engine_process_is_pinned_to(
    instance: str, tmp_path: Path
) -> None:
    cores = sorted(available_cores())
    config = parse_config(config_text(instance, tmp_path, cores[0]), "t")
    assert engine_cores(config) == {cores[0]}
    assert housekeeping_cores(config) == cores[1:]
    # a disabled gateway's core is not taken; an enabled one's is
    assert engine_cores(
        parse_config(config_text(instance, tmp_path, cores[0], f"core = {cores[-1]}"), "t")
    ) == {cores[0]}


def test_a_pinned_workers_snapshot_writer_runs_off_its_core(instance: str, tmp_path: Path) -> None:
    cores = sorted(available_cores())
    worker_core = cores[-1]
    config = parse_config(config_text(instance, tmp_path, worker_core), "t")
    sup = Supervisor(config, log=lambda line: None)
    try:
        sup.start()
        shard = sup.shards[0]
        deadline = time.monotonic() + 10
        while shard.control.state != WorkerState.RUNNING:
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.005)
        pid = shard.process.pid
        assert mask(Path(f"/proc/{pid}/status")) == {worker_core}  # the loop's thread
        # with a second core the writer goes there; on a 1-core host it stays beside
        assert cpus_of(pid, "ts-snapwriter") == (set(cores[:-1]) or {worker_core})
        # and no thread of it is left on every core (audit W: numpy's BLAS started a
        # thread per CPU at import, before the worker pinned itself)
        housekeeping = set(cores[:-1]) or {worker_core}
        for task in Path(f"/proc/{pid}/task").iterdir():
            name = (task / "comm").read_text().strip()
            assert mask(task / "status") in ({worker_core}, housekeeping), name
    finally:
        sup.stop()


def test_the_gateways_event_loop_goes_to_the_housekeeping_cores(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit W: with the pump on 0 the event loop went to every other CPU, the shard's
    isolated core included. On a host of 8: shard on 2, pump on 4 → housekeeping only."""
    import tradsys.config as config_module
    import tradsys.cores.gateway as gateway_module

    eight = set(range(8))
    monkeypatch.setattr(config_module, "available_cores", lambda: eight)
    monkeypatch.setattr(gateway_module, "available_cores", lambda: eight)
    config = parse_config(config_text(instance, tmp_path, 2), "t")
    config = msgspec.structs.replace(
        config, gateway=msgspec.structs.replace(config.gateway, enabled=True, core=4)
    )
    assert gateway_module.control_plane_cpus(config, 4) == eight - {2, 4}
    # every core taken (2 CPUs: shard on one, pump on the other): all but the pump's
    two = {0, 1}
    monkeypatch.setattr(config_module, "available_cores", lambda: two)
    monkeypatch.setattr(gateway_module, "available_cores", lambda: two)
    config = msgspec.structs.replace(
        config,
        shards=[msgspec.structs.replace(config.shards[0], core=1)],
        gateway=msgspec.structs.replace(config.gateway, core=0),
    )
    assert gateway_module.control_plane_cpus(config, 0) == {1}
