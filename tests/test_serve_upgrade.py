"""A RayService upgrade, locally: two Ray clusters, each running the whole Serve application, on one
store; the old one trading, the new one started beside it, then the old one gone.

That is what KubeRay does when a RayService's cluster spec changes (a new image, new resources):
it starts a new RayCluster, deploys `serveConfigV2` to it through its dashboard, waits until the
application there is RUNNING, moves the Service over and deletes the old cluster. Between the two
steps both clusters run an Engine on the same store. Here:

1. two `ray start --head` clusters of our own (free ports, their own sessions; never `ray stop`);
2. `serve deploy` of the same config to each through its dashboard, as KubeRay deploys it, the
   old one ("blue") first; its engine takes the lease and trades a paced replay;
3. the new one ("green"): its application becomes RUNNING (what KubeRay waits for) while its
   engine stands by, naming blue's engine as the holder, and its /readyz says not ready;
4. blue vanishes as a deleted cluster does: every process of its Ray session is killed with
   SIGKILL, mid-replay, with no graceful release of the lease;
5. green's engine takes the lease when it expires (`engine.lease_ttl_s`, 3 s here), rebuilds from
   the store, and trades the rest of the replay.

Then, from the store alone: every step of the feed exactly once in the bar log, in order (no gap,
no duplicate), one equity point per step, every client order id and fill once, and the orders,
their event histories, fills, signals, risk decisions, positions and equity equal to an
uninterrupted run of the same feed (the engine is deterministic and rebuilds by replay).

The store is PostgreSQL where TEST_POSTGRES_URL is set (as in CI: a schema of its own, dropped
afterwards), otherwise one SQLite file both clusters open. Takes about 90 s on 2 CPUs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pytest
import requests
import yaml
from journal_outcome import outcome
from test_store import PG_ENV, _postgres_url

from n1v1.cli.local_ray import HeadPorts, LocalRayHead, free_port, processes_in_session
from n1v1.live.session import TradingSession
from n1v1.serve.args import AppArgs
from n1v1.serve.engine import make_feed
from n1v1.store import StoreReader, create_store, current_lease
from n1v1.store.journal import DEFAULT_RESOURCE

pytestmark = pytest.mark.slow

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = ROOT / "serve_config.yaml"
TOKEN = "upgrade-test-token-0123456789abcdef"
LEASE_TTL = 3.0
# One day of two one-minute datasets in one USD account (1,009 steps: the files have holes), 25
# bars a second: about 40 s of trading, longer than the new cluster takes to deploy beside the old
# one (15 to 25 s here), so the old one is killed mid-replay.
FEED = {
    "kind": "replay",
    "datasets": ["coinbase_BTC-USD_1m", "coinbase_LTC-USD_1m"],
    "start": "2018-04-04 00:00",
    "end": "2018-04-04 23:59",
    "bars_per_second": 25,
    "after_replay": "stop",
}


@dataclass
class Cluster:
    name: str
    head: LocalRayHead
    http: str

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.head.ports.dashboard}"


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
            last = exc  # a replica still starting
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")
        time.sleep(0.2)


def status(cluster: Cluster) -> dict[str, Any]:
    response = requests.get(
        f"{cluster.http}/api/v1/status",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()


def app_status(cluster: Cluster) -> str:
    """The application's status as KubeRay reads it: the dashboard's Serve REST API."""
    response = requests.get(f"{cluster.dashboard}/api/serve/applications/", timeout=10)
    response.raise_for_status()
    return response.json()["applications"]["n1v1"]["status"]


def serve_config(args: AppArgs, http_port: int) -> dict[str, Any]:
    """serve_config.yaml with this test's builder args and port; no user_config."""
    doc = yaml.safe_load(CONFIG.read_text())
    doc["http_options"] = {"host": "127.0.0.1", "port": http_port}
    (app,) = doc["applications"]
    app["args"] = args.model_dump(mode="json")
    app["deployments"] = []
    return doc


def serve_deploy(cluster: Cluster, doc: dict[str, Any], tmp: Path) -> None:
    """What KubeRay does with serveConfigV2, by hand: `serve deploy` through the dashboard."""
    path = tmp / f"{cluster.name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    done = subprocess.run(
        [str(BIN / "serve"), "deploy", str(path), "--address", cluster.dashboard],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, RAY_AUTH_MODE="disabled"),
    )
    assert done.returncode == 0, f"serve deploy failed:\n{done.stdout}\n{done.stderr}"


def vanish(head: LocalRayHead) -> list[int]:
    """SIGKILL every process of the head's session until none is left: a deleted cluster's pods
    are gone at once, with no shutdown hook and no lease release."""
    sid = head.session_id
    assert sid is not None
    killed: list[int] = []
    deadline = time.monotonic() + 30
    while alive := [pid for pid in [sid, *processes_in_session(sid)] if _alive(pid)]:
        assert time.monotonic() < deadline, f"processes of the old cluster still alive: {alive}"
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    assert head.process is not None
    head.process.wait(10)
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # an exited child of ours that nobody reaped yet is not running
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    if os.environ.get(PG_ENV):
        yield from _postgres_url()
    else:
        print(f"{PG_ENV} is not set: both clusters share one SQLite file instead of PostgreSQL")
        yield f"sqlite:///{tmp_path / 'n1v1.db'}"


