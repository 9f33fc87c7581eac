"""The host checks behind `tradsys tune check`: one function per thing that hurts latency.

Each check looks at the :class:`~tradsys.tune.host.Host` and the instance's configuration
(which processes run, on which cores) and returns findings. A finding is ``ok``, ``warn``
(it will cost latency; fine on a laptop or in CI) or ``bad`` (this configuration cannot
run as configured here: a pinned core that does not exist, two processes on one core).
The host is ready when nothing is ``bad``; ``--strict`` also counts the warnings.
"""

from __future__ import annotations

from tradsys.config import Config
from tradsys.cores.cpu_latency import NO_REQUEST, halts_whatever_is_asked
from tradsys.tune.engine_limits import memlock_finding, timer_slack_finding
from tradsys.tune.findings import Check, Finding, Placement, Verdict
from tradsys.tune.host import Host, format_cpu_list, parse_cpu_list
from tradsys.tune.running import RunningInstance

__all__ = ["CHECKS", "Check", "Finding", "Placement", "Verdict", "run_checks"]

# A cpuidle state whose exit latency is above this (µs) is a "deep" C-state: waking from
# it costs more than a whole order round trip.
DEEP_IDLE_LATENCY_US = 10


def check_cores(host: Host, place: Placement) -> list[Finding]:
    online = host.online_cpus()
    out: list[Finding] = []
    # one core per process plus one for the supervisor, the OS and interrupts
    need = place.count + 1
    if len(online) < need:
        out.append(
            Finding(
                "cores",
                Verdict.WARN,
                f"{len(online)} online CPU(s) for {place.count} engine process(es) + housekeeping",
                f"give each shard, the gateway and md a core of its own: {need} CPUs, or "
                "fewer shards (processes now share cores and wait for each other)",
            )
        )
    else:
        out.append(Finding("cores", Verdict.OK, f"{len(online)} online CPUs, {need} needed"))
    missing = {n: c for n, c in place.pinned.items() if c not in online}
    for name, core in missing.items():
        out.append(
            Finding(
                "cores",
                Verdict.BAD,
                f"{name} is pinned to CPU {core}, which is not online "
                f"(online: {format_cpu_list(online)})",
                "pick an online CPU in the configuration",
            )
        )
    by_core: dict[int, list[str]] = {}
    for name, core in place.pinned.items():
        by_core.setdefault(core, []).append(name)
    for core, names in sorted(by_core.items()):
        if len(names) > 1:
            out.append(
                Finding(
                    "cores",
                    Verdict.BAD,
                    f"{' and '.join(names)} are pinned to the same CPU {core}",
                    "give each pinned process its own CPU",
                )
            )
    if place.unpinned:
        out.append(
            Finding(
                "pinning",
                Verdict.WARN,
                f"not pinned: {', '.join(place.unpinned)}",
                "set `core = N` for each (an isolated CPU); the scheduler moves unpinned "
                "processes and their caches go cold",
            )
        )
    if 0 in place.cores:
        out.append(
            Finding(
                "pinning",
                Verdict.WARN,
                "a process is pinned to CPU 0, where the kernel's housekeeping and most IRQs run",
                "use CPU 1 and up for engine processes",
            )
        )
    return out


def check_isolation(host: Host, place: Placement) -> list[Finding]:
    cores = place.cores
    if not cores:
        return [
            Finding(
                "isolation",
                Verdict.WARN,
                "no process is pinned, so no CPU can be isolated for it",
                "pin the processes, then isolate their CPUs (tuning/README.md)",
            )
        ]
    out = []
    params = host.cmdline()
    for what, have, fix in (
        ("isolcpus", host.isolated_cpus(), "isolcpus=managed_irq,domain,{cpus}"),
        ("nohz_full", host.nohz_full_cpus(), "nohz_full={cpus}"),
        ("rcu_nocbs", _cmdline_cpus(params, "rcu_nocbs"), "rcu_nocbs={cpus}"),
    ):
        lacking = cores - have
        if lacking:
            cpus = format_cpu_list(cores)
            out.append(
                Finding(
                    "isolation",
                    Verdict.WARN,
                    f"{what} does not cover pinned CPU(s) {format_cpu_list(lacking)}",
                    f"kernel command line: {fix.format(cpus=cpus)}",
                )
            )
        else:
            out.append(Finding("isolation", Verdict.OK, f"{what} covers the pinned CPUs"))
    return out


def _cmdline_cpus(params: dict[str, str], key: str) -> set[int]:
    value = params.get(key, "")
    # isolcpus-style flags ("managed_irq,domain,2-5") carry words before the list
    return parse_cpu_list(",".join(p for p in value.split(",") if p[:1].isdigit()))


