"""`tradsys latency`: where the microseconds go in a running instance.

Prints each stage's count, p50, p99, p99.9 and max per shard and for the gateway, from
the HdrHistograms the processes keep in shared memory (native/latency_hist.h). Exit 0 on
success, 1 when the instance is not running or an argument is wrong, 2 when its segments
cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from tradsys.cli_args import seconds
from tradsys.exit_codes import EXIT_INTERNAL, EXIT_OK, EXIT_USER_ERROR

STAGE_HELP = """stages (CLOCK_MONOTONIC, every process):
  gateway  order_to_ack      the gateway pass that took an order -> its first event routed back
  gateway  amend_to_answer   the pass that took a cancel or replace -> its answer routed back
  shard n  gateway_to_shard  the gateway pass -> the worker took the batch (sampled per batch)
  shard n  shard_to_matched  the worker took the batch -> journaled and matched (per command)
  shard n  matched_to_event  matched -> the event pushed to the events ring (per event)"""


def register(subparsers: Any) -> None:
    """Add ``latency`` to the `tradsys` parser."""
    p = subparsers.add_parser(
        "latency",
        help="stage latency percentiles of a running instance, per shard and gateway",
        epilog=STAGE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="the instance's TOML config (default: built-in)")
    p.add_argument(
        "--window",
        type=seconds,
        default=0.0,
        help="seconds: report only what was recorded over this long from now (default: "
        "everything since the instance started)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    p.set_defaults(func=cmd_latency)


def cmd_latency(args: argparse.Namespace) -> int:
    from tradsys.cli import relative_data_dir_hint
    from tradsys.config import ConfigError, load_config
    from tradsys.metrics.latency_report import (
        InstanceNotRunningError,
        format_rows,
        read_rows,
    )
    from tradsys.ring.errors import RingAttachError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"tradsys: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        rows = read_rows(config, args.window)
    except InstanceNotRunningError as exc:
        print(f"tradsys: {exc}{relative_data_dir_hint(config)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RingAttachError as exc:
        print(f"tradsys: internal error: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    if args.json:
        stages = [asdict(r) for r in rows]
        window = args.window or None  # None: since the instance started
        doc = {"instance": config.engine.instance, "window_s": window, "stages": stages}
        print(json.dumps(doc))
    else:
        span = f"the last {args.window:g} s" if args.window else "since start"
        print(f"instance {config.engine.instance!r}: stage latencies, {span}")
        print(format_rows(rows))
    return EXIT_OK
