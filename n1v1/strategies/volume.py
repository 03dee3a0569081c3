"""Volume-driven built-ins: on-balance-volume trend and the VWAP pullback."""

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


class ObvTrendParams(StrategyParams):
    signal: int = pydantic.Field(20, ge=1, le=1000, description="bars in the SMA signal of OBV")
    trend: int = pydantic.Field(20, ge=1, le=1000, description="bars in the SMA trend of close")


class ObvTrend(Strategy):
    """On-balance volume confirming the price trend.

    With OBV = indicators.obv(close, volume), S = SMA(OBV, signal), T = SMA(close, trend):

    - enter long at t when OBV crosses above S (OBV[t-1] <= S[t-1], OBV[t] > S[t]) and
      close[t] > T[t]; exit long when OBV[t] < S[t];
    - enter short (if allowed) when OBV crosses below S and close[t] < T[t]; exit short when
      OBV[t] > S[t].

    Warm-up: max(signal, trend - 1) bars (the crossing needs S at the bar before).
    """

    name = "obv_trend"
    Params = ObvTrendParams
    params: ObvTrendParams

    @property
    def warmup(self) -> int:
        return max(self.params.signal, self.params.trend - 1)

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        close, volume = self.columns(bars, "close", "volume")
        p = self.params
        obv = ind.obv(close, volume)
        sig = ind.sma(obv, p.signal)
        trend = ind.sma(close, p.trend)
        return self.hold(
            enter_long=crossed_above(obv, sig) & (close > trend),
            exit_long=obv < sig,
            enter_short=crossed_below(obv, sig) & (close < trend),
            exit_short=obv > sig,
            allow_short=allow_short,
        )


class VwapPullbackParams(VolumeFilterParams):
    period: int = pydantic.Field(20, ge=1, le=1000, description="bars in the rolling VWAP")
    trend: int = pydantic.Field(50, ge=2, le=2000, description="bars in the SMA trend of close")
    band: float = pydantic.Field(
        0.002, ge=0.0, le=0.2, description="entry: close within this fraction of VWAP"
    )
    exit_band: float = pydantic.Field(
        0.01, ge=0.0, le=0.5, description="exit: close this fraction beyond VWAP"
    )

    @pydantic.model_validator(mode="after")
    def _exit_band_beyond_band(self) -> VwapPullbackParams:
        if not self.exit_band > self.band:
            raise ValueError(
                f"exit_band ({self.exit_band}) must be greater than band ({self.band}), "
                "otherwise an entry would already satisfy its own exit"
            )
        return self


class VwapPullback(Strategy):
    """Buy pullbacks to the rolling VWAP in an uptrend, sell rallies to it in a downtrend.

    With V = rolling_vwap(high, low, close, volume, period) and T = SMA(close, trend):

    - enter long when close[t] > T[t] (uptrend) and close[t] <= V[t] x (1 + band) (price has
      pulled back to, or below, the VWAP), and the volume filter passes;
    - exit long when close[t] > V[t] x (1 + exit_band) (the rebound is done) or
      close[t] <= T[t] (the trend broke);
    - enter short (if allowed) when close[t] < T[t] and close[t] >= V[t] x (1 - band) (volume
      filter); exit short when close[t] < V[t] x (1 - exit_band) or close[t] >= T[t].

    exit_band must exceed band. Warm-up: max(period, trend) - 1 bars.
    """

    name = "vwap_pullback"
    Params = VwapPullbackParams
    params: VwapPullbackParams

    @property
    def warmup(self) -> int:
        p = self.params
        return max(p.period - 1, p.trend - 1, volume_filter_warmup(p))

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        high, low, close, volume = self.columns(bars, "high", "low", "close", "volume")
        p = self.params
        vwap = ind.rolling_vwap(high, low, close, volume, p.period)
        trend = ind.sma(close, p.trend)
        vol_ok = volume_confirmed(volume, p.volume_factor, p.volume_period)
        return self.hold(
            enter_long=(close > trend) & (close <= vwap * (1.0 + p.band)) & vol_ok,
            exit_long=(close > vwap * (1.0 + p.exit_band)) | (close <= trend),
            enter_short=(close < trend) & (close >= vwap * (1.0 - p.band)) & vol_ok,
            exit_short=(close < vwap * (1.0 - p.exit_band)) | (close >= trend),
            allow_short=allow_short,
        )
