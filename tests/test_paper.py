"""`n1v1 paper` (what `make run` runs): one run per folder; Ctrl-C stops exactly what it started.

The end-to-end test starts a bystander Ray head the way anyone would (`ray start --head`, on other
ports), then `n1v1 paper` on a tiny config (one dataset, no ML model, so nothing is trained), checks
that a second `n1v1 paper` names the running one, presses Ctrl-C the way a terminal does (SIGINT to
the whole process group), and then checks that every process of paper's own Ray is gone while
every process of the bystander still runs. The old `ray stop` would have killed both.

While it runs, the same test reads from the kernel what paper's processes expose (the checks of
tests/process_checks.py): every socket they listen on is on loopback, and neither API token (the
admin one paper keeps in var/api_token, a read-only one given in N1V1_API_READ_TOKEN) is in any of
their environments or command lines, nor in a Ray log; both tokens still work, so the hashes
reached the app.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from process_checks import (
    descendants,
    exposed_sockets,
    files_holding,
    process_title,
    processes_holding,
    serve_replica_call_status,
)

from n1v1.cli.local_ray import free_port, processes_in_session
from n1v1.cli.paper import RUN_FILE, _already_running, _run_lock
from n1v1.monitoring.prometheus import SERVICE_DISCOVERY_FILE
from n1v1.store import SCHEMA_VERSION, create_store

BIN = Path(sys.executable).parent
CONFIG = Path(__file__).resolve().parents[1] / "serve_config.yaml"


def test_a_second_run_in_the_same_folder_is_refused_naming_the_first(tmp_path: Path) -> None:
    with _run_lock(tmp_path) as first:
        assert first
        with _run_lock(tmp_path) as second:
            assert not second
            assert "already starting" in _already_running(tmp_path)
        run = {
            "pid": 4242,
            "started": "2026-01-02 03:04:05",
            "dashboard": "http://127.0.0.1:8000/",
            "token_file": "var/api_token",
            "ray": "127.0.0.1:6380",
            "ray_session": 4243,
        }
        (tmp_path / RUN_FILE).write_text(json.dumps(run))
        assert _already_running(tmp_path) == (
            "N1V1 paper trading is already running from this folder (pid 4242, since "
            "2026-01-02 03:04:05): dashboard http://127.0.0.1:8000/ (the token is in "
            "var/api_token), Ray at 127.0.0.1:6380. Open that, or stop it with Ctrl-C in its "
            "terminal (or `kill 4242`) before starting another"
        )
    assert not (tmp_path / RUN_FILE).exists()  # the run's record goes with its lock
    with _run_lock(tmp_path) as again:
        assert again  # released: the next run may start


def tiny_config(tmp: Path, http_port: int) -> Path:
    """serve_config.yaml with one short dataset, one strategy and no ML model, on `http_port`."""
    doc = yaml.safe_load(CONFIG.read_text())
    doc["http_options"] = {"host": "127.0.0.1", "port": http_port}
    (app,) = doc["applications"]
    app["args"].update(
        {
            "store_url": f"sqlite:///{tmp / 'var' / 'n1v1.db'}",
            "model_root": str(tmp / "var" / "models"),
            "feed": {
                "kind": "replay",
                "datasets": ["coinbase_LTC-USD_1m"],
                "start": "2018-04-04 00:00",
                "end": "2018-04-04 02:00",
                "bars_per_second": 5,
                "after_replay": "synthetic",
            },
            "strategies": [{"name": "sma_cross", "params": {"fast": 5, "slow": 20}}],
            "api": {"max_replicas": 1},
            "model": {"max_replicas": 1},
        }
    )
    app["deployments"] = []
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_store_of_another_schema_version_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    """A `var/n1v1.db` written by the previous release (schema version 3): said at once, with the
    file to move, instead of Engine replicas failing on it in a loop under Serve."""
    config = tiny_config(tmp_path, free_port())
    db = tmp_path / "var" / "n1v1.db"
    create_store(f"sqlite:///{db}").dispose()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 3")
    ports = [f"--{name}-port={free_port()}" for name in ("ray", "dashboard", "metrics")]
    done = subprocess.run(
        [str(BIN / "n1v1"), "paper", "--config", str(config), "--no-train", *ports],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, RAY_AUTH_MODE="disabled"),
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        f"n1v1: error: the store {db}: database is at schema version 3, this code needs version "
        f"{SCHEMA_VERSION}; no migration exists from version 3 (its journal cannot be replayed by "
        f"this code): start a new store. To start afresh: move or delete {db} to start a new one "
        "(docs/store.md)\n"
    )
    assert "Starting a Ray head" not in done.stdout


def kill_session(sid: int, grace_s: float = 3.0) -> None:
    """Stop a test's own processes by session: SIGTERM, then SIGKILL to whatever is left after
    `grace_s` (a daemonised Ray's gcs_server is still there 25 s after a SIGTERM: a longer grace
    only delays the SIGKILL)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 20.0)):
        for pid in processes_in_session(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while processes_in_session(sid) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture
def bystander(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, list[int]]]:
    """Another user's Ray: `ray start --head` on its own ports, daemonised as Ray does it. Yields
    its session id and its processes; stopped by session at the end (never `ray stop`)."""
    temp = Path(tmp_path_factory.mktemp("rb", numbered=True))
    short = Path("/tmp") / f"n1v1-bystander-{os.getpid()}"  # Ray's socket paths must be short
    short.mkdir(exist_ok=True)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    started = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            f"--port={free_port()}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--temp-dir={short}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=(temp / "bystander.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    sid = started.pid
    try:
        assert started.wait(timeout=120) == 0, (temp / "bystander.log").read_text()[-2000:]
        pids = processes_in_session(sid)
        assert pids, "the bystander's Ray processes"
        yield sid, pids
    finally:
        kill_session(sid)
        shutil.rmtree(short, ignore_errors=True)


