"""A local Prometheus over a local Ray: its configuration, its process and its HTTP query API.

Used by `n1v1 observe` (`make observe`) and by tests/test_monitoring_prometheus.py. Ray writes a
Prometheus file-based service-discovery file into its session directory
(`<temp dir>/session_latest/prom_metrics_service_discovery.json`, refreshed as nodes come and go)
listing every node's metrics export port and the autoscaler's and dashboard's metrics ports; the
scrape configuration points at it, so every node of the cluster is scraped, as Ray's own generated
`metrics/prometheus/prometheus.yml` does. The alert rules are loaded from the rule file generated
by `python -m n1v1.monitoring.generate`.

Debian's `prometheus` package provides the binary; nothing here needs Ray.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

SERVICE_DISCOVERY_FILE = "prom_metrics_service_discovery.json"


class PrometheusError(RuntimeError):
    """Prometheus did not start, or a query failed; the message says why."""


def service_discovery_file(ray_temp_dir: Path) -> Path:
    """Where the Ray head started with `--temp-dir ray_temp_dir` lists its metrics targets."""
    return ray_temp_dir / "session_latest" / SERVICE_DISCOVERY_FILE


def config(sd_file: Path, rule_files: list[Path], interval_s: float = 15.0) -> dict[str, Any]:
    """prometheus.yml: scrape every target of Ray's service-discovery file every `interval_s`
    and evaluate the rules as often."""
    interval = f"{interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "ray",
                "scrape_interval": interval,
                "file_sd_configs": [{"files": [str(sd_file)], "refresh_interval": interval}],
            }
        ],
    }


class LocalPrometheus:
    """`prometheus` on 127.0.0.1:`port` with its data and config under `work_dir`."""

    def __init__(self, binary: str, port: int, work_dir: Path) -> None:
        self.binary, self.port, self.work_dir = binary, port, work_dir
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = work_dir / "prometheus.log"

    def start(self, settings: dict[str, Any], timeout: float = 30.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.work_dir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(settings, sort_keys=False))
        command = [
            self.binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.work_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise PrometheusError(
                    f"prometheus exited with status {self.process.returncode}: "
                    f"{self.log_tail()} (log: {self.log_path})"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus not ready within {timeout:.0f} s")
            time.sleep(0.2)

    def log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar) of `expr` now; PrometheusError on a bad query."""
        data = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Any]:
        """The range query Grafana's panels run: every series `expr` had within [start, end]."""
        params = {"query": expr, "start": start, "end": end, "step": f"{step_s:g}s"}
        return list(self.get("/api/v1/query_range?" + urllib.parse.urlencode(params))["result"])

    def get(self, path: str) -> Any:
        """The `data` of an API answer; PrometheusError on an error status."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"{path}: {exc.read().decode(errors='replace')}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{path}: {body}")
        return body["data"]

    def stop(self, timeout: float = 20.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
