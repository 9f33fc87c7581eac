"""tuning/apply.sh and revert.sh: what they change, record and put back.

Both run here, as they are, against a made-up root (TUNING_ROOT: the files of /sys, /proc,
/etc and /var/lib they tune) and, for their kernel-thread functions, cut out of the
scripts against a made-up /proc. TUNING_ROOT moves their files only; the commands that
act on the host itself (taskset, systemctl) are stand-ins that log what they are asked,
and PATH holds nothing but those stand-ins and a few tools that only read or touch the
paths given (cat, sed, mkdir, cp, rm, dirname, python3 for the CPU-list arithmetic). Any
other command, a real taskset, systemctl or sysctl among them, is not found and fails the
script, so the host cannot be changed even when the tests run as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tradsys.exit_codes import EXIT_INTERNAL, EXIT_USER_ERROR
from tradsys.tune.host import PF_KTHREAD, PF_NO_SETAFFINITY

TUNING = Path(__file__).resolve().parents[2] / "tuning"
SH = "/bin/sh"  # the scripts' interpreter (dash on Debian)
USER_FLAGS = 0x00400100

# Stands in for `taskset -pc CPUS PID`: logs the call and, like the kernel, changes the
# thread's Cpus_allowed_list, or fails as the real one does for the pids the test names.
FAKE_TASKSET = """#!/bin/sh
echo "$*" >> "$TASKSET_LOG"
case " $TASKSET_EINVAL " in *" $3 "*)
    echo "taskset: failed to set pid $3's affinity: Invalid argument" >&2; exit 1 ;;
esac
case " $TASKSET_ESRCH " in *" $3 "*)
    echo "taskset: failed to set pid $3's affinity: No such process" >&2; exit 1 ;;
