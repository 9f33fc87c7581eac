"""The e2e bench's instruction-count probe runs the gateway's real TCP session code over
stand-ins (a core that routes nothing, a transport that drops what it is given): a change
to what TcpSession asks of its transport or core must keep the probe running, or the full
bench loses its only exact figures (CI runs the benches with --quick, which skips it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).resolve().parents[2] / "perf" / "_gateway_probe.py"


def test_the_probe_runs_the_tcp_session_path_to_its_end(instance: str) -> None:
    done = subprocess.run(
        [sys.executable, str(PROBE), instance, "20"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
