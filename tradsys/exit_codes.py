"""The exit codes every TradSys command and engine process uses (CONVENTIONS, "Errors"):
a supervisor, a shell script or CI tells from the code alone whose the failure is."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USER_ERROR = 1
"""Something the user can put right: a bad config or argument, a host that refuses what
the config asks (a busy port, /dev/shm full); the message says what."""
EXIT_INTERNAL = 2
"""A failure of ours: a crash, a process that did not come up, a stop that was not clean."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (the shell's own 128 + SIGINT): nobody's failure, and what the command
started is stopped and cleaned up before it exits."""
