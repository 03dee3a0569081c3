"""The one contract between search methods and the machines that run backtests.

An evaluator takes bars (one frame per symbol), a strategy class, parameter sets and settings, and
returns one row per (parameter set, symbol): `set_id` (the set's position in the input), `symbol`,
the parameters, then `n1v1.backtest.sweep.METRIC_COLUMNS`. Grid, random and Bayesian search and
walk-forward optimisation only ever call an evaluator, so they run unchanged in-process
(`local_evaluator`) or spread over a Ray cluster (`n1v1.research.distributed.RayEvaluator`), and a
test can compare the two row for row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pandas as pd

from n1v1.backtest.runner import fast_config, fast_path_unsupported
from n1v1.backtest.sweep import METRIC_COLUMNS, run_sweep
from n1v1.config import Settings
from n1v1.strategies.base import Strategy

__all__ = ["METRIC_COLUMNS", "Evaluator", "aggregate", "check_sweepable", "local_evaluator"]


class Evaluator(Protocol):
    def __call__(
        self,
        frames: Mapping[str, pd.DataFrame],
        strategy_cls: type[Strategy],
        param_sets: Sequence[Mapping[str, Any]],
        settings: Settings,
    ) -> pd.DataFrame: ...


def check_sweepable(frames: Mapping[str, pd.DataFrame], settings: Settings) -> None:
    """Sweeps run the compiled fast path; settings it cannot reproduce exactly are refused."""
    for symbol, frame in frames.items():
        reason = fast_path_unsupported(settings, {symbol: frame})
        if reason:
            raise ValueError(f"{symbol}: sweeps use the fast path, which cannot run: {reason}")


def evaluate_on_symbol(
    symbol: str,
    frame: pd.DataFrame,
    strategy_cls: type[Strategy],
    param_sets: Sequence[Mapping[str, Any]],
    settings: Settings,
    first_set_id: int = 0,
) -> pd.DataFrame:
    """Rows for one symbol and a contiguous block of sets (a distributed chunk is one call)."""
    rows = run_sweep(
        frame,
        strategy_cls,
        param_sets,
        fast_config(settings, symbol),
        risk_free_rate=settings.backtest.risk_free_rate,
        gap_policy=settings.backtest.gaps,
        gap_multiple=settings.backtest.gap_multiple,
    )
    rows.insert(0, "symbol", symbol)
    rows.insert(0, "set_id", range(first_set_id, first_set_id + len(rows)))
    return rows


def local_evaluator(
    frames: Mapping[str, pd.DataFrame],
    strategy_cls: type[Strategy],
    param_sets: Sequence[Mapping[str, Any]],
    settings: Settings,
) -> pd.DataFrame:
    """Every set on every symbol, in this process."""
    check_sweepable(frames, settings)
    parts = [
        evaluate_on_symbol(symbol, frame, strategy_cls, param_sets, settings)
        for symbol, frame in frames.items()
    ]
    return pd.concat(parts, ignore_index=True).sort_values(["set_id", "symbol"], kind="stable")


def aggregate(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per parameter set: its parameters and the mean of `metric` over symbols (NaN when
    the metric is undefined on a symbol counts as missing), with the number of symbols."""
    if metric not in METRIC_COLUMNS:
        raise ValueError(f"metric {metric!r}: choose from {', '.join(METRIC_COLUMNS)}")
    params = [c for c in rows.columns if c not in ("set_id", "symbol", *METRIC_COLUMNS)]
    grouped = rows.groupby("set_id", sort=True)
    out = grouped[params].first() if params else pd.DataFrame(index=grouped.size().index)
    out[metric] = grouped[metric].apply(lambda s: pd.to_numeric(s, errors="coerce").mean())
    out["symbols"] = grouped.size()
    return out.reset_index()
