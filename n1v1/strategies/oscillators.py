"""Mean-reversion built-ins driven by bounded oscillators and bands: RSI, stochastic, Bollinger.

These are "event" strategies: an entry happens on a crossing, the position is then held until its
exit condition, so they go through the `hold_position` state machine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydantic

from n1v1 import indicators as ind
from n1v1.strategies.base import (
    Strategy,
    StrategyParams,
    VolumeFilterParams,
    crossed_above,
    crossed_below,
    volume_confirmed,
    volume_filter_warmup,
)


class _ZoneParams(StrategyParams):
    @pydantic.model_validator(mode="after")
    def _oversold_below_overbought(self) -> _ZoneParams:
        if not self.oversold < self.overbought:  # type: ignore[attr-defined]
            raise ValueError(
                f"oversold ({self.oversold}) must be less than "  # type: ignore[attr-defined]
                f"overbought ({self.overbought})"  # type: ignore[attr-defined]
            )
        return self


class RsiParams(_ZoneParams):
    period: int = pydantic.Field(14, ge=2, le=500, description="RSI period (Wilder)")
    oversold: float = pydantic.Field(30.0, ge=0.0, le=100.0, description="long entry level")
    overbought: float = pydantic.Field(70.0, ge=0.0, le=100.0, description="short entry level")


class Rsi(Strategy):
    """RSI reversal.

    - enter long at t when RSI crosses up through `oversold`: RSI[t-1] <= oversold < RSI[t];
    - exit long when RSI[t] >= overbought;
    - enter short (if allowed) when RSI crosses down through `overbought`:
      RSI[t-1] >= overbought > RSI[t]; exit short when RSI[t] <= oversold.

    Held between events by `hold_position`. Warm-up: period + 1 bars (RSI first exists at bar
    `period`, and a crossing also needs the bar before).
    """

    name = "rsi"
    Params = RsiParams
    params: RsiParams

    @property
    def warmup(self) -> int:
        return self.params.period + 1

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        (close,) = self.columns(bars, "close")
        p = self.params
        r = ind.rsi(close, p.period)
        return self.hold(
            enter_long=crossed_above(r, p.oversold),
            exit_long=r >= p.overbought,
            enter_short=crossed_below(r, p.overbought),
            exit_short=r <= p.oversold,
            allow_short=allow_short,
        )


class StochasticParams(_ZoneParams):
    k: int = pydantic.Field(14, ge=1, le=500, description="%K lookback (highest high/lowest low)")
    d: int = pydantic.Field(3, ge=1, le=100, description="%D = SMA of %K over d bars")
    oversold: float = pydantic.Field(20.0, ge=0.0, le=100.0, description="long zone: %D below")
    overbought: float = pydantic.Field(80.0, ge=0.0, le=100.0, description="short zone: %D above")


class Stochastic(Strategy):
    """Stochastic %K/%D crossings inside the extreme zones.

    - enter long at t when %K crosses above %D (%K[t-1] <= %D[t-1] and %K[t] > %D[t]) while
      %D[t] < oversold;
    - exit long when %K crosses below %D while %D[t] > overbought;
    - enter short (if allowed) on that same bearish crossing in the overbought zone; exit short on
      the bullish crossing in the oversold zone.

    Warm-up: k + d - 1 bars (%D first exists at bar k + d - 2; a crossing needs the bar before).
    """

    name = "stochastic"
    Params = StochasticParams
    params: StochasticParams

    @property
    def warmup(self) -> int:
        return self.params.k + self.params.d - 1

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        high, low, close = self.columns(bars, "high", "low", "close")
        p = self.params
        pct_k, pct_d = ind.stochastic(high, low, close, p.k, p.d)
        bull = crossed_above(pct_k, pct_d) & (pct_d < p.oversold)
        bear = crossed_below(pct_k, pct_d) & (pct_d > p.overbought)
        return self.hold(bull, bear, bear, bull, allow_short)


class BollingerReversionParams(VolumeFilterParams):
    period: int = pydantic.Field(20, ge=2, le=1000, description="bars in the middle SMA and std")
    k: float = pydantic.Field(2.0, ge=0.1, le=10.0, description="band width in std deviations")


class BollingerReversion(Strategy):
    """Bollinger-band mean reversion (bands: SMA(period) +/- k x population std of the close).

    - enter long when close[t] < lower[t] (and the volume filter passes);
    - exit long when close[t] >= middle[t];
    - enter short (if allowed) when close[t] > upper[t] (and the volume filter passes);
    - exit short when close[t] <= middle[t].

    Warm-up: period - 1 bars (more if the volume filter is on and its period is longer).
    """

    name = "bollinger_reversion"
    Params = BollingerReversionParams
    params: BollingerReversionParams

    @property
    def warmup(self) -> int:
        return max(self.params.period - 1, volume_filter_warmup(self.params))

    def chart_lines(self, bars: pd.DataFrame) -> dict[str, np.ndarray]:
        (close,) = self.columns(bars, "close")
        p = self.params
        mid, upper, lower = ind.bollinger(close, p.period, p.k)
        return {
            f"bb({p.period}) upper": upper,
            f"bb({p.period}) mid": mid,
            f"bb({p.period}) lower": lower,
        }

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        close, volume = self.columns(bars, "close", "volume")
        p = self.params
        mid, upper, lower = ind.bollinger(close, p.period, p.k)
        vol_ok = volume_confirmed(volume, p.volume_factor, p.volume_period)
        return self.hold(
            enter_long=(close < lower) & vol_ok,
            exit_long=close >= mid,
            enter_short=(close > upper) & vol_ok,
            exit_short=close <= mid,
            allow_short=allow_short,
        )
