"""A self-contained HTML report of one backtest: metrics, equity against buy-and-hold, drawdown,
monthly returns, prices with the trades, the trades' P&L distribution, the trades.

The file must open anywhere (an air-gapped laptop, a CI artifact, an e-mail attachment), so it
embeds everything: inline CSS, the charting library and the charts' data (n1v1/backtest/charts.py,
which keeps them small on years of minute bars), no CDN. The trades table is capped (the page says
so when it cuts); the numbers are also embedded as JSON for tools that read them back.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from n1v1.backtest.charts import (
    BLUE,
    CHART_CSS,
    GREEN,
    GREY,
    MAX_CHART_POINTS,
    MAX_MARKERS_PER_CHART,
    RED,
    Chart,
    candle_points,
    chart_html,
    chart_scripts,
    histogram_bins,
    line_points,
    mark_gaps,
    mark_trades,
    point_times,
    precision_of,
    series_arrays,
)
from n1v1.backtest.metrics import METRICS, buy_and_hold_curve, drawdown, monthly_returns
from n1v1.data.gaps import Gap
from n1v1.domain import Side, Trade
from n1v1.execution.shortfall import execution_rows

if TYPE_CHECKING:
    from n1v1.backtest.runner import BacktestResult

MAX_TABLE_TRADES = 500
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1000px;color:#222;padding:0 12px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.88em}td,th{padding:3px 8px;border-bottom:1px solid #eee;
text-align:right}th{background:#f5f5f5}td.l,th.l{text-align:left}td.f{color:#555;text-align:left}
.pos{color:#1a7f43}.neg{color:#c0392b}.note{color:#555;font-size:.88em}
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
    `gaps` (`BacktestResult.gaps`) break the charts' lines and are marked on them, and listed
    with the per-segment figures of backtest.gaps=segment (`segments`).
    """
    path = Path(path)
    x, y = series_arrays(equity, "equity")
    price_frames = _price_frames(prices, trades)
    initial_cash = metrics.get("initial_cash")
    if not isinstance(initial_cash, int | float) or not initial_cash > 0:
        initial_cash = float(y[0])  # best available peak reference when the caller omitted it
    charts: list[Chart] = []

    body = [f"<h1>{_e(title)}</h1>"]
    if len(x):
        body.append(
            f'<p class="note">{len(x):,} bars from {_e(_fmt_time(x[0]))} to {_e(_fmt_time(x[-1]))} '
            f"(UTC). Charts show at most {MAX_CHART_POINTS:,} points per series: the minimum and "
            "maximum of each bucket of bars (candles: each bucket's open, high, low and close), so "
            "spikes survive. Zoom with the mouse wheel or a pinch, drag to pan, Fit to see it all."
            "</p>"
        )
    if gaps:
        body.append(
            f'<p class="note gaps">The data has {len(gaps):,} gap{"s" * (len(gaps) != 1)} '
            "(the lines break there, and a grey square marks the first bar after each). "
            'See <a href="#gaps">Gaps</a>.</p>'
        )
    body += ["<h2>Metrics</h2>", _metrics_table(metrics)]
    equity_chart = _equity_chart(x, y, float(initial_cash), price_frames, gaps)
    underwater = _drawdown_chart(x, y, float(initial_cash), gaps)
    charts += [equity_chart, underwater]
    benchmark = (
        " against buy-and-hold of the traded symbols (equal cash each at its first close, no fees)"
        if len(equity_chart.series) > 1
        else ""
    )
    body += [f"<h2>Equity{benchmark}</h2>", chart_html(equity_chart)]
    body += ["<h2>Drawdown (%)</h2>", chart_html(underwater)]
    body += ["<h2>Monthly returns</h2>", _monthly_table(equity, float(initial_cash))]
    for k, (symbol, frame) in enumerate(price_frames.items()):
        mine = [t for t in trades if t.symbol == symbol]
        chart = _price_chart(f"price-{k}", symbol, frame, mine, gaps)
        charts.append(chart)
        body.append(f"<h2>Price: {_e(symbol)}</h2>")
        if len(mine) > MAX_MARKERS_PER_CHART:
            body.append(
                f'<p class="note">Markers for the first {MAX_MARKERS_PER_CHART:,} of '
                f"{len(mine):,} trades.</p>"
            )
        body.append(chart_html(chart))
    closed = [t for t in trades if t.exit_time is not None]
    if closed:
        distribution = _pnl_distribution(closed)
        charts.append(distribution)
        body += [
            "<h2>Trade P&amp;L distribution</h2>",
            chart_html(distribution, _pnl_caption(closed)),
        ]
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
    return write_page(path, title, body, json_id="metrics-json", data=data, charts=charts)


