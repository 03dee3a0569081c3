"""Every dashboard panel and every alert has data, checked with a real Prometheus scraping a real
Ray during a short paper session.

The test starts a private Ray head (`ray start --head --block` on free ports, stopped by PID, never
`ray stop`), with a metrics export port and free autoscaler/dashboard metrics ports. On it: the
Serve app (a two-symbol replay at 40 bars/s, with a registered tiny model in its ml_signal slot and
tight risk limits so that risk rules refuse entries), some API traffic including a prediction of
the wrong width (an inference error), and two training runs from this process (the driver): one
that trains and registers, one that fails. Debian's `prometheus` scrapes every target of Ray's
service-discovery file every second with the generated rule file loaded.

It then fails unless, through Prometheus' HTTP API (`/api/v1/query`, the instant query Grafana's
stat panels and the rule evaluator run):
- every metric of the catalogue is exported (but `n1v1_orders_rejected`: the simulated venue
  never rejects an order, so its panel and alert fall back to 0 over the orders submitted);
- every query of every panel of the N1V1 dashboards returns at least one series (with the Grafana
  variable `$Cluster` at its "All" value, `.*`);
- every alert's probes return at least one series. An alert's expression returns nothing while the
  alert does not fire, so each alert names its probes (`n1v1/monitoring/alerts.py`): the
  expressions it compares with its threshold, i.e. its expression with the final comparisons
  removed. A probe with no series means an alert on a metric, or a label value, that does not
  exist;
- Prometheus loaded every rule of the rule file and evaluates it without error;
- and the Ray dashboards shipped in kuberay/monitoring/dashboards/ray-<version>/ are the ones this
  Ray writes into its session directory.

This is the guard of the rule "a change that adds or renames a metric updates the dashboards,
the alerts and their tests in the same commit" (with tests/test_monitoring_static.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray
import requests
from monitoring_support import MONITORING, ray_pin, require_tool
from ray import serve
from test_ml_signal import register_tiny

from n1v1.cli.local_ray import HeadPorts, LocalRayHead, free_port
from n1v1.config import parse_settings
from n1v1.data import generate_bars
from n1v1.ml.spec import TrainSpec
from n1v1.ml.train import TrainingError, run_training
from n1v1.monitoring.alerts import ALERTS, GROUP
from n1v1.monitoring.catalog import METRICS
from n1v1.monitoring.dashboards import DASHBOARDS
from n1v1.monitoring.prometheus import LocalPrometheus, config, service_discovery_file
from n1v1.serve.app import build_app
from n1v1.serve.args import AppArgs

pytestmark = pytest.mark.slow

TOKEN = "monitoring-" + secrets.token_hex(12)
# The simulated venue never rejects an order and has no exchange to reconcile with; the live
# venue's gauges are scraped from `n1v1 live`'s endpoint in tests/test_live_cli.py.
NOT_IN_PAPER = {
    "n1v1_orders_rejected",
    "n1v1_venue_orders_in_flight",
    "n1v1_venue_orders_unknown",
    "n1v1_venue_reconciled",
}
LIVE_VENUE = NOT_IN_PAPER - {"n1v1_orders_rejected"}


def live_only(expr: str) -> bool:
    """A query on the live venue's gauges alone: empty on the paper app by design (their rules
    are promtool-tested, their export by `n1v1 live` in tests/test_live_cli.py)."""
    return any(f"ray_{name}" in expr for name in LIVE_VENUE)


RULES = MONITORING / "rules" / "n1v1-alerts.yaml"
TRAIN = {"epochs": 2, "batch_size": 256, "model": {"hidden": (8,)}, "seed": 3}
TRAIN_LABELS = {"horizon": 5, "fee": 0.0, "margin": 0.0}


class Clock:
    """Seconds spent in each phase, printed at the end (the whole test should stay under 2 min)."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.laps: list[str] = []

    def lap(self, what: str) -> None:
        now = time.monotonic()
        self.laps.append(f"{what} {now - self.last:.0f} s")
        self.last = now

    def __str__(self) -> str:
        return f"{time.monotonic() - self.start:.0f} s ({', '.join(self.laps)})"


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, ValueError, KeyError) as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")


