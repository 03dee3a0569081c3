"""HTTP API and engine latency, measured in one run: the Serve app next to the same handlers on a
bare uvicorn, and the paper engine's bar-to-decision time.

    python bench/api.py [--duration 5] [--warmup 1] [--clients 1,16,64] [--max-load 1.0]
                        [--skip bare,serve,engine] [--json PATH] [--quick]

1. GET /api/v1/status and POST /api/v1/predict (one row, the tiny model) at 1, 16 and 64
   concurrent clients: requests/s, p50 and p99 latency, against
   - Serve: `build_app(AppArgs(...))` + `serve.run` on a local `ray.init(num_cpus=4)` (proxy ->
     Gateway -> Engine / Model replicas), and
   - bare: the same `create_api` handlers on one uvicorn process, over an in-process session and
     an in-process `PromotedModel` (no Ray anywhere).
   Both run a paper session replaying bundled bars at a modest pace meanwhile, and both have their
   per-token rate limit raised far above what the load can reach, so the limiter never answers 429.
   The load comes from this process: an asyncio + aiohttp client (uvloop) with N workers for a
   fixed time after a warm-up; every figure is over all requests started in the measured window.
   Each cell also reports the CPU time every process spent per request (from /proc).
   - floor: a trivial Serve FastAPI deployment in the same Serve instance, with the Gateway's
     deployment options, returning a constant JSON of the same size as a real status answer
     (one status body, parsed once): what Serve itself costs per request on this machine. Each
     status cell is measured right after (or before) the floor cell of the same client count.
2. The engine's bar-to-decision latency with 10 symbols and 3 strategies on synthetic bars: (a)
   the decision alone (`TradingSession.step_without_store`: bar history + `TradingEngine.on_bar`
   with `RollingTargets`, in-memory journal) and (b) a whole step of a running session over SQLite
   (the `on_step` decision latency, and `_process_step` including the transaction and snapshot).

Targets (printed as PASS/FAIL): GET /api/v1/status through N1V1 reaches >= 70 % of the floor's
requests per second at each client count, and its p99 at 16 clients is <= 2x the floor's (issue
12: our own cost, measured side by side); decision p99 < 5 ms. The Serve / bare uvicorn ratio is
printed as information. BENCHMARKS.md ("HTTP API and engine latency") copies the output. On a
shared VM each part first waits (up to --max-wait s) for the 1-minute load average to drop below
--max-load, and prints the load it started at.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import io
import json
import multiprocessing as mp
import os
import pstats
import secrets
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# One thread per process (torch here, in the bare server and in every Ray worker), as in bench/ml.py
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import machine as bench_machine  # noqa: E402

from n1v1.cli.local_ray import free_port  # noqa: E402
from n1v1.config import Settings  # noqa: E402
from n1v1.live.config import StrategySlot  # noqa: E402
from n1v1.ml.features import FeatureSpec  # noqa: E402
from n1v1.serve.args import ApiArgs, AppArgs, ReplayFeedArgs, replay_feed  # noqa: E402

STATUS, PREDICT = "GET /api/v1/status", "POST /api/v1/predict"
FLOOR = "GET /floor/ping"
UNTHROTTLED = ApiArgs(rate_limit_per_s=1e6, rate_burst=1_000_000)  # the bounds ApiArgs allows
REPLAY = ReplayFeedArgs(
    datasets=["coinbase_BTC-USD_1m", "coinbase_LTC-USD_1m"],
    start="2018-04-04",
    bars_per_second=5.0,
)
APP_SLOTS = [
    StrategySlot(name="ema_cross", params={"fast": 12, "slow": 48}),
    StrategySlot(name="rsi"),
    StrategySlot(name="sma_cross"),
]
ENGINE_SLOTS = [StrategySlot(name="ema_cross"), StrategySlot(name="rsi"), StrategySlot(name="macd")]
ENGINE_SETTINGS = Settings.model_validate(
    {"risk": {"fraction": 0.1, "stop_loss_pct": 0.02, "max_open_positions": 10}}
)
ENGINE_SYMBOLS = 10
TARGETS = {
    "status_over_floor_rps_min": 0.7,
    "status_p99_over_floor_max_at_16": 2.0,
    "decision_p99_ms": 5.0,
}
# serve_config.yaml's application logging, applied to both Serve applications here
SERVE_LOGGING = {"enable_access_log": False}


def machine_info() -> dict[str, str]:
    return bench_machine.machine_info(
        "numpy", "pandas", "ray", "fastapi", "uvicorn", "aiohttp", "torch", "sqlalchemy",
        extra={"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
               **{k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")}},
    )  # fmt: skip


# --------------------------------------------------------------------------- the tiny model
# Copied from tests/test_ml_signal.py (register_tiny): an untrained, seeded model is all a latency
# benchmark of the serving path needs; its output is real MLP arithmetic on real features.
FEATURES = FeatureSpec(
    return_horizons=(1, 3),
    volatility_horizons=(5,),
    rsi_period=5,
    macd=(3, 6, 2),
    atr_period=5,
    bollinger_period=5,
    volume_z_period=6,
    adx_period=5,
)


def random_walk_bars(n: int = 300, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_t(3, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, n))
    volume = rng.lognormal(5.0, 0.6, n)
    index = pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def register_tiny(root: Path) -> list[float]:
    """Register and promote "tiny" under `root`; returns one raw feature row to predict on."""
    from n1v1.ml.features import build_features, feature_hash, feature_names
    from n1v1.ml.models import ModelSpec, build_model
    from n1v1.ml.registry import ModelRegistry
    from n1v1.ml.scaling import Standardizer

    raw = build_features(random_walk_bars(), FEATURES).to_numpy()
    finite = raw[np.isfinite(raw).all(axis=1)]
    scaler = Standardizer().fit(finite)
    spec = ModelSpec(kind="mlp", hidden=(8,), window=4, channels=4, kernel_size=2, levels=2)
    net = build_model(spec, raw.shape[1], 2, seed=1)
    card = {
        "name": "tiny",
        "model_spec": spec.model_dump(mode="json"),
        "feature_spec": FEATURES.model_dump(mode="json"),
        "feature_names": feature_names(FEATURES),
        "feature_hash": feature_hash(FEATURES),
        "label_spec": {"horizon": 3, "kind": "binary"},
        "n_features": raw.shape[1],
        "n_classes": 2,
        "threshold": 0.5,
        "metrics": {"val_auc": 0.5},
    }
    registry = ModelRegistry(root)
    version = registry.register(
        "tiny", state_dict=net.state_dict(), scaler=scaler.to_dict(), card=card
    )
    registry.promote("tiny", version, force=True)
    return [float(v) for v in finite[-1]]


# --------------------------------------------------------------------------- load generator
def _cpu_busy_total() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat, for the machine's load during a cell."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user..steal; guest time is already inside user
    return total - fields[3] - fields[4], total


def _proc_cpu() -> dict[int, tuple[str, float, int]]:
    """pid -> (label, CPU seconds so far, parent pid) of every process, to see who pays for a
    request."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / tick
        out[int(entry.name)] = (_proc_label(argv), cpu, int(fields[1]))
    return out


