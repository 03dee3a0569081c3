"""The dashboard page in a real headless Chromium against the real API over a real session.

A `TradingSession` paper-trades two bundled datasets into a SQLite store until its feed runs dry;
`create_api` serves that session on uvicorn; Debian's Chromium loads `/#token=...` and the test
reads what the page shows through chromedriver's W3C WebDriver HTTP protocol (plain `requests`,
no selenium), comparing it with the session and with the API's own answers.

Chromium is a system package: without it the test skips, except where CI_REQUIRE_SHARED=1 says
it must run (CI installs it).
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from dashboard_api import LocalBackend, free_port, serve_app

from n1v1.config import Settings
from n1v1.data.datasets import load_dataset
from n1v1.live.config import StrategySlot
from n1v1.live.replay import PacedReplay
from n1v1.live.session import TradingSession
from n1v1.serve.api import create_api, hash_token
from n1v1.store import create_store

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TWAP = {
    "symbol": "LTC/USD",
    "side": "buy",
    "qty": "3",
    "algo": "twap",
    "duration": "30min",
    "interval": "5min",
}
BARS = 500  # of each dataset: ends with both positions open and well over 20 orders
PAGE_WAIT_S = 20.0
FEED_LABEL = "500 bundled one-minute bars of BTC/USD and LTC/USD from 2018-04-04, unpaced"

# What the page shows, read in one go (rows of the "no data" placeholder do not count).
READ_PAGE = """
const q = (sel) => document.querySelector(sel);
const rows = (table) => Array.from(
  document.querySelectorAll(table + " tbody tr:not(.empty-row)"));
