"""The dashboard's controls, driven in Debian's Chromium with real clicks and keystrokes against a
live session held at an exact step (no bar comes unless the test lets one): pause and resume, a
manual order placed (after a refused one whose error shows next to its field) and cancelled, a
risk limit and a strategy parameter changed (invalid, then valid), a parent order started and
cancelled, the kill switch tripped (confirmed, its result shown) and reset, and the read-only
token's page without controls.
Screenshots go to the test's artefact folder (`N1V1_TEST_ARTIFACTS`, default build/test-artifacts).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from dashboard_api import LocalBackend, free_port, serve_app
from report_pages import chart_specs
from session_worker import GatedFeed, make_session, market, run_to, settings, wait_until
from test_dashboard import WebDriver, _require_browser, headless_chromium

from n1v1.serve.api import create_api, hash_token
from n1v1.store import StoreReader, create_store

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("N1V1_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
SAMPLES = ROOT / "n1v1" / "data" / "samples"
UPLOADED = "coinbase_LTC-USD_1m.csv"  # in the server's upload directory, as `data download` names

READ_FORM = "return {formShown: !document.querySelector('#token-form').hidden};"
READ = """
const q = (sel) => document.querySelector(sel);
const rows = (table) => Array.from(
  document.querySelectorAll(table + " tbody tr:not(.empty-row)"));
