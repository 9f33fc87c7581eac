"""The market-data sidecar: drains every shard's ``md`` ring and publishes it on ZeroMQ.

``python -m tradsys.cores.md <instance_dir>/config.json`` (the contract of
``tradsys.cores.sidecar``). This module is the process: it reads the config, places and
starts :class:`MdSidecar`, announces its endpoints and runs it until SIGTERM. The parts:

- :mod:`tradsys.cores.md_sidecar` — the sidecar's state and its publishing loop (the
  batch path and the quiet market's scalar path);
- :mod:`tradsys.cores.md_snapshots` — the snapshot service on the ROUTER socket;
- :mod:`tradsys.cores.md_heartbeat` and :mod:`tradsys.cores.md_board` — the heartbeat
  and the conflated BBO board;
- :mod:`tradsys.cores.md_shards` — each shard's md ring and control block, and the
  market-data refresh requests;
- :mod:`tradsys.cores.md_endpoints` — binding the configured endpoints (a restart binds
  the ports of the first start);
- :mod:`tradsys.cores.md_thread_slices` — short scheduler slices for its threads.

At start (and after a crash, when it is restarted) it knows none of the books the
workers hold, so it asks each worker for a market-data refresh through its control
block (native/worker.h); snapshot requests for a symbol wait until its image arrives,
and its row of the conflated BBO board is filled from the image's book.
Slow subscribers never slow it: the PUB socket drops a subscriber's messages past the
high-water mark (``[md] sndhwm``), and that subscriber recovers by snapshot.
"""

from __future__ import annotations

import gc
import logging
import os
import sys

import psutil
import zmq

from tradsys import logs
from tradsys.config import Config, ConfigError
from tradsys.cores.md_endpoints import EndpointError, bind_endpoint
from tradsys.cores.md_shards import ShardFeed
from tradsys.cores.md_sidecar import SMALL_BATCH, MdSidecar
from tradsys.cores.md_snapshots import REQUESTS_PER_TURN
from tradsys.cores.md_thread_slices import short_slices
from tradsys.cores.memory_lock import lock_if_asked
from tradsys.cores.parent_watch import stop_with_supervisor
from tradsys.cores.sidecar import (
    announce_ready,
    kept_endpoints,
    read_effective_config,
    stop_event,
    withdraw,
)
from tradsys.marketdata.placement import io_thread_cpus
from tradsys.marketdata.stats import remove_stats
from tradsys.ring import WaitStrategy
from tradsys.ring.errors import RingError

# what code outside the process imports from here (tests, perf/md_bench.py)
__all__ = [
    "REQUESTS_PER_TURN",
    "SMALL_BATCH",
    "MdSidecar",
    "ShardFeed",
    "bind_endpoint",
    "main",
    "run_md",
]

from tradsys.exit_codes import EXIT_INTERNAL as EXIT_FAILURE
from tradsys.exit_codes import EXIT_OK, EXIT_USER_ERROR

log = logging.getLogger("tradsys.md")


def run_md(config: Config) -> int:
    """The body of the sidecar process; returns its exit code."""
    stop = stop_event()
    stop_with_supervisor()  # the supervisor's death is a SIGTERM too
    allowed = set(psutil.Process().cpu_affinity() or ())
    if config.md.core is not None:
        psutil.Process().cpu_affinity([config.md.core])
    wait = WaitStrategy.named(config.engine.wait)
    sidecar = MdSidecar(
        config,
        io_cpus=io_thread_cpus(config.md.core, wait, allowed),
        kept_endpoints=kept_endpoints(),  # a restart binds the ports of the first start
    )
    try:
        try:
            sidecar.open()
        except (RingError, OSError, zmq.ZMQError, EndpointError) as exc:
            log.error("md: cannot start: %s", exc)
            return EXIT_USER_ERROR
        short_slices(config.engine.sched_slice_us, sidecar.io_threads)
        # what start-up made is never garbage: freeze it, so a collection (rare: the
        # loop's objects die by reference counting) never scans it mid-publish
        gc.collect()
        gc.freeze()
        announce_ready(
            config,
            "md",
            symbols=sidecar.names,
            **sidecar.endpoints,
        )
        log.info(
            "md: publishing on %s, snapshots on %s",
            ", ".join(sidecar.endpoints["publish"]),
            sidecar.endpoints["snapshot"],
        )
        sidecar.run(stop)
        log.info(
            "md: stopped after %d records in %d messages",
            sidecar.published_records,
            sidecar.published_messages,
        )
        return EXIT_OK
    finally:
        sidecar.close()
        withdraw(config, "md")
        remove_stats(config.instance_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m tradsys.cores.md <instance_dir>/config.json``."""
    args = sys.argv[1:] if argv is None else argv
    logs.configure("md")
    if len(args) != 1:
        print("usage: python -m tradsys.cores.md CONFIG_JSON", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        config = read_effective_config(args[0])
    except ConfigError as exc:
        print(f"tradsys.md: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    if not lock_if_asked(config.engine.lock_memory, "md", log.error):
        return EXIT_USER_ERROR
    try:
        return run_md(config)
    except Exception:
        log.exception("md: failed (pid %d)", os.getpid())
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
