"""The C pump against the plain-Python model (tradsys.gateway.reference) on random
streams: client commands from several sessions (two of them for one account, so orders
are taken over between sessions and client ids are the account's), shard answers from a
toy engine, fills (some of them traded by the engine after the gateway checked a batch
and before it answers it, so the reference moves between a replace's check and its
REPLACED), expiries, kill switches, limit reloads (the per-session and the
per-account throttles among them), disconnects with and without cancel-on-disconnect (some
right after the client sent, before the pump took it) and the passing of time. After every
step both must have sent the same commands to each shard, the same records to each
session, and must agree on every account's exposure and positions."""

from __future__ import annotations

import itertools
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RUN_PREFIX, RingFactory
from tests.gateway.fake_shard import FakeShard
from tests.gateway.rig import AAA, BBB, GatewayRig, Session, account, make_config
from tradsys.cores.order_image import LIVE_ORDER_DTYPE
from tradsys.gateway import GatewayCore
from tradsys.gateway.reference import Record, ReferenceGateway
from tradsys.ring import instance_segments
from tradsys.ring.segment import unlink_quietly
from tradsys.wire import COMMAND_DTYPE, EVENT_DTYPE, CommandKind

_examples = itertools.count()
RUN_ID = 5
ACCOUNTS = (1, 2)
SYMBOLS = (AAA, BBB, 3)  # 3 is unknown
SESSION_RING = 64  # records each session ring holds


def _sometimes(value: int) -> st.SearchStrategy[int]:
    """A limit that is set in about one example of three (many at once block everything)."""
    return st.sampled_from([0, 0, value])


LIMITS = st.fixed_dictionaries(
    {
        "max_order_qty": _sometimes(20),
        "max_order_notional": _sometimes(20_000),
        "price_collar_bps": _sometimes(500),
        "max_open_orders": _sometimes(4),
        "max_position": _sometimes(60),
        "credit_limit": _sometimes(100_000),
        "throttle_per_s": _sometimes(100),
        "throttle_burst": st.sampled_from([0, 8]),
        "account_throttle_per_s": _sometimes(150),
        "account_throttle_burst": st.sampled_from([0, 12]),
        "cancel_on_disconnect": st.booleans(),
    }
)

NEW = st.fixed_dictionaries(
    {
        "kind": st.just(int(CommandKind.NEW_ORDER)),
        "order_id": st.integers(0, 12).map(lambda i: i if i < 9 else i - 8),  # rarely 0
        "symbol_id": st.sampled_from([AAA, AAA, BBB, BBB, 3]),
        "side": st.sampled_from([1, 1, 1, 2, 2, 2, 3]),
        # LIMIT, MARKET, STOP, STOP_LIMIT: a market-type order's price is a protection price
        "order_type": st.sampled_from([1, 1, 1, 2, 3, 4]),
        "tif": st.just(1),
        "price": st.sampled_from([0, 960, 1000, 1000, 1000, 1040, 1100]),
        "stop_price": st.sampled_from([0, 0, 900, 1100]),
        "quantity": st.sampled_from([0, 1, 5, 5, 10, 10, 21]),
    }
)
AMEND = st.fixed_dictionaries(
    {
        "kind": st.sampled_from([int(CommandKind.CANCEL), int(CommandKind.REPLACE)]),
        "order_id": st.integers(1, 8),
        # 0: the order's own symbol; another one names no live order
        "symbol_id": st.sampled_from([0, 0, AAA, BBB]),
        "price": st.sampled_from([0, 950, 1000, 1060]),
        "quantity": st.sampled_from([0, 3, 10, 25]),
    }
)
REPLACE = AMEND.map(lambda c: c | {"kind": int(CommandKind.REPLACE)})
# a batch the engine takes only after it has traded (the "race" step): mostly replaces,
# so that one is checked at a reference the trade then moves before its REPLACED
RACING = st.lists(st.one_of(REPLACE, NEW), min_size=1, max_size=6)
OTHER = st.fixed_dictionaries(
    {
        "kind": st.sampled_from([int(CommandKind.MASS_CANCEL), int(CommandKind.CONTROL), 0, 9]),
        "symbol_id": st.sampled_from((0, *SYMBOLS)),
    }
)
COMMAND = st.one_of(NEW, NEW, NEW, NEW, AMEND, AMEND, OTHER)
# an ORDER_STATUS is sent on its own (its answer may wait for room that the commands
# before it in a batch take, which the model does not follow: tests/gateway/
# test_order_status.py covers that), or among a leaving session's last commands
STATUS = st.fixed_dictionaries(
    {
        "kind": st.just(int(CommandKind.ORDER_STATUS)),
        "order_id": st.integers(0, 2**64 - 1),
        "symbol_id": st.sampled_from((0, 0, *SYMBOLS)),
    }
)
LEAVING_COMMAND = st.one_of(COMMAND, STATUS)

