"""Every bench ends the same way (perf/_common.run_bench): 2 and one line naming the
failure, 130 and a line for Ctrl-C, never a bare traceback with exit 1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perf"))
import _common as common


class BenchError(Exception):
    """As each bench names the failures it raises on purpose."""


def _raise(exc: BaseException) -> int:
    raise exc


@pytest.mark.parametrize(
    ("exc", "code", "line", "traceback"),
    [
        (BenchError("the subscriber never saw the feed"), 2, "md bench failed: BenchError", False),
        (ZeroDivisionError("division by zero"), 2, "md bench failed: ZeroDivisionError", True),
        (KeyboardInterrupt(), 130, "md bench interrupted", False),
    ],
)
def test_a_bench_that_fails_or_is_interrupted_says_so_in_one_line(
    exc: BaseException, code: int, line: str, traceback: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    assert common.run_bench("md", lambda: _raise(exc)) == code
    err = capsys.readouterr().err
    assert line in err
    assert ("Traceback" in err) == traceback


def test_a_bench_that_runs_gives_its_own_code() -> None:
    assert common.run_bench("md", lambda: 0) == 0
