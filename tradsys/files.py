"""Whole-file replacement: a reader (a scrape, `tradsys status`, the next start) sees the
old file or the new one, never half of one.

With ``durable`` the new content is also on disk before the call returns, file and
directory entry both: after a power loss the file holds the old content or the new, not
an empty file nor the old content after a start that already acted on the new (the
gateway's epoch, a snapshot kept for instruments added).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path


def replace_file(
    path: str | Path, data: bytes, *, durable: bool = False, mode: int = 0o644
) -> None:
    """Write ``data`` to ``<path>.tmp`` and rename it over ``path``. A failure (a full
    disk, most often) leaves ``path`` as it was, removes the ``.tmp`` (on a full disk its
    blocks are what the next write needs) and is an OSError naming the file: the bare
    errno of os.write names none."""
    target = os.fspath(path)
    tmp = target + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create {tmp}: {exc.strerror}") from None
    try:
        try:
            view = memoryview(data)
            while view:  # a write may take less than all of it (a signal, a big file)
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OSError(exc.errno, f"cannot write {target}: {exc.strerror}") from None
    if durable:
        sync_directory(os.path.dirname(os.path.abspath(target)))


def sync_directory(directory: str | Path) -> None:
    """fsync a directory: a rename or a new name in it is on disk once this returns."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def reserve(fd: int, size: int, what: str, hint: str) -> None:
    """Allocate a mapped file's blocks now. Setting a size reserves nothing, and a page
    the disk (or tmpfs) has no room for is a SIGBUS at its first write, mid-order, in
    whichever process makes it; here it is an OSError naming ``what``, with ``hint``.
    A filesystem without fallocate is left as it is."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return
        raise OSError(
            exc.errno, f"cannot reserve {size} bytes for {what}: {exc.strerror} ({hint})"
        ) from None