return {
  state: q("#status-state").textContent,
  equity: q("#equity-value").textContent,
  equityCount: q("#equity-count").textContent,
  equityLegend: q("#equity-legend").textContent,
  equityCanvases: document.querySelectorAll("#equity-chart canvas").length,
  positions: rows("#positions-table").map((tr) => [
    tr.querySelector(".col-symbol").textContent, tr.querySelector(".col-qty").textContent]),
  orders: rows("#orders-table").map(
    (tr) => tr.querySelector(".col-client_order_id").textContent),
  parents: rows("#algo-table").map((tr) => [
    tr.querySelector(".col-parent_id").textContent, tr.querySelector(".col-progress").textContent,
    tr.querySelector(".col-status").textContent]),
  signals: rows("#signals-table").map((tr) => [
    tr.querySelector(".col-symbol").textContent, tr.querySelector(".col-strategy").textContent]),
  pnlSymbols: rows("#pnl-symbol-table").map(
    (tr) => Array.from(tr.children).map((td) => td.textContent)),
  pnlStrategies: rows("#pnl-strategy-table").map((tr) => tr.children[0].textContent),
  tradesTotal: q("#trades-total").textContent,
  tradePnls: rows("#trades-table").map((tr) => tr.querySelector(".col-pnl").textContent),
  currencyShown: q("#pnl-symbol-table .ccy").textContent,
  trades: rows("#trades-table").map((tr) => [
    tr.querySelector(".col-symbol").textContent, tr.querySelector(".col-exit_time").textContent,
    tr.querySelector(".col-bars_held").textContent]),
  marketSymbol: q("#market-symbol").value,
  marketSymbols: Array.from(q("#market-symbol").options).map((o) => o.value),
  marketCount: q("#market-count").textContent,
  marketCanvases: document.querySelectorAll("#market-chart canvas").length,
  marketLines: q("#market-lines").textContent,
  health: Object.fromEntries(Array.from(q("#health-list").querySelectorAll("dt")).map(
    (dt) => [dt.textContent, dt.nextElementSibling.textContent])),
  feedShown: !q("#feed-panel").hidden,
  feedLabel: q("#feed-label").textContent,
  feedPhase: q("#feed-phase").textContent,
  hash: location.hash,
  lastUpdated: q("#last-updated").textContent,
  error: q("#error").textContent,
  formShown: !q("#token-form").hidden,
  dashboardShown: !q("#dashboard").hidden,
  tokenStored: sessionStorage.getItem("n1v1.token") !== null,
};
"""


@dataclass
class LiveApi:
    base_url: str
    token: str
    session: TradingSession

    def get(self, path: str) -> Any:
        response = requests.get(
            f"{self.base_url}/api/v1/{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()


@contextmanager
def running_api(tmp: Path) -> Iterator[LiveApi]:
    """A session that has traded its whole replay, served by the real API; all stopped on exit."""
    frames = {
        "BTC/USD": load_dataset("coinbase_BTC-USD_1m").loc["2018-04-04":].iloc[:BARS],
        "LTC/USD": load_dataset("coinbase_LTC-USD_1m").iloc[:BARS],
    }
    store = create_store(f"sqlite:///{tmp}/s.db")
    settings = Settings.model_validate({"risk": {"fraction": 0.4, "stop_loss_pct": 0.02}})
    slots = [
        StrategySlot(name="sma_cross", params={"fast": 5, "slow": 20}),
        StrategySlot(name="rsi"),
        StrategySlot(name="macd"),
    ]
    feed = PacedReplay(frames, 0, label=FEED_LABEL)
    session: TradingSession | None = None

    def operator(_latency: float, _engine: object) -> None:
        """At step 100 an operator sends a TWAP, which the page must list with its progress."""
        assert session is not None
        if session.steps_done == 100:
            session.submit("algo_order", TWAP, "operator")

    session = TradingSession(settings, slots, feed, store, window=200, on_step=operator)
    token = secrets.token_urlsafe(24)
    with ExitStack() as stack:
        session.start()
        stack.callback(session.stop)
        deadline = time.monotonic() + 120.0
        # the snapshot is published after each step, so once every step is done it stays put
        while not (feed.exhausted and session.snapshot.get("step") == len(feed)):
            if not session.alive:
                raise RuntimeError(f"session died: {session.state} {session.failure}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"replay not done after 120 s: {session.snapshot.get('step')}")
            time.sleep(0.1)
        app = create_api(LocalBackend(session), store, admin_token_hash=hash_token(token))
        base_url = stack.enter_context(serve_app(app))
        yield LiveApi(base_url, token, session)


class WebDriver:
    """The few W3C WebDriver commands the test needs, over HTTP to a running chromedriver."""

    def __init__(
        self, driver_url: str, capabilities: dict[str, Any], download_dir: Path | None = None
    ) -> None:
        self.driver_url = driver_url
        self.download_dir = download_dir or Path("/nonexistent")  # where downloads land
        created = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session_url = f"/session/{created['sessionId']}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = requests.request(method, self.driver_url + path, json=body, timeout=60)
        value = response.json().get("value")
        if response.status_code != 200:
            error = value.get("error") if isinstance(value, dict) else value
            message = value.get("message") if isinstance(value, dict) else ""
            raise RuntimeError(f"WebDriver {method} {path}: {error}: {message}")
        return value

    def get(self, url: str) -> None:
        self._call("POST", f"{self.session_url}/url", {"url": url})

    def execute(self, script: str, *args: Any) -> Any:
        return self._call(
            "POST", f"{self.session_url}/execute/sync", {"script": script, "args": list(args)}
        )

    def _element(self, css: str) -> str:
        found = self._call(
            "POST", f"{self.session_url}/element", {"using": "css selector", "value": css}
        )
        return str(next(iter(found.values())))

    def click(self, css: str) -> None:
        """A real click on the element (scrolled into view), as a user's; found again if the
        page re-rendered it between finding and clicking (a stale reference)."""
        for attempt in range(3):
            try:
                self._call("POST", f"{self.session_url}/element/{self._element(css)}/click", {})
                return
            except RuntimeError as exc:
                if "stale element" not in str(exc) or attempt == 2:
                    raise

    def type(self, css: str, text: str) -> None:
        """Clear the field and type `text` into it, key by key; into the field found again if
        the page re-rendered it meanwhile (a stale reference), as a user would retype."""
        for attempt in range(3):
            try:
                element = self._element(css)
                self._call("POST", f"{self.session_url}/element/{element}/clear", {})
                self._call("POST", f"{self.session_url}/element/{element}/value", {"text": text})
                return
            except RuntimeError as exc:
                if "stale element" not in str(exc) or attempt == 2:
                    raise

    def press_enter(self, css: str) -> None:
        """The Enter key sent to the element (it takes the focus), as a keyboard user does."""
        element = self._element(css)
        self._call("POST", f"{self.session_url}/element/{element}/value", {"text": "\ue007"})

    def execute_async(self, script: str, *args: Any) -> Any:
        """A script that calls its last argument (`arguments[arguments.length - 1]`) when done."""
        return self._call(
            "POST", f"{self.session_url}/execute/async", {"script": script, "args": list(args)}
        )

    def wheel(self, css: str, delta_y: int) -> None:
        """A mouse-wheel turn over the middle of the element (negative: away from the user, which
        zooms a chart in), as a user's wheel sends it."""
        origin = {"element-6066-11e4-a52e-4f735466cecf": self._element(css)}
        self._call(
            "POST",
            f"{self.session_url}/actions",
            {
                "actions": [
                    {
                        "type": "wheel",
                        "id": "wheel",
                        "actions": [
                            {
                                "type": "scroll",
                                "x": 0,
                                "y": 0,
                                "deltaX": 0,
                                "deltaY": delta_y,
                                "origin": origin,
                            }
                        ],
                    }
                ]
            },
        )

    def console_errors(self) -> list[str]:
        """The errors the page's scripts logged or threw since the last call."""
        entries = self._call("POST", f"{self.session_url}/se/log", {"type": "browser"})
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._call("GET", f"{self.session_url}/screenshot")))

    def quit(self) -> None:
        self._call("DELETE", self.session_url)

    def security_messages(self) -> list[str]:
        """What the browser reported about security since the last call: a Content-Security-
        Policy that blocked a script, a style or a fetch of the page shows up here."""
        entries = self._call("POST", f"{self.session_url}/se/log", {"type": "browser"})
        return [e["message"] for e in entries if e.get("source") == "security"]

    def wait_for(
        self, ready: str, timeout: float = PAGE_WAIT_S, reader: str = READ_PAGE
    ) -> dict[str, Any]:
        """Read the page (`reader`) until the JS expression `ready` (over `page`) holds; the last
        reading."""
        deadline = time.monotonic() + timeout
        while True:
            page = self.execute(reader)
            if self.execute(f"const page = arguments[0]; return Boolean({ready});", page):
                return page
            if time.monotonic() > deadline:
                raise AssertionError(f"page never showed {ready!r} in {timeout} s; it shows {page}")
            time.sleep(0.25)


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    if os.environ.get("CI_REQUIRE_SHARED") == "1":
        pytest.fail(f"{', '.join(missing)} missing but CI_REQUIRE_SHARED=1 (CI installs chromium)")
    pytest.skip(f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)")


