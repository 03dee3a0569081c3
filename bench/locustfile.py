"""A realistic load on the N1V1 Serve app, with a pass/fail gate per route (issue 12, section 1).

Run it only as its own process (Locust patches the standard library with gevent when imported, so
it never belongs inside pytest or a Ray worker); `bench/load.py` starts it, parses its CSV and
prints the table:

    python -m locust -f bench/locustfile.py --headless --host http://127.0.0.1:PORT \
        -u 12 -r 12 --run-time 20s --csv out/load

Who calls what (every request carries the admin token from LOAD_API_TOKEN):

- Dashboard (most users): the dashboard's reads, polled every 0.5-2 s: status most often, then
  positions, orders, trades, equity, strategies, risk, signals and the models listing.
- Operator: a manual market order now and then (201, or 409 when a risk rule or the end of a
  replay refuses it: both are answers, not failures) and a change of the live config.
- ModelClient: POST /api/v1/predict with the body in LOAD_PREDICT_BODY (JSON; without it this
  user class is left out, and says so).
- Researcher (exactly one): a backtest submission every 8-12 s, then its result read back.

At the end (Locust's `quitting` event) every route's failure ratio and p99 are checked against
THRESHOLDS (LOAD_THRESHOLDS, a JSON object keyed like them, overrides single entries); the
process exits 1 when one is exceeded, 0 otherwise, and prints one line per route. A failure is
any answer outside the route's expected status codes (named "HTTP <code>" in the failures CSV),
a connection error or a timeout (LOAD_TIMEOUT_S, 10 s). With LOAD_FINAL_CSV set, the figures
the gate judged are written there in Locust's own CSV format (`<prefix>_stats.csv`,
`<prefix>_failures.csv`; Locust's periodic --csv files may miss the last second) with every
answer's status code per route beside them (`<prefix>_codes.json`).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
from collections import Counter, defaultdict
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

API = "/api/v1"
TOKEN = os.environ.get("LOAD_API_TOKEN", "")
TIMEOUT_S = float(os.environ.get("LOAD_TIMEOUT_S", "10"))
PREDICT = json.loads(os.environ.get("LOAD_PREDICT_BODY") or "null")

# route ("METHOD /path") -> the most it may fail (share of its requests) and its p99 in ms. They
# hold with a wide margin on a shared 2-core machine under the test suite's moderate load; a
# bigger machine or a longer run may tighten them through LOAD_THRESHOLDS.
READ = {"max_failure_ratio": 0.01, "max_p99_ms": 2000.0}
WRITE = {"max_failure_ratio": 0.01, "max_p99_ms": 3000.0}
THRESHOLDS: dict[str, dict[str, float]] = {
    f"GET {API}/status": READ,
    f"GET {API}/positions": READ,
    f"GET {API}/orders": READ,
    f"GET {API}/trades": READ,
    f"GET {API}/equity": READ,
    f"GET {API}/strategies": READ,
    f"GET {API}/risk": READ,
    f"GET {API}/signals": READ,
    f"GET {API}/models": READ,
    f"POST {API}/predict": READ,
    f"POST {API}/orders": WRITE,
    f"PUT {API}/config": WRITE,
    f"POST {API}/backtests": {"max_failure_ratio": 0.01, "max_p99_ms": 5000.0},
    f"GET {API}/backtests/{{id}}": READ,
}
THRESHOLDS.update(json.loads(os.environ.get("LOAD_THRESHOLDS") or "{}"))

STATUS_CODES: defaultdict[str, Counter[int]] = defaultdict(Counter)  # route -> code -> answers


class ApiUser(FastHttpUser):
    abstract = True
    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S

    def call(
        self, method: str, path: str, name: str | None = None, ok: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        """One request, counted under `name` (the route's template); any answer outside `ok`
        is a failure named by its status code."""
        name = name or path
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with self.client.request(
            method, path, name=name, headers=headers, catch_response=True, **kwargs
        ) as response:
            code = response.status_code or 0
            STATUS_CODES[f"{method} {name}"][code] += 1
            if code in ok:
                response.success()
            elif code:
                response.failure(f"HTTP {code}")
            else:  # no answer at all: a connection error or a timeout
                response.failure(f"no answer: {type(response.error).__name__}")
            return response


class Dashboard(ApiUser):
    weight = 6
    wait_time = between(0.5, 2.0)

    @task(10)
    def status(self) -> None:
        self.call("GET", f"{API}/status")

    @task(4)
    def positions(self) -> None:
        self.call("GET", f"{API}/positions")

    @task(3)
    def orders(self) -> None:
        self.call("GET", f"{API}/orders?limit=50", name=f"{API}/orders")

    @task(3)
    def trades(self) -> None:
        self.call("GET", f"{API}/trades?limit=50", name=f"{API}/trades")

    @task(3)
    def equity(self) -> None:
        self.call("GET", f"{API}/equity?max_points=200", name=f"{API}/equity")

    @task(2)
    def strategies(self) -> None:
        self.call("GET", f"{API}/strategies")

    @task(2)
    def risk(self) -> None:
        self.call("GET", f"{API}/risk")

    @task(1)
    def signals(self) -> None:
        self.call("GET", f"{API}/signals?limit=50", name=f"{API}/signals")

    @task(1)
    def models(self) -> None:
        self.call("GET", f"{API}/models")


class Operator(ApiUser):
    weight = 1
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        self.sides = itertools.cycle(["buy", "sell"])
        self.turns = itertools.cycle(["order", "config"])
        self.symbols: list[str] = []
        self.learn_symbols()

    def learn_symbols(self) -> None:
        response = self.call("GET", f"{API}/status")
        if response.status_code == 200:
            self.symbols = list(response.json().get("symbols") or [])

    @task
    def act(self) -> None:
        """A manual order and a config change in turn (each run has both)."""
        if next(self.turns) == "order":
            self.manual_order()
        else:
            self.change_config()

    def manual_order(self) -> None:
        if not self.symbols:
            self.learn_symbols()
            return
        body = {
            "symbol": random.choice(self.symbols),
            "side": next(self.sides),
            "qty": 0.01,
            "resize": True,  # cut to the cash or a limit rather than refuse
        }
        self.call("POST", f"{API}/orders", json=body, ok=(201, 409))

    def change_config(self) -> None:
        body = {"risk": {"max_drawdown": random.choice([0.2, 0.25, 0.3])}}
        self.call("PUT", f"{API}/config", json=body)


class ModelClient(ApiUser):
    weight = 2
    wait_time = between(0.2, 1.0)

    @task
    def predict(self) -> None:
        self.call("POST", f"{API}/predict", json=PREDICT)


class Researcher(ApiUser):
    fixed_count = 1
    wait_time = between(8.0, 12.0)

    def on_start(self) -> None:
        self.submitted: list[str] = []

    @task
    def backtest(self) -> None:
        if self.submitted:  # read back the previous one (queued, running or done: all 200)
            job = self.submitted.pop()
            self.call("GET", f"{API}/backtests/{job}", name=f"{API}/backtests/{{id}}")
        body = {
            "dataset": "coinbase_BTC-USD_1m",
            "strategy": "sma_cross",
            "start": "2018-04-04",
            "end": "2018-04-05",
        }
        response = self.call("POST", f"{API}/backtests", json=body, ok=(202,))
        if response.status_code == 202:
            self.submitted.append(response.json()["id"])


if PREDICT is None:
    ModelClient.weight = 0
    print("locustfile: LOAD_PREDICT_BODY is not set: no POST /api/v1/predict in this run")


def check(stats: Any) -> list[tuple[str, int, float, float, str]]:
    """(route, requests, failure ratio, p99 ms, verdict) of every route that had requests."""
    rows = []
    for (name, method), entry in sorted(stats.entries.items()):
        route = f"{method} {name}"
        if entry.num_requests == 0:
            continue
        ratio = entry.num_failures / entry.num_requests
        p99 = float(entry.get_response_time_percentile(0.99) or 0.0)
        limits = THRESHOLDS.get(route)
        if limits is None:
            verdict = "FAIL (no threshold for this route)"
        else:
            problems = []
            if ratio > limits["max_failure_ratio"]:
                problems.append(f"failures {ratio:.1%} > {limits['max_failure_ratio']:.1%}")
            if p99 > limits["max_p99_ms"]:
                problems.append(f"p99 {p99:.0f} ms > {limits['max_p99_ms']:.0f} ms")
            verdict = "FAIL (" + "; ".join(problems) + ")" if problems else "PASS"
        rows.append((route, entry.num_requests, ratio, p99, verdict))
    return rows


def write_final(environment: Any, prefix: str) -> None:
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    with open(f"{prefix}_stats.csv", "w", newline="") as handle:
        writer.requests_csv(csv.writer(handle))
    with open(f"{prefix}_failures.csv", "w", newline="") as handle:
        writer.failures_csv(csv.writer(handle))
    with open(f"{prefix}_codes.json", "w") as handle:
        json.dump({route: dict(codes) for route, codes in STATUS_CODES.items()}, handle)


@events.quitting.add_listener
def _gate(environment: Any, **_kwargs: Any) -> None:
    rows = check(environment.stats)
    print("\nload gate: route | requests | failure ratio | p99 ms | verdict")
    for route, requests, ratio, p99, verdict in rows:
        print(f"load gate: {route} | {requests} | {ratio:.2%} | {p99:.0f} | {verdict}")
    failed = [r for r in rows if r[4] != "PASS"]
    if not rows:
        print("load gate: FAIL (no request was made)")
    print(f"load gate: {'FAIL' if failed or not rows else 'PASS'}", flush=True)
    prefix = os.environ.get("LOAD_FINAL_CSV")
    if prefix:
        write_final(environment, prefix)
    environment.process_exit_code = 1 if failed or not rows else 0
