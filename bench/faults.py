"""Faults under load: kill or cut each part of the running Serve application while a constant load
runs against it, then all of them in one seeded random sequence, and measure what callers saw, how
long the application took to recover, and whether trading stayed exact.

    python bench/faults.py [--quick] [--seed 12] [--postgres URL] [--bars-per-second 12]
                           [--doc docs/reliability.md] [--json PATH]

The cluster (`FaultCluster`): a local Ray head of our own (free ports; stopped by its PIDs, never
`ray stop`), the application deployed from serve_config.yaml with `serve deploy` as an operator or
KubeRay deploys it, on a PostgreSQL schema of its own reached through a TCP proxy of ours
(tests/tcp_proxy.py), with two Gateway and two Model replicas (what an HA deployment runs; the
Engine is one replica by design). With GCS fault tolerance (the default here, `--no-gcs` off) the
head keeps the GCS's tables in the machine's Redis through a second proxy, under a key namespace
of its own (`RAY_external_storage_namespace`, as KubeRay sets it to the RayCluster's UID; the keys
are deleted at the end). The head is then started daemonised, not with `--block`, which would take
every process down with the GCS. Locally nothing restarts a dead `gcs_server`: `GcsSupervisor`
does what KubeRay does for a head pod (its container restarts, with a back-off while it keeps
failing): it starts the same command line again, in the same environment, one second after it
died. KubeRay restarts the whole head pod, whose Serve replicas (on worker pods there) survive;
here the replicas share the head's node, so only the GCS process is restarted.

The load (`start_load`): a constant rate of requests over a read-mostly mix (status, positions,
orders, equity, signals, trades, risk, models, readiness, and a cancel of an order that does not
exist: an audited write that changes no trading), so the journal can be held against a run that
had no load at all. A request counts as ok (2xx, or the 404 of that cancel), a documented 503
(an error envelope or `Retry-After`, or /readyz saying not ready), or failed (any other status, a
timeout after 10 s, a refused or reset connection).

The faults, one at a time, then `--sequence` of them in a random order with random gaps and cut
lengths (seeded):
- kill -9 of the Engine replica, of one Gateway replica, of one Model replica, of the Serve
  controller, of the HTTP proxy (their PIDs from Ray's state API: ServeReplica:n1v1:<deployment>,
  ServeController, ProxyActor);
- kill -9 of `gcs_server` (with GCS FT), restarted by the supervisor;
- the database cut: the proxy resets every connection and refuses new ones, then forwards again;
- Redis cut (with GCS FT): the same, for the GCS's storage.

For each: the requests in its window by outcome, the time from the fault (or from the end of a
cut) until the killed part is back, /readyz is 200 and the engine has traded a new step, and the
trading invariant: the journal so far (bar log, every order's history, fills, signals, risk
decisions, equity) equal to that of an uninterrupted run of the same replay (`TradingSession`
unpaced on SQLite, no Ray), each step and fill once. At the end the replay runs out and the whole
journal, positions included, is compared. The table goes into docs/reliability.md between markers.

tests/test_faults.py runs a bounded subset on one cluster (no GCS FT) with the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import aiohttp  # noqa: E402
import pandas as pd  # noqa: E402
import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import yaml  # noqa: E402
from journal_outcome import invariant_problems, journal_prefix, outcome  # noqa: E402
from tcp_proxy import TcpProxy  # noqa: E402

from n1v1.cli.local_ray import HeadPorts, LocalRayHead, free_port  # noqa: E402
from n1v1.live.session import READY_STATES, TradingSession  # noqa: E402
from n1v1.serve.args import AppArgs, replay_feed  # noqa: E402
from n1v1.store import Store, StoreReader, create_store  # noqa: E402

BIN = Path(sys.executable).parent
CONFIG = ROOT / "serve_config.yaml"
APP = "n1v1"
TOKEN = "faults-admin-" + uuid.uuid4().hex
DOC = ROOT / "docs" / "reliability.md"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REQUEST_TIMEOUT_S = 10.0

# -- the load -------------------------------------------------------------------------------------
# (name, method, path, weight)
ROUTES: tuple[tuple[str, str, str, int], ...] = (
    ("status", "GET", "/api/v1/status", 4),
    ("positions", "GET", "/api/v1/positions", 1),
    ("orders", "GET", "/api/v1/orders?limit=20", 2),
    ("equity", "GET", "/api/v1/equity?max_points=200", 1),
    ("signals", "GET", "/api/v1/signals?limit=20", 1),
    ("trades", "GET", "/api/v1/trades?limit=20", 1),
    ("risk", "GET", "/api/v1/risk", 1),
    ("models", "GET", "/api/v1/models", 1),
    ("readyz", "GET", "/readyz", 1),
    ("cancel_unknown", "DELETE", "/api/v1/orders/fault-probe-no-such-order", 1),
)
EXPECTED = {"cancel_unknown": 404}  # the answer that is right for a route besides 2xx


# What Ray's HTTP proxy answers (through uvicorn) for a request whose Gateway replica died while
# handling it: not our envelope, which every answer of the app itself is.
PROXY_500 = b"Internal Server Error"
IN_FLIGHT = "500 in flight"  # such an answer, before it is known whether a kill explains it


def classify(route: str, status: int, body: bytes, headers: Any) -> str:
    """ok | 503 (documented) | IN_FLIGHT (Ray's proxy: the replica died under the request) | the
    status code as text (a failure)."""
    if 200 <= status < 300 or EXPECTED.get(route) == status:
        return "ok"
    if status == 500 and body.strip() == PROXY_500:
        return IN_FLIGHT
    if status == 503:
        if route == "readyz" or "Retry-After" in headers:
            return "503"
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            if json.loads(body)["error"]["code"]:
                return "503"
    return str(status)


@dataclass
class LoadReport:
    """Every finished request: (monotonic time it was sent, route, outcome, seconds), and the
    moments Gateway replicas were killed (`gateway_kills`)."""

    records: list[tuple[float, str, str, float]] = field(default_factory=list)
    gateway_kills: list[float] = field(default_factory=list)

    def window(self, start: float, end: float) -> LoadReport:
        """The requests sent in [start, end) (a timeout counts where it was sent)."""
        return LoadReport([r for r in self.records if start <= r[0] < end], self.gateway_kills)

    def _lost(self, record: tuple[float, str, str, float]) -> bool:
        """A request that was being handled when a Gateway replica was killed and got Ray's
        proxy 500: the process answering it died (documented, docs/reliability.md). The same
        answer at any other moment is a failure."""
        began, _, result, seconds = record
        return result == IN_FLIGHT and any(
            began <= k <= began + seconds for k in self.gateway_kills
        )

    def by_route(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter[str]] = {}
        for _, route, result, _ in self.records:
            out.setdefault(route, Counter())[result] += 1
        return {route: dict(counts) for route, counts in sorted(out.items())}

    def summary(self) -> dict[str, Any]:
        lost = [r for r in self.records if self._lost(r)]
        kept = [r for r in self.records if not self._lost(r)]
        outcomes = Counter(r[2] for r in kept)
        failed = {k: v for k, v in outcomes.items() if k not in ("ok", "503")}
        where = Counter(f"{r[1]} {r[2]}" for r in kept if r[2] not in ("ok", "503"))
        return {
            "requests": len(self.records),
            "ok": outcomes["ok"],
            "documented_503": outcomes["503"],
            "lost_in_flight": len(lost),
            "failed": sum(failed.values()),
            "failures": dict(sorted(failed.items())),
            "failures_by_route": dict(sorted(where.items())),
        }


class AiohttpLoad:
    """A constant request rate from a few concurrent clients, in a thread of its own."""

    def __init__(
        self, url: str, token: str, seconds: float | None, rps: float, clients: int, seed: int
    ) -> None:
        self.url, self.token, self.seconds = url.rstrip("/"), token, seconds
        self.rps, self.clients = rps, clients
        self._random = random.Random(seed)
        self._records: list[tuple[float, str, str, float]] = []
        self.failed_answers: list[str] = []  # "route status: body" of each failed answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> AiohttpLoad:
        self._thread.start()
        return self

    @property
    def report(self) -> LoadReport:
        """What has finished so far."""
        return LoadReport(list(self._records))

    def stop(self) -> LoadReport:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT_S + 5)
        return self.report

    async def _main(self) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        headers = {"Authorization": f"Bearer {self.token}"}
        connector = aiohttp.TCPConnector(limit=self.clients, force_close=False)
        async with aiohttp.ClientSession(
            timeout=timeout, headers=headers, connector=connector
        ) as http:
            await asyncio.gather(*(self._client(http, i) for i in range(self.clients)))

    async def _client(self, http: aiohttp.ClientSession, index: int) -> None:
        interval = self.clients / self.rps
        names = [r for r in ROUTES for _ in range(r[3])]
        started = time.monotonic()
        due = started + interval * index / self.clients
        while not self._stop.is_set():
            if self.seconds is not None and time.monotonic() - started > self.seconds:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due + interval, time.monotonic() - interval)
            name, method, path, _ = self._random.choice(names)
            began = time.monotonic()
            try:
                async with http.request(method, self.url + path) as response:
                    body = await response.read()
                    result = classify(name, response.status, body, response.headers)
                    if result not in ("ok", "503"):  # a failure: whose answer was it?
                        shown = body[:300].decode("utf-8", "replace")
                        self.failed_answers.append(f"{name} {response.status}: {shown}")
            except TimeoutError:
                result = "timeout"
            except aiohttp.ClientError as exc:  # refused, reset, disconnected: by name
                result = type(exc).__name__
            self._records.append((began, name, result, time.monotonic() - began))


def start_load(
    url: str,
    token: str,
    seconds: float | None = None,
    *,
    rps: float = 25.0,
    clients: int = 4,
    seed: int = 0,
) -> AiohttpLoad:
    """The load while the faults run: an object with `.report` (so far) and `.stop()`, both a
    LoadReport of every finished request. The one place to swap in the Locust runner
    (bench/locustfile.py, headless, its request events recorded the same way)."""
    return AiohttpLoad(url, token, seconds, rps, clients, seed).start()


# -- the cluster ---------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, OSError):
        return False
    return state != "Z"


class GcsSupervisor:
    """KubeRay's part for the GCS, locally: when `gcs_server` dies, start its command line again
    (same arguments, environment and folder) after a second, backing off to 10 s while it keeps
    dying (a CrashLoopBackOff), until stopped."""

    def __init__(self, head: LocalRayHead, log_path: Path) -> None:
        pids = [
            p for p in head.session_pids() if _cmdline(p)[:1] and "gcs_server" in _cmdline(p)[0]
        ]
        if len(pids) != 1:
            raise RuntimeError(f"expected one gcs_server in the head's session, found {pids}")
        self.pid = pids[0]
        self.cmdline = _cmdline(self.pid)
        self.env = dict(
            line.split("=", 1)
            for line in Path(f"/proc/{self.pid}/environ").read_bytes().decode().split("\0")
            if "=" in line
        )
        self.cwd = os.readlink(f"/proc/{self.pid}/cwd")
        self.log_path = log_path
        self.restarts = 0
        self._children: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def kill(self) -> int:
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        return pid

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stop.wait(0.2):
            for child in self._children:
                child.poll()  # reap what we started
            if _alive(self.pid):
                continue
            if self._stop.wait(backoff):
                return
            started = time.monotonic()
            with self.log_path.open("ab") as log:
                child = subprocess.Popen(
                    self.cmdline,
                    env=self.env,
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self._children.append(child)
            self.pid, self.restarts = child.pid, self.restarts + 1
            while _alive(child.pid) and not self._stop.wait(0.2):
                if time.monotonic() - started > 30:
                    break
            backoff = 1.0 if _alive(child.pid) else min(2 * backoff, 10.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        for child in self._children:
            if child.poll() is None:
                child.kill()
                child.wait(10)


def _cmdline(pid: int) -> list[str]:
    try:
        return [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0") if a]
    except OSError:
        return []


@dataclass
class FaultCluster:
    """The application under test; `start()` brings it up, `stop()` removes everything."""

    work: Path
    postgres: str = DEFAULT_PG
    gcs_ft: bool = True
    feed_end: str = "2018-04-06 23:59"
    bars_per_second: float = 12.0
    replicas: dict[str, int] = field(default_factory=lambda: {"Gateway": 2, "Model": 2})
    lease_ttl_s: float = 3.0
    redis_port: int = 6379
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. Serve's tuning variables
    keep_logs: bool = False  # copy Ray's logs to work/ray-logs before the head's folder goes

    def __post_init__(self) -> None:
        self.schema = f"faults_{uuid.uuid4().hex[:10]}"
        self.namespace = f"n1v1-faults-{uuid.uuid4().hex[:10]}"
        self.head: LocalRayHead | None = None
        self.gcs: GcsSupervisor | None = None
        self.pg_proxy: TcpProxy | None = None
        self.redis_proxy: TcpProxy | None = None
        self.direct: Store | None = None
        self.http = f"http://127.0.0.1:{free_port()}"
        self.args: AppArgs | None = None
        self.kills: list[tuple[str, float]] = []  # (actor class, monotonic time) of each kill -9

    # -- set up -----------------------------------------------------------------------------------
    def app_args(self, store_url: str) -> AppArgs:
        return AppArgs.model_validate(
            {
                "store_url": store_url,
                "model_root": str(self.work / "models"),
                "feed": {
                    "kind": "replay",
                    "datasets": ["coinbase_BTC-USD_1m", "coinbase_LTC-USD_1m"],
                    "start": "2018-04-04 00:00",
                    "end": self.feed_end,
                    "bars_per_second": self.bars_per_second,
                    "after_replay": "stop",
                },
                "strategies": [
                    {"name": "ema_cross", "params": {"fast": 5, "slow": 20}},
                    {"name": "rsi", "params": {"period": 14}},
                ],
                "risk": {"fraction": 0.3, "stop_loss_pct": 0.01},
                "engine": {"lease_ttl_s": self.lease_ttl_s},
                "api": {"rate_limit_per_s": 10_000, "rate_burst": 10_000, "max_replicas": 2},
                "model": {"max_replicas": 2},
            }
        )

    def steps(self) -> int:
        assert self.args is not None
        return len(replay_feed(self.args.feed))

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        pg = sa.engine.make_url(self.postgres)
        admin = sa.create_engine(self.postgres)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')
        admin.dispose()
        self.pg_proxy = TcpProxy(pg.port or 5432, pg.host or "127.0.0.1")
        self.pg_proxy.start()
        sep = "&" if "?" in self.postgres else "?"
        direct_url = f"{self.postgres}{sep}options=-csearch_path%3D{self.schema}"
        proxied = direct_url.replace(f"@{pg.host}:{pg.port}/", f"@127.0.0.1:{self.pg_proxy.port}/")
        assert proxied != direct_url, f"the PostgreSQL URL must name host:port, got {self.postgres}"
        self.direct = create_store(direct_url)  # the tables exist before the app, as in a cluster
        self.args = self.app_args(proxied)

        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env = {k: v for k, v in env.items() if not k.startswith("N1V1_")}
        env.update(
            RAY_AUTH_MODE="disabled",
            RAY_USAGE_STATS_ENABLED="0",
            RAY_metrics_report_interval_ms="1000",  # a gauge seen within a second, not ten
            N1V1_API_TOKEN=TOKEN,  # read where the app is built: a worker of this cluster
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        )
        env.update(self.extra_env)
        if self.gcs_ft:
            self.redis_proxy = TcpProxy(self.redis_port)
            self.redis_proxy.start()
            env.update(
                RAY_REDIS_ADDRESS=self.redis_proxy.address,
                RAY_external_storage_namespace=self.namespace,
            )
        ports = HeadPorts(free_port(), free_port(), free_port(), free_port(), free_port())
        self.head = LocalRayHead(str(BIN / "ray"), ports, 2, env, block=not self.gcs_ft)
        self.head.start()
        if self.gcs_ft:
            self.gcs = GcsSupervisor(self.head, self.head.temp_dir / "gcs_restarts.log")
        self._deploy()

    def gateway_kills(self) -> list[float]:
        """When Gateway replicas were killed (monotonic): the requests they were handling then
        are lost with them."""
        return [at for name, at in self.kills if name == f"ServeReplica:{APP}:Gateway"]

    @property
    def dashboard(self) -> str:
        assert self.head is not None
        return f"http://127.0.0.1:{self.head.ports.dashboard}"

    def _deploy(self) -> None:
        assert self.args is not None
        doc = yaml.safe_load(CONFIG.read_text())
        doc["http_options"] = {"host": "127.0.0.1", "port": int(self.http.rsplit(":", 1)[1])}
        (app,) = doc["applications"]
        app["args"] = self.args.model_dump(mode="json")
        app["deployments"] = [
            {
                "name": name,
                "autoscaling_config": {
                    "min_replicas": n,
                    "max_replicas": n,
                    "target_ongoing_requests": 32,
                },
            }
            for name, n in self.replicas.items()
        ]
        path = self.work / "serve_config.yaml"
        path.write_text(yaml.safe_dump(doc))
        done = subprocess.run(
            [str(BIN / "serve"), "deploy", str(path), "--address", self.dashboard],
            capture_output=True,
            text=True,
            timeout=180,
            env=dict(os.environ, RAY_AUTH_MODE="disabled"),
        )
        if done.returncode != 0:
            raise RuntimeError(f"serve deploy failed:\n{done.stdout}\n{done.stderr}")

    def wait_ready(self, timeout: float = 240) -> None:
        wait_until(
            lambda: self.ready() and (s := self.status()) is not None and s["step"] > 0,
            timeout,
            "the application to be ready and trading",
        )
        wait_until(
            lambda: len(self.actors(f"ServeReplica:{APP}:Gateway")) == self.replicas["Gateway"],
            120,
            "every Gateway replica",
        )

    # -- observing --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any] | None:
        return self.status_or_why()[0]

    def status_or_why(self) -> tuple[dict[str, Any] | None, str]:
        """The engine's status, or None and why not (a status code or an exception's class)."""
        try:
            response = requests.get(
                f"{self.http}/api/v1/status",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=5,
            )
        except requests.RequestException as exc:
            return None, type(exc).__name__
        if not response.ok:
            return None, str(response.status_code)
        return response.json(), ""

    def ready(self) -> bool:
        return self.readyz_code() == 200

    def readyz_code(self) -> int:
        """/readyz's status code (0: no answer)."""
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{self.http}/readyz", timeout=10).status_code
        return 0

    def metric(self, name: str) -> float | None:
        """The lowest value of a metric on Ray's Prometheus endpoint (None: not exported)."""
        assert self.head is not None
        try:
            text = requests.get(
                f"http://127.0.0.1:{self.head.ports.metrics}/metrics", timeout=5
            ).text
        except requests.RequestException:
            return None
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        ]
        return min(values) if values else None

    def actors(self, class_name: str) -> list[int]:
        """PIDs of the live actors of a class, from Ray's state API ([] while it cannot answer)."""
        from ray.util.state import list_actors

        try:
            found = list_actors(
                address=self.dashboard,
                filters=[("class_name", "=", class_name), ("state", "=", "ALIVE")],
                timeout=5,
                raise_on_missing_output=False,
            )
        except Exception:  # the dashboard or the GCS is down: nothing can be said
            return []
        return sorted(int(a.pid) for a in found if a.pid)

    def committed(self) -> tuple[int, pd.Timestamp] | None:
        """The engine's last committed step (count, bar time), read past the proxy."""
        assert self.direct is not None
        last = StoreReader(self.direct).get_state("last_step")
        return None if last is None else (int(last["step"]), pd.Timestamp(last["time"]))

    # -- tear down --------------------------------------------------------------------------------
    def stop(self) -> None:
        if self.gcs is not None:
            self.gcs.stop()
        if self.head is not None:
            self.head.stop()
            if self.keep_logs:
                shutil.copytree(
                    self.head.temp_dir / "session_latest" / "logs",
                    self.work / "ray-logs",
                    dirs_exist_ok=True,
                    ignore_dangling_symlinks=True,
                )
            self.head.remove_temp_dir()
        for proxy in (self.pg_proxy, self.redis_proxy):
            if proxy is not None:
                proxy.close()
        if self.direct is not None:
            self.direct.dispose()
        admin = sa.create_engine(self.postgres)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        admin.dispose()
        if self.gcs_ft:
            _delete_redis_keys(self.redis_port, self.namespace)


