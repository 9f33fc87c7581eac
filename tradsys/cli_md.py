"""`tradsys md ...`: market-data commands for a person at a terminal.

``tradsys md tail SYMBOL`` subscribes like any client (tradsys.client.marketdata) and
redraws the symbol's trading status, the book and the latest trades at most ten times
a second. ``tradsys md trades SYMBOL`` prints the symbol's last trade prints (or a range
of seqs) as the sidecar's trade replay service keeps them. Endpoints come from
the running sidecar's announcement (``<data_dir>/<instance>/md.json``), or from the
config, or from --publish/--snapshot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from typing import Any

from tradsys.cli_args import positive_seconds, positive_whole, whole
from tradsys.client.md_feed import BboChange, FeedError, FeedState, Gap, LocalBook, MdEvent, Trades
from tradsys.exit_codes import EXIT_OK, EXIT_USER_ERROR
from tradsys.marketdata.protocol import Channel
from tradsys.matching.api import Phase
from tradsys.matching.instrument import symbol_named
from tradsys.wire import Side

CLEAR = "\x1b[H\x1b[2J"
SIDE = {Side.BUY: "buy", Side.SELL: "sell"}
PHASE = {Phase.CONTINUOUS: "open", Phase.HALTED: "HALTED", Phase.AUCTION: "AUCTION CALL"}


def register(subparsers: Any) -> None:
    """Add ``md`` and its subcommands to the `tradsys` parser."""
    md = subparsers.add_parser("md", help="market data: watch a symbol's book and trades")
    sub = md.add_subparsers(dest="md_command", required=True)
    tail = sub.add_parser("tail", help="live view of a symbol's book and trades")
    tail.add_argument("symbol")
    tail.add_argument("--config", help="the instance's TOML config (default: built-in)")
    tail.add_argument("--publish", help="PUB endpoint (default: from the running sidecar)")
    tail.add_argument("--snapshot", help="snapshot endpoint (default: the same way)")
    tail.add_argument("--depth", type=positive_whole, default=10, help="levels per side")
    tail.add_argument("--plain", action="store_true", help="no screen clearing: append views")
    tail.add_argument("--updates", type=whole, default=0, help="exit after N views (0: never)")
    tail.add_argument(
        "--timeout", type=positive_seconds, default=10.0, help="seconds to wait for a book"
    )
    tail.set_defaults(func=cmd_md_tail)
    trades = sub.add_parser(
        "trades", help="a symbol's last trade prints (or a range of seqs), from the sidecar"
    )
    trades.add_argument("symbol")
    trades.add_argument("--config", help="the instance's TOML config (default: built-in)")
    trades.add_argument("--snapshot", help="snapshot endpoint (default: the running sidecar's)")
    trades.add_argument("--last", type=positive_whole, default=20, help="how many (default 20)")
    trades.add_argument(
        "--seqs", metavar="FIRST-LAST", type=seq_range, help="these seqs instead of the last ones"
    )
    trades.add_argument("--json", action="store_true", help="one JSON object a line")
    trades.add_argument(
        "--timeout", type=positive_seconds, default=5.0, help="seconds to wait for an answer"
    )
    trades.set_defaults(func=cmd_md_trades)


def seq_range(text: str) -> tuple[int, int]:
    """``FIRST-LAST`` (or one seq) as a pair, 1 <= FIRST <= LAST."""
    a, _, b = text.partition("-")
    if not a.isdigit() or (b and not b.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not FIRST-LAST (seqs, e.g. 100-120)")
    first, last = int(a), int(b or a)
    if not 1 <= first <= last:
        raise argparse.ArgumentTypeError(f"{text!r}: seqs need 1 <= FIRST <= LAST")
    return first, last


def _endpoints(args: argparse.Namespace) -> tuple[str, str, list[str]]:
    """The PUB and snapshot endpoints, and the symbols the instance publishes (empty when
    the endpoints it needs are given and no --config: then only the sidecar knows them)."""
    given_publish = getattr(args, "publish", None)
    if (given_publish or not hasattr(args, "publish")) and args.snapshot and not args.config:
        return given_publish or "", args.snapshot, []
    from tradsys.config import load_config
    from tradsys.cores.sidecar import read_announcement

    config = load_config(args.config)
    doc = read_announcement(config, "md") or {}
    publish = given_publish or (doc.get("publish") or config.md.publish)[0]
    snapshot = args.snapshot or doc.get("snapshot") or config.md.snapshot
    symbols = doc.get("symbols") or [i.symbol for i in config.instruments]
    return str(publish), str(snapshot), [str(s) for s in symbols]


def _symbol(name: str, symbols: list[str]) -> str | None:
    """The symbol a person typed, in any case (as the other commands take it); None when
    the instance does not publish it. Unknown ``symbols``: upper case, the sidecar says."""
    if not symbols:
        return name.upper()
    return symbol_named(name, symbols)


def _target(args: argparse.Namespace) -> tuple[str, str, str] | None:
    """(publish, snapshot, symbol) for a command on one symbol; None, the reason said on
    stderr, for a bad config or a symbol the instance does not publish."""
    from tradsys.config import ConfigError

    try:
        publish, snapshot, symbols = _endpoints(args)
    except ConfigError as exc:
        print(f"tradsys: {exc}", file=sys.stderr)
        return None
    symbol = _symbol(args.symbol, symbols)
    if symbol is None:
        print(
            f"tradsys: unknown symbol {args.symbol!r}; the instance publishes: "
            f"{', '.join(symbols)}",
            file=sys.stderr,
        )
        return None
    return publish, snapshot, symbol


def status_text(book: LocalBook) -> str:
    """The symbol's trading status as the view's header shows it."""
    if book.phase is None:
        return "status unknown"
    text = PHASE[book.phase]
    if book.phase == Phase.AUCTION and book.reopen_ns >= 0:
        text += f" until {book.reopen_ns} ns"
    return text


def render(book: LocalBook, trades: deque[tuple[int, int, int, int]], depth: int, note: str) -> str:
    """The view: asks above bids (best in the middle), then the latest trades."""
    lines = [f"{book.symbol}  {status_text(book)}  L2 seq {book.l2_seq}  {note}".rstrip(), ""]
    lines.append(f"{'':>12} {'price':>12} {'qty':>12} {'orders':>7}")
    for price, qty, count in reversed(book.levels(Side.SELL, depth)):
        lines.append(f"{'ask':>12} {price:>12} {qty:>12} {count:>7}")
    lines.append(f"{'':>12} {'-' * 12:>12}")
    for price, qty, count in book.levels(Side.BUY, depth):
        lines.append(f"{'bid':>12} {price:>12} {qty:>12} {count:>7}")
    lines += ["", "trades (newest first): seq  side  qty @ price"]
    for seq, side, qty, price in reversed(trades):
        lines.append(f"  {seq:>8}  {SIDE.get(Side(side), '?'):>4}  {qty} @ {price}")
    return "\n".join(lines)


def cmd_md_tail(args: argparse.Namespace) -> int:
    """Subscribe to one symbol and redraw its book and trades as they change."""
    from tradsys.client.marketdata import MarketDataClient

    target = _target(args)
    if target is None:
        return EXIT_USER_ERROR
    publish, snapshot, symbol = target
    trades: deque[tuple[int, int, int, int]] = deque(maxlen=args.depth)
    state: dict[str, Any] = {"dirty": True, "note": "", "error": ""}

    def on_event(ev: MdEvent) -> None:
        state["dirty"] = True
        if isinstance(ev, Trades):
            for r in ev.records:
                trades.append((int(r["seq"]), int(r["side"]), int(r["quantity"]), int(r["price"])))
        elif isinstance(ev, Gap) and ev.channel == Channel.TRADE:
            # asked of the sidecar's replay first: a trade Gap is what it no longer had
            state["note"] = f"(gap: {ev.lost} trade print(s) lost, seqs {ev.expected}-{ev.got - 1})"
        elif isinstance(ev, Gap):
            state["note"] = f"(gap on {ev.channel}: recovering)"
        elif isinstance(ev, FeedState):
            state["note"] = "" if ev.alive else "(feed silent: no heartbeat)"
        elif isinstance(ev, FeedError):
            state["error"] = f"{ev.reason}: {ev.message}"
        elif isinstance(ev, BboChange) and state["note"].startswith("(gap"):
            state["note"] = ""

    views = 0
    try:
        client = MarketDataClient(publish, snapshot, [symbol], on_event=on_event)
    except ValueError as exc:  # a mistyped --publish / --snapshot
        print(f"tradsys: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    with client:
        book = client.books[symbol]
        if not client.run_until(lambda: book.synced or bool(state["error"]), args.timeout):
            why = f"no book for {symbol} from {snapshot} within {args.timeout:g} s"
            print(f"tradsys: {why} (is `tradsys run` up with [md] enabled?)", file=sys.stderr)
            return EXIT_USER_ERROR
        if state["error"]:
            print(f"tradsys: {state['error']}", file=sys.stderr)
            return EXIT_USER_ERROR
        next_draw = 0.0
        try:
            while True:
                client.poll(0.1)
                now = time.monotonic()
                if state["dirty"] and now >= next_draw:
                    view = render(book, trades, args.depth, str(state["note"]))
                    print(view if args.plain else CLEAR + view, flush=True)
                    if args.plain:
                        print(flush=True)
                    state["dirty"] = False
                    next_draw = now + 0.1
                    views += 1
                    if args.updates and views >= args.updates:
                        return EXIT_OK
        except KeyboardInterrupt:
            return EXIT_OK


def print_line(rec: Any, as_json: bool) -> str:
    """One print as `md trades` shows it."""
    seq, side, qty, price, t = (
        int(rec[k]) for k in ("seq", "side", "quantity", "price", "time_ns")
    )
    name = SIDE.get(Side(side), "?")
    if as_json:
        return json.dumps({"seq": seq, "side": name, "quantity": qty, "price": price, "time_ns": t})
    return f"{seq:>10}  {name:>4}  {qty} @ {price}  {t} ns"


def cmd_md_trades(args: argparse.Namespace) -> int:
    """Print a symbol's last prints (or the seqs asked) that the sidecar keeps, oldest
    first, and say which of the range it no longer keeps."""
    from tradsys.client.trade_replay import ReplayRefusedError, fetch_trades, last_trades

    target = _target(args)
    if target is None:
        return EXIT_USER_ERROR
    _, snapshot, symbol = target
    try:
        if args.seqs:
            found = fetch_trades(snapshot, symbol, *args.seqs, timeout_s=args.timeout)
        else:
            found = last_trades(snapshot, symbol, args.last, timeout_s=args.timeout)
    except (ValueError, ReplayRefusedError) as exc:
        print(f"tradsys: {symbol}: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TimeoutError as exc:
        print(f"tradsys: {exc} (is `tradsys run` up with [md] enabled?)", file=sys.stderr)
        return EXIT_USER_ERROR
    for rec in found.prints:
        print(print_line(rec, args.json))
    for a, b in found.missing:
        what = f"seq {a}" if a == b else f"seqs {a}-{b}"
        print(f"tradsys: {symbol}: {what} no longer kept by the sidecar", file=sys.stderr)
    if not args.json and found.trade_seq == 0:
        print(f"tradsys: {symbol}: no trade printed yet", file=sys.stderr)
    return EXIT_OK
