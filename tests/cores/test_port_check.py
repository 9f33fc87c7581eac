"""Which ports the supervisor tries before starting anything, and what it says of one
another program holds (tradsys.cores.port_check)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.engine_toml import one_shard_instance
from tradsys.config import parse_config
from tradsys.cores.port_check import taken_ports, wanted_ports


def test_fixed_tcp_ports_are_tried_and_wildcards_and_ipc_are_not(tmp_path: Path) -> None:
    config = parse_config(
        one_shard_instance(
            "ports",
            tmp_path,
            sections="""[gateway]
tcp_listen = "127.0.0.1:9100"
[md]
publish = ["tcp://*:9200", "ipc:///tmp/x", "tcp://127.0.0.1:0"]
snapshot = "tcp://127.0.0.1:9201"
[metrics]
listen = "127.0.0.1:0"
""",
        ),
        "t",
    )
    assert wanted_ports(config) == [
        ("gateway.tcp_listen", "127.0.0.1:9100", "127.0.0.1", 9100),
        ("md.publish[0]", "tcp://*:9200", "0.0.0.0", 9200),
        ("md.snapshot", "tcp://127.0.0.1:9201", "127.0.0.1", 9201),
    ]


def test_a_port_another_program_listens_on_is_named_by_its_key(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        text = one_shard_instance(
            "ports",
            tmp_path,
            sections=f'[gateway]\ntcp_listen = "127.0.0.1:0"\n'
            f'[md]\npublish = ["tcp://127.0.0.1:{port}"]\nsnapshot = "ipc:///tmp/s"\n',
        )
        (problem,) = taken_ports(parse_config(text, "t"))
    assert problem.startswith(f"md.publish[0] = 'tcp://127.0.0.1:{port}': cannot listen there")
    assert taken_ports(parse_config(text, "t")) == []  # let go: free again