def unhandled_errors(logs: Path, lines: int = 25) -> list[str]:
    """The gateway's logged 500s (n1v1/serve/errors.py, `unhandled error <id>`) with the lines
    of traceback after each, from Ray logs a cluster kept (`keep_logs`): Serve's replica logs
    and the workers' own stderr and stdout, where an application logger's records land."""
    found = []
    paths = [p for pattern in ("*.log", "*.err", "*.out") for p in logs.rglob(pattern)]
    for path in sorted(paths):
        text = path.read_text(errors="replace").splitlines()
        for i, line in enumerate(text):
            if "unhandled error" in line:
                found.append("\n".join([f"{path.name}:", *text[i : i + lines]]))
    return found


def _delete_redis_keys(port: int, namespace: str) -> None:
    """Remove the GCS tables this run left in Redis (only keys naming its own namespace)."""
    listed = subprocess.run(
        ["redis-cli", "-p", str(port), "--scan", "--pattern", f"*{namespace}*"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    keys = [k for k in listed.stdout.split() if namespace in k]
    for i in range(0, len(keys), 100):
        subprocess.run(
            ["redis-cli", "-p", str(port), "DEL", *keys[i : i + 100]],
            capture_output=True,
            timeout=30,
            check=True,
        )


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


# -- the faults ----------------------------------------------------------------------------------
@dataclass
class Injected:
    """A fault in progress: `back()` says when the part it hit is back; `ends_at` is when a cut
    is restored (the moment of a kill)."""

    back: Callable[[], bool]
    ends_at: float
    detail: str


def _kill_one(cluster: FaultCluster, class_name: str, count: int, rng: random.Random) -> Injected:
    pids = wait_until(lambda: cluster.actors(class_name), 60, f"a live {class_name}")
    victim = rng.choice(pids)
    before = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    now = time.monotonic()
    cluster.kills.append((class_name, before))

    def back() -> bool:
        alive = cluster.actors(class_name)
        return len(alive) >= count and victim not in alive

    return Injected(back, now, f"kill -9 {class_name} pid {victim}")


def _cut(
    cluster: FaultCluster, proxy: TcpProxy, seconds: float, what: str, after: Callable[[], bool]
) -> Injected:
    proxy.cut("reset")
    restored = threading.Event()

    def restore() -> None:
        proxy.restore()
        restored.set()

    timer = threading.Timer(seconds, restore)
    timer.daemon = True
    timer.start()
    return Injected(
        lambda: restored.is_set() and after(),
        time.monotonic() + seconds,
        f"{what} cut for {seconds:.1f} s",
    )


@dataclass(frozen=True)
class Fault:
    name: str
    label: str
    inject: Callable[[FaultCluster, random.Random, float], Injected]
    needs_gcs_ft: bool = False


def _replica(deployment: str) -> Callable[[FaultCluster, random.Random, float], Injected]:
    def inject(cluster: FaultCluster, rng: random.Random, _: float) -> Injected:
        count = 1 if deployment == "Engine" else cluster.replicas[deployment]
        return _kill_one(cluster, f"ServeReplica:{APP}:{deployment}", count, rng)

    return inject


def _actor(class_name: str) -> Callable[[FaultCluster, random.Random, float], Injected]:
    return lambda cluster, rng, _: _kill_one(cluster, class_name, 1, rng)


def _gcs_kill(cluster: FaultCluster, rng: random.Random, _: float) -> Injected:
    gcs = cluster.gcs
    assert gcs is not None
    wait_until(lambda: _alive(gcs.pid), 60, "a live gcs_server (the supervisor restarts it)")
    restarts = gcs.restarts
    pid = gcs.kill()
    now = time.monotonic()

    def back() -> bool:
        return gcs.restarts > restarts and bool(cluster.actors("ServeController"))

    return Injected(back, now, f"kill -9 gcs_server pid {pid}, restarted by the supervisor")


def _db_cut(cluster: FaultCluster, rng: random.Random, seconds: float) -> Injected:
    assert cluster.pg_proxy is not None

    def store_back() -> bool:
        status = cluster.status()
        return bool(status and (status.get("store") or {}).get("available"))

    return _cut(cluster, cluster.pg_proxy, seconds, "PostgreSQL", store_back)


def _redis_cut(cluster: FaultCluster, rng: random.Random, seconds: float) -> Injected:
    gcs = cluster.gcs
    assert cluster.redis_proxy is not None and gcs is not None
    restarts = gcs.restarts
    injected = _cut(
        cluster,
        cluster.redis_proxy,
        seconds,
        "Redis",
        lambda: _alive(gcs.pid) and bool(cluster.actors("ServeController")),
    )
    back = injected.back

    def back_and_say() -> bool:
        if not back():
            return False
        injected.detail = (
            f"Redis cut for {seconds:.1f} s; gcs_server restarts: {gcs.restarts - restarts}"
        )
        return True

    injected.back = back_and_say
    return injected


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("engine", "kill -9 Engine replica", _replica("Engine")),
        Fault("gateway", "kill -9 one Gateway replica", _replica("Gateway")),
        Fault("model", "kill -9 one Model replica", _replica("Model")),
        Fault("controller", "kill -9 Serve controller", _actor("ServeController")),
        Fault("proxy", "kill -9 HTTP proxy", _actor("ProxyActor")),
        Fault("gcs", "kill -9 gcs_server (GCS FT on Redis)", _gcs_kill, needs_gcs_ft=True),
        Fault("database", "PostgreSQL cut (TCP reset)", _db_cut),
        Fault("redis", "Redis cut (GCS storage)", _redis_cut, needs_gcs_ft=True),
    )
}


