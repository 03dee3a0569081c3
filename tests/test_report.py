"""The HTML report: self-contained, well-formed, shows the numbers and the trades, stays small."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_pages import markers

from n1v1.backtest.charts import (
    MAX_CHART_POINTS,
    candle_points,
    downsample_minmax,
    histogram_bins,
    line_points,
)
from n1v1.backtest.metrics import compute_metrics, monthly_returns
from n1v1.backtest.report import MAX_TABLE_TRADES, write_html_report
from n1v1.domain import Side, Symbol, Trade

VOID = {"meta", "br", "hr", "img", "input", "link"}
CASH = 10_000.0


class _Page(HTMLParser):
    """Records every element and checks that start and end tags nest properly."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str, str] = {}
        self._script_id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "script":
            self._script_id = dict(attrs).get("id")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()
        if tag == "script":
            self._script_id = None

    def handle_data(self, data: str) -> None:
        if self._script_id:
            self.scripts[self._script_id] = self.scripts.get(self._script_id, "") + data

    def with_class(self, name: str) -> list[dict[str, str | None]]:
        return [a for _, a in self.elements if name in (a.get("class") or "").split()]


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.stack == [], f"unclosed elements: {page.stack}"
    return page


def _charts(page: _Page) -> dict[str, dict]:
    """The report's chart specs (n1v1/backtest/charts.py), by chart id."""
    return {c["id"]: c for c in json.loads(page.scripts["n1v1-charts"])}


def _seconds(stamp: pd.Timestamp) -> int:
    return int(stamp.value // 1_000_000_000)


def _index(n: int, freq: str = "D") -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n, freq=freq, tz="UTC")


def _trade(symbol: str, side: Side, entry: int, exit_: int | None, pnl: float) -> Trade:
    index = _index(10)
    return Trade(
        symbol=Symbol(symbol),
        side=side,
        qty=0.5,
        entry_time=index[entry],
        entry_price=100.0 + entry,
        exit_time=index[exit_] if exit_ is not None else None,
        exit_price=100.0 + exit_ if exit_ is not None else None,
        pnl=pnl,
        fees=0.1,
        exit_reason="signal" if exit_ is not None else "",
        bars_held=(exit_ - entry) if exit_ is not None else 0,
    )


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, dict, list[Trade]]:
    equity = pd.Series([10_100.0, 9_900.0, 10_200.0, 10_000.0, 10_500.0] * 2, index=_index(10))
    trades = [
        _trade("BTC/USDT", Side.BUY, 0, 2, 40.0),
        _trade("BTC/USDT", Side.SELL, 3, 5, -15.0),
        _trade("ETH/USDT", Side.BUY, 6, None, 0.0),  # still open: entry marker, no exit marker
    ]
    metrics = compute_metrics(
        equity, trades, CASH, fills_notional=2_000.0, fees_paid=0.3, exposure_bars=6
    )
    close = pd.DataFrame({"close": 100.0 + np.arange(10.0)}, index=_index(10))
    path = write_html_report(
        tmp_path / "nested" / "dir" / "report.html",
        title="SMA <cross> & friends",
        metrics=metrics,
        equity=equity,
        trades=trades,
        prices={"BTC/USDT": close, "ETH/USDT": close * 20},
        params={"fast": 10, "slow": 30, "note": "<b>x</b>"},
        notes=["fees are 10 bps & slippage 2 bps"],
    )
    return path, metrics, trades


def test_writes_the_file_and_creates_parent_directories(report: tuple) -> None:
    path, _, _ = report
    assert path.name == "report.html" and path.parent.name == "dir"
    assert path.is_file()
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    _parse(path)  # nesting is checked inside


def test_is_self_contained(report: tuple) -> None:
    """Nothing is fetched: no linked file, no script or image from elsewhere, no link out but to
    the page's own sections (the charting library is inline; tests/test_report_browser.py opens
    the page in a browser that cannot resolve any host)."""
    page = _parse(report[0])
    assert [tag for tag, _ in page.elements if tag in ("link", "img", "iframe", "object")] == []
    assert [a for tag, a in page.elements if tag == "script" and "src" in a] == []
    assert all(a["href"].startswith("#") for tag, a in page.elements if tag == "a")
    scripts = [a for tag, a in page.elements if tag == "script"]
    assert len(scripts) == 4  # the metrics, the chart specs, the library, the renderer


