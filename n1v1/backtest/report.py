"""A self-contained HTML report of one backtest: metrics, equity, drawdown, prices, trades.

The file must open anywhere (an air-gapped laptop, a CI artifact, an e-mail attachment), so it
embeds everything: inline CSS and inline SVG charts drawn here in plain Python, no JavaScript, no
CDN, no matplotlib. It must also stay small on years of minute bars, so every series is downsampled
to at most `MAX_CHART_POINTS` points by keeping the minimum and the maximum of each bucket (a crash
or a spike is never averaged away), and the trades table and chart markers are capped (the page
says so when it cuts).
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from n1v1.backtest.metrics import METRICS, drawdown
from n1v1.data.gaps import Gap
from n1v1.domain import Side, Trade
from n1v1.execution.shortfall import execution_rows

_Mapper = Callable[[float], float]  # data coordinate -> SVG pixel

MAX_CHART_POINTS = 2000
MAX_TABLE_TRADES = 500
MAX_MARKERS_PER_CHART = 1000

_W, _LEFT, _RIGHT, _TOP, _BOTTOM = 960, 78, 16, 14, 30
_GREEN, _RED, _BLUE, _GREY = "#1a9850", "#d73027", "#2c7fb8", "#888"
_GAP_FILL = "#b0b0b0"
MAX_GAP_BANDS = 200  # gaps shaded per chart (every gap is listed in the JSON)
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1000px;color:#222;padding:0 12px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.88em}td,th{padding:3px 8px;border-bottom:1px solid #eee;
text-align:right}th{background:#f5f5f5}td.l,th.l{text-align:left}td.f{color:#777;text-align:left}
svg{width:100%;height:auto;background:#fff}svg text{font-size:11px;fill:#555}
.pos{color:#1a9850}.neg{color:#d73027}.note{color:#666;font-size:.88em}
"""


def _execution_table(execution: dict) -> str:
    """The parents' implementation shortfall added up (docs/execution.md): positive is a cost."""
    rows = "".join(
        f'<tr><td class="l">{_e(label)}</td><td>{_e(value)}</td></tr>'
        for label, value in execution_rows(execution)
    )
    return (
        '<p class="note">Against each parent\'s arrival price (the close it was decided at), '
        "weighted by paper value; positive is a cost.</p><table>" + rows + "</table>"
    )


def write_html_report(
    path: str | Path,
    *,
    title: str,
    metrics: dict,
    equity: pd.Series,
    trades: Sequence[Trade],
    prices: dict[str, pd.DataFrame] | pd.DataFrame,
    params: dict | None = None,
    notes: list[str] | None = None,
    strategies: dict[str, dict] | None = None,
    gaps: Sequence[Gap] = (),
    segments: Sequence[dict] | None = None,
    execution: dict | None = None,
) -> Path:
    """Write the report to `path` (parent directories are created) and return the path.

    `metrics` is the dict of `compute_metrics` (extra keys are shown too); `prices` maps a
    symbol to an OHLCV frame with a `close` column and a DatetimeIndex, or is one such frame
    when all trades share a symbol. `strategies` is `BacktestResult.strategies` (each
    strategy's own P&L); with more than one strategy the report gets a section comparing them.
    `gaps` (`BacktestResult.gaps`) are shaded on every chart and listed with the per-segment
    figures of backtest.gaps=segment (`segments`).
    """
    path = Path(path)
    x, y = _series_arrays(equity, "equity")
    price_frames = _price_frames(prices, trades)
    initial_cash = metrics.get("initial_cash")
    if not isinstance(initial_cash, int | float) or not initial_cash > 0:
        initial_cash = float(y[0])  # best available peak reference when the caller omitted it
    underwater = -100.0 * drawdown(y, float(initial_cash))

    body = [f"<h1>{_e(title)}</h1>"]
    if len(x):
        body.append(
            f'<p class="note">{len(x):,} bars from {_e(_fmt_time(x[0]))} to {_e(_fmt_time(x[-1]))} '
            f"(UTC). Charts show at most {MAX_CHART_POINTS:,} points per series: the minimum and "
            "maximum of each bucket of bars, so spikes survive.</p>"
        )
    bands = gap_bands(gaps)
    if bands:
        body.append(
            f'<p class="note gaps">The data has {len(gaps):,} gap{"s" * (len(gaps) != 1)} '
            "(shaded grey on the charts, with a dotted link between the bars on either side). "
            'See <a href="#gaps">Gaps</a>.</p>'
        )
    body += ["<h2>Metrics</h2>", _metrics_table(metrics)]
    body += [
        "<h2>Equity</h2>",
        _line_chart(x, y, height=280, label="equity", baseline=initial_cash, bands=bands),
    ]
    body += [
        "<h2>Drawdown (%)</h2>",
        _line_chart(
            x,
            underwater,
            height=200,
            label="drawdown",
            baseline=0.0,
            fill="#f4a582",
            bands=bands,
        ),
    ]
    for symbol, frame in price_frames.items():
        px, py = _series_arrays(frame["close"], f"prices[{symbol!r}].close")
        mine = [t for t in trades if t.symbol == symbol]
        body.append(f"<h2>Price: {_e(symbol)}</h2>")
        if len(mine) > MAX_MARKERS_PER_CHART:
            body.append(
                f'<p class="note">Markers for the first {MAX_MARKERS_PER_CHART:,} of '
                f"{len(mine):,} trades.</p>"
            )
        body.append(_line_chart(px, py, height=320, label=symbol, trades=mine, bands=bands))
    if strategies and len(strategies) > 1:
        body += ["<h2>Strategies</h2>", _strategies_section(strategies)]
    if execution:
        body += ["<h2>Execution (parent orders)</h2>", _execution_table(execution)]
    body += ["<h2>Trades</h2>", _trades_table(trades)]
    if params:
        body += ["<h2>Parameters</h2>", _params_table(params)]
    if notes:
        body += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"]
    if gaps:
        body += ['<h2 id="gaps">Gaps</h2>', _gaps_table(gaps)]
    if segments:
        body += ["<h2>Gap-free segments</h2>", _segments_table(segments)]
    # Raw numbers for machines (and for anyone who wants more digits than the table shows).
    data = {k: _json_safe(v) for k, v in metrics.items()}
    return write_page(path, title, body, json_id="metrics-json", data=data)


