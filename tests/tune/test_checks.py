"""`tradsys tune check` against made-up hosts (a tmp tree shaped like /proc and /sys), one
test per thing it must notice, and once against this machine through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.engine_toml import one_shard_instance
from tradsys.config import Config, load_config
from tradsys.ring.segment import process_start_us
from tradsys.tune import Finding, Host, Verdict, run_checks
from tradsys.tune.host import (
    PF_KTHREAD,
    PF_NO_SETAFFINITY,
    format_cpu_list,
    parse_cpu_list,
    parse_cpu_mask,
    parse_proc_stat,
)
from tradsys.tune.report import is_ready, render
from tradsys.tune.running import EngineProcess, RunningInstance

USER_FLAGS = 0x00400100  # an ordinary process's (PF_RANDOMIZE | PF_FORKNOEXEC)


class FakeHost:
    """Writes a /proc + /sys tree of a host tuned the way tuning/README.md says; each
    test then breaks one thing."""

    def __init__(self, root: Path, cpus: int = 8) -> None:
        self.root = root
        online = f"0-{cpus - 1}"
        self.write("sys/devices/system/cpu/online", online)
        self.write("sys/devices/system/cpu/isolated", "2-5")
        self.write("sys/devices/system/cpu/nohz_full", "2-5")
        self.write("proc/cmdline", "quiet isolcpus=managed_irq,domain,2-5 rcu_nocbs=2-5 idle=poll")
        for cpu in range(cpus):
            base = f"sys/devices/system/cpu/cpu{cpu}"
            self.write(f"{base}/cpufreq/scaling_governor", "performance")
            for i, (name, latency, disabled) in enumerate(
                [("POLL", 0, "0"), ("C1", 2, "0"), ("C6", 133, "1")]
            ):
                self.write(f"{base}/cpuidle/state{i}/name", name)
                self.write(f"{base}/cpuidle/state{i}/latency", str(latency))
                self.write(f"{base}/cpuidle/state{i}/disable", disabled)
        self.write("sys/devices/system/cpu/cpuidle/current_driver", "intel_idle")
        self.write("sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never")
        self.write("proc/swaps", "Filename\tType\tSize\tUsed\tPriority")
        self.write("proc/sys/kernel/numa_balancing", "0")
        self.write("proc/self/timerslack_ns", "1")
        self.write("sys/devices/system/node/node0/cpulist", online)
        self.write("sys/devices/system/clocksource/clocksource0/current_clocksource", "tsc")
        self.write("proc/irq/24/smp_affinity_list", "0-1")
        self.write("proc/irq/25/smp_affinity_list", "6-7")
        self.write("sys/devices/virtual/workqueue/cpumask", "c3")  # 0-1 and 6-7
        # kthreadd and one unbound kernel thread on the housekeeping CPUs; a per-CPU one
        # (which cannot move) and init may run on engine CPUs, and are no concern
        self.process(1, "systemd", ppid=0, flags=USER_FLAGS, cpus=online)
        self.process(2, "kthreadd", ppid=0, flags=PF_KTHREAD, cpus="0-1")
        self.process(20, "kworker/2:1", ppid=2, flags=PF_KTHREAD | PF_NO_SETAFFINITY, cpus="2")
        self.process(84, "kdamond.0", ppid=2, flags=PF_KTHREAD, cpus="0-1")

    def process(self, pid: int, comm: str, ppid: int, flags: int, cpus: str) -> None:
        """A /proc/PID with what the kernel-thread check reads: stat, comm, status."""
        self.write(f"proc/{pid}/stat", f"{pid} ({comm}) S {ppid} {pid} 0 0 -1 {flags} 0 0 0")
        self.write(f"proc/{pid}/comm", comm)
        self.write(f"proc/{pid}/status", f"Name:\t{comm}\nCpus_allowed_list:\t{cpus}")

    def write(self, path: str, text: str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n")

    def host(self) -> Host:
        return Host(root=self.root, memlock_bytes=None)


def pinned_config(
    shards: dict[int, int], gateway: int | None = 4, md: int | None = 5, lock_memory: bool = True
) -> Config:
    """The built-in config with shards, gateway and md on the given CPUs, locking its
    memory as a trading host's would."""
    base = load_config()
    shard = base.shards[0]
    return msgspec.structs.replace(
        base,
        engine=msgspec.structs.replace(base.engine, lock_memory=lock_memory),
        shards=[msgspec.structs.replace(shard, id=i, core=c) for i, c in shards.items()],
        gateway=msgspec.structs.replace(base.gateway, core=gateway),
        md=msgspec.structs.replace(base.md, core=md),
    )


