"""The real Ray Serve application end to end on a local Ray: HTTP against the gateway, the engine,
the model server, backtest tasks and Ray's Prometheus endpoint, as an operator would meet them.

One Ray cluster for the module (starting Ray and Serve costs tens of seconds), three applications:

- "n1v1" is deployed declaratively with the `serve deploy` CLI (through the dashboard) from
  serve_config.yaml with this module's paths and ports, the way an operator deploys it and then
  changes its `user_config`: a re-deploy that changes only that reaches `Engine.reconfigure` on the
  running replica, with no restart.
- "kill" is built in this process with `build_app(AppArgs(...))` and started with `serve.run`, over
  its own store. Its engine stands by behind a lease this module holds until the kill -9 test lets
  it go, so its feed starts exactly when that test is ready to interrupt it.
- "promo" likewise, over a store and a model registry of its own, for the promotion test; its
  replicas start with the others', and its engine stands by until that test lets it go.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pytest
import ray
import requests
import yaml
from dashboard_api import free_port
from ray import serve
from ray.util.state import list_actors
from test_ml_signal import BARS, FEATURES, register_tiny

from n1v1.backtest.runner import run_backtest
from n1v1.config import Settings
from n1v1.data.market import load_market
from n1v1.live.config import LiveConfig
from n1v1.live.session import TradingSession
from n1v1.ml.features import build_features
from n1v1.ml.inference import load_model
from n1v1.ml.models import ModelSpec, build_model
from n1v1.ml.registry import ModelRegistry
from n1v1.ml.registry_io import SCALER_FILE, read_json
from n1v1.serve.app import build_app
from n1v1.serve.args import AppArgs
from n1v1.serve.engine import make_feed
from n1v1.serve.schemas import BacktestBody
from n1v1.store import Lease, StoreReader, acquire, create_store, release
from n1v1.store.journal import DEFAULT_RESOURCE
from n1v1.strategies.registry import create_strategy

pytestmark = pytest.mark.slow

T = TypeVar("T")
CONFIG = Path(__file__).resolve().parents[1] / "serve_config.yaml"
TOKEN = "e2e-admin-" + secrets.token_hex(12)
READ_TOKEN = "e2e-reader-" + secrets.token_hex(12)
MAIN, KILL = "n1v1", "kill"
DATASETS = ["coinbase_BTC-USD_1m", "coinbase_LTC-USD_1m"]  # one USD account
# A request that shares a batched forward pass with others is computed in float32 among other rows,
# and the rounding of a float32 matmul depends on the batch's size: the same row can differ from a
# pass of its own by a few float32 ulps (~6e-8 seen). Alone in its pass it matches to 1e-9.
BATCHED_ATOL = 1e-6
REFRESH_S = 1.0  # how often a model replica looks for a newly promoted version
# The main app's feed outlasts the module (~3,900 steps at 20 a second), so it is always mid-run.
MAIN_FEED = {"kind": "replay", "datasets": DATASETS, "start": "2018-04-04", "bars_per_second": 20}
# The kill -9 app's feed: 481 steps, fast, so the restarted replica finishes it within the test.
KILL_FEED = {
    "kind": "replay",
    "datasets": DATASETS,
    "start": "2018-04-04 00:00",
    "end": "2018-04-04 08:00",
    "bars_per_second": 100,
}


@dataclass
class Cluster:
    http: str  # the Serve proxy
    metrics: str  # Ray's Prometheus endpoint
    dashboard: str
    root: Path  # the model registry both apps use
    tiny: str  # the tiny model's first version, which the ml_signal strategies pin
    config_file: Path  # the Serve config the main app was deployed from
    main: AppArgs
    kill: AppArgs
    blocker: Lease  # keeps the kill app's engine on standby until the kill test releases it
    promo: AppArgs
    promo_first: str  # the version of "tiny" its registry starts with, promoted
    promo_blocker: Lease  # the same for the promo app's engine and the promotion test


# -- helpers ---------------------------------------------------------------------------------------
def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (requests.RequestException, ValueError, KeyError) as exc:
            last = exc  # a replica restarting, or a snapshot not complete yet
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")
        time.sleep(0.2)


def call(
    cluster: Cluster,
    method: str,
    path: str,
    token: str | None = TOKEN,
    timeout: float = 30,
    **kwargs: Any,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, cluster.http + path, headers=headers, timeout=timeout, **kwargs)


def status(cluster: Cluster, prefix: str = "") -> dict[str, Any]:
    response = call(cluster, "GET", f"{prefix}/api/v1/status", timeout=5)
    response.raise_for_status()
    return response.json()


def serve_config(args: AppArgs, port: int, user_config: dict[str, Any]) -> dict[str, Any]:
    """serve_config.yaml with this module's store, models, feed, ports and Engine user_config."""
    doc = yaml.safe_load(CONFIG.read_text())
    doc["http_options"] = {"host": "127.0.0.1", "port": port}
    (app,) = [a for a in doc["applications"] if a["name"] == MAIN]
    ours = args.model_dump(mode="json")
    keys = ("store_url", "model_root", "upload_dir", "feed", "strategies", "engine", "api", "model")
    for key in keys:
        app["args"][key] = ours[key]
    (engine,) = [d for d in app["deployments"] if d["name"] == "Engine"]
    engine["user_config"] = user_config
    return doc


