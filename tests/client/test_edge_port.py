"""A gateway that cannot take its TCP port (taken after the supervisor tried it, see
tradsys.cores.port_check) refuses to start naming the key, and leaves no socket file."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import uvloop

from tests.client.edge_rig import edge_config
from tests.client.fake_core import FakeCore
from tradsys.config import ConfigError
from tradsys.cores.gateway import GatewayServer
from tradsys.cores.gateway_admin import admin_socket_path


def test_a_taken_port_is_a_config_error_and_leaves_no_socket_file(
    instance: str, tmp_path: Path
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        config = edge_config(instance, tmp_path, tcp_listen=f"127.0.0.1:{port}")
        core = FakeCore(config)
        try:
            server = GatewayServer(config, core)

            async def start_then_close() -> None:
                try:
                    await server.start()
                finally:
                    await server.close()

            with pytest.raises(ConfigError, match=f"gateway.tcp_listen = '127.0.0.1:{port}'"):
                uvloop.run(start_then_close())
        finally:
            core.close()
    assert not server.unix_path.exists()
    assert not admin_socket_path(config).exists()
