"""Fast parameter sweeps on one symbol: one row of summary metrics per parameter set.

Each set runs the compiled fast path (`n1v1.backtest.fast`) in streaming mode: the kernel keeps
running sums (returns, squared returns, downside squares, running peak and drawdown, trade
statistics) instead of per-bar arrays, so a sweep over 10^6 bars allocates almost nothing per set.
The summary formulas are those of `n1v1.backtest.metrics.compute_metrics` (docs/metrics.md);
tests/test_sweep.py checks every row against `compute_metrics` on the full `simulate` result.

Targets come from each set's strategy through `Strategy.cached_target_positions` with one cache
for the whole sweep, so indicators shared by several sets are computed once (sma_cross and
ema_cross keep each moving-average window there); the kernel only ever sees target positions.

The sweep is single-threaded on purpose: it is the unit of work that the distributed runners
spread over cores and machines, and a per-core figure is what the benchmark reports.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from n1v1.backtest import fast
from n1v1.backtest import fast_kernel as kernel
from n1v1.backtest.fast import FastConfig
from n1v1.backtest.metrics import SampleTime, cagr, check_gap_policy, sample_time
from n1v1.data.gaps import DEFAULT_GAP_MULTIPLE
from n1v1.strategies.base import BAR_COLUMNS, Strategy, StrategyError

__all__ = ["METRIC_COLUMNS", "bar_evaluations", "run_sweep", "summarise"]

METRIC_COLUMNS = (
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "n_trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "exposure",
    "fees_paid",
    "final_equity",
    "turnover",
)


def bar_evaluations(n_bars: int, n_param_sets: int) -> int:
    """Work done by a sweep, in bar evaluations: every bar simulated once per parameter set."""
    return int(n_bars) * int(n_param_sets)


def run_sweep(
    bars: pd.DataFrame,
    strategy_cls: type[Strategy],
    param_sets: Sequence[Mapping[str, Any]],
    config: FastConfig,
    periods_per_year: float | None = None,
    *,
    risk_free_rate: float = 0.0,
    cache_indicators: bool = True,
    gap_policy: str = "refuse",
    gap_multiple: float = DEFAULT_GAP_MULTIPLE,
) -> pd.DataFrame:
    """Backtest `strategy_cls` with every parameter set on one symbol's bars.

    Returns one row per set, in order: the parameters, then METRIC_COLUMNS (None/NaN where a
    metric is undefined, as in compute_metrics). `df.attrs["bar_evaluations"]` holds the work done,
    `df.attrs["n_gaps"]` the gaps in the bars (annualised metrics are None across gaps unless
    `gap_policy` is "allow", as in compute_metrics). `cache_indicators=False` calls
    `target_positions` for every set instead (used to test that the cached targets are the same).
    """
    arrays, index = _bar_arrays(bars)
    volume = None
    if config.participation_cap is not None:
        volume = fast.volume_array(bars["volume"].to_numpy(), len(index), config)
    sets = [dict(p) for p in param_sets]
    if not sets:
        raise ValueError("param_sets: empty; give at least one parameter set")
    strategies = []
    for i, params in enumerate(sets):
        try:
            strategies.append(strategy_cls(params))
        except StrategyError as err:
            raise StrategyError(f"param_sets[{i}]: {err}") from None
    check_gap_policy(gap_policy)
    if periods_per_year is not None and not (
        math.isfinite(periods_per_year) and periods_per_year > 0
    ):
        raise ValueError(f"periods_per_year: must be finite and > 0, got {periods_per_year}")
    clock = sample_time(index, periods_per_year=periods_per_year, gap_multiple=gap_multiple)
    ppy = clock.periods_per_year
    rf_bar = (1.0 + risk_free_rate) ** (1.0 / ppy) - 1.0 if ppy is not None else 0.0

    cache: dict[Hashable, np.ndarray] = {}
    rows = []
    for strategy in strategies:
        if cache_indicators:
            targets = strategy.cached_target_positions(bars, config.allow_short, cache)
        else:
            targets = strategy.target_positions(bars, allow_short=config.allow_short)
        acc = fast.stream_stats(
            *arrays, targets, config, volume=volume, rf_bar=rf_bar, validated=True
        )
        row: dict[str, Any] = dict(strategy.params.model_dump())
        row.update(summarise(acc, clock, config.cash, gap_policy))
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["bar_evaluations"] = bar_evaluations(len(index), len(sets))
    frame.attrs["periods_per_year"] = ppy
    frame.attrs["n_gaps"] = clock.n_gaps
    return frame


def summarise(
    acc: np.ndarray, clock: SampleTime, initial_cash: float, gap_policy: str = "refuse"
) -> dict[str, float | int | None]:
    """Metrics from the kernel's accumulators, with compute_metrics' formulas and conventions:
    the same `SampleTime` (calendar years, bars per year, gaps) and the same gap policy."""
    n = clock.n_bars
    ppy = clock.periods_per_year
    final = float(acc[kernel.A_FINAL_EQ])
    out: dict[str, float | int | None] = dict.fromkeys(METRIC_COLUMNS)
    out["final_equity"] = final
    out["total_return"] = final / initial_cash - 1.0
    if ppy is not None and clock.annualises(gap_policy):
        out["cagr"] = cagr(final / initial_cash, clock.years)
        if n >= 2 and acc[kernel.A_MIN_EQ_PREV] > 0.0:
            s1, s2 = float(acc[kernel.A_SUM_R]), float(acc[kernel.A_SUM_R2])
            mean = s1 / n
            std = math.sqrt(max(s2 - s1 * mean, 0.0) / (n - 1))
            root = math.sqrt(ppy)
            out["volatility"] = std * root
            if acc[kernel.A_MAX_R] != acc[kernel.A_MIN_R]:
                out["sharpe"] = _finite(mean / std * root)
            downside = math.sqrt(float(acc[kernel.A_SUM_DOWN2]) / (n - 1))
            if downside > 0.0:
                out["sortino"] = mean / downside * root
    out["max_drawdown"] = max(float(acc[kernel.A_MAX_DD]), 0.0)
    n_trades = int(acc[kernel.A_N_TRADES])
    out["n_trades"] = n_trades
    if n_trades:
        out["win_rate"] = acc[kernel.A_WINS] / n_trades
        gross_loss = float(acc[kernel.A_GROSS_LOSS])
        out["profit_factor"] = (
            float(acc[kernel.A_GROSS_WIN]) / -gross_loss if gross_loss < 0 else None
        )
        out["expectancy"] = float(acc[kernel.A_SUM_PNL]) / n_trades
    out["exposure"] = float(acc[kernel.A_EXPOSURE]) / n
    out["fees_paid"] = float(acc[kernel.A_FEES])
    mean_equity = float(acc[kernel.A_SUM_EQ]) / n
    out["turnover"] = float(acc[kernel.A_NOTIONAL]) / mean_equity if mean_equity > 0.0 else None
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _bar_arrays(bars: pd.DataFrame) -> tuple[tuple[np.ndarray, ...], pd.DatetimeIndex]:
    """Validated contiguous open/high/low/close arrays (checked once for the whole sweep)."""
    if not isinstance(bars, pd.DataFrame):
        raise TypeError(f"bars: expected a DataFrame, got {type(bars).__name__}")
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars: missing column(s) {missing}; have {list(bars.columns)}")
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise TypeError(f"bars: index must be a DatetimeIndex, got {type(bars.index).__name__}")
    columns = [bars[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close")]
    return fast.ohlc_arrays(*columns), bars.index
