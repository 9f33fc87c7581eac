"""tradsys.files.replace_file: whole files only, all of the data, and on disk when asked."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from tradsys import files


def test_the_new_content_replaces_the_old_and_no_temporary_is_left(tmp_path: Path) -> None:
    target = tmp_path / "epoch"
    target.write_text("7\n")
    files.replace_file(target, b"8\n")
    assert target.read_bytes() == b"8\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch"]


def test_a_write_that_takes_part_of_the_data_is_continued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.write may write less than it is given; the old loop-less writes kept a prefix."""
    real_write = os.write
    monkeypatch.setattr(files.os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    data = bytes(range(256)) * 4
    files.replace_file(tmp_path / "image", data)
    assert (tmp_path / "image").read_bytes() == data


def test_durable_syncs_the_file_then_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    files.replace_file(tmp_path / "plain", b"x")
    assert synced == []
    files.replace_file(tmp_path / "kept", b"x", durable=True, mode=0o600)
    assert synced == ["file", "dir"]
    assert stat.S_IMODE((tmp_path / "kept").stat().st_mode) == 0o600


def test_a_failed_write_names_the_file_keeps_the_old_and_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: os.write's bare errno named no file, and the .tmp took the room the
    next write needed."""
    target = tmp_path / "supervisor.json"
    target.write_text("old")

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "write", full)
    with pytest.raises(OSError, match=f"cannot write {target}: No space left on device") as info:
        files.replace_file(target, b"new")
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["supervisor.json"]


def test_a_directory_that_cannot_take_the_temporary_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"cannot create {tmp_path}/gone/x.tmp"):
        files.replace_file(tmp_path / "gone" / "x", b"data")