TUNED = {0: 2, 1: 3}


def findings_of(fake: FakeHost, config: Config, check: str) -> list[Finding]:
    return [f for f in run_checks(fake.host(), config) if f.check == check]


def verdicts(findings: list[Finding]) -> set[Verdict]:
    return {f.verdict for f in findings}


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


def test_a_tuned_host_is_ready_even_when_strict(fake: FakeHost) -> None:
    findings = run_checks(fake.host(), pinned_config(TUNED))
    assert [f for f in findings if f.verdict is not Verdict.OK] == []
    assert is_ready(findings, strict=True)
    assert render(findings).splitlines()[-1].startswith("ready: 0 problem(s)")


def test_too_few_cores_and_unpinned_processes_cost_latency(tmp_path: Path) -> None:
    fake = FakeHost(tmp_path, cpus=2)
    config = load_config()  # nothing pinned
    assert verdicts(findings_of(fake, config, "cores")) == {Verdict.WARN}
    assert "not pinned: shard 0, gateway, md" in findings_of(fake, config, "pinning")[0].found
    assert is_ready(run_checks(fake.host(), config))
    assert not is_ready(run_checks(fake.host(), config), strict=True)


def test_a_pinned_core_that_is_not_online_is_bad(fake: FakeHost) -> None:
    findings = findings_of(fake, pinned_config({0: 2, 1: 12}), "cores")
    bad = [f for f in findings if f.verdict is Verdict.BAD]
    assert len(bad) == 1 and "shard 1 is pinned to CPU 12" in bad[0].found
    assert not is_ready(run_checks(fake.host(), pinned_config({0: 2, 1: 12})))


def test_two_processes_on_one_core_is_bad(fake: FakeHost) -> None:
    findings = findings_of(fake, pinned_config({0: 2, 1: 3}, gateway=3), "cores")
    assert any(f.verdict is Verdict.BAD and "shard 1 and gateway" in f.found for f in findings)


def test_pinning_to_cpu0_is_flagged(fake: FakeHost) -> None:
    findings = findings_of(fake, pinned_config({0: 0, 1: 3}), "pinning")
    assert any("CPU 0" in f.found for f in findings)


def test_pinned_cores_outside_isolcpus_nohz_and_rcu_nocbs(fake: FakeHost) -> None:
    fake.write("sys/devices/system/cpu/isolated", "2-3")
    fake.write("sys/devices/system/cpu/nohz_full", "(null)")
    fake.write("proc/cmdline", "quiet")
    found = [f.found for f in findings_of(fake, pinned_config(TUNED), "isolation")]
    assert "isolcpus does not cover pinned CPU(s) 4-5" in found
    assert "nohz_full does not cover pinned CPU(s) 2-5" in found
    assert "rcu_nocbs does not cover pinned CPU(s) 2-5" in found


def test_a_powersave_governor_is_flagged(fake: FakeHost) -> None:
    fake.write("sys/devices/system/cpu/cpu3/cpufreq/scaling_governor", "powersave")
    (finding,) = findings_of(fake, pinned_config(TUNED), "cpu frequency")
    assert finding.verdict is Verdict.WARN and "powersave on CPU(s) 3" in finding.found


def test_deep_cstates_on_engine_cores_are_flagged(fake: FakeHost) -> None:
    fake.write("sys/devices/system/cpu/cpu2/cpuidle/state2/disable", "0")
    (finding,) = findings_of(fake, pinned_config(TUNED), "c-states")
    assert finding.verdict is Verdict.WARN and "C6 (exit 133 µs)" in finding.found


