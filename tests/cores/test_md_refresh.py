"""The worker's market-data refresh (worker.h): on the md sidecar's request, each
symbol's whole L2 book goes into the md ring, valid at the symbol's current L2 seq —
without changing the engine, the journal or the exactly-once md bookkeeping, also when
the worker is killed with SIGKILL while refreshes are being asked for."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import Children
from tests.cores.test_worker import ThreadWorker, feed, stop, wait_for
from tests.cores.worker_rig import (
    SHARD,
    ShardRig,
    reference_output,
    shard_rig,
    spec_json,
    worker_child,
)
from tradsys.cores.worker import EXIT_OK
from tradsys.journal import replay
from tradsys.matching.workload import mixed_stream
from tradsys.wire import MD_DTYPE, MdKind

REFRESH_KINDS = [MdKind.L2_REFRESH_BEGIN, MdKind.L2_REFRESH_LEVEL, MdKind.L2_REFRESH_END]
Book = dict[tuple[int, int], tuple[int, int]]  # (side, price) -> (qty, count)


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[ShardRig]:
    yield from shard_rig(instance, tmp_path)


def engine_md_only(md: np.ndarray) -> np.ndarray:
    """The engine's records, bytes and all: masking the structured dtype itself would copy
    only the named fields and leave the padding bytes of the copy uninitialised."""
    keep = ~np.isin(md["kind"], REFRESH_KINDS)
    return md.view(np.uint8).reshape(len(md), 64)[keep].reshape(-1).view(MD_DTYPE)


def assert_same_md(got: np.ndarray, want: np.ndarray) -> None:
    """Byte-equal record streams; on a difference, name the first record that differs."""
    if got.tobytes() == want.tobytes():
        return
    n = min(len(got), len(want))
    diff = np.flatnonzero(
        got[:n].view(np.uint8).reshape(n, 64) != want[:n].view(np.uint8).reshape(n, 64)
    )
    first = int(diff[0]) // 64 if len(diff) else n
    raise AssertionError(
        f"md differs: {len(got)} records vs {len(want)}; first difference at record {first}: "
        f"got {got[first : first + 1]!r} want {want[first : first + 1]!r}"
    )


def check_images(md: np.ndarray) -> int:
    """Walk the md stream keeping each symbol's book from its L2 updates; every refresh
    image must equal that book at that point, with the last L2 seq seen. Returns the
    number of complete images checked (a cut one, from a killed worker, is skipped)."""
    books: dict[int, Book] = {}
    l2_seq: dict[int, int] = {}
    image: Book | None = None
    checked = 0
    for rec in md:
        kind, sym = int(rec["kind"]), int(rec["symbol_id"])
        if kind == MdKind.L2_UPDATE:
            image = None  # a refresh cut short by a crash: the next one starts over
            book = books.setdefault(sym, {})
            key = (int(rec["side"]), int(rec["price"]))
            if rec["quantity"] == 0 and rec["order_count"] == 0:
                book.pop(key, None)
            else:
                book[key] = (int(rec["quantity"]), int(rec["order_count"]))
            l2_seq[sym] = int(rec["seq"])
        elif kind == MdKind.L2_REFRESH_BEGIN:
            image = {}
            assert int(rec["seq"]) == l2_seq.get(sym, 0)
        elif kind == MdKind.L2_REFRESH_LEVEL and image is not None:
            image[(int(rec["side"]), int(rec["price"]))] = (
                int(rec["quantity"]),
                int(rec["order_count"]),
            )
        elif kind == MdKind.L2_REFRESH_END and image is not None:
            assert int(rec["quantity"]) == len(image)
            assert image == books.get(sym, {}), f"symbol {sym}: image differs from the stream"
            checked += 1
            image = None
    return checked


def test_a_refresh_is_the_book_the_l2_stream_built(rig: ShardRig) -> None:
    commands = mixed_stream(8_000, seed=31)
    engine, events, md = reference_output(commands)
    worker = ThreadWorker(rig.spec(durability="group"))
    feed(rig, commands[:5000], 1)
    served = rig.ctl.request_md_refresh()
    rig.wake()
    assert wait_for(lambda: rig.ctl.md_refreshes_served == served)
    feed(rig, commands[5000:], len(events))
    assert stop(rig, worker) == EXIT_OK
    got = rig.received_md()
    assert_same_md(engine_md_only(got), md)  # the engine's md is untouched
    n_symbols = len(set(md["symbol_id"].tolist()))
    assert check_images(got) == n_symbols
    refresh = got[np.isin(got["kind"], REFRESH_KINDS)]
    assert rig.ctl.md_refresh_records == len(refresh)
    # the refresh is counted with every other push: a consumer that took all of the ring
    # (the md sidecar's drained records) never seems to have taken more than was pushed
    assert rig.ctl.md_out == len(got) and rig.ctl.events_out == len(events)
    # the image came from the engine's depth at that point: bids best first
    begin = refresh[refresh["kind"] == MdKind.L2_REFRESH_BEGIN]
    assert begin["symbol_id"].tolist() == sorted(begin["symbol_id"].tolist())
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()


def test_a_refresh_requested_while_no_worker_runs_is_served_by_the_next(
    rig: ShardRig,
) -> None:
    commands = mixed_stream(3_000, seed=32)
    _, events, md = reference_output(commands)
    worker = ThreadWorker(rig.spec())
    feed(rig, commands, len(events))
    assert stop(rig, worker) == EXIT_OK
    served = rig.ctl.request_md_refresh()
    rig.ctl.clear_stop()
    worker = ThreadWorker(rig.spec())
    assert wait_for(lambda: rig.ctl.md_refreshes_served == served)
    assert stop(rig, worker) == EXIT_OK
    got = rig.received_md()
    assert_same_md(engine_md_only(got), md)
    assert check_images(got) == len(set(md["symbol_id"].tolist()))
    assert rig.ctl.md_out == len(got)  # two workers' pushes, the refresh among them


@pytest.mark.multiprocess
def test_kill_9_during_refreshes_keeps_md_exactly_once(rig: ShardRig, children: Children) -> None:
    rng = random.Random(20261126)
    commands = mixed_stream(30_000, seed=33)
    engine, events, md = reference_output(commands)
    spec = spec_json(rig.spec(durability="none", snapshot_every=2_000, wait="spin-yield"))
    pushed = 0
    deadline = time.monotonic() + 60
    for incarnation in range(7):
        proc = children.start(worker_child, spec)
        target = min(len(events), rig.n_events + rng.randint(0, 6000))
        while rig.n_events < target or (incarnation == 6 and rig.n_events < len(events)):
            assert time.monotonic() < deadline, f"stuck at {rig.n_events} events"
            if pushed < len(commands):
                pushed += rig.push(commands[pushed : pushed + rng.randint(1, 700)])
            if rng.random() < 0.05:
                rig.ctl.request_md_refresh()
            rig.collect(wait_s=0.002)
            assert proc.exitcode is None
        if incarnation < 6:
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(30)
    served = rig.ctl.request_md_refresh()
    assert wait_for(lambda: rig.ctl.md_refreshes_served == served)
    rig.ctl.request_stop()
    rig.wake()
    proc.join(30)
    assert proc.exitcode == 0
    rig.collect()
    got = rig.received_md()
    assert_same_md(engine_md_only(got), md)  # nothing lost or repeated
    assert check_images(got) >= 1
    assert replay(rig.data_dir, SHARD).digest() == engine.digest()
