"""Binding the md sidecar's sockets to their configured endpoints — and, when the
supervisor restarts the sidecar, to the same ports as before.

A wildcard endpoint asks for any address: a tcp port 0 or ``*`` any free port, ``ipc://*``
a socket in a new private temporary directory; the sidecar announces what it got
(``md.json``). A subscriber knows only that address, so a restarted sidecar binds the
address its instance's first sidecar process was given
(:func:`tradsys.cores.sidecar.kept_endpoints`), not a new one; if that port has been
taken meanwhile it fails, naming the endpoint, rather than move where nobody follows
(the supervisor retries with back-off, so it comes back once the port is free).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

IPC_WILDCARD = "ipc://*"


def remove_sockets(paths: list[Path]) -> None:
    """The ipc socket files a binder made, and their private directories."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
            path.parent.rmdir()


def made_ipc_paths(configured: dict[str, Any], announced: dict[str, Any]) -> list[Path]:
    """The sockets the md sidecar made for its ``ipc://*`` endpoints: ``configured`` and
    ``announced`` by key (``publish`` a list). For the supervisor, which removes them
    when it stops a sidecar that could not (killed, or dead and waiting to restart); a
    configured ipc path is the operator's and stays."""
    paths = []
    for key, want in configured.items():
        got = announced.get(key)
        if isinstance(want, list) and isinstance(got, list):
            pairs = list(zip(want, got, strict=False))
        elif not isinstance(want, list) and not isinstance(got, list):
            pairs = [(want, got)]
        else:
            continue
        for w, g in pairs:
            if w == IPC_WILDCARD and isinstance(g, str) and g.startswith("ipc:///"):
                path = Path(g[len("ipc://") :])
                if path.parent.name.startswith("tradsys-md-"):
                    paths.append(path)
    return paths


class EndpointError(Exception):
    """An endpoint could not be bound; the message names its key and says why."""


def bind_endpoint(sock: zmq.Socket[Any], endpoint: str) -> str:
    """Bind, turning a tcp port 0 into "any free port"; return the bound endpoint, which
    is what the sidecar announces (a subscriber cannot connect to port 0 or ``*``)."""
    if any_port(endpoint):
        endpoint = endpoint[:-1] + "*"
    sock.bind(endpoint)
    return str(sock.getsockopt_string(zmq.LAST_ENDPOINT))


def any_port(endpoint: str) -> bool:
    """A tcp endpoint asking for any free port (port 0, or ZeroMQ's ``*``)."""
    return endpoint.startswith("tcp://") and endpoint.endswith((":0", ":*"))


def wildcard(endpoint: str) -> bool:
    """An endpoint asking for any address: chosen at the first bind (ZeroMQ picks the
    port, the binder the ipc path), kept for the restarts."""
    return any_port(endpoint) or endpoint == IPC_WILDCARD


@dataclass
class EndpointBinder:
    """Binds the ``[md]`` endpoints, a port-0 one to its kept port when there is one.

    ``kept``: the endpoints the first process announced, by announcement key (``publish``
    a list in config order, ``snapshot``, ``conflated_bbo``); empty at a first start."""

    kept: dict[str, Any] = field(default_factory=dict)
    # the ipc:// wildcard sockets, their files and directories removed at close (ZeroMQ
    # leaves the file of an address it was given)
    made_sockets: list[Path] = field(default_factory=list)

    def bind(self, sock: zmq.Socket[Any], key: str, configured: str, index: int = -1) -> str:
        """Bind ``configured`` (``[md] <key>``, item ``index`` of a list) and return the
        bound endpoint; EndpointError if it cannot be bound."""
        where = f"md.{key}" if index < 0 else f"md.{key}[{index}]"
        endpoint = self._kept(key, index, configured) if wildcard(configured) else None
        try:
            if endpoint is None:
                if configured == IPC_WILDCARD:
                    return bind_endpoint(sock, self._new_ipc(key, index))
                return bind_endpoint(sock, configured)
            if endpoint.startswith("ipc://"):
                self._make_dir(Path(endpoint[len("ipc://") :]))
            return bind_endpoint(sock, endpoint)
        except (zmq.ZMQError, OSError) as exc:
            if endpoint is None:
                raise EndpointError(f"{where} = {configured!r}: cannot bind it: {exc}") from None
            raise EndpointError(
                f"{where} = {configured!r}: cannot bind {endpoint}, the address this "
                f"instance's md sidecar was given at its first start ({exc}). A restarted "
                "sidecar keeps its addresses, as subscribers know only those: free it "
                "(the supervisor restarts the sidecar until it can bind it), or stop the "
                "instance to get a new one"
            ) from None

    def remove_made_sockets(self) -> None:
        """After the sockets are closed: the ipc wildcard sockets' files and directories."""
        remove_sockets(self.made_sockets)
        self.made_sockets.clear()

    def _new_ipc(self, key: str, index: int) -> str:
        """``ipc://*`` at a first start: a socket in a new private directory of the
        system's temporary one. (ZeroMQ's own wildcard puts it in a directory relative to
        the process's working directory unless TMPDIR is set, and announces that relative
        path, which a subscriber elsewhere cannot use.)"""
        name = key if index < 0 else f"{key}-{index}"
        path = Path(tempfile.mkdtemp(prefix="tradsys-md-")) / f"{name}.sock"
        self.made_sockets.append(path)
        return f"ipc://{path}"

    def _make_dir(self, socket_path: Path) -> None:
        """The kept socket's directory: still there after a crash (ZeroMQ's bind replaces
        the dead socket file), gone after a clean stop of the process before."""
        socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.made_sockets.append(socket_path)

    def _kept(self, key: str, index: int, configured: str) -> str | None:
        """What the first process bound for this wildcard endpoint, if it is the same kind
        of endpoint: a tcp one's port on the configured host, an ipc one's path."""
        value = self.kept.get(key)
        if index >= 0:
            value = value[index] if isinstance(value, list) and index < len(value) else None
        if not isinstance(value, str) or wildcard(value):
            return None
        if configured == IPC_WILDCARD:
            return value if value.startswith("ipc:///") else None
        if not value.startswith("tcp://"):
            return None
        try:
            port = int(value.rsplit(":", 1)[1])
        except ValueError:
            return None
        return f"{configured[:-1]}{port}" if 0 < port < 65536 else None