def test_idle_cpus_that_halt_are_flagged_unless_the_instance_bounds_their_exit(
    fake: FakeHost,
) -> None:
    fake.write("proc/cmdline", "quiet isolcpus=managed_irq,domain,2-5 rcu_nocbs=2-5")
    (finding,) = findings_of(fake, pinned_config(TUNED), "idle exits")
    assert finding.verdict is Verdict.WARN
    assert "C1 on CPU(s) 2-5" in finding.found  # the disabled C6 is not named
    assert "cpu_latency_us = 0" in finding.fix
    bounded = msgspec.structs.replace(
        pinned_config(TUNED),
        engine=msgspec.structs.replace(pinned_config(TUNED).engine, cpu_latency_us=0),
    )
    (finding,) = findings_of(fake, bounded, "idle exits")
    assert finding.verdict is Verdict.OK and "0 µs" in finding.found


def test_engine_cpus_held_out_of_idle_states_per_cpu_need_no_latency_request(
    fake: FakeHost,
) -> None:
    fake.write("proc/cmdline", "quiet isolcpus=managed_irq,domain,2-5 rcu_nocbs=2-5")
    for cpu in (2, 3, 4):  # what tuning/apply.sh 0-1 does, but one engine CPU missed
        fake.write(f"sys/devices/system/cpu/cpu{cpu}/power/pm_qos_resume_latency_us", "n/a")
    (finding,) = findings_of(fake, pinned_config(TUNED), "idle exits")
    assert finding.verdict is Verdict.WARN and "C1 on CPU(s) 5" in finding.found
    fake.write("sys/devices/system/cpu/cpu5/power/pm_qos_resume_latency_us", "n/a")
    (finding,) = findings_of(fake, pinned_config(TUNED), "idle exits")
    assert finding.verdict is Verdict.OK and "2-5 poll" in finding.found


def test_a_host_without_a_cpuidle_driver_halts_whatever_the_instance_asks(
    fake: FakeHost,
) -> None:
    """No driver (Firecracker's guests): the idle loop halts and nothing binds it, so a
    latency request, or CPUs held at resume latency "n/a", must not read as polling."""
    fake.write("proc/cmdline", "quiet isolcpus=managed_irq,domain,2-5 rcu_nocbs=2-5")
    fake.write("sys/devices/system/cpu/cpuidle/current_driver", "none")
    for cpu in range(2, 6):
        fake.write(f"sys/devices/system/cpu/cpu{cpu}/power/pm_qos_resume_latency_us", "n/a")
    bounded = msgspec.structs.replace(
        pinned_config(TUNED),
        engine=msgspec.structs.replace(pinned_config(TUNED).engine, cpu_latency_us=0),
    )
    (finding,) = findings_of(fake, bounded, "idle exits")
    assert finding.verdict is Verdict.WARN and "no cpuidle driver" in finding.found
    assert "idle=poll" in finding.fix
    fake.write("proc/cmdline", "quiet isolcpus=managed_irq,domain,2-5 idle=poll")
    (finding,) = findings_of(fake, bounded, "idle exits")
    assert finding.verdict is Verdict.OK


def test_idle_poll_on_the_command_line_needs_no_latency_request(fake: FakeHost) -> None:
    (finding,) = findings_of(fake, pinned_config(TUNED), "idle exits")
    assert finding.verdict is Verdict.OK and "idle=poll" in finding.found


def test_unlocked_engine_memory_is_flagged_and_a_damon_pageout_named(fake: FakeHost) -> None:
    unlocked = pinned_config(TUNED, lock_memory=False)
    (finding,) = findings_of(fake, unlocked, "locked memory")
    assert finding.verdict is Verdict.WARN and "DAMON" not in finding.found
    assert "lock_memory = true" in finding.fix
    fake.write("sys/kernel/mm/damon/admin/kdamonds/0/state", "on")
    fake.write("sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes/0/action", "pageout")
    (finding,) = findings_of(fake, unlocked, "locked memory")
    assert "DAMON pageout" in finding.found
    fake.write("sys/kernel/mm/damon/admin/kdamonds/0/state", "off")  # stopped: not named
    (finding,) = findings_of(fake, unlocked, "locked memory")
    assert "DAMON" not in finding.found
    (finding,) = findings_of(fake, pinned_config(TUNED), "locked memory")
    assert finding.verdict is Verdict.OK