# -- running them --------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One row of the table. `window` is when its requests were sent; `load` is filled from the
    whole run's report once the load has stopped (a request still waiting when the row was taken
    is counted, where it was sent)."""

    fault: str
    detail: str
    window: tuple[float, float]
    recover_s: float | None
    steps: int
    invariant: list[str]
    seen: str = ""
    load: dict[str, Any] = field(default_factory=lambda: LoadReport().summary())
    timed: bool = True  # False: a row without a recovery to time (the end of the replay)

    def count(self, report: LoadReport) -> None:
        self.load = report.window(*self.window).summary()

    @property
    def passed(self) -> bool:
        return (
            not self.invariant
            and self.load["failed"] == 0
            and not (self.timed and self.recover_s is None)
        )

    def row(self) -> str:
        load = self.load
        failed = str(load["failed"])
        detail = load["failures_by_route"]
        if len(detail) > 4:  # too many to list by route: by outcome
            detail = load["failures"]
        if detail:
            failed += " (" + ", ".join(f"{k}: {v}" for k, v in detail.items()) + ")"
        if load.get("lost_in_flight"):
            failed += f"; {load['lost_in_flight']} lost in flight with the killed replica"
        if not self.timed:
            recover = "-"
        else:
            recover = "not within the limit" if self.recover_s is None else f"{self.recover_s:.1f}"
        journal = (
            f"identical ({self.steps} steps)"
            if not self.invariant
            else "DIFFERS: " + "; ".join(self.invariant)
        )
        return (
            f"| {self.fault} | {self.detail} | {load['requests']} | {load['ok']} | "
            f"{load['documented_503']} | {failed} | {recover} | {self.seen} | {journal} |"
        )


TABLE_HEAD = (
    "| fault | what was done | requests | ok | documented 503 | failed | recovered (s) | "
    "seen meanwhile | journal vs uninterrupted run |\n|---|---|---|---|---|---|---|---|---|"
)


class Witness:
    """What the application said while a fault lasted: the engine states in its status, the
    /readyz codes and the lowest `n1v1_store_available` Ray exported (sampled every 0.5 s)."""

    def __init__(self, cluster: FaultCluster) -> None:
        self.cluster = cluster
        self.states: list[str] = []
        self.readyz: set[int] = set()
        self.store_gauge: float | None = None
        self._last = 0.0

    def sample(self) -> None:
        if time.monotonic() - self._last < 0.5:
            return
        self._last = time.monotonic()
        status, why = self.cluster.status_or_why()
        state = f"no answer ({why})" if status is None else str(status.get("state"))
        if not self.states or self.states[-1] != state:
            self.states.append(state)
        self.readyz.add(self.cluster.readyz_code())
        value = self.cluster.metric("ray_n1v1_store_available")
        if value is not None:
            self.store_gauge = value if self.store_gauge is None else min(self.store_gauge, value)

    def describe(self) -> str:
        gauge = "-" if self.store_gauge is None else f"{self.store_gauge:g}"
        codes = ", ".join(str(c) for c in sorted(self.readyz))
        return f"status: {' > '.join(self.states)}; /readyz {codes}; store gauge min {gauge}"


class CommandedFeed:
    """A feed that applies logged operator commands at the steps they were logged at: before it
    hands over the step after N, the commands logged at N are submitted and answered (the loop
    applies them while this returns no bar). An uninterrupted run with the faulted run's inputs."""

    def __init__(self, inner: Any, commands: list[dict[str, Any]]) -> None:
        self.inner = inner
        self.symbols = inner.symbols
        self.session: TradingSession | None = None
        self._plan: dict[int, list[dict[str, Any]]] = {}
        for command in commands:
            self._plan.setdefault(int(command["step"]), []).append(command)
        self._pending: Any = None

    @property
    def exhausted(self) -> bool:
        return bool(self.inner.exhausted)

    def __len__(self) -> int:
        return len(self.inner)

    def describe(self) -> dict[str, Any]:
        return dict(self.inner.describe())

    def resume_after(self, last: pd.Timestamp | None) -> None:
        self.inner.resume_after(last)

    def next_step(self, timeout: float) -> Any:
        assert self.session is not None
        if self._pending is not None:
            if not self._pending.done():
                time.sleep(min(timeout, 0.005))
                return None
            self._pending.result()  # a refusal here is a refusal the faulted run did not have
            self._pending = None
        waiting = self._plan.get(self.session.steps_done)
        if waiting:
            command = waiting.pop(0)
            self._pending = self.session.submit(command["kind"], command["payload"], "reference")
            return None
        return self.inner.next_step(timeout)


