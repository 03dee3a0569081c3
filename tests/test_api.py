"""The HTTP API (`create_api`) over a real TradingSession, served by uvicorn, called with requests.

No Ray: `LocalBackend` answers the backend protocol from a session in this process, as the
benchmark's bare-uvicorn twin does. The session trades two bundled one-minute datasets and is held
at step 30 (`GatedFeed`); tests that need later bars let it go on to an exact step, so every
expected answer follows from the steps taken. The route tests enumerate `app.routes`, so a route
added later is checked without editing them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from dashboard_api import LocalBackend, serve_app
from fastapi import FastAPI
from report_pages import chart_specs
from session_worker import GatedFeed, make_session, market, run_to, settings, wait_until

from n1v1.backtest.runner import run_backtest
from n1v1.config import Settings
from n1v1.data.datasets import dataset_names
from n1v1.engine.algo_orders import parent_id_for
from n1v1.live.config import StrategySlot
from n1v1.live.session import TradingSession
from n1v1.serve.api import API, TokenBucket, create_api, downsample, hash_token
from n1v1.store import Store, StoreReader, create_store
from n1v1.store.backtests import create_backtest
from n1v1.strategies.registry import create_strategy

ADMIN = "admin-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
WRONG = "wrong-token-0123456789abcdef"
START_STEP = 30  # BTC/USD has an open position with a working stop order here
JOB = "bt-0001"  # a stored backtest, so GET backtests/{job_id} has something to read
PARENT_ORDER = {
    "symbol": "LTC/USD",
    "side": "buy",
    "qty": "1",
    "duration": "1h",
    "interval": "30min",
}
# the session's first parent, accepted at the bar of step START_STEP
PARENT = parent_id_for(settings().backtest.run_id, market()["BTC/USD"].index[START_STEP - 1], 0)
MUTATING = {"POST", "PUT", "DELETE", "PATCH"}


@dataclass
class Live:
    """A running session held at a step, and its store."""

    session: TradingSession
    feed: GatedFeed
    store: Store


@dataclass
class Client:
    """The served app and a requests session; `call` sends the admin token unless told."""

    app: FastAPI
    base_url: str
    http: requests.Session
    store: Store

    def call(
        self, method: str, path: str, token: str | None = ADMIN, **kwargs: Any
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers.update(kwargs.pop("headers", {}))
        return self.http.request(
            method, f"{self.base_url}{path}", headers=headers, timeout=30, **kwargs
        )


@contextmanager
def served(live: Live, backend: Any = None, **options: Any) -> Iterator[Client]:
    """The app over `live`; every request of these tests comes from 127.0.0.1, so the limit on
    requests without a valid token is lifted unless a test sets it (tests/test_api_hostile.py).
    An /events stream lasts a second here (the route tests read every route to its end)."""
    options = {
        "anonymous_rate_per_s": 1000.0,
        "anonymous_burst": 1000,
        "event_stream_s": 1.0,
        **options,
    }
    app = create_api(
        backend or LocalBackend(live.session),
        live.store,
        admin_token_hash=hash_token(ADMIN),
        read_token_hash=hash_token(READ),
        **options,
    )
    with serve_app(app) as base_url, requests.Session() as http:
        yield Client(app, base_url, http, live.store)


@contextmanager
def running_session(tmp_path: Path, parent: bool = False) -> Iterator[Live]:
    store = create_store(f"sqlite:///{tmp_path}/s.db")
    feed = GatedFeed(market())
    session = make_session(store, feed, config=settings(max_open_positions=None))
    session.start()
    try:
        wait_until(lambda: session.state == "running", "the session to take the lease")
        run_to(session, feed, START_STEP)
        create_backtest(store, JOB, {"dataset": "coinbase_BTC-EUR_1m"}, "admin:test")
        if parent:  # cancelled at once (its one child too): GET algo-orders/{id} reads it
            placed = session.submit("algo_order", PARENT_ORDER, "test").result(30)["algo_order"]
            session.submit("algo_cancel", {"parent_id": placed["parent_id"]}, "test").result(30)
            assert placed["parent_id"] == PARENT
        yield Live(session, feed, store)
    finally:
        session.stop()
        store.dispose()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with running_session(tmp_path) as held:
        yield held


@pytest.fixture
def api(live: Live) -> Iterator[Client]:
    with served(live) as client:
        yield client


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One served session for the tests that change nothing (refused or read-only requests)."""
    with (
        running_session(tmp_path_factory.mktemp("shared"), parent=True) as held,
        served(held) as client,
    ):
        yield client


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) of every /api/v1 route, however it was added (HEAD aside: it has
    no body to check); path parameters get real-looking values."""
    values = {"job_id": JOB, "client_order_id": "no-such-order", "parent_id": PARENT}
    out = []
    for route in app.routes:
        template = getattr(route, "path", "")
        if template.startswith(API):
            path = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), template)
            methods = set(getattr(route, "methods", None) or {"GET"}) - {"HEAD"}
            out.extend((method, path) for method in sorted(methods))
    return sorted(out)


def _error(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def _fields(response: requests.Response) -> list[str]:
    return [f["field"] for f in _error(response)["details"]["fields"]]


# -- authentication --------------------------------------------------------------------------------
def test_the_route_list_covers_the_api(shared: Client) -> None:
    routes = api_routes(shared.app)
    assert len(routes) >= 17
    for known in [
        ("GET", "/api/v1/status"),
        ("POST", "/api/v1/orders"),
        ("DELETE", "/api/v1/orders/no-such-order"),
        ("PUT", "/api/v1/config"),
    ]:
        assert known in routes


@pytest.mark.parametrize("token", [None, WRONG], ids=["no-token", "wrong-token"])
def test_every_api_route_answers_401_without_a_valid_token(
    shared: Client, token: str | None
) -> None:
    answers = {}
    for method, path in api_routes(shared.app):
        response = shared.call(method, path, token=token)
        error = _error(response)
        answers[f"{method} {path}"] = (response.status_code, error["code"])
    assert set(answers.values()) == {(401, "unauthorized")}, answers


def changes_state(method: str, path: str) -> bool:
    """What the API treats as a change: every POST/PUT/DELETE except predict (a computation)."""
    return method in MUTATING and path != "/api/v1/predict"


def test_the_read_only_token_gets_403_on_every_change_and_200_on_every_read(
    shared: Client,
) -> None:
    answers = {}
    for method, path in api_routes(shared.app):
        if method in MUTATING and not changes_state(method, path):
            continue  # predict: covered below
        response = shared.call(method, path, token=READ)
        if changes_state(method, path):
            answers[f"{method} {path}"] = (response.status_code, _error(response)["code"])
        else:
            answers[f"{method} {path}"] = (response.status_code, "ok")
    expected = {
        key: (403, "forbidden") if key.split()[0] in MUTATING else (200, "ok") for key in answers
    }
    expected[f"GET {API}/backtests/{JOB}/report"] = (404, "ok")  # read, but it never ran
    assert answers == expected


def test_the_read_only_token_may_predict_and_predict_is_not_audited(
    api: Client, live: Live
) -> None:
    response = api.call("POST", "/api/v1/predict", token=READ, json={"model": "m", "rows": [[1]]})
    assert response.status_code == 503  # past auth: the local backend has no model service
    assert _error(response)["code"] == "unavailable"
    assert StoreReader(live.store).audit_log() == []


def test_healthz_needs_no_token(shared: Client) -> None:
    response = shared.call("GET", "/healthz", token=None)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


# -- bad requests ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"symbol": "BTC/USD", "side": "buy", "qty": "x"}, "body.qty"),
        ({"symbol": "BTC/USD", "side": "buy", "qty": 0.1, "colour": "red"}, "body.colour"),
        ({"symbol": "BTC/USD", "side": "hold", "qty": 0.1}, "body.side"),
    ],
)
def test_a_bad_order_is_a_422_naming_the_field(
    api: Client, body: dict[str, Any], field: str
) -> None:
    response = api.call("POST", "/api/v1/orders", json=body)
    assert response.status_code == 422
    assert _error(response)["code"] == "invalid_request"
    assert _fields(response) == [field]


def test_a_misspelt_risk_key_in_config_is_a_422_naming_it(api: Client, live: Live) -> None:
    response = api.call("PUT", "/api/v1/config", json={"risk": {"max_drawdwn": 0.2}})
    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "invalid_request"
    assert "body.risk.max_drawdwn" in error["message"]
    (field,) = error["details"]["fields"]
    assert field["field"] == "body.risk.max_drawdwn"
    assert field["message"] == "unknown key; did you mean max_drawdown?"
    assert live.session.snapshot["live_config"]["risk"] == {}


def test_an_unparseable_equity_start_is_a_422_naming_the_query_field(api: Client) -> None:
    response = api.call("GET", "/api/v1/equity", params={"start": "garbage"})
    assert response.status_code == 422
    assert _fields(response) == ["query.start"]


def test_a_body_that_is_not_json_says_where_it_breaks(shared: Client) -> None:
    # `{"reason": x}`: the x is character 12 of line 1 (11 characters before it)
    response = shared.call(
        "POST",
        "/api/v1/pause",
        data='{"reason": x}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "invalid_request"
    assert error["message"] == (
        "invalid request: body: not valid JSON (line 1, column 12: Expecting value)"
    )
    assert _fields(response) == ["body"]  # not "body.11", a character position


def test_a_json_error_on_a_later_line_names_that_line(shared: Client) -> None:
    # line 2 is `  "reason": oops`: two spaces, 9 characters of `"reason":`, a space, then o (13)
    response = shared.call(
        "PUT",
        "/api/v1/config",
        data='{\n  "reason": oops\n}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "not valid JSON (line 2, column 13: Expecting value)" in _error(response)["message"]


@pytest.mark.parametrize(
    ("content_type", "got"),
    [(None, "no Content-Type header"), ("text/plain", "Content-Type text/plain")],
    ids=["missing", "text-plain"],
)
def test_a_json_body_without_the_json_content_type_gets_a_hint(
    shared: Client, content_type: str | None, got: str
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = shared.call(
        "POST",
        "/api/v1/orders",
        data='{"symbol": "LTC/USD", "side": "buy", "qty": 1}',
        headers=headers,
    )
    assert response.status_code == 422
    error = _error(response)
    assert error["message"] == (
        f"invalid request: body: send Content-Type: application/json (got {got})"
    )
    assert error["details"]["fields"] == [
        {
            "field": "body",
            "message": f"send Content-Type: application/json (got {got})",
            "type": "content_type",
        }
    ]


def test_an_empty_body_asks_for_a_json_object(shared: Client) -> None:
    response = shared.call("POST", "/api/v1/pause")
    assert response.status_code == 422
    assert _error(response)["message"] == (
        "invalid request: body: a JSON object is required (send {} for no options)"
    )


def test_a_body_over_the_size_limit_is_a_413(live: Live) -> None:
    with served(live, max_body_bytes=1000) as client:
        big = {"symbol": "BTC/USD", "side": "buy", "qty": 0.1, "pad": "x" * 1000}
        response = client.call("POST", "/api/v1/orders", json=big)
        small = client.call("POST", "/api/v1/pause", json={"reason": "x" * 100})
    assert response.status_code == 413
    assert _error(response)["code"] == "payload_too_large"
    assert small.status_code == 200


def test_the_fourth_quick_request_over_a_burst_of_three_is_a_429_with_retry_after(
    live: Live,
) -> None:
    # One token per 1000 s: however slow the machine, no token comes back between requests.
    with served(live, rate_limit_per_s=0.001, rate_burst=3) as client:
        responses = [client.call("GET", "/api/v1/status") for _ in range(4)]
        other_token = client.call("GET", "/api/v1/status", token=READ)
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    refused = responses[3]
    assert _error(refused)["code"] == "rate_limited"
    assert 990 < int(refused.headers["Retry-After"]) <= 1000
    assert other_token.status_code == 200  # one bucket per token


# -- the audit log ---------------------------------------------------------------------------------
def test_every_change_request_is_audited_with_actor_and_status_but_never_the_token(
    live: Live,
) -> None:
    admin, read = f"admin:{hash_token(ADMIN)[:8]}", f"read:{hash_token(READ)[:8]}"

    def refused() -> dict[str, Counter[str]]:
        """Refused requests by actor, from the summaries (one per caller and window)."""
        out: dict[str, Counter[str]] = {}
        for entry in StoreReader(live.store).audit_log():
            if "refused" in entry["details"]:
                out.setdefault(entry["actor"], Counter()).update(entry["details"]["attempts"])
        return out

    # Refused requests are summarised per caller and window (0.5 s here, a minute by default).
    with served(live, refusal_window_s=0.5) as api:
        assert api.call("POST", "/api/v1/pause", json={"reason": "audit"}).status_code == 200
        assert api.call("POST", "/api/v1/pause", token=None, json={}).status_code == 401
        assert api.call("POST", "/api/v1/pause", token=WRONG, json={}).status_code == 401
        assert api.call("POST", "/api/v1/pause", token=READ, json={}).status_code == 403
        assert api.call("POST", "/api/v1/orders", json={"qty": "x"}).status_code == 422
        assert api.call("GET", "/api/v1/status").status_code == 200  # a read: not audited
        wait_until(lambda: set(refused()) == {"anonymous", read}, "the summaries")

    log = StoreReader(live.store).audit_log()
    changes = [e for e in log if "refused" not in e["details"]]
    assert [(e["actor"], e["action"], e["details"]["status"]) for e in changes] == [
        (admin, "POST /api/v1/pause", 200),
        (admin, "POST /api/v1/orders", 422),
    ]
    assert refused() == {
        "anonymous": Counter({"POST /api/v1/pause 401 unauthorized": 2}),
        read: Counter({"POST /api/v1/pause 403 forbidden": 1}),
    }
    for summary in (e for e in log if "refused" in e["details"]):
        assert (summary["action"], summary["details"]["client"]) == (
            "POST /api/v1/pause",
            "127.0.0.1",
        )
    for token in (ADMIN, READ, WRONG):
        assert token not in repr(log)


# -- orders, pause, kill switch --------------------------------------------------------------------
def test_a_manual_buy_is_201_and_listed_with_the_orders(api: Client) -> None:
    response = api.call(
        "POST", "/api/v1/orders", json={"symbol": "LTC/USD", "side": "buy", "qty": 2.0}
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["requested_qty"], body["qty"], body["resized"], body["adjustments"]) == (
        2.0,
        2.0,
        False,
        [],
    )
    (order,) = body["orders"]
    assert (order["symbol"], order["side"], order["qty"], order["purpose"]) == (
        "LTC/USD",
        "buy",
        2.0,
        "manual",
    )
    listed = api.call("GET", "/api/v1/orders", params={"symbol": "LTC/USD"}).json()["orders"]
    assert [o["client_order_id"] for o in listed if o["purpose"] == "manual"] == [
        order["client_order_id"]
    ]


def test_an_order_while_paused_is_a_409_naming_the_rule(api: Client) -> None:
    assert api.call("POST", "/api/v1/pause", json={"reason": "lunch"}).status_code == 200
    response = api.call(
        "POST", "/api/v1/orders", json={"symbol": "LTC/USD", "side": "buy", "qty": 2.0}
    )
    assert response.status_code == 409
    error = _error(response)
    assert error["code"] == "risk_rejected"
    assert error["details"] == {"rule": "paused", "requested_qty": 2.0}


def test_a_buy_over_the_cash_is_a_409_naming_the_rule_and_nothing_is_placed(
    api: Client, live: Live
) -> None:
    before = live.session.snapshot["working_orders"]
    cash = live.session.snapshot["cash"]
    response = api.call(
        "POST", "/api/v1/orders", json={"symbol": "LTC/USD", "side": "buy", "qty": 1_000_000}
    )
    assert response.status_code == 409
    error = _error(response)
    assert error["code"] == "risk_rejected" and "insufficient_cash" in error["message"]
    details = error["details"]
    assert (details["rule"], details["requested_qty"], details["cash"]) == (
        "insufficient_cash",
        1_000_000,
        cash,
    )
    price = live.session.last_bars["LTC/USD"].close
    # at most cash / (price x (1 + taker fee 0.001)) fits
    assert details["max_qty"] == pytest.approx(cash / (price * 1.001))
    assert live.session.snapshot["working_orders"] == before


def test_resize_true_cuts_the_order_and_the_response_says_from_what_to_what(
    api: Client, live: Live
) -> None:
    cash = live.session.snapshot["cash"]
    price = live.session.last_bars["LTC/USD"].close
    response = api.call(
        "POST",
        "/api/v1/orders",
        json={"symbol": "LTC/USD", "side": "buy", "qty": 1_000_000, "resize": True},
    )
    assert response.status_code == 201
    body = response.json()
    fits = cash / (price * 1.001)
    assert body["resized"] is True and body["requested_qty"] == 1_000_000
    rules = [(a["rule"], a["from_qty"]) for a in body["adjustments"]]
    assert rules[0] == ("insufficient_cash", 1_000_000)
    assert body["adjustments"][0]["to_qty"] == pytest.approx(fits)
    # then whole lots of 0.00000001 LTC (the bundled rule): at most one lot less
    assert fits - 1e-8 <= body["qty"] <= fits and body["orders"][0]["qty"] == body["qty"]


def test_a_sell_larger_than_the_long_only_closes_it(api: Client, live: Live) -> None:
    (held,) = api.call("GET", "/api/v1/positions").json()["positions"]
    assert held["symbol"] == "BTC/USD" and held["qty"] > 0, "precondition: a long BTC/USD"
    response = api.call(
        "POST", "/api/v1/orders", json={"symbol": "BTC/USD", "side": "sell", "qty": 5}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["qty"] == held["qty"] and body["resized"] is True
    (cut,) = body["adjustments"]
    assert (cut["rule"], cut["from_qty"], cut["to_qty"]) == ("reduce_only", 5, held["qty"])
    run_to(live.session, live.feed, START_STEP + 1)
    positions = api.call("GET", "/api/v1/positions").json()["positions"]
    assert [p["symbol"] for p in positions] == []  # flat, not short


@pytest.mark.parametrize(
    ("qty", "rule"),
    [(1e-9, "lot_size"), (0.001, "min_notional"), (0.123456789, "lot_size")],
)
def test_dust_and_off_lot_quantities_are_a_409_naming_the_instrument_rule(
    shared: Client, qty: float, rule: str
) -> None:
    # LTC/USD (bundled rules): lot 0.00000001, minimum notional 1 USD; 0.001 LTC is ~0.12 USD
    response = shared.call(
        "POST", "/api/v1/orders", json={"symbol": "LTC/USD", "side": "buy", "qty": qty}
    )
    assert response.status_code == 409
    assert _error(response)["details"]["rule"] == rule


def test_the_kill_switch_flattens_at_the_next_bar_and_resume_needs_a_reset(
    api: Client, live: Live
) -> None:
    buy = {"symbol": "LTC/USD", "side": "buy", "qty": 2.0}
    assert api.call("POST", "/api/v1/orders", json=buy).status_code == 201
    run_to(live.session, live.feed, 31)  # 00:30, both symbols have a bar: the buy fills
    held = {p["symbol"] for p in api.call("GET", "/api/v1/positions").json()["positions"]}
    assert held == {"BTC/USD", "LTC/USD"}, "precondition: both symbols held"

    positions = api.call("GET", "/api/v1/positions").json()["positions"]
    stops = [o["client_order_id"] for o in live.session.snapshot["working_orders"]]
    assert len(stops) == 2, "precondition: each position's stop-loss is working"
    response = api.call("POST", "/api/v1/kill-switch", json={"reason": "drill"})
    assert response.status_code == 200
    body = response.json()
    assert (body["engaged"], body["reason"]) == (True, "drill")
    assert sorted(o["client_order_id"] for o in body["cancelled_orders"]) == sorted(stops)
    assert {o["status"] for o in body["cancelled_orders"]} == {"cancelled"}
    assert sorted((p["symbol"], p["qty"]) for p in body["positions_flattened"]) == [
        (p["symbol"], p["qty"]) for p in positions
    ]
    assert sorted((o["symbol"], o["side"], o["qty"]) for o in body["flattening_orders"]) == sorted(
        (p["symbol"], "sell", p["qty"]) for p in positions
    )
    working = live.session.snapshot["working_orders"]
    assert sorted((o["symbol"], o["purpose"]) for o in working) == [
        ("BTC/USD", "kill_switch"),
        ("LTC/USD", "kill_switch"),
    ]
    # Each kill-switch order fills at its symbol's next open, step 32 (00:31) for both.
    run_to(live.session, live.feed, 32)
    assert api.call("GET", "/api/v1/positions").json()["positions"] == []

    refused = api.call("POST", "/api/v1/resume", json={})
    assert refused.status_code == 409 and _error(refused)["code"] == "conflict"
    assert "reset_kill_switch" in _error(refused)["message"]
    resumed = api.call("POST", "/api/v1/resume", json={"reset_kill_switch": True})
    assert resumed.status_code == 200
    assert api.call("GET", "/api/v1/risk").json()["kill_switch"]["engaged"] is False


def test_cancelling_an_unknown_order_is_a_404(api: Client) -> None:
    response = api.call("DELETE", "/api/v1/orders/no-such-order")
    assert response.status_code == 404
    error = _error(response)
    assert error["code"] == "not_found" and "no-such-order" in error["message"]


def test_cancelling_a_working_stop_order_is_200_and_it_is_cancelled(
    api: Client, live: Live
) -> None:
    [stop] = live.session.snapshot["working_orders"]
    assert stop["purpose"] == "stop_loss", "precondition: the open position's stop is working"
    response = api.call("DELETE", f"/api/v1/orders/{stop['client_order_id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    listed = api.call("GET", "/api/v1/orders", params={"status": "cancelled"}).json()["orders"]
    assert stop["client_order_id"] in [o["client_order_id"] for o in listed]
    assert live.session.snapshot["working_orders"] == []


def test_strategies_lists_each_strategys_own_pnl(api: Client, live: Live) -> None:
    body = api.call("GET", "/api/v1/strategies").json()
    assert body["currency"] == "USD" and body["as_of"] == live.session.snapshot["last_bar_time"]
    by_id = {s["id"]: s for s in body["strategies"]}
    assert set(by_id) == {"fast_sma", "rsi", "ema_cross"}
    for entry in by_id.values():
        pnl = entry["pnl"]
        assert pnl["net_pnl"] == pytest.approx(pnl["equity"] - 10_000)
        assert pnl["realized_pnl"] + pnl["unrealized_pnl"] == pytest.approx(pnl["net_pnl"])
        assert set(pnl["targets"]) <= {"BTC/USD", "LTC/USD"}


# -- paged reads -----------------------------------------------------------------------------------
def test_orders_are_paged_newest_first_and_filtered_with_correct_totals(
    api: Client, live: Live
) -> None:
    run_to(live.session, live.feed, live.feed.total)
    stored = StoreReader(live.store).latest_orders().values()
    newest_first = sorted(stored, key=lambda o: (o.created_at, o.client_order_id), reverse=True)
    ids = [o.client_order_id for o in newest_first]
    assert len(ids) > 6, "precondition: more orders than two pages of three"

    first = api.call("GET", "/api/v1/orders", params={"limit": 3}).json()
    second = api.call("GET", "/api/v1/orders", params={"limit": 3, "offset": 3}).json()
    assert (first["total"], first["limit"], first["offset"]) == (len(ids), 3, 0)
    assert [o["client_order_id"] for o in first["orders"]] == ids[:3]
    assert [o["client_order_id"] for o in second["orders"]] == ids[3:6]

    filled = api.call(
        "GET", "/api/v1/orders", params={"status": "filled", "side": "sell", "limit": 1000}
    ).json()
    expected = [
        o.client_order_id
        for o in newest_first
        if o.status.value == "filled" and o.side.value == "sell"
    ]
    assert filled["total"] == len(expected) > 0
    assert [o["client_order_id"] for o in filled["orders"]] == expected


def test_equity_is_downsampled_to_max_points_keeping_the_first_and_last(
    api: Client, live: Live
) -> None:
    run_to(live.session, live.feed, live.feed.total)
    points = StoreReader(live.store).equity()
    assert len(points) == live.feed.total == 300  # one point per step

    body = api.call("GET", "/api/v1/equity", params={"max_points": 5}).json()
    assert body["total"] == 300
    # indices round(i * 299 / 4): 0, 75 (74.75), 150 (149.5 rounds to even), 224 (224.25), 299
    expected = [points[i] for i in (0, 75, 150, 224, 299)]
    assert body["points"] == [[p.timestamp.isoformat(), p.equity, p.cash] for p in expected]


# -- trades ----------------------------------------------------------------------------------------
def _bars(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=len(rows), freq="1min", tz="UTC", name="timestamp")
    frame = pd.DataFrame(rows, index=index, columns=["open", "high", "low", "close"])
    frame["volume"] = 10.0
    return frame


# Six one-minute bars. buy_and_hold wants +1 from bar 0: its market buy fills at bar 1's open
# (next_open), 100.0, and gets a 2 % stop at 98.0. Bars 1-4 stay above 98; bar 5's low, 95, goes
# through it, so the stop fills at 98 in bar 5's range check, before bar 5's close is marked.
STOP_BARS = _bars(
    [
        (100.0, 100.0, 100.0, 100.0),  # 0: the signal
        (100.0, 101.0, 99.5, 100.5),  # 1: filled at the open; held at this close (1)
        (100.5, 101.0, 100.0, 100.8),  # 2: held (2)
        (100.8, 101.2, 100.1, 101.0),  # 3: held (3)
        (101.0, 101.5, 100.2, 100.4),  # 4: held (4)
        (100.0, 100.0, 95.0, 96.0),  # 5: stopped out at 98 before the close: not held
    ]
)
STOP_SETTINGS = Settings.model_validate(
    {
        "backtest": {"run_id": "bars-held"},
        "risk": {"fraction": 0.5, "stop_loss_pct": 0.02},
        "execution": {"maker_fee": 0.0, "taker_fee": 0.0, "slippage_bps": 0.0},
    }
)


def test_trades_report_the_bars_held_computed_by_hand_and_match_the_backtest(
    tmp_path: Path,
) -> None:
    store = create_store(f"sqlite:///{tmp_path}/held.db")
    feed = GatedFeed({"SYM": STOP_BARS})
    session = TradingSession(
        STOP_SETTINGS, [StrategySlot(name="buy_and_hold")], feed, store, window=20
    )
    session.start()
    try:
        wait_until(lambda: session.state == "running", "the session to take the lease")
        with served(Live(session, feed, store)) as api:
            run_to(session, feed, 4)  # bars 0-3: the position is open, held at bars 1, 2 and 3
            (open_trade,) = api.call("GET", "/api/v1/trades").json()["trades"]
            assert open_trade["exit_time"] is None
            assert open_trade["bars_held"] == 3  # so far
            # marked at bar 3's close: (101.0 - 100.0) x qty, no fees
            assert open_trade["pnl"] == pytest.approx(1.0 * open_trade["qty"], rel=1e-12)

            run_to(session, feed, 6)
            body = api.call("GET", "/api/v1/trades").json()
    finally:
        session.stop()
        store.dispose()
    (trade,) = body["trades"]
    assert body["total"] == 1
    assert (trade["entry_price"], trade["exit_price"]) == (100.0, 98.0)
    assert trade["exit_reason"] == "stop_loss"
    assert trade["bars_held"] == 4  # bars 1, 2, 3 and 4
    backtest = run_backtest(
        {"SYM": STOP_BARS}, create_strategy("buy_and_hold", {}), STOP_SETTINGS, engine="event"
    )
    assert [t.to_dict() for t in backtest.trades] == [trade]


# -- the API documentation -------------------------------------------------------------------------
class _Links(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]


def test_docs_load_every_asset_from_this_server(shared: Client) -> None:
    page = shared.call("GET", "/docs", token=None)
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, nothing external
    parser = _Links()
    parser.feed(page.text)
    assert sorted(parser.links) == [
        "/static/swagger-ui/favicon-32x32.png",
        "/static/swagger-ui/swagger-ui-bundle.js",
        "/static/swagger-ui/swagger-ui.css",
    ]
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text
    package = resources.files("n1v1.serve").joinpath("static/swagger-ui")
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for link in parser.links:
        asset = shared.call("GET", link, token=None)
        assert asset.status_code == 200, link
        assert asset.headers["content-type"].startswith(types[Path(link).suffix])
        assert asset.content == package.joinpath(Path(link).name).read_bytes()


def test_docs_serve_only_the_named_assets_and_no_redoc(shared: Client) -> None:
    for path in ("/static/swagger-ui/LICENSE", "/static/swagger-ui/..%2fapi.py", "/redoc"):
        response = shared.call("GET", path, token=None)
        assert response.status_code == 404, path
        assert _error(response)["code"] == "not_found"


# -- the pieces, by hand ---------------------------------------------------------------------------
def test_token_bucket_by_hand() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.allow("a", 0.0) for _ in range(3)] == [(True, 0.0)] * 3
    assert bucket.allow("a", 0.0) == (False, 0.5)  # empty: one token takes 1 / 2 s
    assert bucket.allow("a", 0.25) == (False, 0.25)  # half a token back
    assert bucket.allow("a", 0.5) == (True, 0.0)  # a whole one
    assert bucket.allow("b", 0.5) == (True, 0.0)  # another key has its own bucket
    # a long pause refills to the burst, not beyond
    assert [bucket.allow("a", 100.0)[0] for _ in range(4)] == [True, True, True, False]


def test_downsample_known_answers() -> None:
    assert downsample(list(range(10)), 4) == [0, 3, 6, 9]
    assert downsample(list(range(10)), 5) == [0, 2, 4, 7, 9]  # 2.25 -> 2, 4.5 -> 4, 6.75 -> 7
    assert downsample(list(range(3)), 5) == [0, 1, 2]


# -- the dashboard's market chart ------------------------------------------------------------------
def test_the_chart_library_is_served_as_vendored_and_nothing_else_from_its_folder(
    shared: Client,
) -> None:
    folder = resources.files("n1v1.serve").joinpath("static/lightweight-charts")
    recorded = re.search(r"SHA-256\s+`([0-9a-f]{64})`", folder.joinpath("README.md").read_text())
    assert recorded is not None
    script = shared.call(
        "GET", "/static/lightweight-charts/lightweight-charts.standalone.production.js", token=None
    )
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert hashlib.sha256(script.content).hexdigest() == recorded.group(1)
    for path in ("/static/lightweight-charts/LICENSE", "/static/lightweight-charts/..%2fapi.py"):
        assert shared.call("GET", path, token=None).status_code == 404, path


def test_bars_are_the_engines_candles_with_their_fills(shared: Client) -> None:
    answer = shared.call("GET", "/api/v1/bars", params={"symbol": "BTC/USD", "limit": 10})
    assert answer.status_code == 200
    body = answer.json()
    reader = StoreReader(shared.store)
    stored = reader.recent_bars("BTC/USD", 10)
    assert body["bars"] == [
        [b.timestamp.isoformat(), b.open, b.high, b.low, b.close, b.volume] for b in stored
    ]
    first, last = stored[0].timestamp, stored[-1].timestamp
    fills = [f for f in reader.fills() if f.symbol == "BTC/USD" and first <= f.timestamp <= last]
    assert [f["client_order_id"] for f in body["fills"]] == [f.client_order_id for f in fills]
    everything = shared.call("GET", "/api/v1/bars").json()  # the first symbol, 500 bars at most
    assert everything["symbol"] == "BTC/USD"
    assert len(everything["bars"]) == START_STEP  # every bar so far, oldest first
    assert everything["bars"][-10:] == body["bars"]
    missing = shared.call("GET", "/api/v1/bars", params={"symbol": "DOGE/USD"})
    assert missing.status_code == 404 and _error(missing)["code"] == "not_found"
    bad = shared.call("GET", "/api/v1/bars", params={"symbol": "BTC/USD", "end": "soon"})
    assert bad.status_code == 422 and _fields(bad) == ["query.end"]


def test_equity_with_its_benchmark_and_drawdown_by_hand(shared: Client) -> None:
    body = shared.call("GET", "/api/v1/equity", params={"benchmark": "true"}).json()
    initial = body["initial_cash"]
    points = body["points"]
    assert len(points) == body["total"] == START_STEP  # one per step, none dropped
    reader = StoreReader(shared.store)
    first = {s: reader.recent_bars(s, 10_000)[0].close for s in ("BTC/USD", "LTC/USD")}
    peak = initial
    for time, equity, _cash, drawdown, hold in points:
        at = pd.Timestamp(time)
        last = {s: [b for b in reader.recent_bars(s, 10_000, at)][-1].close for s in first}
        # the initial cash split equally at the first closes, held: 10,000 x mean(C_t / C_0)
        expected = initial * sum(last[s] / first[s] for s in first) / len(first)
        assert hold == pytest.approx(expected, rel=1e-12)
        peak = max(peak, equity)
        assert drawdown == pytest.approx(1 - equity / peak, abs=1e-12)
    assert points[0][4] == pytest.approx(initial)
    plain = shared.call("GET", "/api/v1/equity").json()
    assert [p[:3] for p in points] == plain["points"]


def test_the_catalog_and_the_list_of_backtests(shared: Client) -> None:
    catalog = shared.call("GET", "/api/v1/catalog").json()
    assert [d["name"] for d in catalog["datasets"]] == dataset_names()
    by_name = {x["name"]: x["params"] for x in catalog["strategies"]}
    assert by_name["sma_cross"] == create_strategy("sma_cross", {}).params.model_dump(mode="json")
    assert "ml_signal" not in by_name  # needs a registered model
    listed = shared.call("GET", "/api/v1/backtests").json()
    assert listed["total"] == 1
    (job,) = listed["backtests"]
    assert (job["id"], job["status"], job["request"]) == (
        JOB,
        "queued",
        {"dataset": "coinbase_BTC-EUR_1m"},
    )
    assert job["headline"]["total_return"] is None  # not run


def test_a_backtest_of_an_uploaded_file_runs_and_no_path_gets_through(
    live: Live, tmp_path: Path
) -> None:
    """The catalog lists the upload directory's bar files (a broken one with its error); a file
    named by the caller backtests exactly as the bundled dataset it copies; names that are paths,
    links out, other files or both fields at once are refused at the door naming the field."""
    import shutil

    from n1v1.data.market import load_market

    # named as `n1v1 data download` names files: the symbol (BTC/USD) is read from the name, so
    # the instrument is the dataset's
    uploaded = "coinbase_BTC-USD_1d.csv"
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    shutil.copy(
        resources.files("n1v1.data") / "samples/coinbase_BTC-USD_1d.csv", uploads / uploaded
    )
    (uploads / "broken.csv").write_text("timestamp,open\nnot a time,1\n")
    (tmp_path / "secret.csv").write_text((uploads / uploaded).read_text())
    (uploads / "link.csv").symlink_to(tmp_path / "secret.csv")
    backend = LocalBackend(live.session, f"sqlite:///{tmp_path}/s.db", str(uploads))
    with served(live, backend, upload_dir=str(uploads)) as api:
        catalog = api.call("GET", "/api/v1/catalog").json()
        assert catalog["uploads"] is True
        files = {f["name"]: f for f in catalog["files"]}
        assert sorted(files) == ["broken.csv", uploaded]
        assert (files[uploaded]["rows"], files[uploaded]["timeframe"]) == (1318, "1d")
        assert files["broken.csv"]["error"]
        request = {
            "strategy": "sma_cross",
            "params": {"fast": 10, "slow": 40},
            "start": "2015-02-01",
        }
        for body, field in [
            ({**request, "file": "../secret.csv"}, "body.file"),
            ({**request, "file": "link.csv"}, "body.file"),
            ({**request, "file": "gone.csv"}, "body.file"),
            ({**request, "file": uploaded, "dataset": "coinbase_BTC-USD_1d"}, "body.dataset"),
            (request, "body.dataset"),
        ]:
            refused = api.call("POST", "/api/v1/backtests", json=body)
            assert refused.status_code == 422 and _fields(refused) == [field], body
        before = api.call("GET", "/api/v1/backtests").json()["total"]
        accepted = api.call("POST", "/api/v1/backtests", json={**request, "file": uploaded})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]

        def finished() -> bool:
            status = api.call("GET", f"/api/v1/backtests/{job_id}").json()["status"]
            return status in ("done", "failed")

        wait_until(finished, "the backtest of the uploaded file")
        job = api.call("GET", f"/api/v1/backtests/{job_id}").json()
        assert job["status"] == "done", job.get("error")
        assert job["request"]["file"] == uploaded and job["request"]["dataset"] is None
        assert job["report"] is True
        page = api.call("GET", f"/api/v1/backtests/{job_id}/report", token=READ)  # a read
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-disposition"] == (
            f'attachment; filename="n1v1-backtest-{job_id}.html"'
        )
        assert f"sma_cross on {uploaded} (backtest {job_id})" in page.text
        assert set(chart_specs(page.text)) == {"equity", "drawdown", "price-0", "pnl-distribution"}
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        queued = api.call("GET", f"/api/v1/backtests/{JOB}/report")  # never ran: no report
        assert queued.status_code == 404 and _error(queued)["code"] == "not_found"
        assert api.call("GET", "/api/v1/backtests/bt_nope/report").status_code == 404
        assert api.call("GET", "/api/v1/backtests").json()["total"] == before + 1
    bundled = run_backtest(
        load_market("coinbase_BTC-USD_1d", start="2015-02-01"),
        create_strategy("sma_cross", {"fast": 10, "slow": 40}),
        Settings.model_validate(
            {"execution": {"maker_fee": 0.001, "taker_fee": 0.001, "slippage_bps": 0.0}}
        ),
    )
    assert job["result"]["metrics"]["final_equity"] == bundled.metrics["final_equity"]
    assert job["result"]["metrics"]["n_trades"] == bundled.metrics["n_trades"] > 0


def test_without_an_upload_directory_a_file_is_refused(api: Client) -> None:
    catalog = api.call("GET", "/api/v1/catalog").json()
    assert (catalog["uploads"], catalog["files"]) == (False, [])
    body = {"file": "b.csv", "strategy": "sma_cross"}
    refused = api.call("POST", "/api/v1/backtests", json=body)
    assert refused.status_code == 422 and _fields(refused) == ["body.file"]
    assert "no upload directory" in _error(refused)["details"]["fields"][0]["message"]


def test_events_stream_the_status_as_it_changes_then_say_bye(live: Live) -> None:
    with (
        served(live, event_stream_s=3.0) as api,
        api.http.get(
            f"{api.base_url}/api/v1/events",
            headers={"Authorization": f"Bearer {ADMIN}"},
            stream=True,
            timeout=30,
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        run_to(live.session, live.feed, START_STEP + 2)  # two more steps while listening
        text = response.text  # to the end of the stream (bye)
    events = [block for block in text.split("\n\n") if block.startswith("event:")]
    kinds = [block.splitlines()[0].removeprefix("event: ") for block in events]
    assert kinds[-1] == "bye" and set(kinds[:-1]) == {"status"}
    steps = [
        json.loads(block.splitlines()[1].removeprefix("data: "))["step"] for block in events[:-1]
    ]
    assert steps[0] == START_STEP and steps[-1] == START_STEP + 2  # the first, then each new one
    assert steps == sorted(steps)
    assert text.startswith("retry: 2000")
