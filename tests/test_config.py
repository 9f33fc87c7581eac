"""Config: the built-in default is valid, and every kind of mistake is refused with a
message naming the file and the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tradsys.config import ConfigError, available_cores, load_config, parse_config, symbol_placement

BASE = """
[[shard]]
id = 0
[[instrument]]
symbol = "A"
symbol_id = 1
"""

ACCOUNT = "[[account]]\nid = {}\nname = '{}'\napi_key_sha256 = '{}'\n"


def test_builtin_default_is_valid_and_puts_every_symbol_on_one_shard() -> None:
    config = load_config()
    assert [s.id for s in config.shards] == [0]
    assert {i.symbol for i in config.symbols_of(0)} == {i.symbol for i in config.instruments}
    assert config.engine.wait == "spin-park"
    assert all(s.core is None for s in config.shards)


def test_a_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BASE + '[engine]\ninstance = "x1"\n')
    assert load_config(path).engine.instance == "x1"


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*nope\.toml"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "[engine]\ninstanc = 'x'\n", r"c\.toml: .*unknown field `instanc`.*\$\.engine"),
        (BASE + "[journal]\ndurability = 'sometimes'\n", r"c\.toml: .*\$\.journal\.durability"),
        (BASE + "[engine]\nring_capacity = 1000\n", r"ring_capacity 1000: must be a power of two"),
        (
            BASE + "[gateway]\nsession_ring_capacity = 100\n",
            r"gateway\.session_ring_capacity 100: must be a power of two in 8\.\.2\^30",
        ),
        (
            BASE + "[gateway]\nstalled_session_ms = -1\n",
            r"gateway\.stalled_session_ms -1: must be in 0\.\.2\^31-1 \(0: never end",
        ),
        (
            BASE + "[gateway]\nsession_ring_capacity = 4\n",
            r"gateway\.session_ring_capacity 4: must be a power of two",
        ),
        (
            "[[shard]]\nid = 0\ncore = 4096\n" + BASE.split("[[shard]]\nid = 0")[1],
            r"shard 0: core 4096 does not exist on this host",
        ),
        (
            BASE + "[[shard]]\nid = 1\nsymbols = ['A']\n[[shard]]\nid = 2\nsymbols = ['A']\n",
            r"symbol 'A' is on two shards \(1 and 2\)",
        ),
        (BASE + "[[shard]]\nid = 1\nsymbols = ['Z']\n", r"symbol 'Z' is not an \[\[instrument\]\]"),
        (BASE + "[[shard]]\nid = 0\n", r"shard 0: the id is used twice"),
        (BASE + "[[instrument]]\nsymbol = 'B'\nsymbol_id = 1\n", r"symbol_id 1 is already 'A'"),
        (BASE + "[[instrument]]\nsymbol = 'A'\nsymbol_id = 2\n", r"'A' is configured twice"),
        (
            BASE + "[[instrument]]\nsymbol = 'C'\nsymbol_id = 3\nlot_size = 0\n",
            r"instrument 'C': lot_size must be > 0",
        ),
        ("[[instrument]]\nsymbol = 'A'\nsymbol_id = 1\n", r"no \[\[shard\]\]"),
        ("[[shard]]\nid = 0\n", r"no \[\[instrument\]\]"),
        ("[engine\n", r"c\.toml: not valid TOML"),
        (
            BASE + "[md]\npublish = ['udp://x:1']\n",
            r"md\.publish 'udp://x:1': use a tcp:// or ipc://",
        ),
        (BASE + "[md]\nmax_frame_records = 0\n", r"md\.max_frame_records 0: must be in 1\.\.65536"),
        (BASE + "[md]\nexternal_reader = true\n", r"md\.external_reader: only with enabled"),
        (BASE + "[md]\nsndhwm = -1\n", r"md\.sndhwm -1: must be in 1\.\.2\^31-1"),
        # numbers past the native side's fixed-width fields (they stopped a process at
        # start with a traceback, or wrapped around)
        (BASE + "[md]\nsndhwm = 1099511627776\n", r"md\.sndhwm 1099511627776: must be in"),
        (BASE + "[journal]\nsegment_mb = 1125899906842624\n", r"journal\.segment_mb .*1\.\.65536"),
        (BASE + "[engine]\nring_capacity = 2147483648\n", r"ring_capacity .* in 64\.\.2\^30"),
        (BASE + "[gateway]\nheartbeat_ms = 0\n", r"gateway\.heartbeat_ms 0: must be in 1\.\."),
        (BASE + "[gateway]\nheartbeat_ms = -1\n", r"gateway\.heartbeat_ms -1: must be in"),
        (BASE + "[gateway]\nlogin_timeout_ms = 0\n", r"gateway\.login_timeout_ms 0: must be"),
        (
            BASE + "[gateway]\ntcp_listen = '127.0.0.1:70000'\n",
            r"gateway\.tcp_listen '127\.0\.0\.1:70000': use host:port, port in 0\.\.65535",
        ),
        (BASE + "[metrics]\nlisten = '127.0.0.1:99999'\n", r"metrics\.listen '127\.0\.0\.1:99999'"),
        (
            BASE + "[[instrument]]\nsymbol = 'B'\nsymbol_id = 2\ntick_size = 9223372036854775808\n",
            r"instrument 'B': tick_size must be at most 2\^63-1",
        ),
        (
            BASE + ACCOUNT.format(1, "a", "0" * 64) + "credit_limit = 9223372036854775808\n",
            r"account 1 \('a'\): credit_limit must be in 0\.\.2\^63-1",
        ),
        (
            BASE + ACCOUNT.format(1, "a", "0" * 64) + "throttle_per_s = 1000000001\n",
            r"account 1 \('a'\): throttle_per_s must be in 0\.\.1000000000",
        ),
        (
            BASE + ACCOUNT.format(1, "a", "0" * 64) + "max_sessions = -1\n",
            r"account 1 \('a'\): max_sessions must be in 0\.\.2\^31-1",
        ),
        (
            BASE + ACCOUNT.format(1, "a", "0" * 64) + ACCOUNT.format(2, "a", "1" * 64),
            r"account 2 \('a'\): the name is already account 1's",
        ),
        (
            BASE + ACCOUNT.format(1, "a", "0" * 64) + ACCOUNT.format(2, "b", "0" * 64),
            r"account 2 \('b'\): the API key is already account 1's",
        ),
    ],
)
def test_mistakes_are_refused_with_where_and_what(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "c.toml")


def test_a_wrong_type_in_a_table_array_names_the_table_counted_from_one() -> None:
    """msgspec says ``$.account[1]`` for the second account: read as "account 1", that is
    another account. The message names the table by its place from 1 and its id."""
    digest = "a" * 64
    text = BASE + ACCOUNT.format(1, "alice", digest) + ACCOUNT.format(7, "bob", digest)
    with pytest.raises(ConfigError) as err:
        parse_config(text + "max_order_qty = 'x'\n", "t.toml")
    message = str(err.value)
    assert '[[account]] number 2 (id = 7, name = "bob"), key max_order_qty' in message, message
    assert "$.account[1]" not in message
    with pytest.raises(ConfigError, match=r"\[\[shard\]\] number 1 \(id = 0\), key core"):
        parse_config(BASE.replace("id = 0", "id = 0\ncore = 'x'"), "t.toml")


def test_every_problem_is_reported_at_once() -> None:
    text = BASE + "[engine]\nring_capacity = 3\n[journal]\nsegment_mb = 0\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.toml")
    assert "ring_capacity" in str(err.value) and "segment_mb" in str(err.value)


def test_placement_is_explicit_first_then_a_stable_hash() -> None:
    symbols = "".join(f"[[instrument]]\nsymbol = 'S{i}'\nsymbol_id = {i + 1}\n" for i in range(40))
    text = "[[shard]]\nid = 0\nsymbols = ['S7']\n[[shard]]\nid = 1\n" + symbols
    config = parse_config(text, "c.toml")
    placement = symbol_placement(config)
    assert placement["S7"] == 0
    assert set(placement.values()) == {0, 1}  # the hash spreads the rest
    assert placement == symbol_placement(parse_config(text, "again.toml"))
    assert sum(len(config.symbols_of(s)) for s in (0, 1)) == 40


def test_a_real_core_is_accepted() -> None:
    core = min(available_cores())
    config = parse_config(f"[[shard]]\nid = 0\ncore = {core}\n" + BASE.split("id = 0")[1], "c")
    assert config.shards[0].core == core


def _two_on_one_core(wait: str) -> str:
    core = min(available_cores())
    return (
        f'[engine]\nwait = "{wait}"\n[gateway]\ncore = {core}\n'
        f"[[shard]]\nid = 0\ncore = {core}\n" + BASE.split("id = 0")[1]
    )


def test_two_processes_on_one_core_are_refused_when_they_busy_spin() -> None:
    """A spinning worker starves whatever shares its core (audit W: it started silently)."""
    core = min(available_cores())
    with pytest.raises(ConfigError) as err:
        parse_config(_two_on_one_core("busy-spin"), "c.toml")
    assert f"shard 0 and gateway are pinned to the same core {core}" in str(err.value)
    assert "busy-spin" in str(err.value)


def test_two_processes_on_one_core_are_allowed_when_they_wait_politely() -> None:
    """Sharing is a deliberate economy on a small host (the supervisor warns at start)."""
    from tradsys.config import shared_cores

    config = parse_config(_two_on_one_core("spin-park"), "c.toml")
    assert shared_cores(config) == {min(available_cores()): ["shard 0", "gateway"]}


def test_cpu_lists_parse_as_the_kernel_writes_them() -> None:
    from tradsys.config import parse_cpu_list

    assert parse_cpu_list("0-3,6,8-9\n") == {0, 1, 2, 3, 6, 8, 9}
    assert parse_cpu_list("1") == {1}
    assert parse_cpu_list("") == set() and parse_cpu_list("x-1") == set()


def test_a_pinned_process_still_accepts_the_hosts_other_cores(tmp_path: Path) -> None:
    """The supervisor pins each sidecar to one CPU; the sidecar re-validates the config,
    whose shards are on other cores. The cpuset decides what exists, not the mask."""
    root = tmp_path
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text("0::/tradsys.slice\n")
    (root / "sys/fs/cgroup/tradsys.slice").mkdir(parents=True)
    (root / "sys/fs/cgroup/tradsys.slice/cpuset.cpus.effective").write_text("2-5\n")
    assert available_cores(root) == {2, 3, 4, 5}
    (root / "sys/fs/cgroup/tradsys.slice/cpuset.cpus.effective").unlink()
    (root / "sys/devices/system/cpu").mkdir(parents=True)
    (root / "sys/devices/system/cpu/online").write_text("0-7\n")
    assert available_cores(root) == set(range(8))
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})  # as the supervisor pins a sidecar
        assert available_cores() >= before
    finally:
        os.sched_setaffinity(0, before)
