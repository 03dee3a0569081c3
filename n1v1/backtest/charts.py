"""The charts of the HTML reports (backtest, walk-forward, model evaluation): one home for them.

A report is one file that must open anywhere, offline (an air-gapped laptop, a CI artefact, an
e-mail attachment), so it carries its charts whole: each chart is a JSON spec built here, drawn in
the browser by the TradingView Lightweight Charts library the dashboard uses (vendored with its
licence in n1v1/serve/static/lightweight-charts, inlined into the page) and by
`report_charts.js`, which turns specs into charts and gives each chart its controls (zoom with the
wheel or a drag, "Fit" to see everything again, log scale where it means something).

A report must also stay small on years of minute bars: a line keeps at most `MAX_CHART_POINTS`
points, the minimum and maximum of each bucket of bars (a crash or a spike is never averaged away);
candles are merged into at most as many buckets (open of the first bar, high and low over the
bucket, close of the last); markers are capped (the page says so when it cuts).

Gaps in the data break the lines (no segment is drawn through prices nobody saw) and are marked on
the first bar after each one.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from n1v1.data.gaps import Gap
from n1v1.domain import Side, Trade

MAX_CHART_POINTS = 2000
MAX_MARKERS_PER_CHART = 1000
MAX_GAP_MARKS = 200  # gaps marked per chart, the longest ones (every gap is listed in a table)
MARKER_TEXT_UP_TO = 12  # trades or gaps: above this many, markers carry no text (tables have it)

GREEN, RED, BLUE, GREY, ORANGE, PURPLE = (
    "#1a7f43",
    "#c0392b",
    "#2463b5",
    "#6b6b6b",
    "#d9730d",
    "#7b4fa0",
)
GAP_COLOUR = "#8a8a8a"

_LIBRARY = "static/lightweight-charts/lightweight-charts.standalone.production.js"


@dataclass
class Chart:
    """One chart of a report. `kind` "time": x is a UTC time (seconds); "numeric": x is a number
    (a probability, an amount), whose points the library spaces evenly by rank, so a numeric
    chart's x values must be evenly spaced for the picture to be true. `log` offers a log-scale
    switch (only where every value is positive: equity, prices). `unit` formats the y axis:
    "currency", "percent", "price", "count", "probability", "number"."""

    id: str
    label: str  # what the chart shows, for screen readers and the legend
    kind: str = "time"
    height: int = 300
    unit: str = "number"
    log: bool = False
    series: list[dict[str, Any]] = field(default_factory=list)
    markers: list[dict[str, Any]] = field(default_factory=list)
    x_precision: int = 2  # decimals of a numeric chart's x labels

    def add(
        self,
        name: str,
        data: list[list[Any]],
        *,
        type: str = "line",
        colour: str = BLUE,
        **options: Any,
    ) -> int:
        """Add a series (`data`: [x, y] rows, y None for a break; candles [x, o, h, l, c];
        histogram [x, y, colour or None]); its index, for markers. `options`: dashed, points
        (draw each point), width, scale ("volume": its own strip at the bottom), base (a
        baseline series' base value), precision (decimals of the y values)."""
        self.series.append({"name": name, "type": type, "colour": colour, "data": data, **options})
        return len(self.series) - 1

    def mark(
        self,
        series: int,
        x: float,
        *,
        kind: str,
        shape: str,
        position: str,
        colour: str,
        text: str = "",
    ) -> None:
        """A marker on `series` at `x` (a time the series has). `kind` names what it marks
        (entry-long, exit, gap, window...) for readers of the spec."""
        self.markers.append(
            {
                "series": series,
                "x": x,
                "kind": kind,
                "shape": shape,
                "position": position,
                "colour": colour,
                "text": text,
            }
        )

    def spec(self) -> dict[str, Any]:
        markers = sorted(self.markers, key=lambda m: (m["series"], m["x"]))
        return {
            "id": self.id,
            "label": self.label,
            "kind": self.kind,
            "height": self.height,
            "unit": self.unit,
            "log": self.log,
            "x_precision": self.x_precision,
            "series": self.series,
            "markers": markers,
        }


# -- series data -----------------------------------------------------------------------------------
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


def series_arrays(series: pd.Series, name: str) -> tuple[np.ndarray, np.ndarray]:
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


def _seconds(ns: np.ndarray) -> np.ndarray:
    return np.asarray(ns, dtype=np.int64) // 1_000_000_000


def line_points(x_ns: np.ndarray, y: np.ndarray, gaps: Sequence[Gap] = ()) -> list[list[Any]]:
    """A line's [time s, value] rows: downsampled, one row per second (the chart's resolution:
    the last value of a second), and a [time, None] break inside each gap the kept points span."""
    xs, ys = downsample_minmax(x_ns, y)
    seconds = _seconds(xs)
    last = np.r_[seconds[1:] != seconds[:-1], True]  # the last row of each second
    seconds, ys = seconds[last], ys[last]
    rows: list[list[Any]] = [[int(t), float(v)] for t, v in zip(seconds, ys, strict=True)]
    breaks = []
    for gap in gaps:
        before, after = (
            int(gap.before.value // 1_000_000_000),
            int(gap.after.value // 1_000_000_000),
        )
        k = int(np.searchsorted(seconds, before, side="right"))  # first kept point after `before`
        if 0 < k < len(seconds) and seconds[k] >= after and after - before >= 2:
            breaks.append([(before + after) // 2, None])
    if breaks:
        rows = sorted([*rows, *breaks], key=lambda r: r[0])
    return rows


def candle_points(
    frame: pd.DataFrame, max_points: int = MAX_CHART_POINTS
) -> tuple[list[list[Any]], list[list[Any]]]:
    """([time s, open, high, low, close], [time s, volume, colour]) of `frame` (an OHLCV frame
    with a DatetimeIndex), merged into at most `max_points` buckets of consecutive bars: a
    bucket's open is its first bar's, its high and low the extremes over it, its close its last
    bar's, its volume the sum, its time its first bar's."""
    if not {"open", "high", "low", "close"} <= set(frame.columns):
        raise ValueError("candles need open, high, low and close columns")
    data = frame[["open", "high", "low", "close"]].to_numpy(dtype=np.float64)
    volume = frame["volume"].to_numpy(dtype=np.float64) if "volume" in frame.columns else None
    times = _seconds(frame.index.as_unit("ns").asi8)
    ok = np.isfinite(data).all(axis=1)
    data, times = data[ok], times[ok]
    volume = None if volume is None else volume[ok]
    n = len(times)
    size = max(1, math.ceil(n / max_points))
    starts = np.arange(0, n, size)
    if size > 1:
        opens = data[starts, 0]
        highs = np.maximum.reduceat(data[:, 1], starts)
        lows = np.minimum.reduceat(data[:, 2], starts)
        closes = data[np.r_[starts[1:] - 1, n - 1], 3]
        data = np.column_stack([opens, highs, lows, closes])
        volume = None if volume is None else np.add.reduceat(volume, starts)
        times = times[starts]
    candles = [[int(t), *(float(v) for v in row)] for t, row in zip(times, data, strict=True)]
    volumes = []
    if volume is not None:
        for t, v, row in zip(times, volume, data, strict=True):
            colour = "rgba(26,127,67,0.35)" if row[3] >= row[0] else "rgba(192,57,43,0.35)"
            volumes.append([int(t), float(v) if math.isfinite(v) else 0.0, colour])
    return candles, volumes


def snap(times: np.ndarray, t_ns: int) -> int | None:
    """The chart time (s) of the point or bucket holding `t_ns`: a marker must sit on a time its
    series has. None when `t_ns` is before the first."""
    k = int(np.searchsorted(times, t_ns // 1_000_000_000, side="right")) - 1
    return None if k < 0 else int(times[k])


def precision_of(values: Iterable[float]) -> int:
    """Decimals that show a price series' moves: 2 for BTC at 30,000, 6 for a coin at 0.0012."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return 2
    typical = float(np.median(finite))
    return int(min(8, max(2, 4 - math.floor(math.log10(typical)))))


# -- what charts show ------------------------------------------------------------------------------
def mark_trades(chart: Chart, series: int, times: np.ndarray, trades: Sequence[Trade]) -> int:
    """Entry arrows (long up and green below the bar, short down and red above it) and exit
    circles coloured by the trade's P&L, on the chart times holding them; the number of trades
    marked (at most MAX_MARKERS_PER_CHART)."""
    shown = list(trades)[:MAX_MARKERS_PER_CHART]
    with_text = len(shown) <= MARKER_TEXT_UP_TO
    for trade in shown:
        long = trade.side is Side.BUY
        at = snap(times, trade.entry_time.value)
        if at is not None:
            chart.mark(
                series,
                at,
                kind="entry-long" if long else "entry-short",
                shape="arrowUp" if long else "arrowDown",
                position="belowBar" if long else "aboveBar",
                colour=GREEN if long else RED,
            )
        if trade.exit_time is not None and trade.exit_price is not None:
            out = snap(times, trade.exit_time.value)
            if out is not None:
                colour = GREEN if trade.pnl > 0 else RED if trade.pnl < 0 else GREY
                chart.mark(
                    series,
                    out,
                    kind="exit",
                    shape="circle",
                    position="aboveBar" if long else "belowBar",
                    colour=colour,
                    text=f"{trade.exit_reason} {trade.pnl:+,.2f}" if with_text else "",
                )
    return len(shown)


def mark_gaps(chart: Chart, series: int, times: np.ndarray, gaps: Sequence[Gap]) -> None:
    """A grey square on the first bar after each gap (the longest MAX_GAP_MARKS)."""
    longest = sorted(gaps, key=lambda g: g.seconds, reverse=True)[:MAX_GAP_MARKS]
    for gap in longest:
        at = snap(times, gap.after.value)
        if at is not None:
            chart.mark(
                series,
                at,
                kind="gap",
                shape="square",
                position="inBar",
                colour=GAP_COLOUR,
                text="gap" if len(longest) <= MARKER_TEXT_UP_TO else "",
            )


def point_times(points: list[list[Any]]) -> np.ndarray:
    """The times of a series' points that carry a value (breaks left out), for `snap`."""
    return np.asarray([p[0] for p in points if p[1] is not None], dtype=np.int64)


def histogram_bins(values: Sequence[float], bins: int = 30) -> list[dict[str, float]]:
    """Equal-width bins over [min, max] (numpy's rule: the last bin includes its right edge),
    with a bin edge at 0 when the values straddle it, so no bin mixes wins and losses; each
    {lower, upper, centre, count}."""
    data = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if len(data) == 0:
        return []
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return [{"lower": lo, "upper": hi, "centre": lo, "count": len(data)}]
    width = (hi - lo) / bins
    if lo < 0 < hi:  # align the edges on 0
        below = math.ceil(-lo / width)
        above = math.ceil(hi / width)
        edges = np.arange(-below, above + 1) * width
    else:
        edges = np.linspace(lo, hi, bins + 1)
    counts, edges = np.histogram(data, bins=edges)
    return [
        {
            "lower": float(a),
            "upper": float(b),
            "centre": float((a + b) / 2),
            "count": int(c),
        }
        for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
    ]


# -- the page --------------------------------------------------------------------------------------
def chart_html(chart: Chart, caption: str = "") -> str:
    """The chart's place in the page: its controls, the canvas box and a legend of its series."""
    legend = "".join(
        f'<li><span class="swatch" style="background:{_e(s["colour"])}"></span>{_e(s["name"])}</li>'
        for s in chart.series
        if s.get("scale") != "volume"
    )
    tools = (
        f'<button type="button" class="fit" aria-controls="chart-{_e(chart.id)}-canvas">'
        "Fit</button>"
    )
    if chart.log:
        tools += (
            f'<label><input type="checkbox" class="log" aria-controls="chart-{_e(chart.id)}'
            '-canvas"> Log scale</label>'
        )
    note = f'<figcaption class="note">{caption}</figcaption>' if caption else ""
    return (
        f'<figure class="chart" id="chart-{_e(chart.id)}"><div class="chart-tools">{tools}'
        f'<ul class="legend">{legend}</ul></div>'
        f'<div class="chart-canvas" id="chart-{_e(chart.id)}-canvas" role="img" '
        f'aria-label="{_e(chart.label)}"></div>{note}</figure>'
    )


CHART_CSS = """
figure.chart{margin:8px 0 18px}.chart-canvas{width:100%;position:relative}
.chart-tools{display:flex;gap:12px;align-items:center;font-size:.85em;margin-bottom:4px}
.chart-tools button{font:inherit;padding:2px 10px}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:12px;margin:0;padding:0;color:#333}
.swatch{display:inline-block;width:14px;height:4px;margin-right:5px;vertical-align:middle}
.no-script{color:#a00}
"""


def chart_scripts(charts: Sequence[Chart]) -> list[str]:
    """The scripts that draw `charts`: their specs as JSON (escaped so no value can close the
    script tag), the charting library and the renderer, all inline."""
    if not charts:
        return []
    raw = json.dumps([c.spec() for c in charts], separators=(",", ":"), allow_nan=False)
    raw = raw.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    library = resources.files("n1v1.serve").joinpath(_LIBRARY).read_text(encoding="utf-8")
    renderer = resources.files("n1v1.backtest").joinpath("report_charts.js").read_text("utf-8")
    return [
        f'<script type="application/json" id="n1v1-charts">{raw}</script>',
        f"<script>{_inline(library)}</script>",
        f"<script>{_inline(renderer)}</script>",
    ]


def _inline(script: str) -> str:
    """A script safe to put between <script> tags: a literal "</script" inside would end it."""
    return script.replace("</script", "<\\/script")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
