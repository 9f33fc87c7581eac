"""A tcp endpoint configured with port 0 (any free port) keeps the port the md sidecar
was first given when the supervisor restarts the sidecar: a subscriber on another host,
which knows only that address, follows the new sidecar without being told anything."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.marketdata.md_rig import DEADLINE_S, md_config, running
from tradsys.matching.workload import mixed_stream


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


@pytest.mark.multiprocess
def test_a_restarted_sidecar_binds_the_ports_of_its_first_start(
    instance: str, tmp_path: Path
) -> None:
    """Before, each start bound a new free port: after a restart the announcement named
    other ports, and a subscriber on the first ones heard nothing again."""
    config = md_config(
        instance, tmp_path, snapshot="tcp://127.0.0.1:0", conflated_bbo="tcp://127.0.0.1:0"
    )
    with running(config) as rig:
        first = dict(rig.announcement)
        tcp = [first["publish"][1], first["snapshot"], first["conflated_bbo"]]
        assert all(e.startswith("tcp://127.0.0.1:") and port_of(e) != 0 for e in tcp), first
        # a subscriber on another host: the first tcp addresses only, never re-read
        assert rig.snapshot == first["snapshot"]  # rig.client's snapshot endpoint
        remote = rig.client(publish=rig.publish_tcp)
        rig.wait_converged(remote)
        assert remote.run_until(lambda: remote.core.last_heartbeat is not None, DEADLINE_S)
        hb = remote.core.last_heartbeat
        assert hb is not None
        feed_ids = {hb.feed_id}
        # a crash, then a clean exit: the supervisor restarts the sidecar after either
        for sig in (signal.SIGKILL, signal.SIGTERM):
            os.kill(rig.sidecar_pid, sig)
            rig.restart_sidecar()
            for key in ("publish", "snapshot", "conflated_bbo"):
                assert rig.announcement[key] == first[key], f"{key} moved after {sig.name}"
            # the subscriber hears the new sidecar where it listened before
            assert remote.run_until(
                lambda: (h := remote.core.last_heartbeat) is not None and h.feed_id not in feed_ids,
                DEADLINE_S,
            ), f"no heartbeat of the sidecar restarted after {sig.name} on {rig.publish_tcp}"
            hb = remote.core.last_heartbeat
            assert hb is not None
            feed_ids.add(hb.feed_id)
            cmds = mixed_stream(1500, 80 + int(sig), rig.config.symbols_of(0))
            rig.send(0, cmds, pump=lambda: remote.poll(0))
            rig.wait_converged(remote)


@pytest.mark.multiprocess
def test_a_kept_port_taken_meanwhile_fails_the_restart_naming_the_endpoint(
    instance: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The restarted sidecar does not move to another port (its subscribers could not
    follow): it exits saying which endpoint and why, and the supervisor's next restart
    after the port is free binds it."""
    with running(md_config(instance, tmp_path)) as rig:
        endpoint = rig.publish_tcp
        sc = rig.sidecar
        assert sc.process is not None and rig.supervisor is not None
        os.kill(sc.process.pid, signal.SIGKILL)
        sc.process.wait(DEADLINE_S)  # its sockets are closed once it is gone
        squatter = socket.socket()
        try:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port_of(endpoint)))
            squatter.listen()
            deadline = time.monotonic() + DEADLINE_S
            # the death, then a restart that exits for the taken port: two restarts
            rig.supervisor.watch(
                until=lambda: sc.restarts >= 2 or time.monotonic() > deadline, tick_s=0.01
            )
            assert sc.restarts >= 2, "the restarted sidecar did not fail"
            err = capfd.readouterr().err
            assert "md.publish[1]" in err and endpoint.removeprefix("tcp://") in err, err
            assert "in use" in err, err
        finally:
            squatter.close()
        deadline = time.monotonic() + DEADLINE_S
        rig.supervisor.watch(
            until=lambda: sc.announcement() is not None or time.monotonic() > deadline,
            tick_s=0.01,
        )
        doc = sc.announcement()
        assert doc is not None, "the sidecar did not come back once the port was free"
        assert doc["publish"] == [rig.publish, endpoint]


@pytest.mark.multiprocess
def test_wildcard_endpoints_keep_their_addresses_and_leave_nothing_behind(
    instance: str, tmp_path: Path
) -> None:
    """``ipc://*`` (ZeroMQ makes a socket file in a new temporary directory) and
    ``tcp://host:*`` are kept across restarts too: before, each restarted sidecar bound a
    new socket file and a new port. The kept ipc socket's directory, which ZeroMQ made for
    the first process only, is gone once the instance stops."""
    config = md_config(instance, tmp_path, publish=["ipc://*", "tcp://127.0.0.1:*"])
    with running(config) as rig:
        first = dict(rig.announcement)
        ipc, tcp = first["publish"]
        assert ipc.startswith("ipc:///") and ipc != "ipc://*", first
        assert tcp.startswith("tcp://127.0.0.1:") and port_of(tcp) > 0, first
        directory = Path(ipc.removeprefix("ipc://")).parent
        local = rig.client(publish=ipc)
        rig.wait_converged(local)
        for n, sig in enumerate((signal.SIGKILL, signal.SIGTERM)):
            os.kill(rig.sidecar_pid, sig)
            rig.restart_sidecar()
            assert rig.announcement["publish"] == [ipc, tcp], f"moved after {sig.name}"
            cmds = mixed_stream(800, 90 + n, rig.config.symbols_of(0))
            rig.send(0, cmds, pump=lambda: local.poll(0))
            rig.wait_converged(local)  # it heard the restarted sidecar where it listened
        assert directory.is_dir()
    assert not directory.exists(), f"{directory} left behind"


@pytest.mark.multiprocess
def test_the_ipc_socket_of_a_sidecar_killed_before_the_stop_is_removed_too(
    instance: str, tmp_path: Path
) -> None:
    """A sidecar killed just before the instance stops -- its death noticed, its restart
    not yet due -- cannot remove the ipc socket it made: the supervisor does (it was left
    in /tmp, "stopped cleanly")."""
    config = md_config(instance, tmp_path, publish=["ipc://*"])
    with running(config) as rig:
        (ipc,) = rig.announcement["publish"]
        directory = Path(ipc.removeprefix("ipc://")).parent
        sc = rig.sidecar
        sc.backoff_s = 60.0  # its restart is not due before the stop
        os.kill(rig.sidecar_pid, signal.SIGKILL)
        assert rig.supervisor is not None
        deadline = time.monotonic() + DEADLINE_S
        rig.supervisor.watch(
            until=lambda: sc.process is None or time.monotonic() > deadline, tick_s=0.01
        )
        assert sc.process is None and sc.restart_due is not None, "the death was not noticed"
        assert directory.is_dir()
    assert not directory.exists(), f"{directory} left behind"
