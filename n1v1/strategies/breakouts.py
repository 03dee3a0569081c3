"""Breakout built-ins: Donchian channel, ATR range expansion and Keltner channel.

A breakout level must be known before the bar that breaks it, otherwise "close above the highest
high" could never be true for the bar that made that high. Donchian and ATR levels are therefore
taken from the previous bar (`shift1`); Keltner's band is an average, so the current bar may be
compared to its own band.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydantic

from n1v1 import indicators as ind
from n1v1.strategies.base import (
    Strategy,
    VolumeFilterParams,
    shift1,
    volume_confirmed,
    volume_filter_warmup,
)

# First index where atr(h, l, c, n) is defined: the true range of bar 0 has no previous close.
# Kept in one place so every ATR-based warm-up agrees with n1v1.indicators.atr.


def atr_first_valid(n: int) -> int:
    """Index of the first non-NaN value of `indicators.atr(..., n)`."""
    return n - 1


class DonchianBreakoutParams(VolumeFilterParams):
    period: int = pydantic.Field(20, ge=1, le=1000, description="entry channel length (bars)")
    exit_period: int = pydantic.Field(
        0, ge=0, le=1000, description="exit channel length; 0 = same as period"
    )


class DonchianBreakout(Strategy):
    """Donchian channel breakout (turtle style). Channels are those of the bars *before* t.

    With U_n[t] = max(high[t-n .. t-1]) and L_n[t] = min(low[t-n .. t-1]) (the channel of the
    previous bar, so bar t is never inside its own channel), E = exit_period or period:

    - enter long when close[t] > U_period[t] (and the volume filter passes);
    - exit long when close[t] < L_E[t];
    - enter short (if allowed) when close[t] < L_period[t] (volume filter); exit short when
      close[t] > U_E[t].

    Warm-up: max(period, E) bars.
    """

    name = "donchian_breakout"
    Params = DonchianBreakoutParams
    params: DonchianBreakoutParams

    @property
    def _exit_period(self) -> int:
        return self.params.exit_period or self.params.period

    @property
    def warmup(self) -> int:
        channel = max(self.params.period, self._exit_period)
        return max(channel, volume_filter_warmup(self.params))

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        high, low, close, volume = self.columns(bars, "high", "low", "close", "volume")
        p = self.params
        upper, lower, _mid = ind.donchian(high, low, p.period)
        x_upper, x_lower, _x_mid = ind.donchian(high, low, self._exit_period)
        upper, lower, x_upper, x_lower = (shift1(a) for a in (upper, lower, x_upper, x_lower))
        vol_ok = volume_confirmed(volume, p.volume_factor, p.volume_period)
        return self.hold(
            enter_long=(close > upper) & vol_ok,
            exit_long=close < x_lower,
            enter_short=(close < lower) & vol_ok,
            exit_short=close > x_upper,
            allow_short=allow_short,
        )


class AtrBreakoutParams(VolumeFilterParams):
    atr_period: int = pydantic.Field(14, ge=1, le=500, description="ATR period (Wilder)")
    multiple: float = pydantic.Field(2.0, ge=0.0, le=20.0, description="move size in ATRs")


class AtrBreakout(Strategy):
    """Range-expansion breakout: a one-bar move larger than `multiple` ATRs.

    With ATR taken at the previous bar (so the breakout bar does not widen its own threshold):

    - up move:   close[t] > close[t-1] + multiple * ATR[t-1];
    - down move: close[t] < close[t-1] - multiple * ATR[t-1];
    - enter long on an up move (volume filter); exit long on a down move; enter short (if allowed)
      on a down move (volume filter); exit short on an up move.

    Warm-up: first valid ATR index + 1 (= atr_period bars).
    """

    name = "atr_breakout"
    Params = AtrBreakoutParams
    params: AtrBreakoutParams

    @property
    def warmup(self) -> int:
        return max(atr_first_valid(self.params.atr_period) + 1, volume_filter_warmup(self.params))

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        high, low, close, volume = self.columns(bars, "high", "low", "close", "volume")
        p = self.params
        step = p.multiple * shift1(ind.atr(high, low, close, p.atr_period))
        prev_close = shift1(close)
        up = close > prev_close + step
        down = close < prev_close - step
        vol_ok = volume_confirmed(volume, p.volume_factor, p.volume_period)
        return self.hold(up & vol_ok, down, down & vol_ok, up, allow_short)


class KeltnerParams(VolumeFilterParams):
    period: int = pydantic.Field(20, ge=1, le=1000, description="bars in the middle SMA")
    atr_period: int = pydantic.Field(14, ge=1, le=500, description="ATR period of the band")
    multiple: float = pydantic.Field(2.0, ge=0.1, le=20.0, description="band width in ATRs")


class Keltner(Strategy):
    """Keltner channel breakout: middle = SMA(close, period), bands = middle +/- multiple x ATR.

    - enter long when close[t] > upper[t] (volume filter); exit long when close[t] < middle[t];
    - enter short (if allowed) when close[t] < lower[t] (volume filter); exit short when
      close[t] > middle[t].

    Warm-up: max(period - 1, first valid ATR index).
    """

    name = "keltner"
    Params = KeltnerParams
    params: KeltnerParams

    @property
    def warmup(self) -> int:
        p = self.params
        band = max(p.period - 1, atr_first_valid(p.atr_period))
        return max(band, volume_filter_warmup(p))

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        high, low, close, volume = self.columns(bars, "high", "low", "close", "volume")
        p = self.params
        mid, upper, lower = ind.keltner(high, low, close, p.period, p.multiple, p.atr_period)
        vol_ok = volume_confirmed(volume, p.volume_factor, p.volume_period)
        return self.hold(
            enter_long=(close > upper) & vol_ok,
            exit_long=close < mid,
            enter_short=(close < lower) & vol_ok,
            exit_short=close > mid,
            allow_short=allow_short,
        )