STEPS: list[tuple[int, st.SearchStrategy[tuple[Any, Any, Any]]]] = [
    (10, st.tuples(st.just("send"), st.integers(0, 2), st.lists(COMMAND, min_size=1, max_size=16))),
    (3, st.tuples(st.just("race"), st.integers(0, 2), RACING)),
    (4, st.tuples(st.just("fill"), st.integers(0, 1), st.integers(1, 4))),
    (1, st.tuples(st.just("expire"), st.integers(0, 1), st.just(1))),
    (1, st.tuples(st.just("kill"), st.sampled_from([None, *ACCOUNTS]), st.booleans())),
    (1, st.tuples(st.just("limits"), st.sampled_from(ACCOUNTS), LIMITS)),
    (
        2,
        st.tuples(
            st.just("tick"), st.sampled_from([1_000_000, 10_000_000, 50_000_000]), st.just(0)
        ),
    ),
    (1, st.tuples(st.just("disconnect"), st.integers(0, 2), st.booleans())),
    (1, st.tuples(st.just("restart"), st.just(0), st.just(0))),
    (3, st.tuples(st.just("leave"), st.integers(0, 2), st.just(0))),
    # the client sends and its session ends before the pump takes what it sent
    (2, st.tuples(st.just("send_leave"), st.integers(0, 2), st.lists(LEAVING_COMMAND, max_size=8))),
    (2, st.tuples(st.just("send"), st.integers(0, 2), st.lists(STATUS, min_size=1, max_size=1))),
]
STEP = st.sampled_from([s for weight, s in STEPS for _ in range(weight)]).flatmap(lambda s: s)

# Streams of valid orders of account 1 (sessions 0 and 2), most of them market-type, and
# their replaces racing trades, under the two limits a market-type order's value meets
# (the collar sets its protection price)
RACE_NEW = st.fixed_dictionaries(
    {
        "kind": st.just(int(CommandKind.NEW_ORDER)),
        "order_id": st.integers(1, 4),
        "symbol_id": st.sampled_from([AAA, BBB]),
        "side": st.sampled_from([1, 2]),
        "order_type": st.sampled_from([1, 2, 3, 3]),
        "tif": st.just(1),
        "price": st.sampled_from([0, 960, 1000, 1040, 1100]),
        "stop_price": st.sampled_from([0, 900, 1100]),
        "quantity": st.sampled_from([5, 10]),
    }
)
RACE_REPLACE = st.fixed_dictionaries(
    {
        "kind": st.just(int(CommandKind.REPLACE)),
        "order_id": st.integers(1, 4),
        "price": st.sampled_from([0, 950, 1000, 1060]),
        "quantity": st.sampled_from([3, 10, 25]),
    }
)
RACE_LIMITS = st.fixed_dictionaries(
    {"price_collar_bps": _sometimes(500), "credit_limit": _sometimes(100_000)}
)
ACCOUNT_1 = st.sampled_from([0, 2])  # its sessions
RACE_STEPS: list[tuple[int, st.SearchStrategy[tuple[Any, Any, Any]]]] = [
    (2, st.tuples(st.just("send"), ACCOUNT_1, st.lists(RACE_NEW, min_size=1, max_size=4))),
    (3, st.tuples(st.just("race"), ACCOUNT_1, st.lists(RACE_REPLACE, min_size=1, max_size=4))),
    (1, st.tuples(st.just("fill"), st.integers(0, 1), st.integers(1, 2))),
]
RACE_STEP = st.sampled_from([s for weight, s in RACE_STEPS for _ in range(weight)]).flatmap(
    lambda s: s
)


def full_command(fields: dict[str, int]) -> Record:
    return {name: int(fields.get(name, 0)) for name in COMMAND_DTYPE.names or ()}


def as_dicts(array: np.ndarray[Any, Any]) -> list[Record]:
    return [{name: int(row[name]) for name in array.dtype.names or ()} for row in array]


