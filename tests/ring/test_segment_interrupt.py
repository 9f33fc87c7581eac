"""Ctrl-C while a segment is being made: the segment is unlinked, never left behind
(`tradsys selfcheck` left one about every other Ctrl-C: the KeyboardInterrupt came as
posix_ipc's call returned, before the new handle reached the cleanup)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import posix_ipc
import pytest

from tradsys.interrupts import interrupts_deferred
from tradsys.ring import instance_segments, segment_name
from tradsys.ring.segment import Segment


def test_a_ctrl_c_as_the_segment_is_made_leaves_no_segment(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = posix_ipc.SharedMemory

    def made_then_interrupted(*args: Any, **kw: Any) -> Any:
        shm = made(*args, **kw)
        os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode: here
        return shm

    monkeypatch.setattr(posix_ipc, "SharedMemory", made_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        Segment.create(segment_name(instance, "interrupted"), 4096)
    assert instance_segments(instance) == []


def test_a_deferred_interrupt_is_raised_once_the_block_is_done() -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        steps.append("after the signal")
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_an_interrupt_the_handler_is_back_and_nothing_is_raised() -> None:
    with interrupts_deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_off_the_main_thread_it_changes_nothing() -> None:
    seen: list[object] = []

    def run() -> None:
        with interrupts_deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [signal.default_int_handler]
