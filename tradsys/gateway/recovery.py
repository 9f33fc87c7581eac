"""Starting a gateway where another one died: rebuild what it knew, lose nothing acked.

The supervisor restarts a gateway process that dies (``kill -9`` included) while the
shard workers, their rings and their books live on. The old gateway's sessions are gone
(their clients must reconnect) but the orders it sent may still rest, fill and be
cancelled. What a gateway that never died would know is rebuilt from sources that
outlive the process, chosen so that each is right by construction at any instant of a
crash:

- **live orders** (open orders, open notional and quantities): the engines are the
  source of truth. Each worker writes an image of its live orders on request
  (``tradsys.cores.order_image``), only once its command ring is empty — the dead
  gateway's last commands included, since this one sends nothing before it has the
  images — and only with every event pushed, so an image is exact as of the end of the
  worker's event ring;
- **client order ids** and **positions, filled notional, last trade prices**: the
  ledger the gateway writes as it runs (``tradsys.gateway.ledger``); a client id is in
  it before its order can reach a shard, and each position cell commits a trade with one
  store of the trade's exec id, so a trade whose event the dead gateway had counted but
  not yet released from the ring is not counted twice;
- **the events held for accounts without a session** (a fill of a resting order whose
  owner had disconnected): the held-events log (``gateway.held``,
  ``native/gateway_held.c``), written when an event is held and marked when it is pushed
  to the account's next session; the undelivered ones go to that session first;
- **the exchange-id epoch**: ``gateway.epoch`` (``next_epoch``), larger at every start.

While it waits for the images the gateway drains the event rings, counting their fills
(its sessions are not there yet) and writing each event to the held-events log before its
ring slot is released, so a gateway that dies during its own start loses none either; an
event the log has already (held by the dead gateway, which died before releasing its
slot) is not kept twice. A worker that is down answers when the supervisor has
restarted it. Then each image is restored: every order belongs to its account and goes to
the account's first session, which can cancel and replace it by its client id, first
receives the events the dead gateway held for it, then the drained events of the
account's orders (the fills and cancels that came while no gateway ran; events the dead
gateway had routed to a session but not released come again, with the same exec_id,
unless its session's ring still held them: those were held from the ring already and
are not kept twice), and then their later events.

What a dead gateway had staged for a session whose ring was full (routed, not yet
pushed) is in no ring of a session: its pump releases a shard's event from the shard's
ring only once the event has left its memory (``gw_release_routed``), so those events,
and the ones it took after them, are drained here.

The account throttles of a gateway that carries the ledger over start empty and refill at
their rate (``native/gateway_ledger.c``): a restart grants no second burst.

A run killed whole (every process at once) is continued the same way by the next run:
its supervisor carries the dead events rings' unread records into the new rings, has the
workers re-send what was journaled and never pushed, and hands the dead run's ledger to
this one before the gateway starts (``tradsys.cores.dead_run``), so this start drains
and counts those events as it does a dead gateway's.

Rejected alternatives: keeping the whole order table in shared memory (a hash table and
linked lists are not crash-consistent without a log), and replaying the shard journals
for positions (a second matching run of the whole day at every gateway restart).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradsys.config import Config
from tradsys.cores.control import WorkerControl
from tradsys.cores.gateway_rings import attach_each
from tradsys.cores.order_image import OrderImageError, read_image
from tradsys.gateway.core import GatewayCore, GatewayError
from tradsys.gateway.ledger import HELD_FILE, LEDGER_FILE, run_id_of
from tradsys.ring import Ring, segment_name
from tradsys.ring.errors import RingError
from tradsys.wire import LAYOUT_VERSION, RECORD_SIZE

log = logging.getLogger("tradsys.gateway")

IMAGE_TIMEOUT_S = 30.0
"""How long a start waits for every worker's image (a worker being restarted
replays its journal first)."""


@dataclass(frozen=True)
class RecoveryReport:
    carried_over: bool  # the ledger held this run's figures
    restored: int  # live orders rebuilt
    drained: int  # events counted before the restore
    held: int  # kept for the accounts' next sessions (from the log and the drain)
    held_from_log: int = 0  # of those, found in the held-events log
    unread_held: int = 0  # of those, a dead gateway's sessions' unread events


class RestoreRefusedError(GatewayError):
    """The live orders do not fit the configuration (an account or symbol it no longer
    has, more orders than the tables hold): the operator's to put right."""


