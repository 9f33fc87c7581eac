"""The one TOML file that configures a TradSys instance, decoded into frozen structs.

Decoding is strict (unknown keys are errors, types are checked by msgspec) and then the
cross-field rules are checked (a symbol on two shards, a core this host does not have,
...). Every error names the file and the key, so a bad config stops `tradsys run` before
anything is started.
"""

from __future__ import annotations

import os
import re
import zlib
from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec

from tradsys.cores.cpu_latency import MAX_LATENCY_US, NO_REQUEST
from tradsys.cores.sched_slice import MAX_SLICE_US, MIN_SLICE_US
from tradsys.matching import Instrument

Durability = Literal["none", "group", "fsync"]
SnapshotWriter = Literal["fork", "background", "inline"]
WaitName = Literal["busy-spin", "spin-yield", "spin-park"]


class ConfigError(Exception):
    """A configuration the user must fix; the message says where and what."""


class EngineSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    instance: str = "default"
    data_dir: str = "var"
    wait: WaitName = "spin-park"
    ring_capacity: int = 65536
    heartbeat_timeout_ms: int = 3000
    stop_timeout_ms: int = 10000
    # the fair-scheduler slice (µs) of the shard workers, the gateway's pump and the md
    # sidecar's loop and I/O threads: a short one lets them run as soon as they are
    # runnable (tradsys/cores/sched_slice.py);
    # 0: the kernel's default
    sched_slice_us: int = 0
    # while the instance runs, idle CPUs keep to idle states that wake within this many
    # µs (a CPU latency request, tradsys/cores/cpu_latency.py); 0: they poll, and a woken
    # thread runs at once instead of waiting out an idle exit; -1: no request
    cpu_latency_us: int = NO_REQUEST
    # every engine process locks its memory in RAM at start (mlockall, on fault), so no
    # page of it is reclaimed and faulted back in on a hot path
    # (tradsys/cores/memory_lock.py); needs root or LimitMEMLOCK=infinity
    lock_memory: bool = False


class JournalSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    durability: Durability = "group"
    group_commit_us: int = 1000
    segment_mb: int = 64
    snapshot_every: int = 1_000_000
    # "fork": a child forked at a batch boundary serializes the books and writes the file
    # while the shard keeps matching; "background": the shard serializes them (the part
    # that stops it, long for a deep book) and a writer thread writes; "inline": the
    # shard stops for the whole write (the old path). Compare them with
    # perf/recovery_bench.py's snapshot stall.
    snapshot_writer: SnapshotWriter = "fork"


class ShardSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: int
    core: int | None = None
    symbols: list[str] = msgspec.field(default_factory=list)