def _send(s: Session, cmds: list[Record]) -> None:
    """The client's side: commands into the session's ring (the pump takes them later)."""
    batch = np.zeros(len(cmds), dtype=COMMAND_DTYPE)
    for i, c in enumerate(cmds):
        for name, value in c.items():
            batch[i][name] = value
    assert s.to_gateway.push_batch(batch) == len(batch)


class Differential:
    """The C gateway (in a rig) and the model, driven side by side."""

    def __init__(
        self, rings: RingFactory, limits: dict[int, dict[str, int]], seed: int, ledger: Path
    ) -> None:
        accounts = [account(a, **limits[a]) for a in ACCOUNTS]
        config = make_config(rings.instance, accounts, max_live_orders=64)
        self.rig = GatewayRig(rings, config)
        self.ledger = ledger
        assert not self.rig.core.attach_ledger(ledger, RUN_ID)
        self.now = time.monotonic_ns() + 10**12  # ahead of the C side's own clock reads
        self.model = ReferenceGateway(
            {AAA: (0, 1000), BBB: (1, 0)},
            accounts,
            epoch=self.rig.epoch,
            max_orders=64,
            ring_capacity=SESSION_RING,
        )
        self.shards = [FakeShard(random.Random(seed)), FakeShard(random.Random(seed + 1))]
        # sessions 0 and 2 trade for account 1, session 1 for account 2; None: away
        self.sessions: list[Session | None] = []
        for i in range(3):
            self.sessions.append(self._connect(ACCOUNTS[i % 2], None))
        # a first pass sets the pump's clock, which a session's last commands are checked
        # at when it ends (the model takes them at ``now``)
        self._pass({}, {})

    def _connect(self, account_id: int, cod: bool | None) -> Session:
        s = self.rig.session(account_id, capacity=SESSION_RING, cancel_on_disconnect=cod)
        self.model.add_session(s.id, account_id, cod, self.now)
        return s

    def _session(self, i: int) -> Session:
        """Session i, connected again first if it went away."""
        s = self.sessions[i]
        if s is None:
            s = self.sessions[i] = self._connect(ACCOUNTS[i % 2], None)
        return s

    def _pass(
        self,
        expected_cmds: dict[int, list[Record]],
        intake: dict[int, list[Record]],
        routed: dict[int, list[Record]] | None = None,
        held: dict[int, list[Record]] | None = None,
        race: bool = False,
    ) -> None:
        """Poll once; check what reached each shard and each session (in a session's ring:
        the rejects of its intake, then the held events it takes, then the shards'
        events); the shards answer (with ``race``, each first trades one of its live
        orders: the engine matched it after the gateway's checks, before the commands)."""
        if held is None:
            held = self.model.take_held()
        self.rig.poll(self.now)
        self.pass_now = self.now
        for s in self.sessions:
            if s is None:
                continue
            want = intake.get(s.id, []) + held.get(s.id, []) + (routed or {}).get(s.id, [])
            assert as_dicts(s.events()) == want, f"session {s.id}"
        answers: list[list[Record]] = [[], []]
        for shard in (0, 1):
            got = as_dicts(self.rig.sent(shard))
            assert got == expected_cmds.get(shard, []), f"shard {shard}"
            if race and got:
                answers[shard] += self.shards[shard].fill()
            for c in got:
                answers[shard] += self.shards[shard].on_command(c)
        self._deliver(answers)

    def _deliver(self, answers: list[list[Record]]) -> None:
        if not any(answers):
            return
        held = self.model.take_held()  # the pass hands these out before the new events
        routed: dict[int, list[Record]] = {}
        for shard in (0, 1):
            if answers[shard]:
                batch = np.zeros(len(answers[shard]), dtype=EVENT_DTYPE)
                for i, ev in enumerate(answers[shard]):
                    for name, value in ev.items():
                        batch[i][name] = value
                assert self.rig.events[shard].push_batch(batch) == len(batch)
            for ev in answers[shard]:
                sid, rec = self.model.event(ev)
                if sid is not None and rec is not None:
                    routed.setdefault(sid, []).append(rec)
        self._pass({}, {}, routed, held)

    def step(self, step: tuple[Any, Any, Any]) -> None:
        what, a, b = step
        if what in ("send", "race"):
            s = self._session(a)
            cmds = [full_command(c) for c in b]
            expected_cmds: dict[int, list[Record]] = {}
            rejects: list[Record] = []
            for c in cmds:
                sent, evs = self.model.command(s.id, c, self.now)
                for shard, recs in sent.items():
                    expected_cmds.setdefault(shard, []).extend(recs)
                rejects += evs
            _send(s, cmds)
            self._pass(expected_cmds, {s.id: rejects}, race=what == "race")
        elif what in ("fill", "expire"):
            shard = self.shards[a]
            answers: list[list[Record]] = [[], []]
            for _ in range(b):
                answers[a] += shard.fill() if what == "fill" else shard.expire()
            self._deliver(answers)
        elif what == "kill":
            self.rig.core.kill(a, on=b)
            self._pass(self.model.kill(a, b), {})
        elif what == "limits":
            limits = account(a, **b)
            self.rig.core.set_account_limits(limits)
            self.model.set_limits(limits, self.now)
        elif what == "tick":
            self.now += a
        elif what == "restart":
            self._restart()
        elif what == "disconnect":
            old = self.sessions[a]
            expected: dict[int, list[Record]] = {}
            if old is not None:
                self.rig.core.remove_session(old.id)
                expected = self.model.remove_session(old.id)
            self.sessions[a] = self._connect(ACCOUNTS[a % 2], b)
            self._pass(expected, {})
        elif what == "leave":
            old = self.sessions[a]
            if old is not None:
                self.rig.core.remove_session(old.id)
                self.sessions[a] = None
                self._pass(self.model.remove_session(old.id), {})
        elif what == "send_leave":
            s = self._session(a)
            cmds = [full_command(c) for c in b]
            _send(s, cmds)
            self.rig.core.remove_session(s.id)
            self.sessions[a] = None
            # taken as the last pass would have taken them: at its time, not at a ``tick``
            # since (the pump's clock moves only with its passes)
            self._pass(self.model.remove_session(s.id, cmds, self.pass_now), {})
        self.check_state()

    def _restart(self) -> None:
        """The gateway dies between two passes and another starts on the same rings and
        ledger (the operator's config carrying the limits reloaded so far)."""
        live: list[Record] = []
        for shard in self.shards:
            for oid, o in sorted(shard.live.items()):
                live.append(
                    {"order_id": oid, "symbol_id": o.symbol, "account_id": o.account,
                     "side": o.side, "order_type": o.order_type, "price": o.price,
                     "stop_price": o.stop_price, "quantity": o.qty, "leaves_qty": o.leaves}
                )  # fmt: skip
        self.rig.core.close()
        self.rig.epoch += 1
        core = GatewayCore(self.rig.config, epoch=self.rig.epoch, cancel_on_start=False)
        self.rig.core = core
        for acc in self.model.accounts.values():
            core.set_account_limits(acc.limits)
        assert core.attach_ledger(self.ledger, RUN_ID)
        assert core.drain() == 0
        image = np.zeros(len(live), dtype=LIVE_ORDER_DTYPE)
        for i, r in enumerate(live):
            for name, value in r.items():
                image[i][name] = value
        assert core.restore(image) == len(live)
        assert core.hold_drained() == 0
        self.model.restart(self.rig.epoch, live)
        self.sessions = [self._connect(ACCOUNTS[i % 2], None) for i in range(3)]
        self._pass({}, {})

    def check_state(self) -> None:
        for a, acc in self.model.accounts.items():
            got = self.rig.core.account_state(a)
            assert (got.open_orders, got.open_notional, got.filled_notional) == (
                acc.open_orders,
                acc.open_notional,
                acc.filled_notional,
            ), f"account {a}"
            for sym in (AAA, BBB):
                p = self.rig.core.position(a, sym)
                assert (p.position, p.open_buy, p.open_sell) == (
                    acc.position.get(sym, 0),
                    acc.open_buy.get(sym, 0),
                    acc.open_sell.get(sym, 0),
                ), f"account {a} symbol {sym}"
        assert self.rig.core.stats()["live_orders"] == len(self.model.orders)
        # the room each session's ring keeps for answers still owed: kept exactly, and
        # none left once the shards have answered every command (a test's shard may hold
        # answers back: its ``later``)
        wrong, owed = self.rig.core.check_due()
        assert wrong == 0, f"{wrong} session(s) count their owed answers wrong"
        if not any(getattr(shard, "later", None) for shard in self.shards):
            assert owed == 0, f"{owed} answers owed after the shards answered all"