def _proc_label(argv: list[bytes]) -> str:
    words = [w.decode(errors="replace") for w in argv if w]
    if not words:
        return "kernel"
    if words[0].startswith("ray::"):
        return words[0].removeprefix("ray::").split(".", 1)[0]
    scripts = [Path(w).name for w in words[1:3] if w.endswith(".py")]
    return Path(words[0]).name + (f" {scripts[0]}" if scripts else "")


def _descendants(procs: dict[int, tuple[str, float, int]], root: int) -> set[int]:
    """`root` and every process below it: the Ray this script started (its GCS, raylet and
    workers are its children), told apart from other sessions' Rays on a shared machine."""
    children: dict[int, list[int]] = {}
    for pid, (_label, _cpu, parent) in procs.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _cpu_per_request(before: dict, after: dict, requests: int, me: int) -> dict[str, float]:
    """ms of CPU per request by process label over the measured window (top consumers); every
    process outside this script's own tree counts as "other processes"."""
    ours = _descendants(after, me)
    spent: Counter[str] = Counter()
    for pid, (label, seconds, _parent) in after.items():
        if pid in before:
            name = "load generator" if pid == me else label if pid in ours else "other processes"
            spent[name] += seconds - before[pid][1]
    return {k: 1e3 * v / max(requests, 1) for k, v in spent.most_common(8) if v > 0}


async def _drive(
    url: str, method: str, body: bytes | None, token: str, clients: int, warmup: float,
    duration: float,
) -> dict[str, Any]:  # fmt: skip
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    latencies: list[float] = []
    ends: list[float] = []
    errors: Counter[str] = Counter()
    marks: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:
        measure_from = time.perf_counter() + warmup
        stop_at = measure_from + duration

        async def worker() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    async with http.request(method, url, data=body) as resp:
                        await resp.read()
                        outcome = "ok" if 200 <= resp.status < 300 else str(resp.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = type(exc).__name__
                t1 = time.perf_counter()
                if t0 < measure_from:
                    continue
                if outcome == "ok":
                    latencies.append(t1 - t0)
                    ends.append(t1)
                else:
                    errors[outcome] += 1

        async def sampler() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            marks["cpu"], marks["machine"] = time.process_time(), _cpu_busy_total()
            marks["procs"] = _proc_cpu()

        await asyncio.gather(sampler(), *(worker() for _ in range(clients)))
    busy, total = _cpu_busy_total()
    cpu_end = time.process_time()
    by_process = _cpu_per_request(marks["procs"], _proc_cpu(), len(latencies), os.getpid())
    window = (max(ends) if ends else stop_at) - measure_from
    lat = np.asarray(latencies) * 1e3
    return {
        "requests": len(latencies),
        "seconds": window,
        "rps": len(latencies) / window if window > 0 else 0.0,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "max_ms": float(lat.max()) if len(lat) else float("nan"),
        "errors": dict(errors),
        "client_cpu_pct": 100.0 * (cpu_end - marks["cpu"]) / window,
        "machine_cpu_pct": 100.0 * (busy - marks["machine"][0]) / (total - marks["machine"][1]),
        "cpu_ms_per_request_by_process": by_process,
    }


def run_cell(base: str, route: str, body: bytes | None, token: str, clients: int,
             warmup: float, duration: float) -> dict[str, Any]:  # fmt: skip
    import uvloop

    method, path = route.split(" ", 1)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_drive(base + path, method, body, token, clients, warmup, duration))


