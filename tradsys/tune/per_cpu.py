"""Run one measurement on several CPUs at the same time, a thread each.

The probes' C calls release the GIL, so the threads run truly in parallel; measuring
every CPU at once is the point (they then have no idle time to lend one another, as
under load, and a stall of the whole machine shows on all of them together)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def on_each_cpu(cpus: Iterable[int], measure: Callable[[int], T], name: str) -> list[T]:
    """``measure(cpu)`` for every CPU at once; results in CPU order. The first error a
    thread raised is raised here, after every thread has ended."""
    wanted = sorted(set(cpus))
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(cpu: int) -> None:
        try:
            results[cpu] = measure(cpu)
        except BaseException as exc:  # re-raised on the caller's thread
            errors.append(exc)

    # daemons: a probe is one C call that cannot be stopped, so on Ctrl-C (raised in join
    # below) the process exits at once instead of waiting out the probes' --seconds
    threads = [
        threading.Thread(target=run, args=(c,), name=f"{name}-{c}", daemon=True) for c in wanted
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [results[c] for c in wanted]
