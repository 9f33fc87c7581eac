"""changed_keys names each difference as an operator writes the key."""

from __future__ import annotations

from tradsys.config import parse_config
from tradsys.config_diff import changed_keys

BASE = """
[engine]
wait = "spin-park"
[[shard]]
id = 0
symbols = ["A"]
[[instrument]]
symbol = "A"
symbol_id = 1
"""


def test_equal_configs_differ_in_nothing() -> None:
    assert changed_keys(parse_config(BASE, "a"), parse_config(BASE, "b")) == []


def test_sections_keys_and_list_elements_are_named() -> None:
    edited = BASE.replace('"spin-park"', '"busy-spin"') + (
        '[metrics]\nlisten = "127.0.0.1:0"\n'
        '[[shard]]\nid = 1\nsymbols = ["B"]\n'
        '[[instrument]]\nsymbol = "B"\nsymbol_id = 2\n'
    )
    edited = edited.replace("symbol_id = 1\n", "symbol_id = 1\nband_bps = 250\n")
    assert changed_keys(parse_config(BASE, "a"), parse_config(edited, "b")) == [
        "engine.wait",
        "instrument A: band_bps",
        "instrument B (added)",
        "metrics.listen",
        "shard 1 (added)",
    ]


def test_ignored_sections_are_skipped() -> None:
    with_account = BASE + "[[account]]\nid = 1\nname = 'x'\napi_key_sha256 = '" + "0" * 64 + "'\n"
    old, new = parse_config(BASE, "a"), parse_config(with_account, "b")
    assert changed_keys(old, new) == ["account 1 (added)"]
    assert changed_keys(old, new, ignore=frozenset({"account"})) == []
