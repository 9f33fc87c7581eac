"""`tradsys admin`: an operator's commands to a running instance's gateway.

    tradsys admin kill alice            # kill switch: cancel alice's orders, block new ones
    tradsys admin kill --all --off      # lift the global kill switch
    tradsys admin mass-cancel bob       # cancel bob's resting orders, block nothing
    tradsys admin reload                # account limits and keys from the config file
    tradsys admin halt ACME             # trading phases: halt, resume, auction-start,
    tradsys admin resume --all          #   auction-uncross, session-open, session-close

Accounts by name or id, symbols by name. A phase control is confirmed on the
market-data status channel when a sidecar runs: each symbol's phase is printed once the
engine has applied it (``ACME: HALTED (was CONTINUOUS)``), or that it was there already
(``ACME: already CONTINUOUS, nothing to do``). Exit 0 when the command was carried out or
had nothing to do, 1 when the gateway refused it (the reason is printed), the engine did
not apply a phase control (``ACME: still HALTED ...``: an auction-uncross of a halted
symbol, a resume during an auction call), or the instance is not running, 2 on an internal
error. See tradsys/cores/gateway_admin.py for the socket and its requests.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tradsys.exit_codes import EXIT_OK, EXIT_USER_ERROR


def register(subparsers: Any) -> None:
    """Add ``admin`` to the `tradsys` parser."""
    from tradsys.cores.gateway_admin import ACTIONS

    p = subparsers.add_parser(
        "admin",
        help="operator commands to a running gateway: kill switch, reload, halt/resume",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="admin_command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = sub.add_parser(name, help=text)
        c.add_argument("--config", help="the instance's TOML config (default: built-in)")
        return c

    kill = command("kill", "kill switch: cancel the account's orders and block new ones")
    _who(kill, "every account (the global switch)")
    kill.add_argument("--off", action="store_true", help="lift the kill switch instead")
    kill.set_defaults(func=cmd_kill)
    cancel = command("mass-cancel", "cancel the account's resting orders (blocks nothing)")
    _who(cancel, "every account")
    cancel.set_defaults(func=cmd_mass_cancel)
    reload = command("reload", "reload every [[account]]'s limits and API key from --config")
    reload.set_defaults(func=cmd_reload)
    for action in ACTIONS:
        m = command(action, f"send {action.upper().replace('-', '_')} to the symbol's shard")
        target = m.add_mutually_exclusive_group(required=True)
        target.add_argument("symbol", nargs="?", help="the symbol, by name")
        target.add_argument("--all", action="store_true", help="every symbol of every shard")
        m.set_defaults(func=cmd_market, action=action)


def _who(p: argparse.ArgumentParser, everyone: str) -> None:
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("account", nargs="?", help="the account, by name or id")
    target.add_argument("--all", action="store_true", help=everyone)


def _config(args: argparse.Namespace) -> Any:
    from tradsys.cli import UserError
    from tradsys.config import ConfigError, load_config

    try:
        return load_config(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def _send(args: argparse.Namespace, make: Any, config: Any = None) -> int:
    """Load the config (unless given), build the request from it, send it, print the
    outcome."""
    from tradsys.cli import UserError
    from tradsys.cores import gateway_admin

    config = config if config is not None else _config(args)
    try:
        reply = gateway_admin.request(config, make(config))
    except ConnectionError as exc:
        from tradsys.cli import relative_data_dir_hint

        raise UserError(f"{exc}{relative_data_dir_hint(config)}") from None
    if not reply.get("ok"):
        print(f"tradsys admin: refused: {reply.get('error')}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(reply.get("done", "done"))
    return EXIT_OK


def cmd_kill(args: argparse.Namespace) -> int:
    from tradsys.cores.gateway_admin import Kill

    return _send(args, lambda c: Kill(args.account, on=not args.off))


def cmd_mass_cancel(args: argparse.Namespace) -> int:
    from tradsys.cores.gateway_admin import MassCancel

    return _send(args, lambda c: MassCancel(args.account))


def cmd_reload(args: argparse.Namespace) -> int:
    """Reload the accounts; then name every other change the file makes to the running
    configuration, which the reload did not apply (it waits for a restart)."""
    from tradsys.cores.gateway_admin import Reload

    config = _config(args)
    rc = _send(args, lambda c: Reload(list(c.accounts)), config)
    if rc == EXIT_OK:
        for line in _not_reloaded(config):
            print(line, file=sys.stderr)
    return rc


def _not_reloaded(config: Any) -> list[str]:
    from tradsys.config import ConfigError
    from tradsys.config_diff import changed_keys
    from tradsys.cores.sidecar import CONFIG_FILE, read_effective_config

    try:
        running = read_effective_config(config.instance_dir / CONFIG_FILE)
    except ConfigError as exc:
        return [f"warning: cannot compare with the running configuration: {exc}"]
    changed = changed_keys(running, config, ignore=frozenset({"account"}))
    if not changed:
        return []
    return [
        "warning: not applied, these take a restart of the instance (only [[account]] "
        "sections reload):",
        *(f"  {key}" for key in changed),
    ]


# The phase each control leads to when the engine applies it (session-close only expires
# DAY orders: no phase to wait for).
EXPECTED_PHASE = {
    "halt": "HALTED",
    "resume": "CONTINUOUS",
    "auction-start": "AUCTION",
    "auction-uncross": "CONTINUOUS",
    "session-open": "CONTINUOUS",
}
CONFIRM_S = 2.0


def cmd_market(args: argparse.Namespace) -> int:
    """Send the control; then, when a market-data sidecar runs, wait on its status
    channel until every symbol is in the phase the control leads to, and say so per
    symbol (exit 1 for one that is not: the engine did not apply the control there)."""
    from tradsys.cores.gateway_admin import Market
    from tradsys.cores.sidecar import read_announcement
    from tradsys.matching.instrument import symbol_named

    config = _config(args)
    names = [i.symbol for i in config.instruments]
    symbols = names if args.all else [symbol_named(args.symbol, names) or args.symbol]
    send = lambda c: Market(args.action, None if args.all else args.symbol)  # noqa: E731
    md = read_announcement(config, "md")
    wanted = EXPECTED_PHASE.get(args.action)
    if wanted is None or md is None or not set(symbols) <= set(md.get("symbols", [])):
        rc = _send(args, send, config)
        if rc == EXIT_OK and wanted is not None:
            print("not confirmed: no market-data sidecar runs to tell the phase")
        return rc
    return _send_and_confirm(args, send, config, md, symbols, wanted)


def _send_and_confirm(
    args: argparse.Namespace, send: Any, config: Any, md: dict[str, Any], symbols: list[str],
    wanted: str,
) -> int:  # fmt: skip
    import contextlib

    from tradsys.client.phase_watch import PhaseWatch
    from tradsys.matching.api import Phase

    watching = PhaseWatch(str(md["publish"][0]), str(md["snapshot"]), symbols)
    with contextlib.closing(watching) as watch:
        known = watch.wait_known(CONFIRM_S)
        before = watch.phases()
        rc = _send(args, send, config)
        if rc != EXIT_OK:
            return rc
        after = watch.wait_for(Phase[wanted], CONFIRM_S)
        self_ending = {s for s in symbols if watch.reopens_by_itself(s)}
    failed = False
    for sym in symbols:
        now, was = after[sym], before[sym]
        was_text = f" (was {was.name})" if was is not None else ""
        if now is not None and now.name == wanted:
            if was is not None and was.name == wanted:
                # not an error: the symbol is where the operator wants it
                print(f"{sym}: already {wanted}, nothing to do")
                if wanted == "AUCTION" and sym in self_ending:
                    print(
                        f"{sym}: this call is a volatility auction's and reopens by itself; "
                        "to hold it until an auction-uncross: halt, then auction-start"
                    )
            else:
                print(f"{sym}: {now.name}{was_text}")
            continue
        failed = True
        state = now.name if now is not None else "unknown (the feed did not say)"
        print(
            f"{sym}: still {state} after {CONFIRM_S:.0f} s: the engine did not apply "
            f"{args.action} there (resume applies to a halted symbol, auction-uncross to "
            "an auction call)",
            file=sys.stderr,
        )
    if not known:
        print("(some phases were unknown before the command was sent)", file=sys.stderr)
    return EXIT_USER_ERROR if failed else EXIT_OK
