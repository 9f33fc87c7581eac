"""`tradsys run` stopping and failing to start, the way an operator meets it: Ctrl-C in a
terminal stops the instance in its documented order (gateway, workers, md) with no error
logged; a stop that had to kill a process is not reported as clean (exit 2); a port the
instance cannot take is a user error (exit 1) naming the key, and leaves nothing behind.

Each instance runs in a session of its own, as a shell's foreground job does, so the test
can signal its whole process group the way a terminal's Ctrl-C does."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.cores.run_instance import RunningInstance
from tests.engine_toml import one_shard_instance
from tradsys.client.events import Cancelled
from tradsys.client.orders import OrderClient
from tradsys.cores.gateway_auth import key_digest
from tradsys.ring import instance_segments

pytestmark = pytest.mark.multiprocess

KEY = "alice-key"
ACCOUNT = f'[[account]]\nid = 1\nname = "alice"\napi_key_sha256 = "{key_digest(KEY)}"\n'
NO_SIDECARS = "[gateway]\nenabled = false\n[md]\nenabled = false\n"


def whole_instance(instance: str, data_dir: Path, tcp_listen: str = "127.0.0.1:0") -> str:
    """The worker, the md sidecar and the gateway (colocated and TCP), one account."""
    return one_shard_instance(
        instance,
        data_dir,
        sections=f"""[journal]
durability = "none"
[gateway]
tcp_listen = "{tcp_listen}"
[md]
publish = ["ipc://{data_dir}/md-pub"]
snapshot = "ipc://{data_dir}/md-snap"
{ACCOUNT}""",
    )


@pytest.fixture
def run_instance(tmp_path: Path) -> Iterator[Callable[[str], RunningInstance]]:
    made: list[RunningInstance] = []

    def start(text: str) -> RunningInstance:
        config = tmp_path / f"tradsys-{len(made)}.toml"
        config.write_text(text)
        inst = RunningInstance(config, start_new_session=True)
        made.append(inst)
        return inst

    yield start
    for inst in made:  # also when the test failed
        inst.kill_all()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port of 127.0.0.1 that something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def _run_once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradsys.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _line_of(output: str, text: str) -> int:
    lines = output.splitlines()
    found = [i for i, line in enumerate(lines) if text in line]
    assert found, f"no line with {text!r} in:\n{output}"
    return found[0]


def test_ctrl_c_reaches_the_supervisor_only_which_stops_md_last(
    instance: str, tmp_path: Path, run_instance: Callable[[str], RunningInstance]
) -> None:
    inst = run_instance(whole_instance(instance, tmp_path))
    inst.ready()
    assert len(inst.children) == 3  # the worker, md, the gateway
    # the terminal's foreground process group is the supervisor's alone
    group = os.getpgid(inst.proc.pid)
    assert all(os.getpgid(p.pid) != group for p in inst.children)

    gateway = json.loads((tmp_path / instance / "gateway.json").read_text())
    client = OrderClient.connect(gateway["unix_socket"], account_id=1, api_key=KEY)
    try:
        client.wait_for(client.submit("ACME", "sell", 5, 101))
        os.killpg(inst.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        code, output = inst.wait()
    finally:
        client.close()

    assert code == 0, output
    assert output.rstrip().endswith("stopped cleanly")
    # the worker was stopped by the supervisor (its control block), not by the signal
    assert "signal 2" not in output
    gateway_stopped = _line_of(output, 'logger=tradsys.gateway msg="stopped cleanly"')
    worker_stopped = _line_of(output, "shard 0: stopped cleanly at seq")
    md_stopped = _line_of(output, "md: stopped after")
    assert gateway_stopped < worker_stopped < md_stopped, output
    # a clean stop with a colocated session open logs no error
    assert "level=error" not in output, output
    _, alive = psutil.wait_procs(inst.children, timeout=30)
    assert alive == []
    assert instance_segments(instance) == []


def test_a_worker_killed_at_the_stop_deadline_is_not_a_clean_stop(
    instance: str, tmp_path: Path, run_instance: Callable[[str], RunningInstance]
) -> None:
    inst = run_instance(
        one_shard_instance(instance, tmp_path, engine="stop_timeout_ms = 500", sections=NO_SIDECARS)
    )
    inst.ready()
    (worker,) = inst.children
    worker.suspend()  # a wedged worker: it will not drain
    inst.proc.send_signal(signal.SIGTERM)
    code, output = inst.wait()
    assert code == 2, output
    assert "stopped cleanly" not in output
    assert "stopped, but not cleanly: shard 0 worker did not stop within" in output
    assert "no final snapshot" in output
    assert "level=error" in output  # and the log says so, for whoever reads only the log
    assert not worker.is_running()
    assert instance_segments(instance) == []


def test_a_busy_metrics_port_is_a_user_error_naming_the_key(
    instance: str, tmp_path: Path, busy_port: int
) -> None:
    config = tmp_path / "tradsys.toml"
    config.write_text(
        one_shard_instance(
            instance,
            tmp_path,
            sections=f'{NO_SIDECARS}[metrics]\nlisten = "127.0.0.1:{busy_port}"\n',
        )
    )
    done = _run_once(config)
    assert done.returncode == 1, done.stderr
    assert f"metrics.listen = '127.0.0.1:{busy_port}': cannot listen there" in done.stderr
    assert "internal error" not in done.stderr
    assert instance_segments(instance) == []


def test_a_busy_gateway_port_is_refused_before_any_worker_starts(
    instance: str, tmp_path: Path, busy_port: int
) -> None:
    """The gateway binds its port only once the workers have recovered (minutes, after a
    long journal): a port another program held was told only then. The supervisor tries
    the fixed ports first (tradsys.cores.port_check). The gateway's own refusal, for a
    port taken in between, is tests/client/test_edge_port.py's."""
    config = tmp_path / "tradsys.toml"
    config.write_text(whole_instance(instance, tmp_path, tcp_listen=f"127.0.0.1:{busy_port}"))
    done = _run_once(config)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"gateway.tcp_listen = '127.0.0.1:{busy_port}': cannot listen there" in output
    assert "worker" not in output and "recovered" not in output, output  # none was started
    assert not (tmp_path / instance).exists() or not any((tmp_path / instance).iterdir())
    assert instance_segments(instance) == []