def test_escapes_user_text(report: tuple) -> None:
    text = report[0].read_text(encoding="utf-8")
    assert "SMA &lt;cross&gt; &amp; friends" in text
    assert "<cross>" not in text and "<b>x</b>" not in text
    assert "fees are 10 bps &amp; slippage 2 bps" in text


def test_shows_the_metric_values(report: tuple) -> None:
    path, metrics, _ = report
    page = _parse(path)
    # the raw numbers, exactly, as JSON
    assert json.loads(page.scripts["metrics-json"]) == metrics
    text = path.read_text(encoding="utf-8")
    assert "metric-total_return" in [a.get("id") for _, a in page.elements]
    # formatted: total_return = 10 500/10 000 − 1 = 5.00 %; exposure 6/10 = 60.00 %; fees 0.30
    assert "5.00%" in text
    assert "60.00%" in text
    assert f"{metrics['sharpe']:,.3f}" in text
    assert "0.30" in text
    # longest drawdown: bars 5..8 (10 100, 9 900, 10 200, 10 000) stay below the 10 500 peak of
    # bar 4 until bar 9 regains it: 4 daily bars = 4 days
    assert metrics["max_drawdown_duration"] == 4
    assert "<td>4 bars</td>" in text and "<td>4 d</td>" in text
    # every metric row has a formula tooltip
    tooltips = [
        a.get("title") for _, a in page.elements if (a.get("id") or "").startswith("metric-")
    ]
    assert len(tooltips) == len(metrics) and all(tooltips)


def test_undefined_metrics_read_na(tmp_path: Path) -> None:
    equity = pd.Series([CASH, CASH, CASH], index=_index(3))
    metrics = compute_metrics(equity, [], CASH, fills_notional=0.0, fees_paid=0.0)
    assert metrics["sharpe"] is None
    path = write_html_report(
        tmp_path / "r.html", title="flat", metrics=metrics, equity=equity, trades=[], prices={}
    )
    page = _parse(path)
    assert json.loads(page.scripts["metrics-json"])["sharpe"] is None
    assert "n/a" in path.read_text(encoding="utf-8")


def test_one_chart_per_view(report: tuple) -> None:
    page = _parse(report[0])
    charts = _charts(page)
    # equity, drawdown, one price chart per symbol (2), the closed trades' P&L distribution
    assert list(charts) == ["equity", "drawdown", "price-0", "price-1", "pnl-distribution"]
    labels = {
        a["id"]: a["aria-label"]
        for _, a in page.elements
        if "chart-canvas" in (a.get("class") or "").split()
    }
    assert labels == {
        "chart-equity-canvas": "Equity chart",
        "chart-drawdown-canvas": "Drawdown chart",
        "chart-price-0-canvas": "BTC/USDT price chart",
        "chart-price-1-canvas": "ETH/USDT price chart",
        "chart-pnl-distribution-canvas": "Histogram of closed trades' profit and loss",
    }
    # a log scale is offered where every value is positive: equity and prices, not drawdowns
    assert {k: c["log"] for k, c in charts.items()} == {
        "equity": True,
        "drawdown": False,
        "price-0": True,
        "price-1": True,
        "pnl-distribution": False,
    }
    assert len(page.with_class("log")) == 3 and len(page.with_class("fit")) == 5


def test_the_equity_chart_carries_buy_and_hold_of_the_symbols(report: tuple) -> None:
    """Both symbols rise 100 -> 109 (ETH at 20x the price): equal cash in each at its first
    close grows by 9 %, so the benchmark ends at 10 900; it starts at the cash, 10 000."""
    equity, hold = _charts(_parse(report[0]))["equity"]["series"]
    assert equity["name"] == "equity" and equity["base"] == CASH
    assert hold["name"] == "buy and hold"
    assert hold["data"][0] == [_seconds(_index(10)[0]), pytest.approx(CASH)]
    assert hold["data"][-1] == [_seconds(_index(10)[-1]), pytest.approx(10_900.0)]
    assert [row[1] for row in equity["data"]] == [
        10_100.0,
        9_900.0,
        10_200.0,
        10_000.0,
        10_500.0,
    ] * 2


