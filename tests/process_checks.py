"""What a process tree exposes, read from the kernel: the sockets it listens on and the secrets in
its environment, command line and log files. Used by the `n1v1 paper` end-to-end test."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ListeningSocket:
    """A socket that takes connections (TCP, listening) or datagrams (UDP, bound, unconnected)."""

    pid: int
    process: str  # the process's name (/proc/<pid>/comm)
    protocol: str  # tcp, tcp6, udp, udp6
    host: str
    port: int

    @property
    def on_loopback(self) -> bool:
        address = ipaddress.ip_address(self.host)
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback
        return (mapped or address).is_loopback

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.process} (pid {self.pid}) on {self.protocol} {host}:{self.port}"


_TCP_LISTEN, _UDP_UNCONNECTED = "0A", "07"


def listening_sockets(pids: Iterable[int]) -> list[ListeningSocket] | None:
    """The sockets `pids` listen on, as the kernel lists them (/proc/net/*); None where there is
    no /proc (not Linux). A socket shared by several of them is listed once."""
    if not Path("/proc/net/tcp").is_file():
        return None
    owner: dict[int, int] = {}
    for pid in pids:
        for inode in _socket_inodes(pid):
            owner.setdefault(inode, pid)
    found = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        state = _TCP_LISTEN if protocol.startswith("tcp") else _UDP_UNCONNECTED
        for host, port, inode in _proc_net_sockets(protocol, state):
            if inode in owner and port:
                pid = owner[inode]
                found.append(ListeningSocket(pid, _process_name(pid), protocol, host, port))
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # gone, or not ours
        return inodes
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _proc_net_sockets(protocol: str, state: str) -> list[tuple[str, int, int]]:
    """(host, port, inode) of the sockets in `state` from /proc/net/<protocol>."""
    try:
        lines = Path(f"/proc/net/{protocol}").read_text().splitlines()[1:]
    except OSError:
        return []
    rows = []
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[3] != state:
            continue
        address, port = fields[1].rsplit(":", 1)
        rows.append((_kernel_address(address), int(port, 16), int(fields[9])))
    return rows


def _kernel_address(hex_address: str) -> str:
    """The kernel writes an address as 32-bit words in host byte order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def descendants(root: int) -> list[int]:
    """Every live process below `root` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def exposed_sockets(pids: Iterable[int]) -> list[ListeningSocket]:
    """The listening sockets of `pids` that are not on 127.0.0.1 or ::1."""
    sockets = listening_sockets(pids)
    assert sockets is not None, "needs Linux /proc/net"
    return [s for s in sockets if not s.on_loopback]


def process_title(pid: int) -> str:
    """What a process calls itself (a Ray worker: what it runs, e.g. ray::ServeReplica:n1v1:...)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def serve_replica_call_status(port: int) -> str:
    """The gRPC status a Serve replica's inter-deployment server (on `port`, reached through
    127.0.0.1) answers to a request carrying no Ray token: UNAUTHENTICATED when Ray's token
    authentication guards it; anything else means the request reached the replica."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/ray.serve.ASGIService/HandleRequest",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        try:
            call(b"", timeout=10)
        except grpc.RpcError as exc:
            return exc.code().name
    return "OK"


def processes_holding(pids: Iterable[int], secrets: Iterable[str]) -> list[str]:
    """The processes among `pids` whose environment or command line contains one of `secrets`."""
    wanted = [s.encode() for s in secrets]
    holding = []
    for pid in pids:
        for part in ("environ", "cmdline"):
            try:
                data = Path(f"/proc/{pid}/{part}").read_bytes()
            except OSError:  # exited meanwhile
                continue
            if any(secret in data for secret in wanted):
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                holding.append(f"{name} (pid {pid}) in its {part}")
    return holding


def files_holding(folder: Path, secrets: Iterable[str]) -> list[str]:
    """The files under `folder` (logs) that contain one of `secrets`."""
    wanted = [s.encode() for s in secrets]
    holding = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath, name)
            try:
                data = path.read_bytes()
            except OSError:  # a socket, or gone
                continue
            if any(secret in data for secret in wanted):
                holding.append(str(path))
    return holding
