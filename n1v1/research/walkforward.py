"""Walk-forward optimisation: optimise in-sample, trade the choice out-of-sample, repeat.

A parameter set chosen on the whole history has seen the period it is judged on. Walk-forward
splits the bars into windows; in each, every parameter set is evaluated on the training bars
(through an `Evaluator`, so the same code runs in-process or on a Ray cluster), the best one is
chosen, and only that one trades the following test bars. The test stretches, stitched together,
are an equity curve no choice has seen in advance; how much worse it is than the in-sample
figures is the price of the optimisation.

Windows are cut by bar position. One symbol uses its own index; several symbols use the
intersection of their indexes (bars a symbol has and another lacks are dropped, and `notes` says
how many), so every window covers the same timestamps for every symbol.

Out-of-sample trading, per window and symbol, without lookahead and without a cold start:

- targets are computed by the strategy on bars[train_start : test_end] (the indicators are warm
  at the first test bar) and sliced to the test bars; `target_positions` is causal, so no target
  sees a bar after its own, and nothing after the window's last test bar is read at all;
- `n1v1.backtest.fast.simulate` runs on the test bars only with those targets, starting flat with
  the window's starting equity (the previous window's ending equity: returns compound). A target
  observed at the last training bar is not traded: it belongs to the in-sample period;
- a position still open at the last test bar is closed at that bar's close, paying the taker fee
  and the fixed slippage (the fill rule `close_at_end` of the kernel and the engine), so the next
  window starts flat and in cash (the IS sweep, like `run_backtest`, marks an open position to
  market instead);
- with several symbols each symbol is a sleeve with an equal share of the window's starting
  equity; the window's equity is the sum of the sleeves.

docs/research.md ("Walk-forward optimisation") explains the report's numbers.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from n1v1.backtest.fast import simulate
from n1v1.backtest.gaps import gap_summary
from n1v1.backtest.metrics import ANNUALISED, bar_returns, compute_metrics, periods_per_year_for
from n1v1.backtest.runner import fast_config, fast_trades
from n1v1.backtest.sweep import METRIC_COLUMNS
from n1v1.config import Settings
from n1v1.data.gaps import Gap, long_gaps
from n1v1.domain import OrderPurpose, Symbol, Trade
from n1v1.research.deflated_sharpe import DeflatedSharpe, deflated_sharpe_ratio, return_moments
from n1v1.research.evaluate import Evaluator, aggregate, check_sweepable, local_evaluator
from n1v1.research.sweep import metric_direction
from n1v1.strategies.base import Strategy
from n1v1.strategies.registry import get_strategy

__all__ = [
    "WalkForwardResult",
    "Window",
    "align_frames",
    "choose_best",
    "parameter_stability",
    "walk_forward_optimise",
    "walk_forward_windows",
]

WINDOW_END_REASON = "window_end"  # exit_reason of a position closed because its window ended
END_OF_DATA_REASON = OrderPurpose.END_OF_DATA.value  # what the fill rule calls it


@dataclass(frozen=True, slots=True)
class Window:
    """Bar positions of one walk-forward window: train = [train_start, train_end),
    test = [train_end, test_end). `number` counts from 0 in time order."""

    number: int
    train_start: int
    train_end: int
    test_end: int

    @property
    def train(self) -> slice:
        return slice(self.train_start, self.train_end)

    @property
    def test(self) -> slice:
        return slice(self.train_end, self.test_end)


def walk_forward_windows(
    n_bars: int,
    *,
    train_bars: int,
    test_bars: int,
    step_bars: int | None = None,
    mode: Literal["rolling", "expanding"] = "rolling",
) -> list[Window]:
    """Windows over `n_bars` bars: window k trains up to e_k = train_bars + k * step_bars and tests
    [e_k, e_k + test_bars); rolling trains on [e_k - train_bars, e_k), expanding on [0, e_k).

    Only whole test windows are made (trailing bars that do not fill one stay unused). step_bars
    defaults to test_bars (test windows back to back) and may not be smaller: overlapping test
    windows would count their common bars twice in the stitched curve.
    """
    n_bars = _count("n_bars", n_bars, 0)
    train_bars = _count("train_bars", train_bars, 1)
    test_bars = _count("test_bars", test_bars, 1)
    step = test_bars if step_bars is None else _count("step_bars", step_bars, 1)
    if step < test_bars:
        raise ValueError(
            f"step_bars: {step} < test_bars={test_bars} would make test windows overlap, and the "
            "stitched out-of-sample curve would count their common bars twice"
        )
    if mode not in ("rolling", "expanding"):
        raise ValueError(f"mode: must be 'rolling' or 'expanding', got {mode!r}")
    windows = []
    end = train_bars
    while end + test_bars <= n_bars:
        start = 0 if mode == "expanding" else end - train_bars
        windows.append(Window(len(windows), start, end, end + test_bars))
        end += step
    if not windows:
        raise ValueError(
            f"n_bars: {n_bars} bars are too few for one window of train_bars={train_bars} + "
            f"test_bars={test_bars}"
        )
    return windows


def align_frames(
    frames: Mapping[str, pd.DataFrame] | pd.DataFrame,
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Frames on one common index (the intersection of the symbols' indexes), and notes naming
    the bars each symbol lost to it. One symbol is returned as it is."""
    if isinstance(frames, pd.DataFrame):
        frames = {str(frames.attrs.get("symbol") or "ASSET"): frames}
    out = {str(s): f for s, f in frames.items()}
    if not out:
        raise ValueError("frames: no symbols given")
    for symbol, frame in out.items():
        if not isinstance(frame, pd.DataFrame) or not isinstance(frame.index, pd.DatetimeIndex):
            raise TypeError(f"frames[{symbol!r}]: expected a DataFrame with a DatetimeIndex")
        if not frame.index.is_monotonic_increasing or frame.index.has_duplicates:
            raise ValueError(f"frames[{symbol!r}]: timestamps must be strictly increasing")
    if len(out) == 1:
        return out, []
    common = None
    for frame in out.values():
        common = frame.index if common is None else common.intersection(frame.index)
    assert common is not None
    notes = [
        f"{symbol}: {len(frame) - len(common):,} bars not shared by every symbol were dropped"
        for symbol, frame in out.items()
        if len(frame) != len(common)
    ]
    return {s: f.loc[common] for s, f in out.items()}, notes


