"""A sidecar's sign of life, for the supervisor: a byte through a pipe from its main loop.

A worker beats in its control block, which the supervisor reads. A sidecar (the gateway,
the md sidecar) had nothing of the kind: one that hung -- stopped by a stray SIGSTOP,
deadlocked, stuck in a syscall -- was alive to ``waitpid`` and so never restarted. A hung
gateway leaves every client without an answer and without an error; a hung md sidecar
stops draining the md rings, and once they are full the workers, which never drop a
record, stop matching.

So each sidecar writes one byte to a pipe the supervisor gave it, from the loop whose
progress matters (the gateway's event loop, the md publishing loop), every quarter of
``engine.heartbeat_timeout_ms``; the supervisor reads the pipe each time it checks its
processes, and kills (then restarts, as after any death) a sidecar that has announced
itself and not beaten for the timeout. A restarted gateway loses nothing held
(``tradsys.gateway.recovery``); a restarted md sidecar starts from a refresh.

A pipe rather than shared memory: no segment to create, name and reclaim, and a beat
needs no clock agreement. Writes never block (a supervisor stopped for hours fills the
pipe: beats are dropped, and the supervisor, continued, drains what is there), and a
supervisor that died leaves EPIPE, which is ignored: ``parent_watch`` stops the sidecar.
"""

from __future__ import annotations

import contextlib
import os
import time

ENV = "TRADSYS_BEAT_FD"


class BeatPipe:
    """The supervisor's end: made before a sidecar is spawned, read while it runs."""

    def __init__(self) -> None:
        self._read, self.write_fd = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self.write_fd, False)
        self.last: float | None = None  # monotonic time of the last beat read; None: none yet

    def child_started(self) -> None:
        """Close the supervisor's copy of the write end (the child has its own)."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def read(self, now: float) -> None:
        """Take every beat waiting; a beat found sets ``last`` to ``now``."""
        got = False
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                got = True
        if got:
            self.last = now

    def close(self) -> None:
        self.child_started()
        if self._read >= 0:
            os.close(self._read)
            self._read = -1


class Beater:
    """The sidecar's end: ``maybe_beat`` from its loop, at most one write per interval."""

    def __init__(self, interval_s: float) -> None:
        value = os.environ.get(ENV)
        self._fd = int(value) if value else -1  # not started by a supervisor: no beats
        self.interval_s = interval_s
        self._next = 0.0

    def maybe_beat(self, now: float | None = None) -> None:
        if self._fd < 0:
            return
        now = time.monotonic() if now is None else now
        if now < self._next:
            return
        self._next = now + self.interval_s
        try:
            os.write(self._fd, b".")
        except BlockingIOError:  # the supervisor is stopped and its pipe full: it knows
            pass
        except OSError:  # the supervisor is gone (EPIPE): parent_watch stops this process
            os.close(self._fd)
            self._fd = -1


def beat_interval_s(heartbeat_timeout_ms: int) -> float:
    """A quarter of the timeout: three beats may be late before one is missed."""
    return heartbeat_timeout_ms / 4000
