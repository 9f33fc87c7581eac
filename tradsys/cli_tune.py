"""`tradsys tune check`: read the host, say what hurts latency. Exit 0 when ready, 1 when
not (a user-fixable state), 2 on an internal failure."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from tradsys.cli_args import positive_seconds, seconds

if TYPE_CHECKING:
    from tradsys.config import Config
    from tradsys.tune import Finding
    from tradsys.tune.running import RunningInstance

EXIT_READY, EXIT_NOT_READY = 0, 1


def cmd_tune_check(args: argparse.Namespace) -> int:
    from tradsys.cli import _config
    from tradsys.tune import Host, run_checks
    from tradsys.tune.report import is_ready, render
    from tradsys.tune.running import running_instance

    config = _config(args)
    # a running instance: its processes' own limits are read, and its CPUs left alone
    running = running_instance(config)
    findings = run_checks(Host(), config, running)
    if args.jitter_s > 0:
        findings += _jitter(config, running, args.jitter_s)
    print(render(findings, strict=args.strict))
    return EXIT_READY if is_ready(findings, strict=args.strict) else EXIT_NOT_READY


def _jitter(config: Config, running: RunningInstance | None, seconds: float) -> list[Finding]:
    """The measured ``cpu jitter`` lines -- unless the instance is running: spinning on
    its CPUs would take them from it, so the line says so instead."""
    from tradsys.tune import Finding, Verdict
    from tradsys.tune.checks import Placement
    from tradsys.tune.jitter import cpus_to_probe, jitter_findings, probe_cpus

    if running is None:
        return jitter_findings(probe_cpus(cpus_to_probe(Placement.of(config)), seconds))
    return [
        Finding(
            "cpu jitter",
            Verdict.OK,
            f"not measured: instance {running.instance!r} is running on these CPUs "
            "(`tradsys tune jitter` measures the CPUs it does not use)",
        )
    ]


def _cpus_arg(args: argparse.Namespace, command: str) -> list[int] | None:
    """The --cpus list (default: every CPU allowed), or None after saying what is wrong."""
    import os
    import sys

    from tradsys.tune.host import format_cpu_list, parse_cpu_list

    allowed = os.sched_getaffinity(0)
    try:
        cpus = sorted(parse_cpu_list(args.cpus)) if args.cpus else sorted(allowed)
    except ValueError:
        cpus = []
    if not cpus or not set(cpus) <= allowed:
        print(
            f"tradsys tune {command}: --cpus {args.cpus!r}: give CPUs among "
            f"{format_cpu_list(allowed)} (a list such as 0-3,6)",
            file=sys.stderr,
        )
        return None
    return cpus


def _measuring(what: str, cpus: list[int], seconds: float) -> None:
    """Say what runs for how long before a measurement that holds the terminal."""
    import sys

    from tradsys.tune.host import format_cpu_list

    print(
        f"tune {what}: measuring CPU {format_cpu_list(set(cpus))} for {seconds:g} s (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )


def _clear_of_instance(args: argparse.Namespace, cpus: list[int]) -> list[int] | None:
    """The CPUs to spin on, kept off the running instance's: by default its CPUs are
    skipped (said on stderr), and None when none is left (after saying why); CPUs named
    with --cpus are measured as asked, with a loud warning for each of the instance's."""
    import sys

    from tradsys.cli import _config
    from tradsys.tune import Host
    from tradsys.tune.host import format_cpu_list
    from tradsys.tune.running import running_instance

    running = running_instance(_config(args))
    if running is None:
        return cpus
    host = Host()
    taken = set(cpus) & set(running.cpus(host))
    if not taken:
        return cpus
    held = f"instance {running.instance!r} runs there ({running.describe(host, taken)})"
    if args.cpus:
        print(
            f"tradsys tune jitter: WARNING: CPU {format_cpu_list(taken)}: {held}; spinning "
            f"there for {args.seconds:g} s takes them from it. Measuring them anyway, as "
            "--cpus asks",
            file=sys.stderr,
        )
        return cpus
    left = [cpu for cpu in cpus if cpu not in taken]
    if not left:
        print(
            f"tradsys tune jitter: not measuring: every CPU ({format_cpu_list(taken)}) is "
            f"the running instance's: {held}. Name CPUs with --cpus to measure them anyway "
            "(it takes them from the engine)",
            file=sys.stderr,
        )
        return None
    print(
        f"tradsys tune jitter: skipping CPU {format_cpu_list(taken)}: {held} "
        "(--cpus measures them anyway)",
        file=sys.stderr,
    )
    return left


