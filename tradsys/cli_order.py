"""`tradsys order ...`: order entry for a person at a terminal.

    tradsys order submit ACME buy 10 --price 10001 --account alice
    tradsys order cancel 1234 ACME --account alice
    tradsys order mass-cancel --account alice
    tradsys order watch --account alice          # print the account's events
    tradsys order shell --account alice          # one session, commands typed line by line

It finds the running gateway through its announcement (``<instance_dir>/gateway.json``),
connects colocated (Unix socket) unless ``--tcp`` is given, and takes the API key from
``--api-key`` or the environment variable ``TRADSYS_API_KEY``. Symbols are names from the
config. A session ends when the command does, and an account with cancel_on_disconnect
(the default) loses its resting orders then: use ``shell`` to keep orders working.

A new session of an account first gets what the account's earlier sessions left unread
(and the events of their orders since): those lines end ``(an earlier session's order)``,
and only the orders a command sent decide its exit code (1 if one was rejected).
"""

from __future__ import annotations

import argparse
import os
import select
import shlex
import sys
import time
from typing import Any, NoReturn

from tradsys.cli_args import seconds
from tradsys.client.events import Ack, Cancelled, Event, Fill, Reject, Replaced
from tradsys.client.orders import Disconnected, LoginFailed, OrderClient, OrderRejected
from tradsys.config import Config, ConfigError, load_config
from tradsys.cores.sidecar import read_announcement
from tradsys.exit_codes import EXIT_INTERNAL, EXIT_OK, EXIT_USER_ERROR
from tradsys.matching.instrument import symbol_named
from tradsys.protocols.binary import LoginRejectReason

# a command waits this long for its own first answer, whatever --wait says: the answer
# decides its exit code
ANSWER_S = 5.0
EARLIER = "  (an earlier session's order)"
# the shell waits on stdin this long at a time, then shows what the session got meanwhile
SHELL_LOOK_S = 0.05


class OrderCliError(Exception):
    """A mistake the user can fix; printed without a traceback, exit code 1."""


