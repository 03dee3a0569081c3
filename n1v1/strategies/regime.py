"""Market-regime detection and the `regime_switch` meta-strategy that trades a different built-in in
each regime (trend followers in trends, mean reversion in ranges, nothing when volatility explodes).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import pandas as pd
import pydantic

from n1v1 import indicators as ind
from n1v1.strategies.base import (
    Strategy,
    StrategyError,
    StrategyParams,
    format_validation_error,
    needs_parameters,
)

FLAT = "flat"  # pseudo-strategy name: target 0 in that regime


class Regime(IntEnum):
    RANGE = 0
    TREND_UP = 1
    TREND_DOWN = 2
    VOLATILE = 3


class RegimeDetectorParams(StrategyParams):
    adx_period: int = pydantic.Field(14, ge=2, le=500, description="ADX/DI period (Wilder)")
    adx_threshold: float = pydantic.Field(
        25.0, ge=0.0, le=100.0, description="ADX above this = trending"
    )
    bb_period: int = pydantic.Field(20, ge=2, le=1000, description="Bollinger width period")
    bb_k: float = pydantic.Field(2.0, ge=0.1, le=10.0, description="Bollinger width multiplier")
    width_lookback: int = pydantic.Field(
        100, ge=2, le=10000, description="bars in the rolling quantile of the width"
    )
    width_quantile: float = pydantic.Field(
        0.8, ge=0.0, le=1.0, description="width above this rolling quantile = volatile"
    )


def regime_warmup(adx_period: int, bb_period: int, width_lookback: int) -> int:
    """First bar where every input of the detector exists; the detector says RANGE before it.

    ADX (Wilder) first exists at 2 x adx_period - 1; the Bollinger width at bb_period - 1 and its
    rolling quantile width_lookback - 1 bars later.
    """
    return max(2 * adx_period - 1, bb_period - 1 + width_lookback - 1)


def detect_regime(
    bars: pd.DataFrame,
    adx_period: int = 14,
    adx_threshold: float = 25.0,
    bb_period: int = 20,
    bb_k: float = 2.0,
    width_lookback: int = 100,
    width_quantile: float = 0.8,
) -> np.ndarray:
    """Regime per bar (int8 of `Regime` values), causal: bar t uses bars[: t + 1] only.

    In order of precedence:

    1. VOLATILE when BW[t] > Q[t], where BW = bollinger_width(close, bb_period, bb_k) and Q[t] is
       the `width_quantile` quantile (linear interpolation) of BW over the last `width_lookback`
       bars including t: the width is unusually high compared with its own recent history.
    2. TREND_UP when ADX[t] > adx_threshold and +DI[t] > -DI[t].
    3. TREND_DOWN when ADX[t] > adx_threshold and -DI[t] > +DI[t].
    4. RANGE otherwise, and during the warm-up (`regime_warmup`).
    """
    try:
        p = RegimeDetectorParams(
            adx_period=adx_period,
            adx_threshold=adx_threshold,
            bb_period=bb_period,
            bb_k=bb_k,
            width_lookback=width_lookback,
            width_quantile=width_quantile,
        )
    except pydantic.ValidationError as err:
        raise StrategyError(
            format_validation_error("detect_regime", RegimeDetectorParams, err)
        ) from None
    missing = [c for c in ("high", "low", "close") if c not in bars.columns]
    if missing:
        raise StrategyError(f"detect_regime: bars are missing column(s) {missing}")
    high, low, close = (bars[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close"))

    width = ind.bollinger_width(close, p.bb_period, p.bb_k)
    q = np.full(width.shape[0], np.nan)
    first = p.bb_period - 1  # bollinger_width is NaN before its first full window
    if width.shape[0] > first:
        q[first:] = ind.rolling_quantile(width[first:], p.width_lookback, p.width_quantile)
    adx, plus_di, minus_di = ind.adx(high, low, close, p.adx_period)
    trending = adx > p.adx_threshold

    out = np.full(close.shape[0], Regime.RANGE, dtype=np.int8)
    out[trending & (minus_di > plus_di)] = Regime.TREND_DOWN
    out[trending & (plus_di > minus_di)] = Regime.TREND_UP
    out[width > q] = Regime.VOLATILE
    out[: regime_warmup(p.adx_period, p.bb_period, p.width_lookback)] = Regime.RANGE
    return out


class RegimeSwitchParams(RegimeDetectorParams):
    trend_up: str = pydantic.Field("ema_cross", description="strategy traded in TREND_UP")
    trend_down: str = pydantic.Field("ema_cross", description="strategy traded in TREND_DOWN")
    range: str = pydantic.Field("bollinger_reversion", description="strategy traded in RANGE")
    volatile: str = pydantic.Field(FLAT, description="strategy traded in VOLATILE ('flat' = 0)")

    @pydantic.model_validator(mode="after")
    def _known_strategies(self) -> RegimeSwitchParams:
        from n1v1.strategies.registry import get_strategy

        for field in ("trend_up", "trend_down", "range", "volatile"):
            value = getattr(self, field)
            if value == FLAT:
                continue
            if value == RegimeSwitch.name:
                raise ValueError(f"{field}: regime_switch cannot select itself")
            try:
                cls = get_strategy(value)
            except StrategyError as err:
                raise ValueError(f"{field}={value!r}: {err}") from None
            if needs_parameters(cls):
                raise ValueError(
                    f"{field}={value!r}: that strategy has required parameters, and regime_switch "
                    "runs its sub-strategies with their defaults"
                )
        return self


class RegimeSwitch(Strategy):
    """Trade the strategy that fits the current regime (see `detect_regime`).

    The target at t is the target at t of the strategy mapped to Regime[t] (`trend_up`,
    `trend_down`, `range`, `volatile`; 'flat' means 0). Each distinct sub-strategy runs once, with
    its default parameters, over the whole history and is then selected bar by bar, so the result
    is causal whenever the sub-strategies and the detector are. A sub-strategy keeps its own state
    while it is not selected: when the regime switches to it, its current position is taken over.

    Warm-up: the larger of the detector's and every selected sub-strategy's warm-up.
    """

    name = "regime_switch"
    Params = RegimeSwitchParams
    params: RegimeSwitchParams

    def _subs(self) -> dict[str, Strategy | None]:
        from n1v1.strategies.registry import create_strategy

        p = self.params
        names = {p.trend_up, p.trend_down, p.range, p.volatile}
        return {n: None if n == FLAT else create_strategy(n) for n in sorted(names)}

    @property
    def warmup(self) -> int:
        p = self.params
        subs = [s.warmup for s in self._subs().values() if s is not None]
        return max([regime_warmup(p.adx_period, p.bb_period, p.width_lookback), *subs])

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        (close,) = self.columns(bars, "close")
        p = self.params
        regime = detect_regime(
            bars, p.adx_period, p.adx_threshold, p.bb_period, p.bb_k, p.width_lookback,
            p.width_quantile,
        )  # fmt: skip
        targets = {
            n: np.zeros(close.shape[0], np.int8)
            if s is None
            else s.target_positions(bars, allow_short)
            for n, s in self._subs().items()
        }
        out = np.zeros(close.shape[0], dtype=np.int8)
        for reg, sub in (
            (Regime.TREND_UP, p.trend_up),
            (Regime.TREND_DOWN, p.trend_down),
            (Regime.RANGE, p.range),
            (Regime.VOLATILE, p.volatile),
        ):
            mask = regime == reg
            out[mask] = targets[sub][mask]
        return self.finish(out, allow_short)
