"""A Ray head that belongs to one command: started in a session of its own, stopped by its PIDs.

`ray start --head` leaves a daemonised cluster behind, and `ray stop` kills every Ray process on
the machine, other users' clusters included. Here the head runs as `ray start --head --block`, a
child process in a new session with its own temp dir. On SIGTERM it shuts down what it started
(GCS, raylet, dashboard, ...); whatever is still alive in that session after a grace period (its
workers inherit the session) is killed by PID. No process outside that session is touched.

With `loopback_only` (what `n1v1 paper` asks for), every port of that head listens on 127.0.0.1.
On Linux `ray start` takes the machine's routable IP as the node's, and its GCS, raylet (node and
object manager), Ray Client server, dashboard agent, runtime-env agent, autoscaler metrics and
every worker listen there or on all interfaces: with Ray's own authentication off, anyone on the
network could run code in it. Ray's single-machine mode (its default on macOS and Windows,
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`) makes 127.0.0.1 the node's IP, which each of those servers
binds (`--node-ip-address=127.0.0.1` alone is turned back into the routable IP by `ray start`). A
driver attaching to it needs the same mode, or it looks for the head at the routable IP: hence
`client_env`. One server escapes it: Ray Serve 2.60 starts each replica's inter-deployment gRPC
server on `[::]:0`, hard-coded. Behind it are the replicas' methods (the Engine's commands among
them), so `require_token` turns Ray's own token authentication on as well, which that server
(like every other Ray endpoint but the Prometheus one) then demands. tests/test_paper.py checks
all this from the kernel's socket tables while `n1v1 paper` runs.

It drives the `ray` CLI as a subprocess, so this module imports nothing from Ray.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Ray's single-machine mode: the node's IP is 127.0.0.1, so every Ray server (and the core worker
# of every worker and driver) binds loopback only. A driver of this head needs it too.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
RAY_TOKEN_FILE = "ray_token"
# Ray's own authentication (Ray >= 2.52): set for the head and for every process that talks to it.
_RAY_AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


class RayHeadError(RuntimeError):
    """The head did not start; the message says why and where its log is."""


@dataclass(frozen=True)
class HeadPorts:
    gcs: int
    dashboard: int
    metrics: int
    client: int  # Ray Client server (Ray's default, 10001, would clash with another cluster)
    agent: int  # the dashboard agent's HTTP port (Ray's default, 52365, likewise)


def free_port() -> int:
    """A port nobody listens on at this moment, for the ports nobody needs to know in advance."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class LocalRayHead:
    """`start()` returns the GCS address once the head is up; `stop()` ends every process of its
    session and returns the PIDs it had to kill after the grace period."""

    def __init__(
        self,
        ray_bin: str,
        ports: HeadPorts,
        num_cpus: int,
        env: Mapping[str, str],
        *,
        loopback_only: bool = False,
        block: bool = True,
    ) -> None:
        """`block=False` starts the head daemonised (`ray start --head` returns once it is up):
        `--block` takes every process down when one of them dies, which a GCS fault-tolerance
        test must not have (bench/faults.py kills `gcs_server` and starts it again)."""
        self.ray_bin, self.ports, self.num_cpus, self.block = ray_bin, ports, num_cpus, block
        # Loopback only: a driver must be in the same mode to connect (it resolves the address
        # 127.0.0.1 to the node IP it would have), so `client_env` carries it too.
        self.loopback_only = loopback_only
        self.client_env = {**env, **(LOOPBACK_ENV if loopback_only else {})}
        # Short and private: Ray's socket paths live under it (Unix sockets allow ~100 bytes).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="n1v1-ray-"))
        self.log_path = self.temp_dir / "head.log"
        self.token_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The head's environment: what its clients get, and no drain wait on SIGTERM (the Serve
        app is shut down first, so the head has nothing to drain)."""
        return {**self.client_env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}

    def require_token(self) -> Path:
        """Turn Ray's token authentication on for this head (call before `start`): a new random
        token in an owner-only file of its temp dir. `client_env`, which every process that talks
        to the head must use, names the file; the token itself is in no environment."""
        path = self.temp_dir / RAY_TOKEN_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        for name in _RAY_AUTH_VARIABLES:
            self.client_env.pop(name, None)
        self.client_env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(path))
        self.token_path = path
        return path

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.ports.gcs}"

    @property
    def session_id(self) -> int | None:
        """The session every process of this head belongs to (the `ray start` child's PID)."""
        return None if self.process is None else self.process.pid

    def start(self, timeout: float = 180.0) -> str:
        p = self.ports
        command = [
            self.ray_bin,
            "start",
            "--head",
            *(["--block"] if self.block else []),
            *([f"--node-ip-address={LOOPBACK}"] if self.loopback_only else []),
            f"--port={p.gcs}",
            f"--num-cpus={self.num_cpus}",
            f"--dashboard-host={LOOPBACK}",
            f"--dashboard-port={p.dashboard}",
            f"--dashboard-agent-listen-port={p.agent}",
            f"--ray-client-server-port={p.client}",
            f"--metrics-export-port={p.metrics}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no terminal signal reaches it; its PID names the session
            )
        ready = self.temp_dir / "ray_current_cluster"  # written once the head is up
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.process.poll() is not None and (self.block or self.process.returncode != 0):
                raise RayHeadError(
                    f"`ray start --head` exited with status {self.process.returncode}:\n"
                    f"{self.log_tail()}\n(full log: {self.log_path})"
                )
            if time.monotonic() > deadline:
                raise RayHeadError(f"Ray did not start within {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.2)
        return self.address

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def session_pids(self) -> list[int]:
        sid = self.session_id
        return [] if sid is None else processes_in_session(sid)

    def stop(self, grace: float = 30.0) -> list[int]:
        """SIGTERM to the head (it stops its own processes), then SIGKILL to whatever of its
        session is still alive after `grace` seconds. Returns the PIDs killed that way."""
        process, sid = self.process, self.session_id
        if process is None or sid is None:
            return []
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
        elif not self.block:  # daemonised: nobody relays the SIGTERM, so each process gets one
            for pid in processes_in_session(sid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + min(grace, 10.0)
        while processes_in_session(sid) and time.monotonic() < deadline:
            time.sleep(0.2)  # workers notice their raylet is gone and exit on their own
        killed = processes_in_session(sid)
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(timeout=10)
        return killed

    def remove_temp_dir(self) -> None:
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def processes_in_session(sid: int) -> list[int]:
    """PIDs of the live processes whose session id is `sid` (never this process's own)."""
    out = []
    for pid in _all_pids():
        if pid == os.getpid():
            continue
        try:
            if os.getsid(pid) == sid and not _is_zombie(pid):
                out.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    return out


def _all_pids() -> list[int]:
    proc = Path("/proc")
    if proc.is_dir():
        return [int(p.name) for p in proc.iterdir() if p.name.isdigit()]
    listed = subprocess.run(["ps", "-A", "-o", "pid="], capture_output=True, text=True, check=True)
    return [int(word) for word in listed.stdout.split()]


def _is_zombie(pid: int) -> bool:
    """An exited child not yet reaped by its parent: nothing left to kill."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == "Z"
