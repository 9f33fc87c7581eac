"""Bare-metal host tuning: `tradsys tune check` reads the host and says, line by line,
what will hurt TradSys's latency and what to change. It only reads."""

from tradsys.tune.checks import Finding, Verdict, run_checks
from tradsys.tune.host import Host

__all__ = ["Finding", "Host", "Verdict", "run_checks"]