class Reference:
    """The uninterrupted run of the same replay: unpaced, on SQLite, no Ray, started at once;
    with `commands` (as the faulted run logged them), each applied at its logged step."""

    def __init__(
        self, args: AppArgs, path: Path, commands: list[dict[str, Any]] | None = None
    ) -> None:
        url = f"sqlite:///{path}"
        ref_args = args.model_copy(
            update={
                "store_url": url,
                "feed": args.feed.model_copy(update={"bars_per_second": 0.0}),
            }
        )
        self.store = create_store(url)
        feed = replay_feed(ref_args.feed)
        if commands:
            feed = CommandedFeed(feed, commands)
        self.session = TradingSession(
            ref_args.settings(),
            ref_args.strategies,
            feed,
            self.store,
            window=args.engine.window,
            lease_ttl=args.engine.lease_ttl_s,
        )
        if commands:
            feed.session = self.session
        self.session.start()
        self._outcome: dict[str, Any] | None = None

    def outcome(self) -> dict[str, Any]:
        if self._outcome is None:
            wait_until(lambda: self.session.state == "replay_finished", 600, "the reference run")
            self.session.stop()
            self._outcome = outcome(self.store)
        return self._outcome


def prefix_check(cluster: FaultCluster, reference: Reference) -> tuple[int, list[str]]:
    """The faulted run's journal so far against the reference's first steps."""
    assert cluster.direct is not None
    committed = cluster.committed()
    if committed is None:
        return 0, ["nothing committed yet"]
    steps, last = committed
    served = journal_prefix(outcome(cluster.direct), steps, last)
    expected = journal_prefix(reference.outcome(), steps, last)
    return steps, invariant_problems(served, expected, steps)