BALLOON = "sys/bus/virtio/drivers/virtio_balloon/virtio0"
PAGE_REPORTING = "sys/module/page_reporting/parameters"


def features(*bits: int) -> str:
    """A virtio device's ``features`` file: one 0/1 character per feature bit."""
    return "".join("1" if b in bits else "0" for b in range(64))


def test_free_page_reporting_is_flagged_with_its_block_size_and_volume(fake: FakeHost) -> None:
    (finding,) = findings_of(fake, pinned_config(TUNED), "page reporting")
    assert finding.verdict is Verdict.OK  # no balloon at all
    # a balloon without the reporting feature (bit 5): stats and deflate-on-OOM only
    fake.write(f"{BALLOON}/features", features(1, 2))
    fake.write(f"{PAGE_REPORTING}/page_reporting_order", "9")
    (finding,) = findings_of(fake, pinned_config(TUNED), "page reporting")
    assert finding.verdict is Verdict.OK
    fake.write(f"{BALLOON}/features", features(1, 2, 5))
    (finding,) = findings_of(fake, pinned_config(TUNED), "page reporting")
    assert finding.verdict is Verdict.WARN
    assert "free blocks of 2 MiB go back to the host)" in finding.found
    assert "free-page-reporting=off" in finding.fix and "keep_freed_memory" in finding.fix
    # a kernel that counts what it reported, at another block size
    fake.write(f"{PAGE_REPORTING}/page_reporting_order", "10")
    fake.write(f"{PAGE_REPORTING}/reported_kib", str(3 << 20))
    (finding,) = findings_of(fake, pinned_config(TUNED), "page reporting")
    assert "free blocks of 4 MiB go back to the host, 3 GiB so far)" in finding.found


def test_thp_always_and_swap(fake: FakeHost) -> None:
    fake.write("sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never")
    fake.write("proc/swaps", "Filename Type Size Used Priority\n/swapfile file 1024 0 -2")
    findings = {
        f.check: f
        for f in run_checks(fake.host(), pinned_config(TUNED))
        if f.verdict is Verdict.WARN
    }
    assert "always" in findings["huge pages"].found
    assert "/swapfile" in findings["swap"].found


LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max locked memory         {memlock:<20} {memlock:<20} bytes
Max open files            65536                65536                files"""
CAP_IPC_LOCK_ONLY = "0000000000004000"


def engine(fake: FakeHost, **slack: int) -> RunningInstance:
    """A running instance of shard 0 (pid 101, CPU 2) and the gateway (pid 102, CPU 4),
    both with an unlimited memlock, no capabilities and the given timer slack (ns)."""
    procs = (EngineProcess("shard 0", 101, 2), EngineProcess("gateway", 102, 4))
    for proc in procs:
        key = proc.name.split()[0]
        fake.write(f"proc/{proc.pid}/limits", LIMITS.format(memlock="unlimited"))
        fake.write(f"proc/{proc.pid}/status", f"Name:\tpython3\nCapEff:\t{'0' * 16}")
        fake.write(f"proc/{proc.pid}/timerslack_ns", str(slack.get(key, 1)))
    return RunningInstance("jit", procs)


def one(fake: FakeHost, check: str, running: RunningInstance | None, **kw: bool) -> Finding:
    (finding,) = [
        f for f in run_checks(fake.host(), pinned_config(TUNED, **kw), running) if f.check == check
    ]
    return finding


def test_with_no_instance_running_memlock_and_timer_slack_are_this_shells_and_say_so(
    tmp_path: Path,
) -> None:
    """From a shell they always warned, so --strict could never pass: they are notes, the
    engine's own come from its unit (and `tradsys run` refuses when it cannot lock)."""
    fake = FakeHost(tmp_path)
    fake.write("proc/self/timerslack_ns", "50000")
    host = Host(root=fake.root, memlock_bytes=64 * 1024)
    findings = run_checks(host, pinned_config(TUNED))
    assert is_ready(findings, strict=True), render(findings)
    by_check = {f.check: f for f in findings}
    assert "this shell's RLIMIT_MEMLOCK is 64 KiB" in by_check["memlock"].found
    assert "LimitMEMLOCK=infinity" in by_check["memlock"].found
    assert "this shell's timer slack is 50000 ns" in by_check["timer slack"].found
    assert "TimerSlackNSec=1" in by_check["timer slack"].found


