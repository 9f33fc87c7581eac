"""The exit codes every TradSys command and engine process uses (CONVENTIONS, "Errors"):
a supervisor, a shell script or CI tells from the code alone whose the failure is."""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_USER_ERROR = 1
"""Something the user can put right: a bad config or argument, a host that refuses what
the config asks (a busy port, /dev/shm full); the message says what."""
EXIT_INTERNAL = 2
"""A failure of ours: a crash, a process that did not come up, a stop that was not clean."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (the shell's own 128 + SIGINT): nobody's failure, and what the command
started is stopped and cleaned up before it exits."""

HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
"""OS errors that are the host's to put right (a disk full, read-only or not ours), as a
full /dev/shm is: a process failing on one exits EXIT_USER_ERROR."""


def exit_code_for(sys_errno: int | None) -> int:
    """EXIT_USER_ERROR for an OS error the host's operator can put right, else EXIT_INTERNAL."""
    return EXIT_USER_ERROR if sys_errno in HOST_ERRNOS else EXIT_INTERNAL