esac
printf 'Name:\\tx\\nCpus_allowed_list:\\t%s\\n' "$2" > "$FAKE_PROC/$3/status"
echo "pid $3's new affinity list: $2"
"""


def shell_function(script: Path, name: str) -> str:
    """The text of one function of a script, from `name() {` to its closing `}`."""
    lines = script.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"{name}() {{")]
    assert starts, f"{script.name} has no function {name}"
    start = starts[0]
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return "\n".join(lines[start : end + 1]) + "\n"


@dataclass
class FakeProc:
    root: Path
    bin: Path
    log: Path

    def process(self, pid: int, comm: str, ppid: int, flags: int, cpus: str) -> None:
        d = self.root / str(pid)
        d.mkdir(parents=True, exist_ok=True)
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} 0 0 -1 {flags} 0 0 0\n")
        (d / "comm").write_text(comm + "\n")
        (d / "status").write_text(f"Name:\t{comm}\nCpus_allowed_list:\t{cpus}\n")

    def cpus(self, pid: int) -> str:
        text = (self.root / str(pid) / "status").read_text()
        return text.split("Cpus_allowed_list:")[1].strip()

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def run(self, body: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``body`` under `set -eu` with only the fake taskset, cat and sed on PATH."""
        assert shutil.which("taskset", path=str(self.bin)) == str(self.bin / "taskset")
        return subprocess.run(
            [SH, "-c", "set -eu\n" + body],
            env={
                "PATH": str(self.bin),
                "FAKE_PROC": str(self.root),
                "TASKSET_LOG": str(self.log),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=30,
        )


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    taskset = bin_dir / "taskset"
    taskset.write_text(FAKE_TASKSET)
    taskset.chmod(0o755)
    for tool in ("cat", "sed"):
        real = shutil.which(tool)
        assert real is not None
        os.symlink(real, bin_dir / tool)
    fake = FakeProc(tmp_path / "proc", bin_dir, tmp_path / "taskset.log")
    fake.process(1, "systemd", ppid=0, flags=USER_FLAGS, cpus="0-7")
    fake.process(2, "kthreadd", ppid=0, flags=PF_KTHREAD, cpus="0-7")
    fake.process(15, "rcu_preempt", ppid=2, flags=PF_KTHREAD, cpus="0-7")  # lists before 2
    fake.process(20, "kworker/2:1", ppid=2, flags=PF_KTHREAD | PF_NO_SETAFFINITY, cpus="2")
    fake.process(84, "kdamond.0", ppid=2, flags=PF_KTHREAD, cpus="0-7")
    fake.process(95, "nv (queue) 1", ppid=2, flags=PF_KTHREAD, cpus="4-5")
    fake.process(900, "modprobe", ppid=2, flags=USER_FLAGS, cpus="0-7")
    fake.process(902, "x) S 2 (y", ppid=1, flags=USER_FLAGS, cpus="0-7")
    return fake


def apply_body(record: Path) -> str:
    script = TUNING / "apply.sh"
    return (
        shell_function(script, "move_kernel_threads")
        + shell_function(script, "move_kernel_thread")
        + f'move_kernel_threads 0-1 "$FAKE_PROC" "{record}"\n'
    )


def revert_body(record: Path) -> str:
    return (
        shell_function(TUNING / "revert.sh", "restore_kernel_threads")
        + f'restore_kernel_threads "{record}" "$FAKE_PROC"\n'
    )


def test_the_scripts_parse_and_hold_the_kernel_thread_functions() -> None:
    for script, functions in (
        ("apply.sh", ["move_kernel_threads", "move_kernel_thread"]),
        ("revert.sh", ["restore_kernel_threads"]),
    ):
        check = subprocess.run([SH, "-n", str(TUNING / script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        for name in functions:  # and the scripts call them on the real /proc
            assert shell_function(TUNING / script, name).endswith("\n}\n")
    assert 'move_kernel_threads "$housekeeping" "$root/proc" "$state/affinity"' in (
        (TUNING / "apply.sh").read_text()
    )
    assert 'restore_kernel_threads "$state/affinity" "$root/proc"' in (
        (TUNING / "revert.sh").read_text()
    )


def test_apply_moves_kthreadd_first_then_every_movable_kernel_thread(
    proc: FakeProc, tmp_path: Path
) -> None:
    record = tmp_path / "affinity"
    done = proc.run(apply_body(record))
    assert done.returncode == 0, done.stderr
    assert proc.calls() == ["-pc 0-1 2", "-pc 0-1 15", "-pc 0-1 84", "-pc 0-1 95"]
    assert record.read_text().splitlines() == [
        "2\t0-7\tkthreadd",
        "15\t0-7\trcu_preempt",
        "84\t0-7\tkdamond.0",
        "95\t4-5\tnv (queue) 1",
    ]
    assert "set  kernel thread 84 (kdamond.0) CPUs = 0-1 (was 0-7)" in done.stdout
    # the per-CPU kworker, init, a user-mode helper and a process named like a stat line
    assert [proc.cpus(pid) for pid in (20, 1, 900, 902)] == ["2", "0-7", "0-7", "0-7"]


def test_apply_skips_a_thread_that_refuses_or_ends_and_goes_on(
    proc: FakeProc, tmp_path: Path
) -> None:
    proc.process(30, "refuses", ppid=2, flags=PF_KTHREAD, cpus="0-7")
    proc.process(31, "ends", ppid=2, flags=PF_KTHREAD, cpus="0-7")
    proc.process(32, "ended", ppid=2, flags=PF_KTHREAD, cpus="0-7")
    (proc.root / "32" / "status").unlink()  # ended between its stat and its status
    record = tmp_path / "affinity"
    done = proc.run(apply_body(record), TASKSET_EINVAL="30", TASKSET_ESRCH="31")
    assert done.returncode == 0, done.stderr
    assert "skip kernel thread 30 (refuses): Invalid argument" in done.stdout
    assert "skip kernel thread 31 (ends): No such process" in done.stdout
    assert [line.split("\t")[0] for line in record.read_text().splitlines()] == [
        "2",
        "15",
        "84",
        "95",
    ]
    assert "-pc 0-1 32" not in proc.calls()


def test_revert_restores_each_moved_thread_but_not_a_reused_pid(
    proc: FakeProc, tmp_path: Path
) -> None:
    record = tmp_path / "affinity"
    assert proc.run(apply_body(record)).returncode == 0
    assert [proc.cpus(pid) for pid in (2, 84, 95)] == ["0-1", "0-1", "0-1"]
    # kdamond.0 ended and its pid now belongs to another process
    proc.process(84, "bash", ppid=1, flags=USER_FLAGS, cpus="0-1")
    proc.log.unlink()
    done = proc.run(revert_body(record), TASKSET_ESRCH="95")
    assert done.returncode == 0, done.stderr
    assert proc.calls() == ["-pc 0-7 2", "-pc 0-7 15", "-pc 4-5 95"]
    assert proc.cpus(2) == "0-7" and proc.cpus(84) == "0-1"
    assert "restored kernel thread 2 (kthreadd) CPUs = 0-7" in done.stdout
    assert "skip kernel thread 84 (kdamond.0): it ended" in done.stdout
    assert "skip kernel thread 95 (nv (queue) 1): No such process" in done.stdout


def test_revert_without_a_record_does_nothing(proc: FakeProc, tmp_path: Path) -> None:
    done = proc.run(revert_body(tmp_path / "missing"))
    assert done.returncode == 0, done.stderr
    assert proc.calls() == []


# The whole scripts, against a made-up root: every file apply.sh tunes, with the values a
# stock host has. The stand-ins log what they are asked and change nothing.
HOST_FILES = {
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "powersave",
    "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor": "powersave",
    "sys/devices/system/cpu/cpu0/cpuidle/state2/disable": "0",
    "sys/devices/system/cpu/cpu1/cpuidle/state2/disable": "0",
    "sys/devices/system/cpu/cpu0/power/pm_qos_resume_latency_us": "0",
    "sys/devices/system/cpu/cpu1/power/pm_qos_resume_latency_us": "0",
    "sys/kernel/mm/transparent_hugepage/enabled": "[always] madvise never",
    "proc/irq/24/smp_affinity_list": "0-1",
    "sys/devices/virtual/workqueue/cpumask": "3",
}
# The sysctls apply.sh writes (sysctl.conf's keys and kernel.watchdog_cpumask), at a stock
# host's values; net.core.busy_poll is left out: a kernel without a key skips it.
HOST_SYSCTLS = {
    "kernel.numa_balancing": "1",
    "vm.swappiness": "60",
    "vm.stat_interval": "1",
    "kernel.watchdog_cpumask": "0-7",
    "net.core.rmem_max": "212992",
    "net.core.wmem_max": "212992",
    "net.core.busy_read": "0",
}
ABSENT_SYSCTL = "net.core.busy_poll"


def sysctl_conf() -> dict[str, str]:
    """tuning/sysctl.conf's settings, key → value."""
    out = {}
    for line in (TUNING / "sysctl.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def sysctl_path(key: str) -> str:
    return "proc/sys/" + key.replace(".", "/")


TUNED = {
    "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "performance",
    "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor": "performance",
    "sys/devices/system/cpu/cpu0/cpuidle/state2/disable": "1",
    "sys/devices/system/cpu/cpu1/cpuidle/state2/disable": "1",
    "sys/devices/system/cpu/cpu0/power/pm_qos_resume_latency_us": "0",  # housekeeping
    "sys/devices/system/cpu/cpu1/power/pm_qos_resume_latency_us": "n/a",
    "sys/kernel/mm/transparent_hugepage/enabled": "madvise",
    "proc/irq/24/smp_affinity_list": "0",
    "sys/devices/virtual/workqueue/cpumask": "1",
}
# what revert.sh writes back: a choice file's chosen word
RESTORED = {**HOST_FILES, "sys/kernel/mm/transparent_hugepage/enabled": "always"}
# No `sysctl`: the scripts write /proc/sys under TUNING_ROOT, and a call to the real one
# (absent from PATH here) would fail the script.
STAND_INS = {
    "systemctl": 'echo "systemctl $*" >> "$TASKSET_LOG"\n[ "$1" != is-active ] || [ -n "$ACTIVE" ]',
}


@pytest.fixture
def host(proc: FakeProc, tmp_path: Path) -> Path:
    """A root whose /proc is ``proc``'s, with the tunable files and the tools the whole
    scripts run."""
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(proc.root, root / "proc")
    files = {**HOST_FILES, **{sysctl_path(k): v for k, v in HOST_SYSCTLS.items()}}
    for rel, value in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(value + "\n")
    for name, body in STAND_INS.items():
        (proc.bin / name).write_text(f"#!/bin/sh\n{body}\n")
        (proc.bin / name).chmod(0o755)
    for tool in ("mkdir", "cp", "rm", "dirname"):
        real = shutil.which(tool)
        assert real is not None
        os.symlink(real, proc.bin / tool)
    # the interpreter itself: a python3 found on PATH may be a shell shim
    os.symlink(os.path.realpath(sys.executable), proc.bin / "python3")
    return root


def run_script(proc: FakeProc, root: Path, *argv: str, active: str = "") -> str:
    """Run a whole script under ``root``; its stdout. It must succeed."""
    done = start_script(proc, root, *argv, active=active)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def start_script(
    proc: FakeProc, root: Path, *argv: str, active: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run a whole script under ``root``, whatever it exits with; refused unless the script
    takes its paths from TUNING_ROOT (one that did not would tune this host, as root)."""
    assert "root=${TUNING_ROOT:-}" in Path(argv[0]).read_text(), argv[0]
    return subprocess.run(
        [SH, *argv],
        env={
            "PATH": str(proc.bin),
            "TUNING_ROOT": str(root),
            "FAKE_PROC": str(proc.root),
            "TASKSET_LOG": str(proc.log),
            "ACTIVE": active,
        },
        capture_output=True,
        text=True,
        timeout=30,
    )


def host_values(root: Path) -> dict[str, str]:
    return {rel: (root / rel).read_text().strip() for rel in HOST_FILES}


def sysctls(root: Path) -> dict[str, str]:
    return {key: (root / sysctl_path(key)).read_text().strip() for key in HOST_SYSCTLS}


def test_the_made_up_host_has_every_sysctl_apply_writes_but_one() -> None:
    """So that the tests below cover each: a key added to sysctl.conf must be added here."""
    assert set(sysctl_conf()) | {"kernel.watchdog_cpumask"} == set(HOST_SYSCTLS) | {ABSENT_SYSCTL}


def test_apply_sets_every_value_and_revert_puts_the_hosts_own_back_after_two_applies(
    proc: FakeProc, host: Path
) -> None:
    """Each helper keeps its own variables (sh has no locals: a save() that reused
    set_value's names once wrote every old value back), and a second apply, which sees
    the tuned values, does not make revert restore those."""
    out = run_script(proc, host, str(TUNING / "apply.sh"), "0", active="irqbalance")
    assert host_values(host) == TUNED, out
    assert f"set  {host}/sys/kernel/mm/transparent_hugepage/enabled = madvise" in out
    assert [proc.cpus(pid) for pid in (2, 15, 84, 95)] == ["0", "0", "0", "0"]
    assert "systemctl stop irqbalance" in proc.calls()
    run_script(proc, host, str(TUNING / "apply.sh"), "0")
    assert host_values(host) == TUNED

    out = run_script(proc, host, str(TUNING / "revert.sh"))
    assert host_values(host) == RESTORED, out
    assert [proc.cpus(pid) for pid in (2, 15, 84, 95)] == ["0-7", "0-7", "0-7", "4-5"]
    assert "systemctl start irqbalance" in proc.calls()
    assert not (host / "etc/sysctl.d/90-tradsys.conf").exists()
    assert not (host / "var/lib/tradsys-tuning").exists()


def test_apply_writes_the_sysctls_and_revert_puts_the_hosts_own_back_after_two_applies(
    proc: FakeProc, host: Path
) -> None:
    """Loading sysctl.conf and deleting it again reset nothing (vm.swappiness=0 stayed
    until a reboot): apply records each key's value and revert writes the first back."""
    wanted = {k: v for k, v in sysctl_conf().items() if k != ABSENT_SYSCTL}
    out = run_script(proc, host, str(TUNING / "apply.sh"), "0-1")
    assert sysctls(host) == {**HOST_SYSCTLS, **wanted, "kernel.watchdog_cpumask": "0-1"}, out
    assert f"set  {host}/proc/sys/vm/swappiness = 0 (was 60)" in out
    assert f"skip {host}/proc/sys/net/core/busy_poll (not writable here)" in out
    installed = (host / "etc/sysctl.d/90-tradsys.conf").read_text()
    assert installed.startswith((TUNING / "sysctl.conf").read_text())
    assert installed.endswith("kernel.watchdog_cpumask = 0-1\n")
    # a second apply, with other housekeeping CPUs, sees the tuned values
    run_script(proc, host, str(TUNING / "apply.sh"), "0")
    assert sysctls(host)["kernel.watchdog_cpumask"] == "0"

    out = run_script(proc, host, str(TUNING / "revert.sh"))
    assert sysctls(host) == HOST_SYSCTLS, out
    assert f"restored {host}/proc/sys/vm/swappiness = 60" in out
    assert not (host / "etc/sysctl.d/90-tradsys.conf").exists()
    assert not (host / sysctl_path(ABSENT_SYSCTL)).exists()
    assert not [call for call in proc.calls() if call.startswith("sysctl")]


def nothing_changed(proc: FakeProc, root: Path) -> None:
    """The made-up host as the fixture wrote it, with no record and no sysctl file."""
    assert host_values(root) == HOST_FILES
    assert sysctls(root) == HOST_SYSCTLS
    assert [proc.cpus(pid) for pid in (2, 15, 84, 95)] == ["0-7", "0-7", "0-7", "4-5"]
    assert not (root / "var/lib/tradsys-tuning").exists()
    assert not (root / "etc/sysctl.d").exists()
    assert [call for call in proc.calls() if not call.startswith("systemctl is-active")] == []


def test_a_dry_run_says_what_it_would_change_and_changes_and_records_nothing(
    proc: FakeProc, host: Path
) -> None:
    out = run_script(proc, host, str(TUNING / "apply.sh"), "--dry-run", "0", active="irqbalance")
    nothing_changed(proc, host)
    assert f"would set {host}/proc/sys/vm/swappiness = 0 (now 60)" in out
    assert f"would set {host}/proc/sys/kernel/watchdog_cpumask = 0 (now 0-7)" in out
    assert (
        f"would set {host}/sys/kernel/mm/transparent_hugepage/enabled = madvise "
        "(now [always] madvise never)"
    ) in out
    assert "would set kernel thread 84 (kdamond.0) CPUs = 0 (now 0-7)" in out
    assert "would stop irqbalance" in out
    assert out.splitlines()[-1] == "dry run: nothing was changed or recorded"
    assert "set  " not in out  # what a real run prints for each change


@pytest.mark.parametrize(
    ("tool", "named"), [("python3", "python3"), ("taskset", "taskset (util-linux)")]
)
def test_a_missing_prerequisite_stops_apply_before_it_changes_anything(
    proc: FakeProc, host: Path, tool: str, named: str
) -> None:
    """python3 was needed half way, after the governors and C-states had changed."""
    (proc.bin / tool).unlink()
    done = start_script(proc, host, str(TUNING / "apply.sh"), "0-1", active="irqbalance")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == f"apply.sh: missing: {named}; nothing was changed\n"
    assert done.stdout == ""
    nothing_changed(proc, host)


@pytest.mark.parametrize("argv", [[], ["x"], ["3-1"], ["0", "1"], ["--dry-run"]])
def test_apply_refuses_a_bad_argument_before_it_changes_anything(
    proc: FakeProc, host: Path, argv: list[str]
) -> None:
    done = start_script(proc, host, str(TUNING / "apply.sh"), *argv)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(("usage: apply.sh", "apply.sh: HOUSEKEEPING_CPUS"))
    nothing_changed(proc, host)


def unit_settings() -> dict[str, str]:
    """tuning/tradsys.service's settings, key → value (the last one wins, as in systemd)."""
    out = {}
    for line in (TUNING / "tradsys.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", " ")):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_the_unit_does_not_restart_an_instance_that_exits_on_a_user_error() -> None:
    """Exit 1 is a configuration or host error (CONVENTIONS): restarting every 2 s forever
    helps nobody; an internal failure (2) is worth a restart."""
    unit = unit_settings()
    assert unit["Restart"] == "on-failure"
    assert unit["RestartPreventExitStatus"].split() == [str(EXIT_USER_ERROR)]
    assert str(EXIT_INTERNAL) not in unit["RestartPreventExitStatus"].split()
    text = (TUNING / "tradsys.service").read_text()
    assert "data_dir" in text and 'KERNEL=="cpu_dma_latency"' in text


RISKY_BOOT_PARAMETERS = ("idle=poll", "tsc=reliable", "mce=ignore_ce", "audit=0")


def test_the_kernel_command_line_example_leaves_the_host_wide_risks_commented_out() -> None:
    """idle=poll made housekeeping CPUs poll too (contrary to the power note); the others
    disable a safety check: each is explained, and none is in the line to copy."""
    text = (TUNING / "kernel-cmdline.example").read_text()
    (line,) = [line for line in text.splitlines() if line and not line.startswith("#")]
    words = line.split()
    assert "nohz_full=2-5" in words and "irqaffinity=0-1" in words
    for risky in RISKY_BOOT_PARAMETERS:
        assert risky not in words
        assert f"#   {risky} " in text, risky  # with its reason


def test_apply_refuses_housekeeping_cpus_that_are_not_online(proc: FakeProc, host: Path) -> None:
    """Review: the workqueue mask and watchdog_cpumask refuse CPUs the host lacks, which
    stopped apply half way; now such a list is refused before anything changes."""
    (host / "sys/devices/system/cpu/online").write_text("0-1\n")
    done = start_script(proc, host, str(TUNING / "apply.sh"), "0-3")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "names CPU 2, which is not online (online: 0-1)" in done.stderr
    nothing_changed(proc, host)


def test_a_value_the_kernel_refuses_is_skipped_and_apply_goes_on(
    proc: FakeProc, host: Path
) -> None:
    """Review: under set -e the first write the kernel refused (a sysfs EINVAL) ended the
    script there, the later values (THP, IRQs, sysctls) never set. A file that refuses
    the value: a live process's oom_score_adj, which takes only numbers."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        qos = host / "sys/devices/system/cpu/cpu1/power/pm_qos_resume_latency_us"
        qos.unlink()
        os.symlink(f"/proc/{sleeper.pid}/oom_score_adj", qos)
        out = run_script(proc, host, str(TUNING / "apply.sh"), "0")
        assert f"skip {qos} (the kernel refused n/a)" in out
        # everything after it was still set
        assert (host / "sys/kernel/mm/transparent_hugepage/enabled").read_text().strip() == (
            "madvise"
        )
        assert sysctls(host)["vm.swappiness"] == "0"
        assert (host / "etc/sysctl.d/90-tradsys.conf").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