def test_the_running_engines_own_memlock_and_timer_slack_are_read(fake: FakeHost) -> None:
    fake.write("proc/self/timerslack_ns", "50000")  # this process's: not the engine's
    running = engine(fake)
    findings = run_checks(fake.host(), pinned_config(TUNED), running)
    assert is_ready(findings, strict=True), render(findings)
    assert one(fake, "timer slack", running).found == "timer slack of the running engine: 1 ns"
    assert "running engine's processes may lock" in one(fake, "memlock", running).found

    running = engine(fake, gateway=50_000)
    fake.write("proc/102/limits", LIMITS.format(memlock=65536))
    slack = one(fake, "timer slack", running)
    assert slack.verdict is Verdict.WARN
    assert slack.found.startswith("timer slack of the running engine: gateway (pid 102) 50 µs")
    memlock = one(fake, "memlock", running)
    assert memlock.verdict is Verdict.WARN
    assert "gateway (pid 102) 64 KiB" in memlock.found and "shard 0" not in memlock.found
    # root's processes (CAP_IPC_LOCK) lock whatever their limit says
    fake.write("proc/102/status", f"Name:\tpython3\nCapEff:\t{CAP_IPC_LOCK_ONLY}")
    assert one(fake, "memlock", running).verdict is Verdict.OK


def test_memlock_is_no_concern_when_the_instance_locks_nothing(fake: FakeHost) -> None:
    running = engine(fake)
    fake.write("proc/101/limits", LIMITS.format(memlock=65536))
    for run in (running, None):
        finding = one(fake, "memlock", run, lock_memory=False)
        assert finding.verdict is Verdict.OK, finding
        assert finding.found == "not needed: [engine] lock_memory = false locks nothing"


def test_irqs_on_pinned_cores_and_irqbalance(fake: FakeHost) -> None:
    fake.write("proc/irq/30/smp_affinity_list", "0-7")
    fake.write("proc/77/comm", "irqbalance")
    found = [f.found for f in findings_of(fake, pinned_config(TUNED), "irq affinity")]
    assert "1 IRQ(s) may be delivered to the pinned CPUs" in found
    assert any("irqbalance is running" in f for f in found)


def test_unbound_workqueues_on_pinned_cores(fake: FakeHost) -> None:
    config = pinned_config(TUNED)
    ok = findings_of(fake, config, "workqueues")
    assert [f.verdict for f in ok] == [Verdict.OK]
    fake.write("sys/devices/virtual/workqueue/cpumask", "ff")
    (warn,) = findings_of(fake, config, "workqueues")
    assert warn.verdict == Verdict.WARN
    assert "pinned CPU(s) 2-5" in warn.found and "workqueue/cpumask" in warn.fix


def test_unbound_kernel_threads_on_pinned_cores_are_named(fake: FakeHost) -> None:
    config = pinned_config(TUNED)
    ok = findings_of(fake, config, "kernel threads")
    assert [f.verdict for f in ok] == [Verdict.OK]
    fake.process(84, "kdamond.0", ppid=2, flags=PF_KTHREAD, cpus="0-7")
    (warn,) = findings_of(fake, config, "kernel threads")
    assert warn.verdict is Verdict.WARN
    assert warn.found == "1 unbound kernel thread(s) (kdamond.0) may run on pinned CPU(s) 2-5"
    assert "tuning/apply.sh" in warn.fix and "isolcpus=managed_irq,domain,2-5" in warn.fix


def test_kthreadd_counts_and_the_threads_seen_stalling_are_named_first(fake: FakeHost) -> None:
    fake.process(2, "kthreadd", ppid=0, flags=PF_KTHREAD, cpus="0-3")
    for pid, name in ((15, "rcu_preempt"), (31, "khungtaskd"), (50, "irq/24-ACPI:Ged")):
        fake.process(pid, name, ppid=2, flags=PF_KTHREAD, cpus="3")
    fake.process(84, "kdamond.0", ppid=2, flags=PF_KTHREAD, cpus="0-4")
    (warn,) = findings_of(fake, pinned_config(TUNED), "kernel threads")
    assert warn.found == (
        "5 unbound kernel thread(s) (kdamond.0, rcu_preempt, kthreadd, …) may run on "
        "pinned CPU(s) 2-4"
    )


