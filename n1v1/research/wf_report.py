"""A self-contained HTML report of one walk-forward run (`walk_forward_optimise`).

Same rules as the backtest report (n1v1/backtest/report.py, whose page writer is reused, and
n1v1/backtest/charts.py, which draws): one file that opens anywhere, offline. Sections: the
summary (in-sample versus out-of-sample, walk-forward efficiency, deflated Sharpe ratio), the
stitched out-of-sample equity (log scale on offer: a curve that grew tenfold leaves its early
windows flat otherwise) with each window's first test bar marked, the per-window in-sample and
out-of-sample metric (a chart and a table), the parameter heatmap (a table coloured by value),
the stability table.

The heatmap shows the optimisation metric over the two most important varied parameters, from
the per-window in-sample evaluations: each set's metric is averaged over the windows, then over
the sets sharing a cell. "Most important" is the largest main effect: the spread (variance) of
the metric's mean across a parameter's values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from n1v1.backtest.charts import (
    BLUE,
    GREY,
    MARKER_TEXT_UP_TO,
    ORANGE,
    Chart,
    chart_html,
    line_points,
    mark_gaps,
    point_times,
    series_arrays,
    snap,
)
from n1v1.backtest.report import _e, _metrics_table, write_page
from n1v1.research.evaluate import aggregate
from n1v1.research.sweep import metric_direction
from n1v1.research.walkforward import WalkForwardResult

__all__ = ["parameter_importance", "parameter_surface", "write_walkforward_report"]

_MAX_HEATMAP_CELLS = 40  # per axis; a finer grid is cut to its first values and the page says so


def parameter_surface(result: WalkForwardResult, metric: str | None = None) -> pd.DataFrame:
    """One row per parameter set: its varied parameters and `metric` (default: the run's) of the
    in-sample evaluations, averaged over symbols within a window and then over windows."""
    metric = metric or result.config["metric"]
    varied = list(result.config["varying_parameters"])
    per_window = [
        aggregate(rows.drop(columns="window"), metric).assign(window=w)
        for w, rows in result.in_sample.groupby("window", sort=True)
    ]
    table = pd.concat(per_window, ignore_index=True)
    table[metric] = pd.to_numeric(table[metric], errors="coerce")
    mean = table.groupby("set_id", sort=True)[metric].mean()
    first = table.groupby("set_id", sort=True)[varied].first() if varied else None
    out = first if first is not None else pd.DataFrame(index=mean.index)
    out[metric] = mean
    return out.reset_index()


def parameter_importance(surface: pd.DataFrame, metric: str, names: Sequence[str]) -> pd.Series:
    """Main effect of each parameter: the variance of the metric's mean over its values
    (NaN metrics ignored), largest first; parameters with one value are left out."""
    effects = {}
    for name in names:
        means = surface.groupby(name, sort=True)[metric].mean().dropna()
        if len(means) >= 2:
            effects[name] = float(means.var(ddof=0))
    return pd.Series(effects, dtype=float).sort_values(ascending=False, kind="stable")


def write_walkforward_report(
    path: str | Path, result: WalkForwardResult, *, title: str | None = None
) -> Path:
    """Write the report to `path` (parent directories are created) and return the path."""
    cfg, metric = result.config, result.config["metric"]
    title = title or f"Walk-forward: {cfg['strategy']} on {', '.join(cfg['symbols'])}"
    body = [f"<h1>{_e(title)}</h1>", _config_note(result)]
    body += ["<h2>Summary</h2>", _summary_table(result)]
    equity, per_window = _equity_chart(result), _window_chart(result)
    body += [
        "<h2>Stitched out-of-sample equity</h2>",
        '<p class="note">Grey arrows: the first test bar of each window. Every window '
        "starts flat with the previous window's ending equity."
        + (
            " The line breaks at gaps in the data, a grey square after each (see the notes)."
            if result.gaps
            else ""
        )
        + "</p>",
        chart_html(equity),
    ]
    body += [
        f"<h2>In-sample vs out-of-sample {_e(metric)} per window</h2>",
        chart_html(per_window, "Each point is a window, at its first test bar."),
        _window_table(result),
    ]
    body += ["<h2>Parameter heatmap</h2>", *_heatmap_section(result)]
    body += ["<h2>Parameter stability</h2>", _stability_table(result.stability)]
    body += ["<h2>Out-of-sample metrics (stitched curve)</h2>", _metrics_table(result.metrics)]
    if result.notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in result.notes)
        body += ["<h2>Notes</h2>", f"<ul>{items}</ul>"]
    data = result.to_dict()
    data.pop("equity")
    data.pop("trades")
    return write_page(
        Path(path), title, body, json_id="walkforward-json", data=data, charts=[equity, per_window]
    )


# -- sections ------------------------------------------------------------------------------------
def _config_note(result: WalkForwardResult) -> str:
    cfg = result.config
    step = "" if cfg["step_bars"] == cfg["test_bars"] else f", step {cfg['step_bars']}"
    return (
        f'<p class="note">{cfg["mode"]} windows of {cfg["train_bars"]:,} training and '
        f"{cfg['test_bars']:,} test bars{step} ({cfg['index']}); {cfg['n_param_sets']:,} "
        f"parameter sets per window; chosen by {_e(cfg['metric'])} "
        f"({'lowest' if metric_direction(cfg['metric']) == 'minimize' else 'highest'} wins, ties "
        f"to the lowest set id), at least {cfg['min_trades']} in-sample trades per symbol.</p>"
    )


def _summary_table(result: WalkForwardResult) -> str:
    s, dsr = result.summary, result.deflated_sharpe
    rows = [
        ("Windows", f"{s['n_windows']}"),
        (f"In-sample {s['metric']} (mean of chosen sets)", _num(s["is_metric_mean"])),
        (f"Out-of-sample {s['metric']} (mean over windows)", _num(s["oos_metric_mean"])),
        (f"Out-of-sample {s['metric']} (stitched curve)", _num(s["oos_metric_stitched"])),
        ("OOS / IS (means)", _num(s["oos_is_ratio"])),
        ("OOS − IS (means)", _num(s["oos_minus_is"])),
        ("In-sample CAGR (mean of chosen sets)", _pct(s["is_cagr_mean"])),
        ("Out-of-sample CAGR (stitched)", _pct(s["oos_cagr_stitched"])),
        ("Walk-forward efficiency (OOS CAGR / IS CAGR)", _num(s["wfe"])),
    ]
    if dsr is not None:
        rows += [
            ("OOS Sharpe per bar (SR)", _num(dsr.sharpe, 5)),
            (
                f"Expected max Sharpe per bar of {dsr.n_trials} trials (SR0)",
                _num(dsr.sharpe_benchmark, 5),
            ),
            ("Variance of trial Sharpe ratios (V)", f"{dsr.trials_variance:.3e}"),
            (
                "Returns T, skew γ3, kurtosis γ4",
                f"{dsr.n_obs:,}, {dsr.skew:.3f}, {dsr.kurtosis:.3f}",
            ),
            ("Deflated Sharpe ratio P(SR > SR0)", _num(dsr.dsr, 4)),
        ]
    else:
        rows.append(("Deflated Sharpe ratio", "n/a (see notes)"))
    cells = "".join(f'<tr><td class="l">{_e(k)}</td><td>{_e(v)}</td></tr>' for k, v in rows)
    return f'<table id="summary"><tr><th class="l">Figure</th><th>Value</th></tr>{cells}</table>'


def _equity_chart(result: WalkForwardResult) -> Chart:
    x, y = series_arrays(result.equity, "equity")
    chart = Chart(
        "wf-equity", "Stitched out-of-sample equity chart", unit="currency", log=bool((y > 0).all())
    )
    points = line_points(x, y, result.gaps)
    main = chart.add(
        "out-of-sample equity", points, colour=BLUE, base=float(result.config["initial_cash"])
    )
    times = point_times(points)
    for k, stamp in enumerate(result.boundaries):
        at = snap(times, pd.Timestamp(stamp).as_unit("ns").value)
        if at is not None:
            chart.mark(
                main,
                at,
                kind="window",
                shape="arrowDown",
                position="aboveBar",
                colour=GREY,
                text=f"W{k}" if len(result.boundaries) <= MARKER_TEXT_UP_TO else "",
            )
    mark_gaps(chart, main, times, result.gaps)
    return chart


def _window_chart(result: WalkForwardResult) -> Chart:
    """In-sample (the chosen set's) and out-of-sample metric of every window, at its first test
    bar; a window without a value leaves a hole in its line."""
    metric = result.config["metric"]
    chart = Chart(
        "wf-windows", f"In-sample and out-of-sample {metric} per window chart", height=240
    )
    table = result.windows
    seconds = [int(pd.Timestamp(t).value // 1_000_000_000) for t in table["test_start"]]
    for name, column, colour in (
        ("in-sample", "is_metric", BLUE),
        ("out-of-sample", "oos_metric", ORANGE),
    ):
        values = [_float(v) for v in table[column]]
        rows = [[t, v if math.isfinite(v) else None] for t, v in zip(seconds, values, strict=True)]
        chart.add(name, rows, colour=colour, points=True, width=1)
    return chart


def _window_table(result: WalkForwardResult) -> str:
    head = [
        "window",
        "test&nbsp;period",
        "set",
        "params",
        "IS",
        "OOS",
        "OOS/IS",
        "OOS−IS",
        "IS&nbsp;CAGR",
        "OOS&nbsp;CAGR",
        "WFE",
        "IS&nbsp;trades",
        "OOS&nbsp;trades",
        "end&nbsp;equity",
        "gaps",
    ]
    rows = [
        '<table style="font-size:.8em;white-space:nowrap">',
        "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>",
    ]
    for r in result.windows.to_dict(orient="records"):
        params = r["params"]
        names = result.config["varying_parameters"] or list(params or {})
        shown = ", ".join(f"{k}={params[k]}" for k in names) if params else ""
        cells = [
            str(r["window"]),
            f"{_stamp(r['test_start'])}<br>{_stamp(r['test_end'])}",
            "—" if r["set_id"] is None or _isnan(r["set_id"]) else str(int(r["set_id"])),
            f'<span style="white-space:normal">{_e(shown)}</span>' if params else "in cash",
            _num(r["is_metric"]),
            _num(r["oos_metric"]),
            _num(r["oos_is_ratio"]),
            _num(r["oos_minus_is"]),
            _pct(r["is_cagr"]),
            _pct(r["oos_cagr"]),
            _num(r["wfe"]),
            _num(r["is_trades"], 0),
            str(r["oos_trades"]),
            f"{r['end_equity']:,.2f}",
            _gap_cell(r),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    # scrolls sideways on a narrow screen: focusable, so a keyboard can scroll it too
    scroller = '<div style="overflow-x:auto" tabindex="0" role="region" aria-label="Windows table">'
    return scroller + "\n".join([*rows, "</table>"]) + "</div>"


def _gap_cell(row: dict[str, Any]) -> str:
    """'train 1, test 0': the gaps a window's training and test bars straddle ('' for none)."""
    train, test = int(row.get("train_gaps") or 0), int(row.get("test_gaps") or 0)
    return f"train {train}, test {test}" if train or test else ""


def _heatmap_section(result: WalkForwardResult) -> list[str]:
    metric = result.config["metric"]
    varied = list(result.config["varying_parameters"])
    if not varied:
        return ['<p class="note">No parameter varies across the sets: no heatmap.</p>']
    surface = parameter_surface(result)
    ranked = list(parameter_importance(surface, metric, varied).index)
    ranked += [n for n in varied if n not in ranked]  # varied, but no defined metric spread
    x_name = ranked[0]
    y_name = ranked[1] if len(ranked) > 1 else None
    keys = [x_name] if y_name is None else [y_name, x_name]
    cells = surface.groupby(keys, sort=True)[metric].mean()
    if y_name is None:
        matrix = cells.to_frame().T
        matrix.index = [metric]
    else:
        matrix = cells.unstack(x_name)
    cut = matrix.shape[0] > _MAX_HEATMAP_CELLS or matrix.shape[1] > _MAX_HEATMAP_CELLS
    matrix = matrix.iloc[:_MAX_HEATMAP_CELLS, :_MAX_HEATMAP_CELLS]
    note = (
        f'<p class="note">Mean in-sample {_e(metric)} over the windows (and over the other '
        f"parameters' values) by {_e(x_name)}" + (f" and {_e(y_name)}" if y_name else "") + ": "
        "the parameters with the largest main effect on it. Grey: undefined."
        + (f" Cut to the first {_MAX_HEATMAP_CELLS} values per axis." if cut else "")
        + "</p>"
    )
    return [note, heatmap(matrix, x_name=x_name, y_name=y_name or "", label=metric)]


def heatmap(matrix: pd.DataFrame, *, x_name: str, y_name: str, label: str) -> str:
    """A table of `matrix` (rows: y values top to bottom, columns: x values), each cell coloured
    from red (lowest) through pale yellow to green (highest), undefined ones grey, the value
    written in it."""
    values = matrix.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    corner = f"{_e(y_name)} ↓ / {_e(x_name)} →" if y_name else f"{_e(x_name)} →"
    head = f'<tr><th class="l" scope="col">{corner}</th>' + "".join(
        f'<th scope="col">{_e(_short(x))}</th>' for x in matrix.columns
    )
    rows = [f'<table class="heatmap" aria-label="{_e(label)} heatmap">{head}</tr>']
    for i, y_value in enumerate(matrix.index):
        cells = []
        for j, x_value in enumerate(matrix.columns):
            v = values[i, j]
            colour = _scale(v, lo, hi) if math.isfinite(v) else "#dddddd"
            text = f"{v:.3g}" if math.isfinite(v) else "n/a"
            tip = f"{x_name}={x_value}" + (f", {y_name}={y_value}" if y_name else "") + f": {text}"
            cells.append(
                f'<td class="cell" style="background:{colour}" title="{_e(tip)}">{_e(text)}</td>'
            )
        rows.append(f'<tr><th scope="row">{_e(_short(y_value))}</th>{"".join(cells)}</tr>')
    return "\n".join([*rows, "</table>"])


def _stability_table(stability: pd.DataFrame) -> str:
    head = [
        "parameter",
        "chosen&nbsp;values",
        "mode",
        "mode&nbsp;share",
        "distinct",
        "mean",
        "std",
        "CV",
    ]
    rows = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in stability.to_dict(orient="records"):
        cells = [
            _e(r["parameter"]),
            _e(", ".join(map(_short, r["values"]))),
            _e(_short(r["mode"])),
            _pct(r["mode_share"]),
            str(r["n_distinct"]),
            _num(r["mean"]),
            _num(r["std"]),
            _num(r["cv"]),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join([*rows, "</table>"])


# -- formatting ----------------------------------------------------------------------------------
def _scale(v: float, lo: float, hi: float) -> str:
    """Red (lo) through pale yellow to green (hi), pale enough for dark text on every cell."""
    t = 0.5 if hi <= lo else (v - lo) / (hi - lo)
    stops = [(244, 165, 130), (255, 255, 191), (145, 207, 96)]
    a, b, u = (stops[0], stops[1], t * 2) if t < 0.5 else (stops[1], stops[2], t * 2 - 1)
    r, g, bl = (round(a[k] + (b[k] - a[k]) * u) for k in range(3))
    return f"#{r:02x}{g:02x}{bl:02x}"


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _num(value: Any, digits: int = 3) -> str:
    x = _float(value)
    return "n/a" if not math.isfinite(x) else f"{x:,.{digits}f}"


def _pct(value: Any) -> str:
    x = _float(value)
    return "n/a" if not math.isfinite(x) else f"{x * 100:,.2f}%"


def _stamp(value: Any) -> str:
    return _e(pd.Timestamp(value).strftime("%Y-%m-%d %H:%M"))


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
