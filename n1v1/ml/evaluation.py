"""Walk-forward evaluation of a model recipe: out-of-sample probability quality and trading.

Each fold (`n1v1.ml.splits.walk_forward_folds`) is laid out in time order as
[train][purge][val][purge][calib][purge][test], every purge `labels.horizon` rows long, so no label
of an earlier block is computed from prices inside a later one. Per fold:

1. the scaler is fitted on the train rows and the model trained on them in this process (no Ray
   workers; the epoch step is `n1v1.ml.train`'s, whose module imports the ray package), so the
   recipe is trained as `n1v1 train` trains it; the epoch with the lowest val loss is kept;
2. the decision threshold is chosen on val (`choose_threshold`, the rule the model card uses);
3. a probability calibration (Platt by default) is fitted on calib, rows neither step above saw;
4. test is scored once: ROC AUC, log loss, Brier score and a reliability table, before and after
   calibration, next to a base-rate predictor (the train class frequencies);
5. economic test: `ml_signal` with this fold's model trades the test bars through
   `run_backtest` (the TradingEngine's costs, fees included) next to buy-and-hold and the rule
   strategy with the best Sharpe on train+val. Each strategy's targets are computed on all bars up
   to the end of the test (causal, so only earlier bars matter) and the backtest covers the test
   bars only, so indicators are warmed up and no position is carried in.

Numbers are reported as they come out; nothing here tunes anything on test rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from n1v1.config import Settings
from n1v1.ml.calibration import fit_calibration
from n1v1.ml.dataset import MAX_SESSION_GAP_BARS, assemble, session_ids
from n1v1.ml.economics import backtest_span
from n1v1.ml.features import feature_hash
from n1v1.ml.fit import fit_in_process
from n1v1.ml.metrics import choose_threshold, probability_metrics
from n1v1.ml.splits import Fold, walk_forward_folds
from n1v1.strategies.base import Strategy

RULE_CANDIDATES = (
    "sma_cross",
    "ema_cross",
    "macd",
    "rsi",
    "stochastic",
    "bollinger_reversion",
    "donchian_breakout",
    "atr_breakout",
    "keltner",
    "obv_trend",
    "vwap_pullback",
    "regime_switch",
)


class EvaluationError(ValueError):
    """The data or settings do not allow the requested evaluation; the message says why."""


# -- results ---------------------------------------------------------------------------------------
@dataclass
class FoldResult:
    number: int
    periods: dict[str, dict[str, Any]]  # block -> {start, end, rows}
    training: dict[str, Any]
    threshold: float
    threshold_report: dict[str, Any]  # the val-chosen rule applied to the test rows
    metrics: dict[str, dict[str, Any]]  # "uncalibrated" | "calibrated" | "base_rate" -> metrics
    calibration: dict[str, Any] | None
    economic: dict[str, dict[str, Any]]  # "ml_signal" | "buy_and_hold" | "best_rule"
    equity: dict[str, pd.Series] = field(repr=False, default_factory=dict)
    model: Any = field(repr=False, default=None)  # the fold's LoadedModel (not in to_dict)
    notes: list[str] = field(default_factory=list)  # caveats of this fold, e.g. a session break


@dataclass
class EvaluationResult:
    config: dict[str, Any]
    folds: list[FoldResult]
    notes: list[str] = field(default_factory=list)  # gaps the folds straddle (docs/metrics.md)

    def summary(self) -> dict[str, Any]:
        """Per-fold values side by side and their means (NaN folds are skipped in the mean)."""

        def collect(get: Callable[[FoldResult], Any]) -> dict[str, Any]:
            values = [get(f) for f in self.folds]
            finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
            return {"per_fold": values, "mean": float(np.mean(finite)) if finite else None}

        out: dict[str, Any] = {}
        for kind in ("uncalibrated", "calibrated", "base_rate"):
            for key in ("auc", "log_loss", "brier", "ece"):
                out[f"{kind}.{key}"] = collect(lambda f, k=kind, m=key: f.metrics.get(k, {}).get(m))
        for name in ("ml_signal", "buy_and_hold", "best_rule"):
            for key in ("total_return", "sharpe", "max_drawdown", "n_trades"):
                out[f"{name}.{key}"] = collect(
                    lambda f, s=name, m=key: f.economic.get(s, {}).get(m)
                )
        return out

    def to_dict(self, max_points: int = 500) -> dict[str, Any]:
        """JSON-safe (NaN -> None); equity curves min/max-downsampled to `max_points` each."""
        from n1v1.backtest.charts import downsample_minmax
        from n1v1.backtest.report import _json_safe

        folds = []
        for f in self.folds:
            curves = {}
            for name, eq in f.equity.items():
                x, y = downsample_minmax(eq.index.as_unit("ns").asi8, eq.to_numpy(), max_points)
                stamps = pd.to_datetime(x, utc=True)
                curves[name] = [[t.isoformat(), float(v)] for t, v in zip(stamps, y, strict=True)]
            body = {k: v for k, v in f.__dict__.items() if k not in ("equity", "model")}
            folds.append({**body, "equity": curves})
        return _json_safe(
            {
                "config": self.config,
                "summary": self.summary(),
                "folds": folds,
                "notes": self.notes,
            }
        )

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        return path


# -- the walk-forward loop -------------------------------------------------------------------------
def walk_forward_evaluate(
    bars: pd.DataFrame,
    spec: Any,
    settings: Settings | None = None,
    *,
    n_folds: int = 4,
    mode: Literal["rolling", "expanding"] = "rolling",
    test_size: int | None = None,
    train_size: int | None = None,
    calib_fraction: float = 0.1,
    calibration: Literal["platt", "isotonic"] = "platt",
    rule_strategies: Sequence[str] = RULE_CANDIDATES,
    n_bins: int = 10,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> EvaluationResult:
    """Evaluate the training recipe `spec` (a `n1v1.ml.train.TrainSpec`, or anything with its
    features, labels, model, epochs, batch_size, lr, weight_decay, patience, seed, val_fraction
    attributes) walk-forward on `bars`. `test_size` defaults to len(rows) // (2 * n_folds): half
    of the rows are test rows, the first fold trains on (most of) the other half."""
    from n1v1.ml.scaling import Standardizer
    from n1v1.strategies.ml_signal import MLSignal
    from n1v1.strategies.registry import create_strategy
    from n1v1.strategies.trend import BuyAndHold

    settings = settings or Settings()
    try:
        ds = assemble(bars, spec.features, spec.labels)
        test_size = test_size or len(ds) // (2 * n_folds)
        folds = walk_forward_folds(
            len(ds),
            n_folds=n_folds,
            test_size=max(test_size, 1),
            purge=spec.labels.horizon,
            mode=mode,
            train_size=train_size,
            val_fraction=spec.val_fraction,
            calib_fraction=calib_fraction,
        )
    except ValueError as exc:
        raise EvaluationError(f"walk-forward on {len(bars)} bars: {exc}") from None
    bar_of_row = bars.index.get_indexer(ds.index)
    session_of_row = session_ids(bars.index)[bar_of_row]
    rules = [create_strategy(name) for name in rule_strategies]
    allow_short = settings.risk.allow_short

    def bar_span(rows: slice) -> tuple[int, int]:
        return int(bar_of_row[rows.start]), int(bar_of_row[rows.stop - 1]) + 1

    def backtest(strategy: Strategy, span: tuple[int, int]) -> Any:
        return backtest_span(bars, strategy, span, settings)

    results = []
    notes = _gap_notes(bars, settings)
    for fold in folds:
        _emit(progress, {"event": "fold_start", "fold": fold.number, "of": len(folds)})
        scaler = Standardizer().fit(ds.X[fold.train])
        net, training = fit_in_process(spec, scaler.transform(ds.X), ds.y, fold.train, fold.val)
        loaded = _fold_model(spec, scaler, net, fold.number)
        proba = loaded.predict_proba(ds.X[: fold.test.stop])
        y_test = ds.y[fold.test]
        threshold = _choose_threshold(
            proba[fold.val], ds.forward_return[fold.val], 2.0 * spec.labels.fee
        )
        cal = None
        if fold.calib.stop > fold.calib.start:
            cal = fit_calibration(proba[fold.calib], ds.y[fold.calib], calibration)
        p_test = proba[fold.test]
        counts = np.bincount(ds.y[fold.train], minlength=proba.shape[1])
        prior = np.broadcast_to(counts / counts.sum(), p_test.shape)
        metrics = {"uncalibrated": probability_metrics(y_test, p_test, n_bins)}
        if cal is not None:
            metrics["calibrated"] = probability_metrics(y_test, cal.apply(p_test), n_bins)
        metrics["base_rate"] = probability_metrics(y_test, prior, n_bins)

        test_span = bar_span(fold.test)
        in_sample = (bar_span(fold.train)[0], bar_span(fold.val)[1])
        notes += _fold_gap_notes(bars, fold.number, in_sample, test_span, settings)
        sharpes = {r.name: backtest(r, in_sample).metrics.get("sharpe") for r in rules}
        best = max(rules, key=lambda r: _finite(sharpes[r.name]), default=None)
        if rules and all(sharpes[r.name] is None for r in rules):
            best = None  # no defined Sharpe (e.g. withheld across a gap): no rule to pick
            notes.append(f"fold {fold.number}: no rule has a train+val Sharpe; no best_rule")
        traded = {
            "ml_signal": MLSignal.from_loaded(loaded, threshold=threshold),
            "buy_and_hold": BuyAndHold(),
        }
        if best is not None:
            traded["best_rule"] = best
        runs = {key: backtest(s, test_span) for key, s in traded.items()}
        economic = {
            key: {"strategy": run.strategy, "params": run.params, **run.metrics}
            for key, run in runs.items()
        }
        if best is not None:
            economic["best_rule"]["in_sample_sharpe"] = sharpes[best.name]
            economic["best_rule"]["in_sample_sharpes"] = sharpes
        result = FoldResult(
            number=fold.number,
            periods=_periods(fold, ds.index),
            training=training,
            threshold=threshold,
            threshold_report=_threshold_report(
                p_test, y_test, ds.forward_return[fold.test], threshold
            ),
            metrics=metrics,
            calibration=None if cal is None else cal.to_dict(),
            economic=economic,
            equity={key: run.equity for key, run in runs.items()},
            model=loaded,
            notes=_session_notes(session_of_row[fold.test]),
        )
        results.append(result)
        _emit(progress, {"event": "fold_done", "fold": fold.number, "result": result})
    config = {
        "n_folds": n_folds,
        "mode": mode,
        "test_size": test_size,
        "train_size": train_size,
        "purge": spec.labels.horizon,
        "val_fraction": spec.val_fraction,
        "calib_fraction": calib_fraction,
        "calibration": calibration,
        "n_bars": len(bars),
        "n_rows": len(ds),
        "symbol": bars.attrs.get("symbol"),
        "start": bars.index[0].isoformat(),
        "end": bars.index[-1].isoformat(),
        "feature_spec": spec.features.model_dump(mode="json"),
        "feature_hash": feature_hash(spec.features),
        "label_spec": spec.labels.model_dump(mode="json"),
        "model_spec": spec.model.model_dump(mode="json"),
        "rule_candidates": list(rule_strategies),
        "fee": {"maker": settings.execution.maker_fee, "taker": settings.execution.taker_fee},
        "allow_short": allow_short,
        "cash": settings.backtest.cash,
        "gap_policy": settings.backtest.gaps,
        "gap_multiple": settings.backtest.gap_multiple,
    }
    return EvaluationResult(config, results, notes)


def _gap_notes(bars: pd.DataFrame, settings: Settings) -> list[str]:
    """The gaps of the bars and what backtest.gaps does with the backtests' annualised metrics."""
    from n1v1.backtest.gaps import gap_notes
    from n1v1.data.gaps import long_gaps

    backtest = settings.backtest
    gaps = long_gaps(bars.index, backtest.gap_multiple)
    return gap_notes(gaps, backtest.gaps, backtest.gap_multiple)