def _config(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise OrderCliError(str(exc)) from None


def _account_id(config: Config, value: str) -> int:
    for acc in config.accounts:
        if value in (acc.name, str(acc.id)):
            return acc.id
    names = ", ".join(f"{a.name} ({a.id})" for a in config.accounts) or "none"
    raise OrderCliError(f"no account {value!r} in the config; accounts: {names}")


def _cancels_on_disconnect(config: Config, account: str) -> bool:
    return any(a.cancel_on_disconnect for a in config.accounts if account in (a.name, str(a.id)))


def _symbols(config: Config) -> dict[str, int]:
    return {i.symbol: i.symbol_id for i in config.instruments}


def _symbol_id(config: Config, name: str) -> int:
    symbols = _symbols(config)
    found = symbol_named(name, symbols)
    if found is not None:
        return symbols[found]
    raise OrderCliError(f"unknown symbol {name!r}; configured: {', '.join(symbols)}")


def _connect(args: argparse.Namespace, config: Config) -> OrderClient:
    if not args.account:
        raise OrderCliError("name the account with --account NAME (before or after the verb)")
    key = args.api_key or os.environ.get("TRADSYS_API_KEY")
    if not key:
        raise OrderCliError("give the account's API key with --api-key or TRADSYS_API_KEY")
    ann = read_announcement(config, "gateway")
    if ann is None:
        from tradsys.cli import relative_data_dir_hint

        where = config.instance_dir.absolute() / "gateway.json"
        raise OrderCliError(
            f"the gateway of instance {config.engine.instance!r} is not running "
            f"(no {where}): start it with `tradsys run`{relative_data_dir_hint(config)}"
        )
    if args.tcp:
        if not ann.get("tcp"):
            raise OrderCliError("the gateway serves no TCP (gateway.tcp_listen is empty)")
        address = f"tcp://{ann['tcp']}"
    else:
        address = str(ann["unix_socket"])
    try:
        return OrderClient.connect(
            address, account_id=_account_id(config, args.account), api_key=key
        )
    except LoginFailed as exc:
        try:
            reason = LoginRejectReason(exc.reason).name
        except ValueError:
            reason = f"reason {exc.reason}"
        raise OrderCliError(f"login refused: {reason} ({exc.text})") from None
    except Disconnected as exc:
        raise OrderCliError(f"cannot reach the gateway: {exc}") from None


def describe(event: Event, names: dict[int, str]) -> str:
    """One line for a person: what happened to which order."""
    fields = {f: getattr(event, f) for f in event.__struct_fields__}
    fields.pop("order_id", None)  # a StatusEnd names its request instead
    sym = names.get(fields.pop("symbol_id"), "?")
    detail = " ".join(
        f"{k}={getattr(v, 'name', v)}".replace("=True", "").replace(" maker=False", "")
        for k, v in fields.items()
    )
    line = f"{type(event).__name__:<9} order {event.order_id} {sym} {detail}"
    return f"{line}: {event.text}" if isinstance(event, Reject) else line


# ---- the verbs (shared by the one-shot commands and the shell) ---------------------------


def _verb_parser(
    parser: argparse.ArgumentParser, parents: list[argparse.ArgumentParser] | None = None
) -> argparse._SubParsersAction[Any]:
    verbs = parser.add_subparsers(dest="verb", required=True)
    parents = parents or []
    sub = verbs.add_parser(
        "submit", help="send a new order and print what happens to it", parents=parents
    )
    sub.add_argument("symbol")
    sub.add_argument("side", choices=["buy", "sell"])
    sub.add_argument("quantity", type=int)
    sub.add_argument("--price", type=int, help="limit price (none: a market order)")
    sub.add_argument(
        "--tif",
        choices=["gtc", "day", "ioc", "fok"],
        help="time in force (default: gtc; ioc for a market order, i.e. no --price and no "
        "--stop: a market order must be ioc or fok)",
    )
    sub.add_argument("--post-only", action="store_true")
    sub.add_argument("--stop", type=int, help="stop price (a stop / stop-limit order)")
    sub.add_argument("--display", type=int, help="visible quantity (an iceberg)")
    sub.add_argument("--order-id", type=int, help="client order id (default: chosen)")
    cancel = verbs.add_parser("cancel", help="cancel one order", parents=parents)
    cancel.add_argument("order_id", type=int)
    cancel.add_argument("symbol")
    rep = verbs.add_parser(
        "replace", help="new price and total quantity for an order", parents=parents
    )
    rep.add_argument("order_id", type=int)
    rep.add_argument("symbol")
    rep.add_argument("--price", type=int, required=True)
    rep.add_argument("--quantity", type=int, required=True)
    mass = verbs.add_parser(
        "mass-cancel", help="cancel every order of the account", parents=parents
    )
    mass.add_argument("symbol", nargs="?", help="only this symbol")
    status = verbs.add_parser(
        "status", help="list the account's live orders, as the gateway holds them", parents=parents
    )
    status.add_argument("symbol", nargs="?", help="only this symbol")
    return verbs


def _run_verb(
    args: argparse.Namespace, config: Config, client: OrderClient, orders: _SentOrders
) -> int:
    """Send the command; return the order id its answers carry (0 for a mass cancel). A
    value the client refuses to encode (an order id out of its field's range) is the
    user's to fix. ``orders``: what this session sent (a status prints their events
    that came before its answer as this session's)."""
    try:
        return _send_verb(args, config, client, orders)
    except ValueError as exc:
        raise OrderCliError(str(exc)) from None


def _send_verb(
    args: argparse.Namespace, config: Config, client: OrderClient, orders: _SentOrders
) -> int:
    if args.verb == "submit":
        return client.submit(
            _symbol_id(config, args.symbol),
            args.side,
            args.quantity,
            args.price,
            order_id=args.order_id,
            tif=args.tif or None,  # none given: the client's default for the type
            post_only=args.post_only,
            stop_price=args.stop,
            display_qty=args.display,
        )
    if args.verb == "cancel":
        client.cancel(args.order_id, _symbol_id(config, args.symbol))
        return int(args.order_id)
    if args.verb == "replace":
        sym = _symbol_id(config, args.symbol)
        client.replace(args.order_id, price=args.price, quantity=args.quantity, symbol_id=sym)
        return int(args.order_id)
    if args.verb == "status":
        _print_status(config, args, client, orders)
        return 0
    client.mass_cancel(_symbol_id(config, args.symbol) if args.symbol else 0)
    what = f"{symbol_named(args.symbol, _symbols(config))} only" if args.symbol else "every symbol"
    print(f"mass cancel sent: every order of the account, {what}", flush=True)
    return 0  # the command's own order id: a reject of it carries 0


def _print_status(
    config: Config, args: argparse.Namespace, client: OrderClient, orders: _SentOrders
) -> None:
    """One line per live order of the account, by client order id, then how many. The
    events the session got before the answer are printed first, where they belong: the
    listing already counts them (a new session first gets what the account's earlier
    sessions left unread, which used to come after the listing, as if news)."""
    names = {v: k for k, v in _symbols(config).items()}
    try:
        live = client.order_status(_symbol_id(config, args.symbol) if args.symbol else 0)
    except TimeoutError:
        raise OrderCliError("the gateway did not answer the status request in 5 s") from None
    _print_events(client, names, 0.0, orders)
    for order in live:
        side = str(getattr(order.side, "name", order.side)).lower()
        print(
            f"order {order.order_id} {names.get(order.symbol_id, '?')} {side} "
            f"price={order.price} quantity={order.quantity} leaves={order.leaves_qty} "
            f"{getattr(order.state, 'name', order.state)}",
            flush=True,
        )
    where = f" in {symbol_named(args.symbol, _symbols(config))}" if args.symbol else ""
    print(f"{len(live)} live order(s) of the account{where}", flush=True)


class _SentOrders:
    """The order ids a command (or a shell) sent, and which of them rest, as far as their
    events have said."""

    def __init__(self) -> None:
        self.ours: set[int] = set()
        self.resting: set[int] = set()

    def owns(self, event: Event) -> bool:
        """Whether ``event`` answers what this command (or shell) sent. Order id 0 is the
        id of a mass cancel or status request, whose reject carries it -- and of an order
        restored without its client id (the ledger lacked it), which is an earlier
        session's: only a reject of 0 is ours."""
        if event.order_id == 0:
            return 0 in self.ours and isinstance(event, Reject)
        return event.order_id in self.ours

    def note(self, event: Event) -> None:
        if isinstance(event, Ack | Replaced) and event.leaves_qty > 0:
            self.resting.add(event.order_id)
        elif isinstance(event, Cancelled) or (isinstance(event, Fill) and event.leaves_qty == 0):
            self.resting.discard(event.order_id)


def _print_events(
    client: OrderClient,
    names: dict[int, str],
    wait: float,
    orders: _SentOrders | None = None,
    answer_of: int = 0,
) -> int:
    """Print events until none comes for ``wait`` s -- but first, whatever ``wait``, until
    one answers order ``answer_of`` (0: none to wait for), for up to ANSWER_S; 1 if one of
    ``orders`` was rejected, 2 if the answer did not come. An event of another order is
    labelled: a new session first gets what the account's earlier sessions left unread,
    and its orders' events since (``orders`` None: none is labelled, as ``watch`` prints
    the account's stream)."""
    status = EXIT_OK

    def show(event: Event) -> None:
        nonlocal status
        ours = orders is None or orders.owns(event)
        if orders is not None and ours:  # before the line: a Ctrl-C after it sees the order
            orders.note(event)
        print(describe(event, names) + ("" if ours else EARLIER), flush=True)
        if ours and isinstance(event, Reject):
            status = EXIT_USER_ERROR

    deadline = time.monotonic() + ANSWER_S
    while answer_of:
        left = deadline - time.monotonic()
        if left <= 0:
            print(
                f"tradsys order: no answer to order {answer_of} in {ANSWER_S:g} s; it goes "
                "to the account's next session",
                file=sys.stderr,
            )
            return EXIT_INTERNAL
        for event in client.poll(left):
            show(event)
            answer_of = 0 if event.order_id == answer_of else answer_of
    for event in client.events(wait):
        show(event)
    return status


def _resting_note(config: Config, args: argparse.Namespace, orders: _SentOrders) -> None:
    """Say so when an order this command sent or replaced rests, and is therefore
    cancelled as the command's session ends."""
    if not orders.resting or not _cancels_on_disconnect(config, args.account):
        return
    took = "; a replace takes the order over into this command's session"
    if args.verb == "shell":
        what, then = "the shell", "; a session of an account without it keeps them"
    else:
        what = "this command"
        then = (took if args.verb == "replace" else "") + (
            "; use `tradsys order shell` to keep orders working"
        )
    print(
        f"note: order {', '.join(map(str, sorted(orders.resting)))} is cancelled as {what} "
        "exits: the account cancels a session's resting orders when the session ends "
        f"(cancel_on_disconnect){then}",
        file=sys.stderr,
    )


def cmd_order(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
        names = {v: k for k, v in _symbols(config).items()}
        with _connect(args, config) as client:
            if args.verb == "watch":
                print("watching; Ctrl-C stops", file=sys.stderr, flush=True)
                while True:
                    _print_events(client, names, 3600.0)
            if args.verb == "shell":
                return _shell(args, config, client, names)
            orders = _SentOrders()
            oid = _run_verb(args, config, client, orders)
            orders.ours.add(oid)
            try:
                status = _print_events(client, names, args.wait, orders, answer_of=oid)
            except KeyboardInterrupt:  # the wait cut short: what the order does now is said
                status = EXIT_OK
            _resting_note(config, args, orders)
            return status
    except OrderCliError as exc:
        print(f"tradsys order: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (Disconnected, OrderRejected) as exc:
        print(f"tradsys order: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


class _ParserExitError(Exception):
    """argparse would end the process (a verb's ``--help`` was typed in the shell, and
    printed): the shell goes on instead."""


class _ShellParser(argparse.ArgumentParser):
    """A line's parser: a mistake is an error message and ``--help`` prints the help, and
    neither ends the shell (argparse would exit the process)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise OrderCliError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message, sys.stderr)
        raise _ParserExitError


class _StdinLines:
    """Lines typed on stdin, read from its file descriptor so that waiting for one can be
    bounded: a buffered ``readline`` blocks until a whole line comes, and ``select``
    cannot see lines a buffer already holds."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def next(self, timeout: float) -> str | None:
        """The next line (with its newline), "" at the end of the input, None if no whole
        line came within ``timeout`` seconds."""
        if b"\n" not in self.buf and not self.eof:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if ready:
                chunk = os.read(self.fd, 65536)
                self.buf += chunk
                self.eof = not chunk
        if b"\n" in self.buf:
            line, _, self.buf = self.buf.partition(b"\n")
            return line.decode(errors="replace") + "\n"
        if self.eof:
            line, self.buf = self.buf, b""
            return line.decode(errors="replace")
        return None


SHELL_HELP = """commands (each verb's --help says more):
  submit SYMBOL buy|sell QTY [--price P] [--tif T] ...   a new order
  cancel ORDER_ID SYMBOL                                  cancel one order
  replace ORDER_ID SYMBOL --price P --quantity Q          new price and total quantity
  mass-cancel [SYMBOL]                                    every order of the account
  status [SYMBOL]                                         the account's live orders
  help                                                    this text
  quit                                                    drain the session's events, end it
Events are printed as they come, also while the prompt waits."""


def _shell(
    args: argparse.Namespace, config: Config, client: OrderClient, names: dict[int, str]
) -> int:
    """Commands typed one per line (the verbs of `tradsys order`), one session. Events are
    printed as they come, also while the prompt waits for a line; at ``quit``, the end of
    the input or Ctrl-C the session's remaining events are printed before it ends, so
    none is left unread (those would go to the account's next session)."""
    parser = _ShellParser(prog="", add_help=False)
    _verb_parser(parser)
    interactive = sys.stdin.isatty()
    lines = _StdinLines(sys.stdin.fileno())
    orders = _SentOrders()
    prompted = False
    try:
        while True:
            if interactive and not prompted:
                print("order> ", end="", flush=True)
                prompted = True
            line = lines.next(SHELL_LOOK_S)
            if line is None:  # nothing typed: show what came meanwhile
                events = client.poll(0.0)
                if events and interactive:
                    print("\r\x1b[K", end="")  # over the prompt; it comes again below
                    prompted = False
                for event in events:
                    label = "" if orders.owns(event) else EARLIER
                    print(describe(event, names) + label, flush=True)
                continue
            prompted = False
            if not line:
                break
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if text in ("quit", "exit"):
                break
            if text in ("help", "?"):
                print(SHELL_HELP, flush=True)
                continue
            try:
                verb = parser.parse_args(shlex.split(text))
                orders.ours.add(_run_verb(verb, config, client, orders))
            except _ParserExitError:
                sys.stdout.flush()
                continue
            except (OrderCliError, ValueError) as exc:
                print(f"error: {exc}", flush=True)
                continue
            _print_events(client, names, args.wait, orders)
    except KeyboardInterrupt:
        if interactive:
            print()
    _print_events(client, names, args.wait, orders)
    _resting_note(config, args, orders)  # they went quietly at quit before
    return EXIT_OK


def _session_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The session's options. They are accepted before the verb and after it (`tradsys
    order --account alice submit ...` and `tradsys order submit ... --account alice`); the
    copies after the verb default to SUPPRESS so they never overwrite a value given before
    it (argparse applies a subparser's defaults last)."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--config", default=default(None), help="the instance's TOML config (default: built-in)"
    )
    parser.add_argument("--account", default=default(None), help="account name or id (required)")
    parser.add_argument(
        "--api-key", default=default(None), help="the account's API key (or TRADSYS_API_KEY)"
    )
    parser.add_argument(
        "--tcp",
        action="store_true",
        default=default(False),
        help="connect over TCP, not colocated",
    )
    parser.add_argument(
        "--wait",
        type=seconds,
        default=default(0.5),
        help="seconds to wait for more events once the command has its own answer (which it "
        "waits for up to 5 s whatever this says; default 0.5)",
    )


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `tradsys order` to the main parser."""
    order = subparsers.add_parser("order", help="submit, cancel, replace, watch orders")
    _session_options(order, defaults=True)
    after_verb = argparse.ArgumentParser(add_help=False)
    _session_options(after_verb, defaults=False)
    verbs = _verb_parser(order, [after_verb])
    verbs.add_parser("watch", help="print the account's events until Ctrl-C", parents=[after_verb])
    verbs.add_parser("shell", help="one session; type commands line by line", parents=[after_verb])
    order.set_defaults(func=cmd_order)
