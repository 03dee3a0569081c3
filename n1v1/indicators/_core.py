"""Input validation and the Numba kernels behind n1v1.indicators (kept apart so the public module
reads as a list of indicator definitions)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


# --- validation


def _series(x: ArrayLike, name: str) -> Array:
    """x as a contiguous 1-D float64 array (no copy if it already is one), finite everywhere."""
    try:
        arr = np.ascontiguousarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a float64 array ({exc})") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name}: inputs must be finite; found {arr[bad]} at index {bad}")
    return arr


def _period(n: object, name: str) -> int:
    """Periods are integers >= 1; a float or bool is almost always a config mistake: reject it."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ValueError(f"{name}: period must be an integer >= 1, got {n!r}")
    if n < 1:
        raise ValueError(f"{name}: period must be >= 1, got {n}")
    return int(n)


def _multiplier(k: object, name: str) -> float:
    if isinstance(k, bool) or not isinstance(k, int | float | np.integer | np.floating):
        raise ValueError(f"{name}: band multiplier must be a number, got {k!r}")
    if not math.isfinite(k) or k < 0:
        raise ValueError(f"{name}: band multiplier must be finite and >= 0, got {k}")
    return float(k)


def _same_length(**arrays: Array) -> None:
    names = list(arrays)
    first = names[0]
    for other in names[1:]:
        if arrays[other].shape[0] != arrays[first].shape[0]:
            raise ValueError(
                f"{other}: length {arrays[other].shape[0]} does not match "
                f"{first} length {arrays[first].shape[0]}"
            )


def _bars(high: ArrayLike, low: ArrayLike, close: ArrayLike | None = None) -> tuple[Array, ...]:
    """Validate OHLC inputs together: equal lengths and high >= low on every bar."""
    h, lo = _series(high, "high"), _series(low, "low")
    if close is None:
        _same_length(high=h, low=lo)
        out: tuple[Array, ...] = (h, lo)
    else:
        c = _series(close, "close")
        _same_length(high=h, low=lo, close=c)
        out = (h, lo, c)
    inverted = h < lo
    if inverted.any():
        i = int(np.flatnonzero(inverted)[0])
        raise ValueError(f"low: low {lo[i]} is above high {h[i]} at index {i}")
    return out


def _volume(volume: ArrayLike, length: int) -> Array:
    v = _series(volume, "volume")
    if v.shape[0] != length:
        raise ValueError(f"volume: length {v.shape[0]} does not match close length {length}")
    if (v < 0).any():
        i = int(np.flatnonzero(v < 0)[0])
        raise ValueError(f"volume: must be >= 0, found {v[i]} at index {i}")
    return v


# --- kernels


@njit(cache=True)
def _neumaier_add(s: float, comp: float, v: float) -> tuple[float, float]:
    """Add v to the running sum s, collecting the rounding error in comp (Neumaier's variant)."""
    t = s + v
    if abs(s) >= abs(v):
        comp += (s - t) + v
    else:
        comp += (v - t) + s
    return t, comp


@njit(cache=True)
def _rolling_mean_kernel(x: Array, n: int, start: int) -> Array:
    """Mean of x[t-n+1..t] for t >= start+n-1; the running sum is compensated so it cannot drift."""
    out = np.full(x.shape[0], np.nan)
    s = 0.0
    comp = 0.0
    for i in range(start, x.shape[0]):
        s, comp = _neumaier_add(s, comp, x[i])
        if i - n >= start:
            s, comp = _neumaier_add(s, comp, -x[i - n])
        if i >= start + n - 1:
            out[i] = (s + comp) / n
    return out


@njit(cache=True)
def _two_sum_add(s: float, comp: float, v: float) -> tuple[float, float]:
    """Add v to the running sum s, collecting the exact rounding error in comp (Knuth's TwoSum:
    branch-free, so it is faster than Neumaier's test in a loop whose magnitudes keep swapping)."""
    t = s + v
    z = t - s
    comp += (s - (t - z)) + (v - z)
    return t, comp


# How far the largest shifted sum of squares seen since the last rebuild may exceed the window's m2
# before the window sums are rebuilt (see _rolling_moments_kernel).
_REBUILD_RATIO = 2.0**40