class GatewaySection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Order entry: where colocated and TCP clients connect, and session defaults."""

    enabled: bool = True
    core: int | None = None
    # Unix-domain socket for the colocated handshake; relative paths are under
    # <data_dir>/<instance>/.
    unix_socket: str = "gateway.sock"
    # host:port for TCP binary sessions; "" turns TCP order entry off.
    tcp_listen: str = "127.0.0.1:9100"
    session_ring_capacity: int = 8192
    max_sessions: int = 256
    heartbeat_ms: int = 1000
    login_timeout_ms: int = 2000
    # TCP: events a session that acknowledges (ACK, docs/protocol.md) may have sent and
    # not acknowledged; at this many the gateway sends it no more until it does
    tcp_unacked_max: int = 65536
    # a session whose full event ring has held a shard's events back (for every other
    # session of the shard) this long is ended, its unread events kept for the account's
    # next session; 0: never
    stalled_session_ms: int = 1000
    # the native pump (tradsys.gateway.GatewayCore): tables sized once at start
    max_accounts: int = 1024
    max_live_orders: int = 262144
    pump_batch: int = 256
    # the engine clock's resolution: the pump puts a CLOCK_TICK (wall-clock time) before a
    # shard's commands once the last tick is this many µs old; 0: no ticks (the clock then
    # moves only by CLOCK_TICK controls someone else sends, and trades carry no time)
    clock_tick_us: int = 10
    # the pump yields its CPU at least this often (µs), busy or not, so a colocated client
    # sharing that CPU waits at most about this long; 0: it yields only when idle
    yield_every_us: int = 20
    # a shard whose worker has not been running this long (ms) is marked down: commands
    # for its symbols are answered SHARD_UNAVAILABLE; 0: they wait for the worker
    shard_down_ms: int = 2000


class AccountSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One trading account: its credential (stored only as a SHA-256 hash of the API key)
    and its pre-trade risk limits. A limit of 0 means "no limit"."""

    id: int
    name: str
    api_key_sha256: str
    cancel_on_disconnect: bool = True
    max_order_qty: int = 0
    max_order_notional: int = 0
    price_collar_bps: int = 0
    max_open_orders: int = 0
    max_position: int = 0
    credit_limit: int = 0
    throttle_per_s: int = 0
    throttle_burst: int = 0
    # one bucket for all the account's sessions together (reject ACCOUNT_THROTTLED)
    account_throttle_per_s: int = 0
    account_throttle_burst: int = 0
    # sessions the account may have open at once (0: up to [gateway] max_sessions): one
    # account cannot then take every session the gateway has
    max_sessions: int = 0


RISK_LIMIT_FIELDS = (
    "max_order_qty",
    "max_order_notional",
    "price_collar_bps",
    "max_open_orders",
    "max_position",
    "credit_limit",
    "throttle_per_s",
    "throttle_burst",
    "account_throttle_per_s",
    "account_throttle_burst",
)
"""The AccountSection fields that are pre-trade risk limits (0 = no limit)."""


class MdSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The market-data sidecar: ZeroMQ endpoints and flow control (docs/marketdata.md).
    A tcp port 0 binds any free port; the sidecar announces the bound endpoints."""

    enabled: bool = True
    # With enabled = false: a reader of your own drains each shard's md ring (the workers
    # push market data and wait for room, as for the sidecar). False, the default: the
    # workers drop their market data -- nobody would drain the rings, and a full one
    # would hold its worker back for good.
    external_reader: bool = False
    core: int | None = None
    publish: list[str] = msgspec.field(default_factory=lambda: ["tcp://127.0.0.1:9200"])
    snapshot: str = "tcp://127.0.0.1:9201"
    # Messages (not records) queued per subscriber before ZeroMQ drops that subscriber's
    # messages: the engine never waits for a slow subscriber, which sees a gap instead.
    sndhwm: int = 100_000
    heartbeat_ms: int = 1000
    # Optional PUB endpoint of the conflated BBO board (latest value only); "" = off.
    conflated_bbo: str = ""
    # Records packed into one message at most (1 = one record per frame, the peer the
    # benchmark compares with).
    max_frame_records: int = 1024
    # Whole-book snapshots one client (ROUTER identity) is answered per second, on top of
    # one for every symbol at once (a full resync); past it, `rate_limited`. 0: no limit.
    snapshot_rate: int = 100
    # Trade prints kept per symbol for replay requests (docs/marketdata.md, "Trade
    # replay"), in a file of 64 bytes a print under its shard's directory; 0: none kept.
    trade_history: int = 65536


class MetricsSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where the supervisor serves Prometheus `/metrics` (host:port; port 0 picks a free
    one). Off ("") unless configured; the built-in default config serves 127.0.0.1:9300."""

    listen: str = ""


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A whole instance: engine settings, journal policy, shards and instruments, and
    the order-entry gateway, its accounts, and the market-data sidecar."""

    engine: EngineSection = msgspec.field(default_factory=EngineSection)
    journal: JournalSection = msgspec.field(default_factory=JournalSection)
    shards: list[ShardSection] = msgspec.field(default_factory=list, name="shard")
    instruments: list[Instrument] = msgspec.field(default_factory=list, name="instrument")
    gateway: GatewaySection = msgspec.field(default_factory=GatewaySection)
    accounts: list[AccountSection] = msgspec.field(default_factory=list, name="account")
    md: MdSection = msgspec.field(default_factory=MdSection)
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)

    @property
    def instance_dir(self) -> Path:
        """Where this instance keeps its journals, snapshots, status and sockets."""
        return Path(self.engine.data_dir) / self.engine.instance

    def shard_data_dir(self, shard_id: int) -> Path:
        return self.instance_dir / f"shard-{shard_id}"

    def symbols_of(self, shard_id: int) -> list[Instrument]:
        """The instruments a shard owns: its explicit list, plus the unlisted symbols
        whose stable hash lands on it."""
        placement = symbol_placement(self)
        return [ins for ins in self.instruments if placement[ins.symbol] == shard_id]


def symbol_placement(config: Config) -> dict[str, int]:
    """symbol → shard id. Explicit lists win; the rest go by CRC-32 of the name modulo
    the number of shards (in id order), which does not change from run to run."""
    placement = {s: shard.id for shard in config.shards for s in shard.symbols}
    ids = sorted(shard.id for shard in config.shards)
    for ins in config.instruments:
        if ins.symbol not in placement:
            placement[ins.symbol] = ids[zlib.crc32(ins.symbol.encode()) % len(ids)]
    return placement


def parse_cpu_list(text: str) -> set[int]:
    """A kernel CPU list ("0-3,6,8-9") as a set; empty for an empty or odd text."""
    out: set[int] = set()
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
            return set()
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def available_cores(sys_root: Path = Path("/")) -> set[int]:
    """The CPUs a process of ours may be pinned to: the cpuset of our cgroup (v2, then v1)
    or else the online CPUs. Not this process's own affinity mask: the supervisor pins a
    sidecar to one CPU, and the sidecar still re-validates a config whose shards sit on
    the other cores (pinning a child elsewhere is allowed; only the cpuset limits it)."""
    cgroup = ""
    try:
        for line in (sys_root / "proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                cgroup = line[3:].lstrip("/")
    except OSError:
        pass
    candidates = [
        sys_root / "sys/fs/cgroup" / cgroup / "cpuset.cpus.effective",
        sys_root / "sys/fs/cgroup/cpuset/cpuset.effective_cpus",
        sys_root / "sys/devices/system/cpu/online",
    ]
    for path in candidates:
        try:
            cpus = parse_cpu_list(path.read_text())
        except OSError:
            continue
        if cpus:
            return cpus
    return set(range(os.cpu_count() or 1))


INT31_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_THROTTLE = 1_000_000_000
"""The largest throttle rate and burst the pump accepts (its bucket counts 1e-9 tokens)."""

# The plain integer settings and the values each may take: the native side holds them in
# fixed-width fields (a value past one would wrap, or stop a process at start with a
# traceback), and 0 either means something ("never") or nothing sensible.
_RANGES: tuple[tuple[str, str, int, int, str], ...] = (
    ("engine", "heartbeat_timeout_ms", 1, INT31_MAX, ""),
    ("engine", "stop_timeout_ms", 1, INT31_MAX, ""),
    ("journal", "group_commit_us", 1, INT31_MAX, ""),
    ("journal", "segment_mb", 1, 65536, ""),
    ("journal", "snapshot_every", 1, INT64_MAX, ""),
    ("gateway", "max_sessions", 1, INT31_MAX, ""),
    ("gateway", "max_accounts", 1, INT31_MAX, ""),
    ("gateway", "max_live_orders", 1, INT31_MAX, ""),
    ("gateway", "pump_batch", 1, INT31_MAX, ""),
    ("gateway", "heartbeat_ms", 1, INT31_MAX, ""),
    ("gateway", "login_timeout_ms", 1, INT31_MAX, ""),
    ("gateway", "tcp_unacked_max", 1, INT31_MAX, ""),
    ("gateway", "stalled_session_ms", 0, INT31_MAX, " (0: never end a session)"),
    ("gateway", "clock_tick_us", 0, INT31_MAX, " (0: no clock ticks)"),
    ("gateway", "yield_every_us", 0, INT31_MAX, " (0: yield only when idle)"),
    ("gateway", "shard_down_ms", 0, INT31_MAX, " (0: commands wait for the worker)"),
    ("md", "sndhwm", 1, INT31_MAX, ""),
    ("md", "heartbeat_ms", 1, INT31_MAX, ""),
    ("md", "max_frame_records", 1, 65536, ""),
    ("md", "snapshot_rate", 0, 1_000_000, " (0: no limit)"),
    ("md", "trade_history", 0, 1 << 24, " (0: keep no prints)"),
)


def _bound(value: int) -> str:
    return {INT31_MAX: "2^31-1", INT64_MAX: "2^63-1"}.get(value, str(value))


def _range_problems(config: Config) -> list[str]:
    out = []
    for section, key, low, high, note in _RANGES:
        value = getattr(getattr(config, section), key)
        if not low <= value <= high:
            out.append(f"{section}.{key} {value}: must be in {low}..{_bound(high)}{note}")
    return out


def split_listen(key: str, value: str) -> tuple[str, int]:
    """``host:port`` (an IPv6 host in brackets; port 0 picks a free one) as (host, port);
    ConfigError naming ``key`` otherwise. An empty host listens on every interface."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{key} {value!r}: use host:port, port in 0..65535 (0: any free one)")
    return host.strip("[]") or "0.0.0.0", int(port)