def healthy_after(cluster: FaultCluster, since_step: int) -> bool:
    """/readyz is 200, and the engine runs with its store and has committed a step after
    `since_step` (or the replay is over)."""
    if not cluster.ready():
        return False
    status = cluster.status()
    if not status or status["state"] not in READY_STATES:
        return False
    if not (status.get("store") or {}).get("available", False):
        return False
    committed = cluster.committed()
    return status["feed_exhausted"] or (committed is not None and committed[0] > since_step)


def run_one(
    cluster: FaultCluster,
    reference: Reference,
    fault: Fault,
    rng: random.Random,
    *,
    cut_s: float = 6.0,
    settle_s: float = 3.0,
    limit_s: float = 120.0,
) -> Outcome:
    """Inject `fault`, wait until everything is back, and measure (the load keeps running)."""
    started = time.monotonic()
    witness = Witness(cluster)
    injected = fault.inject(cluster, rng, cut_s)
    recover_s = _recover(cluster, injected, started + limit_s, witness)
    time.sleep(settle_s)
    steps, problems = prefix_check(cluster, reference)
    return Outcome(
        fault.label,
        injected.detail,
        (started, time.monotonic()),
        recover_s,
        steps,
        problems,
        witness.describe(),
    )


def _recover(
    cluster: FaultCluster, injected: Injected, deadline: float, witness: Witness
) -> float | None:
    """Seconds from the end of the fault until it is fully undone (None: not by `deadline`)."""
    while not injected.back():
        witness.sample()
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    committed = cluster.committed()
    since = committed[0] if committed else 0
    while not healthy_after(cluster, since):
        witness.sample()
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)
    return time.monotonic() - injected.ends_at


