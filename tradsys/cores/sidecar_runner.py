"""The supervisor's side of the sidecar contract (see :mod:`tradsys.cores.sidecar`): start a
sidecar, wait for its announcement, notice its death, restart it with back-off, stop it.

Kept apart from the shard-worker handling because a sidecar holds no journal: restarting
one is starting it again, and stopping one is a SIGTERM and a wait. What a restart keeps
is where it serves: the endpoints its first process announced are handed to every
restarted one (``KEPT_ENDPOINTS_ENV``), so a port that was "any free port" stays the same
for the clients that know it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradsys.config import Config
from tradsys.cores.liveness import ENV as BEAT_FD_ENV
from tradsys.cores.liveness import BeatPipe
from tradsys.cores.md_endpoints import made_ipc_paths, remove_sockets
from tradsys.cores.parent_watch import supervisor_env
from tradsys.cores.sidecar import (
    KEPT_ENDPOINTS_ENV,
    announced_endpoints,
    read_announcement,
    status_path,
)

Log = Callable[[str], None]


class SidecarError(Exception):
    """A sidecar did not come up; the message says which and why, ``exit_code`` whose it
    is to put right (see :class:`tradsys.cores.supervisor.SupervisorError`)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class SidecarProcess:
    """One sidecar (``name`` is ``gateway`` or ``md``) and its current process."""

    name: str
    module: str
    config: Config
    config_path: Path
    python: str
    core: int | None = None
    process: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 0.05
    restart_due: float | None = None
    # the endpoints the first process announced, for the restarted ones to bind again
    # (None until an announcement was read)
    first_endpoints: dict[str, Any] | None = None
    # the current process's sign of life (tradsys.cores.liveness)
    beats: BeatPipe | None = None

    def spawn(self, log: Log) -> None:
        # an announcement left by a killed predecessor must not pass for this one's
        status_path(self.config, self.name).unlink(missing_ok=True)
        cmd = [self.python, "-m", self.module, str(self.config_path)]
        env = supervisor_env()
        if self.first_endpoints:
            env[KEPT_ENDPOINTS_ENV] = json.dumps(self.first_endpoints)
        if self.beats is not None:
            self.beats.close()
        self.beats = BeatPipe()
        env[BEAT_FD_ENV] = str(self.beats.write_fd)
        # a process group of its own, like the workers: only the supervisor gets a
        # terminal's Ctrl-C, and it stops the gateway first and md last (see
        # tradsys.cores.supervisor, also for why not a session)
        try:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                env=env,
                process_group=0,
                pass_fds=(self.beats.write_fd,),
            )
        finally:
            self.beats.child_started()
        self.pidfd = os.pidfd_open(self.process.pid)
        self.started_at = time.monotonic()
        self.restart_due = None
        if self.core is not None:
            import psutil

            psutil.Process(self.process.pid).cpu_affinity([self.core])
        where = "any core" if self.core is None else f"core {self.core}"
        log(f"{self.name} pid {self.process.pid} on {where}")

    def announcement(self) -> dict[str, object] | None:
        """What the current process announced (a stale file of another pid is not it)."""
        doc = read_announcement(self.config, self.name)
        if doc is None or self.process is None or doc.get("pid") != self.process.pid:
            return None
        if self.first_endpoints is None:
            self.first_endpoints = announced_endpoints(doc)
        return doc

    def wait_ready(
        self, timeout_s: float, stopping: Callable[[], bool] = lambda: False
    ) -> dict[str, object]:
        """Its announcement, once it made one; SidecarError if it exits first, is not
        ready in ``timeout_s`` or ``stopping()`` says the start is called off."""
        deadline = time.monotonic() + timeout_s
        while True:
            doc = self.announcement()
            if doc is not None:
                return doc
            if stopping():
                raise SidecarError(f"stopped while {self.name} was starting (SIGINT or SIGTERM)")
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                raise SidecarError(
                    f"{self.name} exited with code {code} while starting; its log above says why",
                    1 if code == 1 else 2,  # 1: it refused the config and said why
                )
            if time.monotonic() > deadline:
                raise SidecarError(f"{self.name} not ready after {timeout_s:.0f} s", 2)
            time.sleep(0.005)  # start-up only: an interpreter start dwarfs this poll

    def check(
        self, now: float, log: Log, warn: Log, stable_after_s: float, backoff_cap_s: float
    ) -> bool:
        """Restart a dead sidecar when its back-off is over; True if something changed.
        Its death goes to ``warn`` (an operator alerts on it), its restart to ``log``."""
        if self.process is None:
            if self.restart_due is not None and now >= self.restart_due:
                self.spawn(log)
                return True
            return False
        code = self.process.poll()
        if code is None:
            code = self._kill_if_hung(now, warn)
            if code is None:
                return False
        self._forget_process()
        if now - self.started_at > stable_after_s:
            self.backoff_s = 0.05
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        warn(f"{self.name} died ({how}); restarting in {self.backoff_s:.2f} s")
        self.restarts += 1
        self.restart_due = now + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, backoff_cap_s)
        return True

    def _kill_if_hung(self, now: float, warn: Log) -> int | None:
        """Kill a sidecar that beat once and has not for ``engine.heartbeat_timeout_ms``;
        its exit code, or None if it lives. One that never beat is starting (a gateway
        rebuilding its orders waits up to 30 s for the workers, and exits if they do not
        answer): not judged."""
        assert self.process is not None and self.beats is not None
        self.beats.read(now)
        if self.beats.last is None:
            return None
        silent = now - self.beats.last
        if silent * 1000 <= self.config.engine.heartbeat_timeout_ms:
            return None
        warn(
            f"{self.name} pid {self.process.pid} has given no sign of life for {silent:.1f} s "
            "(engine.heartbeat_timeout_ms): hung or stopped; killing it"
        )
        self.process.kill()
        return self.process.wait()

    def forgive_silence(self, now: float) -> None:
        """After the whole instance was suspended (Ctrl-Z): its silence meanwhile was the
        supervisor's doing."""
        if self.beats is not None and self.beats.last is not None:
            self.beats.last = now

    def stop(self, timeout_s: float, warn: Log) -> list[str]:
        """SIGTERM, wait, SIGKILL if it will not go. Idempotent. Returns what went wrong
        (it was killed, or exited non-zero) for the supervisor's stop report, or [], and
        says each to ``warn`` as it happens."""
        self.restart_due = None
        proc = self.process
        if proc is None:
            self._remove_made_sockets()
            return []
        if proc.poll() is None:
            # a process still starting (a restart) has no SIGTERM handler yet, and would die
            # of the signal with nothing done: let it come up first (md then publishes
            # what the workers emit as they stop)
            self._wait_started(proc, timeout_s)
            proc.send_signal(signal.SIGTERM)
        failures = []
        try:
            code = proc.wait(timeout=timeout_s)
            if code != 0:
                warn(f"{self.name} exited with {code}")
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                failures.append(f"{self.name} stopped with {how}")
        except subprocess.TimeoutExpired:
            warn(f"{self.name} did not stop in time; killing it")
            proc.kill()
            proc.wait()
            failures.append(f"{self.name} did not stop within {timeout_s:g} s and was killed")
        self._forget_process()
        status_path(self.config, self.name).unlink(missing_ok=True)
        self._remove_made_sockets()
        return failures

    def _wait_started(self, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        """Until the process has announced itself (or exited, or ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while self.announcement() is None and proc.poll() is None:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)  # a stop during a restart only

    def _remove_made_sockets(self) -> None:
        """The md sidecar removes the ipc sockets it made for ``ipc://*`` as it stops; one
        killed, or dead and waiting for its restart, could not."""
        if self.name != "md" or not self.first_endpoints:
            return
        md = self.config.md
        configured: dict[str, Any] = {"publish": list(md.publish), "snapshot": md.snapshot}
        if md.conflated_bbo:
            configured["conflated_bbo"] = md.conflated_bbo
        remove_sockets(made_ipc_paths(configured, self.first_endpoints))

    def _forget_process(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if self.beats is not None:
            self.beats.close()
            self.beats = None
        self.process = None