def test_the_drawdown_chart_is_the_percentage_below_the_running_peak(report: tuple) -> None:
    (under,) = _charts(_parse(report[0]))["drawdown"]["series"]
    # peaks: 10 100 (bar 0), 10 200 (bar 2), 10 500 (bar 4 on); 9 900 is 1.98 % below 10 100
    expected = [
        0.0,
        -1.980198,
        0.0,
        -1.960784,
        0.0,
        -3.809524,
        -5.714286,
        -2.857143,
        -4.761905,
        0.0,
    ]
    assert [row[1] for row in under["data"]] == pytest.approx(expected, abs=1e-6)
    assert under["type"] == "baseline" and under["base"] == 0.0


def test_trademarkers(report: tuple) -> None:
    charts = _charts(_parse(report[0]))
    btc, eth = charts["price-0"], charts["price-1"]
    index = _index(10)
    assert [(m["x"], m["shape"], m["colour"]) for m in markers(btc, "entry-long")] == [
        (_seconds(index[0]), "arrowUp", "#1a7f43")  # green, below the bar
    ]
    assert [(m["x"], m["shape"], m["colour"]) for m in markers(btc, "entry-short")] == [
        (_seconds(index[3]), "arrowDown", "#c0392b")  # red, above the bar
    ]
    exits = markers(btc, "exit")  # won 40 (green), lost 15 (red), with the P&L in the text
    assert [(m["x"], m["colour"], m["text"]) for m in exits] == [
        (_seconds(index[2]), "#1a7f43", "signal +40.00"),
        (_seconds(index[5]), "#c0392b", "signal -15.00"),
    ]
    assert len(markers(eth, "entry-long")) == 1 and markers(eth, "exit") == []  # still open


def test_the_pnl_distribution_counts_the_closed_trades(report: tuple) -> None:
    (bins,) = _charts(_parse(report[0]))["pnl-distribution"]["series"]
    counted = [(x, n) for x, n, _ in bins["data"] if n]
    assert len(counted) == 2 and sum(n for _, n in counted) == 2  # -15 and +40; the open one not
    assert counted[0][0] < 0 < counted[1][0]
    text = report[0].read_text(encoding="utf-8")
    assert "2 closed trades, net of fees: 1 won, 1 lost; median 12.50" in text


def test_histogram_bins_put_an_edge_at_zero() -> None:
    """-15 and +40 in 30 bins of 55/30 = 1.8333: 9 bins below 0 (down to -16.5) and 22 above (up
    to 40.33), so no bin holds both a loss and a gain."""
    bins = histogram_bins([-15.0, 40.0], bins=30)
    width = 55.0 / 30
    assert len(bins) == 31
    assert bins[0]["lower"] == pytest.approx(-9 * width) and bins[-1]["upper"] == pytest.approx(
        22 * width
    )
    assert all(b["upper"] <= 1e-12 or b["lower"] >= -1e-12 for b in bins)
    assert [b["count"] for b in bins if b["count"]] == [1, 1]
    assert histogram_bins([5.0, 5.0]) == [{"lower": 5.0, "upper": 5.0, "centre": 5.0, "count": 2}]
    assert histogram_bins([]) == []


def test_monthly_returns_known_answer() -> None:
    """From 10 000: January ends at 11 000 (+10 %), February at 9 900 (-10 %), no bars in March,
    April ends at 9 801 (-1 % on February's 9 900); the year: 9 801 / 10 000 - 1 = -1.99 %."""
    index = pd.DatetimeIndex(
        ["2024-01-15", "2024-01-31 23:00", "2024-02-10", "2024-02-29", "2024-04-02"], tz="UTC"
    )
    equity = pd.Series([10_500.0, 11_000.0, 10_000.0, 9_900.0, 9_801.0], index=index)
    table = monthly_returns(equity, CASH)
    assert list(table.index) == [2024]
    row = table.loc[2024]
    assert row[1] == pytest.approx(0.10) and row[2] == pytest.approx(-0.10)
    assert np.isnan(row[3]) and row[4] == pytest.approx(-0.01)
    assert row["year"] == pytest.approx(-0.0199)
    assert np.isnan(row[list(range(5, 13))].to_numpy(dtype=float)).all()


