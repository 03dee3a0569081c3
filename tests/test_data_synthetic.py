"""Synthetic generator: deterministic, valid OHLC, and the stylised facts it claims."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from n1v1.data import (
    DataError,
    SyntheticModel,
    generate_bars,
    generate_ohlcv_arrays,
    validate_bars,
)
from n1v1.data.synthetic import _CHUNK, regime_path

# Per-minute volatility of the default model before scaling: 0.6 * sqrt(60 s / 365 days).
SIGMA_1M = 0.6 * math.sqrt(60 / (365 * 86400))
# A plain model: one regime, no jumps, no time-of-day pattern, so moments have textbook values.
PLAIN = SyntheticModel(
    regime_vol=(1.0,), regime_mean_bars=(1.0,), jump_prob=0.0, intraday_amplitude=0.0
)


def log_returns(bars: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(bars["close"].to_numpy()))


def test_same_seed_same_bars_different_seed_different_bars() -> None:
    a = generate_bars(5000, seed=7)
    b = generate_bars(5000, seed=7)
    c = generate_bars(5000, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["close"].to_numpy(), c["close"].to_numpy())


def test_fast_arrays_equal_the_frame() -> None:
    bars = generate_bars(3000, seed=3, timeframe="5m")
    arrays = generate_ohlcv_arrays(3000, seed=3, timeframe="5m")
    assert all(a.dtype == np.float64 and a.shape == (3000,) for a in arrays)
    for column, values in zip(["open", "high", "low", "close", "volume"], arrays, strict=True):
        np.testing.assert_array_equal(bars[column].to_numpy(), values)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bars_are_valid_and_open_is_previous_close(seed: int) -> None:
    n = 2 * _CHUNK + 17  # crosses chunk boundaries
    bars = generate_bars(n, seed=seed)
    validate_bars(bars)  # OHLC consistency, prices > 0, volume >= 0, no NaN, sorted
    o, c = bars["open"].to_numpy(), bars["close"].to_numpy()
    assert o[0] == 100.0
    np.testing.assert_array_equal(o[1:], c[:-1])
    assert (bars["volume"].to_numpy() > 0).all()


def test_gaps_open_away_from_the_previous_close() -> None:
    bars = generate_bars(20_000, seed=1, model=SyntheticModel(gap_prob=0.05))
    validate_bars(bars)
    moved = bars["open"].to_numpy()[1:] != bars["close"].to_numpy()[:-1]
    # 19,999 bars with a 5% gap chance: about 1,000 gaps (binomial sd ~31).
    assert 850 < moved.sum() < 1150


def test_index_timeframe_and_start() -> None:
    bars = generate_bars(10, timeframe="4h", start="2024-03-01T02:00:00+02:00", seed=0)
    # 02:00 at +02:00 is midnight UTC.
    assert bars.index[0] == pd.Timestamp("2024-03-01", tz="UTC")
    assert (np.diff(bars.index.as_unit("ns").asi8) == 4 * 3600 * 10**9).all()
    assert bars.index.name == "timestamp"
    assert bars.attrs == {"symbol": "SYN", "source": "synthetic(seed=0)"}


def test_symbols_argument_forms() -> None:
    assert isinstance(generate_bars(10, symbols="BTC/USD"), pd.DataFrame)
    assert generate_bars(10, symbols=("ETH/USD",)).attrs["symbol"] == "ETH/USD"
    many = generate_bars(10, symbols=3)
    assert list(many) == ["SYN0", "SYN1", "SYN2"]
    assert many["SYN1"].attrs["symbol"] == "SYN1"


def test_first_symbol_does_not_depend_on_how_many_are_asked_for() -> None:
    alone = generate_bars(1000, symbols=("A",), seed=4)
    pair = generate_bars(1000, symbols=("A", "B"), seed=4)
    np.testing.assert_array_equal(alone.to_numpy(), pair["A"].to_numpy())


def test_symbols_are_correlated_through_the_common_factor() -> None:
    bars = generate_bars(50_000, symbols=("A", "B", "C"), seed=2, model=PLAIN)
    returns = np.vstack([log_returns(bars[s]) for s in "ABC"])
    corr = np.corrcoef(returns)
    # z = sqrt(0.6) f + sqrt(0.4) e for each symbol: correlation 0.6 (sampling sd ~0.003).
    assert corr[0, 1] == pytest.approx(0.6, abs=0.03)
    assert corr[1, 2] == pytest.approx(0.6, abs=0.03)
    independent = generate_bars(
        50_000,
        symbols=("A", "B"),
        seed=2,
        model=SyntheticModel(correlation=0.0, intraday_amplitude=0.0, jump_prob=0.0),
    )
    r = np.corrcoef(log_returns(independent["A"]), log_returns(independent["B"]))[0, 1]
    assert abs(r) < 0.03


def test_volatility_regimes_show_in_rolling_volatility() -> None:
    n = 200_000
    model = SyntheticModel(regime_vol=(0.5, 2.0), regime_mean_bars=(4000.0, 1000.0))
    bars = generate_bars(n, seed=5, model=model)
    regimes = regime_path(n, seed=5, model=model)
    # Time share of the volatile regime ~ 1000 / (4000 + 1000) = 0.2.
    assert 0.1 < regimes.mean() < 0.3
    rolling = pd.Series(log_returns(bars)).rolling(60).std().to_numpy()[60:]
    state = regimes[61:]  # return i+1 is made in bar i+1; the window ends at it
    calm = np.nanmedian(rolling[state == 0])
    wild = np.nanmedian(rolling[state == 1])
    # Volatility multipliers 0.5 and 2.0: rolling vol about 4x higher in the volatile regime
    # (a bit less, because windows straddle regime switches).
    assert 3.0 < wild / calm < 4.5


def test_one_regime_means_no_regime_effect() -> None:
    bars = generate_bars(100_000, seed=5, model=PLAIN)
    rolling = pd.Series(log_returns(bars)).rolling(600).std().dropna()
    # Without regimes the 10-hour rolling vol stays within a narrow band around sigma.
    assert rolling.quantile(0.99) / rolling.quantile(0.01) < 1.5


def test_plain_model_moments_match_the_textbook() -> None:
    bars = generate_bars(200_000, seed=11, model=PLAIN)
    o, h, lo, c = (bars[k].to_numpy() for k in ("open", "high", "low", "close"))
    # Log move open->close is normal with standard deviation sigma.
    assert np.std(np.log(c / o)) == pytest.approx(SIGMA_1M, rel=0.01)
    # Expected range of Brownian motion over one bar (Feller 1951):
    # E[max - min] = 2 sqrt(2/pi) sigma.
    expected_range = 2 * math.sqrt(2 / math.pi) * SIGMA_1M
    assert np.mean(np.log(h / lo)) == pytest.approx(expected_range, rel=0.01)


def test_jumps_fatten_the_tails() -> None:
    def excess_kurtosis(model: SyntheticModel) -> float:
        r = log_returns(generate_bars(100_000, seed=3, model=model))
        z = (r - r.mean()) / r.std()
        return float(np.mean(z**4) - 3.0)

    base = dict(regime_vol=(1.0,), regime_mean_bars=(1.0,), intraday_amplitude=0.0)
    assert abs(excess_kurtosis(SyntheticModel(jump_prob=0.0, **base))) < 0.2
    assert excess_kurtosis(SyntheticModel(jump_prob=0.002, jump_scale=10.0, **base)) > 5.0


def test_volume_follows_absolute_returns() -> None:
    def corr(beta: float) -> float:
        model = SyntheticModel(volume_return_beta=beta, intraday_amplitude=0.0)
        bars = generate_bars(100_000, seed=9, model=model)
        volume = bars["volume"].to_numpy()[1:]
        return float(np.corrcoef(volume, np.abs(log_returns(bars)))[0, 1])

    assert corr(1.0) > 0.3
    assert abs(corr(0.0)) < 0.02


def test_intraday_volume_seasonality_peaks_at_the_configured_hour() -> None:
    bars = generate_bars(14 * 1440, seed=6, model=SyntheticModel(intraday_peak_hour=15.0))
    by_hour = bars["volume"].groupby(bars.index.hour).mean()
    assert by_hour.idxmax() in (14, 15, 16)
    # Seasonal factor 1.5 at the peak vs 0.5 at 03:00: the busiest hour is well over
    # twice the quietest.
    assert by_hour.max() > 2 * by_hour.min()
    flat = generate_bars(14 * 1440, seed=6, model=SyntheticModel(intraday_amplitude=0.0))
    by_hour = flat["volume"].groupby(flat.index.hour).mean()
    assert by_hour.max() < 1.5 * by_hour.min()


def test_daily_bars_have_no_intraday_pattern_and_stay_valid() -> None:
    validate_bars(generate_bars(2000, timeframe="1d", seed=1))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n_bars": 0}, "number of bars"),
        ({"n_bars": 10, "timeframe": "1x"}, "bad timeframe"),
        ({"n_bars": 10, "symbols": ("A", "A")}, "unique"),
        ({"n_bars": 10, "symbols": 0}, "count must be >= 1"),
        ({"n_bars": 10, "start": "not a time"}, "bad start time"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(DataError, match=words):
        generate_bars(**kwargs)  # type: ignore[arg-type]


def test_bad_model_parameters() -> None:
    with pytest.raises(DataError, match="correlation"):
        SyntheticModel(correlation=1.5)
    with pytest.raises(DataError, match="same, non-zero length"):
        SyntheticModel(regime_vol=(1.0, 2.0), regime_mean_bars=(10.0,))
    with pytest.raises(DataError, match="annual_vol"):
        SyntheticModel(annual_vol=0.0)