@contextmanager
def differential(limits: dict[int, dict[str, Any]], seed: int) -> Iterator[Differential]:
    """A Differential, closed and cleaned up after it (and, when it passed, checked for
    shared memory left behind)."""
    instance = f"{RUN_PREFIX}gwref{next(_examples)}"
    rings = RingFactory(instance)
    diff = None
    tmp = Path(tempfile.mkdtemp(prefix="gwref"))
    try:
        diff = Differential(rings, limits, seed, tmp / "gateway.ledger")
        yield diff
    finally:
        if diff is not None:
            diff.rig.close()
        shutil.rmtree(tmp, ignore_errors=True)
        rings.close_all()
        leftovers = instance_segments(instance)
        unlink_quietly(leftovers)
    assert not leftovers, f"shared memory left behind: {leftovers}"


def run_stream(
    limits: dict[int, dict[str, Any]], steps: list[tuple[Any, Any, Any]], seed: int
) -> None:
    """The C gateway and the model driven through ``steps``, agreeing after each."""
    with differential(limits, seed) as diff:
        for step in steps:
            diff.step(step)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries({a: LIMITS for a in ACCOUNTS}),
    st.lists(STEP, min_size=10, max_size=50),
    st.integers(0, 2**32),
)
def test_pump_matches_the_reference_model(
    limits: dict[int, dict[str, int]], steps: list[tuple[Any, Any, Any]], seed: int
) -> None:
    run_stream(limits, steps, seed)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries({a: RACE_LIMITS for a in ACCOUNTS}),
    st.lists(RACE_STEP, min_size=4, max_size=30),
    st.integers(0, 2**32),
)
def test_replaces_racing_trades_match_the_reference_model(
    limits: dict[int, dict[str, int]], steps: list[tuple[Any, Any, Any]], seed: int
) -> None:
    """The random streams above reach a replace of a market-type order racing a trade
    that moves its reference only now and then: these are made of little else."""
    run_stream(limits, steps, seed)


