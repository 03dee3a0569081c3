"""Find or start Ray: the one way every command (train, sweep, walkforward, jobs/*, paper) connects.

Rules, in order (`ensure_ray`):

1. this process is already connected (a notebook, a test, `ray job submit` code that called
   `ray.init` itself): use that connection and leave it alone;
2. an explicit address (`--address`): connect to it;
3. `RAY_ADDRESS` is set (as under `ray job submit`): connect to that cluster;
4. otherwise start a private local Ray (`address="local"`) for this command and stop it at the end.

Rule 4 never attaches to another cluster that happens to run on this machine (a `ray start` head,
another user's session): without an address, plain `ray.init(num_cpus=...)` would join such a
cluster and then fail with "num_cpus ... must not be provided", so a command behaved differently
depending on what else ran. An unreachable address fails in seconds with `RayConnectionError`
(a `ConnectionError`, so the CLI prints `n1v1: error: ...` and exits 2), instead of Ray's own
retries of several minutes that end in a bare `SystemExit`.

Ray is imported inside `ensure_ray`, so importing this module costs nothing and keeps the trading
core free of Ray (tests/test_architecture.py).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

ADDRESS_ENV = "RAY_ADDRESS"
GCS_PORT_ENV = "RAY_GCS_SERVER_PORT"
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
REACH_TIMEOUT_S = 5.0  # a GCS (or Ray client server) that does not accept a TCP connection by now


class RayConnectionError(ConnectionError):
    """Ray could not be reached or started; the message names the address and what to try."""


def ensure_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    dashboard: bool = False,
    quiet: bool = False,
) -> bool:
    """Connect this process to Ray by the rules of the module docstring. Returns True when this
    call connected (the caller then owns the connection and should `ray.shutdown()` it).

    `num_cpus` sizes a private local Ray only (a cluster has its own); `dashboard` gives it the
    dashboard, whose State API Ray Train needs (its placement-group cleaner asks it whether the
    run's controller is alive, and warns every few seconds when it cannot). `quiet` keeps Ray's
    start-up banner off the console (warnings and errors still show), for commands whose output
    is their own progress lines."""
    import ray

    if ray.is_initialized():
        return False
    options: dict[str, object] = {"logging_level": logging.WARNING} if quiet else {}
    target = address or os.environ.get(ADDRESS_ENV) or None
    where = f"--address {address}" if address else f"{ADDRESS_ENV}={target}"
    try:
        if target is None:
            # Ray Train's preemption watcher follows node draining (spot instances, autoscaler
            # scale-down); a private single-node Ray is never drained, and the watcher's start
            # logs a spurious core-worker error line on every run.
            os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
            _init_private(ray, num_cpus=num_cpus, include_dashboard=dashboard, **options)
            return True
        _check_reachable(target, where)
        ray.init(address=address or "auto", **options)
    except RayConnectionError:
        raise
    except (ConnectionError, ValueError, RuntimeError, TimeoutError, SystemExit) as exc:
        # SystemExit: Ray's core worker exits the process when it gives up on the GCS.
        what = "start a local Ray" if target is None else f"connect to Ray at {where}"
        raise RayConnectionError(f"could not {what}: {_one_line(exc)}") from None
    return True


def _init_private(ray: Any, **options: Any) -> None:
    """`ray.init(address="local")` whose own processes know its address.

    Ray processes that look a cluster up without an address (Ray Train's placement-group
    cleaner asks the State API whether the run's controller is alive) take RAY_ADDRESS, else the
    last `ray start` head's address file, else every GCS running on the machine. Beside another
    Ray that is the wrong cluster or "Found multiple active Ray instances" (a traceback in the
    middle of training). So the GCS port is chosen here (RAY_GCS_SERVER_PORT) and RAY_ADDRESS set
    to it while the node starts: its raylet, and every worker it starts, inherit both. This
    process's environment is restored afterwards, so a later command still starts its own Ray."""
    with socket.socket() as probe:  # a free port; the GCS binds it a moment later
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    saved = {key: os.environ.get(key) for key in (GCS_PORT_ENV, ADDRESS_ENV)}
    os.environ[GCS_PORT_ENV] = str(port)
    os.environ[ADDRESS_ENV] = f"127.0.0.1:{port}"
    try:
        ray.init(address="local", **options)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_reachable(address: str, where: str) -> None:
    """Fail fast when nothing listens at `address` ("host:port" or "ray://host:port"); "auto",
    "local" and addresses without a port are left to Ray."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or address in ("auto", "local"):
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), REACH_TIMEOUT_S):
            pass
    except OSError as exc:
        raise RayConnectionError(
            f"cannot reach Ray at {where} ({exc.strerror or exc}); start the cluster (ray start "
            f"--head --port {port}), fix the address, or unset {ADDRESS_ENV} and drop --address "
            "to run on a private local Ray"
        ) from None


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
