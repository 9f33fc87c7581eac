"""What the supervisor says at warning level: what an operator alerting on the log level
must hear of (audit W: every supervisor line was info, a crash included, and processes
pinned to one core started without a word)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

from tests.engine_toml import one_shard_instance
from tradsys.config import available_cores, parse_config
from tradsys.cores.supervisor import Supervisor

pytestmark = pytest.mark.multiprocess


def test_a_worker_death_is_logged_as_a_warning(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator alerting on level=warn must hear of a crash (audit W: every supervisor
    line was info); the spawn and the restart stay info."""
    text = one_shard_instance(
        instance, tmp_path, sections="[gateway]\nenabled = false\n[md]\nenabled = false\n"
    )
    caplog.set_level(logging.INFO, logger="tradsys.supervisor")
    with Supervisor(parse_config(text, "test")) as sup:
        sp = sup.shards[0]
        assert sp.process is not None
        os.kill(sp.process.pid, signal.SIGKILL)
        sup.watch(until=lambda: sp.process is None, tick_s=0.01)
    levels = {r.getMessage(): r.levelno for r in caplog.records if r.name == "tradsys.supervisor"}
    died = [m for m in levels if "worker died (signal 9)" in m]
    assert died and levels[died[0]] == logging.WARNING
    spawned = [m for m in levels if "worker pid" in m and " on " in m]
    assert spawned and all(levels[m] == logging.INFO for m in spawned)


def test_processes_sharing_a_core_are_warned_of_at_start(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Allowed with polite waiting, but never silently (audit W)."""
    core = min(available_cores())
    pinned = "".join(f"[[shard]]\nid = {i}\ncore = {core}\n" for i in (1, 2))
    text = one_shard_instance(
        instance,
        tmp_path,
        sections="[gateway]\nenabled = false\n[md]\nenabled = false\n" + pinned,
    )
    caplog.set_level(logging.INFO, logger="tradsys.supervisor")
    with Supervisor(parse_config(text, "test")):
        pass
    warned = [r for r in caplog.records if "pinned to the same core" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert f"shard 1 and shard 2 are pinned to the same core {core}" in warned[0].getMessage()
