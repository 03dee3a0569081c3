"""Known-answer tests: tiny hand-made series whose targets are worked out in the comments."""

from __future__ import annotations

import numpy as np
import pandas as pd

from n1v1.strategies import create_strategy


def make_bars(close, high=None, low=None, volume=None) -> pd.DataFrame:
    close = np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    high = close if high is None else np.asarray(high, dtype=np.float64)
    low = close if low is None else np.asarray(low, dtype=np.float64)
    volume = np.full(n, 100.0) if volume is None else np.asarray(volume, dtype=np.float64)
    index = pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC")
    return pd.DataFrame(
        {"open": close, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def targets(name, params, bars, allow_short):
    return create_strategy(name, params).target_positions(bars, allow_short=allow_short).tolist()


def test_sma_cross_known_answer():
    bars = make_bars([10, 11, 12, 13, 12, 11, 10, 12])
    # SMA2 (t>=1): 10.5, 11.5, 12.5, 12.5, 11.5, 10.5, (10+12)/2 = 11
    # SMA3 (t>=2):       11,   12,  37/3, 12,   11,   (11+10+12)/3 = 11
    # t=2: 11.5 > 11 -> +1;  t=3: 12.5 > 12 -> +1;  t=4: 12.5 > 12.33 -> +1
    # t=5: 11.5 < 12 -> flat/short;  t=6: 10.5 < 11 -> flat/short;  t=7: 11 == 11 -> 0 either way
    # t=0,1: warm-up (SMA3 undefined) -> 0
    p = {"fast": 2, "slow": 3}
    assert targets("sma_cross", p, bars, False) == [0, 0, 1, 1, 1, 0, 0, 0]
    assert targets("sma_cross", p, bars, True) == [0, 0, 1, 1, 1, -1, -1, 0]


def test_rsi_known_answer():
    # period 2, Wilder: seed = mean of the first 2 changes at t=2, then avg = (avg*1 + x)/2;
    # RSI = 100 * G / (G + L).
    bars = make_bars([10, 9, 8, 8.5, 8.5, 9.5, 9, 8])
    # changes t1..t7:   -1,  -1, +0.5,  0,  +1,  -0.5, -1
    # t2: G = 0,             L = 1                  -> RSI 0
    # t3: G = (0+0.5)/2=.25, L = (1+0)/2 = .5       -> RSI 33.3: crossed up through 30 -> long
    # t4: G = .125,          L = .25                -> RSI 33.3: hold long
    # t5: G = (.125+1)/2 = .5625, L = .125          -> RSI 81.8 >= 70 -> exit long
    # t6: G = .28125, L = (.125+.5)/2 = .3125       -> RSI 47.4: crossed down through 70 -> short
    # t7: G = .140625, L = (.3125+1)/2 = .65625     -> RSI 17.6 <= 30 -> exit short
    # warm-up = period + 1 = 3 bars (t=0..2).
    p = {"period": 2, "oversold": 30, "overbought": 70}
    assert targets("rsi", p, bars, False) == [0, 0, 0, 1, 1, 0, 0, 0]
    assert targets("rsi", p, bars, True) == [0, 0, 0, 1, 1, 0, -1, 0]


def test_donchian_breakout_known_answer():
    close = np.array([10, 11, 10, 12.5, 13, 12, 11, 9.5, 9, 11])
    high, low = close + 1, close - 1
    # high: 11 12 11 13.5 14 13 12 10.5 10 12     low: 9 10 9 11.5 12 11 10 8.5 8 10
    # Channels of the bars BEFORE t: U3[t] = max(high[t-3..t-1]), L3 likewise with low;
    # exit channel 2: U2[t] = max(high[t-2..t-1]), L2[t] = min(low[t-2..t-1]).
    # t3: U3 = max(11,12,11) = 12; close 12.5 > 12 -> long. (Had bar 3 been in its own channel,
    #     U3 would be 13.5 and nothing would happen.)
    # t4: L2 = min(9, 11.5) = 9, close 13 -> hold.  t5: L2 = min(11.5, 12) = 11.5, 12 -> hold.
    # t6: L2 = min(12, 11) = 11; close 11 is not < 11 -> hold.
    # t7: L2 = min(11, 10) = 10; close 9.5 < 10 -> exit long; L3 = min(12, 11, 10) = 10 and
    #     9.5 < 10 -> enter short when allowed (reversal).
    # t8: U2 = max(12, 10.5) = 12; 9 -> hold short.   (long-only: U3 = 13, no entry)
    # t9: U2 = max(10.5, 10) = 10.5; 11 > 10.5 -> exit short; U3 = max(12,10.5,10) = 12, no long.
    # warm-up = max(3, 2) = 3.
    bars = make_bars(close, high, low)
    p = {"period": 3, "exit_period": 2}
    assert targets("donchian_breakout", p, bars, False) == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    assert targets("donchian_breakout", p, bars, True) == [0, 0, 0, 1, 1, 1, 1, -1, -1, 0]


ATR_CLOSE = [10, 10, 10.5, 12, 11, 9.4, 11.2, 11.0]
ATR_HIGH = [10.5, 10.5, 11, 12.5, 12, 11, 11.5, 11.3]
ATR_LOW = [9.5, 9.5, 10, 11.5, 10.5, 9, 9.5, 10.8]
# True range TR[t] = max(h-l, |h - c[t-1]|, |l - c[t-1]|), TR[0] = h-l:
#   TR = 1, 1, 1, max(1, 2, 1) = 2, max(1.5, 0, 1.5) = 1.5, max(2, 0, 2) = 2, max(2, 2.1, .1) = 2.1
# Wilder ATR(2): seed mean(TR0, TR1) = 1 at t=1, then (prev + TR)/2:
#   ATR1 = 1, ATR2 = 1, ATR3 = 1.5, ATR4 = 1.5, ATR5 = 1.75, ATR6 = 1.925
# Rule at t (multiple 1): up if close[t] > close[t-1] + ATR[t-1], down if < close[t-1] - ATR[t-1]
#   t2: 10.5 vs 10 +/- 1          -> nothing
#   t3: 12 > 10.5 + 1 = 11.5      -> up: long
#   t4: 11 vs 12 - 1.5 = 10.5     -> nothing, hold
#   t5: 9.4 < 11 - 1.5 = 9.5      -> down: exit long (short when allowed)
#   t6: 11.2 > 9.4 + 1.75 = 11.15 -> up: long
#   t7: 11.0 vs 11.2 -/+ 1.925    -> nothing, hold
# warm-up = first ATR index (1) + 1 = 2.


def test_atr_breakout_known_answer():
    bars = make_bars(ATR_CLOSE, ATR_HIGH, ATR_LOW)
    p = {"atr_period": 2, "multiple": 1.0}
    assert targets("atr_breakout", p, bars, False) == [0, 0, 0, 1, 1, 0, 1, 1]
    assert targets("atr_breakout", p, bars, True) == [0, 0, 0, 1, 1, -1, 1, 1]


def test_atr_breakout_volume_filter_blocks_entries_not_exits():
    # Same bars; volume 100 except 50 at t3 and t5. Filter: volume[t] >= 1.0 x mean(volume[t-1..t]).
    #   t3: mean(100, 50) = 75, 50 < 75 -> the up move is NOT taken.
    #   t5: the down move: no position to exit; short entry: mean(100, 50) = 75, 50 < 75 -> blocked.
    #   t6: mean(50, 100) = 75, 100 >= 75 -> the up move is taken: long (held at t7).
    volume = [100, 100, 100, 50, 100, 50, 100, 100]
    bars = make_bars(ATR_CLOSE, ATR_HIGH, ATR_LOW, volume)
    p = {"atr_period": 2, "multiple": 1.0, "volume_factor": 1.0, "volume_period": 2}
    assert targets("atr_breakout", p, bars, True) == [0, 0, 0, 0, 0, 0, 1, 1]
    # With full volume at t3 the long is entered and the t5 exit happens even on thin volume.
    volume[3] = 100
    bars = make_bars(ATR_CLOSE, ATR_HIGH, ATR_LOW, volume)
    assert targets("atr_breakout", p, bars, False) == [0, 0, 0, 1, 1, 0, 1, 1]


def test_bollinger_reversion_known_answer():
    # period 3, k 1: bands = mean of the last 3 closes -/+ 1 population std.
    # t2: window (10,10,10): std 0, close 10 == bands -> nothing
    # t3: window (10,10,7): mean 9, var = (1+1+4)/3 = 2, std 1.414; lower 7.586; 7 < lower -> long
    # t4: window (10,7,9): mean 8.667; close 9 >= mid -> exit long
    # t5: window (7,9,10): mean 8.667, var = (2.778+.111+1.778)/3 = 1.556, std 1.247,
    #     upper 9.914; close 10 > upper -> short (when allowed)
    # t6: window (9,10,13): mean 10.667; 13 > mid -> hold short (13 > upper 12.37 too)
    # t7: window (10,13,10): mean 11; close 10 <= 11 -> exit short
    bars = make_bars([10, 10, 10, 7, 9, 10, 13, 10])
    p = {"period": 3, "k": 1.0}
    assert targets("bollinger_reversion", p, bars, False) == [0, 0, 0, 1, 0, 0, 0, 0]
    assert targets("bollinger_reversion", p, bars, True) == [0, 0, 0, 1, 0, -1, -1, 0]