def choose_best(scores: pd.DataFrame, metric: str, min_trades: int = 0) -> tuple[int | None, int]:
    """(set_id of the best set, number of eligible sets) from one row per set with columns
    set_id, `metric` and trades_min (the fewest in-sample trades on any symbol).

    The rules of `n1v1.research.sweep.rank_sets`: a set is eligible when its metric is defined
    and it made at least `min_trades` closed trades on every symbol; the highest metric wins
    (the lowest for max_drawdown, see `metric_direction`); ties go to the lowest set_id. None
    when no set is eligible.
    """
    value = pd.to_numeric(scores[metric], errors="coerce")
    eligible = value.notna() & (scores["trades_min"] >= min_trades)
    if not eligible.any():
        return None, 0
    ok = value[eligible]
    best = ok.min() if metric_direction(metric) == "minimize" else ok.max()
    return int(scores.loc[ok.index[ok == best], "set_id"].min()), int(eligible.sum())


def parameter_stability(
    chosen: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per parameter over the sets chosen in successive windows: the values in window
    order, the modal value (ties: the one chosen first), how often it was chosen, the number of
    distinct values, and for numeric parameters the mean, the population standard deviation and
    the coefficient of variation std / |mean| (None when the mean is 0)."""
    names = list(names) if names is not None else (list(chosen[0]) if chosen else [])
    rows = []
    for name in names:
        values = [params[name] for params in chosen]
        counts = Counter(values)
        top = max(counts.values()) if counts else 0
        mode = next((v for v in values if counts[v] == top), None)
        numeric = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        mean = std = cv = None
        if values and len(numeric) == len(values):
            mean = float(statistics.fmean(numeric))
            std = float(statistics.pstdev(numeric))
            cv = std / abs(mean) if mean != 0.0 else None
        rows.append(
            {
                "parameter": name,
                "values": values,
                "mode": mode,
                "mode_count": top,
                "mode_share": top / len(values) if values else None,
                "n_distinct": len(counts),
                "mean": mean,
                "std": std,
                "cv": cv,
            }
        )
    return pd.DataFrame(rows, columns=_STABILITY_COLUMNS)


_STABILITY_COLUMNS = [
    "parameter",
    "values",
    "mode",
    "mode_count",
    "mode_share",
    "n_distinct",
    "mean",
    "std",
    "cv",
]


@dataclass
class WalkForwardResult:
    """Everything a walk-forward run measured; `to_dict` gives it as strict JSON.

    windows: one row per window (bar ranges and timestamps, the chosen set_id and params, the IS
    and OOS metric, their ratio and difference, IS/OOS CAGR and walk-forward efficiency, trades,
    starting and ending equity). equity: the stitched out-of-sample curve. boundaries: the first
    test bar of each window. metrics: `compute_metrics` of the stitched curve. in_sample: every
    evaluator row of every window (column `window` added).
    """

    windows: pd.DataFrame
    equity: pd.Series
    boundaries: list[pd.Timestamp]
    trades: list[Trade]
    metrics: dict[str, Any]
    stability: pd.DataFrame
    deflated_sharpe: DeflatedSharpe | None
    summary: dict[str, Any]
    in_sample: pd.DataFrame
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)  # gaps of the common index (docs/metrics.md)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(
            {
                "config": self.config,
                "summary": self.summary,
                "metrics": self.metrics,
                "deflated_sharpe": self.deflated_sharpe.to_dict() if self.deflated_sharpe else None,
                "windows": self.windows.to_dict(orient="records"),
                "stability": self.stability.to_dict(orient="records"),
                "boundaries": list(self.boundaries),
                "equity": [
                    [ts, float(v)]
                    for ts, v in zip(self.equity.index, self.equity.to_numpy(), strict=True)
                ],
                "trades": [t.to_dict() for t in self.trades],
                "gaps": [g.to_dict() for g in self.gaps],
                "notes": self.notes,
            }
        )

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        return path


def walk_forward_optimise(
    frames: Mapping[str, pd.DataFrame] | pd.DataFrame,
    strategy_name: str | type[Strategy],
    param_sets: Iterable[Mapping[str, Any]],
    settings: Settings | None = None,
    *,
    train_bars: int,
    test_bars: int,
    step_bars: int | None = None,
    mode: Literal["rolling", "expanding"] = "rolling",
    metric: str = "sharpe",
    min_trades: int = 0,
    evaluator: Evaluator = local_evaluator,
    progress: Callable[[int, int], None] | None = None,
) -> WalkForwardResult:
    """Optimise `param_sets` in-sample and trade the best out-of-sample, window by window.

    `metric` is one of METRIC_COLUMNS, averaged over symbols and maximised (max_drawdown:
    minimised); sets with an undefined metric or fewer than `min_trades` in-sample trades on some
    symbol are not eligible (`choose_best`), and a window without an eligible set stays in cash.
    `progress(done, total)` is called after each window.
    """
    settings = settings or Settings()
    strategy_cls = get_strategy(strategy_name) if isinstance(strategy_name, str) else strategy_name
    if metric not in METRIC_COLUMNS:
        raise ValueError(f"metric {metric!r}: choose from {', '.join(METRIC_COLUMNS)}")
    min_trades = _count("min_trades", min_trades, 0)
    aligned, notes = align_frames(frames)
    check_sweepable(aligned, settings)
    sets = _validated_sets(strategy_cls, param_sets)
    index = next(iter(aligned.values())).index
    windows = walk_forward_windows(
        len(index), train_bars=train_bars, test_bars=test_bars, step_bars=step_bars, mode=mode
    )
    unused = len(index) - windows[-1].test_end
    if unused:
        notes.append(f"the last {unused:,} bars do not fill a test window and were not traded")
    ppy = periods_per_year_for(index)
    varying = [k for k in sets[0] if len({repr(s[k]) for s in sets}) > 1]
    backtest = settings.backtest
    gaps = long_gaps(index, backtest.gap_multiple)
    if gaps:
        notes.append(gap_summary(gaps, backtest.gap_multiple))

    cash = float(settings.backtest.cash)
    equity = cash
    rows, in_sample, pieces, trades, chosen = [], [], [], [], []
    sharpe_variances: list[float] = []
    fills = fees = 0.0
    exposure = 0
    for w in windows:
        train = {s: f.iloc[w.train] for s, f in aligned.items()}
        evaluated = evaluator(train, strategy_cls, sets, settings)
        scores = _scores(evaluated, metric)
        in_sample.append(evaluated.assign(window=w.number))
        set_id, eligible = choose_best(scores, metric, min_trades)
        variance = _trial_sharpe_variance(scores, index[w.train])
        if variance is not None:
            sharpe_variances.append(variance)

        start_equity = equity
        notes += window_gap_notes(w, index, gaps, metric, backtest.gaps, set_id is None)
        if set_id is None or equity <= 0.0:
            why = "no eligible parameter set" if set_id is None else "no equity left"
            notes.append(f"window {w.number}: {why}; it stayed in cash")
            oos = _flat_window(index[w.test], equity)
        else:
            chosen.append(sets[set_id])
            oos = _trade_window(aligned, strategy_cls, sets[set_id], settings, w, equity, ppy)
        pieces.append(oos.equity)
        trades += oos.trades
        fills += oos.fills_notional
        fees += oos.fees_paid
        exposure += oos.exposure_bars
        equity = float(oos.equity.iloc[-1])
        row = _window_row(w, index, scores, set_id, sets, eligible, metric, oos, start_equity)
        row["train_gaps"] = sum(w.train_start < g.bar < w.train_end for g in gaps)
        row["test_gaps"] = sum(w.train_end < g.bar < w.test_end for g in gaps)
        rows.append(row)
        if progress is not None:
            progress(w.number + 1, len(windows))

    stitched = pd.concat(pieces).rename("equity")
    metrics = compute_metrics(
        stitched,
        trades,
        cash,
        fills_notional=fills,
        fees_paid=fees,
        exposure_bars=exposure,
        periods_per_year=ppy,
        risk_free_rate=settings.backtest.risk_free_rate,
        gap_policy=backtest.gaps,
        gap_multiple=backtest.gap_multiple,
    )
    table = pd.DataFrame(rows)
    stitched_gaps = long_gaps(stitched.index, backtest.gap_multiple)
    if stitched_gaps and backtest.gaps != "allow":
        dsr = None
        notes.append(
            f"the stitched out-of-sample curve has {len(stitched_gaps)} gap(s): its annualised "
            f"metrics and the deflated Sharpe ratio are withheld (backtest.gaps={backtest.gaps}; "
            "--set backtest.gaps=allow computes them across the gaps)"
        )
    else:
        dsr = _deflated_sharpe(stitched, cash, ppy, settings, len(sets), sharpe_variances, notes)
    config = {
        "strategy": getattr(strategy_cls, "name", strategy_cls.__name__),
        "symbols": list(aligned),
        "metric": metric,
        "mode": mode,
        "train_bars": int(train_bars),
        "test_bars": int(test_bars),
        "step_bars": int(step_bars or test_bars),
        "min_trades": min_trades,
        "n_param_sets": len(sets),
        "varying_parameters": varying,
        "initial_cash": cash,
        "periods_per_year": ppy,
        "gap_policy": backtest.gaps,
        "gap_multiple": backtest.gap_multiple,
        "index": "own index" if len(aligned) == 1 else "intersection of the symbols' indexes",
    }
    return WalkForwardResult(
        windows=table,
        equity=stitched,
        boundaries=[index[w.train_end] for w in windows],
        trades=trades,
        metrics=metrics,
        stability=parameter_stability(chosen, varying or list(sets[0])),
        deflated_sharpe=dsr,
        summary=_summary(table, metrics, metric, dsr),
        in_sample=pd.concat(in_sample, ignore_index=True),
        config=config,
        notes=notes,
        gaps=gaps,
    )


def window_gap_notes(
    w: Window,
    index: pd.DatetimeIndex,
    gaps: Sequence[Gap],
    metric: str,
    gap_policy: str,
    no_choice: bool,
) -> list[str]:
    """Notes naming the gaps a window's training or test bars straddle, and what they did."""
    notes = []
    for part, first, stop in (
        ("training", w.train_start, w.train_end),
        ("test", w.train_end, w.test_end),
    ):
        inside = [g for g in gaps if first < g.bar < stop]
        if not inside:
            continue
        largest = max(inside, key=lambda g: g.seconds)
        text = (
            f"window {w.number}: its {part} bars ({index[first]:%Y-%m-%d %H:%M} to "
            f"{index[stop - 1]:%Y-%m-%d %H:%M}) straddle {len(inside)} gap"
            f"{'s' * (len(inside) != 1)} (largest: {largest.describe()})"
        )
        if gap_policy != "allow":
            text += f"; its {part} annualised metrics are withheld (backtest.gaps={gap_policy})"
            if part == "training" and no_choice and metric in ANNUALISED:
                text += f", so no set could be chosen by {metric}"
        notes.append(text)
    return notes


# -- one window out of sample --------------------------------------------------------------------
@dataclass
class _WindowTrade:
    """The out-of-sample result of one window: the summed equity of its sleeves and totals."""

    equity: pd.Series
    trades: list[Trade]
    fills_notional: float
    fees_paid: float
    exposure_bars: int
    sleeve_metrics: list[dict[str, Any]]


def _trade_window(
    frames: Mapping[str, pd.DataFrame],
    strategy_cls: type[Strategy],
    params: Mapping[str, Any],
    settings: Settings,
    w: Window,
    equity: float,
    ppy: float,
) -> _WindowTrade:
    strategy = strategy_cls(params)
    strategy.bind_settings(settings)
    sleeve_cash = equity / len(frames)
    total = None
    exposed = None
    trades: list[Trade] = []
    fills = fees = 0.0
    sleeve_metrics = []
    for symbol, frame in frames.items():
        history = frame.iloc[w.train_start : w.test_end]  # warm indicators, nothing after test_end
        targets = strategy.target_positions(history, allow_short=settings.risk.allow_short)
        test = frame.iloc[w.test]
        config = replace(fast_config(settings, symbol), cash=sleeve_cash, close_at_end=True)
        result = simulate(
            test["open"].to_numpy(),
            test["high"].to_numpy(),
            test["low"].to_numpy(),
            test["close"].to_numpy(),
            np.asarray(targets)[w.train_end - w.train_start :],
            config,
            volume=test["volume"].to_numpy(),
        )
        curve = result.equity
        sleeve_trades = fast_trades(result, test.index, Symbol(symbol))
        for trade in sleeve_trades:
            if trade.exit_reason == END_OF_DATA_REASON:
                trade.exit_reason = WINDOW_END_REASON
        notional = result.traded_notional
        paid = result.fees_paid
        sleeve_metrics.append(
            compute_metrics(
                pd.Series(curve, index=test.index),
                sleeve_trades,
                sleeve_cash,
                fills_notional=notional,
                fees_paid=paid,
                exposure_bars=result.exposure_bars,
                periods_per_year=ppy,
                risk_free_rate=settings.backtest.risk_free_rate,
                gap_policy=settings.backtest.gaps,
                gap_multiple=settings.backtest.gap_multiple,
            )
        )
        total = curve if total is None else total + curve
        held = result.position != 0.0
        exposed = held if exposed is None else exposed | held
        trades += sleeve_trades
        fills += notional
        fees += paid
    assert total is not None and exposed is not None
    index = next(iter(frames.values())).index[w.test]
    return _WindowTrade(
        pd.Series(total, index=index), trades, fills, fees, int(exposed.sum()), sleeve_metrics
    )


def _flat_window(index: pd.DatetimeIndex, equity: float) -> _WindowTrade:
    return _WindowTrade(pd.Series(equity, index=index, dtype=float), [], 0.0, 0.0, 0, [])


# -- tables and summaries ------------------------------------------------------------------------
def _scores(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per set: the metric, Sharpe and CAGR averaged over symbols, trades summed
    (trades) and the fewest on one symbol (trades_min)."""
    scores = aggregate(rows, metric).set_index("set_id")
    grouped = rows.groupby("set_id", sort=True)
    for name in ("sharpe", "cagr"):
        if name != metric:
            scores[name] = grouped[name].apply(lambda s: pd.to_numeric(s, errors="coerce").mean())
    scores["trades"] = grouped["n_trades"].sum()
    scores["trades_min"] = grouped["n_trades"].min()
    return scores.reset_index()


def _window_row(
    w: Window,
    index: pd.DatetimeIndex,
    scores: pd.DataFrame,
    set_id: int | None,
    sets: Sequence[dict[str, Any]],
    eligible: int,
    metric: str,
    oos: _WindowTrade,
    start_equity: float,
) -> dict[str, Any]:
    chosen = scores.set_index("set_id").loc[set_id] if set_id is not None else None
    is_metric = _number(chosen[metric]) if chosen is not None else None
    is_cagr = _number(chosen["cagr"]) if chosen is not None else None
    oos_metric = _mean([m.get(metric) for m in oos.sleeve_metrics])
    oos_cagr = _mean([m.get("cagr") for m in oos.sleeve_metrics])
    return {
        "window": w.number,
        "train_start": index[w.train_start],
        "train_end": index[w.train_end - 1],
        "test_start": index[w.train_end],
        "test_end": index[w.test_end - 1],
        "train_bars": w.train_end - w.train_start,
        "test_bars": w.test_end - w.train_end,
        "set_id": set_id,
        "params": dict(sets[set_id]) if set_id is not None else None,
        "eligible_sets": eligible,
        "is_metric": is_metric,
        "oos_metric": oos_metric,
        "oos_is_ratio": _ratio(oos_metric, is_metric),
        "oos_minus_is": oos_metric - is_metric
        if oos_metric is not None and is_metric is not None
        else None,
        "is_cagr": is_cagr,
        "oos_cagr": oos_cagr,
        "wfe": _ratio(oos_cagr, is_cagr),
        "is_trades": int(chosen["trades"]) if chosen is not None else None,
        "oos_trades": sum(1 for t in oos.trades if t.exit_time is not None),
        "start_equity": start_equity,
        "end_equity": float(oos.equity.iloc[-1]),
    }


def _summary(
    table: pd.DataFrame, metrics: Mapping[str, Any], metric: str, dsr: DeflatedSharpe | None
) -> dict[str, Any]:
    is_mean = _mean(table["is_metric"].tolist())
    oos_mean = _mean(table["oos_metric"].tolist())
    is_cagr = _mean(table["is_cagr"].tolist())
    return {
        "metric": metric,
        "n_windows": len(table),
        "is_metric_mean": is_mean,
        "oos_metric_mean": oos_mean,
        "oos_metric_stitched": metrics.get(metric),
        "oos_is_ratio": _ratio(oos_mean, is_mean),
        "oos_minus_is": oos_mean - is_mean
        if oos_mean is not None and is_mean is not None
        else None,
        "is_cagr_mean": is_cagr,
        "oos_cagr_stitched": metrics.get("cagr"),
        "wfe": _ratio(metrics.get("cagr"), is_cagr),
        "dsr": dsr.dsr if dsr else None,
        "sr0_per_period": dsr.sharpe_benchmark if dsr else None,
        "oos_sharpe_per_period": dsr.sharpe if dsr else None,
    }


def _trial_sharpe_variance(scores: pd.DataFrame, train_index: pd.DatetimeIndex) -> float | None:
    """Variance (ddof 1) of the sets' per-bar in-sample Sharpe ratios in one window: the
    annualised figure of the sweep divided by the square root of its bars per year (the
    training slice's, as the sweep computed it). None with fewer than two defined ratios."""
    if len(train_index) < 2:
        return None
    sharpe = pd.to_numeric(scores["sharpe"], errors="coerce").dropna()
    if len(sharpe) < 2:
        return None
    return float((sharpe / math.sqrt(periods_per_year_for(train_index))).var(ddof=1))


def _deflated_sharpe(
    equity: pd.Series,
    cash: float,
    ppy: float,
    settings: Settings,
    n_trials: int,
    variances: Sequence[float],
    notes: list[str],
) -> DeflatedSharpe | None:
    """DSR of the stitched out-of-sample returns (excess of the per-bar risk-free rate), with
    N = sets tried per window and V = the mean over windows of the variance of the sets'
    per-period in-sample Sharpe ratios."""
    rf_bar = (1.0 + settings.backtest.risk_free_rate) ** (1.0 / ppy) - 1.0
    returns = bar_returns(equity.to_numpy(dtype=np.float64), cash) - rf_bar
    try:
        sharpe, skew, kurtosis, n_obs = return_moments(returns)
    except ValueError as err:
        notes.append(f"deflated Sharpe ratio not computed: {err}")
        return None
    if n_trials > 1 and not variances:
        notes.append("deflated Sharpe ratio: no window had two defined Sharpe ratios; V = 0")
    variance = float(np.mean(variances)) if variances else 0.0
    return deflated_sharpe_ratio(
        sharpe,
        n_trials=n_trials,
        trials_variance=variance,
        n_obs=n_obs,
        skew=skew,
        kurtosis=kurtosis,
    )


# -- small helpers -------------------------------------------------------------------------------
def _validated_sets(
    strategy_cls: type[Strategy], param_sets: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Every set built once (so a bad set fails before any window runs), with defaults filled."""
    if isinstance(param_sets, Mapping | str):
        raise TypeError("param_sets: expected a list of parameter dicts (or space.ParamSets)")
    param_sets = list(param_sets)
    if not param_sets:
        raise ValueError("param_sets: empty; give at least one parameter set")
    out = []
    for i, params in enumerate(param_sets):
        try:
            out.append(strategy_cls(params).params.model_dump())
        except ValueError as err:
            raise ValueError(f"param_sets[{i}]: {err}") from None
    return out


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _mean(values: Sequence[Any]) -> float | None:
    numbers = [x for x in map(_number, values) if x is not None]
    return float(statistics.fmean(numbers)) if numbers else None


def _ratio(oos: float | None, in_sample: float | None) -> float | None:
    """oos / in_sample, defined only for a positive in-sample figure (a ratio to a negative
    or zero baseline reads backwards)."""
    if oos is None or in_sample is None or not in_sample > 0.0:
        return None
    return _number(oos / in_sample)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NaT:
        return None
    return value
