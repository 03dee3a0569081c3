"""Load on the Serve app with pass/fail gates (issue 12, section 1): bench/locustfile.py in a
Locust process against the app on a private Ray, then an overload burst.

    python bench/load.py [--users 24] [--spawn-rate 12] [--duration 60] [--quick]
                         [--thresholds JSON] [--burst-clients 400] [--out DIR]

1. Starts the app (`build_app` + `serve.run` on `ray.init(address="local")`, HTTP on a free
   127.0.0.1 port): a paper session replaying two bundled 1-minute datasets at 5 bars/s, going
   on with synthetic bars after them, three rule strategies, the tiny model in the registry for
   POST /predict, and the per-token rate limit raised out of the way (the limiter is tested on
   its own; here every user shares the admin token).
2. Runs Locust headless for --duration seconds (`run_locust`), prints the per-route table (from
   Locust's CSV, with the status codes of every answer) and the locustfile's gate per route.
3. Fires --burst-clients concurrent requests at once, twice (`burst`), many more than the
   Gateway takes (MAX_ONGOING_REQUESTS per replica plus MAX_QUEUED_REQUESTS at the proxy): every
   answer must be a 200, or a fast 503 with `Retry-After`, and none may time out.

Exits 1 when a gate fails. Locust runs only as a subprocess (it patches the standard library with
gevent on import); nothing here imports it. The pieces are importable for other harnesses (the
fault tests run the same locustfile while they kill parts of the cluster): `serve_app`,
`warm_up`, `start_locust` / `run_locust` (-> `LoadRun` with a `RouteStats` per route, failures
by status code included), `route_table`, `burst`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")


# --------------------------------------------------------------------------- Locust, as a process
@dataclass(frozen=True)
class RouteStats:
    """One route over a Locust run (times in ms, from Locust's histogram)."""

    route: str  # "GET /api/v1/status"
    requests: int
    failures: int
    median_ms: float
    p99_ms: float
    max_ms: float
    rps: float
    failures_by_status: dict[str, int] = field(default_factory=dict)  # "503", "no answer: ..."
    codes: dict[int, int] = field(default_factory=dict)  # every answer's status code (0: none)

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass
class LoadRun:
    exit_code: int  # 0 when every route passed its gate
    routes: dict[str, RouteStats]
    gate: list[str]  # the locustfile's verdict lines, one per route and the overall one
    output: str  # everything Locust printed

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


class LocustProcess:
    """A running Locust; `wait()` for its result (`LoadRun`)."""

    def __init__(self, popen: subprocess.Popen[str], prefix: Path, seconds: float) -> None:
        self.popen, self.prefix, self.seconds = popen, prefix, seconds

    def wait(self, grace_s: float = 60.0) -> LoadRun:
        try:
            output, _ = self.popen.communicate(timeout=self.seconds + grace_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            output, _ = self.popen.communicate()
            raise RuntimeError(f"locust did not stop within {self.seconds + grace_s:.0f} s:\n"
                               f"{output[-3000:]}") from None  # fmt: skip
        gate = [line.removeprefix("load gate: ") for line in output.splitlines()
                if line.startswith("load gate: ")]  # fmt: skip
        final = Path(f"{self.prefix}_final")
        if not Path(f"{final}_stats.csv").exists():
            raise RuntimeError(f"locust ended without its final statistics (exit "
                               f"{self.popen.returncode}):\n{output[-3000:]}")  # fmt: skip
        routes = parse_csv(final, Path(f"{final}_codes.json"))
        return LoadRun(self.popen.returncode, routes, gate, output)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.communicate()


def start_locust(
    base_url: str,
    token: str,
    seconds: float,
    users: int,
    out_dir: Path,
    *,
    spawn_rate: float | None = None,
    predict_body: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    timeout_s: float = 10.0,
) -> LocustProcess:
    """Start bench/locustfile.py headless against `base_url` (127.0.0.1 only) for `seconds`."""
    if not base_url.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
        raise ValueError(f"load goes to this machine's loopback only, not {base_url}")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "locust"
    env = {
        **os.environ,
        "LOAD_API_TOKEN": token,
        "LOAD_TIMEOUT_S": str(timeout_s),
        "LOAD_PREDICT_BODY": json.dumps(predict_body) if predict_body else "",
        "LOAD_THRESHOLDS": json.dumps(thresholds or {}),
        "LOAD_FINAL_CSV": f"{prefix}_final",
    }
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", base_url, "--users", str(users),
        "--spawn-rate", str(spawn_rate if spawn_rate is not None else users),
        "--run-time", f"{max(1, round(seconds))}s", "--stop-timeout", "5",
        "--csv", str(prefix), "--csv-full-history", "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    popen = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return LocustProcess(popen, prefix, seconds)


def run_locust(base_url: str, token: str, seconds: float, users: int, out_dir: Path,
               **options: Any) -> LoadRun:  # fmt: skip
    """`start_locust(...)` and wait for it."""
    return start_locust(base_url, token, seconds, users, out_dir, **options).wait()


def parse_csv(prefix: Path, codes_file: Path | None = None) -> dict[str, RouteStats]:
    """Per-route figures from `<prefix>_stats.csv` and `<prefix>_failures.csv` in Locust's CSV
    format (the locustfile names a failure "HTTP <code>", so they group by status code), plus
    every answer's status code from the locustfile's count when `codes_file` exists. A run's
    final ones are `<out_dir>/locust_final_*`; Locust's own `<out_dir>/locust_*` (with the
    per-second history in `locust_stats_history.csv`) parse the same way."""
    failures: dict[str, Counter[str]] = {}
    with open(f"{prefix}_failures.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            error = row["Error"].removeprefix("HTTP ")
            route = f"{row['Method']} {row['Name']}"
            failures.setdefault(route, Counter())[error] += int(row["Occurrences"])
    codes: dict[str, dict[str, int]] = {}
    if codes_file is not None and codes_file.exists():
        codes = json.loads(codes_file.read_text())
    routes = {}
    with open(f"{prefix}_stats.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                continue
            route = f"{row['Type']} {row['Name']}"
            routes[route] = RouteStats(
                route=route,
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                median_ms=_number(row["Median Response Time"]),
                p99_ms=_number(row["99%"]),
                max_ms=_number(row["Max Response Time"]),
                rps=_number(row["Requests/s"]),
                failures_by_status=dict(failures.get(route, {})),
                codes={int(k): v for k, v in codes.get(route, {}).items()},
            )
    return routes


def _number(text: str) -> float:
    return float(text) if text not in ("", "N/A") else float("nan")


def route_table(routes: Mapping[str, RouteStats]) -> str:
    """A markdown table of the run, one row per route."""
    lines = [
        "| route | requests | req/s | failures | p50 ms | p99 ms | max ms | answers by status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for route in sorted(routes):
        r = routes[route]
        answers = ", ".join(f"{code}: {n}" for code, n in sorted(r.codes.items()))
        failed = ", ".join(f"{k}: {n}" for k, n in sorted(r.failures_by_status.items()))
        lines.append(
            f"| {route} | {r.requests:,} | {r.rps:.1f} | {r.failures:,}"
            f"{f' ({failed})' if failed else ''} | {r.median_ms:.0f} | {r.p99_ms:.0f} | "
            f"{r.max_ms:.0f} | {answers} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- overload
@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (connection error or timeout)
    seconds: float
    retry_after: str | None
    error: str = ""


async def _burst(url: str, token: str, clients: int, rounds: int, timeout_s: float,
                 body: bytes | None) -> list[Answer]:  # fmt: skip
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    method = "GET" if body is None else "POST"
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    answers: list[Answer] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:

        async def one() -> Answer:
            started = time.perf_counter()
            try:
                async with http.request(method, url, data=body) as response:
                    await response.read()
                    return Answer(response.status, time.perf_counter() - started,
                                  response.headers.get("Retry-After"))  # fmt: skip
            except (aiohttp.ClientError, TimeoutError) as exc:
                return Answer(0, time.perf_counter() - started, None, type(exc).__name__)

        for _ in range(rounds):  # every client at once, then again once they all answered
            answers += await asyncio.gather(*(one() for _ in range(clients)))
    return answers


def burst(url: str, token: str, clients: int, rounds: int = 2, timeout_s: float = 30.0,
          body: bytes | None = None) -> list[Answer]:  # fmt: skip
    """`clients` concurrent requests at once (GET, or POST of `body`), `rounds` times."""
    if not url.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
        raise ValueError(f"load goes to this machine's loopback only, not {url}")
    return asyncio.run(_burst(url, token, clients, rounds, timeout_s, body))


def burst_summary(answers: list[Answer]) -> dict[str, Any]:
    by_status = Counter(a.status for a in answers)
    shed = [a for a in answers if a.status in (429, 503)]
    served = [a for a in answers if a.status == 200]

    def slowest(group: list[Answer]) -> float:
        return max((a.seconds for a in group), default=float("nan"))

    return {
        "answers": len(answers),
        "by_status": dict(sorted(by_status.items())),
        "shed_without_retry_after": sum(1 for a in shed if not a.retry_after),
        "slowest_shed_s": slowest(shed),
        "slowest_served_s": slowest(served),
        "no_answer": [a.error for a in answers if a.status == 0],
    }


# --------------------------------------------------------------------------- the app
@contextmanager
def serve_app(app_args: Any, token: str, ready_timeout_s: float = 180.0) -> Iterator[str]:
    """The app of `app_args` (`AppArgs`) on a Ray of its own, HTTP on a free 127.0.0.1 port;
    yields the base URL once /readyz answers 200, shuts Serve and that Ray down afterwards.
    The admin token is in this process's environment only while `build_app` hashes it (Ray's
    workers started before: none of them sees it)."""
    import ray
    from api import wait_ready  # bench/api.py
    from ray import serve

    from n1v1.cli.local_ray import free_port
    from n1v1.serve.app import TOKEN_ENV, build_app

    port = free_port()
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        saved = os.environ.get(TOKEN_ENV)
        os.environ[TOKEN_ENV] = token
        try:
            app = build_app(app_args)
        finally:
            if saved is None:
                os.environ.pop(TOKEN_ENV, None)
            else:
                os.environ[TOKEN_ENV] = saved
        serve.run(app, name="n1v1", route_prefix="/", logging_config={"enable_access_log": False})
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, ready_timeout_s)
        yield base
    finally:
        # Serve goes with the Ray of our own: serve.shutdown() would first drain every replica
        # gracefully, seconds that measure nothing
        ray.shutdown()


def warm_up(base_url: str, token: str, predict_body: Mapping[str, Any] | None = None) -> None:
    """One status read and one prediction before the load: a Model replica loads its model (and
    torch) on its first call, a second or more, which is start-up, not what the gates judge."""
    import requests

    headers = {"Authorization": f"Bearer {token}"}
    calls = [("GET", "/api/v1/status", None)]
    if predict_body is not None:
        calls.append(("POST", "/api/v1/predict", predict_body))
    for method, path, body in calls:
        response = requests.request(method, base_url + path, headers=headers, json=body, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"{method} {path} before the load: {response.status_code} "
                               f"{response.text[:300]}")  # fmt: skip


def load_app_args(tmp: Path, max_replicas: int = 2) -> Any:
    """The benchmark's app: a paced replay that goes on with synthetic bars (so it keeps taking
    orders), three rule strategies, the registry under tmp/models, no practical rate limit, the
    Gateway and Model autoscaled up to `max_replicas` each (1: fixed, so a test knows the
    capacity and never waits for a replica to start)."""
    from n1v1.serve.args import AppArgs

    return AppArgs.model_validate({
        "store_url": f"sqlite:///{tmp / 'load.db'}",
        "model_root": str(tmp / "models"),
        "run_id": "load",
        "feed": {"kind": "replay", "datasets": ["coinbase_BTC-USD_1m", "coinbase_LTC-USD_1m"],
                 "start": "2018-04-04", "end": "2018-04-05", "bars_per_second": 5,
                 "after_replay": "synthetic"},
        "strategies": [{"name": "ema_cross", "params": {"fast": 12, "slow": 48}},
                       {"name": "rsi"}, {"name": "sma_cross"}],
        "risk": {"fraction": 0.2},  # leaves cash for the operator's manual buys
        "api": {"rate_limit_per_s": 1e6, "rate_burst": 1_000_000, "max_replicas": max_replicas},
        "model": {"max_replicas": max_replicas},
    })  # fmt: skip


# --------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=24)
    ap.add_argument("--spawn-rate", type=float, default=12.0)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--thresholds", default="", help="JSON: per-route overrides of the gates")
    ap.add_argument("--burst-clients", type=int, default=400)
    ap.add_argument("--out", type=Path, help="keep Locust's CSV files here")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 8 users for 10 s")
    a = ap.parse_args()
    if a.quick:
        a.users, a.spawn_rate, a.duration = 8, 8.0, 10.0
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from api import register_tiny  # bench/api.py's copy of the tests' tiny model

    from n1v1.serve.gateway import MAX_ONGOING_REQUESTS, MAX_QUEUED_REQUESTS

    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="n1v1-bench-load-") as tmpdir:
        tmp = Path(tmpdir)
        row = register_tiny(tmp / "models")
        out = a.out or tmp / "locust"
        print(f"## load: {a.users} users (spawn rate {a.spawn_rate:g}/s) for {a.duration:g} s; "
              f"load average {os.getloadavg()[0]:.2f} at start", flush=True)  # fmt: skip
        with serve_app(load_app_args(tmp), token) as base:
            predict_body = {"model": "tiny", "rows": [row]}
            warm_up(base, token, predict_body)
            run = run_locust(
                base, token, a.duration, a.users, out, spawn_rate=a.spawn_rate,
                predict_body=predict_body,
                thresholds=json.loads(a.thresholds) if a.thresholds else None,
            )  # fmt: skip
            print(route_table(run.routes))
            print("\nper-route gates (locustfile THRESHOLDS):")
            print("\n".join(f"- {line}" for line in run.gate))
            capacity = MAX_ONGOING_REQUESTS + MAX_QUEUED_REQUESTS
            print(f"\n## overload: {a.burst_clients} concurrent GET /api/v1/status, twice "
                  f"(the Gateway takes {MAX_ONGOING_REQUESTS} per replica and the proxy queues "
                  f"{MAX_QUEUED_REQUESTS}: {capacity} with one replica)", flush=True)  # fmt: skip
            summary = burst_summary(burst(f"{base}/api/v1/status", token, a.burst_clients))
            print(json.dumps(summary, indent=2))
    overload_ok = (
        not summary["no_answer"]
        and summary["shed_without_retry_after"] == 0
        and set(summary["by_status"]) <= {200, 429, 503}
    )
    print(
        f"\nload gates: {'PASS' if run.passed else 'FAIL'}; overload (every answer a 200 or a "
        f"503/429 with Retry-After, none timed out): {'PASS' if overload_ok else 'FAIL'}"
    )
    return 0 if run.passed and overload_ok else 1


if __name__ == "__main__":
    sys.exit(main())
