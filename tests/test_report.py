"""The HTML report: self-contained, well-formed, shows the numbers and the trades, stays small."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from n1v1.backtest.metrics import compute_metrics
from n1v1.backtest.report import (
    MAX_CHART_POINTS,
    MAX_TABLE_TRADES,
    downsample_minmax,
    write_html_report,
)
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
    text = report[0].read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "src=" not in text


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


def test_one_svg_per_chart(report: tuple) -> None:
    page = _parse(report[0])
    svgs = [a for tag, a in page.elements if tag == "svg"]
    # equity, drawdown, and one price chart per symbol (2)
    assert len(svgs) == 4
    labels = [a["aria-label"] for a in svgs]
    assert labels == ["equity chart", "drawdown chart", "BTC/USDT chart", "ETH/USDT chart"]


def test_trade_markers(report: tuple) -> None:
    page = _parse(report[0])
    assert len(page.with_class("entry-long")) == 2  # BTC long + ETH long
    assert len(page.with_class("entry-short")) == 1
    assert len(page.with_class("exit")) == 2  # the open ETH trade has no exit
    colours = {a["fill"] for a in page.with_class("entry-long")}
    assert colours == {"#1a9850"}  # green
    assert {a["fill"] for a in page.with_class("entry-short")} == {"#d73027"}  # red


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
    assert len(_parse(path).with_class("entry-long")) == n  # under the marker cap: all drawn


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
    page = _parse(path)
    series = page.with_class("series")
    assert len(series) == 3
    for polyline in series:
        assert len(polyline["points"].split()) <= MAX_CHART_POINTS
    # the spike and the crash are the extremes of the equity line: the smallest and largest pixel y
    # of the drawn line must be at the spike's and the crash's x positions (1 px tolerance)
    pts = np.array([[float(v) for v in p.split(",")] for p in series[0]["points"].split()])
    left, right = pts[0, 0], pts[-1, 0]  # the line spans the plot from the first to the last bar

    def x_of(i: int) -> float:
        return left + i / (n - 1) * (right - left)

    assert abs(pts[np.argmin(pts[:, 1]), 0] - x_of(400_000)) < 1.0  # highest point = spike
    assert abs(pts[np.argmax(pts[:, 1]), 0] - x_of(700_001)) < 1.0  # lowest point = crash
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


def test_gaps_are_shaded_on_every_chart_and_listed(tmp_path: Path) -> None:
    path, gaps = _gappy_report(tmp_path)
    page = _parse(path)
    assert len(gaps) == 1 and gaps[0].missing_bars == 35
    bands = page.with_class("gap")
    assert len(bands) == 3  # equity, drawdown, price
    # the band runs from the last bar before the hole (day 4) to the first after it (day 40):
    # 36 of the 44 days of the x-axis, so 36/44 of the 866-pixel plot width = 708.5 px
    assert float(bands[0]["width"]) == pytest.approx(36 / 44 * (960 - 78 - 16), abs=0.2)
    # the line is broken at the gap and the two sides joined by a dotted link
    assert len(page.with_class("gap-link")) == 3
    assert len(page.with_class("series")) == 6  # two pieces per chart
    text = path.read_text(encoding="utf-8")
    assert "2024-01-06 00:00 to 2024-02-09 00:00 UTC (35 missing bars, 35d)" in text
    assert 'id="gaps"' in text and "Gap-free segments" in text


def test_no_gap_marks_without_gaps(report: tuple) -> None:
    page = _parse(report[0])
    assert page.with_class("gap") == [] and page.with_class("gap-link") == []
    assert 'id="gaps"' not in report[0].read_text(encoding="utf-8")
