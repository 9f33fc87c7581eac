"""What changed between two configurations, named as an operator writes the keys.

Why: ``tradsys admin reload`` applies the ``[[account]]`` sections alone; every other
change in the file waits for a restart. Said "reloaded" and nothing more, an operator
who also edited ``engine.wait`` or an instrument's band believes it applied (audit W).
The reload lists what it did not apply, by these names."""

from __future__ import annotations

from typing import Any

import msgspec

from tradsys.config import Config

# list sections: their elements are named by this key, not by their position
_ELEMENT_KEYS = {"shard": "id", "instrument": "symbol", "account": "id"}


def changed_keys(old: Config, new: Config, *, ignore: frozenset[str] = frozenset()) -> list[str]:
    """Every key whose value differs, as ``section.key``, ``instrument ACME: band_bps``
    or ``shard 1 (added)``; top-level sections in ``ignore`` are skipped."""
    before = msgspec.to_builtins(old)
    after = msgspec.to_builtins(new)
    out: list[str] = []
    for section in sorted(set(before) | set(after)):
        if section in ignore:
            continue
        a, b = before.get(section), after.get(section)
        if a == b:
            continue
        name_key = _ELEMENT_KEYS.get(section)
        if name_key is not None and isinstance(a, list) and isinstance(b, list):
            out.extend(_list_changes(section, name_key, a, b))
        elif isinstance(a, dict) and isinstance(b, dict):
            out.extend(_dict_changes(section + ".", a, b))
        else:
            out.append(section)
    return out


def _dict_changes(prefix: str, a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [f"{prefix}{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _list_changes(section: str, key: str, a: list[Any], b: list[Any]) -> list[str]:
    old = {e.get(key): e for e in a}
    new = {e.get(key): e for e in b}
    out = []
    for name in sorted(set(old) | set(new), key=str):
        if name not in new:
            out.append(f"{section} {name} (removed)")
        elif name not in old:
            out.append(f"{section} {name} (added)")
        elif old[name] != new[name]:
            keys = _dict_changes("", old[name], new[name])
            out.append(f"{section} {name}: {', '.join(keys)}")
    return out
