"""The ``[[account]]`` tables the gateway tests put in their configuration texts: one per
key, named ``acct<id>``, with whatever each test adds per account."""

from __future__ import annotations

from collections.abc import Callable

from tradsys.cores.gateway_auth import key_digest


def account_tables(keys: dict[int, str], extra: Callable[[int], str] = lambda i: "") -> str:
    """TOML for every account in ``keys`` (id → API key); ``extra(id)`` adds lines."""
    return "\n".join(
        f'[[account]]\nid = {i}\nname = "acct{i}"\napi_key_sha256 = "{key_digest(k)}"\n' + extra(i)
        for i, k in keys.items()
    )
