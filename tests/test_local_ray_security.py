"""The local Ray of `n1v1 paper` is closed to the network: how its sockets are read from the kernel,
Ray's own token, and a config that would open the app to other machines.

The end-to-end check (every socket of a running `n1v1 paper` on loopback but Serve's replica gRPC
servers, which refuse a call without Ray's token; no API token in any process's environment or
in Ray's logs) runs inside the one `n1v1 paper` run of tests/test_paper.py, which already starts
one: a second run would cost the suite a minute.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from process_checks import ListeningSocket, listening_sockets
from test_paper import tiny_config

from n1v1.cli.local_ray import LOOPBACK_ENV, HeadPorts, LocalRayHead, free_port

BIN = Path(sys.executable).parent


def _listening(family: socket.AddressFamily, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen()
    return sock


def test_the_kernels_socket_tables_show_what_a_process_listens_on_and_where() -> None:
    wildcard4 = _listening(socket.AF_INET, "0.0.0.0")
    wildcard6 = _listening(socket.AF_INET6, "::")
    loopback4 = _listening(socket.AF_INET, "127.0.0.1")
    loopback6 = _listening(socket.AF_INET6, "::1")
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagram.bind(("0.0.0.0", 0))
    connected = socket.create_connection(("127.0.0.1", loopback4.getsockname()[1]))
    try:
        found = listening_sockets([os.getpid()])
        assert found is not None
        mine = {(s.protocol, s.host, s.port): s.on_loopback for s in found}
        assert mine == {
            ("tcp", "0.0.0.0", wildcard4.getsockname()[1]): False,
            ("tcp6", "::", wildcard6.getsockname()[1]): False,
            ("tcp", "127.0.0.1", loopback4.getsockname()[1]): True,
            ("tcp6", "::1", loopback6.getsockname()[1]): True,
            ("udp", "0.0.0.0", datagram.getsockname()[1]): False,
        }  # the connected client socket listens on nothing
        assert all(s.pid == os.getpid() for s in found)
        assert listening_sockets([]) == []  # another process's sockets are not ours
    finally:
        for sock in (wildcard4, wildcard6, loopback4, loopback6, datagram, connected):
            sock.close()


def test_an_ipv4_mapped_loopback_address_counts_as_loopback() -> None:
    """Ray's gRPC servers bind 127.0.0.1 on an IPv6 socket: the kernel shows ::ffff:127.0.0.1."""
    assert ListeningSocket(1, "gcs_server", "tcp6", "::ffff:127.0.0.1", 6380).on_loopback
    assert not ListeningSocket(1, "raylet", "tcp6", "::ffff:192.0.2.2", 6380).on_loopback
    assert str(ListeningSocket(7, "raylet", "tcp6", "::", 41)) == "raylet (pid 7) on tcp6 [::]:41"


def test_a_head_with_ray_token_auth_keeps_the_token_in_an_owner_only_file() -> None:
    ports = HeadPorts(free_port(), free_port(), free_port(), free_port(), free_port())
    inherited = {"PATH": "/usr/bin", "RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "x" * 64}
    head = LocalRayHead(str(BIN / "ray"), ports, 1, inherited, loopback_only=True)
    try:
        path = head.require_token()
        token = path.read_text()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) == 64
        assert head.client_env == {
            "PATH": "/usr/bin",
            **LOOPBACK_ENV,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(path),
        }  # a user's own Ray token and mode do not leak into this head
        assert head.env == {**head.client_env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        assert token not in "".join(head.env.values())
    finally:
        head.remove_temp_dir()


def test_paper_refuses_an_http_host_other_machines_can_reach(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, free_port())
    doc = yaml.safe_load(config.read_text())
    doc["http_options"]["host"] = "0.0.0.0"
    config.write_text(yaml.safe_dump(doc))
    ports = [f"--{name}-port={free_port()}" for name in ("ray", "dashboard", "metrics")]
    done = subprocess.run(
        [str(BIN / "n1v1"), "paper", "--config", str(config), "--no-train", *ports],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        f"n1v1: error: http_options.host in {config} is 0.0.0.0: `n1v1 paper` serves on this "
        "machine only (127.0.0.1), as its Ray is. To serve other machines, deploy to a cluster "
        "(docs/deploy.md)\n"
    )
    assert "Starting a Ray head" not in done.stdout
    assert not (tmp_path / "var" / "api_token").exists()  # refused before anything was made


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_hosts_are_the_ones_paper_accepts(host: str) -> None:
    from n1v1.cli.paper import _not_loopback

    assert not _not_loopback(host)
    assert _not_loopback("0.0.0.0") and _not_loopback("::") and _not_loopback("192.0.2.2")