def serve_deploy(cluster: Cluster, user_config: dict[str, Any]) -> None:
    """What an operator runs: `serve deploy <config> --address <dashboard>`."""
    port = int(cluster.http.rsplit(":", 1)[1])
    cluster.config_file.write_text(yaml.safe_dump(serve_config(cluster.main, port, user_config)))
    serve_cli = Path(sys.executable).with_name("serve")
    done = subprocess.run(
        [str(serve_cli), "deploy", str(cluster.config_file), "--address", cluster.dashboard],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"serve deploy failed:\n{done.stdout}\n{done.stderr}"


def feature_rows(n: int, start: int = 0) -> list[list[float]]:
    raw = build_features(BARS, FEATURES).to_numpy()
    finite = raw[np.isfinite(raw).all(axis=1)]
    return finite[start : start + n].tolist()


def expected_probabilities(root: Path, version: str, rows: list[list[float]]) -> np.ndarray:
    return load_model(ModelRegistry(root), "tiny", version).predict_proba(np.asarray(rows))


def register_reseeded(root: Path, like: str, seed: int) -> str:
    """Another "tiny" version with other weights (so its probabilities differ); not promoted."""
    registry = ModelRegistry(root)
    card = registry.card("tiny", like)
    scaler = read_json(registry.files("tiny", like) / SCALER_FILE)
    spec = ModelSpec.model_validate(card["model_spec"])
    net = build_model(spec, card["n_features"], card["n_classes"], seed=seed)
    return registry.register("tiny", state_dict=net.state_dict(), scaler=scaler, card=card)


def predict(cluster: Cluster, rows: list[list[float]], model: str = "tiny") -> requests.Response:
    return call(cluster, "POST", "/api/v1/predict", json={"model": model, "rows": rows})


# label values may hold braces themselves (route="/api/v1/backtests/{job_id}")
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(cluster: Cluster) -> list[tuple[str, dict[str, str], float]]:
    """Ray's /metrics as (name without Ray's `ray_` prefix, labels, value) samples."""
    text = requests.get(cluster.metrics, timeout=10).text
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        name = match["name"].removeprefix("ray_")
        labels = dict(_LABEL.findall(match["labels"] or ""))
        out.append((name, labels, float(match["value"])))
    return out


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum over every series (one per worker process) of `name` with these labels."""
    return sum(
        v
        for n, ls, v in samples
        if n == name and all(ls.get(k) == want for k, want in labels.items())
    )


# -- the cluster -----------------------------------------------------------------------------------
PROMO = "promo"


def promo_args(tmp: Path) -> AppArgs:
    """The promotion test's app: ml_signal follows the promoted version of its own registry."""
    return AppArgs.model_validate(
        {
            "store_url": f"sqlite:///{tmp / 'promo.db'}",
            "model_root": str(tmp / "models"),
            "feed": {**KILL_FEED, "end": "2018-04-04 16:00", "bars_per_second": 60},
            "strategies": [
                {"name": "ema_cross", "params": {"fast": 5, "slow": 20}},
                # a low threshold, so the slot's answers move its target and it trades
                {"name": "ml_signal", "id": "ml", "params": {"model": "tiny", "threshold": 0.45}},
            ],
            "engine": {"lease_ttl_s": 3},
            "api": {"max_replicas": 1},
            "model": {"max_replicas": 1, "refresh_s": REFRESH_S},
        }
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("serve_app")
    root = tmp / "models"
    tiny = register_tiny(root)
    promo = promo_args(tmp_path_factory.mktemp("promo"))
    promo_first = register_tiny(Path(promo.model_root))
    strategies = [
        {"name": "ema_cross", "params": {"fast": 12, "slow": 48}},
        {"name": "rsi", "params": {"period": 14}},
        {"name": "ml_signal", "params": {"model": "tiny", "version": tiny}},
    ]
    main = AppArgs.model_validate(
        {
            "store_url": f"sqlite:///{tmp / 'main.db'}",
            "model_root": str(root),
            "upload_dir": str(tmp / "uploads"),  # made by the Gateway
            "feed": MAIN_FEED,
            "strategies": strategies,
            "engine": {"lease_ttl_s": 6},
            "api": {"rate_limit_per_s": 1000, "rate_burst": 1000},
            "model": {"refresh_s": REFRESH_S},
        }
    )
    kill = AppArgs.model_validate(
        {
            "store_url": f"sqlite:///{tmp / 'kill.db'}",
            "model_root": str(root),
            "feed": KILL_FEED,
            "strategies": [
                {"name": "ema_cross", "params": {"fast": 5, "slow": 20}},
                {"name": "rsi", "params": {"period": 14}},
                {"name": "ml_signal", "params": {"model": "tiny", "version": tiny}},
            ],
            "engine": {"lease_ttl_s": 3},
            "api": {"max_replicas": 1},
            "model": {"max_replicas": 1},
        }
    )
    http_port, dashboard_port, metrics_port = free_port(), free_port(), free_port()
    # Set before Ray starts: its raylet passes them to every worker (the declarative build of the
    # main app runs in one), and build_app reads them in this process for the kill app.
    env = {
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "N1V1_API_TOKEN": TOKEN,
        "N1V1_API_READ_TOKEN": READ_TOKEN,
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        ray.init(
            address="local",  # a cluster of our own, never one another process started
            num_cpus=4,
            include_dashboard=True,  # `serve deploy` and the state API go through it
            dashboard_host="127.0.0.1",
            dashboard_port=dashboard_port,
            _metrics_export_port=metrics_port,
            _system_config={"metrics_report_interval_ms": 1000},  # export every second
            log_to_driver=False,
        )
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": http_port})
            blocker = acquire(create_store(kill.store_url), DEFAULT_RESOURCE, "e2e-blocker", 3600)
            promo_blocker = acquire(
                create_store(promo.store_url), DEFAULT_RESOURCE, "e2e-blocker", 3600
            )
            state = Cluster(
                http=f"http://127.0.0.1:{http_port}",
                metrics=f"http://127.0.0.1:{metrics_port}/metrics",
                dashboard=f"http://127.0.0.1:{dashboard_port}",
                root=root,
                tiny=tiny,
                config_file=tmp / "serve_config.yaml",
                main=main,
                kill=kill,
                blocker=blocker,
                promo=promo,
                promo_first=promo_first,
                promo_blocker=promo_blocker,
            )
            file_user_config = engine_user_config(yaml.safe_load(CONFIG.read_text()))
            serve_deploy(state, file_user_config)  # returns once the controller has it
            serve.run_many(  # meanwhile "n1v1"
                [
                    serve.RunTarget(build_app(kill), name=KILL, route_prefix=f"/{KILL}"),
                    serve.RunTarget(build_app(promo), name=PROMO, route_prefix=f"/{PROMO}"),
                ]
            )
            wait_for(
                lambda: call(state, "GET", "/readyz", token=None, timeout=5).status_code == 200,
                180,
                "the main app to be ready",
            )
            yield state
        finally:
            # Serve goes with the Ray of our own: serve.shutdown() would first drain every
            # replica gracefully, seconds that check nothing here
            ray.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def engine_user_config(doc: dict[str, Any]) -> dict[str, Any]:
    (app,) = [a for a in doc["applications"] if a["name"] == MAIN]
    (engine,) = [d for d in app["deployments"] if d["name"] == "Engine"]
    return engine["user_config"]


# -- health, auth, status --------------------------------------------------------------------------
def test_healthz_and_readyz_report_every_part_up(cluster: Cluster) -> None:
    health = call(cluster, "GET", "/healthz", token=None)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = call(cluster, "GET", "/readyz", token=None)
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"store": True, "engine": True, "model": True}}


def test_status_without_a_token_is_401_in_the_error_format(cluster: Cluster) -> None:
    for token in (None, "not-the-token-at-all"):
        response = call(cluster, "GET", "/api/v1/status", token=token)
        assert response.status_code == 401
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
        assert body["error"]["code"] == "unauthorized"


def test_status_shows_the_engine_running_and_stepping(cluster: Cluster) -> None:
    first = status(cluster)
    assert first["state"] == "running" and first["symbols"] == ["BTC/USD", "LTC/USD"]
    later = wait_for(
        lambda: (s := status(cluster))["step"] > first["step"] and s, 20, "the step to advance"
    )
    assert later["lease"]["holder"] == first["lease"]["holder"] == first["holder"]


def test_read_token_reads_but_may_not_act(cluster: Cluster) -> None:
    assert call(cluster, "GET", "/api/v1/status", token=READ_TOKEN).json()["state"] == "running"
    refused = call(cluster, "POST", "/api/v1/pause", token=READ_TOKEN, json={"reason": "no"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert status(cluster)["paused"] is False


# -- predictions -----------------------------------------------------------------------------------
def test_predict_matches_the_model_loaded_in_process(cluster: Cluster) -> None:
    rows = feature_rows(20)
    response = predict(cluster, rows)
    assert response.status_code == 200, response.text
    body = response.json()
    promoted = ModelRegistry(cluster.root).promoted_version("tiny")
    assert (body["model"], body["version"]) == ("tiny", promoted)
    np.testing.assert_allclose(
        np.asarray(body["probabilities"], dtype=np.float64),
        expected_probabilities(cluster.root, promoted, rows),
        rtol=0,
        atol=1e-9,
    )


def test_predict_with_a_short_row_is_422_naming_the_row(cluster: Cluster) -> None:
    rows = feature_rows(3)
    rows[1] = rows[1][:-1]
    response = predict(cluster, rows)
    assert response.status_code == 422
    error = response.json()["error"]
    assert [f["field"] for f in error["details"]["fields"]] == ["body.rows.1"]
    assert "rows.1" in error["message"]


def test_predict_with_an_unknown_model_is_404(cluster: Cluster) -> None:
    response = predict(cluster, feature_rows(2), model="no_such_model")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "no_such_model" in response.json()["error"]["message"]


def test_concurrent_predictions_all_succeed_and_match(cluster: Cluster) -> None:
    version = ModelRegistry(cluster.root).promoted_version("tiny")
    assert version is not None
    requests_rows = [feature_rows(1 + i % 4, start=i) for i in range(32)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(lambda rows: predict(cluster, rows), requests_rows))
    assert [r.status_code for r in responses] == [200] * 32
    for rows, response in zip(requests_rows, responses, strict=True):
        body = response.json()
        assert body["version"] == version
        np.testing.assert_allclose(
            np.asarray(body["probabilities"], dtype=np.float64),
            expected_probabilities(cluster.root, version, rows),
            rtol=0,
            atol=BATCHED_ATOL,
        )


def test_models_lists_tiny_with_its_promoted_version(cluster: Cluster) -> None:
    response = call(cluster, "GET", "/api/v1/models")
    assert response.status_code == 200
    (tiny,) = [m for m in response.json()["models"] if m["name"] == "tiny"]
    registry = ModelRegistry(cluster.root)
    assert tiny["promoted"] == registry.promoted_version("tiny") == cluster.tiny
    assert [v["version"] for v in tiny["versions"]] == [
        v["version"] for v in registry.list_versions("tiny")
    ]


# -- backtests -------------------------------------------------------------------------------------
def test_backtest_job_matches_run_backtest_in_process(cluster: Cluster) -> None:
    submitted = call(
        cluster,
        "POST",
        "/api/v1/backtests",
        json={"dataset": "coinbase_BTC-USD_1d", "strategy": "sma_cross"},
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]

    def finished() -> dict[str, Any] | None:
        job = call(cluster, "GET", f"/api/v1/backtests/{job_id}").json()
        return job if job["status"] in ("done", "failed") else None

    job = wait_for(finished, 120, f"backtest {job_id} to finish")
    assert job["status"] == "done", job.get("error")
    # The settings the job builds from the request's defaults (n1v1/serve/backtests.py).
    request = BacktestBody(dataset="coinbase_BTC-USD_1d", strategy="sma_cross").model_dump()
    settings = Settings.model_validate(
        {
            "backtest": {"cash": request["cash"]},
            "execution": {
                "maker_fee": request["fee"],
                "taker_fee": request["fee"],
                "slippage_bps": request["slippage_bps"],
            },
            "risk": {"stop_loss_pct": request["stop_loss_pct"]},
        }
    )
    local = run_backtest(
        load_market("coinbase_BTC-USD_1d"), create_strategy("sma_cross", {}), settings
    )
    assert job["result"]["metrics"] == local.metrics
    assert len(job["result"]["trades"]) == len(local.trades) > 0
    report = call(cluster, "GET", f"/api/v1/backtests/{job_id}/report")
    assert report.status_code == 200 and "attachment" in report.headers["content-disposition"]
    assert f"(backtest {job_id})" in report.text
    # the same bars as a file in the upload directory, run by a Ray task that reads it there
    uploads = Path(cluster.main.upload_dir or "")
    assert uploads.is_dir()  # the Gateway made it at start
    sample = Path(__file__).resolve().parents[1] / "n1v1/data/samples/coinbase_BTC-USD_1d.csv"
    shutil.copy(sample, uploads / sample.name)  # its name gives the symbol, as the dataset's
    body = {"file": sample.name, "strategy": "sma_cross"}
    submitted = call(cluster, "POST", "/api/v1/backtests", json=body)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    job = wait_for(finished, 120, f"backtest {job_id} of an uploaded file to finish")
    assert job["status"] == "done", job.get("error")
    assert job["result"]["metrics"] == local.metrics  # the same bars, the same result


def test_backtest_of_an_unknown_dataset_is_422_naming_it(cluster: Cluster) -> None:
    response = call(
        cluster, "POST", "/api/v1/backtests", json={"dataset": "nope_1d", "strategy": "sma_cross"}
    )
    assert response.status_code == 422
    fields = [f["field"] for f in response.json()["error"]["details"]["fields"]]
    assert fields == ["body.dataset"]


# -- metrics ---------------------------------------------------------------------------------------
def test_metrics_reach_rays_prometheus_endpoint_and_move(cluster: Cluster) -> None:
    assert predict(cluster, feature_rows(4)).status_code == 200  # at least one inference

    def complete() -> list[tuple[str, dict[str, str], float]] | None:
        samples = scrape(cluster)
        routes = {ls.get("route") for n, ls, _ in samples if n == "n1v1_api_requests_total"}
        present = (
            total(samples, "n1v1_orders_submitted_total") > 0
            and total(samples, "n1v1_decision_latency_seconds_count") > 0
            and any(
                n == "n1v1_decision_latency_seconds_bucket" and "le" in ls for n, ls, _ in samples
            )
            and total(samples, "n1v1_equity") > 0
            and {"/api/v1/status", "/api/v1/predict"} <= routes
            and total(samples, "n1v1_inference_latency_seconds_count", model="tiny") > 0
            and total(samples, "n1v1_engine_state", state="running") >= 1  # the main app's
        )
        return samples if present else None

    first = wait_for(complete, 60, "every n1v1 metric on Ray's /metrics")
    before = total(first, "n1v1_bars_processed_total")
    latency_before = total(first, "n1v1_decision_latency_seconds_count")

    def moved() -> bool:
        # both, in one scrape or a later one: Ray exports a replica's metrics on its own clock,
        # so one export can fall between a step's counter and its latency sample (seen once)
        samples = scrape(cluster)
        return (
            total(samples, "n1v1_bars_processed_total") > before
            and total(samples, "n1v1_decision_latency_seconds_count") > latency_before
        )

    wait_for(moved, 60, "n1v1_bars_processed and the decision latency count to rise")


# -- live reconfiguration --------------------------------------------------------------------------
def test_redeploy_with_new_user_config_reconfigures_without_restart(cluster: Cluster) -> None:
    original = engine_user_config(yaml.safe_load(CONFIG.read_text()))
    applied = LiveConfig().merged_with(original).model_dump()
    before = wait_for(
        lambda: (s := status(cluster))["live_config"] == applied and s,
        30,
        "serve_config.yaml's user_config to be applied",
    )
    changed = {
        "paused": False,
        "risk": {"max_drawdown": 0.25, "max_open_positions": 2},
        "strategies": {"ema_cross": {"fast": 8}, "rsi": {"period": 10}},
    }
    serve_deploy(cluster, changed)
    wanted = LiveConfig().merged_with(changed).model_dump()
    seen_steps: list[int] = []

    def reconfigured() -> dict[str, Any] | None:
        snap = status(cluster)
        seen_steps.append(snap["step"])
        return snap if snap["live_config"] == wanted else None

    after = wait_for(reconfigured, 60, "the new user_config to reach the engine")
    params = {s["id"]: s["params"] for s in after["strategies"]}
    assert params["ema_cross"] == {"fast": 8, "slow": 48}
    assert params["rsi"] == {"period": 10}
    limits = call(cluster, "GET", "/api/v1/risk").json()["limits"]
    assert (limits["max_drawdown"], limits["max_open_positions"]) == (0.25, 2)
    # the same replica and session: same holder, same lease token, no rebuild from step 0
    assert after["holder"] == before["holder"]
    assert after["lease"]["token"] == before["lease"]["token"]
    assert min(seen_steps) >= before["step"]
    wait_for(lambda: status(cluster)["step"] > after["step"], 20, "the step to keep advancing")


# -- the lease -------------------------------------------------------------------------------------
def test_second_engine_on_the_same_store_stands_by(cluster: Cluster) -> None:
    serving = status(cluster)
    started = pd.Timestamp.now(tz="UTC")
    args = cluster.main
    second = TradingSession(
        args.settings(),
        args.strategies,
        make_feed(args),
        create_store(args.store_url),
        window=args.engine.window,
        lease_ttl=args.engine.lease_ttl_s,
    )
    second.start()
    try:
        wait_for(lambda: second.state == "standby", 20, "the second session to stand by")
        holder = serving["lease"]["holder"]
        match = re.search(rf"held by {re.escape(repr(holder))} until (\S+) ", second.failure)
        assert match is not None, second.failure
        assert pd.Timestamp(match[1]) > started  # a live lease, renewed by the Serve engine
        time.sleep(2 * args.engine.lease_ttl_s / 3)  # past a renewal: still standing by
        assert second.state == "standby" and second.steps_done == 0
        still = status(cluster)
        assert (still["holder"], still["lease"]["token"]) == (holder, serving["lease"]["token"])
        assert still["step"] > serving["step"]
    finally:
        second.stop()
    assert second.state == "stopped"


# -- model promotion while serving -----------------------------------------------------------------
def test_promotion_swaps_the_served_version_without_dropping_requests(cluster: Cluster) -> None:
    registry = ModelRegistry(cluster.root)
    old = registry.promoted_version("tiny")
    assert old is not None
    new = register_reseeded(cluster.root, old, seed=2)
    rows = feature_rows(6)
    expected = {v: expected_probabilities(cluster.root, v, rows) for v in (old, new)}
    assert not np.allclose(expected[old], expected[new])  # the versions are told apart
    results: list[tuple[int, dict[str, Any] | str]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            response = predict(cluster, rows)
            ok = response.status_code == 200
            results.append((response.status_code, response.json() if ok else response.text))

    with ThreadPoolExecutor(max_workers=6) as pool:
        clients = [pool.submit(client) for _ in range(6)]
        wait_for(lambda: len(results) >= 12, 30, "requests before the promotion")
        registry.promote("tiny", new, force=True)
        promoted_at = len(results)

        def all_new() -> bool:
            recent = results[-16:]
            done = len(results) - promoted_at >= 16
            return done and all(isinstance(b, dict) and b["version"] == new for _, b in recent)

        wait_for(all_new, REFRESH_S + 15, f"every replica to serve {new}")
        stop.set()
        for c in clients:
            c.result()
    assert {code for code, _ in results} == {200}, [b for c, b in results if c != 200][:3]
    for _, body in results:
        assert isinstance(body, dict) and body["version"] in (old, new)
        np.testing.assert_allclose(
            np.asarray(body["probabilities"], dtype=np.float64),
            expected[body["version"]],
            rtol=0,
            atol=BATCHED_ATOL,
        )
    assert any(b["version"] == old for _, b in results[:promoted_at])  # type: ignore[index]


def test_predict_for_a_named_version_serves_that_version_beside_the_promoted_one(
    cluster: Cluster,
) -> None:
    registry = ModelRegistry(cluster.root)
    promoted = registry.promoted_version("tiny")
    assert promoted is not None
    pinned = register_reseeded(cluster.root, promoted, seed=3)  # registered, not promoted
    rows = feature_rows(5)
    expected = {v: expected_probabilities(cluster.root, v, rows) for v in (promoted, pinned)}
    assert not np.allclose(expected[promoted], expected[pinned])

    def ask(version: str | None) -> requests.Response:
        body: dict[str, Any] = {"model": "tiny", "rows": rows}
        if version is not None:
            body["version"] = version
        return call(cluster, "POST", "/api/v1/predict", json=body)

    # both kinds at once, so that some share a batch: each answer is its own version's
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, [None, pinned] * 8))
    for wanted, response in zip([promoted, pinned] * 8, answers, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["version"] == wanted
        np.testing.assert_allclose(
            np.asarray(body["probabilities"], dtype=np.float64),
            expected[wanted],
            rtol=0,
            atol=BATCHED_ATOL,
        )
    latest = ask("latest")  # the newest complete version: the one registered above
    assert latest.status_code == 200 and latest.json()["version"] == pinned
    missing = ask("v0099")
    assert missing.status_code == 404 and "v0099" in missing.json()["error"]["message"]
    assert ask("newest").status_code == 422  # vNNNN or latest; the promoted one by default


# -- an app under a route prefix ------------------------------------------------------------------
def test_an_app_under_a_route_prefix_still_requires_the_token(cluster: Cluster) -> None:
    prefix = f"/{KILL}"  # Serve hands its route_prefix to the app as the ASGI root_path
    assert call(cluster, "GET", f"{prefix}/healthz", token=None).status_code == 200
    assert call(cluster, "GET", f"{prefix}/api/v1/status", token=None).status_code == 401
    refused = call(cluster, "POST", f"{prefix}/api/v1/pause", token=None, json={})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert call(cluster, "GET", f"{prefix}/api/v1/status").json()["state"] == "standby"


# -- kill -9 ---------------------------------------------------------------------------------------
def test_kill_9_of_the_engine_replica_resumes_to_an_identical_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    args = cluster.kill
    steps = len(make_feed(args))
    # The uninterrupted run it must equal: the same session code in this process, unpaced.
    ref_args = args.model_copy(
        update={
            "store_url": f"sqlite:///{tmp_path / 'reference.db'}",
            "feed": args.feed.model_copy(update={"bars_per_second": 0.0}),
        }
    )
    ref_store = create_store(ref_args.store_url)
    reference = TradingSession(
        ref_args.settings(),
        ref_args.strategies,
        make_feed(ref_args),
        ref_store,
        window=args.engine.window,
        lease_ttl=args.engine.lease_ttl_s,
    )
    reference.start()
    prefix = f"/{KILL}"
    try:
        release(create_store(args.store_url), cluster.blocker)  # the Serve engine may start now
        wait_for(
            lambda: status(cluster, prefix)["step"] >= steps // 3,
            60,
            "the kill app's engine to reach a third of its feed",
        )
        before = status(cluster, prefix)
        (actor,) = list_actors(
            address=cluster.dashboard,  # explicit: other Ray instances may run on this machine
            filters=[("class_name", "=", f"ServeReplica:{KILL}:Engine"), ("state", "=", "ALIVE")],
        )
        assert actor.pid == int(before["holder"].rsplit(":", 2)[1])  # the lease holder's process
        os.kill(actor.pid, signal.SIGKILL)
        assert before["step"] < steps and not before["feed_exhausted"]

        def successor() -> dict[str, Any] | None:
            snap = status(cluster, prefix)
            lease = snap.get("lease") or {}
            taken = snap["state"] == "running" and lease.get("token", 0) > before["lease"]["token"]
            return snap if taken else None

        after = wait_for(successor, 90, "a new replica to take the lease")
        assert after["holder"] != before["holder"]
        final = wait_for(
            lambda: (s := status(cluster, prefix))["feed_exhausted"] and s, 90, "the feed to end"
        )
        assert final["step"] == steps
        assert final["lease"]["token"] == after["lease"]["token"]
        wait_for(lambda: reference.snapshot.get("feed_exhausted"), 60, "the reference run")
    finally:
        reference.stop()
    assert reference.steps_done == steps

    served, expected = StoreReader(create_store(args.store_url)), StoreReader(ref_store)

    def orders(reader: StoreReader) -> dict[str, tuple[Any, ...]]:
        return {
            cid: (o.status, o.qty, o.filled_qty, o.avg_fill_price)
            for cid, o in reader.latest_orders().items()
        }

    assert orders(served) == orders(expected)
    assert served.fills() == expected.fills()
    assert served.positions() == expected.positions()
    # the trades the API shows come from the (restarted) engine: the uninterrupted run's,
    # bars held included
    shown = call(cluster, "GET", f"{prefix}/api/v1/trades", params={"limit": 1000}).json()
    assert shown == reference.trades_page(None, 1000, 0)
    assert shown["total"] > 0 and all(t["bars_held"] > 0 for t in shown["trades"] if t["exit_time"])
    # not a vacuous comparison: both replicas traded
    killed_at = pd.Timestamp(before["last_bar_time"])
    fill_times = [f.timestamp for f in expected.fills()]
    assert min(fill_times) <= killed_at < max(fill_times)


# -- train -> promote -> serve -> trade ------------------------------------------------------------
def test_a_promotion_reaches_trading_at_the_next_bar_and_a_kill_9_rebuild_needs_no_model(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The ml_signal slot trades whatever the Model replicas serve as promoted: a promotion while
    the session runs switches its records (journal), status, /models and metric to the new version
    from one step on, for good; after a kill -9 the successor rebuilds from the logged predictions,
    and so does an in-process session whose registry is empty: no model is asked, no version
    pinned, and the fills are reproduced exactly."""
    args, first = cluster.promo, cluster.promo_first
    root = Path(args.model_root)
    assert ModelRegistry(root).promoted_version("tiny") == first  # what the slot starts with
    steps = len(make_feed(args))
    prefix = f"/{PROMO}"
    assert status(cluster, prefix)["state"] == "standby"  # deployed with the others, held back
    store = create_store(args.store_url)
    release(store, cluster.promo_blocker)  # its engine may start now: the feed starts
    try:

        def slot() -> dict[str, Any]:
            (ml,) = [s for s in status(cluster, prefix)["strategies"] if s["id"] == "ml"]
            return ml

        wait_for(lambda: (slot().get("model") or {}).get("version") == first, 60, first)
        second = register_reseeded(root, first, seed=2)
        # read before the promotion: a step in flight while it happens may already ask for v2
        promoted_at = status(cluster, prefix)["step"]
        ModelRegistry(root).promote("tiny", second, force=True)
        wait_for(lambda: slot()["model"]["version"] == second, REFRESH_S + 20, second)
        listing = call(cluster, "GET", f"{prefix}/api/v1/models").json()["models"]
        (in_use,) = [m["in_use"] for m in listing if m["name"] == "tiny"]
        assert [(u["strategy"], u["version"]) for u in in_use] == [("ml", second)]
        wait_for(
            lambda: total(scrape(cluster), "n1v1_strategy_model_version", strategy="ml") == 2.0,
            20,
            "n1v1_strategy_model_version to show v0002",
        )

        before = status(cluster, prefix)
        (actor,) = list_actors(
            address=cluster.dashboard,
            filters=[("class_name", "=", f"ServeReplica:{PROMO}:Engine"), ("state", "=", "ALIVE")],
        )
        os.kill(actor.pid, signal.SIGKILL)
        assert not before["feed_exhausted"], "the feed ended before the kill: make it longer"
        final = wait_for(
            lambda: (s := status(cluster, prefix))["feed_exhausted"] and s, 120, "the feed to end"
        )
        assert final["state"] == "replay_finished", final["failure"]
        assert final["lease"]["token"] > before["lease"]["token"]  # a successor rebuilt and went on
        assert final["step"] == steps
        final_trades = call(cluster, "GET", f"{prefix}/api/v1/trades", params={"limit": 1000})
        final_trades.raise_for_status()
    finally:
        serve.delete(PROMO)

    # The journal: every step's model answer, v1 then v2 from one step on, never back.
    logged = StoreReader(store).predictions()
    trade = [
        (step, r) for step, rows in sorted(logged.items()) for r in rows if r["role"] == "trade"
    ]
    answered = [(step, r["version"]) for step, r in trade if r["status"] == "ok"]
    switch = next(step for step, version in answered if version == second)
    assert {v for s, v in answered if s < switch} == {first}
    assert {v for s, v in answered if s >= switch} == {second}
    assert switch >= promoted_at
    # A replica's first call loads the model (and torch) and may outlast the 0.5 s budget: that
    # bar is journaled as a timeout and held; later there is none.
    failed = [(step, r["status"], r["detail"]) for step, r in trade if r["status"] != "ok"]
    failed = [f for f in failed if f[1] != "not_ready"]
    assert len(failed) <= 4, failed
    fills = StoreReader(store).fills()
    assert any(f.timestamp > before_time(before) for f in fills)  # traded after the kill too

    # An in-process rebuild with an empty registry: the logged answers are all it needs.
    # SQLite's backup, not a file copy: the newest steps may still sit in the WAL file (this
    # test's own reader keeps a connection open, so nothing checkpointed them into promo.db)
    copy = tmp_path / "copy.db"
    served_db = args.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(served_db) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    empty = tmp_path / "no-models"
    unpaced = args.feed.model_copy(update={"bars_per_second": 0.0})
    rebuild_args = args.model_copy(
        update={"store_url": f"sqlite:///{copy}", "model_root": str(empty), "feed": unpaced}
    )
    session = TradingSession(
        rebuild_args.settings(),
        rebuild_args.strategies,
        make_feed(rebuild_args),
        create_store(rebuild_args.store_url),
        window=args.engine.window,
    )
    session.start()
    try:
        wait_for(lambda: session.state in ("replay_finished", "failed"), 60, "the rebuild")
        assert session.state == "replay_finished", session.failure
        assert session.trades_page(None, 1000, 0) == final_trades.json()
        assert session.snapshot["cash"] == final["cash"]
        assert session.snapshot["equity"] == final["equity"]
        assert session.steps_done == steps
    finally:
        session.stop()


def before_time(snapshot: dict[str, Any]) -> pd.Timestamp:
    return pd.Timestamp(snapshot["last_bar_time"])
