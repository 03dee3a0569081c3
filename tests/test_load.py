"""The Serve app under load (issue 12, section 1): a short Locust run of bench/locustfile.py with
its per-route gates, then an overload burst far beyond the Gateway's request limits.

One app for the module, on a Ray of its own (bench/load.py's `serve_app`). Locust runs as a
subprocess only: it patches the standard library with gevent when imported, which must never
happen inside pytest or Ray. The long run is `python bench/load.py` (a benchmark, not a test).
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from test_ml_signal import BARS, FEATURES, register_tiny

from n1v1.ml.features import build_features
from n1v1.serve.gateway import (
    MAX_ONGOING_REQUESTS,
    MAX_QUEUED_REQUESTS,
    RETRY_AFTER_S,
    STATUS_FRESH_S,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "load-admin-" + secrets.token_hex(12)


def _bench_load() -> Any:
    """bench/load.py as a module (bench/ is not a package; it never imports Locust itself). Its
    `serve_app` imports bench/api.py as `api`, so bench/ goes on the path, as bench/load.py's own
    entry point puts it (without it, this module passed only after one that did the same)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("n1v1_bench_load", ROOT / "bench" / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


load = _bench_load()


@dataclass
class App:
    base: str
    predict_body: dict[str, Any]
    tmp: Path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    if importlib.util.find_spec("locust") is None:  # looked up, never imported (gevent)
        pytest.skip("Locust is not installed: it is in the bench extra, pip install -e '.[bench]'")
    tmp = tmp_path_factory.mktemp("load")
    register_tiny(tmp / "models")
    raw = build_features(BARS, FEATURES).to_numpy()
    row = raw[np.isfinite(raw).all(axis=1)][-1].tolist()
    # one Gateway and one Model replica: a known capacity, and no replica starting mid-test
    with load.serve_app(load.load_app_args(tmp, max_replicas=1), TOKEN) as base:
        predict_body = {"model": "tiny", "rows": [row]}
        load.warm_up(base, TOKEN, predict_body)  # the model's first load is not load
        yield App(base, predict_body, tmp)


def test_a_mixed_load_passes_every_routes_gate(app: App) -> None:
    """10 users for 15 s: dashboards reading, an operator placing orders and changing the
    config, model clients predicting, a researcher submitting backtests."""
    run = load.run_locust(
        app.base, TOKEN, 15, 10, app.tmp / "locust", spawn_rate=10, predict_body=app.predict_body
    )
    table = load.route_table(run.routes)
    assert run.passed, f"a load gate failed:\n{table}\n" + "\n".join(run.gate)
    for route in (
        "GET /api/v1/status",
        "GET /api/v1/positions",
        "GET /api/v1/orders",
        "POST /api/v1/predict",
        "POST /api/v1/orders",
        "PUT /api/v1/config",
        "POST /api/v1/backtests",
    ):
        stats = run.routes.get(route)
        assert stats is not None and stats.requests > 0, f"no {route} in the run:\n{table}"
    assert run.routes["POST /api/v1/orders"].codes.get(201, 0) > 0, f"no order placed:\n{table}"
    assert set(run.routes["POST /api/v1/backtests"].codes) == {202}, table
    assert all(r.codes.get(0, 0) == 0 for r in run.routes.values()), f"unanswered:\n{table}"


def test_a_read_right_after_a_command_sees_its_effect(app: App) -> None:
    """The status is served from what the Gateway follows, yet a command's caller reads its own
    write: the Gateway catches up before it answers the command (docs/serve.md)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    seen = []
    with requests.Session() as http:
        for i in range(10):
            paused = i % 2 == 0
            put = http.put(f"{app.base}/api/v1/config", headers=headers, json={"paused": paused},
                           timeout=30)  # fmt: skip
            assert put.status_code == 200, put.text
            status = http.get(f"{app.base}/api/v1/status", headers=headers, timeout=30).json()
            seen.append((paused, status["paused"]))
    assert all(want == got for want, got in seen), seen
    assert seen[-1] == (False, False)  # left running for the tests after this one


def test_a_burst_beyond_the_request_limits_is_shed_fast_with_retry_after(app: App) -> None:
    """400 clients at once, twice, against one Gateway replica that takes MAX_ONGOING_REQUESTS
    and a proxy that queues MAX_QUEUED_REQUESTS more: the excess is answered at once with 503
    and Retry-After, the rest with 200, and nothing times out (30 s client timeout)."""
    clients = 400
    assert clients > 2 * (MAX_ONGOING_REQUESTS + MAX_QUEUED_REQUESTS)  # an overload even at 2
    answers = load.burst(f"{app.base}/api/v1/status", TOKEN, clients, rounds=2, timeout_s=30)
    summary = load.burst_summary(answers)
    assert summary["no_answer"] == [], summary
    assert set(summary["by_status"]) <= {200, 503}, summary
    shed = [a for a in answers if a.status == 503]
    assert shed, f"nothing was shed: the limits did not engage ({summary})"
    assert {a.retry_after for a in shed} == {str(RETRY_AFTER_S)}, summary
    assert max(a.seconds for a in shed) < 5.0, summary  # answered at once, not after a queue
    assert summary["by_status"].get(200, 0) >= MAX_ONGOING_REQUESTS, summary


def _own_engine_pid(holder: str) -> int:
    """The Engine replica's pid from its lease holder ("host:pid:nonce"), checked to be this
    module's own Ray worker (a process below this one running the n1v1 Engine replica)."""
    pid = int(holder.rsplit(":", 2)[1])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert cmdline.startswith(b"ray::ServeReplica:n1v1:Engine"), cmdline[:80]
    parent = pid
    while parent > 1:
        parent = int(Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if parent == os.getpid():
            return pid
    pytest.fail(f"process {pid} is not one this test started")


def test_a_hung_engine_is_not_reported_running_from_the_gateways_memory(app: App) -> None:
    """The Gateway serves the status it follows. Once the engine stops answering (SIGSTOP: a
    hung replica, which no actor-death notice gives away) that status must stop being served
    within STATUS_FRESH_S, and /readyz must say the engine is down. The replica is killed
    afterwards (last test in the module: Serve replaces it, which nothing here waits for)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    before = requests.get(f"{app.base}/api/v1/status", headers=headers, timeout=10).json()
    assert before["state"] == "running"
    pid = _own_engine_pid(before["holder"])
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    stale: list[float] = []
    try:
        while time.monotonic() - stopped < STATUS_FRESH_S + 3:
            started = time.monotonic()
            try:
                response = requests.get(f"{app.base}/api/v1/status", headers=headers, timeout=2)
                body = response.json() if response.status_code == 200 else {}
            except (requests.RequestException, ValueError):
                body = {}  # no answer from a hung engine: what a direct call gets
            if started - stopped > STATUS_FRESH_S + 0.5 and body.get("holder") == before["holder"]:
                stale.append(round(started - stopped, 1))
            time.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
        ready = requests.get(f"{app.base}/readyz", timeout=15)
    finally:
        os.kill(pid, signal.SIGKILL)
    assert not stale, f"the hung engine's status was still served {stale} s after it stopped"
    assert (ready.status_code, ready.json()["checks"]["engine"]) == (503, False), ready.text