def _fold_gap_notes(
    bars: pd.DataFrame,
    number: int,
    in_sample: tuple[int, int],
    test: tuple[int, int],
    settings: Settings,
) -> list[str]:
    """Notes naming the gaps a fold's train+val and test bars straddle."""
    from n1v1.data.gaps import long_gaps

    notes = []
    for block, (first, stop) in (("train+val", in_sample), ("test", test)):
        window = bars.index[first:stop]
        gaps = long_gaps(window, settings.backtest.gap_multiple)
        if gaps:
            largest = max(gaps, key=lambda g: g.seconds)
            notes.append(
                f"fold {number}: its {block} bars ({window[0]:%Y-%m-%d %H:%M} to "
                f"{window[-1]:%Y-%m-%d %H:%M}) straddle {len(gaps)} gap"
                f"{'s' * (len(gaps) != 1)} (largest: {largest.describe()}); their backtests "
                f"follow backtest.gaps={settings.backtest.gaps}"
            )
    return notes


def _session_notes(sessions: np.ndarray) -> list[str]:
    """A caveat when the test rows span a session break (`n1v1.ml.dataset.session_ids`)."""
    count = len(np.unique(sessions))
    if count < 2:
        return []
    return [
        f"the test rows span {count} sessions (holes of more than {MAX_SESSION_GAP_BARS} bars "
        "between them): the backtests hold positions across the holes, so their returns include "
        "price moves no strategy could have traded"
    ]


