"""The smallest instance a test can start: one shard worker serving ACME, with whatever
``[engine]`` keys and other sections the test adds. Shared so that the many tests that
only need *an* instance spell it once."""

from __future__ import annotations

from pathlib import Path


def one_shard_instance(instance: str, data_dir: Path, engine: str = "", sections: str = "") -> str:
    """TOML: ``[engine]`` with the instance, its data dir and small rings (plus
    ``engine`` lines), then ``sections``, then one shard and the ACME instrument."""
    return f"""
[engine]
instance = "{instance}"
data_dir = "{data_dir}"
ring_capacity = 1024
{engine}
{sections}
[[shard]]
id = 0
[[instrument]]
symbol = "ACME"
symbol_id = 1
reference_price = 100
"""


def numbered_instruments(n: int, reference_price: int) -> list[str]:
    """TOML lines of ``n`` instruments S00000, S00001, ... (symbol ids from 1): the many
    symbols a scale test configures."""
    lines: list[str] = []
    for i in range(n):
        lines += ["[[instrument]]", f'symbol = "S{i:05d}"', f"symbol_id = {i + 1}"]
        lines.append(f"reference_price = {reference_price}")
    return lines
