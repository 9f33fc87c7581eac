"""A stand-in gateway that, while it starts, kills the instance's shard worker (as an
operator's or the OOM killer's SIGKILL might) and then never announces itself. It dies
with its parent (a SIGKILL asked of the kernel)."""

import ctypes
import os
import signal
import sys
import threading

import psutil

from tradsys.cores.parent_watch import ENV, PR_SET_PDEATHSIG


def run() -> int:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != int(os.environ[ENV]):  # the parent died before the request
        return 1
    for sibling in psutil.Process(os.getppid()).children():
        if "tradsys.cores.worker" in " ".join(sibling.cmdline()):
            sibling.kill()
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(run())
