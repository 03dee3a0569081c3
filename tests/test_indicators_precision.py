"""Accuracy of the rolling standard deviation and what is built on it, against exact arithmetic.

The reference is exact: every float64 is a dyadic rational, so a column scaled by a common power
of two is a list of Python integers, and the window sums S1 = sum(X) and S2 = sum(X^2) are exact
integers from prefix sums. With N = n * S2 - S1^2 (exact), a window's population variance is
N / (n * Q)^2, its z-score (n * X_t - S1) / sqrt(N) and its Bollinger width 2k * sqrt(N) / S1
(Q: the scale). Only the final conversions to float round, so the reference is good to a few
units of 2^-53 — far below the 1e-9 asked of the code under test.

Tolerances (docs/indicators.md, "Numerical method"): `rolling_std` and `bollinger_width` are
compared purely relatively, |a - b| <= 1e-9 * |b|, and exact zeros must be exact zeros. They can be,
because a non-constant window has std >= range / sqrt(2n) > 0, and the kernel's error is relative
to that. The z-score is compared with |a - b| <= 1e-9 * max(|b|, 1): its unit is one standard
deviation, and a bar at the window mean has z = 0 exactly, where a relative test would demand
more than any float computation of x - mean can give (the mean itself is rounded).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from n1v1 import indicators as ind
from n1v1.data import load_dataset
from n1v1.data.datasets import dataset_names

REL = 1e-9
WINDOWS = (2, 5, 20, 50, 200)
PRICE_COLUMNS = ("open", "high", "low", "close")


class ExactWindows:
    """Exact window sums of one float64 series (see the module docstring)."""

    def __init__(self, x: np.ndarray) -> None:
        ratios = [float(v).as_integer_ratio() for v in x]
        self.scale = max(q for _, q in ratios)  # a power of two: every value is X / scale exactly
        ints = [p * (self.scale // q) for p, q in ratios]
        self.ints = ints
        self.p1 = [0]
        self.p2 = [0]
        for v in ints:
            self.p1.append(self.p1[-1] + v)
            self.p2.append(self.p2[-1] + v * v)

    def sums(self, t: int, n: int) -> tuple[int, int]:
        """(S1, N = n * S2 - S1^2) of the window x[t-n+1..t], exact integers."""
        s1 = self.p1[t + 1] - self.p1[t + 1 - n]
        s2 = self.p2[t + 1] - self.p2[t + 1 - n]
        return s1, n * s2 - s1 * s1

    def std(self, n: int, ddof: int = 0) -> np.ndarray:
        out = np.full(len(self.ints), np.nan)
        for t in range(n - 1, len(self.ints)):
            _, big_n = self.sums(t, n)
            # int / int is correctly rounded in Python: variance = N / (n (n - ddof) Q^2)
            out[t] = math.sqrt(big_n / (n * (n - ddof) * self.scale * self.scale))
        return out

    def zscore(self, n: int) -> np.ndarray:
        out = np.full(len(self.ints), np.nan)
        for t in range(n - 1, len(self.ints)):
            s1, big_n = self.sums(t, n)
            if big_n > 0:  # constant window: NaN, as documented
                out[t] = (n * self.ints[t] - s1) / math.sqrt(big_n)
        return out

    def bollinger_width(self, n: int, k: float) -> np.ndarray:
        out = np.full(len(self.ints), np.nan)
        for t in range(n - 1, len(self.ints)):
            s1, big_n = self.sums(t, n)
            if s1 != 0:  # middle 0: NaN, as documented
                out[t] = 2.0 * k * math.sqrt(big_n) / s1
        return out


def assert_close(actual: np.ndarray, expected: np.ndarray, scale: float, what: str) -> None:
    """NaN exactly where expected is NaN, else |a - b| <= REL * max(|b|, scale)."""
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaNs")
    ok = ~np.isnan(expected)
    a, b = actual[ok], expected[ok]
    err = np.abs(a - b)
    bound = REL * np.maximum(np.abs(b), scale)
    if scale == 0.0:
        assert np.array_equal(a == 0.0, b == 0.0), f"{what}: zeros differ"
    worst = int(np.argmax(err / np.where(bound > 0, bound, 1.0)))
    assert (err <= bound).all(), (
        f"{what}: bar {np.flatnonzero(ok)[worst]}: got {a[worst]!r}, exact {b[worst]!r}, "
        f"error {err[worst]:.3g} > bound {bound[worst]:.3g}"
    )


def test_exact_reference_against_fractions_and_by_hand() -> None:
    # [1, 2, 3, 4, 8], n = 3: last window [3, 4, 8], mean 5, squared deviations 4 + 1 + 9 = 14,
    # population variance 14/3; z of 8 = 3 / sqrt(14/3); width with k = 2: 4 * sqrt(14/3) / 5
    ref = ExactWindows(np.array([1.0, 2.0, 3.0, 4.0, 8.0]))
    assert ref.std(3)[4] == math.sqrt(14 / 3)
    assert ref.zscore(3)[4] == pytest.approx(3 / math.sqrt(14 / 3), rel=1e-15)
    assert ref.bollinger_width(3, 2.0)[4] == pytest.approx(4 * math.sqrt(14 / 3) / 5, rel=1e-15)
    # Non-dyadic decimals: the reference agrees with a two-pass in exact Fractions of the floats.
    x = np.array([19734.2, 19734.19, 19734.19, 19734.2, 19734.2, 0.1, 1e-3])
    fr = [Fraction(v) for v in x[:5]]
    mean = sum(fr) / 5
    var = sum((f - mean) ** 2 for f in fr) / 5
    assert ExactWindows(x).std(5)[4] == pytest.approx(math.sqrt(var), rel=1e-15)


def test_near_flat_minute_window_is_accurate() -> None:
    # coinbase BTC-USD 1m, bar 7570, n = 5: closes 19734.20, 19734.19, 19734.19, 19734.20, 19734.20.
    # In cents: mean 1973419.6, deviations 0.4, -0.6, -0.6, 0.4, 0.4, squares sum to 1.2, so the
    # population variance is 0.24 cents^2 and std = sqrt(0.24) / 100 = 0.0048989794855663...
    # (to ~1e-9, as the file's decimals are not exactly float64). The old sliding Welford update
    # gave 0.004898971723564172, 1.6e-6 off.
    close = load_dataset("coinbase_BTC-USD_1m")["close"].to_numpy()
    np.testing.assert_array_equal(close[7566:7571], [19734.2, 19734.19, 19734.19, 19734.2, 19734.2])
    std = ind.rolling_std(close, 5)[7570]
    assert std == pytest.approx(math.sqrt(0.24) / 100, rel=1e-8)
    assert std == pytest.approx(ExactWindows(close[7566:7571]).std(5)[4], rel=1e-12)


@pytest.mark.parametrize("name", dataset_names())
def test_std_zscore_and_bollinger_width_on_every_bundled_dataset(name: str) -> None:
    bars = load_dataset(name)
    series = {c: bars[c].to_numpy() for c in (*PRICE_COLUMNS, "volume")}
    for column, x in series.items():
        ref = ExactWindows(x)
        for n in (w for w in WINDOWS if w <= len(x)):
            where = f"{name} {column} n={n}"
            assert_close(ind.rolling_std(x, n), ref.std(n), 0.0, f"rolling_std {where}")
            assert_close(ind.rolling_std(x, n, ddof=1), ref.std(n, 1), 0.0, f"std ddof=1 {where}")
            assert_close(ind.zscore(x, n), ref.zscore(n), 1.0, f"zscore {where}")
            if column in PRICE_COLUMNS:
                got = ind.bollinger_width(x, n, 2.0)
                assert_close(got, ref.bollinger_width(n, 2.0), 0.0, f"bollinger_width {where}")


def test_a_calm_window_after_a_wild_one_is_accurate() -> None:
    # Prices swing by up to 40% around 2e4 with full-precision noise, then move by single float64
    # steps (ulp(2e4) = 2^-38). While the wild bars are in a window, the shifted sums of squares
    # reach ~n * 8000^2 and the compensated sums keep a rounding residue far above the calm
    # windows' m2 (~n * 2^-76). Unless the kernel rebuilds its sums there (the ratio rule in
    # _rolling_moments_kernel), calm stds come out up to ~17% wrong at n = 50 (checked by
    # disabling the rule); real prices never get there.
    rng = np.random.default_rng(7)
    base = 20_000.0
    wild = base * (1 + rng.uniform(-0.4, 0.4, 121))
    calm = base + math.ulp(base) * rng.integers(0, 4, 241)
    x = np.concatenate([wild, calm, wild[:77], calm, wild[:33], calm])
    ref = ExactWindows(x)
    for n in (2, 5, 7, 20, 50):
        assert_close(ind.rolling_std(x, n), ref.std(n), 0.0, f"rolling_std n={n}")
        assert_close(ind.zscore(x, n), ref.zscore(n), 1.0, f"zscore n={n}")
        assert_close(ind.bollinger_width(x, n), ref.bollinger_width(n, 2.0), 0.0, f"width n={n}")