@contextmanager
def headless_chromium(tmp: Path) -> Iterator[WebDriver]:
    """chromedriver plus one headless Chromium session; both killed on exit, whatever happened."""
    port = free_port()
    log = (tmp / "chromedriver.log").open("wb")
    # its own process group, so Chromium's helpers can be killed with it if quitting fails
    driver = subprocess.Popen(
        [str(CHROMEDRIVER), f"--port={port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    driver_url = f"http://127.0.0.1:{port}"
    browser: WebDriver | None = None
    try:
        deadline = time.monotonic() + 20.0
        while True:
            try:
                if requests.get(f"{driver_url}/status", timeout=2).json()["value"]["ready"]:
                    break
            except requests.ConnectionError:
                pass
            if driver.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromedriver did not start; see {tmp / 'chromedriver.log'}")
            time.sleep(0.1)
        browser = WebDriver(
            driver_url,
            {
                "browserName": "chrome",
                "goog:loggingPrefs": {"browser": "ALL"},  # CSP violations, for the tests
                "goog:chromeOptions": {
                    "binary": str(CHROMIUM),
                    # a download (the dashboard's backtest report) lands here, unasked
                    "prefs": {
                        "download.default_directory": str(tmp / "downloads"),
                        "download.prompt_for_download": False,
                    },
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        # offline but for this machine: a page that needs a CDN shows it
                        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                        f"--user-data-dir={tmp / 'chromium-profile'}",
                        "--window-size=1280,1400",
                    ],
                },
            },
            download_dir=tmp / "downloads",
        )
        yield browser
    finally:
        if browser is not None:
            # if quitting fails, the process-group kill below still ends Chromium
            with suppress(requests.RequestException, RuntimeError):
                browser.quit()
        driver.terminate()
        try:
            driver.wait(10)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait(10)
        with suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    _require_browser()  # nothing to run the page in: do not start the session either
    with running_api(tmp_path_factory.mktemp("dashboard-store")) as live:
        yield live


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    _require_browser()
    with headless_chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def test_dashboard_shows_the_running_session(api: LiveApi, browser: WebDriver) -> None:
    snap = api.session.snapshot
    assert snap["positions"], "precondition: the replay should end with open positions"
    newest_orders = api.get("orders?limit=20")
    equity = api.get("equity?benchmark=true&max_points=400")
    signals = api.get("signals?limit=20")
    assert newest_orders["total"] > 20, "precondition: more orders than the page lists"

    browser.get(f"{api.base_url}/#token={api.token}")
    page = browser.wait_for("page.orders.length > 0 && page.lastUpdated.startsWith('last updated')")

    assert page["error"] == ""
    # the replay has handed out its last bar: a state of its own, and said in words
    assert snap["state"] == "replay_finished" and page["state"] == "replay finished"
    assert page["feedShown"] and page["feedLabel"] == FEED_LABEL
    replay_end = snap["feed"]["replay_end"].replace("T", " ").replace("+00:00", "Z")
    assert page["feedPhase"].startswith(f"Replay finished at {replay_end}: no further bars")
    assert page["equity"].replace(",", "") == f"{snap['equity']:.2f}"
    assert page["equityCount"] == f"{len(equity['points'])} of {equity['total']} points"
    assert len(equity["points"]) > 10 and page["equityCanvases"] > 0
    _, value, _, under, hold = equity["points"][-1]
    assert page["equityLegend"] == (
        f"equity {value:,.2f} · buy & hold {hold:,.2f} · drawdown {100 * under:.2f} %"
    )
    shown = {symbol: float(qty.replace(",", "")) for symbol, qty in page["positions"]}
    assert shown == pytest.approx({p["symbol"]: p["qty"] for p in snap["positions"]}, abs=1e-6)
    assert len(page["orders"]) == 20
    assert page["orders"] == [o["client_order_id"] for o in newest_orders["orders"]]
    assert page["signals"] == [[s["symbol"], s["strategy"]] for s in signals["signals"]]
    # health: what the status says, in words
    health = page["health"]
    assert health["engine"] == "replay finished"
    assert health["lease"].startswith(f"{snap['lease']['holder']} (token {snap['lease']['token']}")
    assert health["store"] == "reachable" and health["venue"] == "paper (simulated fills)"
    assert health["last step"].startswith("taken ") and health["last step"].endswith(" ago")
    assert health["last bar"] == snap["last_bar_time"].replace("T", " ").replace("+00:00", "Z")
    # the market chart: the first symbol's candles and fills, drawn by the vendored library
    symbol = snap["symbols"][0]
    candles = api.get(f"bars?limit=500&symbol={symbol}")
    assert len(candles["bars"]) == 500 and len(candles["fills"]) > 0
    page = browser.wait_for("page.marketCount !== ''")
    assert (page["marketSymbol"], page["marketSymbols"]) == (symbol, snap["symbols"])
    levels = candles["levels"]  # the stop resting under the open BTC/USD position
    assert levels and {lv["purpose"] for lv in levels} <= {"stop_loss", "take_profit"}
    resting = ", ".join(f"{lv['purpose'].replace('_', ' ')} {lv['price']:,.2f}" for lv in levels)
    assert page["marketCount"] == (
        f"500 bars, {len(candles['fills'])} fills, {len(levels)} resting ({resting})"
    )
    assert page["marketCanvases"] > 0
    # the strategies' own lines where they have them: sma_cross's two averages
    (fast, slow) = candles["lines"]
    assert (fast["label"], slow["label"]) == ("sma(5)", "sma(20)")
    assert (len(fast["points"]), len(slow["points"])) == (500 - 4, 500 - 19)  # warm-up left out
    closes = [b[4] for b in candles["bars"]]
    assert fast["points"][-1][1] == pytest.approx(sum(closes[-5:]) / 5)
    assert page["marketLines"] == "lines: sma_cross sma(5), sma_cross sma(20)"
    (parent,) = api.get("algo-orders?limit=20")["algo_orders"]
    assert parent["status"] == "done" and len(parent["children"]) == 6
    assert page["parents"] == [[parent["parent_id"], "100.0 %", "done"]]
    trades = api.get("trades?limit=20")["trades"]
    assert page["trades"] == [
        [
            t["symbol"],
            "open" if t["exit_time"] is None else t["exit_time"][:19].replace("T", " ") + "Z",
            str(t["bars_held"]),
        ]
        for t in trades
    ]
    assert any(t["bars_held"] > 0 for t in trades)
    # P&L by symbol: the status's summary (the backtest's formulas), with the currency
    summary = snap["trades_summary"]
    shown = {row[0]: row for row in page["pnlSymbols"]}
    assert set(shown) == {*(r["symbol"] for r in summary["by_symbol"]), "all"}
    for r in summary["by_symbol"]:
        assert shown[r["symbol"]][1] == str(r["n_trades"])
        assert shown[r["symbol"]][2] == f"{100 * r['win_rate']:.2f} %"
    assert shown["all"][1] == str(summary["all"]["n_trades"]) and page["currencyShown"] == "(USD)"
    assert page["pnlStrategies"] == [x["id"] for x in snap["strategies"]]
    # trades: paged, filtered, sorted
    total = api.get("trades?limit=1")["total"]
    assert page["tradesTotal"] == f"(1–20 of {total})"
    browser.click("#trades-older")
    older = api.get("trades?limit=20&offset=20")["trades"]
    page = browser.wait_for(f"page.tradesTotal === '(21–{min(40, total)} of {total})'")
    assert page["tradePnls"] == [f"{t['pnl']:+,.2f}" for t in older]
    browser.click("#trades-table button[data-sort='pnl']")  # largest first
    page = browser.wait_for("page.tradePnls.length > 0")
    assert page["tradePnls"] == [
        f"{t['pnl']:+,.2f}" for t in sorted(older, key=lambda t: -t["pnl"])
    ]
    browser.click("#trades-symbol option[value='LTC/USD']")
    ltc = api.get("trades?limit=20&symbol=LTC/USD")
    page = browser.wait_for(f"page.tradesTotal === '(1–{len(ltc['trades'])} of {ltc['total']})'")
    assert {t[0] for t in page["trades"]} == {"LTC/USD"}

    # the token left the address bar but stays for this tab's next refreshes
    assert api.token not in page["hash"] and page["hash"] == ""
    assert page["tokenStored"]
    # all of it under the page's Content-Security-Policy, which blocked nothing
    csp = requests.get(api.base_url, timeout=10).headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in csp and "frame-ancestors 'none'" in csp
    assert browser.security_messages() == []


def test_a_wrong_token_brings_back_the_token_form(api: LiveApi, browser: WebDriver) -> None:
    browser.get("about:blank")
    browser.get(f"{api.base_url}/#token=not-the-token")
    page = browser.wait_for("page.formShown")

    assert not page["dashboardShown"]
    assert "invalid token" in page["error"]  # the API's error message, shown as text
    assert not page["tokenStored"]  # a rejected token is not retried on the next refresh
    assert page["hash"] == ""


def test_the_api_docs_render_every_operation_offline(api: LiveApi, browser: WebDriver) -> None:
    # Chromium resolves no host but 127.0.0.1 here: Swagger UI must come from this server
    spec = requests.get(f"{api.base_url}/openapi.json", timeout=10).json()
    operations = sum(
        1
        for methods in spec["paths"].values()
        for m in methods
        if m in ("get", "post", "put", "delete")
    )
    assert operations >= 17
    browser.get(f"{api.base_url}/docs")
    deadline = time.monotonic() + PAGE_WAIT_S
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = browser.execute(
            "return {ops: document.querySelectorAll('.opblock').length,"
            " title: (document.querySelector('.info .title') || {}).textContent || ''};"
        )
        if shown["ops"] == operations:
            break
        time.sleep(0.25)
    assert shown["ops"] == operations, shown
    assert shown["title"].startswith("N1V1")
    # every operation opened (Swagger UI styles them from script), under the page's CSP
    browser.execute(
        "document.querySelectorAll('.opblock-summary-control').forEach((b) => b.click())"
    )
    deadline = time.monotonic() + PAGE_WAIT_S
    opened = 0
    while opened < operations and time.monotonic() < deadline:
        time.sleep(0.25)
        opened = browser.execute("return document.querySelectorAll('.opblock.is-open').length;")
    assert opened == operations
    csp = requests.get(f"{api.base_url}/docs", timeout=10).headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "script-src 'self' 'sha256-" in csp
    assert browser.security_messages() == []
