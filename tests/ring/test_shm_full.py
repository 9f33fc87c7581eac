"""A /dev/shm without room for a segment (a container's default 64 MiB, a host full of
other segments) is told when the segment is made, naming /dev/shm, never as a SIGBUS in
whichever process first writes a page tmpfs cannot supply (``Segment.create``).

Each check runs in a child process with a mount namespace of its own, whose /dev/shm is a
1 MiB tmpfs: nothing of the host's /dev/shm is touched, and the namespace's tmpfs goes
with the child."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.engine_toml import one_shard_instance
from tests.small_tmpfs import in_small_tmpfs


def in_small_shm(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` where /dev/shm holds 1 MiB."""
    return in_small_tmpfs("/dev/shm", "1m", *argv)


CREATE_A_RING = """
from tradsys.ring import Ring, segment_name
try:
    Ring.create(segment_name("shmfull", "cmd", 0), slot_size=64, capacity=1 << 16,
                layout_version=1)
except OSError as exc:
    print("refused:", exc)
else:
    print("created")
"""


def test_a_ring_that_does_not_fit_is_refused_when_made() -> None:
    done = in_small_shm(sys.executable, "-c", CREATE_A_RING)
    assert done.returncode == 0, done.stderr  # no SIGBUS (-7), no traceback
    assert done.stdout.startswith("refused: [Errno 28] cannot reserve 4194816 bytes"), done.stdout
    assert "shared-memory segment /tradsys.shmfull.cmd.0" in done.stdout
    assert "is /dev/shm full?" in done.stdout


def test_run_on_a_full_dev_shm_is_a_named_start_error(tmp_path: Path) -> None:
    config = tmp_path / "tradsys.toml"
    config.write_text(
        one_shard_instance(
            "shmfull", tmp_path, sections="[gateway]\nenabled = false\n[md]\nenabled = false\n"
        ).replace("ring_capacity = 1024", "ring_capacity = 65536")
    )
    done = in_small_shm(sys.executable, "-m", "tradsys.cli", "run", "--config", str(config))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot create shared memory: cannot reserve" in done.stderr
    assert "is /dev/shm full?" in done.stderr
    assert "internal error" not in done.stderr and "worker pid" not in done.stderr
