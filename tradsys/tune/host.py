"""What the host says about itself, read from /proc and /sys under a root directory.

Everything goes through :class:`Host` so that the checks can be tested against a made-up
tree (a tmp directory shaped like /proc and /sys) as well as run on the real machine.
Reading only: nothing here writes anywhere, which is what makes `tradsys tune check`
safe to run in CI or on a live trading host.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from pathlib import Path

# Flags of /proc/PID/stat (field 9), from include/linux/sched.h
PF_KTHREAD = 0x00200000  # a kernel thread
PF_NO_SETAFFINITY = 0x04000000  # per-CPU kernel threads: their affinity cannot be changed
KTHREADD_PID = 2  # the parent of every kernel thread
VIRTIO_BALLOON_F_REPORTING = 5  # include/uapi/linux/virtio_balloon.h


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat that the checks use."""

    comm: str
    ppid: int
    flags: int


def parse_proc_stat(text: str) -> ProcStat | None:
    """/proc/PID/stat → its name, parent and flags; None when it is not one.

    The name sits in parentheses and may itself hold spaces and parentheses (any process
    may call itself "x) S 2 (y"), so it runs from the first "(" to the *last* ")" and the
    numbered fields are counted from there."""
    open_, close = text.find("("), text.rfind(")")
    if open_ < 0 or close < open_:
        return None
    fields = text[close + 1 :].split()
    # after the name: state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9)
    if len(fields) < 7:
        return None
    try:
        return ProcStat(text[open_ + 1 : close], int(fields[1]), int(fields[6]))
    except ValueError:
        return None


@dataclass(frozen=True)
class PageReporting:
    """A guest's free page reporting: the smallest free block it reports (a buddy
    order: 9 is 2 MiB of 4 KiB pages) and how much it has reported, where the kernel
    says (a stock kernel has the order only)."""

    order: int | None
    reported_kib: int | None


@dataclass(frozen=True)
class KernelThread:
    """A kernel thread whose CPUs may be changed, and the CPUs it may run on now."""

    pid: int
    name: str
    cpus: frozenset[int]


