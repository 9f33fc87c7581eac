"""Wait for symbols to reach a trading phase, as the market-data feed tells it.

An operator's halt, resume or auction control goes to the symbol's shard as a command;
the gateway can only say it sent it. Whether the engine applied it is told on the feed's
status channel: a RESUME of a symbol that is not halted, or an AUCTION_UNCROSS outside an
auction call, changes nothing and publishes nothing. `tradsys admin` watches the status
channel through this to say what really happened. It subscribes before the command is
sent (and learns each symbol's current phase from the snapshot service), so a status
record that comes at once is never missed.
"""

from __future__ import annotations

from tradsys.client.marketdata import MarketDataClient
from tradsys.marketdata.protocol import Channel
from tradsys.matching.api import Phase


class PhaseWatch:
    """The status channel of some symbols: their phases now, and waits for a phase.
    Close it when done (``contextlib.closing``)."""

    def __init__(self, publish: str, snapshot: str, symbols: list[str]) -> None:
        self.symbols = list(symbols)
        self.client = MarketDataClient(publish, snapshot, self.symbols, [Channel.STATUS])

    def phases(self) -> dict[str, Phase | None]:
        """Each symbol's phase as last told (None: not yet)."""
        return {s: self.client.books[s].phase for s in self.symbols}

    def reopens_by_itself(self, symbol: str) -> bool:
        """Whether the symbol's auction call is a volatility auction's, which ends by
        itself at its reopening time (an operator's call lasts until uncrossed)."""
        return self.client.books[symbol].reopen_ns >= 0

    def wait_known(self, timeout_s: float) -> bool:
        """Until every symbol's phase is known (from a snapshot or a status record)."""
        return self.client.run_until(
            lambda: all(p is not None for p in self.phases().values()), timeout_s
        )

    def wait_for(self, wanted: Phase, timeout_s: float) -> dict[str, Phase | None]:
        """Until every symbol is in ``wanted`` or the time is up; the phases then."""
        self.client.run_until(lambda: all(p == wanted for p in self.phases().values()), timeout_s)
        return self.phases()

    def close(self) -> None:
        self.client.close()