def test_the_report_shows_monthly_returns(tmp_path: Path) -> None:
    """Two years: December 2023 from 10 000 to 12 000 (+20 %), January 2024 down to 9 000
    (-25 %): 2023's row holds December only, 2024's January and the year."""
    index = pd.DatetimeIndex(["2023-12-01", "2023-12-31", "2024-01-15", "2024-01-31"], tz="UTC")
    equity = pd.Series([11_000.0, 12_000.0, 10_000.0, 9_000.0], index=index)
    metrics = compute_metrics(equity, [], CASH, fills_notional=0.0, fees_paid=0.0)
    path = write_html_report(
        tmp_path / "m.html", title="m", metrics=metrics, equity=equity, trades=[], prices={}
    )
    text = path.read_text(encoding="utf-8")
    table = text[text.index('<table id="monthly-returns">') :]
    table = table[: table.index("</table>")]
    rows = table.split("<tr>")[2:]
    assert rows[0].startswith('<td class="l">2023</td>') and "20.00%" in rows[0]
    assert rows[0].count("<td></td>") == 11  # January..November of 2023: no bars
    assert rows[1].startswith('<td class="l">2024</td>')
    assert rows[1].count('class="neg">-25.00%</td>') == 2  # January and the year


def test_candles_are_merged_into_buckets() -> None:
    """Five bars into at most 2 buckets of 3: bars 0-2 and 3-4. A bucket opens at its first
    bar's open, closes at its last's close, spans its highs and lows, sums its volume."""
    index = _index(5)
    frame = pd.DataFrame(
        {
            "open": [10.0, 11, 12, 13, 14],
            "high": [11.0, 15, 13, 14, 16],
            "low": [9.0, 10, 8, 12, 13],
            "close": [11.0, 12, 13, 14, 15],
            "volume": [1.0, 2, 3, 4, 5],
        },
        index=index,
    )
    candles, volumes = candle_points(frame, max_points=2)
    assert candles == [
        [_seconds(index[0]), 10.0, 15.0, 8.0, 13.0],
        [_seconds(index[3]), 13.0, 16.0, 12.0, 15.0],
    ]
    assert [v[:2] for v in volumes] == [[_seconds(index[0]), 6.0], [_seconds(index[3]), 9.0]]
    whole, _ = candle_points(frame)
    assert len(whole) == 5 and whole[1] == [_seconds(index[1]), 11.0, 15.0, 10.0, 12.0]


def test_a_line_breaks_inside_a_gap_only() -> None:
    from n1v1.data.gaps import long_gaps

    index = _index(5).append(_index(5) + pd.Timedelta(days=40))
    x = index.as_unit("ns").asi8
    rows = line_points(x, np.arange(10.0), long_gaps(index))
    breaks = [r for r in rows if r[1] is None]
    assert len(rows) == 11 and len(breaks) == 1
    assert _seconds(index[4]) < breaks[0][0] < _seconds(index[5])  # between the two sides
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert line_points(x, np.arange(10.0)) == [[_seconds(t), float(k)] for k, t in enumerate(index)]


def test_trades_table_lists_every_trade(report: tuple) -> None:
    text = report[0].read_text(encoding="utf-8")
    assert text.count("<td>BTC/USDT</td>") == 2
    assert text.count("<td>ETH/USDT</td>") == 1
    assert ">open</td>" in text  # the open trade's exit column


def test_a_partly_exited_open_trade_shows_the_quantity_left(tmp_path: Path) -> None:
    trade = _trade("BTC/USDT", Side.BUY, 0, None, 240.0)
    trade.qty, trade.open_qty = 10.0, 4.0  # bought 10, sold 6 so far
    equity = pd.Series(10_240.0, index=_index(10))
    metrics = compute_metrics(equity, [trade], CASH, fills_notional=1_720.0, fees_paid=0.0)
    close = pd.DataFrame({"close": 100.0 + np.arange(10.0)}, index=_index(10))
    path = write_html_report(
        tmp_path / "r.html",
        title="t",
        metrics=metrics,
        equity=equity,
        trades=[trade],
        prices={"BTC/USDT": close},
    )
    assert "<td>10 (4 open)</td>" in path.read_text(encoding="utf-8")


def test_trades_table_is_capped_and_says_so(tmp_path: Path) -> None:
    n = MAX_TABLE_TRADES + 20
    index = _index(n + 1, "h")
    trades = [
        Trade(Symbol("X"), Side.BUY, 1.0, index[i], 10.0, index[i + 1], 11.0, pnl=1.0)
        for i in range(n)
    ]
    equity = pd.Series(CASH + np.arange(n + 1.0), index=index)
    metrics = compute_metrics(equity, trades, CASH, fills_notional=0.0, fees_paid=0.0)
    prices = pd.DataFrame({"close": 10.0 + np.zeros(n + 1)}, index=index)
    path = write_html_report(
        tmp_path / "r.html", title="t", metrics=metrics, equity=equity, trades=trades, prices=prices
    )
    text = path.read_text(encoding="utf-8")
    assert f"Showing the first {MAX_TABLE_TRADES:,} of {n:,} trades" in text
    assert text.count("<td>X</td>") == MAX_TABLE_TRADES
    assert len(markers(_charts(_parse(path))["price-0"], "entry-long")) == n  # under the cap