def check_governor(host: Host, place: Placement) -> list[Finding]:
    governors = host.governors()
    if not governors:
        return [
            Finding(
                "cpu frequency",
                Verdict.OK,
                "no cpufreq control (a VM or fixed frequency): nothing to set",
            )
        ]
    slow = {cpu for cpu, gov in governors.items() if gov != "performance"}
    if slow:
        kinds = sorted({governors[c] for c in slow})
        return [
            Finding(
                "cpu frequency",
                Verdict.WARN,
                f"governor {'/'.join(kinds)} on CPU(s) {format_cpu_list(slow)}",
                "cpupower frequency-set -g performance (tuning/apply.sh does it)",
            )
        ]
    return [Finding("cpu frequency", Verdict.OK, "governor performance on every CPU")]


def check_cstates(host: Host, place: Placement) -> list[Finding]:
    cpus = place.cores or host.online_cpus()
    deep: dict[str, tuple[int, set[int]]] = {}
    for cpu in sorted(cpus):
        for name, latency, disabled in host.idle_states(cpu):
            if latency > DEEP_IDLE_LATENCY_US and not disabled:
                deep.setdefault(name, (latency, set()))[1].add(cpu)
    if not deep:
        return [Finding("c-states", Verdict.OK, "no deep idle state enabled on the engine CPUs")]
    return [
        Finding(
            "c-states",
            Verdict.WARN,
            f"idle state {name} (exit {lat} µs) enabled on CPU(s) {format_cpu_list(on)}",
            "kernel command line: intel_idle.max_cstate=1 processor.max_cstate=1, or "
            "disable it in /sys/devices/system/cpu/cpu*/cpuidle (tuning/apply.sh)",
        )
        for name, (lat, on) in sorted(deep.items())
    ]


def check_idle_exits(host: Host, place: Placement) -> list[Finding]:
    """Shallow idle states cost too: a thread woken onto an idle CPU runs only once the
    CPU is out of it, and on a VM even a "1 µs" halt is a VM exit (45-60 µs measured on
    a 2-vCPU guest, README "Market data"). Market data wakes four or five threads per
    print, so idle exits alone can be most of its latency."""
    if host.cmdline().get("idle") == "poll":
        return [Finding("idle exits", Verdict.OK, "idle=poll: idle CPUs poll")]
    if halts_whatever_is_asked(host.root):
        return [
            Finding(
                "idle exits",
                Verdict.WARN,
                "no cpuidle driver: idle CPUs halt in the kernel's default idle loop (in a "
                "VM, an exit to the host), and no CPU latency request ([engine] "
                "cpu_latency_us) or per-CPU resume latency can keep them out of it",
                "idle=poll on the kernel command line (in a VM, the haltpoll cpuidle driver "
                "also polls a while before it halts)",
            )
        ]
    if place.cpu_latency_us != NO_REQUEST:
        return [
            Finding(
                "idle exits",
                Verdict.OK,
                f"the instance holds idle exits to {place.cpu_latency_us} µs "
                "([engine] cpu_latency_us)",
            )
        ]
    cpus = place.cores or host.online_cpus()
    polling = {cpu for cpu in cpus if host.polls_when_idle(cpu)}
    if polling == cpus:
        return [
            Finding(
                "idle exits",
                Verdict.OK,
                f"CPU(s) {format_cpu_list(cpus)} poll when idle (pm_qos_resume_latency_us n/a)",
            )
        ]
    sleeping: dict[str, set[int]] = {}
    for cpu in sorted(cpus - polling):
        for name, _latency, disabled in host.idle_states(cpu):
            if name != "POLL" and not disabled:
                sleeping.setdefault(name, set()).add(cpu)
    if not sleeping:
        return [Finding("idle exits", Verdict.OK, "idle CPUs only poll")]
    states = ", ".join(f"{name} on CPU(s) {format_cpu_list(on)}" for name, on in sleeping.items())
    return [
        Finding(
            "idle exits",
            Verdict.WARN,
            f"idle CPUs sleep ({states}): a thread woken onto one waits for it to wake",
            "[engine] cpu_latency_us = 0 (the supervisor holds a CPU latency request while "
            "the instance runs; needs root), tuning/apply.sh (engine CPUs only, until "
            "revert.sh), or idle=poll on the kernel command line",
        )
    ]