def _choose_threshold(proba_val: np.ndarray, forward_return: np.ndarray, cost: float) -> float:
    ready = np.isfinite(proba_val).all(axis=1)
    if not ready.any():
        raise EvaluationError("validation rows have no prediction (window longer than the data)")
    return choose_threshold(proba_val[ready], forward_return[ready], cost)[0]


def _fold_model(spec: Any, scaler: Any, net: Any, number: int) -> Any:
    """The fold's network as a LoadedModel: the one inference path (`predict_proba`)."""
    from n1v1.ml.inference import in_memory_model

    return in_memory_model(spec, scaler, net, name="walk-forward", version=f"v{number + 1:04d}")


def _threshold_report(
    proba: np.ndarray, y: np.ndarray, forward_return: np.ndarray, threshold: float
) -> dict[str, Any]:
    """How the val-chosen rule 'P(long) > threshold' did on test rows."""
    event = proba.shape[1] - 1
    with np.errstate(invalid="ignore"):
        signal = proba[:, event] > threshold
    hits = y[signal] == event
    return {
        "signal_rate": float(signal.mean()) if signal.size else None,
        "precision": float(hits.mean()) if hits.size else None,
        "event_rate": float((y == event).mean()) if y.size else None,
        "mean_forward_return_signalled": float(forward_return[signal].mean())
        if signal.any()
        else None,
        "mean_forward_return_all": float(forward_return.mean()) if y.size else None,
    }


def _periods(fold: Fold, index: pd.DatetimeIndex) -> dict[str, dict[str, Any]]:
    out = {}
    for block in ("train", "val", "calib", "test"):
        rows: slice = getattr(fold, block)
        n = rows.stop - rows.start
        out[block] = {
            "start": index[rows.start].isoformat() if n else None,
            "end": index[rows.stop - 1].isoformat() if n else None,
            "rows": n,
        }
    return out


def _finite(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else -math.inf


def _emit(progress: Callable[[dict[str, Any]], None] | None, event: dict[str, Any]) -> None:
    if progress is not None:
        progress(event)
