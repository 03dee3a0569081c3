"""Hand-built bars and a one-call engine run, so scenario tests read like the scenario."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from n1v1.config import Settings
from n1v1.engine.engine import TradingEngine
from n1v1.engine.feeds import ReplayFeed
from n1v1.engine.signals import PrecomputedTargets
from n1v1.strategies.base import Strategy

START = pd.Timestamp("2024-01-01", tz="UTC")


def make_bars(
    rows: Sequence[tuple[float, float, float, float] | tuple[float, float, float, float, float]],
    freq: str = "1h",
    start: pd.Timestamp = START,
) -> pd.DataFrame:
    """Rows of (open, high, low, close[, volume]); volume defaults to 1,000."""
    data = [(*r, 1000.0) if len(r) == 4 else tuple(r) for r in rows]
    index = pd.date_range(start, periods=len(data), freq=freq, tz="UTC", name="timestamp")
    frame = pd.DataFrame(data, index=index, columns=["open", "high", "low", "close", "volume"])
    return frame.astype(np.float64)


def settings(**sections: Mapping[str, Any]) -> Settings:
    """Settings with zero fees unless a test sets them, so every number in a test is its own."""
    data: dict[str, Any] = {
        "execution": {"maker_fee": 0.0, "taker_fee": 0.0},
        "backtest": {"cash": 10_000.0},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return Settings.model_validate(data)


def run_engine(
    frames: pd.DataFrame | Mapping[str, pd.DataFrame],
    targets: Sequence[int] | Mapping[str, Sequence[int]],
    config: Settings,
) -> TradingEngine:
    if isinstance(frames, pd.DataFrame):
        frames = {"BTC": frames}
        targets = {"BTC": targets}  # type: ignore[dict-item]
    assert isinstance(targets, Mapping)
    engine = TradingEngine(config)
    engine.add_signal_source(
        PrecomputedTargets.from_arrays("test", {s: np.asarray(t) for s, t in targets.items()})
    )
    engine.run(ReplayFeed(frames))
    return engine


def synthetic_walk(
    n: int, seed: int, vol: float = 0.01, start_price: float = 100.0
) -> pd.DataFrame:
    """A seeded OHLCV random walk with consistent bars, for property and parity tests."""
    rng = np.random.default_rng(seed)
    close = start_price * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.empty(n)
    open_[0] = start_price
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, vol / 4, n - 1))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, vol, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, vol, n))
    volume = rng.uniform(50.0, 500.0, n)
    index = pd.date_range(START, periods=n, freq="1h", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


class FixedTargets(Strategy):
    """A strategy that answers the given targets (one per bar), named as a test needs it."""

    name = "fixed_targets"

    def __init__(self, targets: Sequence[int], name: str = "fixed_targets") -> None:
        super().__init__()
        self.targets = np.asarray(targets, dtype=np.int8)
        self.name = name  # type: ignore[misc]

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        if len(bars) != len(self.targets):
            raise ValueError(f"{self.name}: {len(self.targets)} targets for {len(bars)} bars")
        out = self.targets.copy()
        return out if allow_short else np.maximum(out, 0).astype(np.int8)


def momentum_bars(n: int = 3000, phi: float = 0.5, sigma: float = 0.004) -> pd.DataFrame:
    """One-minute bars whose log returns are AR(1): r[t] = phi r[t-1] + noise (seeded)."""
    rng = np.random.default_rng(11)
    noise = rng.normal(0.0, sigma, n)
    returns = np.empty(n)
    returns[0] = noise[0]
    for i in range(1, n):
        returns[i] = phi * returns[i - 1] + noise[i]
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[100.0], close[:-1]])
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + rng.uniform(0.0, 5e-4, n)),
            "low": np.minimum(open_, close) * (1 - rng.uniform(0.0, 5e-4, n)),
            "close": close,
            "volume": rng.uniform(1.0, 9.0, n),
        },
        index=index,
    )