def parse_cpu_list(text: str) -> set[int]:
    """The kernel's CPU list format ("0-3,8,10-11") as a set; "" is the empty set."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.update(range(int(lo), int(hi) + 1))
        else:
            cpus.add(int(part))
    return cpus


def parse_cpu_mask(text: str) -> set[int]:
    """A hex CPU mask as the kernel prints it ("ff", "00000000,0000000f") → CPUs."""
    value = int(text.strip().replace(",", "") or "0", 16)
    return {cpu for cpu in range(value.bit_length()) if value >> cpu & 1}


def format_cpu_list(cpus: set[int]) -> str:
    """The inverse of :func:`parse_cpu_list`, for messages."""
    out: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out) or "none"


@dataclass
class Host:
    """A read-only view of one machine (``root`` is "/" except in tests)."""

    root: Path = Path("/")
    memlock_bytes: int | None = field(
        default_factory=lambda: _limit(resource.getrlimit(resource.RLIMIT_MEMLOCK)[0])
    )

    def read(self, path: str) -> str | None:
        """A file's text (``path`` as on the host, e.g. "/proc/swaps"), stripped; None
        when it does not exist or cannot be read."""
        return _read(self.root / path.lstrip("/"))

    def glob(self, pattern: str) -> list[Path]:
        return sorted(self.root.glob(pattern.lstrip("/")))

    # ---- CPUs --------------------------------------------------------------------------

    def online_cpus(self) -> set[int]:
        return parse_cpu_list(self.read("/sys/devices/system/cpu/online") or "0")

    def cmdline(self) -> dict[str, str]:
        """Kernel command-line parameters (a bare flag maps to "")."""
        params: dict[str, str] = {}
        for word in (self.read("/proc/cmdline") or "").split():
            if word == "--":
                break
            key, _, value = word.partition("=")
            params[key] = value
        return params

    def isolated_cpus(self) -> set[int]:
        return parse_cpu_list(self.read("/sys/devices/system/cpu/isolated") or "")

    def nohz_full_cpus(self) -> set[int]:
        text = self.read("/sys/devices/system/cpu/nohz_full")
        if text is None or text == "(null)":
            return set()
        return parse_cpu_list(text)

    def governors(self) -> dict[int, str]:
        """cpu → scaling governor, for the CPUs that have cpufreq (a VM often has none)."""
        out: dict[int, str] = {}
        for path in self.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"):
            cpu = int(path.parent.parent.name[3:])
            out[cpu] = path.read_text().strip()
        return out

    def idle_states(self, cpu: int) -> list[tuple[str, int, bool]]:
        """(name, exit latency in µs, disabled) of each cpuidle state of ``cpu``."""
        states = []
        for state in self.glob(f"/sys/devices/system/cpu/cpu{cpu}/cpuidle/state[0-9]*"):
            name = _read(state / "name") or state.name
            latency = int(_read(state / "latency") or 0)
            disabled = (_read(state / "disable") or "0") == "1"
            states.append((name, latency, disabled))
        return states

    def polls_when_idle(self, cpu: int) -> bool:
        """Whether ``cpu`` may not enter any idle state (its PM QoS resume latency is
        "n/a", i.e. 0: tuning/apply.sh sets it on engine CPUs)."""
        return (
            self.read(f"/sys/devices/system/cpu/cpu{cpu}/power/pm_qos_resume_latency_us") == "n/a"
        )

    # ---- memory ------------------------------------------------------------------------

    def thp_mode(self) -> str | None:
        """The bracketed choice of transparent_hugepage/enabled ("always", "madvise", ...)."""
        text = self.read("/sys/kernel/mm/transparent_hugepage/enabled")
        if text is None or "[" not in text:
            return None
        return text[text.index("[") + 1 : text.index("]")]

    def swap_devices(self) -> list[str]:
        lines = (self.read("/proc/swaps") or "").splitlines()[1:]
        return [line.split()[0] for line in lines if line.strip()]

    def sysctl(self, name: str) -> str | None:
        return self.read("/proc/sys/" + name.replace(".", "/"))

    # ---- NUMA, IRQs, processes ---------------------------------------------------------

    def numa_nodes(self) -> dict[int, set[int]]:
        """node → its CPUs."""
        nodes: dict[int, set[int]] = {}
        for path in self.glob("/sys/devices/system/node/node[0-9]*"):
            nodes[int(path.name[4:])] = parse_cpu_list(_read(path / "cpulist") or "")
        return nodes

    def irq_affinities(self) -> dict[str, set[int]]:
        """irq number → the CPUs it may be delivered to."""
        out: dict[str, set[int]] = {}
        for path in self.glob("/proc/irq/[0-9]*/smp_affinity_list"):
            out[path.parent.name] = parse_cpu_list(path.read_text())
        return out

    def workqueue_cpus(self) -> set[int] | None:
        """The CPUs unbound kernel workqueues may run on (writeback, filesystem work such
        as ext4's extent conversion), or None when the kernel does not say."""
        text = self.read("/sys/devices/virtual/workqueue/cpumask")
        return None if text is None else parse_cpu_mask(text)

    def damon_pageout(self) -> bool:
        """Whether a running DAMON monitor (kdamond) has a ``pageout`` scheme: proactive
        reclaim of pages it sees idle (VM hosts run it to take idle guest memory back)."""
        for state in self.glob("/sys/kernel/mm/damon/admin/kdamonds/[0-9]*/state"):
            if (_read(state) or "") != "on":
                continue
            for action in state.parent.glob("contexts/[0-9]*/schemes/[0-9]*/action"):
                if _read(action) == "pageout":
                    return True
        return False

    def free_page_reporting(self) -> PageReporting | None:
        """Free page reporting of a virtio balloon that offers it (feature bit 5 of the
        device), or None: the guest hands its free blocks back to the host."""
        for device in self.glob("/sys/bus/virtio/drivers/virtio_balloon/virtio*"):
            features = _read(device / "features") or ""  # one 0/1 character per bit
            if features[VIRTIO_BALLOON_F_REPORTING : VIRTIO_BALLOON_F_REPORTING + 1] == "1":
                params = "/sys/module/page_reporting/parameters/"
                return PageReporting(
                    _int(self.read(params + "page_reporting_order")),
                    _int(self.read(params + "reported_kib")),
                )
        return None

    def movable_kernel_threads(self) -> list[KernelThread]:
        """kthreadd and the kernel threads it started, but not the per-CPU ones (kworkers,
        ksoftirqd, migration: PF_NO_SETAFFINITY), in pid order: the threads that
        tuning/apply.sh can move to the housekeeping CPUs (kdamond, rcu_preempt,
        kcompactd, kswapd...). kthreadd is among them because a new kernel thread starts
        with its CPUs. A child of kthreadd without PF_KTHREAD (a user-mode helper such as
        modprobe, started by the kernel) is a user process and is left out."""
        out: list[KernelThread] = []
        for path in self.glob("/proc/[0-9]*/stat"):
            pid = int(path.parent.name)
            stat = parse_proc_stat(self.read(f"/proc/{pid}/stat") or "")
            if stat is None or not stat.flags & PF_KTHREAD or stat.flags & PF_NO_SETAFFINITY:
                continue
            if pid != KTHREADD_PID and stat.ppid != KTHREADD_PID:
                continue
            cpus = self.cpus_allowed(pid)
            if cpus is not None:  # None: it ended while we looked
                out.append(KernelThread(pid, stat.comm, frozenset(cpus)))
        return sorted(out, key=lambda thread: thread.pid)

    def cpus_allowed(self, pid: int) -> set[int] | None:
        """The CPUs process ``pid`` may run on; None when it is gone."""
        value = self._status_field(pid, "Cpus_allowed_list")
        return None if value is None else parse_cpu_list(value)

    def has_capability(self, pid: int, bit: int) -> bool:
        """Whether process ``pid`` holds capability ``bit`` (CapEff of its status)."""
        value = self._status_field(pid, "CapEff")
        return value is not None and bool(int(value, 16) >> bit & 1)

    def soft_limit(self, pid: int, name: str) -> str | None:
        """Process ``pid``'s soft limit ``name`` as /proc/PID/limits writes it ("unlimited"
        or a number, e.g. for "Max locked memory"); None when it cannot be read."""
        for line in (self.read(f"/proc/{pid}/limits") or "").splitlines():
            if line.startswith(name + " "):
                fields = line[len(name) :].split()
                return fields[0] if fields else None
        return None

    def _status_field(self, pid: int | str, key: str) -> str | None:
        for line in (self.read(f"/proc/{pid}/status") or "").splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return value.strip()
        return None

    def process_names(self) -> set[str]:
        names = set()
        for path in self.glob("/proc/[0-9]*/comm"):
            try:
                names.add(path.read_text().strip())
            except OSError:  # the process ended while we looked
                continue
        return names


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _limit(value: int) -> int | None:
    return None if value == resource.RLIM_INFINITY else value


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None
