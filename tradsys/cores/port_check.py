"""The fixed TCP ports a configuration asks for, tried before any engine process starts.

The gateway binds ``[gateway] tcp_listen`` and the md sidecar its endpoints only once
every worker has recovered, which after a long journal is minutes; the supervisor binds
``[metrics] listen`` after both. A port another program held was told only then, and the
whole start undone. Each fixed port is now bound once (with ``SO_REUSEADDR``, as the
sidecars bind it: a port left in TIME_WAIT by the instance's previous run is free) and
let go before anything starts. A try, not a reservation: a program may still take the
port in between, and the sidecar's own bind then says so, as before. Port 0 ("any free
one") and ipc endpoints are not tried.
"""

from __future__ import annotations

import socket

from tradsys.config import Config, split_listen

_TCP = "tcp://"


def _tcp_endpoint(value: str) -> tuple[str, int] | None:
    """A ZeroMQ ``tcp://host:port`` endpoint as (host, port); None for another kind, a
    wildcard port, or one ZeroMQ itself must judge (an interface name)."""
    if not value.startswith(_TCP):
        return None
    host, _, port = value[len(_TCP) :].rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return None
    return ("0.0.0.0" if host in ("*", "") else host.strip("[]")), int(port)


def wanted_ports(config: Config) -> list[tuple[str, str, str, int]]:
    """(config key, its value, host, port) of each fixed TCP port the instance binds."""
    out: list[tuple[str, str, str, int]] = []
    gateway, md = config.gateway, config.md
    if gateway.enabled and gateway.tcp_listen:
        host, port = split_listen("gateway.tcp_listen", gateway.tcp_listen)
        if port:
            out.append(("gateway.tcp_listen", gateway.tcp_listen, host, port))
    if md.enabled:
        endpoints = [(f"md.publish[{i}]", v) for i, v in enumerate(md.publish)]
        endpoints += [("md.snapshot", md.snapshot), ("md.conflated_bbo", md.conflated_bbo)]
        for key, value in endpoints:
            found = _tcp_endpoint(value)
            if found is not None:
                out.append((key, value, *found))
    if config.metrics.listen:
        host, port = split_listen("metrics.listen", config.metrics.listen)
        if port:
            out.append(("metrics.listen", config.metrics.listen, host, port))
    return out


def _try_bind(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on now, or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc.strerror
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
            probe.listen(1)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def taken_ports(config: Config) -> list[str]:
    """One line per fixed port that cannot be listened on now, naming its config key."""
    problems = []
    for key, value, host, port in wanted_ports(config):
        why = _try_bind(host, port)
        if why is not None:
            problems.append(
                f"{key} = {value!r}: cannot listen there: {why} (another program may hold "
                "the port: stop it, or pick another; port 0 for any free one)"
            )
    return problems
