"""A live session against the fake Binance, shared by the live tests and their worker process.

The session is the real one (`TradingSession`) with the real live venue, broker and ccxt client;
only the market data is a replay of synthetic bars, so that a run is repeatable. Before each
order is sent the exchange's price is set to the last bar's close (`on_step`), so the exchange
fills where the engine decided.

As a script (the kill -9 tests): `python live_support.py STORE_URL EXCHANGE_URL API_KEY SECRET
[--crash-at POINT] [--bars N]` trades until the feed is done (prints `done`), or kills itself with
SIGKILL at the broker's checkpoint POINT (`before_create`, `after_create`, `after_fill`; with
`--exits`, tight stops and take-profits, and `--crash-purpose stop_loss`: only that purpose's); the
exchange's price stays where the test set it (the bars stay within a few per cent of it).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_binance import FakeBinance

from n1v1.config import Settings
from n1v1.live.broker import ExchangeBroker
from n1v1.live.config import StrategySlot
from n1v1.live.replay import PacedReplay
from n1v1.live.session import TradingSession
from n1v1.store import Store, create_store

SYMBOL, MARKET = "BTC/USDT", "BTCUSDT"
CASH = 10_000.0
SLOTS = [StrategySlot(name="sma_cross", params={"fast": 2, "slow": 5})]
SETTINGS = Settings.model_validate(
    {
        "backtest": {"cash": CASH, "currency": "USDT"},
        "risk": {"fraction": 0.2},
        "execution": {"taker_fee": 0.001, "maker_fee": 0.001},
    }
)


# tight exits on `bars`: several stops and take-profits are reached in 80 bars
EXITS = SETTINGS.model_copy(
    update={
        "risk": SETTINGS.risk.model_copy(update={"stop_loss_pct": 0.003, "take_profit_pct": 0.004})
    }
)


def bars(n: int, seed: int = 7, flat_tail: int = 6) -> dict[str, pd.DataFrame]:
    """`n` seeded one-minute bars around 100 that make sma_cross trade often, then `flat_tail`
    bars at the last close (no new signal: what was sent by then is settled by the end)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n)))
    close = np.concatenate([close, np.full(flat_tail, close[-1])])
    open_ = np.concatenate([[100.0], close[:-1]])
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": np.full(len(close), 1_000.0),
        },
        index=pd.date_range("2026-01-01", periods=len(close), freq="1min", tz="UTC"),
    )
    frame.index.name = "timestamp"
    return {SYMBOL: frame}


def received_qty(trades: Any, base: str = "BTC") -> Any:
    """What the account received from the exchange's trades: a fee charged in the base asset
    (Binance's rule for a buy) is base the account never got. The books must hold this."""
    return sum(t.qty - (t.commission if t.commission_asset == base else 0) for t in trades)


def exchange() -> FakeBinance:
    server = FakeBinance().start()
    server.add_market(MARKET, "BTC", "USDT", price=100)
    return server


def broker_factory(
    client: Any, grace_s: float, checkpoint: Callable[[str, str], None] | None = None
) -> Callable[..., ExchangeBroker]:
    def build(venue: Any, log: Any, reference_price: Any) -> ExchangeBroker:
        client.load_markets()
        return ExchangeBroker(
            client,
            venue,
            log,
            reference_price=reference_price,
            grace_s=grace_s,
            checkpoint=checkpoint,
            sleep=lambda s: time.sleep(min(s, 0.05)),
        )

    return build


def live_session(
    store: Store,
    url: str,
    api_key: str,
    secret: str,
    frames: dict[str, pd.DataFrame],
    *,
    price: Callable[[float], None] | None = None,
    grace_s: float = 0.5,
    timeout_ms: int = 1_000,
    checkpoint: Callable[[str, str], None] | None = None,
    holder: str | None = None,
    lease_ttl: float = 15.0,
    reconcile_s: float = 60.0,
    bars_per_second: float = 0,
    settings: Settings = SETTINGS,
) -> TradingSession:
    """A session trading `frames` at the exchange at `url`; `price(close)` after each step sets
    the exchange's price to the bar's close before the step's orders are sent."""
    from fake_binance import local_binance

    client = local_binance(url, timeout_ms=timeout_ms)
    client.apiKey, client.secret = api_key, secret
    client.options["adjustForTimeDifference"] = True  # as n1v1/live/connect.py sets it

    def on_step(_decision_s: float, engine: Any) -> None:
        if price is not None:
            price(float(engine.portfolio.position(SYMBOL).last_price))

    return TradingSession(
        settings,
        list(SLOTS),
        PacedReplay(frames, bars_per_second),
        store,
        window=50,
        broker=broker_factory(client, grace_s, checkpoint),
        poll_s=0.0,
        on_step=on_step,
        holder=holder,
        lease_ttl=lease_ttl,
        reconcile_s=reconcile_s,
    )


def run_until_settled(session: TradingSession, timeout_s: float = 60.0) -> None:
    """Start (unless started), wait until the feed is done and no order is left in flight, stop."""
    if not session.alive:
        session.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if not session.alive:
                raise AssertionError(f"session died: {session.state} {session.failure}")
            done = session.state == "replay_finished"
            if done and not session.engine.venue.in_flight():
                return
            if time.monotonic() > deadline:
                working = session.engine.venue.in_flight()
                raise AssertionError(f"not settled in {timeout_s} s: {session.state}, {working}")
            time.sleep(0.05)
    finally:
        session.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store_url")
    ap.add_argument("exchange_url")
    ap.add_argument("api_key")
    ap.add_argument("secret")
    ap.add_argument("--crash-at", default="")
    ap.add_argument("--crash-after", type=int, default=1, help="the Nth time the point is hit")
    ap.add_argument("--bars", type=int, default=60)
    ap.add_argument("--exits", action="store_true", help="tight stops and take-profits")
    ap.add_argument("--crash-purpose", default="", help="count only orders of this purpose")
    a = ap.parse_args()
    hits = {"n": 0}

    def checkpoint(point: str, purpose: str) -> None:
        if point == a.crash_at and a.crash_purpose in ("", purpose):
            hits["n"] += 1
            if hits["n"] == a.crash_after:
                print(f"crash {point} {purpose}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    store = create_store(a.store_url)
    # the exchange's price stays where the test set it (the bars stay within a few % of it)
    session = live_session(
        store,
        a.exchange_url,
        a.api_key,
        a.secret,
        bars(a.bars),
        checkpoint=checkpoint,
        settings=EXITS if a.exits else SETTINGS,
    )
    run_until_settled(session)
    print("done", flush=True)


if __name__ == "__main__":
    main()