def listen_problems(key: str, value: str) -> list[str]:
    try:
        split_listen(key, value)
    except ConfigError as exc:
        return [str(exc)]
    return []


def _problems(config: Config) -> list[str]:
    out: list[str] = []
    e = config.engine
    if not e.instance or not all(c.isalnum() or c in "_-" for c in e.instance):
        out.append(f"engine.instance {e.instance!r}: use letters, digits, '_' and '-' only")
    cap = e.ring_capacity
    if cap < 64 or cap & (cap - 1) or cap > 2**30:
        out.append(f"engine.ring_capacity {cap}: must be a power of two in 64..2^30")
    if e.sched_slice_us and not MIN_SLICE_US <= e.sched_slice_us <= MAX_SLICE_US:
        out.append(
            f"engine.sched_slice_us {e.sched_slice_us}: 0 (the kernel's default) or "
            f"{MIN_SLICE_US}..{MAX_SLICE_US}, the range Linux accepts"
        )
    if e.cpu_latency_us != NO_REQUEST and not 0 <= e.cpu_latency_us <= MAX_LATENCY_US:
        out.append(
            f"engine.cpu_latency_us {e.cpu_latency_us}: -1 (no request) or 0..{MAX_LATENCY_US}"
        )
    if not config.shards:
        out.append("no [[shard]]: configure at least one shard worker")
    if not config.instruments:
        out.append("no [[instrument]]: configure at least one symbol")
    seen_ids: set[int] = set()
    cores = available_cores()
    for shard in config.shards:
        if shard.id < 0 or shard.id > 999:
            out.append(f"shard {shard.id}: id must be in 0..999")
        if shard.id in seen_ids:
            out.append(f"shard {shard.id}: the id is used twice")
        seen_ids.add(shard.id)
        if shard.core is not None and shard.core not in cores:
            out.append(
                f"shard {shard.id}: core {shard.core} does not exist on this host "
                f"(available: {', '.join(map(str, sorted(cores)))})"
            )
    symbols: dict[str, Instrument] = {}
    ids: dict[int, str] = {}
    for ins in config.instruments:
        out.extend(ins.problems())
        if ins.symbol in symbols:
            out.append(f"instrument {ins.symbol!r} is configured twice")
        if ins.symbol_id in ids:
            out.append(
                f"instrument {ins.symbol!r}: symbol_id {ins.symbol_id} is already "
                f"{ids[ins.symbol_id]!r}"
            )
        symbols[ins.symbol] = ins
        ids.setdefault(ins.symbol_id, ins.symbol)
    owner: dict[str, int] = {}
    for shard in config.shards:
        for sym in shard.symbols:
            if sym not in symbols:
                out.append(f"shard {shard.id}: symbol {sym!r} is not an [[instrument]]")
            if sym in owner and owner[sym] != shard.id:
                out.append(f"symbol {sym!r} is on two shards ({owner[sym]} and {shard.id})")
            owner.setdefault(sym, shard.id)
    out.extend(_account_problems(config))
    out.extend(_md_problems(config))
    out.extend(_range_problems(config))
    g = config.gateway
    ring = g.session_ring_capacity
    if ring < 8 or ring & (ring - 1) or ring >= 2**31:
        out.append(f"gateway.session_ring_capacity {ring}: must be a power of two in 8..2^30")
    if g.tcp_listen:
        out.extend(listen_problems("gateway.tcp_listen", g.tcp_listen))
    if len(config.accounts) > g.max_accounts:
        out.append(
            f"gateway.max_accounts {g.max_accounts} is below the number of "
            f"[[account]] sections ({len(config.accounts)})"
        )
    if config.metrics.listen:
        out.extend(listen_problems("metrics.listen", config.metrics.listen))
    for name, core in (("gateway", config.gateway.core), ("md", config.md.core)):
        if core is not None and core not in cores:
            out.append(f"{name}.core {core} does not exist on this host")
    if config.engine.wait == "busy-spin":
        for core, names in shared_cores(config).items():
            out.append(
                f"{' and '.join(names)} are pinned to the same core {core} while engine.wait "
                '= "busy-spin": a spinning worker starves whatever shares its core; give '
                'each its own core, or wait = "spin-park"'
            )
    return out


