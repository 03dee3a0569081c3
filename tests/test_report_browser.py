"""The HTML reports in Debian's headless Chromium, opened from disk by a browser that cannot reach
any host (tests/test_dashboard.py `headless_chromium`): the backtest and walk-forward reports as
`n1v1 backtest --report` and `n1v1 walkforward --report` write them, the evaluation report as
`n1v1 evaluate` does. Each must draw every chart from its own file with no script error, zoom
with the wheel and come back with Fit, switch its equity chart to a log scale, and pass the
automated accessibility check. Screenshots go to the artefact folder (build/test-artifacts).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_pages import chart_specs
from test_dashboard import WebDriver, _require_browser, headless_chromium
from test_dashboard_controls import ARTIFACTS, accessibility_problems

from n1v1.cli import main

READ_CHARTS = """
const drawn = window.n1v1Charts || {};
return Object.fromEntries(Object.entries(drawn).map(([id, c]) => {
  const range = c.chart.timeScale().getVisibleLogicalRange();
  return [id, {
    canvases: document.querySelectorAll("#chart-" + id + "-canvas canvas").length,
    series: c.series.length,
    span: range === null ? null : range.to - range.from,
    mode: c.chart.priceScale("right").options().mode,
  }];
}));
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    _require_browser()
    with headless_chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def open_report(browser: WebDriver, path: Path) -> dict[str, Any]:
    """Load the file and wait until every chart of its spec is drawn; what the charts show."""
    browser.get("about:blank")
    browser.console_errors()  # what earlier pages logged is theirs
    browser.get(path.as_uri())
    expected = set(chart_specs(path.read_text(encoding="utf-8")))
    deadline = time.monotonic() + 20
    while True:
        charts = browser.execute(READ_CHARTS)
        if set(charts) == expected and all(c["canvases"] > 0 for c in charts.values()):
            return charts
        assert time.monotonic() < deadline, f"charts never drawn: {charts} of {sorted(expected)}"
        time.sleep(0.2)


def check_report(browser: WebDriver, path: Path, chart: str, name: str) -> dict[str, Any]:
    """The checks every report passes; `chart` is the one to zoom and switch to a log scale."""
    charts = open_report(browser, path)
    assert browser.console_errors() == []
    full = charts[chart]["span"]
    for _ in range(3):  # each turn zooms in by about a tenth
        browser.wheel(f"#chart-{chart}-canvas", -600)
    zoomed = browser.wait_for(
        f"page['{chart}'].span < {full} * 0.8", reader=READ_CHARTS, timeout=5
    )[chart]["span"]
    browser.click(f"#chart-{chart} button.fit")
    browser.wait_for(f"Math.abs(page['{chart}'].span - {full}) < 1", reader=READ_CHARTS, timeout=5)
    assert zoomed < full
    assert charts[chart]["mode"] == 0  # normal until asked
    browser.click(f"#chart-{chart} input.log")
    browser.wait_for(f"page['{chart}'].mode === 1", reader=READ_CHARTS, timeout=5)  # logarithmic
    browser.click(f"#chart-{chart} input.log")
    browser.wait_for(f"page['{chart}'].mode === 0", reader=READ_CHARTS, timeout=5)
    assert accessibility_problems(browser) == []
    assert browser.console_errors() == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot(ARTIFACTS / f"report-{name}.png")
    return charts


def test_the_backtest_report_as_the_cli_writes_it(browser: WebDriver, tmp_path: Path) -> None:
    path = tmp_path / "backtest.html"
    code = main(
        [
            "backtest",
            "--data",
            "coinbase_BTC-USD_1d",
            "--strategy",
            "sma_cross",
            "--param",
            "fast=10",
            "--param",
            "slow=40",
            "--report",
            str(path),
            "--no-progress",
        ]
    )
    assert code == 0
    charts = check_report(browser, path, "equity", "backtest")
    assert sorted(charts) == ["drawdown", "equity", "pnl-distribution", "price-0"]
    assert charts["equity"]["series"] == 2  # the equity and buy-and-hold
    assert charts["price-0"]["series"] == 2  # candles and volume


def test_the_walk_forward_report_as_the_cli_writes_it(browser: WebDriver, tmp_path: Path) -> None:
    path = tmp_path / "wf.html"
    code = main(
        [
            "walkforward",
            "--data",
            "coinbase_BTC-USD_1d",
            "--strategy",
            "sma_cross",
            "--grid",
            "fast=5,10",
            "--grid",
            "slow=20:40:20",
            "--train-bars",
            "300",
            "--test-bars",
            "150",
            "--local",
            "--report",
            str(path),
        ]
    )
    assert code == 0
    charts = check_report(browser, path, "wf-equity", "walkforward")
    assert sorted(charts) == ["wf-equity", "wf-windows"]
    assert charts["wf-windows"]["series"] == 2  # in-sample and out-of-sample


def test_the_evaluation_report(browser: WebDriver, tmp_path: Path) -> None:
    from test_ml_evaluation import bars_2500, evaluate

    from n1v1.ml.report import write_evaluation_report

    result = evaluate(bars_2500())
    path = write_evaluation_report(tmp_path / "evaluation.html", result, title="evaluation")
    charts = check_report(browser, path, "fold-0-equity", "evaluation")
    assert charts["fold-0-reliability"]["series"] == 3  # the diagonal, before and after calibration
    assert charts["fold-0-equity"]["series"] == 3  # ml_signal, buy-and-hold, the best rule