def run_sequence(
    cluster: FaultCluster,
    reference: Reference,
    faults: list[Fault],
    count: int,
    rng: random.Random,
    *,
    limit_s: float = 240.0,
) -> Outcome:
    """`count` faults drawn at random (seeded), each 1 to 6 s after the previous one without
    waiting for it to be undone; cuts last 3 to 8 s. Measured from the first to full recovery."""
    order = [rng.choice(faults) for _ in range(count)]
    started = time.monotonic()
    witness = Witness(cluster)
    injected: list[Injected] = []
    details = []
    for fault in order:
        cut_s = rng.uniform(3.0, 8.0)
        hit = fault.inject(cluster, rng, cut_s)
        injected.append(hit)
        details.append(fault.name + (f" {cut_s:.1f} s" if hit.ends_at > time.monotonic() else ""))
        pause = time.monotonic() + rng.uniform(1.0, 6.0)
        while time.monotonic() < pause:
            witness.sample()
            time.sleep(0.1)
    last_end = max(i.ends_at for i in injected)
    deadline = time.monotonic() + limit_s
    recover_s: float | None = 0.0
    for hit in injected:
        if _recover(cluster, hit, deadline, witness) is None:
            recover_s = None
            break
    if recover_s is not None:
        recover_s = time.monotonic() - last_end
    time.sleep(3.0)
    steps, problems = prefix_check(cluster, reference)
    return Outcome(
        f"random sequence of {count} (seeded)",
        " -> ".join(details),
        (started, time.monotonic()),
        recover_s,
        steps,
        problems,
        witness.describe(),
    )