def check_memory(host: Host, place: Placement) -> list[Finding]:
    out = []
    thp = host.thp_mode()
    if thp == "always":
        out.append(
            Finding(
                "huge pages",
                Verdict.WARN,
                "transparent_hugepage=always: khugepaged compaction can stall any process",
                "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled",
            )
        )
    else:
        out.append(Finding("huge pages", Verdict.OK, f"transparent_hugepage={thp or 'absent'}"))
    swaps = host.swap_devices()
    if swaps:
        out.append(
            Finding(
                "swap",
                Verdict.WARN,
                f"swap is on ({', '.join(swaps)}): a page of a book can go to disk",
                "swapoff -a (and remove it from /etc/fstab), or vm.swappiness=0",
            )
        )
    else:
        out.append(Finding("swap", Verdict.OK, "no swap"))
    out.append(memlock_finding(host, place))
    out.append(_memory_locking(host, place))
    out.append(_page_reporting(host))
    return out


def _page_reporting(host: Host) -> Finding:
    """Memory any process frees goes back to the host while the engine trades; on the
    sandbox VM the benches run on, each reporting pass stopped both vCPUs for 10-30 ms
    (tradsys/malloc_policy.py has the measurements)."""
    reporting = host.free_page_reporting()
    if reporting is None:
        return Finding("page reporting", Verdict.OK, "no free page reporting to a host")
    block = "free blocks" if reporting.order is None else f"free blocks of {_size(reporting.order)}"
    so_far = (
        f", {reporting.reported_kib / (1 << 20):.0f} GiB so far"
        if reporting.reported_kib is not None
        else ""
    )
    return Finding(
        "page reporting",
        Verdict.WARN,
        f"free page reporting is on (virtio-balloon: {block} go back to the host{so_far}): "
        "a process that frees memory while the engine trades sets off reporting passes, "
        "which can stop the whole VM for milliseconds",
        "turn it off in the hypervisor's balloon device (QEMU: virtio-balloon "
        "free-page-reporting=off); meanwhile keep clients from freeing big blocks while "
        "trading (tradsys.malloc_policy.keep_freed_memory, as perf/ does)",
    )


def _size(order: int) -> str:
    """A buddy order's block of 4 KiB pages, as a person reads it (9 → 2 MiB)."""
    kib = 4 << order
    return f"{kib >> 10} MiB" if kib >= 1024 else f"{kib} KiB"


def _memory_locking(host: Host, place: Placement) -> Finding:
    """Reclaim takes the pages a long-running engine touches least (a rare reject, the
    login path) and the next touch is a major fault on a hot path; locked pages stay."""
    if place.lock_memory:
        return Finding("locked memory", Verdict.OK, "engine processes lock their memory")
    damon = (
        "; a DAMON pageout scheme (kdamond) is reclaiming idle pages on this host"
        if host.damon_pageout()
        else ""
    )
    return Finding(
        "locked memory",
        Verdict.WARN,
        f"engine processes do not lock their memory: reclaimed pages come back as major "
        f"faults{damon}",
        "[engine] lock_memory = true (needs root or LimitMEMLOCK=infinity)",
    )


def check_irqs(host: Host, place: Placement) -> list[Finding]:
    out = []
    cores = place.cores
    if cores:
        onto = [irq for irq, cpus in host.irq_affinities().items() if cpus & cores]
        if onto:
            out.append(
                Finding(
                    "irq affinity",
                    Verdict.WARN,
                    f"{len(onto)} IRQ(s) may be delivered to the pinned CPUs",
                    "write the housekeeping CPUs to /proc/irq/*/smp_affinity_list "
                    "(tuning/apply.sh)",
                )
            )
        else:
            out.append(Finding("irq affinity", Verdict.OK, "no IRQ targets the pinned CPUs"))
    if "irqbalance" in host.process_names():
        out.append(
            Finding(
                "irq affinity",
                Verdict.WARN,
                "irqbalance is running and will move IRQs back onto any CPU",
                "systemctl disable --now irqbalance, or IRQBALANCE_BANNED_CPULIST",
            )
        )
    return out


def check_workqueues(host: Host, place: Placement) -> list[Finding]:
    """Unbound kernel workqueues run writeback and filesystem work (ext4's extent
    conversion after a journal's fdatasync, among it) on any CPU of their mask: on the 2-CPU
    e2e bench at 1 M orders/s the writeback and block workers ran 22 ms in 3 s on a shard
    worker's CPU."""
    cores = place.cores
    allowed = host.workqueue_cpus()
    if not cores or allowed is None:
        return []
    onto = allowed & cores
    if onto:
        return [
            Finding(
                "workqueues",
                Verdict.WARN,
                f"unbound kernel workqueues may run on pinned CPU(s) {format_cpu_list(onto)}",
                "write the housekeeping CPUs' mask to /sys/devices/virtual/workqueue/cpumask "
                "(tuning/apply.sh)",
            )
        ]
    return [Finding("workqueues", Verdict.OK, "unbound kernel workqueues stay off the pinned CPUs")]