def refuse_unconfigured(config: Config, images: dict[int, np.ndarray[Any, Any]]) -> None:
    """Refuse a start whose configuration lost the owner or the symbol of a live order.

    Why refuse: the pump could neither route such an order's events (its account has no
    session to come) nor reach it (no symbol to name it by), yet it would still trade:
    an acknowledged order would fill and its owner never be told. Also a table too small
    for the orders, named by its key instead of as a full table."""
    if not images:
        return
    orders: np.ndarray[Any, Any] = np.concatenate(list(images.values()))
    problems = []
    for field, known, what, undo in (
        ("account_id", {a.id for a in config.accounts}, "account", "[[account]]"),
        ("symbol_id", {i.symbol_id for i in config.instruments}, "symbol_id", "[[instrument]]"),
    ):
        ids, counts = np.unique(orders[field], return_counts=True)
        lost = [(int(i), int(n)) for i, n in zip(ids, counts, strict=True) if int(i) not in known]
        if lost:
            listed = ", ".join(f"{what} {i}: {n} order(s)" for i, n in lost)
            problems.append(
                f"live orders of {what}s the configuration no longer has ({listed}): put "
                f"the {undo} back, cancel those orders (their owners, or `tradsys admin "
                "mass-cancel ACCOUNT`), then remove it"
            )
    limit = config.gateway.max_live_orders
    if len(orders) > limit:
        problems.append(
            f"{len(orders)} live orders rest in the books and [gateway] max_live_orders is "
            f"{limit}: raise it to at least {len(orders)}"
        )
    if problems:
        raise RestoreRefusedError("; ".join(problems))


def run_id(config: Config) -> int:
    """This run of the instance, named by the creator of shard 0's command ring (the
    supervisor, which makes the rings anew for each run)."""
    if not config.shards:
        return 0
    ring = Ring.attach(
        segment_name(config.engine.instance, "cmd", config.shards[0].id),
        slot_size=RECORD_SIZE,
        layout_version=LAYOUT_VERSION,
    )
    try:
        info = ring.info()
    finally:
        ring.close()
    return run_id_of(info.creator_pid, info.creator_start_us)


def recover(
    core: GatewayCore,
    config: Config,
    *,
    timeout_s: float = IMAGE_TIMEOUT_S,
    unread_rings: list[str] | None = None,
) -> RecoveryReport:
    """Attach the ledger and the held-events log, hold what the dead gateway's sessions
    never read (``unread_rings``: its session outbound rings, oldest session first), drain,
    ask every worker for its order image, restore. Call before the pump starts and before
    any session."""
    carried = core.attach_ledger(config.instance_dir / LEDGER_FILE, run_id(config))
    from_log = core.attach_held(config.instance_dir / HELD_FILE)
    unread = 0
    for _, ring in attach_each(unread_rings or [], "unread events"):
        unread += core.hold_stale_ring(ring)
    controls: dict[int, WorkerControl] = {}
    try:
        for shard in config.shards:
            controls[shard.id] = WorkerControl.attach(
                segment_name(config.engine.instance, "ctl", shard.id)
            )
        asked = {sid: ctl.request_order_image() for sid, ctl in controls.items()}
        images: dict[int, np.ndarray[Any, Any]] = {}
        drained = 0
        deadline = time.monotonic() + timeout_s
        while len(images) < len(asked):
            drained += core.drain()
            for sid, ctl in controls.items():
                # served first, then an empty ring: every event before the image is counted
                if sid in images or ctl.order_images_served != asked[sid]:
                    continue
                if core.events_waiting(sid):
                    continue
                images[sid] = read_image(config.shard_data_dir(sid), sid, asked[sid])
            if len(images) == len(asked):
                break
            if time.monotonic() > deadline:
                missing = sorted(set(asked) - set(images))
                raise GatewayError(
                    f"shard(s) {missing} did not answer the order-image request within "
                    f"{timeout_s:.0f} s: is the worker running? (tradsys status)"
                )
            core.wait_events(0.01)
        drained += core.drain()
    except (RingError, OrderImageError) as exc:
        raise GatewayError(f"cannot rebuild the gateway's orders: {exc}") from None
    finally:
        for ctl in controls.values():
            ctl.close()
    refuse_unconfigured(config, images)
    restored = sum(core.restore(images[sid]) for sid in sorted(images))
    held = core.hold_drained()
    report = RecoveryReport(carried, restored, drained, held + unread, from_log, unread)
    log.info(
        "start: ledger %s, %d live order(s) restored from the workers, %d event(s) drained, "
        "%d kept for the accounts' next sessions (%d of them held by an earlier gateway, "
        "%d its sessions never read)",
        "carried over" if carried else "new",
        restored,
        drained,
        held + unread,
        from_log,
        unread,
    )
    return report
