"""`n1v1 paper`: the main job (`make run`). Starts a Ray head of its own, trains the ML strategy's
model through the same Train code when the registry lacks it, and runs `serve run
serve_config.yaml` in paper mode until Ctrl-C.

It drives the real tools as subprocesses (`ray start`, `n1v1 train`, `serve run`), so what a user
sees here is what they would type, and this module stays free of Ray imports. What it starts, it
stops, and nothing else: the Ray head runs in a session of its own and is stopped by its PIDs
(`n1v1/cli/local_ray.py`), never with `ray stop`, which would kill every Ray on the machine.

One run at a time per state folder (`var/` beside the SQLite store): a lock file says so, and a
second `n1v1 paper` names the running one and its URL instead of colliding with it. The API token
is generated once into `var/api_token` (mode 0600) and reused, so an open dashboard survives a
restart; N1V1_API_TOKEN or N1V1_API_TOKEN_FILE override it.

What it starts is closed to the network, and no Ray process holds the API token: the Ray head and
the app listen on 127.0.0.1, Ray's own token authentication is on (Serve's replicas open one gRPC
port on every interface, which Ray lets nobody bind elsewhere; without Ray's token it answers
nothing), and Ray gets the API tokens' SHA-256 hashes in place of every token variable, since a
Ray process's environment is passed on to every worker and readable by its whole user
(`n1v1/cli/local_ray.py`, docs/security.md).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from n1v1.cli.common import EXIT_ERROR, EXIT_OK
from n1v1.cli.local_ray import (
    LOOPBACK_ENV,
    HeadPorts,
    LocalRayHead,
    RayHeadError,
    free_port,
    port_in_use,
)

# The ML strategy's model is trained on bars *before* the replay window, so the paper session never
# trades on data its model has seen.
TRAIN_DATASET, TRAIN_END = "coinbase_BTC-USD_1m", "2018-04-03"
LOCK_FILE, RUN_FILE = "paper.lock", "paper.json"
SERVE_STOP_S = 30.0  # Serve's graceful shutdown (replicas release the engine lease)


class Stop(Exception):
    """SIGINT, SIGTERM or SIGHUP: stop what this command started, then exit."""


def add_paper_command(sub: Any) -> None:
    p = sub.add_parser(
        "paper",
        help="run the Serve app in paper mode on a Ray head of its own (what `make run` does)",
    )
    p.add_argument("--config", type=Path, default=Path("serve_config.yaml"), help="Serve config")
    p.add_argument("--ray-port", type=int, default=6380, help="GCS port (6379 is Redis's)")
    p.add_argument("--dashboard-port", type=int, default=8265, help="Ray dashboard (serve deploy)")
    p.add_argument("--metrics-port", type=int, default=8080, help="Ray's Prometheus endpoint")
    p.add_argument("--num-cpus", type=int, default=4, help="CPUs the Ray head offers")
    p.add_argument("--no-train", action="store_true", help="fail instead of training a model")
    p.set_defaults(handler=cmd_paper)


def _app_args(config: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from n1v1.config import ConfigError, read_yaml_mapping
    from n1v1.serve.args import AppArgs

    doc = read_yaml_mapping(config, "Serve config")
    apps = [a for a in doc.get("applications", []) if a.get("name") == "n1v1"]
    if not apps:
        raise ConfigError(f"{config}: no application named n1v1")
    AppArgs.model_validate(apps[0].get("args") or {})
    return apps[0]["args"], doc.get("http_options") or {}


def _state_dir(app_args: dict[str, Any]) -> Path:
    """Where this app keeps its own files: beside its SQLite store, else `var/`."""
    from n1v1.serve.args import AppArgs

    return AppArgs.model_validate(app_args).state_dir or Path("var")


def _ensure_models(
    args_doc: dict[str, Any], allow_train: bool, env: dict[str, str] | None = None
) -> list[str]:
    """Train each ml_signal model the config names that the registry lacks (promoted only if it
    passes the gate) and say plainly which version each ml_signal slot trades and whether it
    passed the gate; returns those lines (`n1v1.cli.ml.ensure_slot_models`)."""
    from n1v1.cli.ml import ensure_slot_models

    return ensure_slot_models(args_doc, allow_train, dataset=TRAIN_DATASET, end=TRAIN_END, env=env)


def _store_problem(app_args: dict[str, Any]) -> str:
    """Why the app's store cannot be opened (a store written by another schema version), said
    before anything starts: otherwise every Engine replica fails on it and Serve restarts them in
    a loop. Empty when the store opens (it is created if absent, as the app would)."""
    from n1v1.serve.args import AppArgs
    from n1v1.store import SchemaVersionError, create_store
    from n1v1.store.migrate import UPGRADE_COMMAND

    url = AppArgs.model_validate(app_args).resolved_store_url()
    try:
        create_store(url).dispose()
    except SchemaVersionError as exc:
        if url.startswith("sqlite:///"):  # a PostgreSQL URL may hold a password: never shown
            path = url.removeprefix("sqlite:///")
            where, fix = f"the store {path}", f"move or delete {path} to start a new one"
        else:
            where, fix = "the PostgreSQL store", "point the app at a new database"
        if UPGRADE_COMMAND in str(exc):  # it names the command that migrates it
            return f"{where}: {exc}"
        return f"{where}: {exc}. To start afresh: {fix} (docs/store.md)"
    return ""


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=20) as response:  # readyz waits <= 15 s
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


# -- one run at a time -----------------------------------------------------------------------------
@contextlib.contextmanager
def _run_lock(state: Path) -> Iterator[bool]:
    """Hold `state/paper.lock` for the life of this run; yields False when another run holds it.
    The lock is the kernel's (flock): it goes with the process, however the process ends."""
    import fcntl  # POSIX only: imported here so that the rest of the CLI loads anywhere

    state.mkdir(parents=True, exist_ok=True)
    with (state / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            (state / RUN_FILE).unlink(missing_ok=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _already_running(state: Path) -> str:
    """What to tell the user when another run holds the lock."""
    try:
        run = json.loads((state / RUN_FILE).read_text())
    except (OSError, ValueError):
        return (
            f"N1V1 paper trading is already starting from this folder (lock {state / LOCK_FILE}); "
            "wait for its URL in its terminal, or stop it with Ctrl-C there"
        )
    return (
        f"N1V1 paper trading is already running from this folder (pid {run['pid']}, since "
        f"{run['started']}): dashboard {run['dashboard']} (the token is in {run['token_file']}), "
        f"Ray at {run['ray']}. Open that, or stop it with Ctrl-C in its terminal (or `kill "
        f"{run['pid']}`) before starting another"
    )


def _busy_ports(ports: dict[str, int]) -> list[str]:
    return [f"{port} ({what})" for what, port in ports.items() if port_in_use(port)]


def _not_loopback(host: str) -> bool:
    """Whether other machines could reach a server bound to `host`."""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


# -- the run ---------------------------------------------------------------------------------------
def _raise_stop(signum: int, _frame: Any) -> None:
    raise Stop(signal.Signals(signum).name)


def cmd_paper(args: argparse.Namespace) -> int:
    app_args, http = _app_args(args.config)
    state = _state_dir(app_args)
    with _run_lock(state) as mine:
        if not mine:
            print(f"n1v1: error: {_already_running(state)}", file=sys.stderr)
            return EXIT_ERROR
        handlers = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return _run(args, app_args, http, state)
        except (KeyboardInterrupt, Stop):
            return EXIT_OK  # stopped on request; everything it started is stopped (see _run)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


def _run(
    args: argparse.Namespace, app_args: dict[str, Any], http: dict[str, Any], state: Path
) -> int:
    from n1v1.serve.auth import TOKEN_FILE_NAME, TokenError, hashed_environment, resolve_token

    host, port = str(http.get("host", "127.0.0.1")), int(http.get("port", 8000))
    if _not_loopback(host):
        print(
            f"n1v1: error: http_options.host in {args.config} is {host}: `n1v1 paper` serves on "
            "this machine only (127.0.0.1), as its Ray is. To serve other machines, deploy to a "
            "cluster (docs/deploy.md)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    busy = _busy_ports(
        {
            f"Serve HTTP, http_options.port in {args.config}": port,
            "Ray GCS, --ray-port": args.ray_port,
            "Ray dashboard, --dashboard-port": args.dashboard_port,
            "Ray metrics, --metrics-port": args.metrics_port,
        }
    )
    if busy:
        print(
            f"n1v1: error: in use by another program: {', '.join(busy)}. Another N1V1 or Ray may "
            "run from another folder: stop it, or choose other ports",
            file=sys.stderr,
        )
        return EXIT_ERROR
    # The token stays in this process (the banner shows it); Ray gets its hash only.
    try:
        token = resolve_token(os.environ, (state / TOKEN_FILE_NAME).resolve())
        hashed = hashed_environment(os.environ, token)
    except TokenError as exc:
        print(f"n1v1: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    # The training run's private Ray binds loopback too; the head below adds its own Ray token.
    env = dict(hashed, RAY_USAGE_STATS_ENABLED="0", **LOOPBACK_ENV)
    problem = _store_problem(app_args)
    if problem:
        print(f"n1v1: error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    model_lines = _ensure_models(app_args, allow_train=not args.no_train, env=env)

    bin_dir = Path(sys.executable).parent
    ray_bin = shutil.which("ray", path=str(bin_dir))
    serve_bin = shutil.which("serve", path=str(bin_dir))
    if ray_bin is None or serve_bin is None:
        print("n1v1: error: `ray`/`serve` not found next to this Python", file=sys.stderr)
        return EXIT_ERROR

    ports = HeadPorts(
        gcs=args.ray_port,
        dashboard=args.dashboard_port,
        metrics=args.metrics_port,
        client=free_port(),
        agent=free_port(),
    )
    head = LocalRayHead(ray_bin, ports, args.num_cpus, env, loopback_only=True)
    head.require_token()  # Ray's own auth: Serve's replica gRPC servers listen on every interface
    serve: subprocess.Popen[bytes] | None = None
    failed = False
    print(f"Starting a Ray head of its own at {head.address} ...", flush=True)
    try:
        address = head.start()
        serve = subprocess.Popen(
            [serve_bin, "run", str(args.config), "--address", address],
            env=head.client_env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches this command only; it stops `serve run` once
        )
        base = f"http://{host}:{port}"
        if not _wait_ready(f"{base}/readyz", serve, timeout=300):
            print(
                "n1v1: error: the Serve app did not become ready; see the log above",
                file=sys.stderr,
            )
            failed = True
            return EXIT_ERROR
        run = {
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "dashboard": f"{base}/",
            "token_file": str(token.path or token.source),
            "ray": address,
            "ray_token_file": str(head.token_path),  # Ray's own token (not the API's)
            "ray_session": head.session_id,
            "ray_temp_dir": str(head.temp_dir),  # `n1v1 observe` finds Ray's metrics targets here
            "metrics_port": args.metrics_port,
        }
        (state / RUN_FILE).write_text(json.dumps(run))
        print(
            _banner(base, token, args, head, _feed_label(base, token.value), model_lines),
            flush=True,
        )
        code = serve.wait()
        if code != 0:
            failed = True
            print(f"n1v1: error: `serve run` exited with status {code}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK
    except RayHeadError as exc:
        failed = True
        print(f"n1v1: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (KeyboardInterrupt, Stop):
        print("\nStopping N1V1 paper trading (the Serve app, then its Ray head) ...", flush=True)
        return EXIT_OK
    finally:
        # No second Ctrl-C may cut this short and leave the Ray head behind (it takes seconds).
        with _signals_ignored():
            _stop_serve(serve)
            killed = head.stop()
            if killed:
                print(
                    f"Ray head: killed {len(killed)} process(es) that outlived SIGTERM", flush=True
                )
            if failed:
                print(f"Ray logs kept in {head.temp_dir}", file=sys.stderr)
            else:
                head.remove_temp_dir()
            print("Stopped: the Serve app and its Ray head are down.", flush=True)


def _stop_serve(serve: subprocess.Popen[bytes] | None) -> None:
    """One SIGINT: `serve run` shuts the app down gracefully (the engine releases its lease)."""
    if serve is None or serve.poll() is not None:
        return
    serve.send_signal(signal.SIGINT)
    try:
        serve.wait(timeout=SERVE_STOP_S)
    except subprocess.TimeoutExpired:
        serve.kill()
        serve.wait()


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in signals}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _exports(head: LocalRayHead) -> str:
    """The variables a Ray client of this head needs (loopback mode, Ray's token file)."""
    names = [*LOOPBACK_ENV, "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"]
    return " ".join(f"{name}={head.client_env[name]}" for name in names)


def _feed_label(base: str, token: str) -> str:
    """What the engine trades on, from its status (the same words the dashboard shows)."""
    request = urllib.request.Request(
        f"{base}/api/v1/status", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            feed = json.loads(response.read()).get("feed") or {}
    except (OSError, ValueError):
        return ""
    label = str(feed.get("label", ""))
    if feed.get("after_replay") == "synthetic":
        label += "; after the replay, synthetic bars (labelled as such, not market data)"
    return label


def _banner(
    base: str,
    token: Any,
    args: argparse.Namespace,
    head: LocalRayHead,
    label: str,
    model_lines: list[str],
) -> str:
    kept = f"kept in {token.path}, owner-only" if token.path is not None else token.source
    lines = [
        "",
        "N1V1 paper trading is running (Ctrl-C stops it, and the Ray head it started).",
        f"  Trading:   paper, on {label}" if label else None,
        *(f"  Model:     {line}" for line in model_lines),
        f"  Dashboard: {base}/#token={token.value}",
        f"  API token: {token.value}  ({kept})",
        f"  API docs:  {base}/docs",
        f"  Try:       curl -H 'Authorization: Bearer {token.value}' {base}/api/v1/status",
        f"  Metrics:   http://127.0.0.1:{args.metrics_port}/metrics (Prometheus)",
        f"  Ray:       export RAY_ADDRESS={head.address} {_exports(head)}",
        "             then serve status, serve deploy, ray.init() (this Ray's own token, "
        "owner-only, for this run)",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)
