"""The gateway's ledger file: what a gateway process leaves for the one that replaces it.

The native core writes it as it runs (``native/gateway_ledger.c`` says how each write
stays crash-consistent): the client id of every order it sends, and per account and
symbol the position and filled notional counted from fills, each committed by the exec id
of the last trade it holds. It is a ``MAP_SHARED`` mapping of a file in the instance's
directory, so every store the dead process made is in the page cache for its successor,
whatever instruction it died at (a host crash is another matter: the engines' journals
cover the orders, not these figures).

It is kept per run of the instance: ``run_id`` is taken from the shard rings, which the
supervisor creates anew for each run, and a ledger of another run starts empty -- unless
the new run continues it, as every run continues the run before it, stopped or killed,
but one started as a new trading day (:func:`adopt_ledger`, called by the supervisor
before any gateway starts; ``tradsys run --new-day``).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from pathlib import Path
from typing import Any

from tradsys._native import ffi, lib
from tradsys.files import reserve

LEDGER_FILE = "gateway.ledger"
HELD_FILE = "gateway.held"
"""The held-events log (``native/gateway_held.c``): the events kept for accounts without a
session, mapped the same way. Unlike the ledger it is not tied to a run: an event an
account has not yet been given is still owed to it after a new ``tradsys run``."""


class LedgerFile:
    """A file of ``size`` bytes mapped shared (the ledger, or the held-events log); the
    pointer stays valid until close.

    Its blocks are allocated at once (a full disk is an error at start, not a SIGBUS on a
    later write), but no page is faulted in here: the native side does that for what the
    pump writes. For the ledger, ``ts_gateway_attach_ledger`` faults in the order slots
    (written on every order, each in the slot of its pool index: thousands of write
    faults over a run's first seconds otherwise) and each account's row of position
    cells when the account first gets a session, a restored order or a drained fill;
    the rows of accounts that never trade, most of the file, are never touched. The
    held-events log is written only when events are held."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            reserve(fd, size, str(path), "is its disk full?")
            self._map: mmap.mmap | None = mmap.mmap(fd, size, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self._buf: Any = ffi.from_buffer(self._map)
        self.size = size

    @property
    def pointer(self) -> Any:
        return self._buf

    def close(self) -> None:
        """Unmap (the file stays: it is the state a successor reads). Idempotent; only
        after the native gateway that writes it is freed."""
        if self._map is not None:
            ffi.release(self._buf)
            self._map.close()
            self._map = None


NO_RUN = 0
"""The run id of a ledger retired for a new trading day: no run's (run ids are hashes)."""


def adopt_ledger(path: Path, from_run: int, to_run: int) -> bool:
    """Make the ledger at ``path`` run ``to_run``'s if it is run ``from_run``'s (see
    ``ts_gateway_ledger_adopt``): the next run's gateway then carries it over. False if
    the file is missing, not a ledger, or another run's. Only while no gateway runs."""
    return bool(
        _with_header(
            path, lambda buf, size: lib.ts_gateway_ledger_adopt(buf, size, from_run, to_run)
        )
    )


def ledger_run(path: Path) -> int | None:
    """The run whose ledger the file at ``path`` is, or None: missing, or not a ledger."""
    return _with_header(path, lib.ts_gateway_ledger_run) or None


def _with_header(path: Path, call: Any) -> int:
    """``call(buffer, size)`` on the file's first page, mapped shared; 0 when the file is
    missing or empty."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = min(os.fstat(fd).st_size, mmap.PAGESIZE)
        if size == 0:
            return 0
        with mmap.mmap(fd, size, mmap.MAP_SHARED) as header:
            buf = ffi.from_buffer(header)
            try:
                return int(call(buf, size))
            finally:
                ffi.release(buf)
    finally:
        os.close(fd)


def run_id_of(creator_pid: int, creator_start_us: int) -> int:
    """A 64-bit name of one run of the instance, from the creator of its shard rings: a
    hash of all of both (the start carries the boot's tag in its top bits, which a shift
    would drop, and a ledger of another boot must not pass for this run's)."""
    digest = hashlib.blake2b(struct.pack("<qQ", creator_pid, creator_start_us), digest_size=8)
    return int.from_bytes(digest.digest(), "little")
