"""The API against what an attacker (or a careless script) sends: each of these was found by hand
against the live app and failed before (issue 12, "Hostile input").

The app is the real `create_api` over a real TradingSession held at step 30 (as in
tests/test_api.py), served by uvicorn on a free port. Raw bodies are sent as text where JSON
itself cannot say it (`Infinity`, `NaN`, `1e400`).
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from dashboard_api import LocalBackend, serve_app
from session_worker import GatedFeed, make_session, market, run_to, wait_until
from test_api import ADMIN, READ, WRONG, Client, Live, _error, running_session, served

from n1v1.serve.api import API, READY_EVERY_S, create_api, hash_token
from n1v1.serve.guard import page_csp
from n1v1.store import StoreReader, create_store
from n1v1.store import schema as t

JSON = {"Content-Type": "application/json"}
ADMIN_ACTOR = f"admin:{hash_token(ADMIN)[:8]}"


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One session at step 30 for the module: these tests are refused or only read."""
    with running_session(tmp_path_factory.mktemp("hostile")) as live:
        yield live


@pytest.fixture(scope="module")
def api(held: Live) -> Iterator[Client]:
    with served(held) as client:
        yield client


def fields(response: requests.Response) -> list[str]:
    return [f["field"] for f in _error(response)["details"]["fields"]]


def commands(live: Live) -> int:
    with live.store.engine.connect() as conn:
        return len(conn.execute(t.commands.select()).all())


# -- query parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=", "query.start"),
        ("end=", "query.end"),
        ("start=NaT", "query.start"),
        ("end=now", "query.end"),
        ("start=2018-13-01", "query.start"),
        ("start=2018-04-04&end=2018-04-03", "query.end"),  # end before start
    ],
)
def test_an_unusable_equity_bound_is_a_422_naming_it(api: Client, query: str, field: str) -> None:
    response = api.call("GET", f"{API}/equity?{query}")
    assert response.status_code == 422, response.text
    assert _error(response)["code"] == "invalid_request"
    assert fields(response) == [field]


@pytest.mark.parametrize(
    ("query", "everything"),
    [
        ("start=0001-01-01", True),  # from the first point
        ("end=9999-12-31", True),  # to the last
        ("start=0001-01-01T00:00:00%2B14:00", True),  # an offset cannot push it out of range
        ("start=9999-12-31", False),  # nothing after the end of time
        ("end=0001-01-01", False),
    ],
)
def test_an_equity_bound_beyond_the_stored_times_is_clamped(
    api: Client, held: Live, query: str, everything: bool
) -> None:
    stored = len(StoreReader(held.store).equity())
    assert stored == 30, "precondition: one equity point per step"
    response = api.call("GET", f"{API}/equity?{query}")
    assert response.status_code == 200, response.text
    assert response.json()["total"] == (stored if everything else 0)


def test_an_equity_window_given_with_an_offset_is_read_in_utc(api: Client, held: Live) -> None:
    points = StoreReader(held.store).equity()
    tenth = points[9].timestamp  # 00:09 UTC
    at_two = tenth.tz_convert("Etc/GMT-2").isoformat()  # the same instant, written at UTC+2
    body = api.call("GET", f"{API}/equity", params={"start": at_two}).json()
    assert body["total"] == len(points) - 9
    assert body["points"][0][0] == tenth.isoformat()


@pytest.mark.parametrize("path", ["orders", "trades"])
@pytest.mark.parametrize("name", ["offset", "limit"])
def test_a_page_bound_past_64_bits_is_a_422_naming_it(api: Client, path: str, name: str) -> None:
    response = api.call("GET", f"{API}/{path}?{name}=9223372036854775808")
    assert response.status_code == 422, response.text
    assert fields(response) == [f"query.{name}"]


# -- 500s ------------------------------------------------------------------------------------------
class BrokenBackend(LocalBackend):
    """A backend whose engine calls fail the way a bug would, with a secret in the message."""

    async def status(self) -> dict[str, Any]:
        raise RuntimeError("password=hunter2 in a stack frame")


