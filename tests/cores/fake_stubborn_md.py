"""A stand-in md sidecar that will not stop: it announces itself, then ignores SIGTERM and
SIGINT, so the supervisor's stop has to kill it. It dies with its parent (a SIGKILL asked
of the kernel), so a test that fails half way cannot leave it behind."""

import ctypes
import os
import signal
import sys
import threading

from tradsys.cores.parent_watch import ENV, PR_SET_PDEATHSIG
from tradsys.cores.sidecar import announce_ready, read_effective_config


def run() -> int:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != int(os.environ[ENV]):  # the parent died before the request
        return 1
    announce_ready(read_effective_config(sys.argv[1]), "md", endpoint="fake://md")
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(run())
