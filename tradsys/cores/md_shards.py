"""The md sidecar's end of each shard: the shard's md ring (the sidecar is its consumer)
and its control block, through which the sidecar asks the worker for market-data refresh
images (native/worker.h)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradsys.config import Config
from tradsys.cores.control import WorkerControl
from tradsys.marketdata.l2store import L2Store
from tradsys.ring import Ring, segment_name
from tradsys.wire import LAYOUT_VERSION, RECORD_SIZE


@dataclass
class ShardFeed:
    """One shard's md ring (this process its consumer) and control block."""

    shard_id: int
    ring: Ring
    control: WorkerControl
    # the worker's refresh-request count when this sidecar last asked: the refresh is
    # served once the worker's served count reaches it
    refresh_asked: int = 0

    @classmethod
    def attach(cls, instance: str, shard_id: int) -> ShardFeed:
        """Attach to the segments the supervisor created for the shard (nothing is left
        mapped if either cannot be attached)."""
        ring = Ring.attach(
            segment_name(instance, "md", shard_id),
            slot_size=RECORD_SIZE,
            layout_version=LAYOUT_VERSION,
            role="consumer",
        )
        try:
            control = WorkerControl.attach(segment_name(instance, "ctl", shard_id))
        except BaseException:
            ring.close()
            raise
        return cls(shard_id, ring, control)

    def ask_for_refresh(self) -> None:
        """Ask the worker to push every symbol's book image into the md ring at its next
        quiescent point."""
        self.refresh_asked = self.control.request_md_refresh()

    def close(self) -> None:
        self.ring.close()
        self.control.close()


def ask_again_for_cut_images(feeds: list[ShardFeed], store: L2Store, config: Config) -> None:
    """Ask again for a refresh that a worker served but whose image did not complete
    (cut by a crash of the worker): without it, snapshot requests for the shard's symbols
    would wait for an image that never comes."""
    if store.all_servable():
        return
    for feed in feeds:
        served = feed.control.md_refreshes_served
        # served first, then the ring: an image pushed before `served` is drained
        if served == feed.refresh_asked and feed.ring.readable == 0:
            mine = store.index(np.array([i.symbol_id for i in config.symbols_of(feed.shard_id)]))
            if len(mine) and not store.all_servable(mine):
                feed.ask_for_refresh()
