"""Regime detector on constructed series, and the regime_switch meta-strategy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from n1v1 import indicators as ind
from n1v1.strategies import Regime, StrategyError, create_strategy, detect_regime
from n1v1.strategies.regime import regime_warmup

N = 400
WARMUP = 118  # defaults: max(2 x 14 - 1 = 27 (ADX), 20 - 1 + 100 - 1 = 118 (width quantile))


def make_bars(close, spread) -> pd.DataFrame:
    close = np.asarray(close, dtype=np.float64)
    spread = np.broadcast_to(np.asarray(spread, dtype=np.float64), close.shape)
    return pd.DataFrame(
        {
            "open": close,
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": np.full(close.shape, 100.0),
        },
        index=pd.date_range("2024-01-01", periods=close.shape[0], freq="h", tz="UTC"),
    )


def flat_noise(seed: int = 3, n: int = N) -> pd.DataFrame:
    """Stationary noise around 100 (no drift): no direction to find."""
    rng = np.random.default_rng(seed)
    return make_bars(100.0 + rng.normal(0.0, 0.5, n), np.abs(rng.normal(0.0, 0.3, n)) + 0.05)


def test_warmup_formula_matches_the_indicators():
    bars = flat_noise()
    h, lo, c = (bars[col].to_numpy() for col in ("high", "low", "close"))
    adx_first = int(np.flatnonzero(np.isfinite(ind.adx(h, lo, c, 14)[0]))[0])
    width_first = int(np.flatnonzero(np.isfinite(ind.bollinger_width(c, 20, 2.0)))[0])
    assert adx_first == 27 and width_first == 19
    # the rolling quantile needs 100 widths: first at 19 + 99 = 118
    assert regime_warmup(14, 20, 100) == max(adx_first, width_first + 99) == WARMUP


def test_steady_uptrend_is_trend_up_after_warmup():
    # close = 100 + t, high/low = close +/- 0.5: every bar's up-move is 1 and its down-move -1, so
    # +DM = 1, -DM = 0 -> -DI = 0, DX = 100, ADX = 100 > 25 with +DI > -DI.
    # The band width (4 x std / mid) falls as mid rises (std of a ramp window is constant), so
    # today's width is the lowest of its lookback and never above its 80% quantile.
    regime = detect_regime(make_bars(100.0 + np.arange(N), 0.5))
    assert (regime[:WARMUP] == Regime.RANGE).all()
    assert (regime[WARMUP:] == Regime.TREND_UP).all()


def test_steady_downtrend_is_trend_down_after_warmup():
    # A decaying fall towards 100: every down-move positive, every up-move negative -> +DI = 0,
    # ADX = 100 with -DI > +DI; the window std shrinks faster than the mid, so width keeps falling.
    regime = detect_regime(make_bars(100.0 + 300.0 * np.exp(-np.arange(N) / 100.0), 0.5))
    assert (regime[WARMUP:] == Regime.TREND_DOWN).all()


def test_flat_noise_never_trends():
    regime = detect_regime(flat_noise())
    assert not np.isin(regime, [Regime.TREND_UP, Regime.TREND_DOWN]).any()
    # With the volatility branch disabled (a width can never exceed the maximum of a window that
    # contains it) every bar is RANGE.
    no_vol = detect_regime(flat_noise(), width_quantile=1.0)
    assert (no_vol == Regime.RANGE).all()
    # With defaults the widest ~20% of windows are VOLATILE by construction; the rest is RANGE.
    assert np.mean(regime[WARMUP:] == Regime.RANGE) > 0.6


def test_volatility_burst_is_volatile():
    # 300 quiet bars (sd 0.2), then the noise jumps 15x. Each new window with more burst bars has a
    # wider band than any window in the lookback, so it is above the 80% quantile.
    rng = np.random.default_rng(1)
    close = 100.0 + np.r_[rng.normal(0.0, 0.2, 300), rng.normal(0.0, 3.0, 100)]
    spread = np.r_[np.full(300, 0.2), np.full(100, 2.0)]
    regime = detect_regime(make_bars(close, spread))
    assert (regime[301:318] == Regime.VOLATILE).all()


def test_detector_is_causal():
    rng = np.random.default_rng(5)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_t(3, N)))
    bars = make_bars(close, close * 0.004)
    full = detect_regime(bars, width_lookback=40)
    assert len(set(full[80:].tolist())) >= 3  # the check is only meaningful if regimes vary
    for k in (60, 118, 200, 333):
        np.testing.assert_array_equal(detect_regime(bars.iloc[:k], width_lookback=40), full[:k])


def test_detector_rejects_bad_parameters():
    with pytest.raises(StrategyError, match=r"width_quantile=1.5 out of bounds \[0.0, 1.0\]"):
        detect_regime(flat_noise(), width_quantile=1.5)
    with pytest.raises(StrategyError, match=r"missing column\(s\) \['high'\]"):
        detect_regime(flat_noise().drop(columns=["high"]))


def test_regime_switch_takes_each_bar_from_the_strategy_of_its_regime():
    rng = np.random.default_rng(11)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_t(3, N)))
    bars = make_bars(close, close * 0.004)
    params = {"width_lookback": 50, "trend_up": "sma_cross", "trend_down": "macd", "range": "rsi"}
    switch = create_strategy("regime_switch", params)
    out = switch.target_positions(bars, allow_short=True)
    regime = detect_regime(bars, width_lookback=50)
    expected = {
        Regime.TREND_UP: create_strategy("sma_cross").target_positions(bars, True),
        Regime.TREND_DOWN: create_strategy("macd").target_positions(bars, True),
        Regime.RANGE: create_strategy("rsi").target_positions(bars, True),
        Regime.VOLATILE: np.zeros(N, np.int8),  # "flat"
    }
    w = switch.warmup
    assert w == max(regime_warmup(14, 20, 50), 29, 33, 15)  # detector, sma_cross, macd, rsi
    assert not out[:w].any()
    for t in range(w, N):
        assert out[t] == expected[Regime(regime[t])][t], t
    assert len(set(regime[w:].tolist())) == 4  # every branch was exercised


def test_regime_switch_rejects_unknown_or_recursive_strategies():
    with pytest.raises(StrategyError, match=r"range='nope': unknown strategy 'nope'"):
        create_strategy("regime_switch", {"range": "nope"})
    with pytest.raises(StrategyError, match="regime_switch cannot select itself"):
        create_strategy("regime_switch", {"trend_up": "regime_switch"})
