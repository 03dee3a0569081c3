"""What a process tree exposes, read from the kernel: the sockets it listens on and the secrets in
its environment, command line and log files. Used by the `n1v1 paper` end-to-end test."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from n1v1.cli.local_ray import ListeningSocket, listening_sockets


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
