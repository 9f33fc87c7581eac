"""The md sidecar's idle wait: short while records or requests come, long once the
market has been quiet for QUIET_AFTER_NS (audit S: an idle sidecar woke ~430 times a
second, 7 % of a CPU, only to find no snapshot request)."""

from tradsys.cores import md_sidecar
from tradsys.cores.md_sidecar import idle_wait_s


def test_the_bound_grows_once_the_market_is_quiet() -> None:
    assert idle_wait_s(0) == md_sidecar.IDLE_WAIT_S
    assert idle_wait_s(md_sidecar.QUIET_AFTER_NS - 1) == md_sidecar.IDLE_WAIT_S
    assert idle_wait_s(md_sidecar.QUIET_AFTER_NS) == md_sidecar.IDLE_WAIT_QUIET_S
    # a late joiner to a quiet market still gets its snapshot within a heartbeat's time
    assert md_sidecar.IDLE_WAIT_QUIET_S <= 0.1
