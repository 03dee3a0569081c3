"""No lookahead: truncating the data never changes an earlier indicator value.

For every indicator, computing on the first k bars must give bit-for-bit the first k values of the
computation on the whole series, NaN positions included. A future bar leaking into a past value
(a centred window, a backward fill, a normalisation over the whole series) breaks this.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from n1v1 import indicators as ind

Bars = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def indicator_outputs(h, lo, c, v, n: int) -> dict[str, np.ndarray]:
    """Every indicator (each output of the multi-output ones) on one set of bars, periods from n."""
    out: dict[str, np.ndarray] = {
        "sma": ind.sma(c, n),
        "ema": ind.ema(c, n),
        "rolling_std": ind.rolling_std(c, n),
        "rolling_std_ddof1": ind.rolling_std(c, n + 1, ddof=1),
        "rolling_max": ind.rolling_max(c, n),
        "rolling_min": ind.rolling_min(c, n),
        "zscore": ind.zscore(c, n),
        "rsi": ind.rsi(c, n),
        "true_range": ind.true_range(h, lo, c),
        "atr": ind.atr(h, lo, c, n),
        "bollinger_width": ind.bollinger_width(c, n),
        "obv": ind.obv(c, v),
        "rolling_vwap": ind.rolling_vwap(h, lo, c, v, n),
    }
    multi = {
        "macd": ind.macd(c, n, 2 * n + 1, n),
        "bollinger": ind.bollinger(c, n, 2.0),
        "donchian": ind.donchian(h, lo, n),
        "keltner": ind.keltner(h, lo, c, n, 1.5, n + 2),
        "stochastic": ind.stochastic(h, lo, c, n, 3),
        "adx": ind.adx(h, lo, c, n),
    }
    for name, arrays in multi.items():
        for i, arr in enumerate(arrays):
            out[f"{name}[{i}]"] = arr
    return out


INDICATOR_NAMES = sorted(indicator_outputs(*[np.ones(3)] * 4, 2))


def random_walk_bars(size: int = 300, seed: int = 11) -> Bars:
    """OHLCV bars consistent by construction: low <= open, close <= high; volume >= 0."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, size)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0.0, 0.005, size))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.0, 0.005, size))
    volume = rng.uniform(0.0, 1000.0, size)
    volume[rng.uniform(size=size) < 0.1] = 0.0  # some empty bars
    return high, low, close, volume


def assert_prefix_stable(
    bars: Bars, n: int, cuts: list[int], names: list[str], compute: Callable = indicator_outputs
) -> None:
    full = compute(*bars, n)
    for k in cuts:
        truncated = compute(*(a[:k] for a in bars), n)
        for name in names:
            np.testing.assert_array_equal(
                truncated[name], full[name][:k], err_msg=f"{name} changed when cut at k={k}"
            )


@pytest.mark.parametrize("name", INDICATOR_NAMES)
@pytest.mark.parametrize("n", [1, 3, 14])
def test_truncation_never_changes_earlier_values(name: str, n: int) -> None:
    bars = random_walk_bars()
    # cuts around warm-up boundaries (n-1, n, 2n-1, ...) and well after them
    cuts = [0, 1, 2, n - 1, n, n + 1, 2 * n - 1, 2 * n, 3 * n + 5, 57, 150, 299, 300]
    assert_prefix_stable(bars, n, sorted({k for k in cuts if k >= 0}), [name])


def test_values_really_are_produced_so_the_comparison_is_not_vacuous() -> None:
    full = indicator_outputs(*random_walk_bars(), 14)
    for name, arr in full.items():
        assert np.isfinite(arr[-50:]).any(), name


def test_the_check_catches_a_leaky_indicator() -> None:
    # A centred moving average looks one bar ahead; the check must reject it.
    def centred(h, lo, c, v, n):
        return {"centred": np.convolve(c, np.ones(3) / 3, mode="same")}

    with pytest.raises(AssertionError, match="centred changed when cut"):
        assert_prefix_stable(random_walk_bars(), 3, [150], ["centred"], compute=centred)


@st.composite
def bars_and_cut(draw: Callable) -> tuple[Bars, int, int]:
    size = draw(st.integers(1, 80))
    # Draw prices from a mix of a small set (ties, flat windows) and a wide continuous range.
    price = st.one_of(st.sampled_from([1.0, 2.0, 100.0]), st.floats(0.01, 1e5))
    close = np.array(draw(st.lists(price, min_size=size, max_size=size)))
    spread = st.one_of(st.just(0.0), st.floats(0.0, 50.0))
    up = np.array(draw(st.lists(spread, min_size=size, max_size=size)))
    down = np.array(draw(st.lists(spread, min_size=size, max_size=size)))
    volume = st.one_of(st.just(0.0), st.floats(0.0, 1e6))
    vol = np.array(draw(st.lists(volume, min_size=size, max_size=size)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + up
    low = np.minimum(open_, close) - down
    return (high, low, close, vol), draw(st.integers(1, 12)), draw(st.integers(0, size))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(bars_and_cut())
def test_property_truncation_never_changes_earlier_values(case: tuple[Bars, int, int]) -> None:
    bars, n, k = case
    assert_prefix_stable(bars, n, [k], INDICATOR_NAMES)
