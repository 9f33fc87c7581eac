"""The `tradsys` command. Exit codes: 0 success, 1 user error, 2 internal failure, 130
stopped by Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path

from tradsys import __version__, cli_admin, cli_latency, cli_md, cli_order, cli_tune
from tradsys.cli_args import positive_seconds, whole
from tradsys.config import Config, ConfigError, load_config
from tradsys.exit_codes import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USER_ERROR
from tradsys.ring import find_stale, instance_segments, reclaim_stale

PERF_DIR = Path(__file__).resolve().parent.parent / "perf"


class UserError(Exception):
    """Something the user can fix: a bad argument, a missing file."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a bad argument; here 2 means an internal failure, so exit 1."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def _config(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def relative_data_dir_hint(config: Config) -> str:
    """What to add to a "not running" message when ``data_dir`` is relative: it is taken
    from the current directory, so a command run from another one looks elsewhere."""
    data_dir = Path(config.engine.data_dir)
    if data_dir.is_absolute() or (config.instance_dir / "supervisor.json").exists():
        return ""  # absolute, or it did look in the right place (the instance died there)
    return (
        f" (data_dir {str(data_dir)!r} is relative to the current directory, so this looked "
        f"in {config.instance_dir.absolute()}: run tradsys from the directory where `tradsys "
        "run` was started)"
    )


def cmd_run(args: argparse.Namespace) -> int:
    """Start the instance and supervise it until SIGINT/SIGTERM, then stop it cleanly;
    exit 2 if it could not (a worker killed at the deadline, a process that failed)."""
    from tradsys import logs
    from tradsys.cores.supervisor import Supervisor, SupervisorError

    logs.configure("supervisor")
    config = _config(args)
    where = args.config or "the built-in default configuration"
    print(f"TradSys {__version__}: instance {config.engine.instance!r} from {where}", flush=True)
    supervisor = Supervisor(config, new_day=args.new_day)
    supervisor.install_signal_handlers()
    try:
        supervisor.start()
    except SupervisorError as exc:
        if exc.exit_code != EXIT_USER_ERROR:
            print(f"tradsys: start failed: {exc}", file=sys.stderr, flush=True)
            return EXIT_INTERNAL
        raise UserError(str(exc)) from None
    try:
        for line in supervisor.connection_info():
            print(f"  {line}", flush=True)
        print("ready; Ctrl-C (SIGINT) or SIGTERM stops it cleanly", flush=True)
        supervisor.watch()
        print("stopping: draining, snapshotting, removing shared memory ...", flush=True)
    except BaseException:
        supervisor.stop()
        raise
    failures = supervisor.stop()
    if failures:
        log = logging.getLogger("tradsys.supervisor")
        for failure in failures:
            log.error("stop: %s", failure)
        detail = "; ".join(failures)
        print(f"tradsys: stopped, but not cleanly: {detail}", file=sys.stderr, flush=True)
        return EXIT_INTERNAL
    print("stopped cleanly", flush=True)
    return EXIT_OK


def cmd_selfcheck(args: argparse.Namespace) -> int:
    from tradsys.selfcheck import run_selfcheck

    print(
        f"TradSys {__version__}: checking the native core and shared-memory rings ...", flush=True
    )
    result = run_selfcheck()
    print(
        f"  ring round trip between two processes: p50 {result.p50_us:.1f} µs, "
        f"p99 {result.p99_us:.1f} µs over {result.round_trips:,} round trips"
    )
    print(
        f"  batched echo: {result.batch_records:,} records there and back at "
        f"{result.batch_rate / 1e6:.1f} M records/s"
    )
    print("  host OK")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Processes, cores, states, rates, ring fill levels and journal positions."""
    from tradsys.cores.status import read_status

    config = _config(args)
    try:
        report = read_status(config, interval_s=args.interval)
    except FileNotFoundError as exc:
        raise UserError(f"{exc}{relative_data_dir_hint(config)}") from None
    print(report)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """Rebuild a shard's books offline from its snapshot and journal; print the digest."""
    from tradsys.journal import JournalError, replay_to

    directory = Path(args.directory)
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory (give a shard's data directory)")
    shard = args.shard
    names = (re.match(r"(?:journal|snapshot)-(\d{3})-", p.name) for p in directory.iterdir())
    found = {int(m.group(1)) for m in names if m}
    if shard is not None and found and shard not in found:
        raise UserError(
            f"{directory} holds no journal or snapshot of shard {shard}, only of "
            f"shard {', '.join(map(str, sorted(found)))}"
        )
    if shard is None:
        if not found:
            shards = sorted(
                d for pattern in ("shard-*", "*/shard-*") for d in directory.glob(pattern)
            )
            if not shards and re.fullmatch(r"shard-\d+", directory.name):
                raise UserError(f"no journal or snapshot in {directory} yet: nothing to replay")
            example = shards[0] if shards else Path("var/default/shard-0")
            raise UserError(
                f"no journal here ({directory}): give a shard directory, such as {example}"
            )
        if len(found) != 1:
            raise UserError(
                f"{directory} holds journals of shards {sorted(found)}: pick one with --shard"
            )
        shard = found.pop()
    instruments = _config(args).symbols_of(shard) if args.config else None
    try:
        done = replay_to(directory, shard, instruments, upto=args.upto)
    except (JournalError, ValueError) as exc:
        raise UserError(str(exc)) from None
    short = args.upto is not None and done.seq < args.upto
    where = f" (the journal ends there, short of --upto {args.upto})" if short else ""
    engine = done.engine
    print(
        f"shard {shard} at seq {done.seq}{where}: {engine.live_orders()} live orders, "
        f"digest {engine.digest()}"
    )
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """Run perf/ benchmarks (all by default) and write one report with every figure, its
    peer and the ratio, and percentile plots; exit 2 if any bench failed."""
    from tradsys.profiling.report import available, run_all, write_report

    if not PERF_DIR.is_dir():
        raise UserError(f"no perf/ folder at {PERF_DIR}: run from a source checkout")
    names = available(PERF_DIR)
    if args.name != "all":
        if args.name not in names:
            raise UserError(f"no benchmark {args.name!r}; available: {', '.join(names)}")
        names = [args.name]
    extra = [*(["--quick"] if args.quick else []), *args.passthrough]

    def progress(line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    out = (
        Path(args.report) if args.report else Path("var") / "bench" / time.strftime("%Y%m%d-%H%M%S")
    )
    try:  # before the benches run, not after: a report that cannot be written is known now
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot make the report folder {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"cannot write the report in {out}: permission denied")
    runs = run_all(PERF_DIR, names, extra, progress)
    command = " ".join(["tradsys bench", args.name, *extra])
    report = write_report(runs, out, command)
    print(report.read_text())
    print(f"report: {report} (plots and results.json beside it)")
    return EXIT_OK if all(r.error is None for r in runs) else EXIT_INTERNAL


def _stale_controls(instance: str | None) -> list[str]:
    """The control blocks dead supervisors left (of one instance, or of every one)."""
    from tradsys.cores.control import find_stale_controls

    names = {instance} if instance else _instances_present()
    return [ctl for inst in sorted(names) for ctl in find_stale_controls(inst)]


def cmd_shm(args: argparse.Namespace) -> int:
    from tradsys.cores.dead_run import undelivered
    from tradsys.metrics.latency_segment import find_stale_latency, reclaim_stale_latency
    from tradsys.ring.segment import unlink_quietly

    if args.action == "ls":
        stale = {s.name for s in find_stale(args.instance)}
        stale |= set(find_stale_latency(args.instance))
        stale |= set(_stale_controls(args.instance))
        names = instance_segments(args.instance)
        for name in names:
            print(f"{name}{'  (stale: creator gone)' if name in stale else ''}")
        if not names:
            print(f"no segments{f' of instance {args.instance!r}' if args.instance else ''}")
    else:
        owed = {} if args.force else undelivered(s.name for s in find_stale(args.instance))
        for inst, n in sorted(owed.items()):
            print(
                f"kept the stale segments of instance {inst!r}: its dead run left {n} "
                "record(s) unread that clients are owed (events, unanswered commands); "
                "`tradsys run` the instance to deliver them, or `tradsys shm reclaim "
                "--force` to drop them",
                file=sys.stderr,
            )
        instances = {args.instance} if args.instance else _instances_present()
        removed = []
        for inst in sorted(instances - set(owed)):
            # control blocks first: whether one is stale is read from its shard's rings
            removed += unlink_quietly(_stale_controls(inst))
            removed += reclaim_stale(inst) + reclaim_stale_latency(inst)
        for name in removed:
            print(f"removed stale segment {name}")
        if not removed:
            print("no stale segments" + (" removed" if owed else ""))
    return EXIT_OK


def _instances_present() -> set[str]:
    """The instances that have segments now ("/tradsys.<instance>.<kind>...")."""
    return {name.split(".")[1] for name in instance_segments() if name.count(".") >= 2}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tradsys", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tradsys {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the engine: supervisor, shard workers, until Ctrl-C")
    run.add_argument("--config", help="TOML config file (default: the built-in one)")
    run.add_argument(
        "--new-day",
        action="store_true",
        help="start a new trading day: positions and filled notional from flat (by default "
        "a run goes on with the run before's)",
    )
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="processes, rates, ring fill, journal position")
    status.add_argument("--config", help="the instance's TOML config (default: built-in)")
    status.add_argument(
        "--interval", type=positive_seconds, default=0.5, help="seconds between samples"
    )
    status.set_defaults(func=cmd_status)

    rep = sub.add_parser("replay", help="rebuild a shard's books from its journal; print digest")
    rep.add_argument("directory", help="the shard's data directory (journal + snapshots)")
    rep.add_argument("--shard", type=whole, help="shard id (default: the only one there)")
    rep.add_argument(
        "--config", help="config giving the instruments, for a journal with no snapshot"
    )
    rep.add_argument("--upto", type=whole, help="stop at this journal seq")
    rep.set_defaults(func=cmd_replay)

    check = sub.add_parser("selfcheck", help="prove this host can run TradSys (rings, native)")
    check.set_defaults(func=cmd_selfcheck)

    bench = sub.add_parser(
        "bench", help="run the perf/ benchmarks against their peers and write a report"
    )
    bench.add_argument("name", nargs="?", default="all", help="ring, engine, ... (default: all)")
    bench.add_argument("--quick", action="store_true", help="each bench's short run")
    bench.add_argument("--report", help="report directory (default: var/bench/<time>)")
    bench.epilog = "Arguments after -- are passed to each bench, e.g. tradsys bench ring -- --pin"
    bench.set_defaults(func=cmd_bench)

    shm = sub.add_parser(
        "shm",
        help="list or reclaim TradSys shared-memory segments",
        description="ls: every TradSys segment in /dev/shm, each marked stale when the "
        "process that made it is gone. reclaim: unlink the stale ones -- except those of "
        "a dead run that left records clients are owed (events, unanswered commands): "
        "the next `tradsys run` of that instance delivers them and removes the rest "
        "itself (--force drops them).",
    )
    shm.add_argument("action", choices=["ls", "reclaim"], help="ls or reclaim")
    shm.add_argument("--instance", help="only this instance's segments")
    shm.add_argument(
        "--force", action="store_true", help="reclaim: also what a dead run left unread"
    )
    shm.set_defaults(func=cmd_shm)
    cli_order.register(sub)
    cli_admin.register(sub)

    cli_tune.register(sub)
    cli_md.register(sub)
    cli_latency.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # everything after "--" is for the program a command runs (a bench), not for us
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    args.passthrough = passthrough
    if passthrough and args.command != "bench":
        print(f"tradsys {args.command}: nothing takes arguments after --", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"tradsys: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # what the command started has stopped on its way out
        print(f"tradsys {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`tradsys status | head`): it took what it wanted. The rest
        # goes nowhere, also the interpreter's last flush of stdout, which would raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a bug or a broken host: say so, with the type
        print(f"tradsys: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    # `python -m tradsys.cli`: this file runs as __main__, a module apart from tradsys.cli,
    # whose UserError the command modules raise; that module's main() catches it
    from tradsys.cli import main as _main

    sys.exit(_main())