def final_check(cluster: FaultCluster, reference: Reference, limit_s: float) -> Outcome:
    """Let the replay run out, then the whole journal, positions included."""
    started = time.monotonic()
    total = cluster.steps()
    try:
        wait_until(
            lambda: (c := cluster.committed()) is not None and c[0] == total,
            limit_s,
            "the end of the replay",
        )
    except TimeoutError:
        steps, problems = prefix_check(cluster, reference)
        problems = [f"the replay did not finish within {limit_s:.0f} s", *problems]
        return Outcome("end of the replay", "", (0.0, 0.0), None, steps, problems, timed=False)
    assert cluster.direct is not None
    problems = invariant_problems(outcome(cluster.direct), reference.outcome(), total)
    return Outcome(
        "end of the replay",
        "the whole journal, positions included",
        (started, time.monotonic()),
        None,
        total,
        problems,
        timed=False,
    )


def progress(row: Outcome) -> str:
    recover = "-" if row.recover_s is None else f"{row.recover_s:.1f} s"
    journal = "identical" if not row.invariant else "DIFFERS"
    return f"{row.fault}: {row.detail}; recovered {recover}; {row.seen}; journal {journal}"


def render(title: str, rows: list[Outcome], notes: list[str]) -> str:
    paragraphs = [line for note in notes for line in (note, "")]
    lines = [f"### {title}", "", *paragraphs, TABLE_HEAD, *[r.row() for r in rows]]
    return "\n".join(lines) + "\n"


