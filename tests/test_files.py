"""tradsys.files.replace_file: whole files only, all of the data, and on disk when asked."""

from __future__ import annotations

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