def check_routes(base: str, token: str, predict_body: bytes) -> None:
    """One request per route before any timing: a benchmark of error pages is worth nothing."""
    import requests

    auth = {"Authorization": f"Bearer {token}"}
    status = requests.get(f"{base}/api/v1/status", headers=auth, timeout=60)
    json_auth = {**auth, "Content-Type": "application/json"}
    pred = requests.post(f"{base}/api/v1/predict", headers=json_auth, data=predict_body, timeout=60)
    if status.status_code != 200 or status.json().get("state") != "running":
        raise RuntimeError(f"{base}: status {status.status_code} {status.text[:300]}")
    if pred.status_code != 200 or len(pred.json().get("probabilities", [])) != 1:
        raise RuntimeError(f"{base}: predict {pred.status_code} {pred.text[:300]}")


def wait_ready(base: str, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    import requests

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{base}: server died while starting ({last})")
        try:
            r = requests.get(f"{base}/readyz", timeout=5)
            if r.status_code == 200:
                return
            last = r.text[:300]
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise RuntimeError(f"{base}: not ready after {timeout:.0f} s ({last})")


def wait_for_quiet(max_load: float, max_wait: float, part: str) -> float:
    """On a shared VM, start a part only once the 1-minute load average has dropped below
    `max_load` (or after `max_wait` seconds anyway); returns the load it started at."""
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(5)
    load = os.getloadavg()[0]
    note = "" if load <= max_load else f" (still above {max_load:g} after {max_wait:g} s)"
    print(f"[{part}: 1-minute load average {load:.2f} at start{note}]", flush=True)
    return load


# --------------------------------------------------------------------------- bare uvicorn
class BareBackend:
    """`n1v1.serve.api.Backend` in one process: the session's snapshot and commands as in
    tests/dashboard_api.py's LocalBackend, plus a real in-process model (`PromotedModel`)."""

    def __init__(self, session: Any, model_root: str) -> None:
        from n1v1.ml.registry import ModelRegistry

        self.session = session
        self.registry = ModelRegistry(model_root)
        self._models: dict[str, Any] = {}

    async def status(self) -> dict[str, Any]:
        return self.session.snapshot

    async def trades(self, symbol: str | None, limit: int, offset: int) -> dict[str, Any]:
        return self.session.trades_page(symbol, limit, offset)

    async def command(self, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]:
        return await asyncio.wrap_future(self.session.submit(kind, payload, actor))

    async def predict(self, model: str, rows: list[list[float]]) -> dict[str, Any]:
        """What the Model deployment answers, computed inline (one row costs ~0.1 ms)."""
        from n1v1.live.session import CommandError
        from n1v1.ml.registry import RegistryError
        from n1v1.ml.serving import PromotedModel, split_model_id

        try:
            name, version = split_model_id(model)
            if model not in self._models:
                self._models[model] = PromotedModel(self.registry, name, version=version)
        except (RegistryError, ValueError) as exc:
            raise CommandError("not_found", str(exc)) from None
        loaded = self._models[model].current()
        bad = next((i for i, r in enumerate(rows) if len(r) != loaded.n_features), None)
        if bad is not None:
            raise CommandError("invalid", f"rows.{bad}: expected {loaded.n_features} features",
                               {"field": f"body.rows.{bad}"})  # fmt: skip
        probs = loaded.predict_proba(np.asarray(rows, dtype=np.float64))
        return {
            "model": model,
            "version": loaded.version,
            "threshold": loaded.threshold,
            "probabilities": [[None if np.isnan(v) else float(v) for v in row] for row in probs],
        }

    async def models(self) -> dict[str, Any]:
        return {"models": [{"name": n} for n in self.registry.list_models()]}

    async def submit_backtest(self, request: dict[str, Any], actor: str) -> str:
        from n1v1.live.session import CommandError

        raise CommandError("unavailable", "no backtest runner in the bare benchmark server")

    async def ready(self) -> dict[str, bool]:
        return {"store": True, "engine": self.session.state == "running", "model": True}


def bare_server(ports: Any, app_args: dict[str, Any], token_hash: str) -> None:
    """Child process: the Engine deployment's session + create_api on uvicorn, no Ray."""
    import torch
    import uvicorn

    from n1v1.live.session import TradingSession
    from n1v1.serve.api import create_api
    from n1v1.store import create_store

    torch.set_num_threads(1)
    args = AppArgs.model_validate(app_args)
    store = create_store(args.store_url)
    session = TradingSession(
        args.settings(), args.strategies, replay_feed(args.feed), store,
        window=args.engine.window, lease_ttl=args.engine.lease_ttl_s,
    )  # fmt: skip
    session.start()
    app = create_api(
        BareBackend(session, args.model_root), store, admin_token_hash=token_hash,
        rate_limit_per_s=args.api.rate_limit_per_s, rate_burst=args.api.rate_burst,
        max_body_bytes=args.api.max_body_bytes,
    )  # fmt: skip
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    ports.put(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    try:
        server.run(sockets=[sock])  # returns on SIGTERM
    finally:
        session.stop()
        store.dispose()


# --------------------------------------------------------------------------- 1. the API
def app_args(tmp: Path, name: str) -> AppArgs:
    return AppArgs(
        store_url=f"sqlite:///{tmp / name}.db",
        model_root=str(tmp / "models"),
        feed=REPLAY,
        strategies=APP_SLOTS,
        api=UNTHROTTLED,
        run_id=name,
    )


def status_answer(base: str, token: str) -> bytes:
    """One real GET /api/v1/status body (the floor answers a constant of its size)."""
    return requests_get(f"{base}/api/v1/status", token)


def requests_get(url: str, token: str) -> bytes:
    import requests

    response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    response.raise_for_status()
    return response.content


def measure_api(label: str, base: str, token: str, bodies: dict[str, bytes | None],
                a: argparse.Namespace,
                client_counts: list[int] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    cells = []
    for route, body in bodies.items():
        for clients in client_counts or a.clients:
            load = os.getloadavg()[0]
            cell = run_cell(base, route, body, token, clients, a.warmup, a.duration)
            cell.update(target=label, route=route, clients=clients, load_at_start=load)
            cells.append(cell)
            print(
                f"{label:5s} {route:22s} {clients:>3} clients: {cell['rps']:8,.0f} req/s  "
                f"p50 {cell['p50_ms']:7.2f} ms  p99 {cell['p99_ms']:7.2f} ms  "
                f"({cell['requests']:,} requests, errors {cell['errors'] or 0}, client CPU "
                f"{cell['client_cpu_pct']:.0f} % of a core, machine {cell['machine_cpu_pct']:.0f} %"
                f" of all cores, load {load:.2f} at start)\n      CPU ms per request: "
                + ", ".join(
                    f"{k} {v:.2f}" for k, v in cell["cpu_ms_per_request_by_process"].items()
                ),
                flush=True,
            )
    return cells


def bench_bare(tmp: Path, token: str, bodies: dict[str, bytes | None], a: argparse.Namespace):
    from n1v1.serve.api import hash_token

    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    args = app_args(tmp, "bare").model_dump(mode="json")
    report_load = wait_for_quiet(a.max_load, a.max_wait, "bare")
    proc = ctx.Process(target=bare_server, args=(ports, args, hash_token(token)), daemon=True)
    proc.start()
    try:
        port = ports.get(timeout=120)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, 120, proc.is_alive)
        check_routes(base, token, bodies[PREDICT])
        cells = measure_api("bare", base, token, bodies, a)
        return [dict(c, part_load_at_start=report_load) for c in cells]
    finally:
        proc.terminate()
        proc.join(15)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def floor_app(payload: dict[str, Any], gateway: Any) -> Any:
    """The cheapest Serve ingress there is: what every request through Serve costs at least.
    It answers `payload` (a real status answer, so the same number of bytes travels) as a
    trivial FastAPI app does, under the deployment options of `gateway` (the Gateway as
    `build_app` configured it: request limits, backpressure answer, CPU share, autoscaling), so
    the two differ by N1V1's code alone."""
    from fastapi import FastAPI
    from ray import serve

    floor = FastAPI()

    @floor.get("/ping")
    async def ping() -> dict[str, Any]:
        return payload

    config = gateway._deployment_config  # a benchmark may read Serve's private config

    @serve.deployment(
        max_ongoing_requests=gateway.max_ongoing_requests,
        max_queued_requests=gateway.max_queued_requests,
        backpressure_config=config.backpressure_config,
        autoscaling_config=config.autoscaling_config.model_dump(exclude_unset=True),
        ray_actor_options=gateway.ray_actor_options,
    )
    @serve.ingress(floor)
    class Floor:
        pass

    return Floor.bind()


def bench_serve(tmp: Path, token: str, bodies: dict[str, bytes | None], a: argparse.Namespace):
    import ray
    from ray import serve

    from n1v1.serve.app import TOKEN_ENV, build_app

    os.environ[TOKEN_ENV] = token  # build_app hashes it; replicas only see the hash
    port = free_port()
    replicas: dict[str, Any] = {}
    part_load = wait_for_quiet(a.max_load, a.max_wait, "serve")
    try:
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(app_args(tmp, "serve"))
        serve.run(app, name="n1v1", route_prefix="/", logging_config=SERVE_LOGGING)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, 180)
        check_routes(base, token, bodies[PREDICT])
        status_body = status_answer(base, token)
        floor = floor_app(json.loads(status_body), app._bound_deployment)
        serve.run(floor, name="floor", route_prefix="/floor", logging_config=SERVE_LOGGING)
        floor_body = requests_get(f"{base}/floor/ping", token)
        print(
            "floor: a trivial FastAPI deployment (async GET returning a constant "
            f"{len(floor_body):,}-byte JSON; a status answer here is {len(status_body):,} bytes) "
            "through the same proxy, with the Gateway's deployment options (request limits, "
            "autoscaling, CPU share); no n1v1 code, so it "
            "is Ray Serve's own cost per request on this machine. Each status cell is followed "
            "by the floor's.",
            flush=True,
        )
        cells = []
        for route, body in bodies.items():
            for clients in a.clients:
                cells += measure_api("serve", base, token, {route: body}, a, [clients])
                if route == STATUS:
                    cells += measure_api("floor", base, token, {FLOOR: None}, a, [clients])
        cells = [dict(c, part_load_at_start=part_load) for c in cells]
        for name, dep in serve.status().applications["n1v1"].deployments.items():
            replicas[name] = {getattr(k, "value", str(k)): v for k, v in dep.replica_states.items()}
        print(f"serve replicas at the end: {replicas}")
        return cells, replicas
    finally:
        if (
            ray.is_initialized()
        ):  # else serve.shutdown() could find and stop another cluster's Serve
            try:
                serve.shutdown()
            finally:
                ray.shutdown()


# --------------------------------------------------------------------------- 2. engine latency
def engine_frames(n_bars: int) -> dict[str, pd.DataFrame]:
    from n1v1.data.synthetic import generate_bars

    frames = generate_bars(n_bars, symbols=ENGINE_SYMBOLS, timeframe="1m", seed=0)
    assert isinstance(frames, dict)
    return frames


def engine_session(frames: dict[str, pd.DataFrame], store_url: str, **kw: Any) -> Any:
    from n1v1.live.replay import PacedReplay
    from n1v1.live.session import TradingSession
    from n1v1.store import create_store

    store = create_store(store_url)
    feed = PacedReplay(frames, 0)
    return TradingSession(ENGINE_SETTINGS, ENGINE_SLOTS, feed, store, window=500, **kw), store


def all_steps(frames: dict[str, pd.DataFrame]) -> list[Any]:
    from n1v1.live.replay import PacedReplay

    feed, steps = PacedReplay(frames, 0), []
    while (step := feed.next_step(timeout=0.0)) is not None:
        steps.append(step)
    return steps


def summary(seconds: list[float], cpu: list[float] | None = None) -> dict[str, float]:
    """Wall-time percentiles, and the same of the thread's CPU time when given: on a shared VM
    the wall time includes waiting for a core, the CPU time only what the step itself costs."""
    ms = np.asarray(seconds) * 1e3
    out = {
        "steps": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
    }
    if cpu is not None:
        cpu_ms = np.asarray(cpu) * 1e3
        out.update(cpu_p50_ms=float(np.percentile(cpu_ms, 50)),
                   cpu_p99_ms=float(np.percentile(cpu_ms, 99)))  # fmt: skip
    return out


def decision_only(frames: dict[str, pd.DataFrame], tmp: Path) -> dict[str, Any]:
    """(a) `step_without_store` of an unstarted session (its InMemoryJournal), per step."""
    session, store = engine_session(frames, f"sqlite:///{tmp / 'decide.db'}")
    warm = session.history.window
    wall: list[float] = []
    cpu: list[float] = []
    try:
        for i, (ts, bars) in enumerate(all_steps(frames)):
            c0, t0 = time.thread_time(), time.perf_counter()
            session.step_without_store(ts, bars)
            t1, c1 = time.perf_counter(), time.thread_time()
            if i >= warm:
                wall.append(t1 - t0)
                cpu.append(c1 - c0)
        journal = session.engine.journal
        result = summary(wall, cpu)
        result.update(window=warm, orders=len(journal.orders), signals=len(journal.signals))
        return result
    finally:
        store.dispose()


def full_steps(frames: dict[str, pd.DataFrame], tmp: Path) -> dict[str, Any]:
    """(b) A running session over SQLite, fed as fast as it takes the steps (PacedReplay 0)."""
    decided: list[float] = []
    whole: list[float] = []
    whole_cpu: list[float] = []
    session, store = engine_session(
        frames, f"sqlite:///{tmp / 'steps.db'}", on_step=lambda s, _e: decided.append(s)
    )
    inner = session._process_step

    def timed_step(ts: pd.Timestamp, bars: dict[str, Any]) -> None:
        c0, t0 = time.thread_time(), time.perf_counter()  # the loop thread's own CPU time
        inner(ts, bars)
        whole.append(time.perf_counter() - t0)
        whole_cpu.append(time.thread_time() - c0)

    session._process_step = timed_step  # type: ignore[method-assign]
    n_steps = len(session.feed)
    warm = session.history.window
    try:
        started = time.perf_counter()
        session.start()
        while session.snapshot.get("step") != n_steps or not session.feed.exhausted:
            if not session.alive:
                raise RuntimeError(f"session died: {session.state} {session.failure}")
            time.sleep(0.05)
        wall = time.perf_counter() - started
    finally:
        session.stop()
        store.dispose()
    return {
        "decision": summary(decided[warm:]),
        "process_step": summary(whole[warm:], whole_cpu[warm:]),
        "window": warm,
        "steps_per_s_whole_run": n_steps / wall,
    }


def median_us(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of single calls (robust to the odd preempted call on a shared VM)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def strategy_costs(frames: dict[str, pd.DataFrame], window: int, repeat: int = 300) -> dict:
    """Per-call time of what one decision repeats per symbol (a frame rebuild) and per symbol and
    strategy (a strategy on the `window`-bar frame): the figures behind the profile."""
    from n1v1.domain import Bar
    from n1v1.live.config import LiveConfig, build_strategies
    from n1v1.live.history import BarHistory

    symbol, history = "SYN0", BarHistory(window)
    for row in frames[symbol].iloc[:window].itertuples():
        history.append(symbol, Bar(row.Index, row.open, row.high, row.low, row.close, row.volume))

    def rebuild() -> None:
        history._frames.clear()  # what the next append does: the cached frame is stale
        history.frame(symbol)

    n = history.count(symbol)
    ns = history._times[symbol][:n]
    stamps = [pd.Timestamp(int(t), tz="UTC") for t in ns]
    bars = history.frame(symbol)
    costs = {
        "BarHistory.frame rebuild (per symbol)": median_us(rebuild, repeat),
        "  for comparison: an index from a list of Timestamps": median_us(
            lambda: pd.DatetimeIndex(stamps, name="timestamp"), repeat
        ),
        "  of which the index from the int64 array": median_us(
            lambda: pd.DatetimeIndex(ns.view("M8[ns]"), name="timestamp").tz_localize("UTC"),
            repeat,
        ),
        "frame['close'].to_numpy() (one column, as Strategy.columns reads it)": median_us(
            lambda: bars["close"].to_numpy(dtype=np.float64), repeat
        ),
    }
    strategies = build_strategies(ENGINE_SLOTS, LiveConfig(), ENGINE_SETTINGS)
    for slot_id, strategy in strategies.items():
        costs[f"{slot_id}.target_positions, frame already built"] = median_us(
            lambda s=strategy: s.target_positions(bars), repeat
        )

    def one_symbol() -> None:  # what a step costs per symbol: a new frame, every strategy on it
        rebuild()
        for strategy in strategies.values():
            strategy.target_positions(history.frame(symbol))

    costs["one symbol of a step: frame rebuild + the 3 strategies on the new frame"] = median_us(
        one_symbol, repeat
    )
    return costs


def profile_decisions(frames: dict[str, pd.DataFrame], tmp: Path, steps: int) -> pstats.Stats:
    """cProfile over `steps` steady-state decisions (a fresh session, warmed up unprofiled)."""
    session, store = engine_session(frames, f"sqlite:///{tmp / 'profile.db'}")
    warm = session.history.window
    todo = all_steps(frames)[: warm + steps]
    try:
        for ts, bars in todo[:warm]:
            session.step_without_store(ts, bars)
        profiler = cProfile.Profile()
        profiler.enable()
        for ts, bars in todo[warm:]:
            session.step_without_store(ts, bars)
        profiler.disable()
    finally:
        store.dispose()
    return pstats.Stats(profiler, stream=io.StringIO())


# (label, file suffix, function name, "cum" or "own") of the profile's breakdown, in print order
PROFILE_PARTS = [
    ("the whole decision (`step_without_store`)", "n1v1/live/session.py", "step_without_store",
     "cum"),
    ("  RollingTargets.target (all strategies, all symbols)", "n1v1/live/history.py", "target",
     "cum"),
    ("    BarHistory.frame: a new DataFrame per symbol per bar", "n1v1/live/history.py", "frame",
     "cum"),
    ("      of which DatetimeIndex from the list of Timestamps", "pandas/core/indexes/datetimes.py",
     "__new__", "cum"),
    ("    strategies' target_positions", "n1v1/strategies/", "target_positions", "cum"),
    ("      of which Strategy.columns (reading columns off the frame)",
     "n1v1/strategies/base.py", "columns", "cum"),
    ("      of which n1v1.indicators (own time)", "n1v1/indicators/", "*", "own"),
    ("  BarHistory.append", "n1v1/live/history.py", "append", "cum"),
]  # fmt: skip


def profile_breakdown(stats: pstats.Stats, steps: int) -> list[tuple[str, float, float]]:
    """(label, ms per step under the profiler, share of the decision) for PROFILE_PARTS."""
    table = stats.stats  # type: ignore[attr-defined]
    rows = []
    for label, path, func, kind in PROFILE_PARTS:
        seconds = sum(
            (tt if kind == "own" else ct)
            for (file, _line, name), (_cc, _nc, tt, ct, _callers) in table.items()
            if path in file.replace("\\", "/") and (func == "*" or name == func)
        )
        rows.append((label, 1e3 * seconds / steps, 0.0))
    total = rows[0][1] or 1.0
    engine_rest = rows[0][1] - rows[1][1] - rows[-1][1]
    rows.append(("  the rest: on_bar's own work (orders, fills, risk, journal)", engine_rest, 0.0))
    return [(label, ms, ms / total) for label, ms, _ in rows]


def top_functions(stats: pstats.Stats, n: int) -> list[str]:
    """The n functions with the most own time, with paths shortened."""
    table = stats.stats  # type: ignore[attr-defined]
    ranked = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    lines = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in ranked:
        short = file.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "")
        short = short.split("site-packages/")[-1]
        lines.append(f"{tt:7.3f} s own {ct:7.3f} s cum {nc:>8,} calls  {short}:{line}({name})")
    return lines


# --------------------------------------------------------------------------- main
def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each")
    ap.add_argument("--clients", default="1,16,64", help="concurrent clients, comma-separated")
    ap.add_argument("--engine-bars", type=int, default=2500, help="synthetic bars per symbol")
    ap.add_argument("--profile-steps", type=int, default=300)
    ap.add_argument("--profile", action="store_true", help="profile the decision even if it passes")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: bare,serve,engine")
    ap.add_argument("--max-load", type=float, default=1.0, help="wait for a quieter machine")
    ap.add_argument("--max-wait", type=float, default=600.0, help="... for at most this long")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run, not a benchmark"
    )
    a = ap.parse_args()
    a.clients = [int(c) for c in a.clients.split(",")]
    if a.quick:
        a.duration, a.warmup, a.engine_bars, a.profile_steps = 1.0, 0.3, 800, 100
    skip = set(filter(None, a.skip.split(",")))

    info = machine_info()
    print("## machine\n" + "\n".join(f"- {k}: {v}" for k, v in info.items()))
    print(f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"- command: python bench/api.py {' '.join(sys.argv[1:])}".rstrip())
    report: dict[str, Any] = {"machine": info, "argv": sys.argv[1:], "targets": TARGETS}

    with tempfile.TemporaryDirectory(prefix="n1v1-bench-api-") as tmpdir:
        tmp = Path(tmpdir)
        if not {"bare", "serve"} <= skip:
            api_part(tmp, a, skip, report)
        if "engine" not in skip:
            engine_part(tmp, a, report)
    if a.json:
        a.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {a.json}")


