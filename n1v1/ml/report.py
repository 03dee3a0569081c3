"""A self-contained HTML report of a walk-forward evaluation (`n1v1 evaluate --report`).

Same rules as the backtest report (`n1v1.backtest.report`, whose page writer it reuses, and
`n1v1.backtest.charts`, which draws): one file that opens offline, no network. It shows a summary
across folds, then per fold the periods, training, the threshold's test record, probability
metrics before and after calibration next to a base-rate predictor, the reliability diagram, and
the equity of `ml_signal` against buy-and-hold and the best rule strategy on the same test bars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from n1v1.backtest.charts import (
    BLUE,
    GREY,
    ORANGE,
    PURPLE,
    Chart,
    chart_html,
    line_points,
    mark_gaps,
    point_times,
    series_arrays,
)
from n1v1.backtest.report import _e, _json_safe, write_page
from n1v1.data.gaps import DEFAULT_GAP_MULTIPLE, long_gaps
from n1v1.ml.evaluation import EvaluationResult, FoldResult

_PROBABILITY_ROWS = (("auc", "ROC AUC"), ("log_loss", "Log loss"), ("brier", "Brier"))
_ECONOMIC_ROWS = (
    ("total_return", "Total return", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("n_trades", "Closed trades", "int"),
    ("exposure", "Exposure", "pct"),
    ("fees_paid", "Fees paid", "num"),
)


def write_evaluation_report(
    path: str | Path,
    result: EvaluationResult,
    *,
    title: str,
    notes: Sequence[str] = (),
) -> Path:
    """Write the report to `path` (parent directories are created) and return the path."""
    path = Path(path)
    cfg = result.config
    body = [f"<h1>{_e(title)}</h1>", _config_note(cfg), "<h2>Summary across folds</h2>"]
    body.append(_summary_table(result))
    multiple = float(cfg.get("gap_multiple") or DEFAULT_GAP_MULTIPLE)
    charts: list[Chart] = []
    for fold in result.folds:
        body += _fold_section(fold, float(cfg.get("cash") or 0.0), multiple, charts)
    if notes:
        body += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"]
    summary = _json_safe(result.summary())
    return write_page(path, title, body, json_id="summary-json", data=summary, charts=charts)


def _fmt(value: Any, kind: str = "num") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if kind == "pct":
        return f"{100.0 * value:,.2f}%"
    if kind == "int":
        return f"{int(value):,}"
    return f"{value:,.4f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(
        f'<th class="{"l" if i == 0 else ""}">{_e(h)}</th>' for i, h in enumerate(headers)
    )
    lines = [f'<table class="{cls}"><tr>{head}</tr>']
    for row in rows:
        cells = "".join(
            f'<td class="{"l" if i == 0 else ""}">{cell}</td>' for i, cell in enumerate(row)
        )
        lines.append(f"<tr>{cells}</tr>")
    return "\n".join([*lines, "</table>"])


def _config_note(cfg: dict[str, Any]) -> str:
    label = cfg.get("label_spec", {})
    model = cfg.get("model_spec", {})
    fee = cfg.get("fee", {})
    return (
        f'<p class="note">{_e(cfg.get("symbol") or "bars")}: {cfg.get("n_bars", 0):,} bars '
        f"({_e(cfg.get('start'))} to {_e(cfg.get('end'))} UTC), {cfg.get('n_rows', 0):,} rows "
        f"with features and a label. {cfg.get('n_folds')} {_e(cfg.get('mode'))} folds of "
        f"{cfg.get('test_size', 0):,} test rows; purge {cfg.get('purge')} rows between blocks. "
        f"Label: {_e(label.get('kind'))}, horizon {label.get('horizon')} bars, fee "
        f"{label.get('fee')} per side + margin {label.get('margin')}. Model: "
        f"{_e(model.get('kind'))}. Features hash {_e(cfg.get('feature_hash'))}. Backtests: taker "
        f"fee {fee.get('taker')}, maker fee {fee.get('maker')}, shorts "
        f"{'allowed' if cfg.get('allow_short') else 'off'}. Calibration: "
        f"{_e(cfg.get('calibration'))}, fitted on each fold's calib block only.</p>"
    )


def _summary_table(result: EvaluationResult) -> str:
    summary = result.summary()
    headers = ["", *(f"fold {f.number}" for f in result.folds), "mean"]
    rows = []
    for kind in ("uncalibrated", "calibrated", "base_rate"):
        for key, label in (*_PROBABILITY_ROWS, ("ece", "ECE")):
            entry = summary[f"{kind}.{key}"]
            cells = [_fmt(v) for v in entry["per_fold"]]
            rows.append([f"{_e(label)} ({kind.replace('_', ' ')})", *cells, _fmt(entry["mean"])])
    for name in ("ml_signal", "buy_and_hold", "best_rule"):
        for key, label, kind in _ECONOMIC_ROWS[:4]:
            entry = summary[f"{name}.{key}"]
            cells = [_fmt(v, kind) for v in entry["per_fold"]]
            rows.append([f"{_e(name)}: {_e(label)}", *cells, _fmt(entry["mean"], kind)])
    return _table(headers, rows, "summary")


def _fold_section(
    fold: FoldResult, cash: float, gap_multiple: float, charts: list[Chart]
) -> list[str]:
    """The fold's tables, and its charts (appended to `charts`, drawn by the page)."""
    out = [f'<h2 id="fold-{fold.number}">Fold {fold.number}</h2>']
    periods = [
        [_e(block), _e(p["start"] or "-"), _e(p["end"] or "-"), f"{p['rows']:,}"]
        for block, p in fold.periods.items()
    ]
    out.append(_table(["block", "first row", "last row", "rows"], periods))
    out += [f'<p class="note">Caution: {_e(note)}.</p>' for note in fold.notes]
    t = fold.training
    tr = fold.threshold_report
    out.append(
        f'<p class="note">Training: {t["rows"]:,} rows, {t["epochs_run"]} epochs, best epoch '
        f"{t['best_epoch']} (val loss {_fmt(t['val_loss'])}, val AUC {_fmt(t['val_auc'])}), "
        f"{t['seconds']:.1f} s. Threshold chosen on val: P(long) &gt; {fold.threshold:.4f}; on "
        f"test it fired on {_fmt(tr['signal_rate'], 'pct')} of rows with precision "
        f"{_fmt(tr['precision'], 'pct')} (event rate {_fmt(tr['event_rate'], 'pct')}); mean "
        f"forward return when fired {_fmt(tr['mean_forward_return_signalled'], 'pct')} vs "
        f"{_fmt(tr['mean_forward_return_all'], 'pct')} over all test rows (before fees).</p>"
    )
    kinds = list(fold.metrics)
    rows = [
        [_e(label), *(_fmt(fold.metrics[k][key]) for k in kinds)]
        for key, label in (*_PROBABILITY_ROWS, ("ece", "ECE"))
    ]
    out.append(_table(["test rows", *(k.replace("_", " ") for k in kinds)], rows, "probability"))
    reliability = _reliability_chart(fold)
    charts.append(reliability)
    out.append(chart_html(reliability, _reliability_caption(fold)))
    names = list(fold.economic)
    headers = ["test bars", *(f"{n} ({fold.economic[n]['strategy']})" for n in names)]
    rows = [
        [_e(label), *(_fmt(fold.economic[n].get(key), kind) for n in names)]
        for key, label, kind in _ECONOMIC_ROWS
    ]
    out.append(_table(headers, rows, "economic"))
    if fold.equity:
        equity = _equity_chart(fold, cash, gap_multiple)
        charts.append(equity)
        out.append(chart_html(equity))
    return out