def train_twice(tmp: Path, errors: list[BaseException]) -> None:
    """A run that trains and registers, then one that fails: the same run name with another seed
    is refused before any worker starts (the run's checkpoints were written for other data)."""
    try:
        data = tmp / "bars.csv"
        generate_bars(3000, seed=1).to_csv(data)
        settings = parse_settings(
            {"ml": {"model_root": str(tmp / "train_models"), "storage_path": str(tmp / "runs")}}
        )
        spec = TrainSpec(name="syn_mlp", data=str(data), labels=TRAIN_LABELS, **TRAIN)
        run_training(spec, settings, run_name="monitored")
        with pytest.raises(TrainingError, match="written for other data"):
            run_training(spec.model_copy(update={"seed": 4}), settings, run_name="monitored")
    except BaseException as exc:  # reported by the test's main thread
        errors.append(exc)


def app_args(tmp: Path, models: Path, tiny: str) -> AppArgs:
    return AppArgs.model_validate(
        {
            "store_url": f"sqlite:///{tmp / 'state' / 'n1v1.db'}",
            "model_root": str(models),
            "feed": {
                "kind": "replay",
                "datasets": ["coinbase_BTC-USD_1m", "coinbase_LTC-USD_1m"],
                "start": "2018-04-04 00:00",
                "bars_per_second": 40,
                "after_replay": "synthetic",
            },
            "strategies": [
                {"name": "ema_cross", "params": {"fast": 3, "slow": 8}},
                {"name": "rsi", "params": {"period": 5}},
                {
                    "name": "ml_signal",
                    "params": {"model": "tiny", "version": tiny, "shadow": "latest"},
                },
            ],
            # one position at a time over two symbols: the other symbol's entries are refused
            "risk": {"max_open_positions": 1},
            "api": {"max_replicas": 1, "rate_limit_per_s": 1000, "rate_burst": 1000},
            "model": {"max_replicas": 1},
        }
    )