def test_a_closing_terminal_stops_the_instance_cleanly(
    instance: str, tmp_path: Path, run_instance: Callable[[str], RunningInstance]
) -> None:
    """A terminal that closes sends SIGHUP to its foreground group, the supervisor's
    alone: it stops the engine in order as for Ctrl-C (its default action killed the
    supervisor, leaving the workers to stop without it)."""
    inst = run_instance(one_shard_instance(instance, tmp_path, sections=NO_SIDECARS))
    inst.ready()
    os.killpg(inst.proc.pid, signal.SIGHUP)
    code, output = inst.wait()
    assert code == 0, output
    assert output.rstrip().endswith("stopped cleanly")
    assert "shard 0: stopped cleanly at seq" in output
    _, alive = psutil.wait_procs(inst.children, timeout=30)
    assert alive == []
    assert instance_segments(instance) == []


def _states(procs: list[psutil.Process]) -> set[str]:
    return {p.status() for p in procs}


def _until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll a process-state condition (the kernel's state, not time, decides)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_ctrl_z_suspends_the_whole_engine_and_fg_continues_it(
    instance: str, tmp_path: Path, run_instance: Callable[[str], RunningInstance]
) -> None:
    """Ctrl-Z sends SIGTSTP to the terminal's foreground group, the supervisor's alone: it
    stops every engine process and then itself, and SIGCONT (`fg`) continues them all. A
    suspend longer than the heartbeat timeout restarts nothing (the workers' heartbeats
    stood still because the whole engine did)."""
    text = whole_instance(instance, tmp_path).replace(
        "ring_capacity = 1024\n", "ring_capacity = 1024\nheartbeat_timeout_ms = 200\n", 1
    )
    # the gateway drops a TCP peer silent for 3 heartbeats: 300 ms
    text = text.replace("[gateway]\n", "[gateway]\nheartbeat_ms = 100\n", 1)
    inst = run_instance(text)
    inst.ready()
    engine = inst.children
    supervisor = psutil.Process(inst.proc.pid)
    gateway = json.loads((tmp_path / instance / "gateway.json").read_text())
    with OrderClient.connect(f"tcp://{gateway['tcp']}", account_id=1, api_key=KEY) as remote:
        resting = remote.submit("ACME", "sell", 5, 101)
        remote.wait_for(resting)
        os.killpg(inst.proc.pid, signal.SIGTSTP)  # what Ctrl-Z in a terminal does
        _until("the engine stopped", lambda: _states([supervisor, *engine]) == {"stopped"})
        # the point of the test: stopped for longer than the workers' heartbeat timeout
        # and than the TCP session's, while the remote client goes on heart-beating
        time.sleep(0.5)
        os.killpg(inst.proc.pid, signal.SIGCONT)  # what `fg` does
        inst.wait_for("continued after a suspend (3 engine processes)")
        _until("the engine running", lambda: "stopped" not in _states([supervisor, *engine]))
        with OrderClient.connect(gateway["unix_socket"], account_id=1, api_key=KEY) as client:
            client.wait_for(client.submit("ACME", "sell", 5, 102))
        # the TCP session lived through it, and so did its resting order
        remote.cancel(resting)
        assert isinstance(remote.wait_for(resting, (Cancelled,)), Cancelled)
    assert all(p.is_running() for p in engine)  # the same processes: none was replaced
    os.killpg(inst.proc.pid, signal.SIGINT)
    code, output = inst.wait()
    assert code == 0, output
    assert "heart-beaten" not in output and "restarting" not in output, output
    _, alive = psutil.wait_procs(engine, timeout=30)
    assert alive == []
    assert instance_segments(instance) == []


def test_ctrl_z_while_stopping_is_ignored(
    instance: str, tmp_path: Path, run_instance: Callable[[str], RunningInstance]
) -> None:
    """A stop has deadlines that a suspend would run out (a worker killed at
    stop_timeout_ms is not a clean stop): Ctrl-Z during it does nothing."""
    inst = run_instance(whole_instance(instance, tmp_path))
    inst.ready()
    os.killpg(inst.proc.pid, signal.SIGINT)
    inst.wait_for('logger=tradsys.gateway msg="stopped cleanly"')  # the stop is under way
    os.killpg(inst.proc.pid, signal.SIGTSTP)
    code, output = inst.wait()
    assert code == 0, output
    assert "Ctrl-Z ignored: the instance is starting or stopping" in output
    assert output.rstrip().endswith("stopped cleanly")
    assert instance_segments(instance) == []
