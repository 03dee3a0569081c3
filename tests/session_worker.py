"""A paper-trading session in its own process, for the kill -9 test; plus the session builders the
live-session and API tests share, so every run is set up the same way.

As a script: `python session_worker.py STORE_PATH --bars-per-second 80` trades two bundled
datasets into the SQLite store at STORE_PATH, applying the scheduled operator commands (`SCHEDULE`)
at fixed steps, prints `step N` as it goes and `done N` at the end. The test kills it with SIGKILL
half-way and checks that a new session carries on as if nothing happened.

Commands are scheduled by step, not by clock: the `on_step` hook queues the command after step
N-1, and the loop applies it before bar N. Any two runs with the same schedule therefore apply
the same commands at the same steps, whatever their pace.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from n1v1.config import Settings
from n1v1.data.market import load_market
from n1v1.domain import Bar
from n1v1.engine.feeds import ReplayFeed
from n1v1.live.config import StrategySlot
from n1v1.live.replay import PacedReplay
from n1v1.live.session import Feed, TradingSession
from n1v1.store import Store, create_store

BARS = 300  # of each dataset from 2018-04-04 00:00: 300 steps (neither has a gap in them)
# One USD account: an account holds one currency (docs/execution.md, "Currencies").
DATASETS = {"BTC/USD": "coinbase_BTC-USD_1m", "LTC/USD": "coinbase_LTC-USD_1m"}
START = "2018-04-04"

# One open position at a time, a 1 % stop: both rules fire in the first 100 steps.
SETTINGS: dict[str, Any] = {
    "risk": {"fraction": 0.4, "stop_loss_pct": 0.01, "max_open_positions": 1}
}
SLOTS = [
    StrategySlot(name="sma_cross", params={"fast": 5, "slow": 20}, id="fast_sma"),
    StrategySlot(name="rsi"),
    StrategySlot(name="ema_cross", params={"fast": 8, "slow": 30}),
]
WINDOW = 100  # bars each strategy sees; 4 x the longest warm-up is smaller, so this is the window

# Operator commands the worker applies, by the step they apply before: a config change that lets
# a second position open, then a manual buy that needs it (max_open_positions 1 would refuse it
# whenever the strategies hold BTC/USD), then a parent order adding to it.
SCHEDULE: dict[int, tuple[str, dict[str, Any]]] = {
    40: ("config", {"risk": {"max_open_positions": 2}, "strategies": {"fast_sma": {"fast": 4}}}),
    80: ("order", {"symbol": "LTC/USD", "side": "buy", "qty": 5.0}),
    # a TWAP working from step 100 to 140, through the kill of the SIGKILL test (at 120 or after)
    100: (
        "algo_order",
        {
            "symbol": "LTC/USD",
            "side": "buy",
            "qty": "4",
            "algo": "twap",
            "duration": "40min",
            "interval": "5min",
        },
    ),
}


def market(bars: int = BARS) -> dict[str, pd.DataFrame]:
    """The first `bars` one-minute bars of each dataset, keyed by symbol in feed order."""
    return {symbol: load_market(name, start=START).iloc[:bars] for symbol, name in DATASETS.items()}


def settings(**risk: Any) -> Settings:
    """The shared settings, with `risk` overrides (None switches a rule off)."""
    return Settings.model_validate({"risk": {**SETTINGS["risk"], **risk}})


def make_session(
    store: Store,
    feed: Feed,
    *,
    config: Settings | None = None,
    schedule: Mapping[int, tuple[str, dict[str, Any]]] | None = None,
    lease_ttl: float = 15.0,
    holder: str | None = None,
    on_step: Callable[[int], None] | None = None,
    slots: list[StrategySlot] | None = None,
    snapshot_every: int = 1000,
) -> TradingSession:
    """A session over `feed` with the shared strategies; `schedule` commands apply by step."""
    session: TradingSession | None = None
    plan = dict(schedule or {})

    def step_done(_latency: float, _engine: object) -> None:
        assert session is not None
        done = session.steps_done
        if done in plan:
            kind, payload = plan[done]
            session.submit(kind, payload, "worker")
        if on_step is not None:
            on_step(done)

    session = TradingSession(
        config or settings(),
        list(SLOTS if slots is None else slots),
        feed,
        store,
        window=WINDOW,
        lease_ttl=lease_ttl,
        holder=holder,
        on_step=step_done,
        snapshot_every=snapshot_every,
    )
    return session


class GatedFeed:
    """An unpaced replay that hands over steps only up to `gate` (absolute step count), so a test
    can stop the session at an exact step, act, and let it go on: `open_to(n)`."""

    def __init__(self, frames: Mapping[str, pd.DataFrame], gate: int = 0) -> None:
        self._replay = PacedReplay(frames, 0)
        self.symbols = self._replay.symbols
        self.total = len(self._replay)
        self.gate = gate
        self.times = [ts for ts, _ in ReplayFeed(frames)]
        self._position = 0

    @property
    def exhausted(self) -> bool:
        return self._replay.exhausted

    def open_to(self, step: int) -> None:
        self.gate = step

    def resume_after(self, last: pd.Timestamp | None) -> None:
        self._replay.resume_after(last)
        self._position = 0 if last is None else sum(1 for ts in self.times if ts <= last)

    def next_step(self, timeout: float) -> tuple[pd.Timestamp, dict[str, Bar]] | None:
        if self.gate <= self._position < self.total:  # held (past the end: let it run dry)
            time.sleep(timeout)
            return None
        step = self._replay.next_step(timeout)
        if step is not None:
            self._position += 1
        return step


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll `condition` until it holds; fail naming `what` instead of hanging (not a speed test)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def run_to(session: TradingSession, feed: GatedFeed, step: int) -> None:
    """Let the session process exactly up to `step` steps and wait until it has."""
    feed.open_to(step)
    wait_until(
        lambda: session.snapshot.get("step") == step or not session.alive,
        f"session to reach step {step}",
    )
    if session.snapshot.get("step") != step:
        raise AssertionError(f"session stopped at {session.state}: {session.failure}")


def run_to_end(session: TradingSession, feed: Feed, steps: int, timeout: float = 60.0) -> None:
    """Wait until the session has processed all `steps` steps of its feed."""
    wait_until(
        lambda: (feed.exhausted and session.snapshot.get("step") == steps) or not session.alive,
        f"session to finish {steps} steps",
        timeout,
    )
    if session.snapshot.get("step") != steps:
        raise AssertionError(f"session stopped at {session.state}: {session.failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store_path", help="SQLite file of the store")
    parser.add_argument("--bars-per-second", type=float, default=80.0)
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    args = parser.parse_args(argv)

    store = create_store(f"sqlite:///{args.store_path}")
    feed = PacedReplay(market(), args.bars_per_second)

    def progress(step: int) -> None:
        if step % 25 == 0:
            print(f"step {step}", flush=True)

    session = make_session(
        store, feed, schedule=SCHEDULE, lease_ttl=args.lease_ttl, holder="worker", on_step=progress
    )
    session.start()
    run_to_end(session, feed, len(feed), timeout=120.0)
    session.stop()
    store.dispose()
    print(f"done {len(feed)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
