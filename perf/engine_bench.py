#!/usr/bin/env python3
"""Engine benchmark: the matching engine's C core and batch API against the reference model.

Seeded synthetic workloads that look like a venue (perf/_engine_workloads.py): ``venue``
(``tradsys.matching.workload.venue_stream`` as it is), ``sweeps`` (more large IOC sweeps
through a deep book), ``cancel_heavy`` (a cancel storm, over 70% cancels) and
``deep_book`` (a 10^6-order book, 2.5 * 10^5 with --quick, with the activity at the
top). Each has an untimed prefix that builds the book, then the timed commands, which run
in one run through:

* the C core one command per ``ts_engine_process`` call, reading the output counts and
  clearing the output after each, as a shard worker's loop does -- in the C driver
  native/bench/bench_engine.c (built by ``make -C native build/bench_engine``), so no
  Python is in the loop;
* the Python batch API, ``CEngine.process`` on numpy batches of 4096 commands (the events
  and market data copied out into numpy arrays, as the API returns them);
* the reference model, ``ReferenceEngine.process`` in the same batches over the first
  part of the timed commands (it is slow), from the same book (restored from the C
  engine's snapshot after the prefix: the snapshots are byte-identical by contract). In
  the first round its events and market data are checked equal, byte for byte, to the
  batch API's over the commands both ran.

Rounds alternate the three paths and the scenarios (the order rotated per round); a
figure is the median over rounds. Python's garbage collector is off while the batch API
and the reference model are timed (as ``timeit`` does), for both alike.

Also: memory per resting order with 10 M orders resting (1 M with --quick), built in the
C driver -- ``ts_engine_memory_bytes`` (the capacity the engine holds) and the growth of
the resident set; and instructions per command of the C per-command path counted by
callgrind over a slice of each scenario (exact and repeatable, unlike the timings).

Usage: engine_bench.py [--quick] [--json] [--rounds N] [--seed S] [--no-callgrind]
                       [--scenarios a,b,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _callgrind
import _common as common
import _engine_workloads as workloads

from tradsys.matching import CEngine, ReferenceEngine
from tradsys.matching.api import Output
from tradsys.wire import CommandKind, TimeInForce

BENCH = "engine"
PEER = "reference model"
BATCH = 4096
ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "native"
DRIVER = NATIVE / "build" / "bench_engine"
MEMORY_LEVELS = 2000  # price levels a side the memory book spreads over (power law)
MEMORY_ACCOUNTS = 10_000
DRIVER_TIMEOUT_S = 300.0


class BenchError(Exception):
    """The bench could not measure (driver failed to build or run, results disagree)."""


@dataclass(frozen=True)
class Plan:
    quick: bool
    commands: int  # timed commands per scenario
    rounds: int
    ref_commands: int  # of those, run through the reference model
    ref_rounds: int
    memory_orders: int
    callgrind_commands: int
    deep_depth: int

    @classmethod
    def of(cls, quick: bool, rounds: int | None) -> Plan:
        if quick:
            plan = cls(True, 200_000, 3, 16_384, 1, 1_000_000, 20_000, 250_000)
        else:
            plan = cls(False, 2_000_000, 5, 200_704, 2, 10_000_000, 100_000, 1_000_000)
        if rounds is not None:
            plan = dataclasses.replace(plan, rounds=rounds, ref_rounds=min(plan.ref_rounds, rounds))
        return plan


@dataclass
class Scenario:
    w: workloads.Workload
    file: Path
    snapshot: bytes  # the C engine after the prefix, for the reference model
    c_rates: list[float] = field(default_factory=list)
    batch_rates: list[float] = field(default_factory=list)
    ref_rates: list[float] = field(default_factory=list)
    events: int = 0  # per timed run, from the C driver
    md: int = 0
    live_after: int = 0
    live_before: int = 0
    instructions: float | None = None
    checked: int = 0  # commands whose output the reference and the batch API agreed on

    @property
    def name(self) -> str:
        return self.w.name


# ---- the C driver ------------------------------------------------------------------------


def build_driver() -> None:
    proc = subprocess.run(
        ["make", "-C", str(NATIVE), "build/bench_engine"], capture_output=True, text=True
    )
    if proc.returncode != 0 or not DRIVER.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise BenchError(f"make -C native build/bench_engine failed:\n{tail}")


def run_driver(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(DRIVER), *args], capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{DRIVER.name} {' '.join(args)} exited {proc.returncode}: {tail}")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


# ---- the three paths -----------------------------------------------------------------------


def c_round(sc: Scenario) -> None:
    out = run_driver("run", str(sc.file))
    sc.c_rates.append(out["commands"] / out["seconds"][0])
    sc.events, sc.md, sc.live_after = out["events"], out["md"], out["live_orders"]


def _engine_after_prefix(w: workloads.Workload) -> CEngine:
    eng = CEngine()
    for ins in w.instruments:
        eng.add_instrument(ins)
    prefix = w.prefix
    for i in range(0, len(prefix), 65536):
        eng.process(prefix[i : i + 65536])
    return eng


def _timed_batches(
    process: Callable[[Any], Output], cmds: Any, keep: int
) -> tuple[float, list[Output]]:
    """Seconds to process cmds in BATCH-sized calls, GC off; the outputs of the first
    `keep` calls."""
    kept: list[Output] = []
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for i in range(0, len(cmds), BATCH):
            out = process(cmds[i : i + BATCH])
            if len(kept) < keep:
                kept.append(out)
        seconds = time.perf_counter() - t0
    finally:
        gc.enable()
    return seconds, kept


def batch_round(sc: Scenario, plan: Plan, check: bool) -> list[Output]:
    eng = _engine_after_prefix(sc.w)
    try:
        keep = ref_count(plan) // BATCH if check else 0
        seconds, kept = _timed_batches(eng.process, sc.w.timed, keep)
    finally:
        eng.close()
    sc.batch_rates.append(len(sc.w.timed) / seconds)
    return kept


def ref_count(plan: Plan) -> int:
    """Commands the reference model runs: whole batches, so its output can be compared
    with the batch API's call by call."""
    return max(plan.ref_commands // BATCH, 1) * BATCH


def ref_round(sc: Scenario, plan: Plan, expect: list[Output]) -> None:
    ref = ReferenceEngine.restore(sc.snapshot)
    cmds = sc.w.timed[: ref_count(plan)]
    seconds, got = _timed_batches(ref.process, cmds, len(expect))
    sc.ref_rates.append(len(cmds) / seconds)
    for k, (a, b) in enumerate(zip(expect, got, strict=False)):
        if a.events.tobytes() != b.events.tobytes() or a.md.tobytes() != b.md.tobytes():
            first = k * BATCH
            raise BenchError(
                f"{sc.name}: the reference model's output differs from the C engine's in "
                f"the batch of commands {first}..{first + BATCH - 1} after the prefix"
            )
    if expect:
        sc.checked = min(len(cmds), len(expect) * BATCH)


# ---- memory and instructions ----------------------------------------------------------------


def memory(plan: Plan) -> dict[str, Any]:
    return run_driver(
        "memory",
        str(plan.memory_orders),
        f"--levels={MEMORY_LEVELS}",
        f"--accounts={MEMORY_ACCOUNTS}",
    )


def instructions(sc: Scenario, plan: Plan) -> float:
    n = min(plan.callgrind_commands, len(sc.w.timed))
    dumps = _callgrind.run(
        [str(DRIVER), "run", str(sc.file), f"--limit={n}"],
        zero_before="bench_timed_begin",
        dump_before="bench_timed_end",
        env={
            # valgrind counts every byte `rep movsb` moves as one instruction; make glibc's
            # memcpy/memmove use their vector loops so the count reflects the work
            "GLIBC_TUNABLES": "glibc.cpu.x86_rep_movsb_threshold=4294967295",
        },
        timeout=DRIVER_TIMEOUT_S,
    )
    if not dumps:
        raise BenchError(f"{sc.name}: callgrind gave no dump of the timed stretch")
    return dumps[0].total / n


# ---- the run ----------------------------------------------------------------------------------


def prepare(plan: Plan, seed: int, names: list[str], tmp: Path) -> list[Scenario]:
    out = []
    for name in names:
        t0 = time.perf_counter()
        w = workloads.build(name, plan.commands, seed, plan.deep_depth)
        path = tmp / f"{name}.bin"
        w.write(path)
        eng = _engine_after_prefix(w)
        try:
            snap, live = eng.snapshot(), eng.live_orders()
        finally:
            eng.close()
        out.append(Scenario(w, path, snap, live_before=live))
        common.note(
            f"engine bench: {name}: {w.n_prefix:,} + {len(w.timed):,} commands generated "
            f"in {time.perf_counter() - t0:.1f} s"
        )
    return out


def measure(plan: Plan, scenarios: list[Scenario]) -> None:
    steps: list[tuple[str, Scenario]] = []
    for sc in scenarios:
        steps += [("c", sc), ("batch", sc), ("ref", sc)]
    for r in range(plan.rounds):
        common.note(f"engine bench: round {r + 1} of {plan.rounds}")
        # round 1 runs in order (each scenario's batch API before its reference model, whose
        # output is checked against it); later rounds rotate the order
        shift = r % len(steps)
        expect: dict[str, list[Output]] = {}
        for kind, sc in steps[shift:] + steps[:shift]:
            if kind == "c":
                c_round(sc)
            elif kind == "batch":
                kept = batch_round(sc, plan, check=r == 0)
                if r == 0:
                    expect[sc.name] = kept
            elif r < plan.ref_rounds:
                ref_round(sc, plan, expect.pop(sc.name, []))


# ---- report -----------------------------------------------------------------------------------


def mix_text(w: workloads.Workload) -> str:
    """Shares of the timed commands, percent: resting adds/cancels/IOCs/replaces."""
    kinds = w.timed["kind"]
    new = kinds == CommandKind.NEW_ORDER
    ioc = new & (w.timed["tif"] == TimeInForce.IOC)
    n = max(len(kinds), 1)
    shares = [
        (new & ~ioc).sum() / n,
        (kinds == CommandKind.CANCEL).sum() / n,
        ioc.sum() / n,
        (kinds == CommandKind.REPLACE).sum() / n,
    ]
    return "/".join(f"{100 * s:.0f}" for s in shares)


def report(
    plan: Plan, scenarios: list[Scenario], mem: dict[str, Any]
) -> tuple[list[dict[str, Any]], str]:
    results: list[dict[str, Any]] = []
    rows = []
    med = common.median
    for sc in scenarios:
        c, b, ref = med(sc.c_rates), med(sc.batch_rates), med(sc.ref_rates)
        n = len(sc.w.timed)
        rows.append(
            [
                sc.name,
                f"{sc.live_before:,}",
                f"{sc.live_after:,}",
                mix_text(sc.w),
                f"{(sc.events + sc.md) / n:.2f}",
                common.fmt_rate(c),
                f"{1e9 / c:.0f}",
                "-" if sc.instructions is None else f"{sc.instructions:.0f}",
                common.fmt_rate(b),
                common.fmt_rate(ref),
                common.fmt_ratio(c / ref),
                common.fmt_ratio(b / ref),
            ]
        )
        results.append(
            common.result(
                f"engine.c.throughput.{sc.name}",
                "commands/s",
                c,
                higher_is_better=True,
                peer=PEER,
                peer_value=ref,
            )
        )
        results.append(
            common.result(
                f"engine.batch.throughput.{sc.name}",
                "commands/s",
                b,
                higher_is_better=True,
                peer=PEER,
                peer_value=ref,
            )
        )
        results.append(
            common.result(
                f"engine.reference.throughput.{sc.name}",
                "commands/s",
                ref,
                higher_is_better=True,
            )
        )
        if sc.instructions is not None:
            results.append(
                common.result(
                    f"engine.c.instructions_per_command.{sc.name}",
                    "instructions",
                    sc.instructions,
                    higher_is_better=False,
                )
            )

    worst_c = min(scenarios, key=lambda s: med(s.c_rates))
    worst_b = min(scenarios, key=lambda s: med(s.batch_rates))
    named = [
        common.result(
            "engine.c.throughput",
            "commands/s",
            med(worst_c.c_rates),
            higher_is_better=True,
            peer=PEER,
            peer_value=med(worst_c.ref_rates),
        ),
        common.result(
            "engine.batch.throughput",
            "commands/s",
            med(worst_b.batch_rates),
            higher_is_better=True,
            peer=PEER,
            peer_value=med(worst_b.ref_rates),
        ),
    ]
    counted = [s for s in scenarios if s.instructions is not None]
    most = max(counted, key=lambda s: s.instructions or 0.0) if counted else None
    if most is not None:
        named.append(
            common.result(
                "engine.c.instructions_per_command",
                "instructions",
                most.instructions or 0.0,
                higher_is_better=False,
            )
        )
    orders = mem["live_orders"]
    per_order = mem["memory_bytes"] / orders
    rss_per_order = mem["rss_growth_bytes"] / orders
    named.append(
        common.result("engine.bytes_per_resting_order", "bytes", per_order, higher_is_better=False)
    )
    named.append(
        common.result(
            "engine.rss_bytes_per_resting_order", "bytes", rss_per_order, higher_is_better=False
        )
    )
    results = named + results

    headers = [
        "scenario",
        "book before",
        "book after",
        "add/cxl/ioc/rpl %",
        "out/cmd",
        "C cmds/s",
        "C ns/cmd",
        "C instr/cmd",
        "batch cmds/s",
        "ref cmds/s",
        "C/ref",
        "batch/ref",
    ]
    rows.append(
        [
            "worst",
            "",
            "",
            "",
            "",
            common.fmt_rate(med(worst_c.c_rates)),
            f"{1e9 / med(worst_c.c_rates):.0f}",
            "-" if most is None else f"{most.instructions:.0f}",
            common.fmt_rate(med(worst_b.batch_rates)),
            "",
            "",
            "",
        ]
    )
    lines = [common.table(headers, rows)]
    lines.append(
        f"worst: C per command {worst_c.name}, batch API {worst_b.name}"
        + ("" if most is None else f", instructions {most.name}")
    )
    lines.append("")
    quick_note = " (--quick: 1 M, not the 10 M of the target)" if plan.quick else ""
    lines.append(
        f"memory: {orders:,} resting orders{quick_note}, {mem['bid_levels']:,} bid and "
        f"{mem['ask_levels']:,} ask levels, {mem['accounts']:,} accounts: "
        f"{per_order:.1f} bytes per order allocated (ts_engine_memory_bytes), "
        f"{rss_per_order:.1f} resident (RSS growth)"
    )
    lines.append("")
    lines.append("scenarios (book = resting orders before / after the timed commands):")
    for sc in scenarios:
        lines.append(f"  {sc.name:13} {sc.w.what}")
    lines.append(
        f"C: native/bench/bench_engine, one ts_engine_process call per command, median of "
        f"{plan.rounds} rounds; batch: CEngine.process, {BATCH} commands a call, output "
        f"copied out; ref: ReferenceEngine.process on the first {ref_count(plan):,} "
        f"timed commands, median of {plan.ref_rounds}; out/cmd: events + market-data "
        f"records per command; instr/cmd: callgrind, first "
        f"{plan.callgrind_commands:,} timed commands (named figure: the most of any scenario)"
    )
    checked = ", ".join(f"{s.name} {s.checked:,}" for s in scenarios)
    lines.append(f"reference and C engine output equal, byte for byte, over: {checked} commands")
    return results, "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(1)  # CONVENTIONS: 1 on a user error


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short look (well under a minute)")
    ap.add_argument("--json", action="store_true", help="end stdout with the JSON result line")
    ap.add_argument("--rounds", type=int, help="measured rounds (default 5, quick 3)")
    ap.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    ap.add_argument(
        "--scenarios",
        default=",".join(workloads.SCENARIOS),
        help=f"comma-separated subset of {','.join(workloads.SCENARIOS)}",
    )
    args = ap.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    names = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in names if s not in workloads.SCENARIOS]
    if unknown or not names:
        ap.error(f"unknown scenario {unknown}; known: {', '.join(workloads.SCENARIOS)}")

    plan = Plan.of(args.quick, args.rounds)
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    try:
        common.note("engine bench: building native/build/bench_engine")
        build_driver()
        with tempfile.TemporaryDirectory(prefix="tradsys-enginebench-") as tmp:
            scenarios = prepare(plan, args.seed, names, Path(tmp))
            measure(plan, scenarios)
            common.note(f"engine bench: memory, {plan.memory_orders:,} resting orders")
            mem = memory(plan)
            if not args.no_callgrind:
                if _callgrind.valgrind() is None:
                    common.note("engine bench: valgrind not installed: no instruction counts")
                else:
                    for sc in scenarios:
                        common.note(f"engine bench: {sc.name}: counting instructions")
                        sc.instructions = instructions(sc, plan)
        results, text = report(plan, scenarios, mem)
    except (BenchError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"engine bench failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("engine bench interrupted", file=sys.stderr)
        return 130

    print(
        f"engine bench: {'quick' if args.quick else 'full'} run, timed commands: "
        f"{', '.join(f'{s.name} {len(s.w.timed):,}' for s in scenarios)}; seed {args.seed}, "
        f"{common.cpu_count()} cpus, python "
        f"{sys.version.split()[0]}, {time.perf_counter() - t_start:.0f} s; load average "
        f"{load_start:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(text)
    if args.json:
        common.emit_json(BENCH, args.quick, results)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_bench(BENCH, main))
