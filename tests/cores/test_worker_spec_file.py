"""A shard of many symbols starts: the supervisor hands each worker its spec in a file
(owner-only, in the instance's directory), not as one command-line argument, which Linux
caps at 128 KiB (MAX_ARG_STRLEN): with ~160 bytes per instrument, a shard of ~820 symbols
failed to spawn with E2BIG (scale audit). A restarted worker reads the same spec; the
files go at stop."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from tests.engine_toml import numbered_instruments
from tradsys.config import parse_config
from tradsys.cores.control import WorkerState
from tradsys.cores.supervisor import Supervisor
from tradsys.cores.worker import WorkerSpec

pytestmark = pytest.mark.multiprocess

SYMBOLS = 2000
ARG_MAX_BYTES = 128 * 1024  # MAX_ARG_STRLEN: the most one argument may hold


def many_symbols(instance: str, data_dir: Path, n: int) -> str:
    """One shard of ``n`` symbols, no gateway and no md sidecar."""
    lines = [
        "[engine]",
        f'instance = "{instance}"',
        f'data_dir = "{data_dir}"',
        "ring_capacity = 1024",
        "[journal]",
        'durability = "none"',
        "[gateway]",
        "enabled = false",
        "[md]",
        "enabled = false",
        "[[shard]]",
        "id = 0",
    ]
    lines += numbered_instruments(n, reference_price=10000)
    return "\n".join(lines) + "\n"


def test_a_shard_of_2000_symbols_starts_restarts_and_leaves_no_spec(
    instance: str, tmp_path: Path
) -> None:
    config = parse_config(many_symbols(instance, tmp_path, SYMBOLS), "t")
    with Supervisor(config, log=lambda line: None) as sup:
        sp = sup.shards[0]
        path = sup.spec_path(0)
        spec = msgspec.json.decode(path.read_bytes(), type=WorkerSpec)
        assert len(spec.instruments) == SYMBOLS
        assert path.stat().st_size > ARG_MAX_BYTES  # it could not have been an argument
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sp.process is not None and str(path) in sp.process.args
        # a restarted worker gets the same spec, from the same file
        first = sp.process.pid
        os.kill(first, signal.SIGKILL)
        sup.watch(
            until=lambda: (
                sp.process is not None
                and sp.process.pid != first
                and sp.control.state == WorkerState.RUNNING
            ),
            tick_s=0.01,
        )
        assert msgspec.json.decode(path.read_bytes(), type=WorkerSpec) == spec
    assert not path.exists() and not path.with_suffix(".tmp").exists()


def test_a_missing_spec_file_is_a_user_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "worker-0.spec.json"
    worker = [sys.executable, "-m", "tradsys.cores.worker"]
    done = subprocess.run([*worker, "--spec-file", str(missing)], capture_output=True, text=True)
    assert done.returncode == 1 and str(missing) in done.stderr
    done = subprocess.run(worker, capture_output=True, text=True)
    assert done.returncode == 1 and "--spec-file PATH" in done.stderr