const cell = (tr, cls) => (tr.querySelector(cls) || {}).textContent;
return {
  controls: !q("#controls-panel").hidden,
  result: q("#control-result").textContent,
  resultFailed: q("#control-result").classList.contains("failed"),
  qtyError: q("#order-form-qty-error").textContent,
  drawdownError: q("#limits-form-max_drawdown-error").textContent,
  drawdownInvalid: q("#limit-max_drawdown").getAttribute("aria-invalid"),
  killConfirm: !q("#kill-confirm").hidden,
  risk: Object.fromEntries(Array.from(q("#risk-list").querySelectorAll("dt")).map(
    (dt) => [dt.textContent, dt.nextElementSibling.textContent])),
  orders: rows("#orders-table").map((tr) => [
    cell(tr, ".col-client_order_id"), cell(tr, ".col-status"),
    tr.querySelectorAll("button.row-action").length]),
  parents: rows("#algo-table").map((tr) => [
    cell(tr, ".col-parent_id"), cell(tr, ".col-status"),
    tr.querySelectorAll("button.row-action").length]),
  buttons: document.querySelectorAll("button.row-action").length,
  lastUpdated: q("#last-updated").textContent,
  orderSymbols: Array.from(q("#order-symbol").options).map((o) => o.value),
  live: q("#live-state").textContent,
  connection: q("#connection").hidden ? "" : q("#connection").textContent,
  stale: document.body.classList.contains("stale"),
  reconnects: Number(q("#live-state").dataset.reconnects),
  events: Number(q("#live-state").dataset.events),
  step: q("#step-value").textContent,
  alerts: q("#health-alerts").textContent,
  params: Array.from(document.querySelectorAll("#strategy-params input")).map((i) => i.name),
  btForm: getComputedStyle(q("#backtest-form")).display !== "none",
  btParams: Array.from(document.querySelectorAll("#bt-params input")).map((i) => i.name),
  btFastError: (q("#backtest-form-fast-error") || {}).textContent || "",
  btChoices: Array.from(q("#bt-dataset").options).map((o) => [o.value, o.textContent, o.disabled]),
  btUploads: q("#bt-uploads").textContent,
  backtests: rows("#backtests-table").map((tr) => [
    tr.querySelector(".col-status").textContent, tr.querySelectorAll("button").length]),
  report: q("#backtest-report").hidden ? null : {
    title: q("#report-title").textContent,
    metrics: Object.fromEntries(Array.from(q("#report-metrics").querySelectorAll("dd")).map(
      (dd) => [dd.dataset.metric, dd.textContent])),
    canvases: q("#report-chart").querySelectorAll("canvas").length,
  },
  periodError: (q("#strategy-form-period-error") || {}).textContent || "",
};
"""


class Live:
    def __init__(
        self, base_url: str, admin: str, read: str, session: Any, feed: GatedFeed, store: Any
    ):
        self.base_url, self.admin, self.read = base_url, admin, read
        self.session, self.feed, self.store = session, feed, store

    def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.admin}"}
        response = requests.get(f"{self.base_url}/api/v1/{path}", headers=headers, timeout=30)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("controls")
    admin, read = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    with ExitStack() as stack:
        store = create_store(f"sqlite:///{tmp}/s.db")
        stack.callback(store.dispose)
        feed = GatedFeed(market())
        session = make_session(store, feed, config=settings(max_open_positions=None))
        session.start()
        stack.callback(session.stop)
        wait_until(lambda: session.state == "running", "the session to take the lease")
        run_to(session, feed, 30)  # held here: a manual order stays working until let go
        uploads = tmp / "uploads"  # one bar file to backtest, one the page must say is broken
        uploads.mkdir()
        shutil.copy(SAMPLES / "coinbase_LTC-USD_1m.csv", uploads / UPLOADED)
        (uploads / "broken.csv").write_text("timestamp,open\nnot a time,1\n")
        app = create_api(
            LocalBackend(session, store_url=f"sqlite:///{tmp}/s.db", upload_dir=str(uploads)),
            store,
            upload_dir=str(uploads),
            event_stream_s=3.0,  # each /events stream ends after 3 s: the page must reconnect
            admin_token_hash=hash_token(admin),
            read_token_hash=hash_token(read),
        )
        base_url = stack.enter_context(serve_app(app))
        yield Live(base_url, admin, read, session, feed, store)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    _require_browser()
    with headless_chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def shot(browser: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot(ARTIFACTS / f"dashboard-{name}.png")


def wait(browser: WebDriver, ready: str, timeout: float = 20.0) -> dict[str, Any]:
    return browser.wait_for(ready, timeout=timeout, reader=READ)


def test_an_operator_runs_the_session_from_the_page(live: Live, browser: WebDriver) -> None:
    browser.get("about:blank")
    browser.get(f"{live.base_url}/")  # no token yet: the page asks for one
    browser.execute("sessionStorage.clear()")
    browser.get(f"{live.base_url}/")
    browser.wait_for("page.formShown", reader=READ_FORM)
    browser.type("#token-input", live.admin)
    browser.press_enter("#token-input")
    page = wait(browser, "page.controls && page.orderSymbols.length === 2 && page.risk.paused")
    assert page["orderSymbols"] == ["BTC/USD", "LTC/USD"]
    # no Prometheus here: the health panel says so (tests/test_alerts_route.py has one)
    page = wait(browser, "page.alerts !== ''")
    assert (
        page["alerts"] == "Alerts: not available (no Prometheus configured (N1V1_PROMETHEUS_URL))"
    )

    # pause, then resume: the risk panel follows
    browser.click("#pause-btn")
    page = wait(browser, "page.result.startsWith('Paused') && page.risk.paused === 'yes'")
    browser.click("#resume-btn")
    page = wait(browser, "page.result.startsWith('Resumed') && page.risk.paused === 'no'")
    assert live.session.snapshot["paused"] is False

    # a quantity that is not a number: the error is next to the field, nothing is placed
    before = len(StoreReader(live.store).latest_orders())
    browser.type("#order-qty", "lots")
    browser.click("#order-form button[type=submit]")
    page = wait(browser, "page.qtyError !== ''")
    assert page["resultFailed"] and "422" in page["result"]
    assert len(StoreReader(live.store).latest_orders()) == before
    # a valid one: sent, listed as working with a Cancel button (no bar comes to fill it)
    browser.click("#order-symbol option[value='LTC/USD']")
    browser.type("#order-qty", "2")
    browser.click("#order-form button[type=submit]")
    page = wait(browser, "page.result.startsWith('Order sent') && page.qtyError === ''")
    (placed,) = [o for o in live.get("orders?symbol=LTC/USD")["orders"] if o["purpose"] == "manual"]
    assert placed["status"] == "submitted" and placed["client_order_id"] in page["result"]
    page = wait(browser, f"page.orders.some((o) => o[0] === '{placed['client_order_id']}')")
    (row,) = [o for o in page["orders"] if o[0] == placed["client_order_id"]]
    assert row[1:] == ["submitted", 1]
    shot(browser, "order-working")
    browser.click(f"button[aria-label='cancel order {placed['client_order_id']}']")
    wait(
        browser,
        f"page.orders.some((o) => o[0] === '{placed['client_order_id']}' && o[1] === 'cancelled')",
    )
    assert live.get("orders?symbol=LTC/USD")["orders"][0]["status"] == "cancelled"

    # a risk limit: refused with the field named, then saved
    browser.type("#limit-max_drawdown", "5")
    browser.click("#limits-form button[type=submit]")
    page = wait(browser, "page.drawdownError !== ''")
    assert page["drawdownInvalid"] == "true" and "less than 1" in page["drawdownError"].lower()
    assert live.session.snapshot["risk"]["limits"]["max_drawdown"] is None
    browser.type("#limit-max_drawdown", "0.3")
    browser.click("#limits-form button[type=submit]")
    page = wait(browser, "page.result === 'Limits saved.' && page.drawdownError === ''")
    assert live.session.snapshot["risk"]["limits"]["max_drawdown"] == 0.3
    page = wait(browser, "page.risk.drawdown.endsWith('30.00 %')")

    # a strategy parameter: refused with the field named, then saved
    browser.click("#strategy-id option[value='rsi']")
    page = wait(browser, "page.params.includes('period')")
    browser.type("#param-period", "-3")
    browser.click("#strategy-form button[type=submit]")
    page = wait(browser, "page.periodError !== ''")
    assert page["periodError"] == "Input should be greater than or equal to 2"
    assert "body.strategies.rsi.period" in page["result"]
    browser.type("#param-period", "10")
    browser.click("#strategy-form button[type=submit]")
    page = wait(browser, "page.result === 'Parameters of rsi saved.'")
    (rsi,) = [x for x in live.session.snapshot["strategies"] if x["id"] == "rsi"]
    assert rsi["params"]["period"] == 10

    # a parent order: started, listed with a Cancel button, cancelled
    browser.type("#algo-qty", "3")
    browser.click("#algo-form button[type=submit]")
    page = wait(browser, "page.result.startsWith('Algorithm order')")
    (parent,) = live.get("algo-orders")["algo_orders"]
    assert parent["status"] == "working" and parent["parent_id"] in page["result"]
    wait(browser, f"page.parents.some((p) => p[0] === '{parent['parent_id']}' && p[2] === 1)")
    browser.click(f"button[aria-label='cancel algorithm order {parent['parent_id']}']")
    wait(
        browser,
        f"page.parents.some((p) => p[0] === '{parent['parent_id']}' && p[1] === 'cancelled')",
    )

    # the kill switch: asks first, then says what it cancelled and flattened
    positions = live.session.snapshot["positions"]
    browser.click("#kill-btn")
    page = wait(browser, "page.killConfirm")
    shot(browser, "kill-switch-confirm")
    browser.type("#kill-reason", "drill")
    browser.click("#kill-yes")
    page = wait(browser, "page.result.startsWith('Kill switch engaged (drill)')")
    held = [p for p in positions if p["qty"]]
    assert f"with {len(held)} market order" in page["result"]
    for p in held:
        assert p["symbol"] in page["result"]
    page = wait(browser, "page.risk['kill switch'].startsWith('ENGAGED')")
    shot(browser, "kill-switch-engaged")
    browser.click("#reset-kill")
    browser.click("#resume-btn")
    page = wait(browser, "page.risk['kill switch'] === 'off'")
    assert live.session.snapshot["risk"]["kill_switch"]["engaged"] is False
    assert browser.security_messages() == []


def test_the_read_only_token_sees_the_page_without_controls(live: Live, browser: WebDriver) -> None:
    browser.get("about:blank")
    browser.get(f"{live.base_url}/#token={live.read}")
    page = wait(browser, "page.lastUpdated.startsWith('last updated') && page.orders.length > 0")
    assert page["controls"] is False and page["buttons"] == 0 and page["btForm"] is False
    shot(browser, "read-only")


AXE = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"
RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
  .then((r) => done(r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + ": " + n.failureSummary)}))))
  .catch((e) => done([{id: "axe-error", help: String(e), nodes: []}]));
"""


