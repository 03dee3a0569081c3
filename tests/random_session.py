"""A long random trading session for the snapshot tests, in-process or in its own process.

Seeded random bars (hourly, so days change and the daily-loss guard resets), three strategies, and
rules that keep state between bars: stops, a trailing stop, take-profits, a time exit, Kelly sizing
from closed trades, a participation cap (partial fills), drawdown and loss-run breakers with a
cooldown, a daily loss limit, shorts. Random operator commands (pause, resume, config changes,
manual orders, cancels, parent orders and their cancels, the kill switch) apply at fixed steps,
whatever the pace and however often the session restarts: `ScheduledFeed` hands over the step
after N only once the command planned at N has been applied, or found in the store (a previous
process applied it), or refused.

As a script: `python random_session.py STORE_PATH` trades the session into the SQLite store at
STORE_PATH (carrying on from what is stored), printing `step N` after each step and `done N` at
the end; `--hold-in-snapshot STEP` makes the first snapshot at or after STEP wait (inside its
step's transaction, after the snapshot row is written) printing `in-snapshot N`, so the test can
kill the process mid-snapshot.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import pandas as pd

from n1v1.config import Settings
from n1v1.data.synthetic import SyntheticModel, generate_bars
from n1v1.domain import Bar
from n1v1.live.config import StrategySlot
from n1v1.live.replay import PacedReplay
from n1v1.live.session import CommandError, TradingSession
from n1v1.store import Store, StoreReader, create_store

SYMBOLS = ["AAA/USD", "BBB/USD"]
SLOTS = [
    StrategySlot(name="sma_cross", params={"fast": 4, "slow": 12}, id="fast_sma"),
    StrategySlot(name="rsi", params={"period": 6}),
    StrategySlot(name="ema_cross", params={"fast": 5, "slow": 15}),
]
WINDOW = 60
SETTINGS: dict[str, Any] = {
    "risk": {
        "allow_short": True,
        "fraction": 0.3,
        "kelly_min_trades": 4,
        "kelly_lookback": 10,
        "stop_loss_pct": 0.02,
        "trailing_stop_pct": 0.015,
        "take_profit_pct": 0.03,
        "time_exit_bars": 30,
        "max_drawdown": 0.08,
        "max_consecutive_losses": 5,
        "cooldown_bars": 15,
        "max_daily_loss": 0.04,
    },
    "execution": {"participation_cap": 0.2, "slippage_bps": 2.0},
}
MODEL = SyntheticModel(annual_vol=4.0, gap_prob=0.05, jump_prob=0.01)


def market(steps: int, seed: int) -> dict[str, pd.DataFrame]:
    frames = generate_bars(steps, symbols=SYMBOLS, timeframe="1h", seed=seed, model=MODEL)
    assert isinstance(frames, dict)
    return frames


def settings() -> Settings:
    return Settings.model_validate(SETTINGS)


Plan = dict[int, tuple[str, dict[str, Any]]]


def command_plan(steps: int, seed: int, every: int = 8) -> Plan:
    """Random commands, about one per `every` steps, by the step they apply after; a pause or a
    kill switch is followed by a resume a few steps later (with the kill switch's reset)."""
    rng = random.Random(seed)
    plan: Plan = {}
    for step in range(5, steps - 1):
        if step in plan or rng.random() > 1 / every:
            continue
        kind = rng.choice(["order"] * 4 + ["cancel", "config", "config", "pause", "kill_switch"])
        if kind == "order":
            payload: dict[str, Any] = {
                "symbol": rng.choice(SYMBOLS),
                "side": rng.choice(["buy", "sell"]),
                "qty": round(rng.uniform(1, 40), 3),
                "resize": rng.random() < 0.5,
                "reverse": rng.random() < 0.3,
            }
        elif kind == "config":
            payload = rng.choice(
                [
                    {"risk": {"trailing_stop_pct": rng.choice([0.01, 0.02, None])}},
                    {"risk": {"max_open_positions": rng.choice([1, 2, None])}},
                    {"risk": {"take_profit_pct": rng.choice([0.02, 0.05])}},
                    {"risk": {"sizing": rng.choice(["kelly", "fraction"])}},
                    {"strategies": {"fast_sma": {"fast": rng.choice([3, 4, 6])}}},
                    {"strategies": {"rsi": {"period": rng.choice([5, 8])}}},
                ]
            )
        elif kind in ("pause", "kill_switch"):
            payload = {"reason": f"{kind} at {step}"}
            resume = step + rng.randint(2, 12)
            if resume < steps - 1:
                plan[resume] = ("resume", {"reset_kill_switch": kind == "kill_switch"})
        else:
            payload = {}  # cancel: the first working order (parent) at that point, if any
        plan[step] = (kind, payload)
    _add_parent_orders(plan, steps, random.Random(seed + 1), every * 4)
    return plan


def _add_parent_orders(plan: Plan, steps: int, rng: random.Random, every: int) -> None:
    """TWAP parents at free steps (their own random stream, so the other commands stay as they
    were for a seed), half of them cancelled a few steps later."""
    for step in range(5, steps - 1):
        if step in plan or rng.random() > 1 / every:
            continue
        plan[step] = (
            "algo_order",
            {
                "symbol": rng.choice(SYMBOLS),
                "side": rng.choice(["buy", "sell"]),
                "qty": f"{rng.uniform(1, 40):.3f}",
                "algo": "twap",
                "duration": f"{rng.randint(3, 12)}h",
                "interval": rng.choice(["1h", "2h"]),
                **({"max_participation": 0.3} if rng.random() < 0.3 else {}),
            },
        )
        stop = step + rng.randint(2, 6)
        if rng.random() < 0.5 and stop < steps - 1 and stop not in plan:
            plan[stop] = ("algo_cancel", {})


class ScheduledFeed:
    """A replay (optionally paced and gated) that applies `plan`'s command for step N before it
    hands over step N+1: exactly once across restarts (module docstring)."""

    def __init__(
        self,
        frames: Mapping[str, pd.DataFrame],
        plan: Plan,
        store: Store,
        *,
        bars_per_second: float = 0.0,
        gate: int | None = None,
    ) -> None:
        self._replay = PacedReplay(frames, bars_per_second)
        self.symbols = self._replay.symbols
        self.total = len(self._replay)
        self.plan, self.gate = plan, gate
        self.session: TradingSession | None = None
        self._reader = StoreReader(store)
        self._times = list(self._replay._feed.timeline)
        self._position = 0
        self._tried: set[int] = set()
        self._pending: Future[dict[str, Any]] | None = None
        self.refused: dict[int, str] = {}

    @property
    def exhausted(self) -> bool:
        return self._replay.exhausted

    def __len__(self) -> int:
        return self.total

    def describe(self) -> dict[str, Any]:
        return self._replay.describe()

    def resume_after(self, last: pd.Timestamp | None) -> None:
        self._replay.resume_after(last)
        self._position = 0 if last is None else sum(1 for ts in self._times if ts <= last)

    def open_to(self, step: int | None) -> None:
        self.gate = step

    def next_step(self, timeout: float) -> tuple[pd.Timestamp, dict[str, Bar]] | None:
        if self._command_due():
            time.sleep(min(timeout, 0.005))
            return None
        if self.gate is not None and self.gate <= self._position < self.total:
            time.sleep(timeout)
            return None
        step = self._replay.next_step(timeout)
        if step is not None:
            self._position += 1
        return step

    def held_at(self, step: int) -> bool:
        """Held before the step after `step`, the command planned at `step` (if any) dealt with."""
        return (
            self._position == step
            and self._pending is None
            and (step not in self.plan or step in self._tried)
        )

    def _command_due(self) -> bool:
        """True while the command planned at this position has yet to be applied."""
        n = self._position
        if self._pending is not None:
            if not self._pending.done():
                return True
            exc = self._pending.exception()
            if exc is not None and not isinstance(exc, CommandError):
                raise exc
            if isinstance(exc, CommandError):
                self.refused[n] = exc.message
            self._pending = None
            return False
        if n not in self.plan or n in self._tried:
            return False
        kind, payload = self.plan[n]
        if any(c["step"] == n and c["kind"] == kind for c in self._reader.commands()):
            self._tried.add(n)
            return False  # applied by a process before this one
        assert self.session is not None
        if kind == "cancel":
            working = self.session.snapshot.get("working_orders") or []
            if not working:
                self._tried.add(n)
                return False
            payload = {"client_order_id": working[0]["client_order_id"]}
        if kind == "algo_cancel":
            parents = self.session.snapshot.get("algo_orders") or []
            working = [p for p in parents if p["status"] == "working"]
            if not working:
                self._tried.add(n)
                return False
            payload = {"parent_id": working[0]["parent_id"]}
        self._pending = self.session.submit(kind, payload, "plan")
        self._tried.add(n)  # after `_pending`: `held_at` reads both from another thread
        return True


def make_session(
    store: Store,
    feed: ScheduledFeed,
    *,
    holder: str | None = None,
    lease_ttl: float = 15.0,
    snapshot_every: int = 25,
    snapshots_kept: int = 100,
    on_step: Callable[[float, Any], None] | None = None,
) -> TradingSession:
    session = TradingSession(
        settings(),
        list(SLOTS),
        feed,
        store,
        window=WINDOW,
        lease_ttl=lease_ttl,
        holder=holder,
        on_step=on_step,
        snapshot_every=snapshot_every,
        snapshots_kept=snapshots_kept,
    )
    feed.session = session
    return session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store_path")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bars-per-second", type=float, default=0.0)
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    parser.add_argument("--snapshot-every", type=int, default=10)
    parser.add_argument("--hold-in-snapshot", type=int, default=None, metavar="STEP")
    args = parser.parse_args(argv)

    if args.hold_in_snapshot is not None:
        from n1v1.store.journal import SqlJournal

        record = SqlJournal.record_snapshot

        def held(self: SqlJournal, step: int, *rest: Any, **kw: Any) -> Any:
            stored = record(self, step, *rest, **kw)
            if step >= args.hold_in_snapshot:
                print(f"in-snapshot {step}", flush=True)
                time.sleep(600)  # the test kills the process here
            return stored

        SqlJournal.record_snapshot = held  # type: ignore[method-assign]

    store = create_store(f"sqlite:///{args.store_path}")
    feed = ScheduledFeed(
        market(args.steps, args.seed),
        command_plan(args.steps, args.seed),
        store,
        bars_per_second=args.bars_per_second,
    )

    def progress(_latency: float, _engine: object) -> None:
        print(f"step {session.steps_done}", flush=True)

    session = make_session(
        store,
        feed,
        holder=f"worker-{time.time_ns()}",
        lease_ttl=args.lease_ttl,
        snapshot_every=args.snapshot_every,
        snapshots_kept=3,
        on_step=progress,
    )
    session.start()
    deadline = time.monotonic() + 120
    while not (feed.exhausted and session.steps_done == len(feed)):
        if not session.alive or time.monotonic() > deadline:
            print(f"failed {session.state}: {session.failure}", flush=True)
            return 1
        time.sleep(0.01)
    session.stop()
    store.dispose()
    print(f"done {len(feed)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
