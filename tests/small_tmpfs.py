"""Run a command where one directory is a small tmpfs of its own: a full disk or a full
/dev/shm, made in a mount namespace so that nothing of the host's is touched, and gone
with the command. Skipped where no mount namespace can be made (no CAP_SYS_ADMIN)."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest


def in_small_tmpfs(
    mountpoint: str, size: str, *argv: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with a ``size`` tmpfs (``1m``, ``4m``...) mounted on ``mountpoint``."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare(1) for a private tmpfs")
    mount = f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(mountpoint)}"
    probe = subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c", mount],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a private tmpfs here: {probe.stderr.strip()}")
    script = f'{mount} && exec "$@"'
    return subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c", script, "-", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