def accessibility_problems(browser: WebDriver) -> list[dict[str, Any]]:
    """What axe-core (vendored, tests/vendor) finds against WCAG 2.1 A and AA: labels, contrast,
    names of buttons and links, landmarks, ARIA use."""
    browser.execute(AXE.read_text())
    return browser.execute_async(RUN_AXE)


def test_the_page_follows_the_engine_as_it_steps_and_reconnects_its_stream(
    live: Live, browser: WebDriver
) -> None:
    """While its event stream is up the page polls every 10 s only: a new step shown within a
    few seconds came through the stream. The server ends each stream after 3 s here."""
    browser.get("about:blank")
    browser.get(f"{live.base_url}/#token={live.admin}")
    page = wait(browser, "page.live === 'live' && page.step !== '–'")
    step, events = live.session.steps_done, page["events"]
    run_to(live.session, live.feed, step + 1)
    page = wait(browser, f"page.step === '{step + 1}'", timeout=5)
    assert page["events"] > events
    page = wait(browser, "page.reconnects >= 2 && page.live === 'live'", timeout=15)
    assert browser.security_messages() == []


def test_the_page_says_when_the_server_is_gone_keeps_its_data_and_recovers(
    live: Live, browser: WebDriver
) -> None:
    """The server stops answering (its process gone: connections refused, the event stream cut):
    the page keeps what it showed, says since when and as of when it is stale, and keeps
    retrying; when the server is back on the same address, the page is live again without a
    reload and follows the next step."""
    app = create_api(
        LocalBackend(live.session),
        live.store,
        admin_token_hash=hash_token(live.admin),
        read_token_hash=hash_token(live.read),
    )
    port = free_port()
    with serve_app(app, port=port, graceful_s=0.5) as base_url:
        browser.get("about:blank")
        browser.get(f"{base_url}/#token={live.admin}")
        before = wait(
            browser, "page.live === 'live' && page.orders.length > 0 && page.step !== '–'"
        )
    page = wait(browser, "page.connection.startsWith('Connection to the server lost at')", 30)
    assert page["stale"] and page["live"] == "reconnecting…"
    assert (
        "Showing what it said at" in page["connection"]
        and "retrying every 2 s" in page["connection"]
    )
    assert page["orders"] == before["orders"] and page["step"] == before["step"]  # nothing wiped
    time.sleep(2.5)  # a retry or more, all failing: "last updated" must not move on
    assert wait(browser, "true")["lastUpdated"] == page["lastUpdated"]
    shot(browser, "connection-lost")
    with serve_app(app, port=port, graceful_s=0.5):
        page = wait(browser, "page.connection === '' && !page.stale && page.live === 'live'", 40)
        step = live.session.steps_done
        run_to(live.session, live.feed, step + 1)
        wait(browser, f"page.step === '{step + 1}'", 10)
        assert browser.security_messages() == []