def engine_processes(config: Config) -> list[tuple[str, int | None]]:
    """Each engine process the configuration runs, by name, and the core it is pinned to
    (None: not pinned): shard workers, and the gateway's pump and the md sidecar when they
    run."""
    procs: list[tuple[str, int | None]] = [(f"shard {s.id}", s.core) for s in config.shards]
    if config.gateway.enabled:
        procs.append(("gateway", config.gateway.core))
    if config.md.enabled:
        procs.append(("md", config.md.core))
    return procs


def engine_cores(config: Config) -> set[int]:
    """The cores the configuration pins its engine processes to."""
    return {core for _, core in engine_processes(config) if core is not None}


def shared_cores(config: Config) -> dict[int, list[str]]:
    """The pinned cores that two or more engine processes are pinned to, with their names.

    Why it matters: each process waits on its rings, and two on one core wait for each
    other (a command waits for the other's time slice). With polite waiting that can be a
    deliberate economy on a small host (perf/md_bench.py keeps the worker and md on one
    CPU so the subscriber has the other); with ``wait = "busy-spin"`` a spinning worker
    starves whatever shares its core, so the check refuses it."""
    by_core: dict[int, list[str]] = {}
    for name, core in engine_processes(config):
        if core is not None:
            by_core.setdefault(core, []).append(name)
    return {core: names for core, names in sorted(by_core.items()) if len(names) > 1}


def housekeeping_cores(config: Config) -> list[int]:
    """The host's cores no engine process is pinned to: where background work (a worker's
    snapshot writer) belongs, off the isolated cores. Empty when every core is taken."""
    return sorted(available_cores() - engine_cores(config))


def _md_problems(config: Config) -> list[str]:
    md = config.md
    out: list[str] = []
    if md.enabled and not md.publish:
        out.append("md.publish: give at least one endpoint")
    if md.enabled and md.external_reader:
        out.append("md.external_reader: only with enabled = false (the sidecar is the reader)")
    endpoints = [("publish", e) for e in md.publish] + [("snapshot", md.snapshot)]
    if md.conflated_bbo:
        endpoints.append(("conflated_bbo", md.conflated_bbo))
    for key, endpoint in endpoints:
        if not endpoint.startswith(("tcp://", "ipc://")):
            out.append(f"md.{key} {endpoint!r}: use a tcp:// or ipc:// endpoint")
    return out


