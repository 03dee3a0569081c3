"""Technical indicators: the single implementation shared by strategies, regimes and ML features.

Every function takes 1-D arrays (anything ``np.asarray`` converts to float64) and returns new
float64 arrays of the same length, NaN during the warm-up. Values are causal: the value at bar t
depends only on bars 0..t, so truncating the input never changes an earlier value (tested).
Formulas, warm-up lengths and seeding conventions: docs/indicators.md.

Inputs must be finite: a NaN would silently poison every later value of a recursive indicator,
so it is rejected up front with a ValueError naming the argument and the first bad index.
Recursive indicators (EMA, Wilder) and sliding windows run in Numba kernels; the running window
sum is compensated (Neumaier), so a rolling mean stays accurate to ~1e-15 on 10^7 bars.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from n1v1.indicators._core import (
    Array,
    _adx_kernel,
    _bars,
    _ema_kernel,
    _multiplier,
    _period,
    _rolling_extreme_kernel,
    _rolling_mean_kernel,
    _rolling_moments_kernel,
    _rolling_quantile_kernel,
    _series,
    _volume,
    _wilder_kernel,
)

# --- moving averages & windows


def sma(x: ArrayLike, n: int) -> Array:
    """Simple moving average over the last n values (current bar included); first value at n-1."""
    arr, n = _series(x, "x"), _period(n, "n")
    return _rolling_mean_kernel(arr, n, 0)


def ema(x: ArrayLike, n: int) -> Array:
    """EMA with alpha = 2/(n+1), seeded with the SMA of the first n values at index n-1.

    Seeding with the SMA (not with x[0]) makes the value independent of how far back data starts
    once the seed has decayed, and matches TA-Lib and most charting packages.
    """
    arr, n = _series(x, "x"), _period(n, "n")
    return _ema_kernel(arr, n, 0)


def rolling_std(x: ArrayLike, n: int, ddof: int = 0) -> Array:
    """Rolling standard deviation (population by default); exactly 0 on a constant window."""
    arr, n = _series(x, "x"), _period(n, "n")
    if isinstance(ddof, bool) or not isinstance(ddof, int | np.integer) or not 0 <= ddof < n:
        raise ValueError(f"ddof: must be an integer with 0 <= ddof < n={n}, got {ddof!r}")
    m2, _ = _rolling_moments_kernel(arr, n, False)
    return np.sqrt(m2 / (n - ddof))


def rolling_max(x: ArrayLike, n: int) -> Array:
    """Highest value of x[t-n+1..t] (the current bar is inside the window)."""
    arr, n = _series(x, "x"), _period(n, "n")
    return _rolling_extreme_kernel(arr, n, True)


def rolling_min(x: ArrayLike, n: int) -> Array:
    """Lowest value of x[t-n+1..t] (the current bar is inside the window)."""
    arr, n = _series(x, "x"), _period(n, "n")
    return _rolling_extreme_kernel(arr, n, False)


def rolling_quantile(x: ArrayLike, n: int, q: float) -> Array:
    """q-quantile of the trailing n values (window includes the current bar), interpolated linearly
    between order statistics like numpy's default: position (n - 1) * q in the sorted window."""
    arr, n = _series(x, "x"), _period(n, "n")
    if isinstance(q, bool) or not isinstance(q, int | float) or not 0.0 <= q <= 1.0:
        raise ValueError(f"q: quantile must be a number in [0, 1], got {q!r}")
    return _rolling_quantile_kernel(arr, n, float(q))


def zscore(x: ArrayLike, n: int) -> Array:
    """(x - SMA(n)) / population std(n); NaN where the window is constant (std 0).

    The deviation comes from the same shifted window sums as the std, so it is accurate to the
    window's spread, not to the price level (x - SMA would lose digits to the SMA's rounding).
    """
    arr, n = _series(x, "x"), _period(n, "n")
    m2, dev = _rolling_moments_kernel(arr, n, True)
    std = np.sqrt(m2 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0.0, dev / std, np.nan)


# --- momentum


def rsi(close: ArrayLike, n: int = 14) -> Array:
    """Wilder's RSI; first value at index n from the simple means of the first n changes.

    Computed as 100*G/(G+L), algebraically 100 - 100/(1+G/L) but defined when L == 0:
    100 when only gains, 50 when the window has no change at all.
    """
    c, n = _series(close, "close"), _period(n, "n")
    change = np.zeros_like(c)
    change[1:] = np.diff(c)
    gain = _wilder_kernel(np.maximum(change, 0.0), n, 1)
    loss = _wilder_kernel(np.maximum(-change, 0.0), n, 1)
    total = gain + loss
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0.0, 100.0 * gain / total, np.where(np.isnan(total), np.nan, 50.0))


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[Array, ...]:
    """(macd_line, signal_line, histogram): EMA(fast) - EMA(slow), its EMA(signal), and the gap.

    The signal EMA starts at the first valid MACD value (index slow-1), so it is first defined
    at index slow+signal-2.
    """
    c = _series(close, "close")
    fast, slow, signal = _period(fast, "fast"), _period(slow, "slow"), _period(signal, "signal")
    if fast >= slow:
        raise ValueError(f"fast: must be shorter than slow ({slow}), got {fast}")
    line = _ema_kernel(c, fast, 0) - _ema_kernel(c, slow, 0)
    sig = _ema_kernel(line, signal, slow - 1)
    return line, sig, line - sig


