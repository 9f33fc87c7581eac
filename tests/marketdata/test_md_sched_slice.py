"""The md sidecar asks for ``[engine] sched_slice_us`` for the threads on the quiet
market's path (its loop and ZeroMQ's I/O threads), as the shard workers and the pump do,
and leaves its stats writer with the kernel's default."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.cores.test_sched_slice import kernel_has_custom_slices
from tests.marketdata.md_rig import MdRig, md_config, md_rig
from tradsys.cores.sched_slice import thread_slice_ns

SLICE_US = 300


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[MdRig]:
    config = md_config(instance, tmp_path)
    engine = msgspec.structs.replace(config.engine, sched_slice_us=SLICE_US)
    yield from md_rig(msgspec.structs.replace(config, engine=engine))


def threads_of(pid: int) -> dict[int, str]:
    """{tid: name} of a running process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            out[int(tid)] = f.read().strip()
    return out


def test_the_loop_and_zeromq_threads_get_the_slice_the_stats_writer_does_not(rig: MdRig) -> None:
    """The sidecar sets the slices before it announces itself ready, which the rig
    waits for."""
    pid = rig.sidecar_pid
    default = thread_slice_ns()  # this process asked for nothing
    # older kernels accept and ignore sched_runtime for fair tasks
    wanted = SLICE_US * 1000 if kernel_has_custom_slices() else default
    got = {tid: (name, thread_slice_ns(tid)) for tid, name in threads_of(pid).items()}
    io = {tid: s for tid, (name, s) in got.items() if name.startswith("ZMQbg/IO")}
    others = {name: s for tid, (name, s) in got.items() if tid != pid and tid not in io}
    assert got[pid][1] == wanted
    assert io and set(io.values()) == {wanted}
    assert others, "the sidecar runs other threads (its stats writer, ZeroMQ's reaper)"
    assert set(others.values()) == {default}, others
