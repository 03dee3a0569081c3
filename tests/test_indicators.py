"""Known-answer tests for n1v1.indicators.

Every expected number is worked out by hand in the comments next to it, from the definitions in
docs/indicators.md; none is copied from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from n1v1 import indicators as ind

NAN = math.nan


def assert_series(actual: np.ndarray, expected: list[float]) -> None:
    """Same length, NaN exactly where expected, values equal to ~1e-12 relative."""
    assert isinstance(actual, np.ndarray) and actual.dtype == np.float64
    np.testing.assert_allclose(actual, np.array(expected, dtype=float), rtol=1e-12, atol=1e-12)


def leading_nans(a: np.ndarray) -> int:
    """Length of the NaN warm-up, asserting there is no NaN after it."""
    finite = np.flatnonzero(~np.isnan(a))
    count = int(finite[0]) if finite.size else a.size
    assert not np.isnan(a[count:]).any(), "NaN after the warm-up"
    return count


# --- moving averages and windows


def test_sma_n3() -> None:
    # (1+2+3)/3 = 2, (2+3+4)/3 = 3, (3+4+5)/3 = 4
    assert_series(ind.sma([1, 2, 3, 4, 5], 3), [NAN, NAN, 2, 3, 4])


def test_ema_n3_seeded_with_sma() -> None:
    # alpha = 2/(3+1) = 0.5; seed at index 2 = (2+4+6)/3 = 4
    # i=3: 0.5*5 + 0.5*4    = 4.5
    # i=4: 0.5*9 + 0.5*4.5  = 6.75
    # i=5: 0.5*3 + 0.5*6.75 = 4.875
    assert_series(ind.ema([2, 4, 6, 5, 9, 3], 3), [NAN, NAN, 4, 4.5, 6.75, 4.875])


def test_ema_n4_alpha_two_fifths() -> None:
    # alpha = 2/5 = 0.4; seed at index 3 = (1+2+3+6)/4 = 3
    # i=4: 0.4*8 + 0.6*3   = 3.2 + 1.8   = 5
    # i=5: 0.4*0 + 0.6*5   = 3
    assert_series(ind.ema([1, 2, 3, 6, 8, 0], 4), [NAN, NAN, NAN, 3, 5, 3])


def test_rolling_std_population_and_sample() -> None:
    # [1,2,3]: mean 2, squared deviations 1+0+1 = 2    -> pop var 2/3, sample var 2/2 = 1
    # [2,3,4]: same shape                              -> 2/3, 1
    # [3,4,8]: mean 5, squared deviations 4+1+9 = 14   -> pop var 14/3, sample var 14/2 = 7
    x = [1, 2, 3, 4, 8]
    pop = math.sqrt(2 / 3)
    assert_series(ind.rolling_std(x, 3), [NAN, NAN, pop, pop, math.sqrt(14 / 3)])
    assert_series(ind.rolling_std(x, 3, ddof=1), [NAN, NAN, 1, 1, math.sqrt(7)])


def test_rolling_std_is_exactly_zero_on_a_constant_window_after_movement() -> None:
    # The window [0.3, 0.3, 0.3] follows values that left rounding residue in a running sum.
    out = ind.rolling_std([0.1, 0.7, 0.3, 0.3, 0.3], 3)
    assert out[4] == 0.0


def test_rolling_max_and_min_include_current_bar() -> None:
    x = [3, 1, 4, 1, 5, 9, 2, 6]
    # windows: [3,1,4] [1,4,1] [4,1,5] [1,5,9] [5,9,2] [9,2,6]
    assert_series(ind.rolling_max(x, 3), [NAN, NAN, 4, 4, 5, 9, 9, 9])
    assert_series(ind.rolling_min(x, 3), [NAN, NAN, 1, 1, 1, 1, 2, 2])
    # n=1: the window is the bar itself
    assert_series(ind.rolling_max(x, 1), x)


def test_zscore_n3() -> None:
    # [1,2,3]: (3-2)/sqrt(2/3); [2,3,4]: (4-3)/sqrt(2/3); [3,4,8]: (8-5)/sqrt(14/3)
    z = 1 / math.sqrt(2 / 3)
    assert_series(ind.zscore([1, 2, 3, 4, 8], 3), [NAN, NAN, z, z, 3 / math.sqrt(14 / 3)])


def test_zscore_nan_on_flat_window() -> None:
    # [5,5,5]: std 0 -> NaN.
    # [5,5,6]: mean 16/3, squared devs (1/3)^2*2 + (2/3)^2 = 6/9 -> var 6/27 = 2/9, std sqrt(2)/3
    #          z = (6 - 16/3) / (sqrt(2)/3) = (2/3)/(sqrt(2)/3) = sqrt(2)
    assert_series(ind.zscore([5, 5, 5, 6], 3), [NAN, NAN, NAN, math.sqrt(2)])


# --- momentum


def test_rsi_n3_wilder() -> None:
    close = [10, 11, 10.5, 11.5, 12, 11]
    # changes: +1, -0.5, +1, +0.5, -1
    # i=3: avg gain (1+0+1)/3 = 2/3, avg loss (0+0.5+0)/3 = 1/6, RS = 4 -> 100 - 100/5 = 80
    # i=4: +0.5: gain (2/3*2 + 0.5)/3 = 11/18, loss (1/6*2 + 0)/3 = 2/18, RS = 5.5
    #      -> 100 - 100/6.5 = 1100/13
    # i=5: -1: gain (11/18*2 + 0)/3 = 11/27, loss (2/18*2 + 1)/3 = 11/27, RS = 1 -> 50
    assert_series(ind.rsi(close, 3), [NAN, NAN, NAN, 80, 1100 / 13, 50])


def test_rsi_is_100_with_only_gains_and_50_with_no_change() -> None:
    assert_series(ind.rsi([1, 2, 3, 4, 5], 3), [NAN, NAN, NAN, 100, 100])
    assert_series(ind.rsi([5, 5, 5, 5, 5], 3), [NAN, NAN, NAN, 50, 50])


def test_macd_2_3_2() -> None:
    close = [1, 2, 4, 3, 5, 6]
    # EMA2 (alpha 2/3): seed i=1 (1+2)/2 = 3/2
    #   i=2: 2/3*4 + 1/3*3/2    = 19/6
    #   i=3: 2/3*3 + 1/3*19/6   = 55/18
    #   i=4: 2/3*5 + 1/3*55/18  = 235/54
    #   i=5: 2/3*6 + 1/3*235/54 = 883/162
    # EMA3 (alpha 1/2): seed i=2 (1+2+4)/3 = 7/3; i=3 8/3; i=4 23/6; i=5 59/12
    # MACD: i=2 19/6-7/3 = 5/6; i=3 55/18-8/3 = 7/18; i=4 235/54-23/6 = 14/27;
    #       i=5 883/162-59/12 = 173/324
    # signal EMA2 from the first MACD value (i=2): seed i=3 (5/6 + 7/18)/2 = 11/18
    #   i=4: 2/3*14/27 + 1/3*11/18   = 89/162
    #   i=5: 2/3*173/324 + 1/3*89/162 = 131/243
    line, signal, hist = ind.macd(close, 2, 3, 2)
    assert_series(line, [NAN, NAN, 5 / 6, 7 / 18, 14 / 27, 173 / 324])
    assert_series(signal, [NAN, NAN, NAN, 11 / 18, 89 / 162, 131 / 243])
    # histogram: 7/18-11/18 = -2/9; 14/27-89/162 = -5/162; 173/324-131/243 = -5/972
    assert_series(hist, [NAN, NAN, NAN, -2 / 9, -5 / 162, -5 / 972])


def test_stochastic_k3_d2() -> None:
    high = [5, 7, 6, 8, 4, 6]
    low = [3, 4, 2, 5, 1, 3]
    close = [4, 6, 3, 7, 2, 5]
    # HH3: 7, 8, 8, 8 ; LL3: 2, 2, 1, 1 (indices 2..5)
    # %K: 100*(3-2)/(7-2) = 20; 100*(7-2)/(8-2) = 250/3; 100*(2-1)/7 = 100/7; 100*(5-1)/7 = 400/7
    # %D: (20 + 250/3)/2 = 155/3; (250/3 + 100/7)/2 = 1025/21; (100/7 + 400/7)/2 = 250/7
    pct_k, pct_d = ind.stochastic(high, low, close, k=3, d=2)
    assert_series(pct_k, [NAN, NAN, 20, 250 / 3, 100 / 7, 400 / 7])
    assert_series(pct_d, [NAN, NAN, NAN, 155 / 3, 1025 / 21, 250 / 7])


def test_stochastic_flat_range_is_50() -> None:
    flat = [5.0] * 5
    pct_k, pct_d = ind.stochastic(flat, flat, flat, k=3, d=2)
    assert_series(pct_k, [NAN, NAN, 50, 50, 50])
    assert_series(pct_d, [NAN, NAN, NAN, 50, 50])


# --- volatility and bands

HIGH = [10, 12, 11, 15, 9]
LOW = [8, 9, 9, 14, 7]
CLOSE = [9, 11, 10, 14.5, 8]
# TR: i=0 10-8 = 2
#     i=1 max(12-9, |12-9|, |9-9|)       = 3
#     i=2 max(11-9, |11-11|, |9-11|)     = 2
#     i=3 max(15-14, |15-10|, |14-10|)   = 5   (gap up)
#     i=4 max(9-7, |9-14.5|, |7-14.5|)   = 7.5 (gap down)
TR = [2, 3, 2, 5, 7.5]
# ATR3: i=2 (2+3+2)/3 = 7/3; i=3 (7/3*2 + 5)/3 = 29/9; i=4 (29/9*2 + 7.5)/3 = 251/54
ATR3 = [NAN, NAN, 7 / 3, 29 / 9, 251 / 54]


def test_true_range_counts_gaps() -> None:
    assert_series(ind.true_range(HIGH, LOW, CLOSE), TR)


def test_atr_n3_wilder() -> None:
    assert_series(ind.atr(HIGH, LOW, CLOSE, 3), ATR3)


def test_bollinger_n3_k2() -> None:
    # std from test_rolling_std_population_and_sample: sqrt(2/3), sqrt(2/3), sqrt(14/3)
    s1, s2 = math.sqrt(2 / 3), math.sqrt(14 / 3)
    middle, upper, lower = ind.bollinger([1, 2, 3, 4, 8], 3, 2.0)
    assert_series(middle, [NAN, NAN, 2, 3, 5])
    assert_series(upper, [NAN, NAN, 2 + 2 * s1, 3 + 2 * s1, 5 + 2 * s2])
    assert_series(lower, [NAN, NAN, 2 - 2 * s1, 3 - 2 * s1, 5 - 2 * s2])


def test_bollinger_width_n3_k2() -> None:
    # (upper - lower)/middle = 2*k*std/middle = 4*std/middle
    s1, s2 = math.sqrt(2 / 3), math.sqrt(14 / 3)
    width = ind.bollinger_width([1, 2, 3, 4, 8], 3, 2.0)
    assert_series(width, [NAN, NAN, 4 * s1 / 2, 4 * s1 / 3, 4 * s2 / 5])


def test_donchian_n3() -> None:
    high = [5, 7, 6, 8, 4]
    low = [3, 4, 2, 5, 1]
    # upper max(5,7,6)=7, max(7,6,8)=8, max(6,8,4)=8; lower 2, 2, 1; middle 4.5, 5, 4.5
    upper, lower, middle = ind.donchian(high, low, 3)
    assert_series(upper, [NAN, NAN, 7, 8, 8])
    assert_series(lower, [NAN, NAN, 2, 2, 1])
    assert_series(middle, [NAN, NAN, 4.5, 5, 4.5])


def test_keltner_n3_k2_atr3() -> None:
    # middle = SMA3(close): (9+11+10)/3 = 10; (11+10+14.5)/3 = 35.5/3; (10+14.5+8)/3 = 32.5/3
    mid = [NAN, NAN, 10, 35.5 / 3, 32.5 / 3]
    middle, upper, lower = ind.keltner(HIGH, LOW, CLOSE, n=3, k=2.0, atr_n=3)
    assert_series(middle, mid)
    assert_series(upper, [m + 2 * a for m, a in zip(mid, ATR3, strict=True)])
    assert_series(lower, [m - 2 * a for m, a in zip(mid, ATR3, strict=True)])


def test_keltner_warmup_is_the_longer_of_sma_and_atr() -> None:
    # SMA2(close) at i=1 is (9+11)/2 = 10 but ATR3 starts at i=2; upper i=2 = 10.5 + 1.5*7/3 = 14
    middle, upper, lower = ind.keltner(HIGH, LOW, CLOSE, n=2, k=1.5, atr_n=3)
    assert_series(middle, [NAN, 10, 10.5, 12.25, 11.25])
    assert leading_nans(upper) == 2 and leading_nans(lower) == 2
    assert upper[2] == pytest.approx(14.0, rel=1e-12)


def test_adx_n2_wilder() -> None:
    high = [10, 12, 13, 12, 14, 13]
    low = [8, 9, 11, 10, 11, 10]
    close = [9, 11, 12, 11, 13, 11]
    # t  up=h-h[-1]  down=l[-1]-l  +DM -DM  TR
    # 1      2          -1         2   0   max(3, 3, 0) = 3
    # 2      1          -2         1   0   max(2, 2, 0) = 2
    # 3     -1           1         0   1   max(2, 0, 2) = 2
    # 4      2          -1         2   0   max(3, 3, 0) = 3
    # 5     -1           1         0   1   max(3, 0, 3) = 3
    # Wilder sums (S = S - S/2 + x after the first sum over bars 1..2):
    # t  S_TR                  S+DM                  S-DM              +DI        -DI
    # 2  3+2 = 5               2+1 = 3               0                 60         0
    # 3  5-2.5+2 = 4.5         3-1.5+0 = 1.5         0-0+1 = 1         1.5/4.5    1/4.5
    # 4  4.5-2.25+3 = 5.25     1.5-0.75+2 = 2.75     1-0.5+0 = 0.5     2.75/5.25  0.5/5.25
    # 5  5.25-2.625+3 = 5.625  2.75-1.375+0 = 1.375  0.5-0.25+1 = 1.25 1.375/5.625 1.25/5.625
    # DX = 100*|S+ - S-|/(S+ + S-): t2 100; t3 100*0.5/2.5 = 20; t4 100*2.25/3.25 = 900/13;
    #      t5 100*0.125/2.625 = 100/21
    # ADX: t3 (100+20)/2 = 60; t4 (60 + 900/13)/2 = 840/13; t5 (840/13 + 100/21)/2 = 9470/273
    adx, plus_di, minus_di = ind.adx(high, low, close, 2)
    assert_series(plus_di, [NAN, NAN, 60, 150 / 4.5, 275 / 5.25, 137.5 / 5.625])
    assert_series(minus_di, [NAN, NAN, 0, 100 / 4.5, 50 / 5.25, 125 / 5.625])
    assert_series(adx, [NAN, NAN, NAN, 60, 840 / 13, 9470 / 273])


def test_adx_equal_up_and_down_moves_count_for_neither() -> None:
    # Outside bar at t=1: up = 12-10 = 2, down = 8-6 = 2 -> +DM = -DM = 0, so both DI are 0 at n=1
    # and DX (0/0) is defined as 0.
    adx, plus_di, minus_di = ind.adx([10, 12], [8, 6], [9, 9], 1)
    assert_series(plus_di, [NAN, 0])
    assert_series(minus_di, [NAN, 0])
    assert_series(adx, [NAN, 0])


def test_adx_flat_prices_give_zero_not_nan() -> None:
    flat = [5.0] * 6
    adx, plus_di, minus_di = ind.adx(flat, flat, flat, 2)
    assert_series(minus_di, [NAN, NAN, 0, 0, 0, 0])
    assert_series(plus_di, [NAN, NAN, 0, 0, 0, 0])
    assert_series(adx, [NAN, NAN, NAN, 0, 0, 0])


# --- volume


def test_obv() -> None:
    # 0; up +200 = 200; equal +0 = 200; down -400 = -200; up +500 = 300
    out = ind.obv([10, 11, 11, 9, 12], [100, 200, 300, 400, 500])
    assert_series(out, [0, 200, 200, -200, 300])


def test_rolling_vwap_n2() -> None:
    # tp = (10+8+9)/3 = 9, (12+10+11)/3 = 11, (11+9+10)/3 = 10
    # i=1: (9*100 + 11*300)/400 = 4200/400 = 10.5 ; i=2: (11*300 + 10*0)/300 = 11
    out = ind.rolling_vwap([10, 12, 11], [8, 10, 9], [9, 11, 10], [100, 300, 0], 2)
    assert_series(out, [NAN, 10.5, 11])


def test_rolling_vwap_nan_when_window_volume_is_zero() -> None:
    # volumes 0.1, 0.2 leave the running sum before the all-zero window at i=3 -> NaN, not 1e-17
    h, lo, c = [10, 12, 11, 13], [8, 10, 9, 11], [9, 11, 10, 12]
    out = ind.rolling_vwap(h, lo, c, [0.1, 0.2, 0.0, 0.0], 2)
    # i=1: (9*0.1 + 11*0.2)/0.3 = 3.1/0.3 = 31/3 ; i=2: (11*0.2 + 0)/0.2 = 11
    assert_series(out, [NAN, 31 / 3, 11, NAN])


# --- warm-up lengths


def _walk(n: int = 60) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(7)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    high = close + rng.uniform(0.1, 1, n)
    low = close - rng.uniform(0.1, 1, n)
    volume = rng.uniform(1, 10, n)
    return high, low, close, volume


@pytest.mark.parametrize(
    ("name", "compute", "expected"),
    [
        ("sma", lambda h, lo, c, v: [ind.sma(c, 5)], [4]),
        ("ema", lambda h, lo, c, v: [ind.ema(c, 5)], [4]),
        ("rolling_std", lambda h, lo, c, v: [ind.rolling_std(c, 5)], [4]),
        ("rolling_max", lambda h, lo, c, v: [ind.rolling_max(c, 5)], [4]),
        ("rolling_min", lambda h, lo, c, v: [ind.rolling_min(c, 5)], [4]),
        ("zscore", lambda h, lo, c, v: [ind.zscore(c, 5)], [4]),
        ("rsi", lambda h, lo, c, v: [ind.rsi(c, 5)], [5]),
        ("macd", lambda h, lo, c, v: list(ind.macd(c, 3, 7, 4)), [6, 9, 9]),
        ("true_range", lambda h, lo, c, v: [ind.true_range(h, lo, c)], [0]),
        ("atr", lambda h, lo, c, v: [ind.atr(h, lo, c, 5)], [4]),
        ("bollinger", lambda h, lo, c, v: list(ind.bollinger(c, 5)), [4, 4, 4]),
        ("bollinger_width", lambda h, lo, c, v: [ind.bollinger_width(c, 5)], [4]),
        ("donchian", lambda h, lo, c, v: list(ind.donchian(h, lo, 5)), [4, 4, 4]),
        ("keltner", lambda h, lo, c, v: list(ind.keltner(h, lo, c, 4, 2.0, 6)), [3, 5, 5]),
        ("stochastic", lambda h, lo, c, v: list(ind.stochastic(h, lo, c, 5, 3)), [4, 6]),
        ("obv", lambda h, lo, c, v: [ind.obv(c, v)], [0]),
        ("rolling_vwap", lambda h, lo, c, v: [ind.rolling_vwap(h, lo, c, v, 5)], [4]),
        # ADX: DI valid from n, ADX from 2n-1
        ("adx", lambda h, lo, c, v: list(ind.adx(h, lo, c, 5)), [9, 5, 5]),
    ],
)
def test_warmup_nan_count(name: str, compute, expected: list[int]) -> None:
    outputs = compute(*_walk())
    assert [leading_nans(o) for o in outputs] == expected, name
    assert all(o.shape == (60,) for o in outputs)


def test_series_shorter_than_period_is_all_nan_and_empty_is_empty() -> None:
    assert np.isnan(ind.ema([1.0, 2.0], 3)).all()
    assert np.isnan(ind.adx([2, 3, 4], [1, 2, 3], [1.5, 2.5, 3.5], 2)[0]).all()
    assert ind.sma([], 3).shape == (0,)
    assert ind.obv([], []).shape == (0,)


# --- validation


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_period_names_the_argument(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^n:"):
        ind.sma([1.0, 2.0, 3.0], bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^signal:"):
        ind.macd([1.0, 2.0, 3.0], 2, 3, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^atr_n:"):
        ind.keltner([2.0], [1.0], [1.5], 3, 2.0, bad)  # type: ignore[arg-type]


def test_mismatched_lengths_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^close: length 2 does not match high length 3"):
        ind.atr([3, 4, 5], [1, 2, 3], [2, 3], 2)
    with pytest.raises(ValueError, match=r"^volume:"):
        ind.obv([1, 2, 3], [1, 1])


def test_non_finite_input_names_the_argument_and_index() -> None:
    with pytest.raises(ValueError, match=r"^low: inputs must be finite; found nan at index 1"):
        ind.atr([3, 4, 5], [1, NAN, 3], [2, 3, 4], 2)
    with pytest.raises(ValueError, match=r"^x:.*inf"):
        ind.ema([1, math.inf], 2)


def test_other_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"^x: expected a 1-D array"):
        ind.sma(np.ones((3, 2)), 2)
    with pytest.raises(ValueError, match=r"^x: cannot convert"):
        ind.sma(["a", "b"], 2)
    with pytest.raises(ValueError, match=r"^low: low 5.0 is above high 4.0 at index 1"):
        ind.donchian([3, 4], [1, 5], 2)
    with pytest.raises(ValueError, match=r"^volume: must be >= 0"):
        ind.rolling_vwap([2, 2], [1, 1], [1, 1], [1, -1], 2)
    with pytest.raises(ValueError, match=r"^ddof:"):
        ind.rolling_std([1, 2, 3], 2, ddof=2)
    with pytest.raises(ValueError, match=r"^k:"):
        ind.bollinger([1, 2, 3], 2, -1.0)
    with pytest.raises(ValueError, match=r"^fast: must be shorter than slow"):
        ind.macd([1, 2, 3], 5, 5, 2)


def test_inputs_are_not_modified_and_outputs_are_new_arrays() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    before = x.copy()
    out = ind.sma(x, 1)
    assert out is not x and not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, before)


# --- accuracy and speed on long series


def test_rolling_mean_and_std_do_not_drift_on_a_long_series() -> None:
    rng = np.random.default_rng(3)
    x = 1e4 * np.exp(np.cumsum(rng.normal(0, 1e-3, 1_000_000)))  # prices around 1e4
    n = 20
    mean, std = ind.sma(x, n), ind.rolling_std(x, n)
    for i in range(x.size - 50, x.size):
        window = x[i - n + 1 : i + 1]
        assert mean[i] == pytest.approx(np.mean(window), rel=1e-9)
        assert std[i] == pytest.approx(np.std(window), rel=1e-9)


def test_rolling_quantile_by_hand_and_against_numpy() -> None:
    x = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    # n = 3, q = 0.5: windows [5,1,4] -> 4, [1,4,2] -> 2, [4,2,3] -> 3
    np.testing.assert_array_equal(ind.rolling_quantile(x, 3, 0.5), [np.nan, np.nan, 4, 2, 3])
    # q = 0.25 on sorted [1,4,5]: position (3-1) x 0.25 = 0.5 -> 1 + 0.5 x (4 - 1) = 2.5
    assert ind.rolling_quantile(x, 3, 0.25)[2] == 2.5
    rng = np.random.default_rng(11)
    y = np.round(rng.normal(0, 1, 500), 1)  # rounded: ties the sorted window must handle
    got = ind.rolling_quantile(y, 20, 0.8)
    want = [np.quantile(y[t - 19 : t + 1], 0.8) for t in range(19, 500)]
    np.testing.assert_allclose(got[19:], want, rtol=0, atol=1e-12)
    assert np.isnan(got[:19]).all()
    with pytest.raises(ValueError, match="q: quantile must be a number in"):
        ind.rolling_quantile(y, 5, 1.5)
    # causal: truncating the input never changes an earlier value
    np.testing.assert_array_equal(ind.rolling_quantile(y[:200], 20, 0.8), got[:200])
