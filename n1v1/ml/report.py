"""A self-contained HTML report of a walk-forward evaluation (`n1v1 evaluate --report`).

Same rules as the backtest report (`n1v1.backtest.report`, whose CSS, SVG line chart and
downsampling it reuses): one file, inline CSS and SVG, no JavaScript, no network. It shows a summary
across folds, then per fold the periods, training, the threshold's test record, probability
metrics before and after calibration next to a base-rate predictor, the reliability diagram, and
the equity of `ml_signal` against buy-and-hold and the best rule strategy on the same test bars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from n1v1.backtest.report import (
    _GREY,
    _e,
    _json_safe,
    _line_chart,
    _nice_ticks,
    _series_arrays,
    gap_bands,
    write_page,
)
from n1v1.data.gaps import DEFAULT_GAP_MULTIPLE, long_gaps
from n1v1.ml.evaluation import EvaluationResult, FoldResult

_ORANGE, _PURPLE = "#d95f02", "#7570b3"
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
    for fold in result.folds:
        body += _fold_section(fold, float(cfg.get("cash") or 0.0), multiple)
    if notes:
        body += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"]
    return write_page(path, title, body, json_id="summary-json", data=_json_safe(result.summary()))


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


def _fold_section(fold: FoldResult, cash: float, gap_multiple: float) -> list[str]:
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
    out.append(_reliability_chart(fold))
    names = list(fold.economic)
    headers = ["test bars", *(f"{n} ({fold.economic[n]['strategy']})" for n in names)]
    rows = [
        [_e(label), *(_fmt(fold.economic[n].get(key), kind) for n in names)]
        for key, label, kind in _ECONOMIC_ROWS
    ]
    out.append(_table(headers, rows, "economic"))
    if fold.equity:
        out.append(_equity_chart(fold, cash, gap_multiple))
    return out


def _equity_chart(fold: FoldResult, cash: float, gap_multiple: float) -> str:
    """The fold's test equity of each strategy; gaps in the test bars (spacings above
    `gap_multiple` x the median) are shaded, as on the backtest report."""
    colours = {"buy_and_hold": _GREY, "best_rule": _ORANGE}
    main = "ml_signal" if "ml_signal" in fold.equity else next(iter(fold.equity))
    x, y = _series_arrays(fold.equity[main], f"fold {fold.number} {main} equity")
    overlays = []
    for name, series in fold.equity.items():
        if name != main:
            ox, oy = _series_arrays(series, f"fold {fold.number} {name} equity")
            label = f"{name} ({fold.economic[name]['strategy']})" if name == "best_rule" else name
            overlays.append((label, ox, oy, colours.get(name, _PURPLE)))
    bands = gap_bands(long_gaps(fold.equity[main].index, gap_multiple))
    return _line_chart(
        x,
        y,
        height=260,
        label=main,
        baseline=cash if cash > 0 else None,
        overlays=overlays,
        bands=bands,
    )


def _reliability_chart(fold: FoldResult, size: int = 360) -> str:
    """Observed frequency against mean predicted probability per bin; the diagonal is perfect."""
    left, top, plot = 56, 12, size - 56 - 16
    height = top + plot + 40

    def sx(v: float) -> float:
        return left + v * plot

    def sy(v: float) -> float:
        return top + (1.0 - v) * plot

    parts = [
        f'<svg viewBox="0 0 {size} {height}" style="max-width:{size}px" role="img" '
        f'aria-label="reliability diagram fold {fold.number}">',
        f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" stroke="#ccc"/>',
        f'<line x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(1):.1f}" y2="{sy(1):.1f}" '
        f'stroke="{_GREY}" stroke-dasharray="4 3"/>',
    ]
    for tick in _nice_ticks(0.0, 1.0):
        parts.append(
            f'<text x="{left - 6}" y="{sy(tick) + 4:.1f}" text-anchor="end">{tick:.1f}</text>'
            f'<text x="{sx(tick):.1f}" y="{top + plot + 16}" text-anchor="middle">{tick:.1f}</text>'
        )
    parts.append(
        f'<text x="{left + plot / 2:.1f}" y="{height - 6}" text-anchor="middle">mean predicted '
        f'P(long)</text><text x="12" y="{top + plot / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot / 2:.1f})">observed frequency</text>'
    )
    series = [("uncalibrated", "#2c7fb8"), ("calibrated", _ORANGE)]
    for k, (kind, colour) in enumerate(s for s in series if s[0] in fold.metrics):
        bins = [b for b in fold.metrics[kind]["reliability"] if b["count"]]
        points = [(sx(b["mean_predicted"]), sy(b["observed_frequency"]), b) for b in bins]
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{line}"/>'
        )
        for px, py, b in points:
            tip = (
                f"{kind}: bin [{b['lower']:.1f}, {b['upper']:.1f}) n={b['count']:,} predicted "
                f"{b['mean_predicted']:.3f} observed {b['observed_frequency']:.3f}"
            )
            parts.append(
                f'<circle class="bin {kind}" cx="{px:.1f}" cy="{py:.1f}" r="3.5" '
                f'fill="{colour}"><title>{_e(tip)}</title></circle>'
            )
        parts.append(
            f'<text x="{left + 8}" y="{top + 16 + 15 * k}" style="fill:{colour}">{_e(kind)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