def test_a_backtest_is_launched_from_the_page_and_its_report_opened(
    live: Live, browser: WebDriver
) -> None:
    browser.get("about:blank")
    browser.get(f"{live.base_url}/#token={live.admin}")
    wait(browser, "page.btForm && page.btParams.length > 0")
    browser.click("#bt-dataset option[value='coinbase_BTC-USD_1d']")
    browser.click("#bt-strategy option[value='sma_cross']")
    wait(browser, "page.btParams.includes('fast')")
    browser.type("#bt-param-fast", "fast")
    browser.click("#backtest-form button[type=submit]")
    page = wait(browser, "page.btFastError !== ''")
    assert live.get("backtests")["total"] == 0  # refused at the door: nothing queued
    browser.type("#bt-param-fast", "10")
    browser.type("#bt-start", "2015-01-08")
    browser.click("#backtest-form button[type=submit]")
    page = wait(browser, "page.report !== null && page.report.canvases > 0", timeout=90)
    (job,) = live.get("backtests")["backtests"]
    stored = live.get(f"backtests/{job['id']}")
    assert stored["status"] == "done" and stored["request"]["params"]["fast"] == 10
    metrics = stored["result"]["metrics"]
    assert page["report"]["title"].startswith(f"Backtest {job['id']}: sma_cross on coinbase_BTC")
    assert page["report"]["metrics"]["total_return"] == f"{100 * metrics['total_return']:,.2f} %"
    assert page["report"]["metrics"]["n_trades"] == str(metrics["n_trades"])
    page = wait(browser, "page.backtests.length === 1")
    assert page["backtests"] == [["done", 1]]
    shot(browser, "backtest-report")
    # the full report, saved by the page as a file: the job's own, whole, with its charts
    browser.click("#report-download")
    downloads = browser.download_dir / f"n1v1-backtest-{job['id']}.html"
    wait_until(downloads.exists, "the report's download", 20)
    saved = downloads.read_text(encoding="utf-8")
    assert saved.startswith("<!DOCTYPE html>") and f"(backtest {job['id']})" in saved
    assert set(chart_specs(saved)) == {"equity", "drawdown", "price-0", "pnl-distribution"}
    assert json.loads(re.search(r'id="metrics-json">(.*?)</script>', saved, re.S).group(1))[
        "final_equity"
    ] == pytest.approx(metrics["final_equity"])