# Kernel threads perf sched saw running long on a shard worker's CPU, the worst first
# (kdamond.0 20 ms in 6 s, rcu_preempt 9 ms, kcompactd0 1.7 ms): named first, in this order
NOTED_KERNEL_THREADS = ("kdamond", "rcu_preempt", "kcompactd", "kswapd", "khugepaged")
NAMED_KERNEL_THREADS = 3  # how many a finding names


def check_kernel_threads(host: Host, place: Placement) -> list[Finding]:
    """Unbound kernel threads may run on any CPU they are allowed, and this kernel does not
    preempt a thread busy in the kernel (PREEMPT_NONE): it runs until it sleeps or calls
    cond_resched, and a pinned engine thread woken behind it waits, whatever its slice. On
    the 2-vCPU host kdamond.0 (DAMON) ran 1.59 ms on a shard worker's CPU while the worker,
    woken, waited 1.16 ms; in 6 s kdamond.0, rcu_preempt and kcompactd0 took 31 ms of it."""
    cores = place.cores
    if not cores:
        return []
    onto = [thread for thread in host.movable_kernel_threads() if thread.cpus & cores]
    if not onto:
        return [
            Finding("kernel threads", Verdict.OK, "unbound kernel threads stay off the pinned CPUs")
        ]
    onto.sort(key=lambda thread: (_noted_rank(thread.name), thread.pid))
    names = [thread.name for thread in onto[:NAMED_KERNEL_THREADS]]
    if len(onto) > NAMED_KERNEL_THREADS:
        names.append("…")
    on = set().union(*(thread.cpus for thread in onto)) & cores
    cpus = format_cpu_list(cores)
    return [
        Finding(
            "kernel threads",
            Verdict.WARN,
            f"{len(onto)} unbound kernel thread(s) ({', '.join(names)}) may run on pinned "
            f"CPU(s) {format_cpu_list(on)}",
            "tuning/apply.sh moves them to the housekeeping CPUs; "
            f"isolcpus=managed_irq,domain,{cpus} nohz_full={cpus} on the kernel command line "
            "keep new ones off (kernel threads start on the CPUs these leave to housekeeping)",
        )
    ]


def _noted_rank(name: str) -> int:
    """Where ``name`` stands in NOTED_KERNEL_THREADS (the worst first); after them all
    when it is not there."""
    for rank, prefix in enumerate(NOTED_KERNEL_THREADS):
        if name.startswith(prefix):
            return rank
    return len(NOTED_KERNEL_THREADS)


def check_numa(host: Host, place: Placement) -> list[Finding]:
    nodes = host.numa_nodes()
    out = []
    if len(nodes) > 1 and place.cores:
        spanned = {n for n, cpus in nodes.items() if cpus & place.cores}
        if len(spanned) > 1:
            out.append(
                Finding(
                    "numa",
                    Verdict.WARN,
                    f"pinned CPUs span NUMA nodes {sorted(spanned)}: rings cross the interconnect",
                    "pin every engine process on the node of the NIC",
                )
            )
    if host.sysctl("kernel.numa_balancing") == "1":
        out.append(
            Finding(
                "numa",
                Verdict.WARN,
                "kernel.numa_balancing=1: the kernel unmaps pages to sample them",
                "sysctl kernel.numa_balancing=0 (tuning/sysctl.conf)",
            )
        )
    if not out:
        out.append(Finding("numa", Verdict.OK, f"{len(nodes) or 1} node(s), nothing spans them"))
    return out


def check_timers(host: Host, place: Placement) -> list[Finding]:
    out = [timer_slack_finding(host, place)]
    source = host.read("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    if source not in (None, "tsc"):
        out.append(
            Finding(
                "clocksource",
                Verdict.WARN,
                f"clocksource {source}: every timestamp is a slow read",
                "tsc; tsc=reliable on the kernel command line only where the TSC is invariant and "
                "in step across sockets (tuning/kernel-cmdline.example)",
            )
        )
    else:
        out.append(Finding("clocksource", Verdict.OK, f"clocksource {source or '?'}"))
    return out


CHECKS: list[Check] = [
    check_cores,
    check_isolation,
    check_governor,
    check_cstates,
    check_idle_exits,
    check_memory,
    check_irqs,
    check_workqueues,
    check_kernel_threads,
    check_numa,
    check_timers,
]


def run_checks(host: Host, config: Config, running: RunningInstance | None = None) -> list[Finding]:
    """Every check, in the order of the report; ``running``: the instance's processes
    when it runs (their limits are then read rather than this process's)."""
    place = Placement.of(config, running)
    return [finding for check in CHECKS for finding in check(host, place)]
