"""An instance directory on a disk without room is a named start error, exit 1 (the
host's to put right, as a full /dev/shm is), not a traceback or an internal error. The
disk is a private 4 MiB tmpfs (tests/small_tmpfs.py): the gateway's held-events file
and ledger need more than that."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.engine_toml import one_shard_instance
from tests.small_tmpfs import in_small_tmpfs

pytestmark = pytest.mark.multiprocess


def test_a_gateway_whose_files_do_not_fit_is_a_named_start_error(
    instance: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "tradsys.toml"
    config.write_text(
        one_shard_instance(
            instance,
            data,
            sections='[gateway]\ntcp_listen = ""\n[md]\nenabled = false\n[metrics]\nlisten = ""\n',
        )
    )
    done = in_small_tmpfs(
        str(data), "4m", sys.executable, "-m", "tradsys.cli", "run", "--config", str(config)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot start the gateway: [Errno 28] cannot reserve" in done.stderr
    assert "No space left on device (is its disk full?)" in done.stderr
    assert "Traceback" not in done.stderr