def traffic(http: str, tiny: str) -> None:
    """Requests that answer 200, 401, 404 and 422, two predictions (one served, one with rows
    of the wrong width: counted as an inference error) and a parent order."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    api = f"{http}/api/v1"
    for path in ("/status", "/positions", "/orders?limit=5", "/risk"):
        assert requests.get(api + path, headers=auth, timeout=10).status_code == 200, path
    assert requests.get(f"{api}/status", timeout=10).status_code == 401
    assert requests.get(f"{api}/backtests/bt_missing", headers=auth, timeout=10).status_code == 404
    width = requests.get(f"{api}/models", headers=auth, timeout=10).json()
    (model,) = [m for m in width["models"] if m["name"] == "tiny"]
    n = model["versions"][0]["n_features"]
    body = {"model": "tiny", "version": tiny, "rows": [[0.1] * n, [0.2] * n]}
    assert requests.post(f"{api}/predict", json=body, headers=auth, timeout=30).status_code == 200
    body["rows"] = [[0.1] * (n + 1)]
    assert requests.post(f"{api}/predict", json=body, headers=auth, timeout=30).status_code == 422
    # a parent order of two one-minute slices: done (or ended) within seconds at 40 bars/s, so
    # the parent gauges and its shortfall have series
    parent = {"symbol": "BTC/USD", "side": "buy", "qty": 0.001, "duration": "2min"}
    parent["interval"] = "1min"
    answer = requests.post(f"{api}/algo-orders", json=parent, headers=auth, timeout=30)
    assert answer.status_code == 201, answer.text


def test_every_panel_and_alert_probe_returns_series_from_a_real_paper_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = require_tool("prometheus")
    clock = Clock()
    monkeypatch.setenv("N1V1_API_TOKEN", TOKEN)  # build_app reads it in this process
    http_port = free_port()
    ports = HeadPorts(free_port(), free_port(), free_port(), free_port(), free_port())
    env = dict(
        os.environ,
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.2",  # collect each epoch's report sooner
        AUTOSCALER_METRIC_PORT=str(free_port()),  # not 44217/44227: another Ray may hold them
        DASHBOARD_METRIC_PORT=str(free_port()),
        N1V1_API_TOKEN=TOKEN,
    )
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_bin is not None
    head = LocalRayHead(ray_bin, ports, num_cpus=2, env=env)
    prometheus = LocalPrometheus(binary, free_port(), tmp_path / "prometheus")
    models = tmp_path / "models"
    tiny = register_tiny(models)  # promoted (forced): the registry metrics have a promoted model
    errors: list[BaseException] = []
    try:
        head.start()
        clock.lap("ray head")
        sd_file = service_discovery_file(head.temp_dir)
        wait_for(sd_file.exists, 30, f"Ray's service-discovery file {sd_file}")
        prometheus.start(config(sd_file, [RULES], interval_s=1.0))
        since = time.time()
        clock.lap("prometheus")
        ray.init(address=head.address, log_to_driver=False)
        trainer = threading.Thread(target=train_twice, args=(tmp_path, errors), daemon=True)
        trainer.start()
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        serve.run(build_app(app_args(tmp_path, models, tiny)), name="n1v1", route_prefix="/")
        http = f"http://127.0.0.1:{http_port}"
        wait_for(lambda: requests.get(f"{http}/readyz", timeout=5).ok, 120, "the app to be ready")
        clock.lap("serve app")
        traffic(http, tiny)
        trainer.join(timeout=180)
        assert not trainer.is_alive(), "the training runs did not finish within 180 s"
        assert errors == [], errors
        clock.lap("training")

        exported = {m.name for m in METRICS} - NOT_IN_PAPER
        missing: set[str] = set()

        def all_exported() -> bool:
            """Every catalogue metric seen since Prometheus started (a training run's gauges
            live while it trains only)."""
            query = urllib.parse.urlencode({"start": since, "end": time.time()})
            found = set()
            for name in prometheus.get(f"/api/v1/label/__name__/values?{query}"):
                for suffix in ("_total", "_bucket", "_count", "_sum"):
                    name = name.removesuffix(suffix)
                found.add(name.removeprefix("ray_"))
            missing.clear()
            missing.update(exported - found)
            return not missing

        deadline = time.monotonic() + 60
        while not all_exported() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert missing == set(), "metrics Prometheus never scraped"
        time.sleep(3)  # a rate() needs two samples of the latest values: a few more scrapes
        clock.lap("scraped")

        empty = []
        for dashboard in DASHBOARDS:
            for panel in dashboard.panels():
                for target in panel.targets:
                    expr = target.expr.replace("$Cluster", ".*")
                    assert "$" not in expr, expr
                    if live_only(expr):
                        continue
                    if not prometheus.query_range(expr, since, time.time(), step_s=2):
                        empty.append(f"{dashboard.title} / {panel.title}: {target.expr}")
        for alert in ALERTS:
            for probe in alert.probes:
                if live_only(probe):
                    continue
                if not prometheus.query(probe):
                    empty.append(f"alert {alert.name}: {probe}")
        assert empty == [], "queries without data:\n" + "\n".join(empty)

        (group,) = [g for g in prometheus.get("/api/v1/rules")["groups"] if g["name"] == GROUP]
        assert [r["name"] for r in group["rules"]] == [a.name for a in ALERTS]
        assert [r for r in group["rules"] if r["health"] != "ok"] == []

        shipped = MONITORING / "dashboards" / f"ray-{ray_pin()}"
        written = head.temp_dir / "session_latest" / "metrics" / "grafana" / "dashboards"
        for copy in sorted(shipped.glob("*.json")):
            assert copy.read_text() == (written / copy.name).read_text(), copy.name
        clock.lap("checked")
    finally:
        prometheus.stop()
        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        head.stop()
        head.remove_temp_dir()
        print(f"monitoring end to end: {clock}")
