"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (Schemathesis),
against the real Serve application: the gateway, the engine trading a replay, the model server and
backtest tasks, on a local Ray of this module's own, on free ports.

With the admin token, Schemathesis' examples phase (the bodies /docs shows), coverage phase
(boundary and invalid values of every parameter, methods the path does not take) and fuzzing
phase (random requests, valid and not) run against every operation, with every check it has but
one: no 5xx, every status documented, every body matching its documented schema (the error
envelope included), the documented content type and headers (Retry-After on 429), invalid
requests refused with a 4xx, 405s with an Allow header. Left out: "positive data acceptance",
which expects every request the schema allows to succeed; here the symbols, strategy ids, models
and feature widths that succeed depend on what the engine runs, which the schema cannot list, so
a well-formed request may rightly be a 422.

Without a token, every /api/v1 request must be a 401 in the envelope, whatever else it holds.

Bounded: a few examples per operation (`MAX_EXAMPLES`). `POST /api/v1/backtests` starts a Ray
task per accepted request, each a CPU for seconds: it is fuzzed with two examples and no coverage
phase, which would try every bundled dataset.

Schemathesis runs through its engine (`schemathesis.engine.from_schema`), the loop its command
line uses: its pytest plugin relies on a pytest internal that pytest 9 no longer has.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import ray
import requests
import schemathesis
from dashboard_api import free_port
from ray import serve
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema
from test_ml_signal import register_tiny

from n1v1.serve.app import build_app
from n1v1.serve.args import AppArgs

pytestmark = pytest.mark.slow