def stochastic(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, k: int = 14, d: int = 3
) -> tuple[Array, Array]:
    """(%K, %D): where the close sits in the k-bar high-low range, and its d-bar SMA.

    %K is 50 when the range is flat (HH == LL): the close is neither high nor low in it.
    """
    h, lo, c = _bars(high, low, close)
    k, d = _period(k, "k"), _period(d, "d")
    hh = _rolling_extreme_kernel(h, k, True)
    ll = _rolling_extreme_kernel(lo, k, False)
    rng = hh - ll
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_k = np.where(rng > 0.0, 100.0 * (c - ll) / rng, np.where(np.isnan(rng), np.nan, 50.0))
    pct_d = _rolling_mean_kernel(pct_k, d, min(k - 1, c.shape[0]))
    return pct_k, pct_d


# --- volatility & bands


def true_range(high: ArrayLike, low: ArrayLike, close: ArrayLike) -> Array:
    """TR[0] = high-low; TR[t] = max(h-l, |h - c[t-1]|, |l - c[t-1]|), so gaps count as range."""
    h, lo, c = _bars(high, low, close)
    tr = h - lo
    if c.shape[0] > 1:
        prev = c[:-1]
        tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(h[1:] - prev), np.abs(lo[1:] - prev)))
    return tr


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, n: int = 14) -> Array:
    """Wilder's ATR: mean of TR[0..n-1] at index n-1, then (prev*(n-1) + TR)/n."""
    tr = true_range(high, low, close)
    return _wilder_kernel(tr, _period(n, "n"), 0)


def bollinger(close: ArrayLike, n: int = 20, k: float = 2.0) -> tuple[Array, Array, Array]:
    """(middle, upper, lower) = SMA(n) and SMA -/+ k * population std (ddof=0), as Bollinger did."""
    c, n, k = _series(close, "close"), _period(n, "n"), _multiplier(k, "k")
    mid = _rolling_mean_kernel(c, n, 0)
    width = k * np.sqrt(_rolling_moments_kernel(c, n, False)[0] / n)
    return mid, mid + width, mid - width


def bollinger_width(close: ArrayLike, n: int = 20, k: float = 2.0) -> Array:
    """(upper - lower) / middle, computed as 2 * k * std / middle; NaN where the middle is 0.

    Not as the difference of the bands: upper and lower are rounded at the price level, so on a
    calm window their difference keeps only a few digits of the width.
    """
    c, n, k = _series(close, "close"), _period(n, "n"), _multiplier(k, "k")
    mid = _rolling_mean_kernel(c, n, 0)
    std = np.sqrt(_rolling_moments_kernel(c, n, False)[0] / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mid != 0.0, 2.0 * k * std / mid, np.nan)


def donchian(high: ArrayLike, low: ArrayLike, n: int = 20) -> tuple[Array, Array, Array]:
    """(upper, lower, middle): n-bar highest high, lowest low, their midpoint; current bar in."""
    h, lo = _bars(high, low)
    n = _period(n, "n")
    upper = _rolling_extreme_kernel(h, n, True)
    lower = _rolling_extreme_kernel(lo, n, False)
    return upper, lower, (upper + lower) / 2.0


def keltner(
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    n: int = 20,
    k: float = 2.0,
    atr_n: int = 14,
) -> tuple[Array, Array, Array]:
    """(middle, upper, lower) = SMA(close, n), middle -/+ k * ATR(atr_n); from max(n, atr_n)-1."""
    n, k, atr_n = _period(n, "n"), _multiplier(k, "k"), _period(atr_n, "atr_n")
    h, lo, c = _bars(high, low, close)
    mid = _rolling_mean_kernel(c, n, 0)
    band = k * atr(h, lo, c, atr_n)
    return mid, mid + band, mid - band


def adx(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, n: int = 14
) -> tuple[Array, Array, Array]:
    """(adx, plus_di, minus_di), Wilder's definition; DI valid from index n, ADX from 2n-1.

    A bar's +DM is the up-move if it beats the down-move and is positive (else 0), and vice versa.
    TR, +DM and -DM are Wilder sums over bars 1..n, then S - S/n + x. DI = 100*S(DM)/S(TR) (0 when
    S(TR) is 0), DX = 100*|+DI - -DI|/(+DI + -DI) (0 when both are 0), ADX = Wilder average of DX.
    """
    h, lo, c = _bars(high, low, close)
    n = _period(n, "n")
    return _adx_kernel(h, lo, true_range(h, lo, c), n)


# --- volume


def obv(close: ArrayLike, volume: ArrayLike) -> Array:
    """On-balance volume: 0 at bar 0, then +volume on an up close, -volume on a down close."""
    c = _series(close, "close")
    v = _volume(volume, c.shape[0])
    out = np.zeros_like(c)
    if c.shape[0] > 1:
        np.cumsum(np.sign(np.diff(c)) * v[1:], out=out[1:])
    return out


def rolling_vwap(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike, n: int = 20
) -> Array:
    """sum(tp*v)/sum(v) over the last n bars with tp = (h+l+c)/3; NaN if that volume sum is 0."""
    h, lo, c = _bars(high, low, close)
    v = _volume(volume, c.shape[0])
    n = _period(n, "n")
    typical = (h + lo + c) / 3.0
    pv = _rolling_mean_kernel(typical * v, n, 0)
    vol = _rolling_mean_kernel(v, n, 0)
    # Volume is >= 0, so the window sum is 0 exactly when its max is 0; compare that rather than a
    # compensated sum that may leave a 1e-17 residue after large volumes leave the window.
    empty = _rolling_extreme_kernel(v, n, True) == 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(empty, np.nan, pv / vol)