def test_a_rayservice_upgrade_hands_the_engine_over_without_a_gap_or_a_duplicate(
    tmp_path: Path, store_url: str
) -> None:
    args = AppArgs.model_validate(
        {
            "store_url": store_url,
            "model_root": str(tmp_path / "models"),
            "feed": FEED,
            "strategies": [
                {"name": "ema_cross", "params": {"fast": 5, "slow": 20}},
                {"name": "rsi", "params": {"period": 14}},
            ],
            "risk": {"fraction": 0.3, "stop_loss_pct": 0.01},
            "engine": {"lease_ttl_s": LEASE_TTL},
            "api": {"max_replicas": 1},
            "model": {"max_replicas": 1},
        }
    )
    steps = len(make_feed(args))
    create_store(
        store_url
    ).dispose()  # the database exists before the first deploy, as in a cluster

    # the uninterrupted run to compare with: the same session code, unpaced, its own store
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
        lease_ttl=LEASE_TTL,
    )

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("N1V1_")}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        N1V1_API_TOKEN=TOKEN,  # read where the app is built: a worker of that cluster
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    clusters = []
    for name in ("blue", "green"):
        ports = HeadPorts(free_port(), free_port(), free_port(), free_port(), free_port())
        head = LocalRayHead(str(BIN / "ray"), ports, 2, env)
        clusters.append(Cluster(name, head, f"http://127.0.0.1:{free_port()}"))
    blue, green = clusters
    try:
        starting = [threading.Thread(target=c.head.start) for c in clusters]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        for cluster in clusters:
            assert cluster.head.process is not None and cluster.head.process.poll() is None
        reference.start()
        started = time.monotonic()

        # blue: deployed, takes the lease, trades
        serve_deploy(blue, serve_config(args, int(blue.http.rsplit(":", 1)[1])), tmp_path)
        trading = wait_for(
            lambda: (s := status(blue))["state"] == "running" and s["step"] > 0 and s,
            180,
            "blue's engine to trade",
        )
        blue_holder, blue_token = trading["lease"]["holder"], trading["lease"]["token"]
        blue_trading_s = time.monotonic() - started

        # green: deployed beside it; RUNNING as KubeRay sees it, its engine standing by
        serve_deploy(green, serve_config(args, int(green.http.rsplit(":", 1)[1])), tmp_path)
        standby = wait_for(
            lambda: (s := status(green))["state"] == "standby" and s,
            180,
            "green's engine to stand by",
        )
        green_standby_s = time.monotonic() - started
        assert f"held by {blue_holder!r} until " in standby["failure"]
        assert standby["step"] == 0
        wait_for(lambda: app_status(green) == "RUNNING", 60, "green's application to be RUNNING")
        not_ready = requests.get(f"{green.http}/readyz", timeout=10)
        assert not_ready.status_code == 503 and not_ready.json()["checks"]["engine"] is False
        assert status(green)["state"] == "standby"  # still: blue renews its lease

        # blue vanishes mid-replay, without releasing the lease
        store = create_store(store_url)
        reader = StoreReader(store)
        killed = vanish(blue.head)
        gone_at = time.monotonic()
        assert killed
        last = reader.get_state("last_step")
        assert 0 < last["step"] < steps, f"precondition: blue was killed mid-replay, not at {last}"
        held = current_lease(store, DEFAULT_RESOURCE)
        assert held is not None and (held.holder, held.token) == (blue_holder, blue_token)

        # green takes over when blue's lease expires, and trades the rest of the feed
        taken = wait_for(
            lambda: (s := status(green))["state"] in ("running", "replay_finished") and s,
            60,
            "green's engine to take over",
        )
        takeover_s = time.monotonic() - gone_at
        assert taken["lease"]["holder"] != blue_holder
        assert taken["lease"]["token"] == blue_token + 1
        assert taken["step"] >= last["step"]  # rebuilt from blue's steps, not from zero
        assert takeover_s < LEASE_TTL + 30
        final = wait_for(
            lambda: (s := status(green))["feed_exhausted"] and s["step"] == steps and s,
            120,
            "green to finish the replay",
        )
        assert final["lease"]["token"] == blue_token + 1
        assert requests.get(f"{green.http}/readyz", timeout=10).status_code == 200
        wait_for(lambda: reference.snapshot.get("feed_exhausted"), 120, "the reference run")
    finally:
        reference.stop()
        for cluster in clusters:
            cluster.head.stop()
            cluster.head.remove_temp_dir()
    assert reference.steps_done == steps

    served, expected = outcome(store), outcome(ref_store)
    # the bar log: steps 0..N-1, each exactly once, in order, the feed's bars
    logged_steps = [row[0] for row in served["bars"]]
    assert sorted(set(logged_steps)) == list(range(steps))
    assert logged_steps == sorted(logged_steps)
    assert served["bars"] == expected["bars"]
    assert len(served["equity"]) == steps
    assert len({p.timestamp for p in served["equity"]}) == steps  # one point per step
    fills = [(f.client_order_id, f.seq) for f in served["fills"]]
    assert len(fills) == len(set(fills))
    for key in expected:
        assert served[key] == expected[key], key
    # not a vacuous comparison: both engines traded
    blue_end = pd.Timestamp(last["time"])  # the last bar blue committed
    fill_times = [f.timestamp for f in expected["fills"]]
    assert min(fill_times) <= blue_end < max(fill_times), (blue_end, fill_times[0], fill_times[-1])
    print(
        f"\nblue trading {blue_trading_s:.0f} s after both heads were up, green standing by at "
        f"{green_standby_s:.0f} s; blue killed after step {last['step']} of {steps}; green "
        f"trading from step {taken['step']} {takeover_s:.1f} s later (lease TTL {LEASE_TTL:g} s)"
    )
