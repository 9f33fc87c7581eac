"""Before an instance starts: does its configuration fit the state it left on disk?

Why here, before any process starts: each worker changes its shard's state as it comes
up (it adds the instruments new in the configuration and snapshots them at once), so a
refusal found by one worker after another has started would leave a disk that neither
the old configuration nor the new one can start from. Read-only, and cheap: each shard's
newest good snapshot is walked, not restored (tradsys.journal.held).

What it refuses, every problem named in one message:

- a ``shard-N`` folder with journal or snapshot files whose shard is not configured
  (a renumbered or dropped shard: its books, its orders and its exec ids would be
  forgotten, and the ids used again);
- a configured symbol whose book lies on another shard (the journal cannot follow a
  move);
- a book with resting orders whose symbol id is no longer configured (removed, or given
  a new id): no command could reach those orders, yet they stay in the book;
- a book with resting orders whose symbol id now names another symbol than in the
  previous run (its effective config, ``config.json``; snapshots hold ids, not names):
  the orders would trade as the other symbol;
- a symbol whose instrument settings differ from those its book was made with: the
  book keeps its own (they are part of its state, replayed with its journal), while
  clients would be told the configured ones.

An empty book of a symbol no longer configured is not a problem: delisting a symbol
once its orders are gone is allowed (the book stays in the snapshot, unreachable).
"""

from __future__ import annotations

import json
import re

from tradsys.config import Config, symbol_placement
from tradsys.cores.sidecar import CONFIG_FILE
from tradsys.journal.files import list_segments, list_snapshots
from tradsys.journal.held import HeldState, held_state, instrument_settings

_SHARD_DIR = re.compile(r"shard-(\d+)$")


class StateMismatchError(Exception):
    """The configuration does not fit the instance's state on disk; nothing was changed."""


def check_state(config: Config) -> None:
    """Raise StateMismatchError naming every way ``config`` does not fit the state its
    instance left in ``config.instance_dir``; return when it fits (or there is none)."""
    problems = _unconfigured_shards(config)
    held = {
        shard.id: state
        for shard in config.shards
        if (state := held_state(config.shard_data_dir(shard.id), shard.id)) is not None
    }
    problems += _misplaced(config, held)
    problems += _renamed(config, held)
    if problems:
        raise StateMismatchError(
            "the configuration does not fit the state this instance left in "
            f"{config.instance_dir} (nothing was started or changed): " + "; ".join(problems)
        )


def _previous_names(config: Config) -> dict[int, str]:
    """symbol_id -> symbol in the previous run's effective config; {} when there is none
    or it cannot be read (read loosely: only these two fields, whatever its version)."""
    try:
        doc = json.loads((config.instance_dir / CONFIG_FILE).read_bytes())
        return {int(i["symbol_id"]): str(i["symbol"]) for i in doc.get("instrument", [])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _renamed(config: Config, held: dict[int, HeldState]) -> list[str]:
    before = _previous_names(config)
    now = {ins.symbol_id: ins.symbol for ins in config.instruments}
    out = []
    for state in held.values():
        for symbol_id, book in sorted(state.books.items()):
            old, new = before.get(symbol_id), now.get(symbol_id)
            if book.orders and old is not None and new is not None and old != new:
                out.append(
                    f"symbol_id {symbol_id} was {old} in the previous run and is {new} now, "
                    f"and its book holds {book.orders} resting order(s) of {old}, which "
                    f"would trade as {new}: put the name back, or cancel those orders first"
                )
    return out


def _unconfigured_shards(config: Config) -> list[str]:
    configured = {shard.id for shard in config.shards}
    out: list[str] = []
    if not config.instance_dir.is_dir():
        return out
    for path in sorted(config.instance_dir.iterdir()):
        m = _SHARD_DIR.match(path.name)
        if not m or not path.is_dir() or int(m.group(1)) in configured:
            continue
        shard = int(m.group(1))
        if list_segments(path, shard) or list_snapshots(path, shard):
            out.append(
                f"{path} holds the journal of shard {shard}, which the configuration no "
                f"longer has: configure [[shard]] id = {shard} again (its books, orders "
                "and exec ids would otherwise be forgotten), or move the folder away to "
                "drop that state for good"
            )
    return out


def _misplaced(config: Config, held: dict[int, HeldState]) -> list[str]:
    placement = symbol_placement(config)
    by_id = {ins.symbol_id: ins for ins in config.instruments}
    out = []
    for shard_id, state in sorted(held.items()):
        for symbol_id, book in sorted(state.books.items()):
            ins = by_id.get(symbol_id)
            if ins is None:
                if book.orders:
                    out.append(
                        f"shard {shard_id}'s book of symbol_id {symbol_id} holds "
                        f"{book.orders} resting order(s), and no [[instrument]] has that "
                        "symbol_id any more (removed, or given a new id): put it back, "
                        "cancel those orders (their owners, or `tradsys admin mass-cancel "
                        "ACCOUNT`), then remove it"
                    )
                continue
            home = placement[ins.symbol]
            if home != shard_id:
                out.append(
                    f"{ins.symbol}'s book (symbol_id {symbol_id}, {book.orders} resting "
                    f"order(s)) is on shard {shard_id}, and the configuration places it on "
                    f"shard {home}: a journal cannot follow a move; place it on shard "
                    f"{shard_id} again ([[shard]] symbols)"
                )
                continue
            wanted = instrument_settings(ins)
            changed = [
                f"{name} {book.settings[name]} in its book, {wanted[name]} configured"
                for name in wanted
                if wanted[name] != book.settings[name]
            ]
            if changed:
                out.append(
                    f"{ins.symbol} (symbol_id {symbol_id}): " + ", ".join(changed) + "; a "
                    "book keeps the settings it was made with: put them back, or list the "
                    "symbol under a new symbol_id once its orders are gone (see README, "
                    "Configuration)"
                )
    return out