def test_per_cpu_kernel_threads_and_ordinary_processes_are_never_counted(
    fake: FakeHost,
) -> None:
    fake.process(21, "ksoftirqd/3", ppid=2, flags=PF_KTHREAD | PF_NO_SETAFFINITY, cpus="3")
    # a user-mode helper the kernel started (child of kthreadd, but not a kernel thread)
    fake.process(900, "modprobe", ppid=2, flags=USER_FLAGS, cpus="0-7")
    # a process of a kernel thread's flags but not kthreadd's child (none is: a made-up one)
    fake.process(901, "rogue", ppid=1, flags=PF_KTHREAD, cpus="0-7")
    fake.process(902, "x) S 2 (y", ppid=1, flags=USER_FLAGS, cpus="0-7")
    (ok,) = findings_of(fake, pinned_config(TUNED), "kernel threads")
    assert ok.verdict is Verdict.OK
    assert [t.pid for t in fake.host().movable_kernel_threads()] == [2, 84]


def test_a_kernel_thread_whose_name_holds_spaces_and_parentheses(fake: FakeHost) -> None:
    fake.process(95, "nv (queue) 1", ppid=2, flags=PF_KTHREAD, cpus="5")
    (warn,) = findings_of(fake, pinned_config(TUNED), "kernel threads")
    assert "(nv (queue) 1) may run on pinned CPU(s) 5" in warn.found
    stat = parse_proc_stat("902 (x) S 2 (y) S 1000 902 0 0 -1 4194560 0 0")
    assert stat is not None
    assert (stat.comm, stat.ppid, stat.flags) == ("x) S 2 (y", 1000, USER_FLAGS)
    assert parse_proc_stat("") is None and parse_proc_stat("7 (cut) S 1") is None


def test_a_kernel_thread_that_ends_while_it_is_read_is_left_out(fake: FakeHost) -> None:
    fake.process(96, "gone", ppid=2, flags=PF_KTHREAD, cpus="3")
    (fake.root / "proc/96/status").unlink()
    (ok,) = findings_of(fake, pinned_config(TUNED), "kernel threads")
    assert ok.verdict is Verdict.OK


def test_no_kernel_thread_finding_when_nothing_is_pinned(fake: FakeHost) -> None:
    fake.process(84, "kdamond.0", ppid=2, flags=PF_KTHREAD, cpus="0-7")
    assert verdicts(findings_of(fake, pinned_config(TUNED), "kernel threads")) == {Verdict.WARN}
    assert findings_of(fake, load_config(), "kernel threads") == []


def test_cpu_masks_parse_as_the_kernel_prints_them() -> None:
    assert parse_cpu_mask("c3\n") == {0, 1, 6, 7}
    assert parse_cpu_mask("00000001,00000000") == {32}
    assert parse_cpu_mask("0") == set()


def test_pinned_cores_across_numa_nodes_and_numa_balancing(fake: FakeHost) -> None:
    fake.write("sys/devices/system/node/node0/cpulist", "0-3")
    fake.write("sys/devices/system/node/node1/cpulist", "4-7")
    fake.write("proc/sys/kernel/numa_balancing", "1")
    found = [f.found for f in findings_of(fake, pinned_config(TUNED), "numa")]
    assert any("span NUMA nodes [0, 1]" in f for f in found)
    assert any("numa_balancing=1" in f for f in found)


def test_clocksource(fake: FakeHost) -> None:
    fake.write("sys/devices/system/clocksource/clocksource0/current_clocksource", "hpet")
    (finding,) = findings_of(fake, pinned_config(TUNED), "clocksource")
    assert finding.verdict is Verdict.WARN and "hpet" in finding.found


