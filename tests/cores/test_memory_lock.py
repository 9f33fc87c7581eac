"""Locking engine processes' memory (tradsys.cores.memory_lock, [engine] lock_memory).

mlockall with MCL_FUTURE changes a process for good, so the locking itself is only ever
tried in child processes, never in pytest's own. Where this host lets a process lock all
of its memory (root: CAP_IPC_LOCK), the tests check the kernel's VmLck of each engine
process; where it does not, that the refusal names the limit and the way out."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.engine_toml import one_shard_instance
from tradsys.config import parse_config
from tradsys.cores.memory_lock import _has_cap_ipc_lock, locked_kib, why_not_lockable
from tradsys.cores.sidecar import read_announcement
from tradsys.cores.supervisor import Supervisor, SupervisorError
from tradsys.ring.segment import instance_segments


def in_a_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def config_text(instance: str, data_dir: Path, lock: bool) -> str:
    return one_shard_instance(
        instance,
        data_dir,
        f"lock_memory = {str(lock).lower()}",
        f'''[journal]
durability = "none"
[gateway]
tcp_listen = ""
[md]
publish = ["ipc://{data_dir}/md-pub"]
snapshot = "ipc://{data_dir}/md-snap"''',
    )


def test_capability_bits_are_read_from_the_status_file(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000004000\n")  # bit 14: CAP_IPC_LOCK
    assert _has_cap_ipc_lock(status)
    status.write_text("Name:\tx\nCapEff:\t0000000000003fff\n")
    assert not _has_cap_ipc_lock(status)
    assert not _has_cap_ipc_lock(tmp_path / "missing")


def test_a_process_that_locks_has_its_pages_locked_and_only_those_it_touched() -> None:
    done = in_a_child(
        """
        import mmap
        from tradsys.cores.memory_lock import lock_memory, locked_kib, why_not_lockable
        if why_not_lockable() is not None:
            print("refused", why_not_lockable()); raise SystemExit(0)
        lock_memory()
        before = locked_kib()
        untouched = mmap.mmap(-1, 256 << 20)  # reserved after the lock, never touched
        after_reserve = locked_kib()
        touched = bytearray(64 << 20)  # written: faulted in, so locked (MCL_FUTURE)
        print("locked", before, after_reserve, locked_kib())
        """
    )
    assert done.returncode == 0, done.stderr
    word, *rest = done.stdout.split()
    if word == "refused":
        assert "RLIMIT_MEMLOCK" in done.stdout
        return
    before, after_reserve, after_touch = (int(x) for x in rest)
    assert before > 0
    assert after_reserve - before < 16 << 10  # MCL_ONFAULT: a reservation costs nothing
    assert after_touch - after_reserve >= 60 << 10  # the 64 MiB it wrote is locked


def test_a_process_under_a_small_memlock_limit_refuses_before_locking() -> None:
    done = in_a_child(
        """
        import resource
        import tradsys.cores.memory_lock as m
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 << 10, 64 << 10))
        m._has_cap_ipc_lock = lambda *a: False  # as an unprivileged user
        try:
            m.lock_memory()
        except m.MemoryLockError as exc:
            print(exc.strerror, "|", m.locked_kib())
        """
    )
    assert done.returncode == 0, done.stderr
    message, locked = done.stdout.rsplit("|", 1)
    assert "RLIMIT_MEMLOCK is 64 KiB" in message and "LimitMEMLOCK=infinity" in message
    assert int(locked) == 0  # nothing was locked on the way to the refusal


def test_an_instance_asked_to_lock_has_every_engine_process_locked(
    instance: str, tmp_path: Path
) -> None:
    config = parse_config(config_text(instance, tmp_path, True), "t")
    sup = Supervisor(config, log=lambda line: None)
    if why_not_lockable() is not None:
        with pytest.raises(SupervisorError, match=re.escape("engine.lock_memory = true, but")):
            sup.start()
        assert instance_segments(instance) == []
        return
    try:
        sup.start()
        for name in ("gateway", "md"):  # each locks itself before it announces readiness
            assert read_announcement(config, name) is not None
        pids = {f"shard {sp.spec.shard_id}": sp.process.pid for sp in sup.shards if sp.process}
        pids.update({sc.name: sc.process.pid for sc in sup.sidecars if sc.process})
        assert set(pids) == {"shard 0", "gateway", "md"}
        assert {name: locked_kib(pid) > 0 for name, pid in pids.items()} == dict.fromkeys(
            pids, True
        )
    finally:
        sup.stop()


def test_an_instance_not_asked_to_lock_locks_nothing(instance: str, tmp_path: Path) -> None:
    config = parse_config(config_text(instance, tmp_path, False), "t")
    with Supervisor(config, log=lambda line: None) as sup:
        for name in ("gateway", "md"):
            assert read_announcement(config, name) is not None
        pids = [sp.process.pid for sp in sup.shards if sp.process]
        pids += [sc.process.pid for sc in sup.sidecars if sc.process]
        assert len(pids) == 3
        assert [locked_kib(pid) for pid in pids] == [0, 0, 0]