def test_held_events_and_restarts_agree_with_the_model() -> None:
    """A directed stream through the held-event path (account 2's only session leaves
    without cancel-on-disconnect, its orders fill, it comes back) and a restart, so both
    are exercised whatever the random examples above happen to reach."""
    no_cod = {"cancel_on_disconnect": False}
    with differential({1: no_cod, 2: no_cod}, 3) as diff:
        orders = [
            {"kind": int(CommandKind.NEW_ORDER), "order_id": i, "symbol_id": AAA, "side": 1,
             "order_type": 1, "tif": 1, "price": 1000, "quantity": 10}
            for i in range(1, 9)
        ]  # fmt: skip
        steps: list[tuple[Any, Any, Any]] = [
            ("send", 1, orders),
            ("leave", 1, 0),
            ("fill", 0, 3),
            ("expire", 0, 1),
            ("send", 1, orders[:1]),  # back: the held events come first
            ("leave", 1, 0),
            ("fill", 0, 2),
            ("restart", 0, 0),  # held events die with the gateway; the orders do not
            ("fill", 0, 2),
            ("send", 1, [{"kind": int(CommandKind.CANCEL), "order_id": 2}]),
        ]
        for step in steps[:5]:
            diff.step(step)
        assert diff.rig.core.stats()["events_held"] > 0
        for step in steps[5:]:
            diff.step(step)
        assert diff.rig.core.stats()["orders_restored"] > 0
        assert diff.model.accounts[2].held == []


def test_a_trade_between_a_replace_and_its_answer_agrees_with_the_model() -> None:
    """A directed race, whatever the random examples reach: a buy stop (valued at AAA's
    reference, 1000) is replaced, and the engine trades a limit order at 1040 before it
    takes the replace; the stop keeps the value its replace was checked at."""
    new = {"kind": int(CommandKind.NEW_ORDER), "symbol_id": AAA, "side": 1, "tif": 1}
    with differential({1: {}, 2: {}}, 5) as diff:
        diff.step(
            ("send", 0, [
                new | {"order_id": 1, "order_type": 1, "price": 1040, "quantity": 10},
                new | {"order_id": 2, "order_type": 3, "stop_price": 900, "quantity": 10},
            ])
        )  # fmt: skip
        replace = {"kind": int(CommandKind.REPLACE), "order_id": 2, "quantity": 10}
        diff.step(("race", 0, [replace]))
        (stop,) = [o for o in diff.model.orders.values() if o.client_id == 2]
        assert diff.model.last_trade[AAA] == 1040  # the race happened (seed 5)
        assert (stop.price, stop.pending) == (1000, 0)