def _account_problems(config: Config) -> list[str]:
    out: list[str] = []
    seen: set[int] = set()
    for acc in config.accounts:
        where = f"account {acc.id} ({acc.name!r})"
        if acc.id in seen:
            out.append(f"{where}: the id is used twice")
        seen.add(acc.id)
        key = acc.api_key_sha256
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            out.append(f"{where}: api_key_sha256 must be 64 lowercase hex digits")
        out.extend(account_limit_problems(acc))
    for what, key in (("name", "name"), ("API key", "api_key_sha256")):
        first: dict[str, AccountSection] = {}
        for acc in config.accounts:
            earlier = first.setdefault(getattr(acc, key), acc)
            if earlier is not acc:
                # an operator's `tradsys admin kill NAME` and a login must each find one
                out.append(
                    f"account {acc.id} ({acc.name!r}): the {what} is already account {earlier.id}'s"
                )
    return out


def account_limit_problems(acc: AccountSection) -> list[str]:
    """What the pump would refuse in an account's id and limits (each held in 64 bits);
    [] when they are fine. Checked whole before any account is applied."""
    where = f"account {acc.id} ({acc.name!r})"
    out = []
    if not 0 < acc.id < 2**32:
        out.append(f"{where}: id must be in 1..{2**32 - 1}")
    for limit in RISK_LIMIT_FIELDS:
        high = MAX_THROTTLE if "throttle" in limit else INT64_MAX
        if not 0 <= getattr(acc, limit) <= high:
            out.append(f"{where}: {limit} must be in 0..{_bound(high)} (0 means no limit)")
    if not 0 <= acc.max_sessions <= INT31_MAX:
        out.append(f"{where}: max_sessions must be in 0..2^31-1 (0 means no limit)")
    return out


_TABLE_PATH = re.compile(r"`\$\.(\w+)\[(\d+)\]((?:\.\w+)*)`")


def _in_toml_terms(message: str, text: str | bytes) -> str:
    """msgspec names a key of an array of tables by a 0-based index (``$.account[1].x``):
    read as "account 1", that is another account than the one at fault. Say which table,
    counted from 1, and its id, name or symbol."""
    m = _TABLE_PATH.search(message)
    if m is None:
        return message
    table, index, key = m.group(1), int(m.group(2)), m.group(3).lstrip(".")
    try:
        raw = msgspec.toml.decode(text)[table][index]
    except (msgspec.DecodeError, KeyError, IndexError, TypeError):
        raw = {}
    named = [
        f"{k} = {v!r}".replace("'", '"')
        for k, v in raw.items()
        if k in ("id", "name", "symbol") and isinstance(v, int | str)
    ]
    place = f"[[{table}]] number {index + 1}" + (f" ({', '.join(named)})" if named else "")
    return message[: m.start()] + place + (f", key {key}" if key else "") + message[m.end() :]


def parse_config(text: str | bytes, source: str) -> Config:
    """Decode and validate a config document; ConfigError names ``source`` and the key."""
    try:
        config = msgspec.toml.decode(text, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_in_toml_terms(str(exc), text)}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return check_config(config, source)


def check_config(config: Config, source: str) -> Config:
    """The cross-field rules; ConfigError lists every problem at once."""
    problems = _problems(config)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return config


def load_config(path: str | Path | None = None) -> Config:
    """The config at ``path``, or the built-in default when it is None."""
    if path is None:
        text = resources.files("tradsys").joinpath("default_config.toml").read_bytes()
        return parse_config(text, "<built-in default>")
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror}") from None
    return parse_config(text, str(p))
