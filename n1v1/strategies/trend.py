"""Trend-following built-ins: moving-average crosses, MACD and the buy-and-hold baseline.

These are "state" strategies: the target at t is a direct function of indicator values at t (no
memory of earlier entries), so they need no event state machine.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np
import pandas as pd
import pydantic
from numba import njit

from n1v1 import indicators as ind
from n1v1.strategies.base import Strategy, StrategyParams


def _cross_target(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """+1 where fast > slow, -1 where fast < slow, 0 where equal or either is NaN (warm-up)."""
    return (fast > slow).astype(np.int8) - (fast < slow).astype(np.int8)


class _FastSlowParams(StrategyParams):
    @pydantic.model_validator(mode="after")
    def _fast_below_slow(self) -> _FastSlowParams:
        if not self.fast < self.slow:  # type: ignore[attr-defined]
            raise ValueError(
                f"fast ({self.fast}) must be less than slow ({self.slow})"  # type: ignore[attr-defined]
            )
        return self


class SmaCrossParams(_FastSlowParams):
    fast: int = pydantic.Field(10, ge=2, le=500, description="bars in the fast SMA of the close")
    slow: int = pydantic.Field(30, ge=3, le=1000, description="bars in the slow SMA of the close")


@njit(cache=True)
def _cross_positions(fast, slow, warmup, allow_short):  # pragma: no cover (compiled)
    """`finish(_cross_target(fast, slow))` in one pass: a sweep builds one per parameter set."""
    n = fast.shape[0]
    out = np.zeros(n, dtype=np.int8)
    for t in range(warmup, n):
        f, s = fast[t], slow[t]
        if f > s:
            out[t] = 1
        elif f < s and allow_short:
            out[t] = -1
    return out


class _AverageCross(Strategy):
    """Long while average(close, fast) > average(close, slow); the subclass picks the average."""

    average: Callable[[np.ndarray, int], np.ndarray]
    params: SmaCrossParams | EmaCrossParams

    @property
    def warmup(self) -> int:
        return self.params.slow - 1

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        (close,) = self.columns(bars, "close")
        p = self.params
        fast, slow = self.average(close, p.fast), self.average(close, p.slow)
        return _cross_positions(fast, slow, self.warmup, bool(allow_short))

    def chart_lines(self, bars: pd.DataFrame) -> dict[str, np.ndarray]:
        (close,) = self.columns(bars, "close")
        kind = self.name.split("_")[0]  # sma, ema
        p = self.params
        return {
            f"{kind}({p.fast})": self.average(close, p.fast),
            f"{kind}({p.slow})": self.average(close, p.slow),
        }

    def cached_target_positions(
        self, bars: pd.DataFrame, allow_short: bool, cache: dict[Hashable, np.ndarray]
    ) -> np.ndarray:
        """A sweep's sets share windows: each average is computed once per bars, under the key
        (strategy name, window)."""
        averages = []
        for window in (self.params.fast, self.params.slow):
            key = (self.name, window)
            if key not in cache:
                (close,) = self.columns(bars, "close")
                cache[key] = self.average(close, window)
            averages.append(cache[key])
        return _cross_positions(*averages, self.warmup, bool(allow_short))


class SmaCross(_AverageCross):
    """Long while SMA(close, fast) > SMA(close, slow); otherwise flat.

    With shorts allowed: short while SMA(fast) < SMA(slow) (flat only when the two are exactly
    equal). Warm-up: slow - 1 bars (the first bar where the slow SMA exists). This is the benchmark
    strategy compared against other frameworks, so the rule is deliberately the plain textbook one.
    """

    name = "sma_cross"
    Params = SmaCrossParams
    params: SmaCrossParams
    average = staticmethod(ind.sma)


class EmaCrossParams(_FastSlowParams):
    fast: int = pydantic.Field(9, ge=2, le=500, description="span of the fast EMA of the close")
    slow: int = pydantic.Field(21, ge=3, le=1000, description="span of the slow EMA of the close")


class EmaCross(_AverageCross):
    """Long while EMA(close, fast) > EMA(close, slow); otherwise flat (short instead when allowed).

    Same rule as sma_cross on exponential averages. Warm-up: slow - 1 bars (the slow
    EMA's NaN warm-up).
    """

    name = "ema_cross"
    Params = EmaCrossParams
    params: EmaCrossParams
    average = staticmethod(ind.ema)


class MacdParams(_FastSlowParams):
    fast: int = pydantic.Field(12, ge=2, le=500, description="fast EMA span of the MACD line")
    slow: int = pydantic.Field(26, ge=3, le=1000, description="slow EMA span of the MACD line")
    signal: int = pydantic.Field(9, ge=1, le=500, description="EMA span of the signal line")


class Macd(Strategy):
    """Long while the MACD line (EMA fast - EMA slow) > its signal line (EMA of the line).

    With shorts allowed: short while the line < the signal line. Warm-up: slow + signal - 2 bars
    (the slow EMA needs slow - 1 bars, then the signal EMA of the line another signal - 1).
    """

    name = "macd"
    Params = MacdParams
    params: MacdParams

    @property
    def warmup(self) -> int:
        return self.params.slow + self.params.signal - 2

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        (close,) = self.columns(bars, "close")
        p = self.params
        line, signal, _hist = ind.macd(close, p.fast, p.slow, p.signal)
        return self.finish(_cross_target(line, signal), allow_short)


class BuyAndHold(Strategy):
    """Long from the first bar to the last (target +1 everywhere): the baseline every strategy must
    beat after costs. No parameters, no warm-up; allow_short changes nothing."""

    name = "buy_and_hold"
    Params = StrategyParams

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        (close,) = self.columns(bars, "close")
        return np.ones(close.shape[0], dtype=np.int8)
