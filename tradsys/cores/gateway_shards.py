"""Which shard workers run, as the gateway tells its clients.

Why: a worker that is down (crashed and restarting, or failing to restart: a full disk,
a journal it refuses) reads nothing from its commands ring. Orders sent for its symbols
would wait there unanswered -- for good, if it never comes back -- and once the pump's
stage for it is full, every other shard's orders would wait behind them. A restart after
a crash takes well under a second, so commands wait through that; past
``[gateway] shard_down_ms`` the shard is marked down at the pump, which answers each
command for it SHARD_UNAVAILABLE (nothing changed), until the worker runs again. The
workers' state is read from their control blocks, which the supervisor keeps for the
whole run.
"""

from __future__ import annotations

import logging
import time

from tradsys.config import Config
from tradsys.cores.control import WorkerControl, WorkerState
from tradsys.gateway import GatewayCore
from tradsys.ring import segment_name
from tradsys.ring.errors import RingError

log = logging.getLogger("tradsys.gateway")


class ShardWatch:
    """Marks shards down and up at the gateway core from their workers' state."""

    def __init__(self, config: Config, core: GatewayCore) -> None:
        self.core = core
        self.instance = config.engine.instance
        self.after_s = config.gateway.shard_down_ms / 1000
        self.shard_ids = [shard.id for shard in config.shards]
        self.controls: dict[int, WorkerControl] = {}
        self.not_running_since: dict[int, float] = {}
        self.down: set[int] = set()
        self.forgiven_until = 0.0
        for sid in self.shard_ids:  # now, not at the first tick: the gateway's fds settle
            self._state(sid)

    def _state(self, shard_id: int) -> WorkerState | None:
        ctl = self.controls.get(shard_id)
        if ctl is None:
            try:
                ctl = WorkerControl.attach(segment_name(self.instance, "ctl", shard_id))
            except (OSError, RingError, ValueError):
                return None  # no supervisor (a gateway run on its own): nothing to tell
            self.controls[shard_id] = ctl
        return WorkerState(ctl.state)

    def _silent_s(self, shard_id: int) -> float:
        """How long a worker that says RUNNING has not beaten (it does every slice, 20
        ms, idle or not): one that is hung -- stopped, deadlocked -- says RUNNING still."""
        ctl = self.controls[shard_id]
        return max(0.0, (time.monotonic_ns() - int(ctl.heartbeat_ns)) / 1e9)

    def forgive(self, now: float) -> None:
        """After a suspend of the whole instance (Ctrl-Z): the workers' silence was not
        theirs; judge it afresh once they have had ``shard_down_ms`` to beat."""
        self.forgiven_until = now + self.after_s

    def watch(self, now: float) -> None:
        """Call every tick (``now``: the loop's clock)."""
        if not self.after_s:
            return
        for sid in self.shard_ids:
            state = self._state(sid)
            silent = 0.0
            if state == WorkerState.RUNNING and now >= self.forgiven_until:
                silent = self._silent_s(sid)
            if state is None or (state == WorkerState.RUNNING and silent < self.after_s):
                self.not_running_since.pop(sid, None)
                if sid in self.down:
                    self.down.discard(sid)
                    self.core.set_shard_down(sid, False)
                    log.warning("shard %d runs again: its symbols take commands", sid)
                continue
            since = self.not_running_since.setdefault(sid, now - silent)
            if sid not in self.down and now - since >= self.after_s:
                self.down.add(sid)
                self.core.set_shard_down(sid, True)
                how = "RUNNING, but no heartbeat: hung" if silent else state.name
                log.warning(
                    "shard %d has not been running for %.1f s (%s): commands for its "
                    "symbols are answered SHARD_UNAVAILABLE until it runs again",
                    sid,
                    now - since,
                    how,
                )

    def close(self) -> None:
        for ctl in self.controls.values():
            ctl.close()
        self.controls.clear()