TOKEN = "fuzz-admin-" + secrets.token_hex(12)
READ_TOKEN = "fuzz-reader-" + secrets.token_hex(12)
API = "/api/v1"
MAX_EXAMPLES = 4
UNLIMITED = 1_000_000  # rate limits out of the way: the fuzzer is one client sending fast


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app built by `build_app` from typed args, as `serve run` builds it, on a local Ray."""
    tmp = tmp_path_factory.mktemp("fuzz")
    root = tmp / "models"
    version = register_tiny(root)
    args = AppArgs.model_validate(
        {
            "store_url": f"sqlite:///{tmp / 'fuzz.db'}",
            "model_root": str(root),
            "feed": {
                "kind": "replay",
                "datasets": ["coinbase_BTC-USD_1m", "coinbase_LTC-USD_1m"],
                "start": "2018-04-04",
                "bars_per_second": 20,
            },
            "strategies": [
                {"name": "ema_cross", "params": {"fast": 12, "slow": 48}},
                {"name": "rsi", "params": {"period": 14}},
                {"name": "ml_signal", "params": {"model": "tiny", "version": version}},
            ],
            "engine": {"lease_ttl_s": 6},
            "api": {
                "max_replicas": 1,
                "rate_limit_per_s": UNLIMITED,
                "rate_burst": UNLIMITED,
                "anonymous_rate_per_s": UNLIMITED,
                "anonymous_burst": UNLIMITED,
            },
            "model": {"max_replicas": 1},
        }
    )
    port = free_port()
    env = {
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "N1V1_API_TOKEN": TOKEN,
        "N1V1_API_READ_TOKEN": READ_TOKEN,
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        try:
            ray.init(
                address="local",  # a cluster of our own, never one another process started
                num_cpus=4,
                include_dashboard=False,
                log_to_driver=False,
            )
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(build_app(args), name="fuzz", route_prefix="/")
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while requests.get(f"{url}/readyz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "the app was not ready within 120 s"
                time.sleep(0.5)
            yield url
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


@dataclass
class Run:
    """What one Schemathesis run saw."""

    failures: list[str] = field(default_factory=list)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    requests: int = 0
    seconds: float = 0.0

    def codes(self, prefix: str = "") -> set[int]:
        return {code for (label, code) in self.statuses if label.split(" ")[1].startswith(prefix)}


def fuzz(base_url: str, config: dict[str, Any]) -> Run:
    """Run Schemathesis' engine over the app's OpenAPI document; every failed check and every
    error of the run is a failure, with the request that caused it."""
    loaded = SchemathesisConfig.from_dict({"base-url": base_url, "seed": 12, **config})
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=loaded)
    run, started = Run(), time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for interaction in event.recorder.interactions.values():
                run.requests += 1
                if interaction.response is not None:
                    run.statuses[(event.label, interaction.response.status_code)] += 1
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        request = event.recorder.interactions[case_id].request
                        run.failures.append(
                            f"{event.label}: {check.name}: {check.failure_info.failure}\n"
                            f"  request: {request.method} {request.uri} {request.body!r:.300}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            run.failures.append(f"{getattr(event, 'label', '')}: {event.info}")
    run.seconds = time.monotonic() - started
    return run


def unique(failures: list[str], shown: int = 10) -> str:
    first = list(dict.fromkeys(f.split("\n  request")[0] for f in failures))
    return "\n".join(next(f for f in failures if f.startswith(key)) for key in first[:shown])


def test_fuzzing_with_the_token_finds_no_5xx_and_no_answer_off_its_schema(base_url: str) -> None:
    run = fuzz(
        base_url,
        {
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
            "phases": {"stateful": {"enabled": False}},
            "checks": {
                "positive_data_acceptance": {"enabled": False},
                # an oversized body is refused with 413 before it is parsed
                "negative_data_rejection": {"expected-statuses": ["4xx"]},
            },
            "operations": [
                {
                    "include-path": f"{API}/backtests",
                    "include-method": "POST",
                    "generation": {"max-examples": 2},
                    "phases": {"coverage": {"enabled": False}},
                }
            ],
        },
    )
    assert not run.failures, f"{len(run.failures)} failed checks:\n{unique(run.failures)}"
    assert {code for code in run.codes() if code >= 500} == set()
    # it reached the engine, the models and the backtest runner, not only the validation in
    # front of them: the documented examples place orders (201, or 409 while the fuzzer has the
    # engine paused or its kill switch on) and start a backtest (202)
    assert {200, 202, 404, 405, 422} <= run.codes(API), sorted(run.statuses.items())
    assert {201, 409} & {code for (label, code) in run.statuses if label == f"POST {API}/orders"}
    assert run.requests > 300


def test_without_a_token_every_api_answer_is_a_401_in_the_envelope(base_url: str) -> None:
    run = fuzz(
        base_url,
        {
            "generation": {"max-examples": 2, "mode": "all"},
            "phases": {
                "examples": {"enabled": False},
                "coverage": {"enabled": False},
                "stateful": {"enabled": False},
            },
            "checks": {
                # the rest expect an answer about the request itself; this run gets only 401s
                "enabled": False,
                "not_a_server_error": {"enabled": True},
                "status_code_conformance": {"enabled": True},
                "content_type_conformance": {"enabled": True},
                "response_schema_conformance": {"enabled": True},
            },
        },
    )
    assert not run.failures, f"{len(run.failures)} failed checks:\n{unique(run.failures)}"
    api_codes = Counter(
        code for (label, code), n in run.statuses.items() for _ in range(n) if f" {API}/" in label
    )
    assert set(api_codes) == {401}, api_codes
    operations = {label for label, _ in run.statuses if f" {API}/" in label}
    assert len(operations) >= 18  # every /api/v1 operation was tried


def test_every_api_operation_refuses_a_wrong_token_whatever_the_method(base_url: str) -> None:
    spec = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    answers = {}
    for path, item in spec["paths"].items():
        if not path.startswith(API):
            continue
        concrete = path.replace("{job_id}", "bt_0").replace("{client_order_id}", "x")
        for method in [*item, "patch", "trace"]:
            for token in (None, "not-the-token-" + secrets.token_hex(8), TOKEN[:-1]):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                response = requests.request(
                    method, f"{base_url}{concrete}", headers=headers, json={}, timeout=10
                )
                body = response.json()
                answers[(method, path, token)] = (response.status_code, body["error"]["code"])
    assert set(answers.values()) == {(401, "unauthorized")}, answers


def test_the_app_still_trades_after_the_fuzzing(base_url: str) -> None:
    """The fuzzer paused, resumed, reconfigured and killed-switched the engine at random: none of
    it may have stopped the engine (a 5xx would have shown too, but a dead engine thread might
    only show here)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    first = requests.get(f"{base_url}{API}/status", headers=headers, timeout=10).json()
    assert first["state"] in ("running", "replay_finished"), first.get("failure")
    ready = requests.get(f"{base_url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
