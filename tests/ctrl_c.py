"""Ctrl-C as a terminal delivers it: a SIGINT to the whole foreground process group, sent
once the command has said it is under way (data decides when, not a sleep)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from typing import Literal


def ctrl_c(
    cmd: Sequence[str],
    stream: Literal["stdout", "stderr"],
    ready: Callable[[str], bool],
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, str, str]:
    """Run ``cmd`` in a session of its own, read ``stream`` until a line for which
    ``ready`` holds, interrupt the group; return (exit code, stdout, stderr) of what
    followed. A group that has not ended in ``timeout`` fails the test with the Python
    stacks of its processes where they hung (SIGABRT, to which ``PYTHONFAULTHANDLER``
    answers with them), then is killed."""
    env = {**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        lines = proc.stdout if stream == "stdout" else proc.stderr
        assert lines is not None
        seen = []
        for line in lines:
            seen.append(line)
            if ready(line):
                break
        else:
            raise AssertionError(f"{cmd[-1]!r} ended before it was under way: {seen}")
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
            raise AssertionError(
                f"{' '.join(cmd)} still ran {timeout:g} s after Ctrl-C; it said:\n{out}\n{err}"
            ) from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out, err
