"""`tradsys tune check`: read the host, say what hurts latency. Exit 0 when ready, 1 when
not (a user-fixable state), 2 on an internal failure."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_READY, EXIT_NOT_READY = 0, 1


def cmd_tune_check(args: argparse.Namespace) -> int:
    from tradsys.cli import _config
    from tradsys.tune import Host, run_checks
    from tradsys.tune.report import is_ready, render

    findings = run_checks(Host(), _config(args))
    print(render(findings, strict=args.strict))
    return EXIT_READY if is_ready(findings, strict=args.strict) else EXIT_NOT_READY


def register(sub: argparse._SubParsersAction[Any]) -> None:
    tune = sub.add_parser("tune", help="bare-metal host tuning (tuning/README.md)")
    tune_sub = tune.add_subparsers(dest="tune_command", required=True)
    check = tune_sub.add_parser(
        "check", help="report what on this host hurts latency; only reads, safe anywhere"
    )
    check.add_argument("--config", help="the instance's TOML config (default: built-in)")
    check.add_argument(
        "--strict", action="store_true", help="latency costs make the host not ready too"
    )
    check.set_defaults(func=cmd_tune_check)