def test_single_price_frame_needs_a_single_symbol(tmp_path: Path) -> None:
    equity = pd.Series([CASH] * 10, index=_index(10))
    trades = [_trade("A", Side.BUY, 0, 1, 1.0), _trade("B", Side.BUY, 2, 3, 1.0)]
    frame = pd.DataFrame({"close": np.ones(10)}, index=_index(10))
    with pytest.raises(ValueError, match="pass a dict"):
        write_html_report(
            tmp_path / "r.html", title="t", metrics={}, equity=equity, trades=trades, prices=frame
        )
    with pytest.raises(ValueError, match=r"prices\['A'\].*close"):
        write_html_report(
            tmp_path / "r.html",
            title="t",
            metrics={},
            equity=equity,
            trades=trades,
            prices={"A": frame.rename(columns={"close": "last"})},
        )


# --- downsampling -----------------------------------------------------------------------------


def test_downsampling_keeps_the_global_min_and_max() -> None:
    n = 100_003
    x = np.arange(n, dtype=np.int64)
    y = np.sin(np.arange(n) / 500.0)
    y[12_345] = 7.5  # a one-bar spike
    y[98_765] = -9.25  # a one-bar crash
    xs, ys = downsample_minmax(x, y, max_points=2_000)
    assert len(xs) <= 2_000
    assert ys.max() == 7.5 and ys.min() == -9.25
    assert xs[0] == 0 and xs[-1] == n - 1  # the whole span is covered
    assert np.all(np.diff(xs) > 0)  # still in time order
    np.testing.assert_array_equal(ys, y[xs])  # real points, not averages


def test_short_series_are_not_downsampled() -> None:
    x, y = np.arange(10), np.arange(10.0)
    xs, ys = downsample_minmax(x, y, max_points=10)
    np.testing.assert_array_equal(xs, x)
    np.testing.assert_array_equal(ys, y)


def test_long_report_stays_small_and_keeps_the_extremes(tmp_path: Path) -> None:
    n = 1_000_000
    index = _index(n, "min")
    bar = np.arange(n, dtype=np.float64)
    equity_values = CASH + 500.0 * np.sin(bar / 20_000.0)
    equity_values[400_000] = 25_000.0  # spike
    equity_values[700_001] = 2_000.0  # crash
    equity = pd.Series(equity_values, index=index)
    trades = [
        Trade(Symbol("BTC"), Side.BUY, 1.0, index[i], 100.0, index[i + 50], 101.0, pnl=1.0)
        for i in range(0, 200_000, 100)
    ]
    metrics = compute_metrics(equity, trades, CASH, fills_notional=1e6, fees_paid=100.0)
    prices = pd.DataFrame({"close": 100.0 + np.cos(bar / 5_000.0)}, index=index)
    path = write_html_report(
        tmp_path / "big.html",
        title="1M bars",
        metrics=metrics,
        equity=equity,
        trades=trades,
        prices=prices,
    )
    size = path.stat().st_size
    assert size < 2_000_000, f"report is {size:,} bytes"
    charts = _charts(_parse(path))
    for chart in ("equity", "drawdown", "price-0"):
        (series, *_) = charts[chart]["series"]
        assert len(series["data"]) <= MAX_CHART_POINTS, chart
    # the spike and the crash are the extremes of the drawn equity line, at their own bars
    drawn = charts["equity"]["series"][0]["data"]
    assert max(drawn, key=lambda r: r[1]) == [_seconds(index[400_000]), 25_000.0]
    assert min(drawn, key=lambda r: r[1]) == [_seconds(index[700_001]), 2_000.0]
    assert drawn[0][0] == _seconds(index[0]) and drawn[-1][0] == _seconds(index[-1])
    assert len(markers(charts["price-0"], "entry-long")) == 1_000
    assert "Markers for the first 1,000 of 2,000 trades" in path.read_text(encoding="utf-8")


