"""The HTTP API as a plain FastAPI app over a `Backend`: the Serve gateway plugs in deployment
handles, the benchmark's bare-uvicorn twin plugs in local objects, and both run these handlers.

Security (docs/serve.md, "Security"): every /api/v1 route needs a bearer token, compared in
constant time against a SHA-256 hash (the process never holds another token in plain text). The
guard middleware checks the token first, before it reads any body: a request without a valid
token costs a header comparison and a per-address token bucket (429 past it), never a body read
or a database write; refused state-changing requests are summarised in the audit log, one row per
caller and minute (n1v1/serve/guard.py). A read-only token gets 403 on state-changing routes;
each token has its own token bucket (429); bodies over the size limit get 413, a chunked one as
soon as it passes the limit; every state-changing request that gets through is audited with the
caller and its outcome. Every answer carries security headers (CSP, no framing, nosniff, no
referrer).

Errors always look like `{"error": {"code", "message", "details"}}`, an unexpected exception
included (500, with an id to find it in the log; no traceback leaves the server). A body that is
not JSON says where it breaks, or that the Content-Type header is missing, instead of naming a
character position as a field. Every number is finite and bounded, and types are strict
(n1v1/serve/schemas.py).

`/docs` is Swagger UI served from the package (`static/swagger-ui/`), so it works offline.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib import resources
from typing import Any, Protocol

import numpy as np
import pandas as pd
from fastapi import FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from n1v1.live.session import CommandError
from n1v1.serve.auth import hash_token  # one definition: the app hashes with it too
from n1v1.serve.errors import (
    ApiError,
    body_problem,
    error_response,
    field_error,
    internal_error,
    invalid_field,
    printable,
    rate_limited,
    undecodable,
)
from n1v1.serve.guard import (
    DATA_CSP,
    SECURITY_HEADERS,
    AuditRow,
    RefusalLog,
    TokenBucket,
    page_csp,
)
from n1v1.serve.openapi import document, errors
from n1v1.serve.schemas import (
    AlgoOrderBody,
    BacktestBody,
    ConfigBody,
    KillSwitchBody,
    OrderBody,
    PauseBody,
    PredictBody,
    Readiness,
    ResumeBody,
    strict_param_errors,
)
from n1v1.store import StoreReader, record_audit
from n1v1.store.availability import RETRY_AFTER_S, is_unreachable, unreachable_reason
from n1v1.store.schema import Store

__all__ = ["API", "ApiError", "Backend", "TokenBucket", "create_api", "downsample", "hash_token"]
log = logging.getLogger(__name__)

API = "/api/v1"
SWAGGER_UI = "/static/swagger-ui"
# The only files the docs page loads, with their types; the route looks a name up here and never
# turns what a caller sent into a path.
_SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
CHARTS = "/static/lightweight-charts"
_CHART_FILES = {"lightweight-charts.standalone.production.js": "text/javascript; charset=utf-8"}
_EVENT_FIELDS = ("state", "step", "last_bar_time", "last_step_at", "paused", "halt", "failure")
_STATUS_FOR = {"not_found": 404, "conflict": 409, "invalid": 422, "unavailable": 503}
_MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
_READ_ONLY_POSTS = frozenset({f"{API}/predict"})  # a computation, not a change: no audit, no 403
MAX_OFFSET = 1_000_000_000  # of a paged list (the store's integers are 64-bit; this is plenty)
# The times the store can hold (nanoseconds since 1970 in 64 bits, microseconds in PostgreSQL):
# a query bound beyond them asks for "from the beginning" or "to the end", and is clamped.
TIME_MIN = pd.Timestamp("1677-09-22", tz="UTC")
TIME_MAX = pd.Timestamp("2262-04-11", tz="UTC")
READY_EVERY_S = 1.0  # /readyz answers from a check at most this old
_AUDIT_TEXT = 128  # the audit log's actor and action columns hold 128 characters


def _changes_state(method: str, path: str) -> bool:
    return method in _MUTATING and path not in _READ_ONLY_POSTS


class Backend(Protocol):
    """What the API needs from the engine, the models and the backtest runner."""

    async def status(self) -> dict[str, Any]: ...

    async def trades(self, symbol: str | None, limit: int, offset: int) -> dict[str, Any]: ...

    async def command(self, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]: ...

    async def predict(self, model: str, rows: list[list[float]]) -> dict[str, Any]: ...

    async def models(self) -> dict[str, Any]: ...

    async def submit_backtest(self, request: dict[str, Any], actor: str) -> str: ...

    async def ready(self) -> dict[str, bool]: ...


class RenderedStatus:
    """The body of GET /status, rendered once per published status and sent as the same bytes to
    every reader until the next: a backend hands back the very same snapshot object until the
    engine publishes another (the session replaces its snapshot, never edits it), so the
    per-request cost is an identity check, not a validation and JSON encoding of the status."""

    HIDDEN = ("positions", "risk", "working_orders")  # each has a route of its own

    def __init__(self) -> None:
        self._source: Any = None  # held, so its identity cannot be reused by a new object
        self._body = b""

    def response(self, snapshot: dict[str, Any]) -> Response:
        if snapshot is not self._source:
            view = {k: v for k, v in snapshot.items() if k not in self.HIDDEN}
            self._body = JSONResponse(jsonable_encoder(view)).body  # what FastAPI itself sends
            self._source = snapshot
        return Response(self._body, media_type="application/json")


def create_api(
    backend: Backend,
    store: Store,
    *,
    admin_token_hash: str,
    read_token_hash: str | None = None,
    rate_limit_per_s: float = 50.0,
    rate_burst: int = 100,
    max_body_bytes: int = 1_048_576,
    observe_request: Callable[[str, str, int, float], None] | None = None,
    anonymous_rate_per_s: float = 2.0,
    anonymous_burst: int = 20,
    refusal_window_s: float = 60.0,
    event_stream_s: float = 60.0,
    prometheus_url: str | None = None,
    upload_dir: str | None = None,
) -> FastAPI:
    """The app. `anonymous_rate_per_s`/`anonymous_burst`: the token bucket of each client address
    for requests without a valid token; `refusal_window_s`: how long refused requests are counted
    before their summary row is written; `event_stream_s`: how long one /events stream lasts
    before the client is asked to reconnect (proxies and load balancers cut idle streams);
    `prometheus_url`: the Prometheus whose firing N1V1 alerts /alerts shows (None: none);
    `upload_dir`: where the files of bars a backtest may name are (n1v1/data/uploads.py; None:
    bundled datasets only)."""
    reader = StoreReader(store)
    limiter = TokenBucket(rate_limit_per_s, rate_burst)
    anonymous = TokenBucket(anonymous_rate_per_s, anonymous_burst)
    readiness: dict[str, Any] = {"at": -math.inf, "checks": {}, "engine": None}
    readiness_lock = asyncio.Lock()
    refusals = RefusalLog(functools.partial(_write_audit, store), refusal_window_s)
    dashboard = resources.files("n1v1.serve").joinpath("static/dashboard.html").read_text()
    dashboard_csp = page_csp(dashboard)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await refusals.close()  # the open windows' summaries, before the replica goes

    app = FastAPI(
        title="N1V1",
        version="1",
        description="Paper trading engine, ML models and backtests. Bearer token on /api/v1.",
        docs_url=None,  # replaced below by a page whose assets come from this package
        redoc_url=None,  # ReDoc would load its script from a CDN: not offered
        lifespan=lifespan,
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = document(schema, API, _changes_state)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    def authenticate(request: Request) -> tuple[str, str]:
        """(role, actor) of the caller or ApiError 401 (the 403 of a read-only token is decided
        by the caller, which knows the actor to audit it under)."""
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer ...)")
        digest = hash_token(presented.strip())
        if hmac.compare_digest(digest, admin_token_hash):
            return "admin", f"admin:{digest[:8]}"
        if read_token_hash is not None and hmac.compare_digest(digest, read_token_hash):
            return "read", f"read:{digest[:8]}"
        raise ApiError(401, "unauthorized", "invalid token")

    async def guard(inner: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request = Request(scope, receive)
        path = _route_path(request)
        answer = _Answer(send, path)
        try:
            await _guarded(request, inner, answer, path)
        except ApiError as exc:
            await answer.respond(exc.response(), scope, receive)
        except Exception:  # a bug or an unreachable dependency: the envelope, never a traceback
            if answer.status is not None:
                raise  # the answer has begun: nothing else can be sent
            await answer.respond(internal_error(request), scope, receive)
        if observe_request is not None:
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                "/api/v1/*" if path.startswith(API) else "*"
            )
            status = answer.status if answer.status is not None else 500
            observe_request(template, request.method, status, time.perf_counter() - started)

    async def _guarded(request: Request, inner: ASGIApp, answer: _Answer, path: str) -> None:
        scope, receive = request.scope, request.receive
        if not path.startswith(API):
            await inner(scope, receive, answer.send)
            return
        client = _client(request)
        changes = _changes_state(request.method, path)

        def refused(actor: str, status: int, code: str) -> None:
            if changes:
                refusals.add(actor, client, request.method, printable(path), status, code)

        try:
            role, actor = authenticate(request)
        except ApiError as exc:
            allowed, retry_after = anonymous.allow(client, time.monotonic())
            if not allowed:
                refused("anonymous", 429, "rate_limited")
                raise rate_limited(
                    retry_after, "too many requests without a valid token from this address"
                ) from None
            refused("anonymous", exc.status, exc.code)
            raise
        if role == "read" and changes:
            refused(actor, 403, "forbidden")
            raise ApiError(403, "forbidden", "this token is read-only")
        allowed, retry_after = limiter.allow(actor, time.monotonic())
        if not allowed:
            refused(actor, 429, "rate_limited")
            raise rate_limited(retry_after, "too many requests for this token")
        if request.method in _MUTATING:
            try:
                receive = _replay(await _read_body(request, max_body_bytes), receive)
            except ApiError as exc:
                refused(actor, exc.status, exc.code)
                raise
        request.state.actor = actor  # in scope["state"], where the route's Request finds them
        request.state.role = role
        await inner(scope, receive, answer.send)
        if changes:
            details = {"status": answer.status, "path": printable(request.url.path)}
            action = printable(f"{request.method} {request.url.path}")
            await asyncio.to_thread(_write_audit, store, [(actor, action, details)])

    app.add_middleware(GuardMiddleware, guard=guard)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(CommandError)
    async def _command_error(_: Request, exc: CommandError) -> JSONResponse:
        return error_response(_STATUS_FOR.get(exc.code, 500), exc.code, exc.message, exc.details)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeoutError)
    async def _store_unreachable(_: Request, exc: Exception) -> JSONResponse:
        """A read of the store during a database outage: 503, try again later (not a 500)."""
        return error_response(
            503,
            "store_unavailable",
            f"the store cannot be reached: {unreachable_reason(exc)}",
            {"retry_after_s": RETRY_AFTER_S},
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        whole = await body_problem(request, exc.errors())
        if whole is not None:
            field = {"field": "body", "message": whole[1], "type": whole[0]}
            message = f"invalid request: body: {whole[1]}"
            return error_response(422, "invalid_request", message, {"fields": [field]})
        fields = [field_error(request, e) for e in exc.errors()]
        names = ", ".join(f["field"] for f in fields)
        return error_response(
            422, "invalid_request", f"invalid request: {names}", {"fields": fields}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not even decode the body: the field is body
            problem = undecodable(await request.body())
            field = {"field": "body", "message": problem, "type": "body_undecodable"}
            return error_response(
                422, "invalid_request", f"invalid request: body: {problem}", {"fields": [field]}
            )
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers["Allow"] = _allowed_methods(app, request)
        return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _: Exception) -> JSONResponse:
        return internal_error(request)  # what escaped the guard itself

    # -- unauthenticated -------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(dashboard, headers={"Content-Security-Policy": dashboard_csp})

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title="N1V1 API",
            swagger_js_url=f"{root}{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER_UI}/favicon-32x32.png",
            # validatorUrl null: Swagger UI would otherwise fetch a badge from its online validator
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )
        html = bytes(page.body).decode()
        page.headers["Content-Security-Policy"] = page_csp(html)
        return page

    @app.get(f"{SWAGGER_UI}/{{name}}", include_in_schema=False)
    async def swagger_asset(name: str) -> Response:
        media_type = _SWAGGER_FILES.get(name)
        if media_type is None:
            raise ApiError(404, "not_found", f"no such documentation asset {printable(name)!r}")
        return Response(
            _swagger_asset(name),
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get(f"{CHARTS}/{{name}}", include_in_schema=False)
    async def chart_asset(name: str) -> Response:
        media_type = _CHART_FILES.get(name)
        if media_type is None:
            raise ApiError(404, "not_found", f"no such chart asset {printable(name)!r}")
        data = resources.files("n1v1.serve").joinpath(f"static/lightweight-charts/{name}")
        return Response(
            data.read_bytes(),
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "a component is not reachable"}},
    )
    async def readyz() -> JSONResponse:
        """Needs no token and asks every component, so the components are asked at most once
        every READY_EVERY_S seconds per gateway replica, however many callers ask: a flood of
        /readyz costs them nothing more, and no prober is refused."""
        async with readiness_lock:
            if time.monotonic() - readiness["at"] >= READY_EVERY_S:
                checks = await backend.ready()
                readiness["checks"] = checks
                # why not: the engine's state and reason (a lost store, a lease held elsewhere)
                readiness["engine"] = None if all(checks.values()) else await _engine_state(backend)
                readiness["at"] = time.monotonic()
            checks, engine = readiness["checks"], readiness["engine"]
        ok = all(checks.values())
        body: dict[str, Any] = {"ready": ok, "checks": checks}
        if engine is not None:
            body["engine"] = engine
        return JSONResponse(body, status_code=200 if ok else 503)

    # -- reads -----------------------------------------------------------------------------------
    status_body = RenderedStatus()

    @app.get(f"{API}/status", response_model=dict[str, Any], responses=errors(503))
    async def status() -> Response:
        return status_body.response(await backend.status())

    @app.get(f"{API}/alerts")
    async def alerts() -> dict[str, Any]:
        """The N1V1 alerts (the rules the cluster runs, n1v1/monitoring/alerts.py) that the
        configured Prometheus has pending or firing now; `available` false, with why, when no
        Prometheus is configured or it does not answer within 2 s."""
        if not prometheus_url:
            return {"available": False, "reason": "no Prometheus configured (N1V1_PROMETHEUS_URL)"}
        return await asyncio.to_thread(_prometheus_alerts, prometheus_url)

    @app.get(f"{API}/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        """What the presented token may do: `admin` (everything) or `read` (reads and
        predictions); the dashboard shows its controls to `admin` only."""
        return {"role": request.state.role, "actor": request.state.actor}

    @app.get(f"{API}/events", include_in_schema=False)
    async def events() -> StreamingResponse:
        """Server-sent events: `status` (step, state, last bar time, paused, halt) each time the
        engine publishes a new status, a `: keepalive` comment every 15 s, then `bye` after
        `event_stream_s` (reconnect). The dashboard reads it with the same bearer token (fetch,
        not EventSource, which cannot send one) and refreshes on each event."""

        async def stream() -> AsyncIterator[bytes]:
            # A client leaving ends this generator through the response's own disconnect
            # watch (_EventStream), not through `request.is_disconnected()`.
            started = last_sent = time.monotonic()
            seen: Any = None
            yield b"retry: 2000\n\n"
            while time.monotonic() - started < event_stream_s:
                try:
                    snap = await backend.status()
                except Exception as exc:  # the engine away: say so, keep the stream
                    snap = {"state": "unavailable", "failure": f"{type(exc).__name__}"}
                if snap is not seen:
                    seen = snap
                    event = {k: snap.get(k) for k in _EVENT_FIELDS}
                    yield b"event: status\ndata: " + json.dumps(event).encode() + b"\n\n"
                    last_sent = time.monotonic()
                elif time.monotonic() - last_sent > 15.0:
                    yield b": keepalive\n\n"
                    last_sent = time.monotonic()
                await asyncio.sleep(0.25)
            yield b"event: bye\ndata: {}\n\n"

        return _EventStream(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get(f"{API}/positions", responses=errors(503))
    async def positions() -> dict[str, Any]:
        snap = await backend.status()
        return {"positions": snap.get("positions", []), "as_of": snap.get("last_bar_time")}

    @app.get(f"{API}/strategies", responses=errors(503))
    async def strategies() -> dict[str, Any]:
        """Each strategy's own P&L, from its shadow account (docs/execution.md, "Several
        strategies on one symbol"), in the account currency."""
        snap = await backend.status()
        return {
            "strategies": snap.get("strategies", []),
            "currency": snap.get("currency"),
            "as_of": snap.get("last_bar_time"),
        }

    @app.get(f"{API}/risk", responses=errors(503))
    async def risk() -> dict[str, Any]:
        snap = await backend.status()
        return snap.get("risk") or {}

    @app.get(f"{API}/orders", responses=errors(503))
    async def orders(
        symbol: str | None = Query(None, max_length=64),
        status: str | None = Query(None, pattern=r"^[a-z_]{1,32}$"),
        side: str | None = Query(None, pattern=r"^(buy|sell)$"),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        from n1v1.live.session import order_dict

        rows, total = await asyncio.to_thread(
            reader.query_orders, symbol=symbol, status=status, side=side, limit=limit, offset=offset
        )
        return {
            "orders": [order_dict(o) for o in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @app.get(f"{API}/trades", responses=errors(503))
    async def trades(
        symbol: str | None = Query(None, max_length=64),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        # The engine's own trades (bars held, exit reasons): the store's fills alone cannot say
        # how many bars a position was held under the engine's rules.
        return await backend.trades(symbol, limit, offset)

    @app.get(f"{API}/equity", responses=errors(503))
    async def equity(
        start: str | None = Query(
            None, max_length=64, description="ISO-8601 date or time (UTC without an offset)"
        ),
        end: str | None = Query(
            None, max_length=64, description="ISO-8601 date or time (UTC without an offset)"
        ),
        max_points: int = Query(500, ge=2, le=10_000),
        benchmark: bool = Query(False, description="add buy-and-hold and drawdown per point"),
    ) -> dict[str, Any]:
        """Points from `start` to `end` (both inclusive), downsampled to `max_points`. A bound
        beyond the times the store can hold (years 1677 to 2262) is clamped to them: 0001-01-01
        means from the first point, 9999-12-31 to the last. With `benchmark`, each point also has
        its drawdown (from the whole run's high-water mark, initial cash included) and the value
        of buy-and-hold (docs/serve.md)."""
        low = None if start is None else parse_time("query.start", start)
        high = None if end is None else parse_time("query.end", end)
        if low is not None and high is not None and high < low:
            raise invalid_field("query.end", f"before query.start ({start})")
        if not benchmark:
            points = await asyncio.to_thread(reader.equity, low, high)
            sampled = downsample(points, max_points)
            return {
                "points": [[p.timestamp.isoformat(), p.equity, p.cash] for p in sampled],
                "total": len(points),
            }
        initial = (await backend.status()).get("initial_cash")
        view = await asyncio.to_thread(_equity_with_benchmark, reader, low, high, initial)
        sampled = downsample(view, max_points)
        return {"points": sampled, "total": len(view), "initial_cash": initial}

    @app.get(f"{API}/bars", responses=errors(404, 503))
    async def bars(
        symbol: str | None = Query(None, max_length=64, description="default: the first traded"),
        limit: int = Query(500, ge=1, le=5000),
        end: str | None = Query(
            None, max_length=64, description="ISO-8601 date or time (UTC without an offset)"
        ),
    ) -> dict[str, Any]:
        """The `limit` newest bars of `symbol` the engine traded on (at or before `end`), oldest
        first, as [time, open, high, low, close, volume], and the fills among them (the chart's
        entries, exits and stops)."""
        high = None if end is None else parse_time("query.end", end)
        if symbol is None:
            traded = (await backend.status()).get("symbols") or []
            if not traded:
                raise ApiError(404, "not_found", "no symbol is traded here yet")
            symbol = str(traded[0])
        candles = await asyncio.to_thread(reader.recent_bars, symbol, limit, high)
        if not candles:
            snap = await backend.status()
            if symbol not in (snap.get("symbols") or []):
                raise ApiError(404, "not_found", f"symbol {printable(symbol)!r} is not traded here")
            return {"symbol": symbol, "bars": [], "fills": [], "levels": [], "lines": []}
        fills = await asyncio.to_thread(
            reader.symbol_fills, symbol, candles[0].timestamp, candles[-1].timestamp
        )
        snap = await backend.status()
        working = snap.get("working_orders") or []
        lines = await asyncio.to_thread(_strategy_lines, snap.get("strategies") or [], candles)
        return {
            "lines": lines,
            # the stops and take-profits resting now: the chart's price lines
            "levels": [
                {
                    "client_order_id": o["client_order_id"],
                    "purpose": o["purpose"],
                    "order_type": o["order_type"],
                    "side": o["side"],
                    "qty": o["qty"],
                    "price": o["price"],
                }
                for o in working
                if o["symbol"] == symbol and o.get("price") is not None
            ],
            "symbol": symbol,
            "bars": [
                [b.timestamp.isoformat(), b.open, b.high, b.low, b.close, b.volume] for b in candles
            ],
            "fills": [
                {
                    "time": f.timestamp.isoformat(),
                    "client_order_id": f.client_order_id,
                    "side": f.side.value,
                    "qty": f.qty,
                    "price": f.price,
                    "purpose": f.purpose.value,
                }
                for f in fills
            ],
        }

    @app.get(f"{API}/signals", responses=errors(503))
    async def signals(
        symbol: str | None = Query(None, max_length=64),
        strategy: str | None = Query(None, max_length=64),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        rows = await asyncio.to_thread(
            reader.query_signals, symbol=symbol, strategy=strategy, limit=limit
        )
        return {
            "signals": [
                {
                    "timestamp": s.timestamp.isoformat(),
                    "symbol": s.symbol,
                    "strategy": s.strategy,
                    "target": s.target,
                }
                for s in rows
            ]
        }

    @app.get(f"{API}/models", responses=errors(503))
    async def models() -> dict[str, Any]:
        return await backend.models()

    @app.get(f"{API}/backtests", responses=errors(503))
    async def backtests(
        limit: int = Query(20, ge=1, le=200), offset: int = Query(0, ge=0, le=MAX_OFFSET)
    ) -> dict[str, Any]:
        """Past backtests, newest first, with their headline figures once done."""
        from n1v1.store.backtests import list_backtests

        rows, total = await asyncio.to_thread(list_backtests, store, limit, offset)
        return {"backtests": rows, "total": total, "limit": limit, "offset": offset}

    @app.get(f"{API}/catalog")
    async def catalog() -> dict[str, Any]:
        """What a backtest may be asked for: the bundled datasets (with their span), the files
        in the server's upload directory (with their span, or why they cannot be read) and the
        built-in strategies with every parameter's default."""
        from n1v1.data.uploads import list_uploads

        files = await asyncio.to_thread(list_uploads, upload_dir)
        return {**_catalog(), "files": files, "uploads": upload_dir is not None}

    @app.get(f"{API}/backtests/{{job_id}}", responses=errors(404, 503))
    async def get_backtest(job_id: str = Path(max_length=64)) -> dict[str, Any]:
        """The job, its request and, once done, its result; `report` says whether its HTML
        report can be downloaded."""
        from n1v1.store.backtests import get_backtest as load

        job = await asyncio.to_thread(load, store, job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no backtest {printable(job_id)!r}")
        return job

    @app.get(
        f"{API}/backtests/{{job_id}}/report",
        response_class=Response,
        responses={
            200: {
                "description": "the report, an HTML page, as an attachment",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            **errors(404, 503),
        },
    )
    async def backtest_report(job_id: str = Path(max_length=64)) -> Response:
        """The finished job's self-contained HTML report (the file `n1v1 backtest --report`
        writes), as a download: it opens offline, from disk."""
        from n1v1.store.backtests import backtest_report as load

        page = await asyncio.to_thread(load, store, job_id)
        if page is None:
            raise ApiError(
                404, "not_found", f"no report of backtest {printable(job_id)!r} (not done?)"
            )
        name = re.sub(r"[^A-Za-z0-9_-]", "_", job_id)  # a stored id; never a path
        return Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="n1v1-backtest-{name}.html"'},
        )

    # -- actions ---------------------------------------------------------------------------------
    @app.post(f"{API}/pause", responses=errors(503))
    async def pause(body: PauseBody, request: Request) -> dict[str, Any]:
        return await backend.command("pause", body.model_dump(), request.state.actor)

    @app.post(f"{API}/resume", responses=errors(409, 503))
    async def resume(body: ResumeBody, request: Request) -> dict[str, Any]:
        return await backend.command("resume", body.model_dump(), request.state.actor)

    @app.post(f"{API}/kill-switch", responses=errors(409, 503))
    async def kill_switch(body: KillSwitchBody, request: Request) -> dict[str, Any]:
        return await backend.command("kill_switch", body.model_dump(), request.state.actor)

    @app.post(f"{API}/orders", status_code=201, responses=errors(409, 503))
    async def place_order(body: OrderBody, request: Request) -> dict[str, Any]:
        result = await backend.command("order", body.model_dump(), request.state.actor)
        if not result.get("accepted"):
            raise ApiError(
                409,
                "risk_rejected",
                f"rejected by risk rule {result.get('rule')}: {result.get('reason')}",
                {"rule": result.get("rule"), **(result.get("details") or {})},
            )
        return {k: v for k, v in result.items() if k != "accepted"}

    @app.delete(f"{API}/orders/{{client_order_id}}", responses=errors(404, 503))
    async def cancel_order(
        request: Request, client_order_id: str = Path(max_length=128)
    ) -> dict[str, Any]:
        payload = {"client_order_id": client_order_id}
        return (await backend.command("cancel", payload, request.state.actor))["order"]

    @app.post(f"{API}/algo-orders", status_code=201, responses=errors(404, 409, 422, 503))
    async def place_algo_order(body: AlgoOrderBody, request: Request) -> dict[str, Any]:
        """Accepted and planned at the last closed bar; its first child goes now if due."""
        result = await backend.command("algo_order", body.payload(), request.state.actor)
        return result["algo_order"]

    @app.get(f"{API}/algo-orders", responses=errors(503))
    async def algo_orders(
        symbol: str | None = Query(None, max_length=64),
        status: str | None = Query(None, pattern=r"^(working|done|ended|cancelled)$"),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        rows, total = await asyncio.to_thread(
            reader.query_algo_orders, symbol=symbol, status=status, limit=limit, offset=offset
        )
        return {
            "algo_orders": [_parent(row) for row in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @app.get(f"{API}/algo-orders/{{parent_id}}", responses=errors(404, 503))
    async def get_algo_order(parent_id: str = Path(max_length=64)) -> dict[str, Any]:
        """One parent with its children as orders (status, filled, average price)."""
        from n1v1.live.session import order_dict

        rows = await asyncio.to_thread(reader.algo_orders, parent_id)
        if not rows:
            raise ApiError(404, "not_found", f"no algo order {parent_id!r}")
        parent = _parent(rows[0])
        stored = await asyncio.to_thread(reader.orders_by_id, parent["children"])
        parent["child_orders"] = [order_dict(stored[c]) for c in parent["children"] if c in stored]
        return parent

    @app.delete(f"{API}/algo-orders/{{parent_id}}", responses=errors(404, 409, 503))
    async def cancel_algo_order(
        request: Request, parent_id: str = Path(max_length=64)
    ) -> dict[str, Any]:
        payload = {"parent_id": parent_id}
        return (await backend.command("algo_cancel", payload, request.state.actor))["algo_order"]

    @app.put(f"{API}/config", responses=errors(503))
    async def put_config(body: ConfigBody, request: Request) -> dict[str, Any]:
        if body.strategies:
            await _check_strategy_types(body.strategies)
        return await backend.command("config", body.patch(), request.state.actor)

    async def _check_strategy_types(overrides: dict[str, dict[str, Any]]) -> None:
        """Each override of a running strategy has its parameter's JSON type (the strategy's own
        model, strictly); unknown strategy ids and parameters are the engine's to name."""
        from n1v1.strategies.registry import list_strategies

        running = {
            s.get("id"): s.get("name") for s in (await backend.status()).get("strategies") or []
        }
        problems = []
        for slot, params in overrides.items():
            name = running.get(slot)
            if name in list_strategies():
                problems += strict_param_errors(name, params, f"body.strategies.{slot}")
        if problems:
            names = ", ".join(p["field"] for p in problems)
            raise ApiError(
                422, "invalid_request", f"invalid request: {names}", {"fields": problems}
            )

    @app.post(f"{API}/predict", responses=errors(404, 503))
    async def predict(body: PredictBody) -> dict[str, Any]:
        # the Model deployment's model id: the name (promoted version) or name@version
        model_id = body.model if body.version is None else f"{body.model}@{body.version}"
        return await backend.predict(model_id, body.rows)

    @app.post(f"{API}/backtests", status_code=202, responses=errors(503))
    async def submit_backtest(body: BacktestBody, request: Request) -> dict[str, Any]:
        await asyncio.to_thread(_check_backtest, body, upload_dir)
        job_id = await backend.submit_backtest(body.model_dump(), request.state.actor)
        return {"id": job_id, "status": "queued", "url": f"{API}/backtests/{job_id}"}

    return app


class _EventStream(StreamingResponse):
    """A stream whose watch for the client's departure takes Ray Serve's way of telling it (its
    `receive` raises TaskCancelledError once the proxy cancels a request whose client left) as
    the departure it is: the stream ends quietly instead of an "unhandled error" with a
    traceback in the log for every dashboard tab closed (seen under `make run`)."""

    async def listen_for_disconnect(self, receive: Receive) -> None:
        try:
            await super().listen_for_disconnect(receive)
        except Exception as exc:
            if type(exc).__name__ != "TaskCancelledError":  # Ray's, not imported here
                raise
            log.debug("events: the client left (%s)", type(exc).__name__)


def _strategy_lines(strategies: list[dict[str, Any]], candles: list[Any]) -> list[dict[str, Any]]:
    """Each running rule strategy's chart lines over these bars (built-in strategies, as the
    engine runs them with their effective parameters), the warm-up left out: the lines start
    where the bars shown give them a value, which may be later than in the engine's own window."""
    from n1v1.strategies.registry import create_strategy, list_strategies

    frame = pd.DataFrame(
        [[b.open, b.high, b.low, b.close, b.volume] for b in candles],
        columns=["open", "high", "low", "close", "volume"],
        index=pd.DatetimeIndex([b.timestamp for b in candles]),
    )
    times = [b.timestamp.isoformat() for b in candles]
    out = []
    for slot in strategies:
        name, params = slot.get("name"), slot.get("effective_params")
        if name not in list_strategies() or name == "ml_signal" or params is None:
            continue
        for label, values in create_strategy(name, params).chart_lines(frame).items():
            points = [[t, float(v)] for t, v in zip(times, values, strict=True) if np.isfinite(v)]
            out.append({"strategy": slot["id"], "label": label, "points": points})
    return out


def _prometheus_alerts(base_url: str) -> dict[str, Any]:
    """GET {base_url}/api/v1/alerts, N1V1's alerts only (by name), oldest first."""
    import urllib.error
    import urllib.request

    from n1v1.monitoring.alerts import ALERTS

    ours = {a.name for a in ALERTS}
    url = base_url.rstrip("/") + "/api/v1/alerts"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as answer:
            body = json.loads(answer.read())
    except (OSError, ValueError, urllib.error.URLError) as exc:
        return {"available": False, "reason": f"Prometheus at {base_url}: {exc}"}
    found = []
    for alert in (body.get("data") or {}).get("alerts") or []:
        labels = alert.get("labels") or {}
        if labels.get("alertname") not in ours:
            continue
        found.append(
            {
                "name": labels["alertname"],
                "state": alert.get("state"),
                "severity": labels.get("severity"),
                "summary": (alert.get("annotations") or {}).get("summary"),
                "since": alert.get("activeAt"),
                "labels": {k: v for k, v in labels.items() if k not in ("alertname", "severity")},
            }
        )
    found.sort(key=lambda a: (a["since"] or "", a["name"]))
    return {"available": True, "prometheus": base_url, "alerts": found}


@functools.cache
def _catalog() -> dict[str, Any]:
    from n1v1.data.datasets import list_datasets
    from n1v1.strategies.registry import create_strategy, list_strategies

    return {
        "datasets": [
            {
                "name": d.name,
                "timeframe": d.timeframe,
                "rows": d.rows,
                "first": d.first.isoformat(),
                "last": d.last.isoformat(),
            }
            for d in list_datasets()
        ],
        "strategies": [
            {"name": name, "params": create_strategy(name, {}).params.model_dump(mode="json")}
            for name in list_strategies()
            if name != "ml_signal"  # needs a registered model: not from this form
        ],
    }


def _parent(row: dict[str, Any]) -> dict[str, Any]:
    """A stored parent as the API shows it (the same form as the status)."""
    from n1v1.execution.algos import parent_from_dict
    from n1v1.live.algo_commands import parent_dict

    return parent_dict(parent_from_dict(row["document"]))


def parse_time(field: str, text: str) -> pd.Timestamp:
    """An ISO-8601 date or time as a UTC timestamp (no offset: UTC), clamped to the times the
    store can hold; a 422 naming `field` for anything else (an empty value, "NaT", "now")."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise invalid_field(
            field, "not an ISO-8601 date or time, e.g. 2018-04-04 or 2018-04-04T12:30:00Z"
        ) from None
    if parsed.year <= TIME_MIN.year:  # compared by year: an offset cannot overflow the date
        return TIME_MIN
    if parsed.year >= TIME_MAX.year:
        return TIME_MAX
    stamp = pd.Timestamp(parsed)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _check_backtest(body: BacktestBody, upload_dir: str | None) -> None:
    """Refuse at the door what the task would fail on (names the field)."""
    from n1v1.data import DataError
    from n1v1.data.datasets import dataset_names
    from n1v1.data.uploads import uploaded_file
    from n1v1.strategies.base import StrategyError
    from n1v1.strategies.registry import create_strategy, list_strategies

    if (body.dataset is None) == (body.file is None):
        raise invalid_field(
            "body.dataset", "give one of dataset (a bundled dataset) or file (an uploaded file)"
        )
    if body.file is not None:
        try:
            uploaded_file(upload_dir, body.file)
        except DataError as exc:
            raise invalid_field("body.file", str(exc)) from None
    elif body.dataset not in dataset_names():
        raise invalid_field("body.dataset", f"not a bundled dataset; choose from {dataset_names()}")
    if body.strategy not in list_strategies():
        raise invalid_field(
            "body.strategy", f"not a built-in strategy; choose from {list_strategies()}"
        )
    problems = strict_param_errors(body.strategy, body.params, "body.params")
    if problems:
        raise ApiError(
            422, "invalid_request", f"invalid request: {problems[0]['field']}", {"fields": problems}
        )
    try:
        create_strategy(body.strategy, body.params)
    except StrategyError as exc:
        raise invalid_field("body.params", str(exc)) from None
    for name in ("start", "end"):
        text = getattr(body, name)
        if text is not None:
            parse_time(f"body.{name}", text)


@functools.cache
def _swagger_asset(name: str) -> bytes:
    return resources.files("n1v1.serve").joinpath(f"static/swagger-ui/{name}").read_bytes()


def _route_path(request: Request) -> str:
    """The path the routes match, without the prefix the app is mounted under (Serve passes its
    route_prefix as the ASGI root_path): a prefix must not move /api/v1 past the token check."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


def _client(request: Request) -> str:
    """The peer's address as the server saw it. X-Forwarded-For is not read: any client can
    write it, so a limit keyed on it would be a limit a client chooses."""
    return request.client.host if request.client is not None else "unknown"


class GuardMiddleware:
    """Runs the API's guard (`create_api`) around the routes as plain ASGI.

    Not Starlette's BaseHTTPMiddleware (`@app.middleware("http")`): that one runs the route in a
    task of its own and streams its answer back through a channel, so every request yields to
    the event loop; in a Serve replica, that yield lets the replica start fetching the request's
    further messages from the proxy (an actor call each way, for nothing on a GET), which cost
    the Gateway and the proxy about as much CPU per status request as all of N1V1's own code."""

    def __init__(self, app: ASGIApp, guard: Callable[..., Awaitable[None]]) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.guard(self.app, scope, receive, send)


class _Answer:
    """The guard's `send`: the security headers on every answer, and its status kept."""

    def __init__(self, send: Send, path: str) -> None:
        self._send, self.path = send, path
        self.status: int | None = None

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            _secure(MutableHeaders(scope=message), self.path)
        await self._send(message)

    async def respond(self, response: Response, scope: Scope, receive: Receive) -> None:
        await response(scope, receive, self.send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the routes once the guard has read the body: the body first, then the
    connection's own messages (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _secure(headers: MutableHeaders, path: str) -> None:
    """The security headers (n1v1/serve/guard.py) on every answer; a page sets its own CSP."""
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers.setdefault("Content-Security-Policy", DATA_CSP)
    if path.startswith(API):
        headers.setdefault("Cache-Control", "no-store")  # account data: not cached


def _allowed_methods(app: FastAPI, request: Request) -> str:
    """Every method some route of the request's path takes (Starlette names only the first
    matching route's, so `PUT /api/v1/orders` would say GET alone)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or ApiError 413 as soon as it passes `limit`: a declared Content-Length over
    it is refused unread, a chunked body is read only up to it."""
    size = request.headers.get("content-length")
    if size is not None:
        if not size.isdigit() or int(size) > limit:
            raise ApiError(413, "payload_too_large", f"request body over {limit} bytes")
        return await request.body()
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise ApiError(413, "payload_too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    # Starlette's own cache of the body (what `request.body()` fills): the middleware hands it
    # to the route, whose stream this read has consumed.
    request._body = body
    return body


def _write_audit(store: Store, rows: list[AuditRow]) -> None:
    """Write the audit rows; with the store unreachable, log them instead (the answer the caller
    gets must stay the one its request earned: a 503 here could make it retry a done order)."""
    for actor, action, details in rows:
        try:
            record_audit(store, actor[:_AUDIT_TEXT], action[:_AUDIT_TEXT], details)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            log.error(
                "audit row not written, the store is unreachable (%s): actor=%s action=%s "
                "details=%s",
                unreachable_reason(exc),
                actor,
                action,
                json.dumps(details, default=str),
            )


async def _engine_state(backend: Backend) -> dict[str, Any]:
    """The engine's state and why, for a /readyz that says not ready."""
    try:
        snap = await asyncio.wait_for(backend.status(), 2.0)
    except Exception as exc:
        return {"state": None, "reason": f"status not available: {type(exc).__name__}"}
    return {"state": snap.get("state"), "reason": snap.get("failure") or ""}


def _equity_with_benchmark(
    reader: StoreReader, low: Any, high: Any, initial_cash: float | None
) -> list[list[Any]]:
    """[time, equity, cash, drawdown, buy_and_hold] per stored equity point in [low, high]: the
    drawdown from the whole run's peak (metrics.drawdown), buy-and-hold from the run's first
    bar (metrics.buy_and_hold_curve), both computed over every point before sampling."""
    from n1v1.backtest.metrics import buy_and_hold_curve, drawdown

    everything = reader.equity()
    if not everything or initial_cash is None:
        return []
    values = np.array([p.equity for p in everything], dtype=np.float64)
    under = drawdown(values, float(initial_cash))
    times = pd.DatetimeIndex([p.timestamp for p in everything])
    hold = buy_and_hold_curve(reader.closes(), float(initial_cash))
    held = hold.reindex(times, method="ffill").fillna(float(initial_cash)) if len(hold) else None
    out = []
    for i, p in enumerate(everything):
        if (low is not None and p.timestamp < low) or (high is not None and p.timestamp > high):
            continue
        bench = float(held.iloc[i]) if held is not None else float(initial_cash)
        out.append([p.timestamp.isoformat(), p.equity, p.cash, float(under[i]), bench])
    return out


def downsample(points: list[Any], max_points: int) -> list[Any]:
    """At most `max_points`, evenly spaced by index, always keeping the first and the last."""
    n = len(points)
    if n <= max_points:
        return points
    step = (n - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]