def test_a_backtest_of_a_file_on_the_server_is_launched_from_the_page(
    live: Live, browser: WebDriver
) -> None:
    """The form offers the upload directory's files with what they hold (a broken one disabled,
    with why); the report of a file's backtest names the file."""
    browser.get("about:blank")
    browser.get(f"{live.base_url}/#token={live.admin}")
    page = wait(browser, f"page.btChoices.some((c) => c[0] === 'file:{UPLOADED}')")
    choices = {value: (text, disabled) for value, text, disabled in page["btChoices"]}
    text, disabled = choices[f"file:{UPLOADED}"]
    assert not disabled
    assert text == f"{UPLOADED} (LTC/USD, 1m, 3,887 bars, 2018-04-04 to 2018-04-06)"
    text, disabled = choices["file:broken.csv"]
    assert disabled and text.startswith("broken.csv (cannot be read: ")
    before = live.get("backtests")["total"]
    browser.click(f"#bt-dataset option[value='file:{UPLOADED}']")
    browser.click("#bt-strategy option[value='sma_cross']")
    wait(browser, "page.btParams.includes('fast')")
    browser.type("#bt-param-fast", "5")
    browser.type("#bt-start", "")
    browser.click("#backtest-form button[type=submit]")
    page = wait(
        browser, f"page.report !== null && page.report.title.includes('on file {UPLOADED}')", 90
    )
    listed = live.get("backtests")
    assert listed["total"] == before + 1
    job = listed["backtests"][0]
    assert job["request"]["file"] == UPLOADED and job["status"] == "done"
    stored = live.get(f"backtests/{job['id']}")["result"]["metrics"]
    assert page["report"]["metrics"]["n_trades"] == str(stored["n_trades"])
    shot(browser, "backtest-uploaded-file")


@pytest.mark.parametrize("who", ["admin", "read"])
def test_the_page_passes_the_accessibility_checker_and_works_from_the_keyboard(
    live: Live, browser: WebDriver, who: str
) -> None:
    token = live.admin if who == "admin" else live.read
    browser.get("about:blank")
    browser.get(f"{live.base_url}/#token={token}")
    wait(browser, "page.lastUpdated.startsWith('last updated') && page.orders.length > 0")
    problems = accessibility_problems(browser)
    assert problems == [], "\n".join(f"{p['id']}: {p['help']} {p['nodes']}" for p in problems)
    if who == "admin":  # the controls work from the keyboard alone
        browser.press_enter("#pause-btn")
        wait(browser, "page.result.startsWith('Paused') && page.risk.paused === 'yes'")
        assert browser.execute("return document.activeElement.id") == "pause-btn"
        browser.press_enter("#resume-btn")
        wait(browser, "page.result.startsWith('Resumed') && page.risk.paused === 'no'")