def _equity_chart(fold: FoldResult, cash: float, gap_multiple: float) -> Chart:
    """The fold's test equity of each strategy; gaps in the test bars (spacings above
    `gap_multiple` x the median) break the lines and are marked, as on the backtest report."""
    colours = {"buy_and_hold": GREY, "best_rule": ORANGE}
    main = "ml_signal" if "ml_signal" in fold.equity else next(iter(fold.equity))
    gaps = long_gaps(fold.equity[main].index, gap_multiple)
    chart = Chart(
        f"fold-{fold.number}-equity",
        f"Fold {fold.number} test equity chart",
        unit="currency",
        height=280,
    )
    positive = True
    for name in [main, *(n for n in fold.equity if n != main)]:
        x, y = series_arrays(fold.equity[name], f"fold {fold.number} {name} equity")
        positive = positive and bool((y > 0).all())
        label = f"{name} ({fold.economic[name]['strategy']})" if name == "best_rule" else name
        points = line_points(x, y, gaps)
        options = {"base": cash} if name == main and cash > 0 else {}
        index = chart.add(
            label, points, colour=BLUE if name == main else colours.get(name, PURPLE), **options
        )
        if name == main:
            mark_gaps(chart, index, point_times(points), gaps)
    chart.log = positive
    return chart


def _reliability_chart(fold: FoldResult) -> Chart:
    """Observed frequency against mean predicted probability per bin (bins with rows only); the
    dashed diagonal is a perfectly calibrated model."""
    chart = Chart(
        f"fold-{fold.number}-reliability",
        f"Reliability diagram, fold {fold.number}",
        kind="numeric",
        unit="probability",
        height=300,
        x_precision=3,
    )
    # the library spaces x values evenly by rank: the diagonal holds every 0.001 from 0 to 1, so
    # the bins' points (x to 0.001; the caption has them exact) sit where their x says
    grid = [[k / 1000, k / 1000] for k in range(1001)]
    chart.add("perfect calibration", grid, colour=GREY, dashed=True, width=1)
    for kind, colour in (("uncalibrated", BLUE), ("calibrated", ORANGE)):
        if kind not in fold.metrics:
            continue
        bins = [b for b in fold.metrics[kind]["reliability"] if b["count"]]
        rows: dict[float, float] = {}
        for b in bins:  # one point per x: the chart needs x to rise
            rows[round(float(b["mean_predicted"]), 3)] = float(b["observed_frequency"])
        chart.add(kind, [[x, y] for x, y in sorted(rows.items())], colour=colour, points=True)
    return chart


def _reliability_caption(fold: FoldResult) -> str:
    """The diagram's bins as words: what a screen reader (or a reader who wants the numbers)
    gets from the chart."""
    parts = []
    for kind in ("uncalibrated", "calibrated"):
        if kind not in fold.metrics:
            continue
        bins = [b for b in fold.metrics[kind]["reliability"] if b["count"]]
        shown = "; ".join(
            f"[{b['lower']:.1f}, {b['upper']:.1f}) n={b['count']:,} predicted "
            f"{b['mean_predicted']:.3f} observed {b['observed_frequency']:.3f}"
            for b in bins
        )
        parts.append(f"{_e(kind)}: {_e(shown)}")
    return "Bins with rows: " + ". ".join(parts) + "." if parts else ""
