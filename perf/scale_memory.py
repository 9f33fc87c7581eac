"""How much memory and start-up time an instance costs at a given scale: starts one with
ACCOUNTS accounts x SYMBOLS symbols (its default placement: every symbol on the shards
given), waits for `ready`, reads each engine process's resident memory once it has
settled, stops it and says whether it left anything in /dev/shm.

    python perf/scale_memory.py 10000 1600                 # a table
    python perf/scale_memory.py 100 1600 --max-accounts 10000 --json

Not a benchmark with a peer: a measurement of sizes, which drift far less than times.
The README's `max_accounts` row quotes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tradsys.ring import instance_segments

SETTLE_S = 2.0  # after `ready`: the processes' first stats writes and passes are done


def config_toml(instance: str, data_dir: Path, args: argparse.Namespace) -> str:
    accounts, symbols = args.accounts, args.symbols
    lines = [
        "[engine]", f'instance = "{instance}"', f'data_dir = "{data_dir}"',
        "[journal]", 'durability = "none"',
        "[gateway]", 'tcp_listen = "127.0.0.1:0"',
        f"max_accounts = {args.max_accounts or max(1024, accounts)}",
        "[md]", 'publish = ["tcp://127.0.0.1:0"]', 'snapshot = "tcp://127.0.0.1:0"',
        "[metrics]", 'listen = ""',
    ]  # fmt: skip
    for shard in range(args.shards):
        lines += ["[[shard]]", f"id = {shard}"]
    for i in range(symbols):
        lines += ["[[instrument]]", f'symbol = "S{i:05d}"', f"symbol_id = {i + 1}"]
        lines += ["reference_price = 100"]
    for i in range(1, accounts + 1):
        digest = hashlib.sha256(f"key-{i}".encode()).hexdigest()
        lines += ["[[account]]", f"id = {i}", f'name = "acct{i}"']
        lines += [f'api_key_sha256 = "{digest}"']
    return "\n".join(lines) + "\n"


def role(proc: psutil.Process) -> str:
    """What an engine process is, from its command line."""
    cmd = " ".join(proc.cmdline())
    for name in ("gateway", "md", "worker"):
        if f"tradsys.cores.{name}" in cmd:
            return name
    return "supervisor"


def measure(args: argparse.Namespace) -> dict[str, object]:
    instance = f"scale{args.accounts}x{args.symbols}"
    with tempfile.TemporaryDirectory(prefix="tradsys-scale-") as tmp:
        data_dir = Path(tmp) / "var"
        config = Path(tmp) / "tradsys.toml"
        config.write_text(config_toml(instance, data_dir, args))
        started = time.monotonic()
        run = subprocess.Popen(
            [sys.executable, "-m", "tradsys.cli", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert run.stdout is not None
            ready_s = None
            for line in run.stdout:
                if line.startswith("ready"):
                    ready_s = time.monotonic() - started
                    break
            if ready_s is None:
                raise SystemExit(f"the instance did not start (exit {run.wait()})")
            time.sleep(SETTLE_S)
            supervisor = psutil.Process(run.pid)
            rss: dict[str, int] = {}
            for proc in [supervisor, *supervisor.children(recursive=True)]:
                name = role(proc)
                rss[name] = rss.get(name, 0) + proc.memory_info().rss
            ledger = data_dir / instance / "gateway.ledger"
            ledger_mb = ledger.stat().st_size / 2**20 if ledger.exists() else 0.0
        finally:
            run.send_signal(signal.SIGINT)
            run.communicate(timeout=120)
    return {
        "accounts": args.accounts,
        "symbols": args.symbols,
        "max_accounts": args.max_accounts or max(1024, args.accounts),
        "ready_s": round(ready_s, 2),
        "rss_mb": {name: round(v / 2**20, 1) for name, v in sorted(rss.items())},
        "ledger_file_mb": round(ledger_mb, 1),
        "left_in_shm": instance_segments(instance),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("accounts", type=int)
    parser.add_argument("symbols", type=int)
    parser.add_argument("--max-accounts", type=int, default=0, help="default: max(1024, accounts)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.accounts} accounts x {args.symbols} symbols: ready in {result['ready_s']} s")
    for name, mb in result["rss_mb"].items():  # type: ignore[attr-defined]
        together = " (all shards together)" if name == "worker" else ""
        print(f"  {name:<10} {mb:>8.1f} MB resident{together}")
    print(f"  gateway.ledger {result['ledger_file_mb']} MB on disk; left in /dev/shm: "
          f"{result['left_in_shm'] or 'nothing'}")  # fmt: skip


if __name__ == "__main__":
    main()
