"""A worker killed mid-run leaves RUNNING in its control block; once the supervisor has
reaped it the block says FAILED, so a reader (the gateway deciding whether the shard is
down) does not take it as running for the whole restart backoff (audit T: the gateway
marked a crash-looping shard down only after the backoff plus shard_down_ms)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.engine_toml import one_shard_instance
from tradsys.config import parse_config
from tradsys.cores.control import WorkerState
from tradsys.cores.supervisor import Supervisor

pytestmark = pytest.mark.multiprocess


def test_a_reaped_worker_is_failed_until_its_restart(instance: str, tmp_path: Path) -> None:
    text = one_shard_instance(
        instance, tmp_path, sections="[gateway]\nenabled = false\n[md]\nenabled = false\n"
    )
    with Supervisor(parse_config(text, "test"), log=lambda line: None) as sup:
        sp = sup.shards[0]
        assert sp.process is not None and sp.control.state == WorkerState.RUNNING
        os.kill(sp.process.pid, signal.SIGKILL)
        sup.watch(until=lambda: sp.process is None, tick_s=0.01)
        assert sp.restart_due is not None  # reaped, its restart not yet due
        assert sp.control.state == WorkerState.FAILED
