"""`n1v1 live --config FILE` as a user runs it: a session in the foreground with its own
Prometheus endpoint, on the paper venue and at a (fake) exchange, stopped with Ctrl-C."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from dashboard_api import free_port
from fake_binance import FakeBinance
from live_support import CASH, MARKET, SYMBOL
from test_live_trading import check_books_agree

ROOT = Path(__file__).resolve().parent.parent


def metrics(port: int) -> dict[str, float]:
    """The endpoint's samples: `name{labels}` -> value (the first sample of each name too)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
            out.setdefault(key.split("{")[0], float(value))
    return out


def start(config: dict[str, Any], tmp_path: Path, env: dict[str, str]) -> tuple[Any, int]:
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("N1V1_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "n1v1", "live", "--config", str(path), "--metrics-port", str(port)],
        cwd=tmp_path,
        env={**clean, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, port


def wait_for(condition: Any, what: str, process: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except OSError:
            pass  # the endpoint is not up yet
        if process.poll() is not None:
            raise AssertionError(
                f"n1v1 live exited while waiting for {what}: {process.stdout.read()}"
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def stop(process: Any) -> str:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    return out


def test_paper_in_the_foreground_exports_the_engines_metrics_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    config = {
        "store_url": f"sqlite:///{tmp_path / 'paper.db'}",
        "feed": {"kind": "replay", "datasets": ["coinbase_BTC-USD_1m"], "bars_per_second": 200},
        "strategies": [{"name": "sma_cross", "params": {"fast": 5, "slow": 20}}],
    }
    process, port = start(config, tmp_path, {})
    try:
        wait_for(
            lambda: metrics(port).get("ray_n1v1_bars_processed_total", 0) > 50, "bars", process
        )
        seen = metrics(port)
        acting = (
            'ray_n1v1_engine_state{state="running"}',
            'ray_n1v1_engine_state{state="replay_finished"}',
        )  # (a short replay may be over already); refreshed every second from the status
        wait_for(lambda: sum(metrics(port).get(k, 0) for k in acting) == 1.0, "the state", process)
        assert seen["ray_n1v1_store_available"] == 1.0
        assert "ray_n1v1_decision_latency_seconds_bucket" in seen
    finally:
        out = stop(process)
    assert "n1v1 live: trading on the simulated venue (paper)" in out
    assert "n1v1 live: stopped after step" in out


@pytest.mark.parametrize("name", ["live-paper.yaml", "live-binance-testnet.yaml"])
def test_the_example_configs_are_valid(name: str) -> None:
    from n1v1.config import read_yaml_mapping
    from n1v1.serve.args import AppArgs

    args = AppArgs.model_validate(read_yaml_mapping(ROOT / "examples" / name, "config file"))
    assert args.venue.kind == ("live" if "binance" in name else "paper")


def test_a_bad_config_names_the_key_and_starts_nothing(tmp_path: Path) -> None:
    config = {"venue": {"kind": "live"}, "risk": {"stop_loss_pct": 0.02}}
    process, _ = start(config, tmp_path, {})
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 2, out
    assert "venue.kind: live trades on the exchange's own bars: set feed.kind to ccxt" in out
    assert "Traceback" not in out


@pytest.fixture
def exchange_with_bars() -> Any:
    """The fake Binance with one-second bars appearing in real time (a random walk around 100),
    its price following each bar's close."""
    server = FakeBinance().start()
    server.add_market(MARKET, "BTC", "USDT", price=100)
    done = threading.Event()
    rng = np.random.default_rng(11)

    def produce() -> None:
        close = 100.0
        second = int(time.time()) - 30
        while not done.is_set():
            while second + 1 <= time.time():  # every bar that has closed by now
                open_ = close
                close = open_ * math.exp(rng.normal(0.0, 0.004))
                high, low = max(open_, close) * 1.001, min(open_, close) * 0.999
                server.put_bar(MARKET, "1s", second * 1000, (open_, high, low, close, 10.0))
                server.set_price(MARKET, round(close, 2))
                second += 1
            done.wait(0.05)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    yield server
    done.set()
    thread.join(timeout=5)
    server.close()


def test_live_at_the_exchange_with_keys_from_files_and_the_venue_gauges(
    exchange_with_bars: FakeBinance, tmp_path: Path
) -> None:
    fake = exchange_with_bars
    acct = fake.add_account("desk", {"USDT": CASH, "BTC": 0})
    (tmp_path / "key").write_text(acct.api_key + "\n")
    (tmp_path / "secret").write_text(acct.secret + "\n")
    env = {
        "N1V1_EXCHANGE_API_KEY_FILE": str(tmp_path / "key"),
        "N1V1_EXCHANGE_API_SECRET_FILE": str(tmp_path / "secret"),
    }
    url = f"sqlite:///{tmp_path / 'live.db'}"
    config = {
        "store_url": url,
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
    }
    process, port = start(config, tmp_path, env)
    try:
        wait_for(
            lambda: metrics(port).get("ray_n1v1_orders_filled_total", 0) >= 2,
            "two orders filled at the exchange",
            process,
            timeout_s=90,
        )
        wait_for(lambda: metrics(port).get("ray_n1v1_venue_reconciled") == 1.0, "a check", process)
        seen = metrics(port)
        assert "ray_n1v1_venue_orders_in_flight" in seen
        assert "ray_n1v1_venue_orders_unknown" in seen
    finally:
        out = stop(process)
    assert "n1v1 live: trading on binance" in out
    assert acct.secret not in out and acct.api_key not in out
    check_books_agree(fake, acct, url)