@njit(cache=True)
def _rolling_moments_kernel(x: Array, n: int, want_dev: bool) -> tuple[Array, Array]:
    """(m2, dev): each window's sum of squared deviations from its mean, and x[t] minus that mean
    (dev is an empty array unless want_dev).

    Both are exactly 0 on a constant window, found by counting equal values in a row rather than
    by comparing a rounded m2 with 0. Otherwise m2 is accurate to about (4n + 9n^2 * eps * R) * eps
    relative (eps = 2^-53, R = _REBUILD_RATIO: 1e-13 for n = 200, 2e-11 for n = 10^4), and dev to
    a few eps times the window's range, whatever the price level.

    Method. Values are shifted by a reference K taken from the window itself, d = x - K, and the
    window sums S1 = sum(d) and S2 = sum(d^2) slide with compensated (TwoSum) addition; then
    m2 = S2 - S1^2/n. As K lies inside the window, every |d| is at most the window's range, so
    S2 <= n * range^2 <= 2n * m2 and the subtraction loses at most log2(2n) bits. (The add/remove
    Welford update on raw prices was off by 1e-5 on calm BTC minute windows.) A term d^2 leaving
    the window is the same rounded number that entered it, so the rounding of terms cancels; what
    remains is the compensated sums' own error, about (3n)^2 * eps^2 * P at most, where P is the
    largest S2 since the sums were built.

    Rebuilds (O(n) each: K = x[t], sums recomputed over the window) happen n bars after the last
    rebuild, when K is about to leave the window, and when P > R * m2 (a window much calmer than
    the ones just before it), which keeps the error bound above. Cost on any input: take a ratio
    rebuild at t and the previous rebuild (of either kind) at t0 > t - n. Every window in between
    holds only values of window t0 or of window t, all within max(range(t0), range(t)) of K, so
    P <= n * max(range(t0), range(t))^2, while m2 >= range(t)^2 / 2 (two values range(t) apart).
    Hence range(t) < range(t0) / sqrt(R / 2n): each ratio rebuild in a chain divides the range by
    at least 2^15 (n <= 512; 2^12.8 at n = 10^4). The range of a non-constant window of doubles
    lies in [2^-1074, 2^1024], so for n <= 10^4 a chain has at most 2098 / 12.8 < 170 links; it can
    only start after a periodic rebuild, which comes n quiet bars after the rebuild before it. So
    there are at most 170 * (N / n + 1) rebuilds: O(1) amortised per bar. The bundled datasets
    cause no ratio rebuild at all.
    """
    size = x.shape[0]
    m2_out = np.full(size, np.nan)
    dev_out = np.full(size if want_dev else 0, np.nan)
    run = 0  # how many consecutive previous bars equal the current one
    origin = -n  # the bar whose value is K; K is inside the window while i - origin < n
    ref = 0.0
    s1 = 0.0
    c1 = 0.0
    s2 = 0.0
    c2 = 0.0
    peak = 0.0  # P: the largest S2 since the last rebuild
    sum1 = 0.0
    m2 = 0.0
    inv_n = 1.0 / n
    for i in range(size):
        run = run + 1 if i > 0 and x[i] == x[i - 1] else 0
        if i < n - 1:
            continue
        flat = run >= n - 1
        rebuild = i - origin >= n
        if not rebuild:
            d_new = x[i] - ref
            d_old = x[i - n] - ref
            s1, c1 = _two_sum_add(s1, c1, d_new)
            s2, c2 = _two_sum_add(s2, c2, d_new * d_new)
            peak = max(peak, s2)
            s1, c1 = _two_sum_add(s1, c1, -d_old)
            s2, c2 = _two_sum_add(s2, c2, -(d_old * d_old))
            sum1 = s1 + c1
            m2 = (s2 + c2) - sum1 * (sum1 * inv_n)
            rebuild = not flat and (m2 <= 0.0 or peak > _REBUILD_RATIO * m2)
        if rebuild:
            origin = i
            ref = x[i]
            s1 = 0.0
            c1 = 0.0
            s2 = 0.0
            c2 = 0.0
            for j in range(i - n + 1, i + 1):
                d = x[j] - ref
                s1, c1 = _two_sum_add(s1, c1, d)
                s2, c2 = _two_sum_add(s2, c2, d * d)
            peak = s2
            sum1 = s1 + c1
            m2 = (s2 + c2) - sum1 * (sum1 * inv_n)
        if flat:
            m2_out[i] = 0.0
            if want_dev:
                dev_out[i] = 0.0
        else:
            m2_out[i] = max(m2, 0.0)
            if want_dev:
                dev_out[i] = (x[i] - ref) - sum1 * inv_n
    return m2_out, dev_out