def write_page(path: Path, title: str, body: list[str], *, json_id: str, data: object) -> Path:
    """A self-contained page: the report's CSS, the body sections, and `data` embedded as JSON
    (escaped so no value can close the script tag) for tools that read the numbers back."""
    raw = json.dumps(data, indent=1, default=str)
    raw = raw.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    body = [*body, f'<script type="application/json" id="{json_id}">{raw}</script>']
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def downsample_minmax(
    x: np.ndarray, y: np.ndarray, max_points: int = MAX_CHART_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` points: the first, the last, and the min and max of each bucket.

    Keeping both extremes of every equal-sized bucket (in time order) preserves the global minimum
    and maximum and the visual envelope of the series, which averaging or striding would not.
    """
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4, got {max_points}")
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
    n = len(y)
    if n <= max_points:
        return x, y
    edges = np.linspace(1, n - 1, (max_points - 2) // 2 + 1).astype(np.int64)
    keep = [0]
    for start, stop in itertools.pairwise(edges):
        if stop <= start:
            continue
        segment = y[start:stop]
        lo, hi = start + int(segment.argmin()), start + int(segment.argmax())
        keep.extend((lo,) if lo == hi else (min(lo, hi), max(lo, hi)))
    keep.append(n - 1)
    index = np.asarray(keep, dtype=np.int64)
    return x[index], y[index]


def _series_arrays(series: pd.Series, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(int64 UTC ns timestamps, float64 values), non-finite values dropped, or a clear error."""
    if not isinstance(series, pd.Series):
        raise TypeError(f"{name} must be a pandas Series, got {type(series).__name__}")
    if not isinstance(series.index, pd.DatetimeIndex):
        raise TypeError(f"{name} must have a DatetimeIndex, got {type(series.index).__name__}")
    if len(series) == 0:
        raise ValueError(f"{name}: empty series, nothing to chart")
    x = series.index.as_unit("ns").asi8
    try:
        y = series.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: values must be numeric ({exc})") from exc
    finite = np.isfinite(y)
    if not finite.all():
        x, y = x[finite], y[finite]
        if len(y) == 0:
            raise ValueError(f"{name}: no finite values to chart")
    return x, y


def _price_frames(
    prices: dict[str, pd.DataFrame] | pd.DataFrame, trades: Sequence[Trade]
) -> dict[str, pd.DataFrame]:
    if isinstance(prices, pd.DataFrame):
        symbols = sorted({str(t.symbol) for t in trades})
        if len(symbols) > 1:
            raise ValueError(
                f"prices: one DataFrame given but the trades span symbols {symbols}; "
                "pass a dict symbol -> DataFrame"
            )
        prices = {symbols[0] if symbols else "price": prices}
    if not isinstance(prices, dict):
        raise TypeError(
            f"prices must be a DataFrame or a dict of them, got {type(prices).__name__}"
        )
    for symbol, frame in prices.items():
        if not isinstance(frame, pd.DataFrame) or "close" not in frame.columns:
            raise ValueError(f"prices[{symbol!r}]: expected a DataFrame with a 'close' column")
    return prices


def _line_chart(
    x: np.ndarray,
    y: np.ndarray,
    *,
    height: int,
    label: str,
    baseline: float | None = None,
    fill: str | None = None,
    trades: Sequence[Trade] = (),
    overlays: Sequence[tuple[str, np.ndarray, np.ndarray, str]] = (),
    bands: Sequence[tuple[int, int, str]] = (),
) -> str:
    """One SVG chart: a downsampled line, axes with ticks, optional baseline and trade markers.

    With `fill`, the area between the line and the baseline is shaded (the underwater chart).
    `overlays` are more (label, x, y, colour) series drawn on the same axes (e.g. a strategy next
    to its benchmarks); with any overlay the chart gets a legend, the main series named `label`.
    `bands` are (start ns, end ns, tooltip) spans shaded behind the line: the gaps in the data.
    """
    xs, ys = downsample_minmax(x, y)
    others = [(name, *downsample_minmax(ox, oy), colour) for name, ox, oy, colour in overlays]
    shown = [t for t in trades if x[0] <= t.entry_time.value <= x[-1]][:MAX_MARKERS_PER_CHART]
    extra = [t.entry_price for t in shown] + [
        t.exit_price for t in shown if t.exit_price is not None and t.exit_time is not None
    ]
    extra += [baseline] if baseline is not None else []
    extra += [float(v) for _, _, oy, _ in others for v in (oy.min(), oy.max())]
    y_lo, y_hi = float(min([ys.min(), *extra])), float(max([ys.max(), *extra]))
    if y_hi - y_lo <= 1e-12 * max(abs(y_hi), 1.0):
        y_lo, y_hi = y_lo - 1.0, y_hi + 1.0  # flat series: give it a visible band
    pad = 0.04 * (y_hi - y_lo)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_first = min([float(x[0]), *(float(ox[0]) for _, ox, _, _ in others)])
    x_last = max([float(x[-1]), *(float(ox[-1]) for _, ox, _, _ in others)])
    x_lo, x_hi = x_first, x_last if x_last > x_first else x_first + 1.0
    plot_w, plot_h = _W - _LEFT - _RIGHT, height - _TOP - _BOTTOM

    def px(v):  # type: ignore[no-untyped-def]  # works on floats and arrays alike
        return _LEFT + (np.asarray(v, dtype=float) - x_lo) / (x_hi - x_lo) * plot_w

    def py(v):  # type: ignore[no-untyped-def]
        return _TOP + (y_hi - np.asarray(v, dtype=float)) / (y_hi - y_lo) * plot_h

    parts = [
        f'<svg viewBox="0 0 {_W} {height}" role="img" aria-label="{_e(label)} chart">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#ccc"/>',
    ]
    for start, stop, tip in bands:
        if stop < x_lo or start > x_hi:
            continue
        left = float(px(max(start, x_lo)))
        width = max(float(px(min(stop, x_hi))) - left, 2.0)  # a short gap stays visible
        parts.append(
            f'<rect class="gap" x="{left:.1f}" y="{_TOP}" width="{width:.1f}" height="{plot_h}" '
            f'fill="{_GAP_FILL}" fill-opacity="0.35"><title>{_e(tip)}</title></rect>'
        )
    for tick in _nice_ticks(y_lo, y_hi):
        ty = float(py(tick))
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#eee"/>'
            f'<text x="{_LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{_e(_fmt_tick(tick))}</text>'
        )
    span_days = (x_hi - x_lo) / 86_400e9
    fmt = "%Y-%m-%d" if span_days > 3 else "%m-%d %H:%M"
    for k in range(6):
        tx = x_lo + k * (x_hi - x_lo) / 5
        anchor = "start" if k == 0 else "end" if k == 5 else "middle"
        stamp = pd.Timestamp(int(tx), tz="UTC").strftime(fmt)
        parts.append(
            f'<text x="{float(px(tx)):.1f}" y="{height - 10}" text-anchor="{anchor}">'
            f"{_e(stamp)}</text>"
        )
    if baseline is not None:
        by = float(py(baseline))
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{by:.1f}" y2="{by:.1f}" '
            f'stroke="{_GREY}" stroke-dasharray="4 3"/>'
        )
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(xs), py(ys), strict=True))
    if fill is not None and baseline is not None:
        by = float(py(baseline))
        parts.append(
            f'<polygon class="area" fill="{fill}" fill-opacity="0.5" points="{points} '
            f'{float(px(xs[-1])):.1f},{by:.1f} {float(px(xs[0])):.1f},{by:.1f}"/>'
        )
    sx, sy = px(xs), py(ys)
    breaks = _gap_breaks(xs, bands)
    for first, stop in itertools.pairwise([0, *breaks, len(xs)]):
        piece = " ".join(
            f"{a:.1f},{b:.1f}" for a, b in zip(sx[first:stop], sy[first:stop], strict=True)
        )
        parts.append(
            f'<polyline class="series" fill="none" stroke="{_BLUE}" stroke-width="1.2" '
            f'points="{piece}"/>'
        )
    for k in breaks:  # across a gap: a dashed grey link, not a line through unseen prices
        parts.append(
            f'<line class="gap-link" x1="{sx[k - 1]:.1f}" y1="{sy[k - 1]:.1f}" x2="{sx[k]:.1f}" '
            f'y2="{sy[k]:.1f}" stroke="{_GREY}" stroke-width="1" stroke-dasharray="2 3"/>'
        )
    for name, ox, oy, colour in others:
        line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(ox), py(oy), strict=True))
        parts.append(
            f'<polyline class="series overlay" fill="none" stroke="{colour}" stroke-width="1.2" '
            f'points="{line}"><title>{_e(name)}</title></polyline>'
        )
    if others:
        legend = [(label, _BLUE), *((name, colour) for name, _, _, colour in others)]
        for k, (name, colour) in enumerate(legend):
            ly = _TOP + 14 + 15 * k
            parts.append(
                f'<line x1="{_LEFT + 10}" x2="{_LEFT + 30}" y1="{ly - 4}" y2="{ly - 4}" '
                f'stroke="{colour}" stroke-width="2"/><text x="{_LEFT + 36}" y="{ly}">'
                f"{_e(name)}</text>"
            )
    parts += [_trade_marker(t, px, py) for t in shown]
    parts.append("</svg>")
    return "\n".join(parts)


def _gap_breaks(xs: np.ndarray, bands: Sequence[tuple[int, int, str]]) -> list[int]:
    """Positions k where the points xs[k - 1] and xs[k] lie on either side of a band (a gap)."""
    if not bands or len(xs) < 2:
        return []
    starts = np.array([b[0] for b in bands], dtype=np.int64)
    ends = np.array([b[1] for b in bands], dtype=np.int64)
    k = np.searchsorted(xs, starts, side="right")  # first point after each band's start
    ok = (k > 0) & (k < len(xs))
    ok[ok] = xs[k[ok]] >= ends[ok]
    return sorted(set(k[ok].tolist()))


def gap_bands(gaps: Sequence[Gap]) -> list[tuple[int, int, str]]:
    """(start ns, end ns, tooltip) of each gap, from the last bar before it to the first bar
    after it; at most MAX_GAP_BANDS, the longest ones."""
    shown = sorted(gaps, key=lambda g: g.seconds, reverse=True)[:MAX_GAP_BANDS]
    return [
        (int(g.before.value), int(g.after.value), f"gap: {g.describe()}")
        for g in sorted(shown, key=lambda g: g.bar)
    ]


def _gaps_table(gaps: Sequence[Gap]) -> str:
    rows = [
        '<table><tr><th class="l">first missing bar</th><th class="l">last missing bar</th>'
        "<th>missing bars</th><th>length</th></tr>"
    ]
    for g in gaps[:MAX_TABLE_TRADES]:
        rows.append(
            f'<tr><td class="l">{_e(_fmt_time(g.start.value))}</td>'
            f'<td class="l">{_e(_fmt_time(g.end.value))}</td><td>{g.missing_bars:,}</td>'
            f"<td>{_e(_fmt_duration(g.seconds))}</td></tr>"
        )
    return "\n".join([*rows, "</table>"])


def _segments_table(segments: Sequence[dict]) -> str:
    from n1v1.backtest.gaps import SEGMENT_KEYS

    head = "".join(f"<th>{_e(METRICS[k].label)}</th>" for k in SEGMENT_KEYS)
    columns = '<th>#</th><th class="l">start</th><th class="l">end</th><th>bars</th>'
    rows = [f"<table><tr>{columns}{head}</tr>"]
    for seg in segments:
        cells = "".join(
            f"<td>{_e(_fmt_metric(METRICS[k].unit, seg.get(k)))}</td>" for k in SEGMENT_KEYS
        )
        start, end = (pd.Timestamp(seg[k]).value for k in ("start", "end"))
        rows.append(
            f'<tr><td>{seg["segment"]}</td><td class="l">{_e(_fmt_time(start))}</td>'
            f'<td class="l">{_e(_fmt_time(end))}</td><td>{seg["n_bars"]:,}</td>{cells}</tr>'
        )
    return "\n".join([*rows, "</table>"])


def _trade_marker(trade: Trade, px: _Mapper, py: _Mapper) -> str:
    """Entry triangle (long ▲ green, short ▼ red), exit circle and a dashed link between them."""
    long = trade.side is Side.BUY
    ex, ey = float(px(trade.entry_time.value)), float(py(trade.entry_price))
    side = "long" if long else "short"
    tip = (
        f"{side} entry {_fmt_time(trade.entry_time.value)} @ {trade.entry_price:,.6g} "
        f"qty {trade.qty:g}"
    )
    shape = (
        f"{ex:.1f},{ey - 7:.1f} {ex - 6:.1f},{ey + 4:.1f} {ex + 6:.1f},{ey + 4:.1f}"
        if long
        else f"{ex:.1f},{ey + 7:.1f} {ex - 6:.1f},{ey - 4:.1f} {ex + 6:.1f},{ey - 4:.1f}"
    )
    out = (
        f'<polygon class="marker entry-{side}" points="{shape}" '
        f'fill="{_GREEN if long else _RED}"><title>{_e(tip)}</title></polygon>'
    )
    if trade.exit_time is not None and trade.exit_price is not None:
        xx, xy = float(px(trade.exit_time.value)), float(py(trade.exit_price))
        colour = _GREEN if trade.pnl > 0 else _RED if trade.pnl < 0 else _GREY
        tip = (
            f"exit {side} {_fmt_time(trade.exit_time.value)} @ {trade.exit_price:,.6g} "
            f"pnl {trade.pnl:,.2f} {trade.exit_reason}"
        )
        out += (
            f'<line x1="{ex:.1f}" y1="{ey:.1f}" x2="{xx:.1f}" y2="{xy:.1f}" stroke="{colour}" '
            'stroke-dasharray="3 2"/>'
            f'<circle class="marker exit" cx="{xx:.1f}" cy="{xy:.1f}" r="4" fill="#fff" '
            f'stroke="{colour}" stroke-width="2"><title>{_e(tip.strip())}</title></circle>'
        )
    return out


def _metrics_table(metrics: dict) -> str:
    rows = ['<table><tr><th class="l">Metric</th><th>Value</th><th class="l">Formula</th></tr>']
    for key, value in metrics.items():
        info = METRICS.get(key)
        label = info.label if info else key
        formula = info.formula if info else ""
        rows.append(
            f'<tr id="metric-{_e(key)}" title="{_e(formula)}"><td class="l">{_e(label)}</td>'
            f"<td>{_e(_fmt_metric(info.unit if info else '', value))}</td>"
            f'<td class="f">{_e(formula)}</td></tr>'
        )
    return "\n".join([*rows, "</table>"])


def _trades_table(trades: Sequence[Trade]) -> str:
    if not trades:
        return '<p class="note">No trades.</p>'
    head = ""
    if len(trades) > MAX_TABLE_TRADES:
        head = (
            f'<p class="note">Showing the first {MAX_TABLE_TRADES:,} of {len(trades):,} trades.</p>'
        )
    cols = (
        "# symbol side qty entry&nbsp;time entry exit&nbsp;time exit pnl fees bars duration reason"
    )
    rows = [head, "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols.split()) + "</tr>"]
    for i, t in enumerate(trades[:MAX_TABLE_TRADES], start=1):
        pnl_class = "pos" if t.pnl > 0 else "neg" if t.pnl < 0 else ""
        exit_time = _fmt_time(t.exit_time.value) if t.exit_time is not None else "open"
        exit_price = f"{t.exit_price:,.6g}" if t.exit_price is not None else ""
        qty = f"{t.qty:,.6g}"
        if t.exit_time is None and 0.0 < t.open_qty != t.qty:  # partly exited: what is left
            qty += f" ({t.open_qty:,.6g} open)"
        cells = [
            str(i),
            _e(t.symbol),
            "long" if t.side is Side.BUY else "short",
            qty,
            _e(_fmt_time(t.entry_time.value)),
            f"{t.entry_price:,.6g}",
            _e(exit_time),
            exit_price,
            f'<span class="{pnl_class}">{t.pnl:,.2f}</span>',
            f"{t.fees:,.2f}",
            str(t.bars_held),
            _e(_fmt_duration((t.exit_time - t.entry_time).total_seconds()))
            if t.exit_time is not None
            else "",
            _e(t.exit_reason),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join([*rows, "</table>"])


# Columns of the strategies table: metric key (compute_metrics) and heading.
_STRATEGY_COLUMNS = (
    ("final_equity", "final equity"),
    ("total_return", "return"),
    ("sharpe", "Sharpe"),
    ("max_drawdown", "max drawdown"),
    ("n_trades", "trades"),
    ("win_rate", "win rate"),
    ("fees_paid", "fees"),
)


def _strategies_section(strategies: dict[str, dict]) -> str:
    """Each strategy's own P&L, from its shadow account, with the rule that defines it."""
    note = (
        '<p class="note">The account trades the sign of the strategies\' summed targets per '
        "symbol, so their positions net out. Each row is a strategy's shadow account: the same "
        "settings, cash and bars with that strategy alone, filled by the same rules at the same "
        'bars\' prices (docs/execution.md, "Several strategies on one symbol"). They need not add '
        "up to the account: alone, a strategy's sizes, fees and stops differ.</p>"
    )
    head = '<tr><th class="l">strategy</th>' + "".join(
        f"<th>{_e(label)}</th>" for _, label in _STRATEGY_COLUMNS
    )
    rows = [note, '<table id="strategies">' + head + "</tr>"]
    for name, entry in strategies.items():
        metrics = entry.get("metrics", {})
        cells = []
        for key, _ in _STRATEGY_COLUMNS:
            info = METRICS.get(key)
            cells.append(f"<td>{_e(_fmt_metric(info.unit if info else '', metrics.get(key)))}</td>")
        rows.append(
            f'<tr id="strategy-{_e(name)}"><td class="l">{_e(name)}</td>{"".join(cells)}</tr>'
        )
    return "\n".join([*rows, "</table>"])


def _params_table(params: dict) -> str:
    rows = ['<table><tr><th class="l">Parameter</th><th class="l">Value</th></tr>']
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(_json_safe(value), default=str)
        rows.append(f'<tr><td class="l">{_e(key)}</td><td class="l">{_e(text)}</td></tr>')
    return "\n".join([*rows, "</table>"])


def _fmt_metric(unit: str, value: object) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if unit == "fraction":
        return f"{value * 100:,.2f}%"
    if unit == "ratio":
        return f"{value:,.3f}"
    if unit in ("currency", "number"):
        return f"{value:,.2f}"
    if unit == "bars":
        return f"{int(value):,} bars"
    if unit == "seconds":
        return _fmt_duration(float(value))
    return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"


def _fmt_duration(seconds: float) -> str:
    """'3 d 4 h', '5 h 30 min', '45 s': the two largest units, enough to judge a drawdown."""
    rest = round(seconds)
    days, rest = divmod(rest, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    first = next((i for i, (amount, _) in enumerate(units) if amount), len(units) - 1)
    shown = [f"{amount} {name}" for amount, name in units[first : first + 2] if amount]
    return " ".join(shown) or "0 s"


def _fmt_time(ns: int | float) -> str:
    return pd.Timestamp(int(ns), tz="UTC").strftime("%Y-%m-%d %H:%M")


def _fmt_tick(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.4g}"


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 × 10^k steps) inside [lo, hi]."""
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(count + 2) if first + k * step <= hi]


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
