"""A thread's scheduler slice (tradsys.cores.sched_slice) and [engine] sched_slice_us."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cores.test_worker import ThreadWorker, stop
from tests.cores.worker_rig import ShardRig, shard_rig
from tradsys.config import ConfigError, parse_config
from tradsys.cores.control import WorkerState
from tradsys.cores.sched_slice import set_thread_slice, thread_slice_ns
from tradsys.cores.worker import EXIT_OK


def kernel_has_custom_slices() -> bool:
    """EEVDF custom slices (sched_runtime for fair tasks) arrived in Linux 6.12."""
    major, minor = (int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    return (major, minor) >= (6, 12)


def in_a_thread(slice_ns: int) -> tuple[int, int]:
    """Set a fresh thread's slice; return (its slice after, the caller's slice)."""
    got: list[int] = []

    def body() -> None:
        set_thread_slice(slice_ns)
        got.append(thread_slice_ns())

    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    return got[0], thread_slice_ns()


def test_a_thread_gets_the_slice_it_asks_for_and_only_that_thread() -> None:
    before = thread_slice_ns()
    after, caller = in_a_thread(200_000)
    assert caller == before  # the calling thread is untouched
    if kernel_has_custom_slices():
        assert after == 200_000
    else:  # older kernels accept and ignore sched_runtime for fair tasks
        assert after == before


def test_a_slice_the_kernel_refuses_raises_with_the_reason() -> None:
    with pytest.raises(OSError, match="sched_setattr"):
        set_thread_slice(0, tid=2**31 - 1)  # no such thread


@pytest.mark.parametrize("value", [-1, 50, 100_001])
def test_sched_slice_us_outside_the_kernels_range_is_refused(value: int) -> None:
    text = f'[engine]\ninstance = "x"\nsched_slice_us = {value}\n'
    with pytest.raises(ConfigError, match=re.escape(f"engine.sched_slice_us {value}: 0")):
        parse_config(text, "t")


def test_sched_slice_us_zero_and_in_range_are_accepted() -> None:
    for value in (0, 100, 100_000):
        text = (
            f'[engine]\ninstance = "x"\nsched_slice_us = {value}\n'
            '[[shard]]\nid = 0\n[[instrument]]\nsymbol = "A"\nsymbol_id = 1\n'
        )
        assert parse_config(text, "t").engine.sched_slice_us == value


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[ShardRig]:
    yield from shard_rig(instance, tmp_path)


def test_a_shard_worker_asks_for_its_configured_slice(rig: ShardRig) -> None:
    worker = ThreadWorker(rig.spec(sched_slice_us=300))
    deadline = time.monotonic() + 10
    while rig.ctl.state != WorkerState.RUNNING:
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.001)
    tid = worker.thread.native_id
    assert tid is not None
    expected = 300_000 if kernel_has_custom_slices() else thread_slice_ns()
    assert thread_slice_ns(tid) == expected
    assert stop(rig, worker) == EXIT_OK