def write_section(path: Path, name: str, text: str) -> None:
    """Replace (or append) the section between `<!-- faults:{name}:begin/end -->`."""
    begin, end = f"<!-- faults:{name}:begin -->", f"<!-- faults:{name}:end -->"
    doc = path.read_text() if path.exists() else "# Reliability\n"
    block = f"{begin}\n{text}{end}"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(doc)


def machine_note() -> str:
    load1, load5, _ = os.getloadavg()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return (
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit {commit or '?'} on "
        f"{os.cpu_count()} CPUs, load average {load1:.1f} / {load5:.1f} (1 / 5 min) at the end"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short replay, fewer faults")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--postgres", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--no-gcs", action="store_true", help="no GCS FT (no Redis faults)")
    parser.add_argument("--bars-per-second", type=float, default=12.0)
    parser.add_argument("--rps", type=float, default=25.0, help="the load's requests a second")
    parser.add_argument("--sequence", type=int, default=6, help="faults in the random sequence")
    parser.add_argument("--cut-s", type=float, default=8.0, help="each cut of the single runs")
    parser.add_argument("--only", default="", help="comma-separated faults (default: all)")
    parser.add_argument(
        "--proxy-health-period",
        type=float,
        help="RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S for the cluster (Ray's default: 10 s); a "
        "dead HTTP proxy is replaced after 3 failed checks",
    )
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--section", help="the doc's section to replace (default: quick or full)")
    parser.add_argument("--repeat", type=int, default=1, help="run each single fault this often")
    parser.add_argument("--keep-logs", action="store_true", help="Ray's logs to WORK/ray-logs")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp") / f"n1v1-faults-{os.getpid()}")
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    cluster = FaultCluster(
        opts.work,
        postgres=opts.postgres,
        gcs_ft=not opts.no_gcs,
        feed_end="2018-04-04 12:00" if opts.quick else "2018-04-06 23:59",
        bars_per_second=opts.bars_per_second,
        extra_env={}
        if opts.proxy_health_period is None
        else {"RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": str(opts.proxy_health_period)},
        keep_logs=opts.keep_logs,
    )
    chosen = [f for f in FAULTS.values() if cluster.gcs_ft or not f.needs_gcs_ft]
    if opts.only:
        wanted = opts.only.split(",")
        unknown = sorted(set(wanted) - set(FAULTS))
        if unknown:
            parser.error(f"--only: unknown faults {unknown} (known: {sorted(FAULTS)})")
        chosen = [f for f in chosen if f.name in wanted]
    sequence = 0 if opts.quick else opts.sequence
    rows: list[Outcome] = []
    load = None
    began = time.monotonic()
    try:
        cluster.start()
        assert cluster.args is not None
        reference = Reference(cluster.args, opts.work / "reference.db")
        cluster.wait_ready()
        print(f"ready after {time.monotonic() - began:.0f} s; {cluster.steps()} steps to trade")
        reference.outcome()  # the reference finishes first: it shares the CPUs
        load = start_load(cluster.http, TOKEN, rps=opts.rps, seed=opts.seed)
        time.sleep(3.0)
        for fault in [f for f in chosen for _ in range(opts.repeat)]:
            rows.append(run_one(cluster, reference, fault, rng, cut_s=opts.cut_s))
            print(progress(rows[-1]), flush=True)
        if sequence:
            rows.append(run_sequence(cluster, reference, chosen, sequence, rng))
            print(progress(rows[-1]), flush=True)
        whole = load.stop()
        load = None
        whole.gateway_kills = cluster.gateway_kills()
        for row in rows:
            row.count(whole)
        rows.append(final_check(cluster, reference, limit_s=900))
    finally:
        if load is not None:
            load.stop()
        cluster.stop()
    tuning = (
        "Ray's defaults otherwise"
        if opts.proxy_health_period is None
        else f"Serve's proxy health check every {opts.proxy_health_period:g} s"
    )
    notes = [
        machine_note() + "; the machine was shared with other work, so times are upper bounds.",
        f"Load: {opts.rps:g} requests/s from 4 clients over the read-mostly mix "
        f"(bench/faults.py), {whole.summary()['requests']} requests in all. Replay of "
        f"{cluster.steps()} steps at {opts.bars_per_second:g} bars/s on PostgreSQL through a "
        f"TCP proxy; GCS fault tolerance {'on Redis' if cluster.gcs_ft else 'off'}; seed "
        f"{opts.seed}; cuts {opts.cut_s:g} s; 2 Gateway and 2 Model replicas; {tuning}.",
    ]
    shown: list[str] = []
    hidden = ("--json", "--work", "--doc", "--section")  # where it wrote, not what it ran
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg.split("=")[0] in hidden:
            skip = "=" not in arg
        else:
            shown.append(arg)
    text = render(" ".join(["bench/faults.py", *shown]), rows, notes)
    print(text)
    write_section(opts.doc, opts.section or ("quick" if opts.quick else "full"), text)
    if opts.json:
        opts.json.write_text(
            json.dumps({"rows": [r.__dict__ for r in rows], "by_route": whole.by_route()}, indent=2)
        )
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
