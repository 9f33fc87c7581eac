"""The CPU latency request (tradsys.cores.cpu_latency) and [engine] cpu_latency_us.

Where the host lets this process hold a request (root on Linux), the tests check what the
kernel then keeps (/dev/cpu_dma_latency reads back the smallest request held); where it
does not, they check that the refusal names the file and the way out. Either way each
test asserts something the code under test decides."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from tests.engine_toml import one_shard_instance
from tradsys.config import ConfigError, parse_config
from tradsys.cores.cpu_latency import (
    DEVICE,
    MAX_LATENCY_US,
    CpuLatencyError,
    CpuLatencyRequest,
    cpuidle_driver,
    effective_latency_us,
    halts_whatever_is_asked,
)
from tradsys.cores.supervisor import Supervisor, SupervisorError
from tradsys.ring.segment import instance_segments


def can_hold() -> bool:
    try:
        CpuLatencyRequest(0).close()
    except CpuLatencyError:
        return False
    return effective_latency_us() is not None


def config_text(instance: str, data_dir: Path, cpu_latency_us: int) -> str:
    return one_shard_instance(
        instance,
        data_dir,
        f"cpu_latency_us = {cpu_latency_us}",
        "[gateway]\nenabled = false\n[md]\nenabled = false",
    )


def test_the_request_is_the_value_written_as_a_native_int32(tmp_path: Path) -> None:
    device = tmp_path / "qos"
    device.write_bytes(b"")
    req = CpuLatencyRequest(25, device)
    assert req.held
    assert struct.unpack("=i", device.read_bytes()) == (25,)
    req.close()
    req.close()  # idempotent
    assert not req.held


def test_a_device_that_cannot_be_opened_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-device"
    with pytest.raises(CpuLatencyError, match=re.escape(str(missing))):
        CpuLatencyRequest(0, missing)


@pytest.mark.parametrize("value", [-1, MAX_LATENCY_US + 1])
def test_a_latency_outside_the_kernels_range_is_refused(value: int, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=str(value)):
        CpuLatencyRequest(value, tmp_path / "qos")


def test_the_kernel_keeps_the_bound_while_the_request_is_held_and_drops_it_after() -> None:
    if not can_hold():
        with pytest.raises(CpuLatencyError, match=str(DEVICE)):
            CpuLatencyRequest(0)
        return
    before = effective_latency_us()
    assert before is not None
    with CpuLatencyRequest(0) as req:
        assert req.held
        assert effective_latency_us() == 0
    # withdrawn: back to whatever the others hold (the kernel default if no one)
    assert effective_latency_us() == before


@pytest.mark.parametrize("value", [-2, MAX_LATENCY_US + 1])
def test_cpu_latency_us_outside_its_range_is_a_config_error(value: int) -> None:
    text = f'[engine]\ninstance = "x"\ncpu_latency_us = {value}\n'
    with pytest.raises(ConfigError, match=re.escape(f"engine.cpu_latency_us {value}: -1")):
        parse_config(text, "t")


@pytest.mark.parametrize("value", [-1, 0, 50])
def test_cpu_latency_us_in_range_is_accepted(value: int, tmp_path: Path) -> None:
    config = parse_config(config_text("x", tmp_path, value), "t")
    assert config.engine.cpu_latency_us == value


def test_a_supervisor_holds_the_request_for_the_instances_life(
    instance: str, tmp_path: Path
) -> None:
    config = parse_config(config_text(instance, tmp_path, 0), "t")
    sup = Supervisor(config, log=lambda line: None)
    if not can_hold():
        # an operator who asked for the bound must not get an engine without it unawares
        with pytest.raises(SupervisorError, match=re.escape("engine.cpu_latency_us = 0")):
            sup.start()
        assert instance_segments(instance) == []  # nothing was left half made
        return
    before = effective_latency_us()
    try:
        sup.start()
        assert sup.cpu_latency is not None and sup.cpu_latency.held
        assert effective_latency_us() == 0
    finally:
        sup.stop()
    assert sup.cpu_latency is None
    assert effective_latency_us() == before


def test_without_the_option_a_supervisor_makes_no_request(instance: str, tmp_path: Path) -> None:
    config = parse_config(config_text(instance, tmp_path, -1), "t")
    with Supervisor(config, log=lambda line: None) as sup:
        assert sup.cpu_latency is None


def test_a_supervisor_that_cannot_hold_the_request_refuses_to_start(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal path on any host: the device is made unopenable for this supervisor."""
    import tradsys.cores.supervisor as supervisor_module

    missing = tmp_path / "no-qos-device"
    monkeypatch.setattr(
        supervisor_module,
        "CpuLatencyRequest",
        lambda us: CpuLatencyRequest(us, missing),
    )
    sup = Supervisor(parse_config(config_text(instance, tmp_path, 10), "t"), log=lambda s: None)
    with pytest.raises(SupervisorError, match=re.escape("engine.cpu_latency_us = 10: cannot")):
        sup.start()
    assert sup.cpu_latency is None
    assert sup.shards == [] and instance_segments(instance) == []


def fake_root(tmp_path: Path, driver: str | None, cmdline: str = "quiet") -> Path:
    root = tmp_path / "host"
    (root / "proc").mkdir(parents=True)
    (root / "proc/cmdline").write_text(cmdline + "\n")
    if driver is not None:
        path = root / "sys/devices/system/cpu/cpuidle/current_driver"
        path.parent.mkdir(parents=True)
        path.write_text(driver + "\n")
    return root


@pytest.mark.parametrize(
    ("driver", "cmdline", "named", "halts"),
    [
        ("intel_idle", "quiet", "intel_idle", False),  # the request binds its choice
        ("haltpoll", "quiet", "haltpoll", False),
        ("none", "quiet", None, True),  # Firecracker's guests: the default idle loop
        (None, "quiet", None, True),  # no cpuidle in sysfs at all
        ("none", "quiet idle=poll", None, False),  # polls with no driver at all
        ("none", "quiet idle=halt", None, True),
    ],
)
def test_whether_idle_cpus_halt_whatever_a_request_asks(
    tmp_path: Path, driver: str | None, cmdline: str, named: str | None, halts: bool
) -> None:
    root = fake_root(tmp_path, driver, cmdline)
    assert cpuidle_driver(root) == named
    assert halts_whatever_is_asked(root) is halts


@pytest.mark.parametrize("halts", [True, False])
def test_a_supervisor_says_when_its_request_changes_nothing(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, halts: bool
) -> None:
    """The request is still held (harmless, and right once the host gains a driver), but
    an operator reading the log learns that idle CPUs keep halting, and what would help."""
    import tradsys.cores.supervisor as supervisor_module

    device = tmp_path / "qos"
    device.write_bytes(b"")
    monkeypatch.setattr(
        supervisor_module, "CpuLatencyRequest", lambda us: CpuLatencyRequest(us, device)
    )
    monkeypatch.setattr(supervisor_module, "halts_whatever_is_asked", lambda: halts)
    lines: list[str] = []
    with Supervisor(parse_config(config_text(instance, tmp_path, 0), "t"), log=lines.append):
        pass
    warned = [line for line in lines if "no cpuidle driver" in line]
    assert len(warned) == (1 if halts else 0)
    if halts:
        assert "idle=poll" in warned[0]