def test_real_time_throttling_is_no_concern(fake: FakeHost) -> None:
    """No engine thread runs at a real-time priority (only `tune stalls`, which sleeps),
    so the kernel's default throttling of real-time tasks costs the engine nothing."""
    fake.write("proc/sys/kernel/sched_rt_runtime_us", "950000")
    findings = run_checks(fake.host(), pinned_config(TUNED))
    assert [f for f in findings if f.verdict is not Verdict.OK] == []
    assert not [f for f in findings if "sched_rt" in f.found + f.fix]


@pytest.mark.parametrize(
    ("text", "cpus"), [("", set()), ("3", {3}), ("0-2,5,7-8", {0, 1, 2, 5, 7, 8})]
)
def test_cpu_lists_round_trip(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == cpus
    assert format_cpu_list(cpus) == (text or "none")


def test_tune_check_runs_on_this_machine_and_its_exit_code_is_the_verdict() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tradsys.cli", "tune", "check", "--jitter-s", "0"],
        capture_output=True,
        text=True,
    )
    findings = run_checks(Host(), load_config())
    assert proc.returncode == (0 if is_ready(findings) else 1), proc.stderr
    assert proc.stdout.splitlines()[-1] == render(findings).splitlines()[-1]
    strict = subprocess.run(
        [sys.executable, "-m", "tradsys.cli", "tune", "check", "--strict", "--jitter-s", "0"],
        capture_output=True,
        text=True,
    )
    assert strict.returncode == (0 if is_ready(findings, strict=True) else 1)


# Stands in for an engine process: sets its timer slack, lowers its RLIMIT_MEMLOCK (as any
# process may), says so and waits.
ENGINE_PROCESS = """
import ctypes, resource, sys, time
ctypes.CDLL(None, use_errno=True).prctl(29, int(sys.argv[1]), 0, 0, 0)  # PR_SET_TIMERSLACK
resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 * 1024, 64 * 1024))
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def engine_processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Two stand-ins for engine processes: one with a timer slack of 1 ns, one of 200 µs."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ENGINE_PROCESS, slack], stdout=subprocess.PIPE, text=True
        )
        for slack in ("1", "200000")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_tune_check_reads_the_running_engines_limits_not_its_own(
    tmp_path: Path, engine_processes: list[subprocess.Popen[str]]
) -> None:
    """The supervisor (this test process plays it) names the engine's pids; tune check,
    run from a shell with the default 50 µs slack, reports theirs."""
    shard, md = engine_processes
    config = tmp_path / "engine.toml"
    config.write_text(one_shard_instance("lim", tmp_path, engine="lock_memory = true"))
    (tmp_path / "lim").mkdir()
    (tmp_path / "lim" / "supervisor.json").write_text(
        json.dumps(
            {
                "supervisor_pid": os.getpid(),
                "supervisor_start_us": process_start_us(),
                "instance": "lim",
                "shards": [{"shard": 0, "pid": shard.pid, "core": None}],
                "sidecars": [{"name": "md", "pid": md.pid, "core": None, "restarts": 0}],
            }
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradsys.cli",
            "tune",
            "check",
            "--config",
            str(config),
            "--jitter-s",
            "0.05",
        ],
        capture_output=True,
        text=True,
    )
    # a report line: its mark (4 characters), two spaces, the check's name padded, the rest
    lines = {line[6:].split("  ")[0].strip(): line for line in proc.stdout.splitlines()}
    assert lines["timer slack"].startswith("WARN"), proc.stdout
    assert lines["timer slack"].endswith(
        f"timer slack of the running engine: md (pid {md.pid}) 200 µs: a timed wait may "
        "oversleep that much"
    ), proc.stdout
    # the stand-ins' 64 KiB limit, unless they run as root (CAP_IPC_LOCK: no limit applies)
    if os.geteuid() == 0:
        assert "ok    memlock" in lines["memlock"], proc.stdout
        assert "running engine's processes may lock" in lines["memlock"], proc.stdout
    else:
        assert lines["memlock"].startswith("WARN"), proc.stdout
        assert f"shard 0 (pid {shard.pid}) 64 KiB" in lines["memlock"], proc.stdout
    assert "not measured: instance 'lim' is running" in proc.stdout
