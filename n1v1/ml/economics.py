"""A model's economic test on a stretch of bars: `ml_signal` against buy-and-hold, through the
backtest engine (the fees, fills and sizing of the settings), on exactly the same bars.

Used by training (the validation window, recorded on the model card and read by the promotion
gate) and by walk-forward evaluation (each fold's test bars).

- Targets are computed on all bars up to the end of the stretch (strategies are causal, so only
  earlier bars matter: indicators and features are warmed up) and the backtest covers the stretch
  only, so no position is carried in.
- `compare_with_buy_and_hold` trades exactly the bars of the rows asked for, each contiguous run
  (a session, `n1v1.ml.dataset.session_ids`) on its own, and compounds the returns. Holding a
  position across a break of months would add the price move of those months to whichever
  strategy happened to be long at the break; neither could trade during it, so that move is no
  test of the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from n1v1.config import Settings
from n1v1.ml.dataset import session_ids
from n1v1.strategies.base import Strategy


class FixedTargets(Strategy):
    """Targets computed beforehand (with history before the backtest window) under the original
    strategy's name and parameters, so run_backtest reports them as that strategy."""

    name = "fixed_targets"

    def __init__(self, source: Strategy, targets: np.ndarray) -> None:
        super().__init__(source.params)
        self.name = source.name  # type: ignore[misc]  # shadow the class attribute per instance
        self._targets = np.asarray(targets, dtype=np.int8)

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        if len(bars) != self._targets.shape[0]:
            raise ValueError(f"{self.name}: {len(bars)} bars for {self._targets.shape[0]} targets")
        return self._targets


def backtest_span(
    bars: pd.DataFrame, strategy: Strategy, span: tuple[int, int], settings: Settings
) -> Any:
    """`run_backtest` of `strategy` on bars[span[0]:span[1]], its targets computed on
    bars[:span[1]] (warmed up on the bars before the span)."""
    from n1v1.backtest.runner import run_backtest

    targets = strategy.target_positions(bars.iloc[: span[1]], allow_short=settings.risk.allow_short)
    window = bars.iloc[span[0] : span[1]]
    return run_backtest(window, FixedTargets(strategy, targets[span[0] :]), settings)


def row_spans(bars: pd.DataFrame, rows: pd.DatetimeIndex) -> list[tuple[int, int]]:
    """[start, stop) bar ranges covering exactly the bars of `rows` (timestamps of dataset rows),
    cut at every session break and wherever consecutive rows are not consecutive bars (the
    warm-up and label-less bars around a break hold no row)."""
    position = bars.index.get_indexer(rows)
    if position.size == 0:
        return []
    if (position < 0).any():
        raise ValueError("rows: a timestamp is not in bars")
    sid = session_ids(bars.index)[position]
    cuts = np.flatnonzero((np.diff(position) != 1) | (np.diff(sid) != 0)) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [position.size]])
    pairs = zip(starts, stops, strict=True)
    return [(int(position[a]), int(position[b - 1]) + 1) for a, b in pairs]


def compare_with_buy_and_hold(
    bars: pd.DataFrame, strategy: Strategy, spans: list[tuple[int, int]], settings: Settings
) -> dict[str, Any]:
    """Net return of `strategy` and of buy-and-hold over the bar ranges `spans` (`row_spans`),
    each backtested on its own and the returns compounded: prod(1 + r_s) - 1 (fractions).

    Returns {"start", "end", "bars", "sessions", "fee", "strategy": {total_return, n_trades,
    fees_paid}, "buy_and_hold": {...}}: n_trades counts closed trades and those open at a span's
    end; fees_paid is summed over the spans, in the currency of the backtest's cash (which
    restarts at settings.backtest.cash for every span)."""
    from n1v1.strategies.trend import BuyAndHold

    if not spans:
        raise ValueError("compare_with_buy_and_hold: no bars to trade")
    out: dict[str, Any] = {
        "start": bars.index[spans[0][0]].isoformat(),
        "end": bars.index[spans[-1][1] - 1].isoformat(),
        "bars": sum(b - a for a, b in spans),
        "sessions": len(spans),
        "fee": settings.execution.taker_fee,
    }
    for key, traded in (("strategy", strategy), ("buy_and_hold", BuyAndHold())):
        growth, trades, fees = 1.0, 0, 0.0
        for piece in spans:
            result = backtest_span(bars, traded, piece, settings)
            growth *= 1.0 + float(result.metrics["total_return"])
            trades += len(result.trades)
            fees += float(result.metrics.get("fees_paid") or 0.0)
        out[key] = {"total_return": growth - 1.0, "n_trades": trades, "fees_paid": fees}
    return out


def validation_backtest(
    spec: Any, data: Any, net: Any, threshold: float, settings: Settings
) -> dict[str, Any]:
    """`compare_with_buy_and_hold` of a freshly trained network (`ml_signal` at `threshold`)
    over the bars of its validation rows (`data`: a `n1v1.ml.prepare.PreparedData`). The
    threshold and the epoch were chosen on these rows, so this is a necessary condition for an
    edge, not evidence of one: a model that cannot beat buy-and-hold here will not out of sample."""
    from n1v1.ml.inference import in_memory_model
    from n1v1.strategies.ml_signal import MLSignal

    # "v0000": a version number no registered model has (this one is not registered yet)
    loaded = in_memory_model(spec, data.scaler, net, name=spec.name, version="v0000")
    strategy = MLSignal.from_loaded(loaded, threshold=threshold)
    spans = row_spans(data.bars, data.dataset.index[data.val[0] : data.val[1]])
    return compare_with_buy_and_hold(data.bars, strategy, spans, settings)
