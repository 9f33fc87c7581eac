"""TradSys: a low-latency, exchange-style trading engine.

Python owns the architecture, protocols and tooling; a small C core (``native/``,
compiled by cffi into ``tradsys._native``) owns the per-record hot path.
"""

__version__ = "0.1.0"