def api_part(tmp: Path, a: argparse.Namespace, skip: set[str], report: dict[str, Any]) -> None:
    token = secrets.token_urlsafe(24)
    row = register_tiny(tmp / "models")
    bodies: dict[str, bytes | None] = {
        STATUS: None,
        PREDICT: json.dumps({"model": "tiny", "rows": [row]}).encode(),
    }
    print(
        f"\n## 1. API: {a.duration:g} s per cell after {a.warmup:g} s warm-up; clients {a.clients}"
        f"\nboth servers: paper session replaying {', '.join(REPLAY.datasets)} at "
        f"{REPLAY.bars_per_second:g} bars/s with {', '.join(s.slot_id for s in APP_SLOTS)}; "
        f"predict = 1 row of {len(row)} features on the tiny MLP"
        f"\nrate limit raised to {UNTHROTTLED.rate_limit_per_s:g}/s, burst "
        f"{UNTHROTTLED.rate_burst:,} per token, so the limiter never throttles the load "
        "(any 429 would show under errors)"
        "\nload: this process, asyncio + aiohttp on uvloop, N workers on keep-alive connections",
        flush=True,
    )
    cells: list[dict[str, Any]] = []
    if "bare" not in skip:
        print("\n### bare: create_api on one uvicorn process (uvloop, httptools), no Ray")
        cells += bench_bare(tmp, token, bodies, a)
    if "serve" not in skip:
        print("\n### serve: build_app + serve.run, ray.init(num_cpus=4), proxy -> Gateway -> "
              "Engine / Model")  # fmt: skip
        serve_cells, replicas = bench_serve(tmp, token, bodies, a)
        cells += serve_cells
        report["serve_replicas"] = replicas
    report["api"] = cells

    by = {(c["target"], c["route"], c["clients"]): c for c in cells}
    floor_part(by, a, report)
    print("\n## API summary (ratio = Serve / bare throughput; information, not a target)")
    print("| route | clients | Serve req/s | Serve p50 / p99 ms | bare req/s | bare p50 / p99 ms "
          "| ratio |\n|---|---|---|---|---|---|---|")  # fmt: skip
    ratios = []
    for route in bodies:
        for clients in a.clients:
            s, b = by.get(("serve", route, clients)), by.get(("bare", route, clients))
            ratio = s["rps"] / b["rps"] if s and b and b["rps"] > 0 else None
            if ratio is not None:
                ratios.append((route, clients, ratio))
            print(
                f"| {route} | {clients} | {fmt_rps(s)} | {fmt_lat(s)} | {fmt_rps(b)} | "
                f"{fmt_lat(b)} | {'' if ratio is None else f'{ratio:.2f}'} |"
            )
    report["ratios"] = [{"route": r, "clients": c, "serve_over_bare": x} for r, c, x in ratios]


