"""`n1v1 paper`: the main job. Starts a local Ray and runs `serve run serve_config.yaml` in paper
mode, after training the ML strategy's model through the same Train code when the registry lacks it.

It drives the real tools as subprocesses (`ray start`, `n1v1 train`, `serve run`), so what a user
sees here is exactly what they would type, and this module stays free of Ray imports.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from n1v1.cli.common import EXIT_ERROR, EXIT_OK

# The ML strategy's model is trained on bars *before* the replay window, so the paper session never
# trades on data its model has seen.
TRAIN_DATASET, TRAIN_END = "coinbase_BTC-USD_1m", "2018-04-03"


def add_paper_command(sub: Any) -> None:
    p = sub.add_parser(
        "paper", help="run the Serve app in paper mode on a local Ray (what `make run` does)"
    )
    p.add_argument("--config", type=Path, default=Path("serve_config.yaml"))
    p.add_argument("--ray-port", type=int, default=6380, help="GCS port (6379 is Redis's)")
    p.add_argument("--metrics-port", type=int, default=8080, help="Ray's Prometheus endpoint")
    p.add_argument("--no-train", action="store_true", help="fail instead of training a model")
    p.set_defaults(handler=cmd_paper)


def _app_args(config: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import yaml

    from n1v1.config import ConfigError
    from n1v1.serve.args import AppArgs

    if not config.is_file():
        raise ConfigError(f"{config}: Serve config not found")
    doc = yaml.safe_load(config.read_text())
    apps = [a for a in doc.get("applications", []) if a.get("name") == "n1v1"]
    if not apps:
        raise ConfigError(f"{config}: no application named n1v1")
    AppArgs.model_validate(apps[0].get("args") or {})
    return apps[0]["args"], doc.get("http_options") or {}


def _sqlite_dir(store_url: str) -> Path | None:
    if store_url.startswith("sqlite:///"):
        return Path(store_url.removeprefix("sqlite:///")).parent
    return None


def _ensure_models(args_doc: dict[str, Any], allow_train: bool) -> list[str]:
    """Train each ml_signal model the config names that the registry lacks (promoted only if it
    passes the gate) and say plainly which version each ml_signal slot trades and whether it
    passed the gate; returns those lines (`n1v1.cli.ml.ensure_slot_models`)."""
    from n1v1.cli.ml import ensure_slot_models

    return ensure_slot_models(args_doc, allow_train, dataset=TRAIN_DATASET, end=TRAIN_END)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


def cmd_paper(args: argparse.Namespace) -> int:
    app_args, http = _app_args(args.config)
    db_dir = _sqlite_dir(app_args.get("store_url", "sqlite:///n1v1.db"))
    if db_dir is not None:
        db_dir.mkdir(parents=True, exist_ok=True)
    _ensure_models(app_args, allow_train=not args.no_train)

    env = dict(
        os.environ,
        RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"),
        RAY_USAGE_STATS_ENABLED="0",
    )
    token = env.get("N1V1_API_TOKEN") or secrets.token_urlsafe(24)
    env["N1V1_API_TOKEN"] = token  # the replicas (started by `ray start`) read it from here
    bin_dir = Path(sys.executable).parent
    ray_bin, serve_bin = (
        shutil.which("ray", path=str(bin_dir)),
        shutil.which("serve", path=str(bin_dir)),
    )
    if ray_bin is None or serve_bin is None:
        print("n1v1: error: `ray`/`serve` not found next to this Python", file=sys.stderr)
        return EXIT_ERROR
    address = f"127.0.0.1:{args.ray_port}"
    subprocess.run(
        [
            ray_bin,
            "start",
            "--head",
            f"--port={args.ray_port}",
            "--num-cpus=4",
            "--dashboard-host=127.0.0.1",
            f"--metrics-export-port={args.metrics_port}",
            "--disable-usage-stats",
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    serve = subprocess.Popen([serve_bin, "run", str(args.config), "--address", address], env=env)
    try:
        host, port = http.get("host", "127.0.0.1"), http.get("port", 8000)
        base = f"http://{host}:{port}"
        if not _wait_ready(f"{base}/readyz", serve, timeout=300):
            print(
                "n1v1: error: the Serve app did not become ready; see the log above",
                file=sys.stderr,
            )
            return EXIT_ERROR
        print(
            "\nN1V1 paper trading is running (Ctrl-C stops it).\n"
            f"  Dashboard: {base}/#token={token}\n"
            f"  API token: {token}\n"
            f"  API docs:  {base}/docs\n"
            f"  Try:       curl -H 'Authorization: Bearer {token}' {base}/api/v1/status\n"
            f"  Metrics:   http://127.0.0.1:{args.metrics_port}/metrics (Prometheus)\n"
            f"  Ray:       RAY_ADDRESS={address}; serve status; serve deploy {args.config}\n",
            flush=True,
        )
        return EXIT_OK if serve.wait() == 0 else EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGINT)
            try:
                serve.wait(timeout=30)
            except subprocess.TimeoutExpired:
                serve.kill()
        subprocess.run([ray_bin, "stop"], env=env, stdout=subprocess.DEVNULL, check=False)
