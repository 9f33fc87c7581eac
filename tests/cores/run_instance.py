"""A `tradsys run` subprocess for the tests that drive the CLI as an operator does: its
output read line by line as it comes (a thread drains the pipe into a queue, so waiting
for a line is waiting on data), and a teardown that leaves no process behind."""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import psutil


class OutputLines:
    """A child's text output read line by line as it comes: a thread drains the pipe into
    a queue, so waiting for a line waits on data, never on time."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, match: Callable[[str], bool], what: str, timeout: float) -> str:
        """Read lines until one ``match``es; AssertionError naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if match(line):
                return line
        raise AssertionError(f"never saw {what}; output so far:\n{''.join(self.lines)}")

    def rest(self) -> list[str]:
        """Every line, the ones not read yet included (call once the child has ended)."""
        self._reader.join(timeout=30)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return self.lines


class RunningInstance:
    """``args``: more `tradsys run` arguments (``--new-day``); ``popen``: extra
    ``subprocess.Popen`` arguments (``start_new_session=True`` runs it
    as a terminal's foreground job, so a test can signal its whole process group)."""

    def __init__(self, config: Path, *args: str, **popen: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tradsys.cli", "run", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **popen,
        )
        assert self.proc.stdout is not None
        self.output = OutputLines(self.proc.stdout)
        self.lines = self.output.lines
        self.children: list[psutil.Process] = []

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """Read output until a line containing ``text`` (data, not time, decides)."""
        return self.output.wait_for(lambda line: text in line, repr(text), timeout)

    def ready(self) -> None:
        """Until it says it is ready; its engine processes are known from then on."""
        self.wait_for("ready;")
        self.children = psutil.Process(self.proc.pid).children(recursive=True)

    def rest(self) -> str:
        """Everything printed after the last line read (call once the process ended)."""
        return "".join(self.output.rest())

    def wait(self, timeout: float = 60.0) -> tuple[int, str]:
        """Its exit code and everything it printed."""
        code = self.proc.wait(timeout=timeout)
        return code, self.rest()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.rest()
        return code

    def kill_all(self) -> None:
        """Fixture teardown: whatever state the test left, nothing survives."""
        with contextlib.suppress(psutil.NoSuchProcess):
            self.children += psutil.Process(self.proc.pid).children(recursive=True)
        for p in self.children:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()  # also one the test stopped (SIGSTOP)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        psutil.wait_procs(self.children, timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