@pytest.mark.slow
def test_ctrl_c_stops_papers_own_ray_and_leaves_another_ray_running(
    tmp_path: Path, bystander: tuple[int, list[int]]
) -> None:
    bystander_sid, bystander_pids = bystander
    http_port = free_port()
    config = tiny_config(tmp_path, http_port)
    command = [
        str(BIN / "n1v1"),
        "paper",
        "--config",
        str(config),
        "--ray-port",
        str(free_port()),
        "--dashboard-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--num-cpus",
        "2",
        "--no-train",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("N1V1_")}
    read_token = "paper-reader-" + os.urandom(12).hex()
    env.update(
        RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", N1V1_API_READ_TOKEN=read_token
    )
    log = tmp_path / "paper.log"
    paper = subprocess.Popen(
        command,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so the test can Ctrl-C it like a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    run_file = tmp_path / "var" / RUN_FILE
    ray_session = None
    try:
        deadline = time.monotonic() + 300
        while not run_file.exists():
            assert paper.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "n1v1 paper did not get ready in 300 s"
            time.sleep(0.5)
        run = json.loads(run_file.read_text())
        ray_session = run["ray_session"]
        own = processes_in_session(ray_session)
        assert len(own) >= 3, "paper's Ray: gcs_server, raylet, dashboard, workers"
        # where `n1v1 observe` (make observe) finds this Ray's metrics targets
        assert run["metrics_port"] == int(command[command.index("--metrics-port") + 1])
        discovery = Path(run["ray_temp_dir"]) / "session_latest" / SERVICE_DISCOVERY_FILE
        assert discovery.is_file()

        token_file = tmp_path / "var" / "api_token"
        assert run["token_file"] == str(token_file)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        status = requests.get(
            f"http://127.0.0.1:{http_port}/api/v1/status",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        assert status["state"] == "running" and status["symbols"] == ["LTC/USD"]
        assert status["feed"]["after_replay"] == "synthetic"
        read = requests.get(
            f"http://127.0.0.1:{http_port}/api/v1/status",
            headers={"Authorization": f"Bearer {read_token}"},
            timeout=10,
        )
        assert read.status_code == 200  # the read-only token's hash reached the gateway

        # What paper started (not paper itself, which holds the token to print it): its Ray
        # head's session, `serve run`, and every worker and replica below them.
        started = sorted(set(descendants(paper.pid)) | set(processes_in_session(ray_session)))
        replicas = [pid for pid in started if "ServeReplica" in process_title(pid)]
        assert len(replicas) >= 3, [process_title(pid) for pid in started]  # Gateway, Engine, Model
        # Everything listens on loopback but Serve's inter-deployment gRPC server, which Ray 2.60
        # binds to [::] in each replica; Ray's token guards it.
        exposed = exposed_sockets(started)
        assert {s.pid for s in exposed} <= set(replicas), [str(s) for s in exposed]
        assert [serve_replica_call_status(s.port) for s in exposed] == ["UNAUTHENTICATED"] * len(
            exposed
        )
        assert processes_holding(started, [token, read_token]) == []
        # Ray's own token: owner-only, and its dashboard (serve deploy's way in) demands it.
        ray_token = Path(run["ray_token_file"])
        assert stat.S_IMODE(ray_token.stat().st_mode) == 0o600
        dashboard = f"http://127.0.0.1:{command[command.index('--dashboard-port') + 1]}"
        assert requests.get(f"{dashboard}/api/serve/applications/", timeout=10).status_code == 401
        authorized = {"Authorization": f"Bearer {ray_token.read_text().strip()}"}
        assert requests.get(
            f"{dashboard}/api/serve/applications/", headers=authorized, timeout=10
        ).ok
        logs = Path(run["ray_temp_dir"]) / "session_latest" / "logs"
        assert logs.is_dir() and files_holding(logs, [token, read_token]) == []

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"already running from this folder (pid {paper.pid}" in second.stderr
        assert f"dashboard http://127.0.0.1:{http_port}/" in second.stderr

        os.killpg(paper.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert paper.wait(timeout=180) == 0
    finally:
        if paper.poll() is None:
            os.killpg(paper.pid, signal.SIGKILL)
        if ray_session is not None and processes_in_session(ray_session):
            kill_session(ray_session)  # the test must not leave a cluster behind either way
            pytest.fail("paper's Ray outlived it (killed by the test)")

    output = log.read_text()
    assert "Aborted!" not in output
    stopping = output[output.index("Stopping N1V1 paper trading") :]
    assert "Traceback" not in stopping
    assert stopping.rstrip().endswith("Stopped: the Serve app and its Ray head are down.")
    assert not run_file.exists()
    # the bystander is untouched: every one of its processes still runs
    assert set(bystander_pids) <= set(processes_in_session(bystander_sid))
