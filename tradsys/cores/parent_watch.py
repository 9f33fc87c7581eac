"""An engine process stops, cleanly, when the supervisor that started it dies.

Without this a supervisor killed by SIGKILL or the OOM killer left its shard workers,
gateway and md sidecar running with nobody to restart them, still holding the journals
and the ports; and the next ``tradsys run`` found the dead supervisor's ring segments
("stale": their creator is gone), removed them under the running orphans, and then
refused to start because the orphans' control blocks were still there.

Each engine process asks the kernel for SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``) once its SIGTERM handler is in place, so it stops exactly as
``tradsys stop`` would stop it: a worker drains its commands, syncs its journal and
snapshots; the gateway keeps what it holds for the accounts; md publishes what is left.
The next ``tradsys run`` then starts from those files as after any clean stop.

The supervisor names itself in the environment (``TRADSYS_SUPERVISOR_PID``); a child
whose parent is already someone else by the time it asks (the supervisor died between
the fork and the request) stops at once. The kernel sends the signal when the *thread*
that started the child ends: a Supervisor run from a thread must outlive its children
(``Supervisor.stop`` before the thread returns), as ``tradsys run`` does on its main
thread.
"""

from __future__ import annotations

import ctypes
import os
import signal

ENV = "TRADSYS_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""What asks an engine process for its clean stop. SIGHUP too: a supervisor killed while
the instance was suspended (Ctrl-Z, then ``kill -9``) leaves a stopped process group with
no parent, and the kernel sends each member SIGHUP and SIGCONT -- by default SIGHUP would
kill a worker mid-batch, with no final snapshot and its segments left behind."""

_libc = ctypes.CDLL(None, use_errno=True)


# numpy's BLAS (OpenBLAS) starts a thread per CPU at import, before a worker pins itself:
# idle threads of an engine process left on every core, the isolated ones included
# (audit W). No engine process does linear algebra.
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def supervisor_env() -> dict[str, str]:
    """The environment a supervisor gives the processes it starts."""
    return {**os.environ, **ONE_BLAS_THREAD, ENV: str(os.getpid())}


def stop_with_supervisor() -> bool:
    """Have SIGTERM sent to this process when its supervisor dies (call once the SIGTERM
    handler is installed). False when no supervisor started this process (run by hand,
    or by a test) and nothing was asked."""
    expected = os.environ.get(ENV)
    if not expected:
        return False
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != int(expected):  # it died before the request: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)
    return True
