"""The streaming sweep (n1v1/backtest/sweep.py) against the full simulate() + compute_metrics path.

The sweep never stores per-bar arrays; these tests pin that its summary of every parameter set
is the number compute_metrics gives for the same backtest, so the fast sweep cannot drift from
the documented formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from n1v1.backtest.fast import FastConfig, simulate
from n1v1.backtest.metrics import compute_metrics
from n1v1.backtest.runner import fast_trades
from n1v1.backtest.sweep import METRIC_COLUMNS, bar_evaluations, run_sweep
from n1v1.data.synthetic import generate_bars
from n1v1.domain import Symbol
from n1v1.strategies.base import StrategyError
from n1v1.strategies.oscillators import Rsi
from n1v1.strategies.trend import EmaCross, SmaCross

CONFIGS = [
    FastConfig(taker_fee=0.001, slippage_bps=1.0, stop_loss_pct=0.02),
    FastConfig(
        taker_fee=0.0005,
        maker_fee=0.0002,
        slippage_bps=2.0,
        fill="close",
        stop_loss_pct=0.01,
        take_profit_r=2.0,
        allow_short=True,
    ),
    FastConfig(
        taker_fee=0.001,
        trailing_stop_pct=0.01,
        time_exit_bars=40,
        fraction=0.5,
        lot_size=0.01,
        allow_short=True,
    ),
    FastConfig(  # a cap that binds: positions of ~100 units, bars of ~15 (median)
        taker_fee=0.001,
        maker_fee=0.0005,
        stop_loss_pct=0.01,
        take_profit_pct=0.02,
        participation_cap=1.0,
        limit_fill="through",
        close_at_end=True,
    ),
]
CONFIG_IDS = ["stop", "close-short-tp_r", "trail-time", "cap-stop-tp-through-close_at_end"]


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return generate_bars(3000, timeframe="1h", seed=7)


def reference_row(
    bars: pd.DataFrame, strategy, config: FastConfig, rf: float = 0.0, gap_policy: str = "refuse"
) -> dict:
    """The same backtest through simulate() and compute_metrics (the slow, obvious way)."""
    targets = strategy.target_positions(bars, allow_short=config.allow_short)
    res = simulate(
        bars["open"].to_numpy(),
        bars["high"].to_numpy(),
        bars["low"].to_numpy(),
        bars["close"].to_numpy(),
        targets,
        config,
        volume=bars["volume"].to_numpy(),
    )
    metrics = compute_metrics(
        pd.Series(res.equity, index=bars.index),
        fast_trades(res, bars.index, Symbol("SYN")),
        config.cash,
        fills_notional=res.traded_notional,
        fees_paid=res.fees_paid,
        exposure_bars=res.exposure_bars,
        risk_free_rate=rf,
        gap_policy=gap_policy,
    )
    return {key: metrics[key] for key in METRIC_COLUMNS}


def assert_rows_equal(got: pd.Series, want: dict) -> None:
    for key in METRIC_COLUMNS:
        w, g = want[key], got[key]
        if w is None:
            assert g is None or (isinstance(g, float) and math.isnan(g)), (key, g)
        else:
            assert g == pytest.approx(w, rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_sma_cross_rows_equal_compute_metrics(bars: pd.DataFrame, config: FastConfig) -> None:
    sets = [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 30}, {"fast": 20, "slow": 60}]
    frame = run_sweep(bars, SmaCross, sets, config)
    assert frame[["fast", "slow"]].to_dict("records") == sets
    for i, params in enumerate(sets):
        assert_rows_equal(frame.iloc[i], reference_row(bars, SmaCross(params), config))


def test_ema_cross_and_a_generic_strategy_with_risk_free_rate(bars: pd.DataFrame) -> None:
    config = CONFIGS[0]
    frame = run_sweep(bars, EmaCross, [{"fast": 8, "slow": 21}], config, risk_free_rate=0.04)
    assert_rows_equal(
        frame.iloc[0], reference_row(bars, EmaCross({"fast": 8, "slow": 21}), config, 0.04)
    )
    rsi_sets = [{"period": 14}, {"period": 7, "oversold": 25.0, "overbought": 75.0}]
    frame = run_sweep(bars, Rsi, rsi_sets, CONFIGS[1])
    for i, params in enumerate(rsi_sets):
        assert_rows_equal(frame.iloc[i], reference_row(bars, Rsi(params), CONFIGS[1]))


def test_cached_cross_path_equals_the_generic_path_exactly(bars: pd.DataFrame) -> None:
    sets = [{"fast": f, "slow": s} for f in (3, 7) for s in (15, 40)]
    for config in CONFIGS:
        cached = run_sweep(bars, SmaCross, sets, config)
        generic = run_sweep(bars, SmaCross, sets, config, cache_indicators=False)
        pd.testing.assert_frame_equal(cached, generic, check_exact=True)


def test_cross_strategies_compute_each_window_once_per_sweep(bars: pd.DataFrame) -> None:
    cache: dict = {}
    for fast, slow in ((5, 20), (10, 20), (5, 30)):
        for allow_short in (False, True):
            strategy = SmaCross({"fast": fast, "slow": slow})
            cached = strategy.cached_target_positions(bars, allow_short, cache)
            np.testing.assert_array_equal(cached, strategy.target_positions(bars, allow_short))
    assert sorted(cache) == [("sma_cross", w) for w in (5, 10, 20, 30)]
    EmaCross({"fast": 5, "slow": 20}).cached_target_positions(bars, False, cache)
    assert ("ema_cross", 5) in cache and len(cache) == 6  # no clash with the SMA of window 5


def test_trades_happen_so_the_comparison_means_something(bars: pd.DataFrame) -> None:
    frame = run_sweep(bars, SmaCross, [{"fast": 5, "slow": 20}], CONFIGS[0])
    assert frame["n_trades"].iloc[0] > 20
    assert 0.0 < frame["exposure"].iloc[0] < 1.0


def test_bar_evaluations_and_explicit_periods_per_year(bars: pd.DataFrame) -> None:
    assert bar_evaluations(1_000_000, 250) == 250_000_000
    sets = [{"fast": 5, "slow": 20}, {"fast": 6, "slow": 20}]
    frame = run_sweep(bars, SmaCross, sets, CONFIGS[0], periods_per_year=8760.0)
    assert frame.attrs["bar_evaluations"] == 2 * 3000
    # hourly bars: 365 * 24 = 8760 per year whether given or inferred from the index
    inferred = run_sweep(bars, SmaCross, sets, CONFIGS[0])
    assert inferred.attrs["periods_per_year"] == 8760.0
    pd.testing.assert_frame_equal(frame, inferred, check_exact=True, check_like=False)


def test_bad_parameter_set_names_its_position(bars: pd.DataFrame) -> None:
    with pytest.raises(StrategyError, match=r"param_sets\[1\].*fast"):
        run_sweep(bars, SmaCross, [{"fast": 5, "slow": 20}, {"fast": 30, "slow": 20}], CONFIGS[0])
    with pytest.raises(ValueError, match="param_sets: empty"):
        run_sweep(bars, SmaCross, [], CONFIGS[0])
    with pytest.raises(ValueError, match="missing column"):
        run_sweep(bars.drop(columns="low"), SmaCross, [{}], CONFIGS[0])


def test_flat_strategy_has_undefined_ratios_like_compute_metrics(bars: pd.DataFrame) -> None:
    # slow window longer than the data: never a signal, equity constant -> Sharpe/Sortino undefined
    frame = run_sweep(bars.iloc[:50], SmaCross, [{"fast": 60, "slow": 100}], CONFIGS[0])
    row = frame.iloc[0]
    assert row["n_trades"] == 0 and row["total_return"] == 0.0 and row["max_drawdown"] == 0.0
    assert all(row[k] is None or np.isnan(row[k]) for k in ("sharpe", "sortino", "win_rate"))


@pytest.fixture(scope="module")
def gappy_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """The hourly bars with a 30-day hole after bar 1500 (a gap at 10x the 1-hour spacing)."""
    shifted = bars.copy()
    shifted.index = bars.index.where(
        np.arange(len(bars)) < 1500, bars.index + pd.Timedelta(days=30)
    )
    return shifted


@pytest.mark.parametrize("policy", ["refuse", "segment", "allow"])
def test_rows_equal_compute_metrics_across_a_gap(gappy_bars: pd.DataFrame, policy: str) -> None:
    config = CONFIGS[0]
    sets = [{"fast": 5, "slow": 20}, {"fast": 20, "slow": 60}]
    frame = run_sweep(gappy_bars, SmaCross, sets, config, gap_policy=policy)
    assert frame.attrs["n_gaps"] == 1
    for i, params in enumerate(sets):
        want = reference_row(gappy_bars, SmaCross(params), config, gap_policy=policy)
        assert_rows_equal(frame.iloc[i], want)
        withheld = policy != "allow"
        assert all((want[k] is None) == withheld for k in ("cagr", "volatility", "sharpe"))
    if policy == "allow":
        # CAGR over calendar time: 3000 hourly bars + 30 days = (2999 + 720) h + 1 h = 3720 h
        growth = frame["final_equity"].iloc[0] / config.cash
        assert frame["cagr"].iloc[0] == pytest.approx(growth ** (8760 / 3720) - 1, rel=1e-9)