def test_several_strategies_get_a_section_with_each_ones_own_pnl(tmp_path: Path) -> None:
    from builders import FixedTargets, make_bars, settings

    from n1v1.backtest.runner import run_backtest

    bars = make_bars([(100, 100, 100, 100), (100, 102, 99, 102), (104, 104, 103, 103)] * 3)
    trend = FixedTargets([1, 1, 1, 1, 0, 0, 0, 0, 0], name="trend")
    dip = FixedTargets([0, 0, 0, 1, 1, 1, 1, 0, 0], name="dip<x>")
    result = run_backtest(bars, {"trend": trend, "dip<x>": dip}, settings())
    path = write_html_report(
        tmp_path / "r.html",
        title="two",
        metrics=result.metrics,
        equity=result.equity,
        trades=result.trades,
        prices=bars,
        strategies=result.strategies,
    )
    page = _parse(path)
    rows = {a.get("id") for _, a in page.elements if (a.get("id") or "").startswith("strategy-")}
    assert rows == {"strategy-trend", "strategy-dip<x>"}  # the name is escaped in the markup
    text = path.read_text(encoding="utf-8")
    assert "dip&lt;x&gt;" in text and "shadow account" in text
    # the row shows the shadow's final equity to the cent
    final = result.strategies["trend"]["metrics"]["final_equity"]
    assert f"{final:,.2f}" in text
    one = run_backtest(bars, trend, settings())
    single = write_html_report(
        tmp_path / "one.html",
        title="one",
        metrics=one.metrics,
        equity=one.equity,
        trades=one.trades,
        prices=bars,
        strategies=one.strategies,
    )
    assert 'id="strategies"' not in single.read_text(encoding="utf-8")


# -- gaps ------------------------------------------------------------------------------------------
def _gappy_report(tmp_path: Path, policy: str = "segment") -> tuple[Path, list]:
    """Daily equity on days 0..4 and 40..44: one 35-day hole, a gap at 10x the 1-day spacing."""
    from n1v1.backtest.gaps import segment_metrics
    from n1v1.backtest.metrics import sample_time
    from n1v1.data.gaps import long_gaps

    index = _index(5).append(_index(5) + pd.Timedelta(days=40))
    equity = pd.Series([10_100.0, 9_900.0, 10_200.0, 10_000.0, 10_500.0] * 2, index=index)
    gaps = long_gaps(index)
    metrics = compute_metrics(equity, [], CASH, fills_notional=0.0, fees_paid=0.0)
    path = write_html_report(
        tmp_path / "gaps.html",
        title="gaps",
        metrics=metrics,
        equity=equity,
        trades=[],
        prices=pd.DataFrame({"close": 100.0 + np.arange(10.0)}, index=index),
        notes=["the bars have 1 gap"],
        gaps=gaps,
        segments=segment_metrics(equity, CASH, sample_time(index)) if policy == "segment" else None,
    )
    return path, gaps


def test_gaps_break_every_line_are_marked_and_listed(tmp_path: Path) -> None:
    path, gaps = _gappy_report(tmp_path)
    charts = _charts(_parse(path))
    assert len(gaps) == 1 and gaps[0].missing_bars == 35
    index = _index(5).append(_index(5) + pd.Timedelta(days=40))
    for chart in ("equity", "drawdown", "price-0"):
        for series in charts[chart]["series"]:  # equity and buy-and-hold, drawdown, the closes
            breaks = [row[0] for row in series["data"] if row[1] is None]
            assert len(breaks) == 1, (chart, series["name"])
            assert _seconds(index[4]) < breaks[0] < _seconds(index[5])
    # a grey square on the first bar after the hole (day 40), on equity and price
    for chart in ("equity", "price-0"):
        assert [m["x"] for m in markers(charts[chart], "gap")] == [_seconds(index[5])]
    text = path.read_text(encoding="utf-8")
    gaps_table = text[text.index('<h2 id="gaps">') :]
    assert (
        '<td class="l">2024-01-06 00:00</td><td class="l">2024-02-09 00:00</td><td>35</td>'
        "<td>35 d</td>"
    ) in gaps_table
    assert 'id="gaps"' in text and "Gap-free segments" in text


def test_no_gap_marks_without_gaps(report: tuple) -> None:
    charts = _charts(_parse(report[0]))
    assert all(markers(c, "gap") == [] for c in charts.values())
    assert all(
        row[1] is not None for c in charts.values() for s in c["series"] for row in s["data"]
    )
    assert 'id="gaps"' not in report[0].read_text(encoding="utf-8")