def floor_part(by: dict[tuple[str, str, int], dict[str, Any]], a: argparse.Namespace,
               report: dict[str, Any]) -> None:  # fmt: skip
    """GET /api/v1/status through N1V1 against the trivial deployment, cell by cell, and the
    targets of issue 12 (PASS/FAIL)."""
    rows = []
    for clients in a.clients:
        s, f = by.get(("serve", STATUS, clients)), by.get(("floor", FLOOR, clients))
        if s and f and f["rps"] > 0:
            rows.append((clients, s, f, s["rps"] / f["rps"], s["p99_ms"] / f["p99_ms"]))
    if not rows:
        return
    print("\n## GET /api/v1/status through N1V1 against the floor (a trivial Serve FastAPI "
          "deployment answering a constant JSON of the same size)")  # fmt: skip
    print(
        "| clients | N1V1 req/s | N1V1 p50 / p99 ms | floor req/s | floor p50 / p99 ms | "
        "req/s ratio | p99 ratio | CPU ms/request N1V1 (Gateway, proxy, Engine) | "
        "CPU ms/request floor (replica, proxy) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for clients, s, f, rps_ratio, p99_ratio in rows:
        sc, fc = s["cpu_ms_per_request_by_process"], f["cpu_ms_per_request_by_process"]
        ours = ", ".join(f"{_cpu(sc, k):.2f}" for k in ("Gateway", "ProxyActor", "Engine"))
        theirs = ", ".join(f"{_cpu(fc, k):.2f}" for k in ("Floor", "ProxyActor"))
        print(f"| {clients} | {fmt_rps(s)} | {fmt_lat(s)} | {fmt_rps(f)} | {fmt_lat(f)} | "
              f"{rps_ratio:.2f} | {p99_ratio:.2f} | {ours} | {theirs} |")  # fmt: skip
    print("\nTargets (issue 12, section 5):")
    floor_min = TARGETS["status_over_floor_rps_min"]
    for clients, _s, _f, rps_ratio, _p in rows:
        print(f"- status req/s >= {floor_min:.0%} of the floor's at {clients} clients: "
              f"{verdict(rps_ratio >= floor_min)} ({rps_ratio:.0%})")  # fmt: skip
    p99_max = TARGETS["status_p99_over_floor_max_at_16"]
    for clients, s, f, _r, p99_ratio in rows:
        if clients == 16:
            print(f"- status p99 at 16 clients <= {p99_max:g}x the floor's: "
                  f"{verdict(p99_ratio <= p99_max)} ({s['p99_ms']:.1f} ms against "
                  f"{f['p99_ms']:.1f} ms, {p99_ratio:.2f}x)")  # fmt: skip
    report["status_over_floor"] = [
        {"clients": c, "rps_ratio": r, "p99_ratio": p} for c, _s, _f, r, p in rows
    ]


def _cpu(by_process: dict[str, float], label: str) -> float:
    """CPU ms per request of the processes whose label names `label` (e.g. the Gateway)."""
    return sum(v for k, v in by_process.items() if label in k)


def fmt_rps(cell: dict[str, Any] | None) -> str:
    return "" if cell is None else f"{cell['rps']:,.0f}"


def fmt_lat(cell: dict[str, Any] | None) -> str:
    return "" if cell is None else f"{cell['p50_ms']:.1f} / {cell['p99_ms']:.1f}"


def engine_part(tmp: Path, a: argparse.Namespace, report: dict[str, Any]) -> None:
    report["engine_load_at_start"] = wait_for_quiet(a.max_load, a.max_wait, "engine")
    frames = engine_frames(a.engine_bars)
    names = ", ".join(s.slot_id for s in ENGINE_SLOTS)
    print(
        f"\n## 2. engine bar-to-decision latency: {ENGINE_SYMBOLS} symbols x {a.engine_bars:,} "
        f"synthetic 1m bars, strategies {names} (default parameters), window 500 bars; "
        "figures over the steps after the window has filled",
        flush=True,
    )
    decide = decision_only(frames, tmp)
    print(
        f"(a) decision only (`step_without_store`: history append + on_bar, in-memory journal), "
        f"{decide['steps']:,} steps: p50 {decide['p50_ms']:.2f} ms, p99 {decide['p99_ms']:.2f} ms, "
        f"mean {decide['mean_ms']:.2f} ms, max {decide['max_ms']:.2f} ms; CPU time of the step "
        f"p50 {decide['cpu_p50_ms']:.2f} ms, p99 {decide['cpu_p99_ms']:.2f} ms "
        f"({decide['orders']:,} order records, {decide['signals']:,} signals over the whole run)",
        flush=True,
    )
    full = full_steps(frames, tmp)
    d, p = full["decision"], full["process_step"]
    print(
        f"(b) running session over SQLite, {d['steps']:,} steps: decision (on_step: bar log + "
        f"decision inside the transaction) p50 {d['p50_ms']:.2f} ms, p99 {d['p99_ms']:.2f} ms; "
        f"whole _process_step (+ positions, state, commit, snapshot) p50 {p['p50_ms']:.2f} ms, "
        f"p99 {p['p99_ms']:.2f} ms, max {p['max_ms']:.2f} ms (CPU time p50 {p['cpu_p50_ms']:.2f} "
        f"ms, p99 {p['cpu_p99_ms']:.2f} ms); whole run "
        f"{full['steps_per_s_whole_run']:.0f} steps/s",
        flush=True,
    )
    limit = TARGETS["decision_p99_ms"]
    ok_a, ok_b = decide["p99_ms"] < limit, d["p99_ms"] < limit
    print(f"\nTarget: decision p99 < {limit:g} ms: (a) {verdict(ok_a)} ({decide['p99_ms']:.2f} "
          f"ms); (b) on_step {verdict(ok_b)} ({d['p99_ms']:.2f} ms)")  # fmt: skip
    costs = strategy_costs(frames, decide["window"])
    print(f"\nwhere a decision's time goes: median single-call cost on a {decide['window']}-bar "
          f"frame; each step makes {ENGINE_SYMBOLS} frame rebuilds and "
          f"{ENGINE_SYMBOLS * len(ENGINE_SLOTS)} strategy calls")  # fmt: skip
    for name, us in costs.items():
        print(f"- {name}: {us:,.0f} us")
    report["engine"] = {"decision_only": decide, "session": full, "per_call_us": costs}
    if not (ok_a and ok_b) or a.profile:
        stats = profile_decisions(frames, tmp, a.profile_steps)
        parts = profile_breakdown(stats, a.profile_steps)
        print(f"\n### where the time goes: cProfile of {a.profile_steps} decisions (a); times are "
              "inflated by the profiler, the shares are the point")  # fmt: skip
        print("| part | ms per step (profiled) | share |\n|---|---|---|")
        for label, ms, share in parts:
            print(f"| {label} | {ms:.2f} | {share:.0%} |")
        top = top_functions(stats, 12)
        print("\nmost own time:\n" + "\n".join(top))
        report["engine"]["profile"] = {"parts": parts, "top_own_time": top}


if __name__ == "__main__":
    main()