@njit(cache=True)
def _rolling_extreme_kernel(x: Array, n: int, want_max: bool) -> Array:
    """Rolling max (or min) with a monotonic deque of indices: O(N) whatever the window."""
    out = np.full(x.shape[0], np.nan)
    cap = 1
    while cap < n + 1:  # ring buffer of a power-of-two size (a mask, not a modulo, per access)
        cap *= 2
    mask = cap - 1
    dq = np.empty(cap, np.int64)  # holds at most n + 1 indices
    head = 0
    size = 0
    for i in range(x.shape[0]):
        xi = x[i]
        if want_max:
            while size > 0 and x[dq[(head + size - 1) & mask]] <= xi:
                size -= 1
        else:
            while size > 0 and x[dq[(head + size - 1) & mask]] >= xi:
                size -= 1
        dq[(head + size) & mask] = i
        size += 1
        if dq[head] <= i - n:
            head = (head + 1) & mask
            size -= 1
        if i >= n - 1:
            out[i] = x[dq[head]]
    return out


@njit(cache=True)
def _ema_kernel(x: Array, n: int, start: int) -> Array:
    """EMA seeded with the mean of x[start..start+n-1] at index start+n-1."""
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] - start < n:
        return out
    alpha = 2.0 / (n + 1.0)
    prev = 0.0
    for j in range(start, start + n):
        prev += x[j]
    prev /= n
    out[start + n - 1] = prev
    for i in range(start + n, x.shape[0]):
        prev = alpha * x[i] + (1.0 - alpha) * prev
        out[i] = prev
    return out


@njit(cache=True)
def _wilder_kernel(x: Array, n: int, start: int) -> Array:
    """Wilder average: mean of x[start..start+n-1] at start+n-1, then (prev*(n-1) + x)/n."""
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] - start < n:
        return out
    prev = 0.0
    for j in range(start, start + n):
        prev += x[j]
    prev /= n
    out[start + n - 1] = prev
    for i in range(start + n, x.shape[0]):
        prev = (prev * (n - 1) + x[i]) / n
        out[i] = prev
    return out


@njit(cache=True)
def _adx_kernel(h: Array, lo: Array, tr: Array, n: int) -> tuple[Array, Array, Array]:
    size = h.shape[0]
    pdi = np.full(size, np.nan)
    mdi = np.full(size, np.nan)
    dx = np.full(size, np.nan)
    s_tr = 0.0
    s_pdm = 0.0
    s_mdm = 0.0
    for t in range(1, size):
        up = h[t] - h[t - 1]
        down = lo[t - 1] - lo[t]
        pdm = up if (up > down and up > 0.0) else 0.0
        mdm = down if (down > up and down > 0.0) else 0.0
        if t <= n:  # Wilder sums start as the plain sum of bars 1..n
            s_tr += tr[t]
            s_pdm += pdm
            s_mdm += mdm
        else:
            s_tr = s_tr - s_tr / n + tr[t]
            s_pdm = s_pdm - s_pdm / n + pdm
            s_mdm = s_mdm - s_mdm / n + mdm
        if t < n:
            continue
        pdi[t] = 100.0 * s_pdm / s_tr if s_tr > 0.0 else 0.0
        mdi[t] = 100.0 * s_mdm / s_tr if s_tr > 0.0 else 0.0
        total = pdi[t] + mdi[t]
        dx[t] = 100.0 * abs(pdi[t] - mdi[t]) / total if total > 0.0 else 0.0
    return _wilder_kernel(dx, n, n), pdi, mdi


@njit(cache=True)
def _rolling_quantile_kernel(x: Array, n: int, q: float) -> Array:
    """Quantile of each trailing window, keeping the window sorted: O(n) per bar, no re-sorting."""
    out = np.full(x.shape[0], np.nan)
    window = np.empty(n)
    size = 0
    pos = (n - 1) * q
    lo = math.floor(pos)
    frac = pos - lo
    for t in range(x.shape[0]):
        if size == n:  # drop the value leaving the window
            old = x[t - n]
            j = np.searchsorted(window[:size], old)
            window[j : size - 1] = window[j + 1 : size].copy()
            size -= 1
        v = x[t]
        j = np.searchsorted(window[:size], v)
        window[j + 1 : size + 1] = window[j:size].copy()
        window[j] = v
        size += 1
        if size == n:
            hi = min(lo + 1, n - 1)
            out[t] = window[lo] + (window[hi] - window[lo]) * frac
    return out