def write_result_report(
    path: str | Path, result: BacktestResult, bars: pd.DataFrame, *, title: str, cost_note: str
) -> Path:
    """The report of one `run_backtest` result over the `bars` it ran on: what `n1v1 backtest
    --report` writes and what a backtest requested over HTTP stores. `cost_note` says what the
    fills cost (n1v1.cli.common.cost_line)."""
    return write_html_report(
        path,
        title=title,
        metrics=result.metrics,
        equity=result.equity,
        trades=result.trades,
        prices=bars,
        params=result.params,
        notes=[cost_note, *result.notes],
        strategies=result.strategies,
        gaps=result.gaps,
        segments=result.segments,
        execution=result.execution,
    )


def write_page(
    path: Path,
    title: str,
    body: list[str],
    *,
    json_id: str,
    data: object,
    charts: Sequence[Chart] = (),
) -> Path:
    """A self-contained page: the report's CSS, the body sections, `data` embedded as JSON
    (escaped so no value can close the script tag) for tools that read the numbers back, and
    what draws `charts` (n1v1/backtest/charts.py)."""
    raw = json.dumps(data, indent=1, default=str)
    raw = raw.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    body = [*body, f'<script type="application/json" id="{json_id}">{raw}</script>']
    if charts:
        body.append(
            '<p class="note">Charts drawn with TradingView Lightweight Charts '
            "(https://www.tradingview.com/, Apache License 2.0), embedded in this file.</p>"
            "<noscript><p>The charts need JavaScript; every number is in the tables.</p>"
            "</noscript>"
        )
        body += chart_scripts(charts)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}{CHART_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


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
        if not isinstance(frame.index, pd.DatetimeIndex):
            raise TypeError(f"prices[{symbol!r}] must have a DatetimeIndex")
    return prices


# -- charts ----------------------------------------------------------------------------------------
def _equity_chart(
    x: np.ndarray,
    y: np.ndarray,
    initial_cash: float,
    prices: dict[str, pd.DataFrame],
    gaps: Sequence[Gap],
) -> Chart:
    """Equity, the start's cash as a dashed line, and buy-and-hold of the symbols on the same
    bars; log scale offered while every value is positive."""
    chart = Chart("equity", "Equity chart", unit="currency", height=320)
    points = line_points(x, y, gaps)
    main = chart.add("equity", points, colour=BLUE, base=initial_cash)
    index = pd.DatetimeIndex(pd.to_datetime(x, utc=True))
    positive = bool((y > 0).all())
    if prices:
        closes = pd.DataFrame(
            {s: f["close"].astype(np.float64) for s, f in prices.items()}
        ).sort_index()
        if closes.index.tz is None:
            closes.index = closes.index.tz_localize("UTC")
        closes = closes.reindex(closes.index.union(index)).ffill().reindex(index)
        hold = buy_and_hold_curve(closes, initial_cash)
        hx, hy = series_arrays(hold, "buy-and-hold")
        if len(hy):
            chart.add("buy and hold", line_points(hx, hy, gaps), colour=GREY, width=1)
            positive = positive and bool((hy > 0).all())
    chart.log = positive
    mark_gaps(chart, main, point_times(points), gaps)
    return chart


def _drawdown_chart(
    x: np.ndarray, y: np.ndarray, initial_cash: float, gaps: Sequence[Gap]
) -> Chart:
    """How far below its running peak (which includes the initial cash) the equity is, in %."""
    chart = Chart("drawdown", "Drawdown chart", unit="percent", height=200)
    under = -100.0 * drawdown(y, initial_cash)
    chart.add("drawdown", line_points(x, under, gaps), type="baseline", colour=RED, base=0.0)
    return chart


def _price_chart(
    chart_id: str, symbol: str, frame: pd.DataFrame, trades: Sequence[Trade], gaps: Sequence[Gap]
) -> Chart:
    """Candles (a close line when the frame has only closes) with volume, the trades' entries
    and exits, and the gaps."""
    chart = Chart(chart_id, f"{symbol} price chart", unit="price", height=360)
    closes = frame["close"].astype(np.float64)
    chart.log = bool((closes.dropna() > 0).all())
    precision = precision_of(closes.iloc[:: max(1, len(closes) // 1000)])
    if {"open", "high", "low"} <= set(frame.columns):
        candles, volumes = candle_points(frame)
        main = chart.add(symbol, candles, type="candles", colour=BLUE, precision=precision)
        if volumes:
            chart.add("volume", volumes, type="histogram", colour=GREY, scale="volume")
        times = np.asarray([c[0] for c in candles], dtype=np.int64)
    else:
        px, py = series_arrays(closes, f"prices[{symbol!r}].close")
        points = line_points(px, py, gaps)
        main = chart.add(symbol, points, colour=BLUE, precision=precision)
        times = point_times(points)
    mark_trades(chart, main, times, trades)
    mark_gaps(chart, main, times, gaps)
    return chart


def _pnl_distribution(closed: Sequence[Trade]) -> Chart:
    """How many closed trades made or lost how much (net of fees), in bins of equal width."""
    chart = Chart(
        "pnl-distribution",
        "Histogram of closed trades' profit and loss",
        kind="numeric",
        unit="count",
        height=240,
        x_precision=2,
    )
    bins = histogram_bins([t.pnl for t in closed])
    rows = [
        [b["centre"], b["count"], GREEN if b["centre"] > 0 else RED if b["centre"] < 0 else GREY]
        for b in bins
    ]
    chart.add("closed trades", rows, type="histogram", colour=GREY)
    return chart


def _pnl_caption(closed: Sequence[Trade]) -> str:
    pnls = np.array([t.pnl for t in closed], dtype=np.float64)
    wins, losses = int((pnls > 0).sum()), int((pnls < 0).sum())
    return _e(
        f"{len(pnls):,} closed trades, net of fees: {wins:,} won, {losses:,} lost; median "
        f"{float(np.median(pnls)):,.2f}, from {pnls.min():,.2f} to {pnls.max():,.2f}. "
        "Green bins are gains, red ones losses; the horizontal axis is the P&L of one trade."
    )


def _monthly_table(equity: pd.Series, initial_cash: float) -> str:
    """Each month's and year's return (n1v1.backtest.metrics.monthly_returns)."""
    table = monthly_returns(equity, initial_cash)
    head = '<tr><th class="l">year</th>' + "".join(f"<th>{m}</th>" for m in _MONTHS)
    rows = ['<table id="monthly-returns">' + head + "<th>year</th></tr>"]
    for year, row in table.iterrows():
        cells = []
        for column in [*range(1, 13), "year"]:
            value = row[column]
            if not math.isfinite(value):
                cells.append("<td></td>")
                continue
            css = "pos" if value > 0 else "neg" if value < 0 else ""
            cells.append(f'<td class="{css}">{value * 100:,.2f}%</td>')
        rows.append(f'<tr><td class="l">{year}</td>{"".join(cells)}</tr>')
    return "\n".join([*rows, "</table>"])


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
