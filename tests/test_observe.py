"""`n1v1 observe` (`make observe`): Prometheus over the Ray that `make run` recorded in
var/paper.json, with the alert rules loaded, until Ctrl-C; and the errors that say what is
missing before anything starts.

The end-to-end test starts a private Ray head (free ports, stopped by PID, never `ray stop`),
writes the run file the way `n1v1 paper` does, runs `n1v1 observe` as a user would, and checks
through Prometheus' API that it scrapes that Ray's metrics export port and loaded every rule; then
Ctrl-C stops Prometheus.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from monitoring_support import ROOT, require_tool
from test_paper import tiny_config

from n1v1.cli.local_ray import HeadPorts, LocalRayHead, free_port, port_in_use
from n1v1.cli.paper import RUN_FILE
from n1v1.monitoring.alerts import ALERTS, GROUP

BIN = Path(sys.executable).parent


def observe(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "n1v1"), "observe", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_without_a_running_make_run_it_says_so(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, free_port())
    out = observe(config)
    assert out.returncode == 2
    assert out.stderr == (
        f"n1v1: error: no `make run` is running from this folder ({tmp_path / 'var' / RUN_FILE} "
        "is missing): start it first, or name another Ray with --ray-temp-dir\n"
    )


def test_a_busy_port_and_a_missing_ray_are_named_before_anything_starts(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, free_port())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = observe(config, "--ray-temp-dir", str(tmp_path / "no-ray"), "--port", str(port))
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    sd = tmp_path / "no-ray" / "session_latest" / "prom_metrics_service_discovery.json"
    assert lines[0] == (
        f"n1v1: error: {sd} not found: is that Ray running, with a metrics export port?"
    )
    assert lines[-1] == f"n1v1: error: port {port} is in use (a Prometheus service?): choose --port"


@pytest.mark.slow
def test_observe_scrapes_the_ray_of_make_run_with_the_rules_until_ctrl_c(tmp_path: Path) -> None:
    require_tool("prometheus")
    env = {k: v for k, v in os.environ.items() if not k.startswith("N1V1_")}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        AUTOSCALER_METRIC_PORT=str(free_port()),  # not 44217/44227: another Ray may hold them
        DASHBOARD_METRIC_PORT=str(free_port()),
    )
    ray_bin = shutil.which("ray", path=str(BIN))
    assert ray_bin is not None
    ports = HeadPorts(free_port(), free_port(), free_port(), free_port(), free_port())
    head = LocalRayHead(ray_bin, ports, num_cpus=1, env=env)
    config = tiny_config(tmp_path, free_port())
    port = free_port()
    process: subprocess.Popen[str] | None = None
    try:
        head.start()
        state = tmp_path / "var"
        state.mkdir(exist_ok=True)
        run = {  # what `n1v1 paper` records (n1v1/cli/paper.py)
            "pid": os.getpid(),
            "ray": head.address,
            "ray_session": head.session_id,
            "ray_temp_dir": str(head.temp_dir),
            "metrics_port": ports.metrics,
        }
        (state / RUN_FILE).write_text(json.dumps(run))
        process = subprocess.Popen(
            [str(BIN / "n1v1"), "observe", "--config", str(config), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: the test presses Ctrl-C like a tty
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        assert banner.startswith(f"Prometheus: {url} (alerts {url}/alerts"), banner
        assert "Ctrl-C stops it." in banner
        assert (state / "prometheus" / "data").is_dir()

        def scraped() -> bool:
            targets = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]
            up = {t["scrapeUrl"] for t in targets["activeTargets"] if t["health"] == "up"}
            return any(f":{ports.metrics}/metrics" in u for u in up)

        deadline = time.monotonic() + 60
        while not scraped():
            assert time.monotonic() < deadline, "Prometheus never scraped the Ray head"
            time.sleep(0.5)
        groups = requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        (group,) = [g for g in groups if g["name"] == GROUP]
        assert [r["name"] for r in group["rules"]] == [a.name for a in ALERTS]

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        rest, _ = process.communicate(timeout=30)
        assert process.returncode == 0, rest
        assert rest.strip() == "Stopping Prometheus ..."
        assert not port_in_use(port)  # Prometheus is gone with it
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        head.stop()
        head.remove_temp_dir()