def cmd_tune_jitter(args: argparse.Namespace) -> int:
    import json

    from tradsys.tune.jitter import probe_cpus, render_table

    cpus = _cpus_arg(args, "jitter")
    if cpus is not None:
        cpus = _clear_of_instance(args, cpus)
    if cpus is None:
        return EXIT_NOT_READY
    _measuring("jitter", cpus, args.seconds)
    results = probe_cpus(cpus, args.seconds)
    if args.json:
        for r in results:
            print(json.dumps({**r.__dict__, "over": {str(k): v for k, v in r.over.items()}}))
    else:
        print(render_table(results))
    return 0


def cmd_tune_stalls(args: argparse.Namespace) -> int:
    import json

    from tradsys.tune.stalls import machine_wide, render, watch_cpus

    cpus = _cpus_arg(args, "stalls")
    if cpus is None:
        return EXIT_NOT_READY
    floor_ns = int(args.floor_ms * 1e6)
    _measuring("stalls", cpus, args.seconds)
    results = watch_cpus(cpus, args.seconds, floor_ns)
    if args.json:
        for r in results:
            row = {k: v for k, v in r.__dict__.items() if k != "kept"}
            row["kept"] = [[s.due_ns, s.late_ns] for s in r.kept]
            print(json.dumps(row))
        print(json.dumps({"machine_wide": machine_wide(results)}))
    else:
        print(render(results, floor_ns))
    return 0


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
    check.add_argument(
        "--jitter-s",
        type=seconds,
        default=0.5,
        help="seconds to spin on each engine CPU measuring what the platform takes from "
        "it (the cpu jitter lines; 0 skips them)",
    )
    check.set_defaults(func=cmd_tune_check)
    jitter = tune_sub.add_parser(
        "jitter",
        help="spin on each CPU and count the gaps the platform (ticks, interrupts, other "
        "tasks, a hypervisor) leaves in a thread that never sleeps",
    )
    jitter.add_argument(
        "--seconds", type=positive_seconds, default=2.0, help="how long (default 2)"
    )
    jitter.add_argument(
        "--cpus",
        help="a CPU list such as 0-3,6, measured as asked even where the instance runs "
        "(default: every CPU allowed but those of the running instance)",
    )
    jitter.add_argument(
        "--config", help="the instance's TOML config, to keep off its CPUs (default: built-in)"
    )
    jitter.add_argument("--json", action="store_true", help="one JSON object per CPU")
    jitter.set_defaults(func=cmd_tune_jitter)
    stalls = tune_sub.add_parser(
        "stalls",
        help="sleep on each CPU at a real-time priority, waking every millisecond, and "
        "report the wake-ups that came late: when a CPU, or the whole machine (in a VM: "
        "the host), stopped running threads; safe beside a running engine",
    )
    stalls.add_argument(
        "--seconds", type=positive_seconds, default=10.0, help="how long (default 10)"
    )
    stalls.add_argument("--cpus", help="a CPU list such as 0-3,6 (default: every CPU allowed)")
    stalls.add_argument(
        "--floor-ms",
        type=positive_seconds,
        default=2.0,
        help="a wake-up later than this is a stall (2)",
    )
    stalls.add_argument(
        "--json", action="store_true", help="one JSON object per CPU, then the machine-wide spans"
    )
    stalls.set_defaults(func=cmd_tune_stalls)