def test_an_unhandled_error_is_a_500_in_the_envelope_without_the_traceback(
    held: Live, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_api(BrokenBackend(held.session), held.store, admin_token_hash=hash_token(ADMIN))
    with serve_app(app) as base_url:
        response = requests.get(
            f"{base_url}{API}/status", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
        )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    error = _error(response)
    assert error["code"] == "internal_error"
    assert "hunter2" not in response.text and "Traceback" not in response.text
    error_id = error["details"]["error_id"]
    assert error_id in error["message"]
    # the log has it, under the id the answer gave
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert response.headers["x-content-type-options"] == "nosniff"


# -- numbers: finite and bounded -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"risk": {"sizing": "fixed", "qty": Infinity}}', "body.risk.qty"),
        ('{"risk": {"sizing": "fixed", "qty": 1e400}}', "body.risk.qty"),  # inf once parsed
        ('{"risk": {"sizing": "fixed", "qty": 1e300}}', "body.risk.qty"),  # over the bound
        ('{"risk": {"max_drawdown": NaN}}', "body.risk.max_drawdown"),
        ('{"risk": {"take_profit_pct": -Infinity}}', "body.risk.take_profit_pct"),
        ('{"risk": {"max_open_positions": 1e999}}', "body.risk.max_open_positions"),
        ('{"strategies": {"rsi": {"oversold": NaN}}}', "body.strategies.rsi.oversold"),
    ],
)
def test_a_config_with_a_non_finite_or_huge_number_is_a_422_naming_it(
    api: Client, held: Live, body: str, field: str
) -> None:
    before = commands(held)
    response = api.call("PUT", f"{API}/config", data=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert field in fields(response)
    assert held.session.snapshot["live_config"] == {"paused": False, "risk": {}, "strategies": {}}
    assert commands(held) == before  # nothing logged: a restart has nothing to replay


@pytest.mark.parametrize(
    ("qty", "message"),
    [
        ("Infinity", "finite"),
        ("-Infinity", "finite"),
        ("NaN", "finite"),
        ("1e400", "finite"),
        ("1e13", "less than or equal to 1000000000000"),
        ("0", "greater than 0"),
        ("-1", "greater than 0"),
    ],
)
def test_an_order_of_no_finite_positive_size_is_a_422_and_no_order(
    api: Client, held: Live, qty: str, message: str
) -> None:
    orders = len(StoreReader(held.store).latest_orders())
    body = f'{{"symbol": "LTC/USD", "side": "buy", "qty": {qty}}}'
    response = api.call("POST", f"{API}/orders", data=body, headers=JSON)
    assert response.status_code == 422, response.text
    (field,) = _error(response)["details"]["fields"]
    assert field["field"] == "body.qty" and message in field["message"]
    assert len(StoreReader(held.store).latest_orders()) == orders


@pytest.mark.parametrize("symbol", ["LTC/USD\u0000", "ЛТЦ/USD", "LTC/USD\u202e", "", "x" * 65])
def test_an_order_for_a_symbol_that_is_not_ascii_is_a_422(api: Client, symbol: str) -> None:
    body = {"symbol": symbol, "side": "buy", "qty": 1.0}
    response = api.call("POST", f"{API}/orders", json=body)
    assert response.status_code == 422, response.text
    assert fields(response) == ["body.symbol"]


def test_a_journal_holding_an_infinite_setting_still_starts_and_skips_it(tmp_path: Path) -> None:
    """A store written by a version that let `qty: Infinity` in (the command was journaled and
    would have been replayed on every restart, failing the engine each time) starts: the logged
    command is skipped, as today's settings refuse it, and the status says so."""
    url = f"sqlite:///{tmp_path}/s.db"
    store = create_store(url)
    first = make_session(store, (feed := GatedFeed(market())))
    first.start()
    wait_until(lambda: first.state == "running", "the session to take the lease")
    run_to(first, feed, 30)
    first.stop()
    with store.transaction() as conn:  # what the old API journaled for PUT /config
        conn.execute(
            t.commands.insert().values(
                step=30,
                kind="config",
                payload={"risk": {"sizing": "fixed", "qty": math.inf}},
                actor=ADMIN_ACTOR,
                at=pd.Timestamp.now(tz="UTC").floor("us"),
            )
        )
    again = make_session(create_store(url), (feed := GatedFeed(market())))
    again.start()
    try:
        wait_until(lambda: again.state != "starting", "the rebuild")
        assert again.state == "running", again.failure
        (skipped,) = again.snapshot["recovery"]["skipped_commands"]
        assert (skipped["step"], skipped["kind"]) == (30, "config")
        assert "risk.qty" in skipped["error"] and "finite" in skipped["error"]
        assert again.snapshot["live_config"]["risk"] == {}
        run_to(again, feed, 60)  # and it trades on
        assert again.state == "running"
    finally:
        again.stop()


# -- strict types ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "orders", {"symbol": "LTC/USD", "side": "buy", "qty": True}, "body.qty"),
        ("POST", "orders", {"symbol": "LTC/USD", "side": "buy", "qty": "1"}, "body.qty"),
        (
            "POST",
            "orders",
            {"symbol": "LTC/USD", "side": "buy", "qty": 1, "resize": 1},
            "body.resize",
        ),
        ("PUT", "config", {"paused": "yes"}, "body.paused"),
        ("PUT", "config", {"paused": 1}, "body.paused"),
        ("PUT", "config", {"risk": {"max_open_positions": "3"}}, "body.risk.max_open_positions"),
        ("PUT", "config", {"risk": {"max_open_positions": 2.5}}, "body.risk.max_open_positions"),
        ("PUT", "config", {"risk": {"fraction": None}}, "body.risk.fraction"),
        ("PUT", "config", {"strategies": {"rsi": {"period": "14"}}}, "body.strategies.rsi.period"),
        ("PUT", "config", {"strategies": {"rsi": {"period": True}}}, "body.strategies.rsi.period"),
        ("POST", "resume", {"reset_kill_switch": "true"}, "body.reset_kill_switch"),
        ("POST", "pause", {"reason": 5}, "body.reason"),
        ("POST", "predict", {"model": "tiny", "rows": [[1.0, True]]}, "body.rows.0.1"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_a_422_not_coerced(
    api: Client, held: Live, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    before = commands(held)
    response = api.call(method, f"{API}/{path}", json=body)
    assert response.status_code == 422, response.text
    assert fields(response) == [field]
    assert commands(held) == before


def test_a_json_integer_is_still_a_number(live: Live) -> None:
    with served(live) as api:
        placed = api.call(
            "POST", f"{API}/orders", json={"symbol": "LTC/USD", "side": "buy", "qty": 2}
        )
        configured = api.call(
            "PUT",
            f"{API}/config",
            json={"risk": {"max_drawdown": 0.5, "stop_loss_pct": None, "fraction": 1}},
        )
    assert placed.status_code == 201 and placed.json()["qty"] == 2.0
    assert configured.status_code == 200, configured.text
    # the explicit null (rule off) reaches the engine; fields not sent are left alone
    risk = configured.json()["config"]["risk"]
    assert risk == {"max_drawdown": 0.5, "stop_loss_pct": None, "fraction": 1}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with running_session(tmp_path) as held_here:
        yield held_here


# -- requests without a token ----------------------------------------------------------------------
def test_a_flood_without_a_token_is_limited_and_audited_as_a_few_summaries(live: Live) -> None:
    options = {"anonymous_rate_per_s": 2.0, "anonymous_burst": 20, "refusal_window_s": 1.0}
    with served(live, **options) as api:
        started = time.monotonic()
        answers = [
            api.call("POST", f"{API}/pause", token=None if i % 2 else WRONG, json={}).status_code
            for i in range(500)
        ]
        elapsed = time.monotonic() - started
        # the admin from the same address is not limited by the flood
        assert api.call("GET", f"{API}/status").status_code == 200
        last = api.call("POST", f"{API}/kill-switch", token=None, json={"reason": "x"})
        wait_until(
            lambda: (
                sum(e["details"]["refused"] for e in StoreReader(live.store).audit_log()) == 501
            ),
            "every refusal to be counted in a summary",
        )
    assert last.status_code == 429
    assert _error(last)["code"] == "rate_limited" and int(last.headers["Retry-After"]) >= 1
    allowed = 20 + math.ceil(2.0 * elapsed)  # the burst, and what the bucket refilled meanwhile
    assert answers.count(401) <= allowed and answers.count(429) >= 500 - allowed
    assert set(answers) == {401, 429}
    rows = StoreReader(live.store).audit_log()
    windows = math.ceil(elapsed / 1.0) + 2
    assert 1 <= len(rows) <= windows  # a handful, not 500
    assert {r["actor"] for r in rows} == {"anonymous"}
    attempts: dict[str, int] = {}
    for row in rows:
        for kind, count in row["details"]["attempts"].items():
            attempts[kind] = attempts.get(kind, 0) + count
    assert attempts == {
        "POST /api/v1/pause 401 unauthorized": answers.count(401),
        "POST /api/v1/pause 429 rate_limited": answers.count(429),
        "POST /api/v1/kill-switch 429 rate_limited": 1,
    }


class CountingBackend(LocalBackend):
    """Counts how often the components are asked whether they are ready."""

    checks = 0

    async def ready(self) -> dict[str, bool]:
        self.checks += 1
        return await super().ready()


def test_a_flood_of_readiness_checks_asks_the_components_about_once_a_second(held: Live) -> None:
    backend = CountingBackend(held.session)
    app = create_api(backend, held.store, admin_token_hash=hash_token(ADMIN))
    with serve_app(app) as base_url, requests.Session() as http:
        started = time.monotonic()
        answers = [http.get(f"{base_url}/readyz", timeout=10) for _ in range(200)]
        elapsed = time.monotonic() - started
    # the local backend has no model server: not ready, and every caller is told so
    assert {(a.status_code, a.json()["checks"]["model"]) for a in answers} == {(503, False)}
    assert 1 <= backend.checks <= math.ceil(elapsed / READY_EVERY_S) + 1


class BodyCounter:
    """ASGI wrapper: how many body bytes the app asked the server for."""

    def __init__(self, app: Any) -> None:
        self.app, self.read = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            self.read += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def raw_chunked_post(base_url: str, path: str, token: str | None, chunks: list[bytes]) -> str:
    """POST with Transfer-Encoding: chunked, sending `chunks` and then waiting for the answer
    without ever finishing the body; the status line of the answer."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"{auth}Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        for chunk in chunks:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_no_body_is_read_before_the_token_is_checked(held: Live) -> None:
    app = create_api(
        LocalBackend(held.session),
        held.store,
        admin_token_hash=hash_token(ADMIN),
        max_body_bytes=4096,
        refusal_window_s=3600,
    )
    counter = BodyCounter(app)
    with serve_app(counter) as base_url:  # type: ignore[arg-type]
        # 64 KiB of a body that never ends: answered 401 at once, none of it read
        status = raw_chunked_post(base_url, f"{API}/pause", None, [b" " * 65536])
        assert status == "HTTP/1.1 401 Unauthorized"
        assert counter.read == 0
        # with the token, a chunked body over the limit is refused without waiting for its end
        status = raw_chunked_post(base_url, f"{API}/pause", ADMIN, [b" " * 3000] * 4)
        assert status == "HTTP/1.1 413 Request Entity Too Large"
        # and one within the limit goes through
        response = requests.post(
            f"{base_url}{API}/pause",
            data=iter([b'{"reason": ', b'"chunked"}']),  # a generator: sent chunked
            headers={**JSON, "Authorization": f"Bearer {ADMIN}"},
            timeout=10,
        )
    assert response.status_code == 200, response.text
    assert held.session.snapshot["paused"] is True
    assert api_resume(held)


def api_resume(live: Live) -> bool:
    """Undo the pause above: the module's session is shared."""
    live.session.submit("resume", {}, ADMIN_ACTOR).result(10)
    return live.session.snapshot["paused"] is False


# -- the OpenAPI document --------------------------------------------------------------------------
def test_the_openapi_document_declares_the_bearer_scheme_and_every_error(api: Client) -> None:
    spec = api.call("GET", "/openapi.json", token=None).json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the admin token, or the read-only token for reads and predictions",
    }
    envelope = {"$ref": "#/components/schemas/ErrorResponse"}
    changes = {("post", "pause"), ("post", "resume"), ("post", "kill-switch"), ("post", "orders")}
    changes |= {("delete", "orders/{client_order_id}"), ("put", "config"), ("post", "backtests")}
    changes |= {("post", "algo-orders"), ("delete", "algo-orders/{parent_id}")}
    specific = {
        ("get", "backtests/{job_id}"): {"404"},
        ("delete", "orders/{client_order_id}"): {"404", "503"},
        ("post", "predict"): {"404", "503"},
        ("post", "orders"): {"409", "503"},
        ("post", "algo-orders"): {"404", "409", "422", "503"},
        ("delete", "algo-orders/{parent_id}"): {"404", "409", "503"},
        ("get", "algo-orders/{parent_id}"): {"404", "503"},
        ("post", "kill-switch"): {"409", "503"},
        ("post", "resume"): {"409", "503"},
        ("get", "status"): {"503"},
        ("get", "trades"): {"503"},
    }
    operations = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            errors = {code for code in responses if code[0] in "45"}
            for code in errors:
                schema = responses[code]["content"]["application/json"]["schema"]
                assert path == "/readyz" or schema == envelope, (method, path, code)
            if not path.startswith(API):
                continue
            operations += 1
            name = path.removeprefix(f"{API}/")
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert {"401", "429", "500"} <= errors, (method, path)
            assert responses["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
            assert ("403" in errors) == ((method, name) in changes), (method, path)
            assert ("413" in errors) == (method in ("post", "put", "delete")), (method, path)
            assert specific.get((method, name), set()) <= errors, (method, path)
    assert operations >= 18
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", f"{API}/orders", "GET, POST"),
        ("PATCH", f"{API}/status", "GET"),
        ("POST", f"{API}/orders/some-id", "DELETE"),
        ("DELETE", "/healthz", "GET"),
    ],
)
def test_a_405_names_every_method_of_the_path_in_allow(
    api: Client, method: str, path: str, allow: str
) -> None:
    response = api.call(method, path)
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"
    assert response.headers["Allow"] == allow


# -- security headers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/", None),
        ("/docs", None),
        ("/openapi.json", None),
        ("/healthz", None),
        (f"{API}/status", ADMIN),
        (f"{API}/status", None),  # a 401
        (f"{API}/nowhere", ADMIN),  # a 404
        ("/static/swagger-ui/swagger-ui.css", None),
    ],
)
def test_every_answer_carries_the_security_headers(
    api: Client, path: str, token: str | None
) -> None:
    headers = api.call("GET", path, token=token).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    if path.startswith(API):
        assert headers["Cache-Control"] == "no-store"


def test_the_pages_pin_their_inline_scripts_by_hash(api: Client) -> None:
    page = api.call("GET", "/", token=None)
    csp = page.headers["Content-Security-Policy"]
    assert csp == page_csp(page.text)
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert csp.count("'sha256-") == 2  # the dashboard's one script and one style block
    docs = api.call("GET", "/docs", token=None)
    docs_csp = docs.headers["Content-Security-Policy"]
    assert docs_csp == page_csp(docs.text) and "script-src 'self' 'sha256-" in docs_csp
    assert "'unsafe-inline'" not in docs_csp and "'unsafe-eval'" not in docs_csp
    assert READ not in page.text  # (no token is ever written into a page)
