"""`tradsys bench` runs every bench in perf/ and writes one report: tables with peers and
ratios, a PNG per latency spectrum, exit 2 when a bench fails. Driven here with made-up
benches in a tmp perf/ folder, so it is quick and every outcome is known."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import tradsys.cli
from tests.ctrl_c import ctrl_c

GOOD = """
import json, sys
quick = "--quick" in sys.argv
print("a human table", flush=True)
print("progress", file=sys.stderr)
doc = {"bench": "good", "quick": quick, "cpus": 2, "python": "3", "results": [
  {"name": "good.throughput", "unit": "records/s", "value": 2e6, "higher_is_better": True,
   "peer": "baseline", "peer_value": 5e5, "ratio": 4.0},
  {"name": "good.rtt.p99", "unit": "us", "value": 3.0, "higher_is_better": False,
   "peer": "baseline", "peer_value": 30.0, "ratio": 10.0,
   "percentiles": [[50, 1.0], [90, 2.0], [99, 3.0], [99.9, 4.0], [100, 9.0]],
   "peer_percentiles": [[50, 10.0], [90, 20.0], [99, 30.0], [99.9, 40.0], [100, 90.0]]}]}
print(json.dumps(doc))
"""
BROKEN = "import sys\nprint('no json here')\nsys.exit(3)\n"


@pytest.fixture
def perf_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    perf = tmp_path / "perf"
    perf.mkdir()
    (perf / "good_bench.py").write_text(GOOD)
    monkeypatch.setattr(tradsys.cli, "PERF_DIR", perf)
    return perf


def test_the_report_has_every_figure_its_peer_the_ratio_and_a_plot(
    perf_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert tradsys.cli.main(["bench", "--quick", "--report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "## good (" in report and "quick, 2 CPUs" in report
    assert "| `good.throughput` | 2.00 M | records/s | baseline | 500 k | 4.0x |" in report
    assert "| `good.rtt.p99` | 3 | us | baseline | 30 | 10.0x |" in report
    assert "![good.rtt.p99](good.rtt.p99.png)" in report
    assert (out / "good.rtt.p99.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert saved[0]["document"]["quick"] is True
    err = capfd.readouterr().err
    assert "bench: [1/1] good ..." in err and "progress" in err


def test_a_failing_bench_is_reported_and_the_exit_code_says_so(
    perf_dir: Path, tmp_path: Path
) -> None:
    (perf_dir / "broken_bench.py").write_text(BROKEN)
    out = tmp_path / "report"
    assert tradsys.cli.main(["bench", "--report", str(out)]) == 2
    report = (out / "report.md").read_text()
    assert "## broken (" in report and "Failed: exited 3." in report
    assert "`good.throughput`" in report  # the others still ran


def test_an_unknown_bench_is_a_user_error(perf_dir: Path) -> None:
    assert tradsys.cli.main(["bench", "nosuch"]) == 1


def test_arguments_after_a_double_dash_reach_the_bench(perf_dir: Path, tmp_path: Path) -> None:
    (perf_dir / "good_bench.py").write_text(
        GOOD.replace('quick = "--quick" in sys.argv', 'quick = "--extra" in sys.argv')
    )
    out = tmp_path / "report"
    assert tradsys.cli.main(["bench", "good", "--report", str(out), "--", "--extra"]) == 0
    assert json.loads((out / "results.json").read_text())[0]["document"]["quick"] is True


def test_a_report_folder_that_cannot_be_made_is_refused_before_any_bench_runs(
    perf_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ran = tmp_path / "ran"
    (perf_dir / "good_bench.py").write_text(f"open({str(ran)!r}, 'w')\n" + GOOD)
    assert tradsys.cli.main(["bench", "--report", "/proc/no/such/folder"]) == 1
    assert "cannot make the report folder /proc/no/such/folder" in capfd.readouterr().err
    assert not ran.exists(), "the benches ran before the report folder was known to be bad"


# stands for a bench whose cleanup after Ctrl-C (workers joined, segments unlinked) takes
# longer than the quarter second subprocess.run would have given it before a SIGKILL
SLOW_CLEANUP = """
import signal, sys, time
try:  # "ready" inside: a Ctrl-C that comes once it is read lands in this try
    print("ready", file=sys.stderr, flush=True)
    signal.pause()
except KeyboardInterrupt:
    time.sleep(1.0)
    open(sys.argv[0] + ".cleaned", "w").close()
    print("slow bench interrupted", file=sys.stderr, flush=True)
    sys.exit(130)
"""

DRIVER = """
import sys
from pathlib import Path
import tradsys.cli
from tests.ctrl_c import ctrl_c
tradsys.cli.PERF_DIR = Path(sys.argv[1])
sys.exit(tradsys.cli.main(["bench", "slow", "--report", sys.argv[2]]))
"""


def test_ctrl_c_waits_for_the_bench_to_clean_up_and_exits_130(tmp_path: Path) -> None:
    perf = tmp_path / "perf"
    perf.mkdir()
    (perf / "slow_bench.py").write_text(SLOW_CLEANUP)
    cmd = [sys.executable, "-c", DRIVER, str(perf), str(tmp_path / "report")]
    code, _, err = ctrl_c(cmd, "stderr", lambda line: line.strip() == "ready")
    assert (perf / "slow_bench.py.cleaned").exists(), err
    assert code == 130, err
    assert "tradsys bench: interrupted" in err
