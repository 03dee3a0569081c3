"""The Serve app trading live at the (fake) exchange, its Engine replica killed with kill -9 in the
middle: the replacement rebuilds, finds what was in flight by client id and trades on, and the
exchange ends with exactly one order per intent and balances equal to the books."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import requests
from fake_binance import FakeBinance
from live_support import CASH, SYMBOL
from test_live_cli import exchange_with_bars  # noqa: F401 (the fixture)
from test_live_trading import check_books_agree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def engine_replica_pid() -> int | None:
    """The Engine replica of the Ray this test started (a descendant of this process)."""
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "ServeReplica:n1v1:Engine" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    return None


def wait_for(condition: Any, what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_kill_9_of_the_live_engine_replica_loses_no_order_and_doubles_none(
    exchange_with_bars: FakeBinance,  # noqa: F811
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    from load import serve_app  # bench/load.py: the app on a Ray of its own
    from ray import serve

    from n1v1.serve.args import AppArgs

    fake = exchange_with_bars
    acct = fake.add_account("desk", {"USDT": CASH, "BTC": 0})
    (tmp_path / "key").write_text(acct.api_key)
    (tmp_path / "secret").write_text(acct.secret)
    # the Ray this test starts hands its environment to the replicas: the keys' files only
    monkeypatch.setenv("N1V1_EXCHANGE_API_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("N1V1_EXCHANGE_API_SECRET_FILE", str(tmp_path / "secret"))
    url = f"sqlite:///{tmp_path / 'live.db'}"
    args = AppArgs.model_validate(
        {
            "store_url": url,
            "model_root": str(tmp_path / "models"),
            "cash": CASH,
            "feed": {
                "kind": "ccxt",
                "exchange": "binance",
                "symbols": [SYMBOL],
                "timeframe": "1s",
                "poll_seconds": 0.2,
            },
            "venue": {
                "kind": "live",
                "exchange": "binance",
                "base_url": fake.url,
                "poll_s": 0.2,
                "reconcile_every_s": 0.5,
                "grace_s": 1.0,
                "timeout_ms": 2000,
            },
            "strategies": [{"name": "sma_cross", "params": {"fast": 2, "slow": 4}}],
            "risk": {"fraction": 0.2},
            "engine": {"lease_ttl_s": 3.0, "snapshot_every": 5},
        }
    )
    token = "live-serve-" + os.urandom(12).hex()
    headers = {"Authorization": f"Bearer {token}"}
    with serve_app(args, token) as base:

        def status() -> dict[str, Any]:
            return requests.get(f"{base}/api/v1/status", headers=headers, timeout=5).json()

        wait_for(lambda: len(fake.orders(acct)) >= 3, "three orders at the exchange")
        victim = engine_replica_pid()
        assert victim is not None
        before = len(fake.orders(acct))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: engine_replica_pid() not in (None, victim), "a new Engine replica")
        wait_for(lambda: len(fake.orders(acct)) >= before + 3, "trading after the kill", 120)
        fake_orders_at_kill = before
        wait_for(lambda: status()["state"] == "running", "the new engine running")
        # settle: let the last orders fill and their answers reach the books
        wait_for(
            lambda: (
                status()["venue"]["orders_in_flight"] == 0
                and status()["venue"]["answers_waiting"] == 0
            ),
            "no order in flight",
        )
        report = status()["venue"]
        assert report["reconciliation"]["ok"], report
        assert status()["recovery"], "the new engine says how it recovered"
        # the strategy trades on after that settle: stop the engine as an operator would, so it
        # books its last orders' answers (a Ray torn down under it leaves them to the next
        # engine, and the books below would be compared mid-trade)
        serve.delete("n1v1")
    seen = check_books_agree(fake, acct, url)
    assert seen["exchange_orders"] >= fake_orders_at_kill + 3
