"""The HTTP API as a plain FastAPI app over a `Backend`: the Serve gateway plugs in deployment
handles, the benchmark's bare-uvicorn twin plugs in local objects, and both run these handlers.

Security: every /api/v1 route needs a bearer token, compared in constant time against a SHA-256
hash (the process never holds another token in plain text); a read-only token gets 403 on
state-changing routes; bodies over the size limit get 413 before they are parsed; each token has
a token-bucket rate limit (429); every state-changing request, allowed or not, goes to the audit
log with the caller and the outcome. Errors always look like
`{"error": {"code", "message", "details"}}`; a body that is not JSON says where it breaks, or
that the Content-Type header is missing, instead of naming a character position as a field.

`/docs` is Swagger UI served from the package (`static/swagger-ui/`), so it works offline.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Protocol

import pandas as pd
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from n1v1.live.session import CommandError
from n1v1.serve.schemas import (
    BacktestBody,
    ConfigBody,
    KillSwitchBody,
    OrderBody,
    PauseBody,
    PredictBody,
    ResumeBody,
)
from n1v1.store import StoreReader, record_audit
from n1v1.store.availability import RETRY_AFTER_S, is_unreachable, unreachable_reason
from n1v1.store.schema import Store

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
_STATUS_FOR = {"not_found": 404, "conflict": 409, "invalid": 422, "unavailable": 503}
_MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
_READ_ONLY_POSTS = frozenset({f"{API}/predict"})  # a computation, not a change: no audit, no 403


def _changes_state(method: str, path: str) -> bool:
    return method in _MUTATING and path not in _READ_ONLY_POSTS


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


class Backend(Protocol):
    """What the API needs from the engine, the models and the backtest runner."""

    async def status(self) -> dict[str, Any]: ...

    async def trades(self, symbol: str | None, limit: int, offset: int) -> dict[str, Any]: ...

    async def command(self, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]: ...

    async def predict(self, model: str, rows: list[list[float]]) -> dict[str, Any]: ...

    async def models(self) -> dict[str, Any]: ...

    async def submit_backtest(self, request: dict[str, Any], actor: str) -> str: ...

    async def ready(self) -> dict[str, bool]: ...


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBucket:
    """`rate` requests per second on average, bursts up to `burst`; one bucket per token."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, now: float) -> tuple[bool, float]:
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return True, 0.0
        self._buckets[key] = (tokens, now)
        return False, (1.0 - tokens) / self.rate


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _err(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status)


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
) -> FastAPI:
    app = FastAPI(
        title="N1V1",
        version="1",
        description="Paper trading engine, ML models and backtests. Bearer token on /api/v1.",
        docs_url=None,  # replaced below by a page whose assets come from this package
        redoc_url=None,  # ReDoc would load its script from a CDN: not offered
    )
    reader = StoreReader(store)
    limiter = TokenBucket(rate_limit_per_s, rate_burst)
    dashboard = resources.files("n1v1.serve").joinpath("static/dashboard.html").read_text()

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

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        started = time.perf_counter()
        path = _route_path(request)
        response: Response
        try:
            response = await _guarded(request, call_next, path)
        except ApiError as exc:
            response = _err(exc.status, exc.code, exc.message, exc.details)
        if observe_request is not None:
            route = request.scope.get("route")
            template = getattr(route, "path", None) or (
                "/api/v1/*" if path.startswith(API) else "*"
            )
            observe_request(
                template, request.method, response.status_code, time.perf_counter() - started
            )
        return response

    async def _guarded(
        request: Request, call_next: Callable[[Request], Awaitable[Response]], path: str
    ) -> Response:
        size = request.headers.get("content-length")
        too_large = size is not None and (not size.isdigit() or int(size) > max_body_bytes)
        if not too_large and request.method in _MUTATING and size is None:
            too_large = len(await request.body()) > max_body_bytes  # chunked: count it
        if too_large:
            if _changes_state(request.method, path) and path.startswith(API):
                _audit(store, "anonymous", request, 413, {"error": "payload_too_large"})
            raise ApiError(413, "payload_too_large", f"request body over {max_body_bytes} bytes")
        if not path.startswith(API):
            return await call_next(request)
        try:
            role, actor = authenticate(request)
        except ApiError as exc:
            if _changes_state(request.method, path):
                _audit(store, "anonymous", request, exc.status, {"error": exc.code})
            raise
        if role == "read" and _changes_state(request.method, path):
            _audit(store, actor, request, 403, {"error": "forbidden"})
            raise ApiError(403, "forbidden", "this token is read-only")
        allowed, retry_after = limiter.allow(actor, time.monotonic())
        if not allowed:
            response = _err(
                429,
                "rate_limited",
                "too many requests for this token",
                {"retry_after_s": round(retry_after, 3)},
            )
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            if _changes_state(request.method, path):
                _audit(store, actor, request, 429, {"error": "rate_limited"})
            return response
        request.state.actor = actor
        request.state.role = role
        response = await call_next(request)
        if _changes_state(request.method, path):
            _audit(store, actor, request, response.status_code, {})
        return response

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _err(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(CommandError)
    async def _command_error(_: Request, exc: CommandError) -> JSONResponse:
        return _err(_STATUS_FOR.get(exc.code, 500), exc.code, exc.message, exc.details)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeoutError)
    async def _store_unreachable(_: Request, exc: Exception) -> JSONResponse:
        """A read of the store during a database outage: 503, try again later (not a 500)."""
        response = _err(
            503,
            "store_unavailable",
            f"the store cannot be reached: {unreachable_reason(exc)}",
            {"retry_after_s": RETRY_AFTER_S},
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        body_problem = await _body_problem(request, exc.errors())
        if body_problem is not None:
            field = {"field": "body", "message": body_problem[1], "type": body_problem[0]}
            message = f"invalid request: body: {body_problem[1]}"
            return _err(422, "invalid_request", message, {"fields": [field]})
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        names = ", ".join(f["field"] for f in fields)
        return _err(422, "invalid_request", f"invalid request: {names}", {"fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _err(exc.status_code, code, str(exc.detail))

    # -- unauthenticated -------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(dashboard)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title="N1V1 API",
            swagger_js_url=f"{root}{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER_UI}/favicon-32x32.png",
            # validatorUrl null: Swagger UI would otherwise fetch a badge from its online validator
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )

    @app.get(f"{SWAGGER_UI}/{{name}}", include_in_schema=False)
    async def swagger_asset(name: str) -> Response:
        media_type = _SWAGGER_FILES.get(name)
        if media_type is None:
            raise ApiError(404, "not_found", f"no such documentation asset {name!r}")
        return Response(
            _swagger_asset(name),
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = await backend.ready()
        ok = all(checks.values())
        body: dict[str, Any] = {"ready": ok, "checks": checks}
        if not ok:  # why: the engine's state and reason (a lost store, a lease held elsewhere)
            body["engine"] = await _engine_state(backend)
        return JSONResponse(body, status_code=200 if ok else 503)

    # -- reads -----------------------------------------------------------------------------------
    @app.get(f"{API}/status")
    async def status() -> dict[str, Any]:
        snap = await backend.status()
        return {k: v for k, v in snap.items() if k not in ("positions", "risk", "working_orders")}

    @app.get(f"{API}/positions")
    async def positions() -> dict[str, Any]:
        snap = await backend.status()
        return {"positions": snap.get("positions", []), "as_of": snap.get("last_bar_time")}

    @app.get(f"{API}/strategies")
    async def strategies() -> dict[str, Any]:
        """Each strategy's own P&L, from its shadow account (docs/execution.md, "Several
        strategies on one symbol"), in the account currency."""
        snap = await backend.status()
        return {
            "strategies": snap.get("strategies", []),
            "currency": snap.get("currency"),
            "as_of": snap.get("last_bar_time"),
        }

    @app.get(f"{API}/risk")
    async def risk() -> dict[str, Any]:
        snap = await backend.status()
        return snap.get("risk") or {}

    @app.get(f"{API}/orders")
    async def orders(
        symbol: str | None = None,
        status: str | None = Query(None, pattern=r"^[a-z_]+$"),
        side: str | None = Query(None, pattern=r"^(buy|sell)$"),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        from n1v1.live.session import order_dict

        rows, total = reader.query_orders(
            symbol=symbol, status=status, side=side, limit=limit, offset=offset
        )
        return {
            "orders": [order_dict(o) for o in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @app.get(f"{API}/trades")
    async def trades(
        symbol: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        # The engine's own trades (bars held, exit reasons): the store's fills alone cannot say
        # how many bars a position was held under the engine's rules.
        return await backend.trades(symbol, limit, offset)

    @app.get(f"{API}/equity")
    async def equity(
        start: str | None = None,
        end: str | None = None,
        max_points: int = Query(500, ge=2, le=10_000),
    ) -> dict[str, Any]:
        bounds = {}
        for name, text in (("start", start), ("end", end)):
            if text is not None:
                try:
                    ts = pd.Timestamp(text)
                except ValueError:
                    raise ApiError(
                        422,
                        "invalid_request",
                        f"invalid request: {name}",
                        {"fields": [{"field": f"query.{name}", "message": "not an ISO-8601 time"}]},
                    ) from None
                bounds[name] = ts.tz_localize("UTC") if ts.tzinfo is None else ts
        points = reader.equity(bounds.get("start"), bounds.get("end"))
        sampled = downsample(points, max_points)
        return {
            "points": [[p.timestamp.isoformat(), p.equity, p.cash] for p in sampled],
            "total": len(points),
        }

    @app.get(f"{API}/signals")
    async def signals(
        symbol: str | None = None,
        strategy: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        rows = reader.query_signals(symbol=symbol, strategy=strategy, limit=limit)
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

    @app.get(f"{API}/models")
    async def models() -> dict[str, Any]:
        return await backend.models()

    @app.get(f"{API}/backtests/{{job_id}}")
    async def get_backtest(job_id: str) -> dict[str, Any]:
        from n1v1.store.backtests import get_backtest as load

        job = load(store, job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no backtest {job_id!r}")
        return job

    # -- actions ---------------------------------------------------------------------------------
    @app.post(f"{API}/pause")
    async def pause(body: PauseBody, request: Request) -> dict[str, Any]:
        return await backend.command("pause", body.model_dump(), request.state.actor)

    @app.post(f"{API}/resume")
    async def resume(body: ResumeBody, request: Request) -> dict[str, Any]:
        return await backend.command("resume", body.model_dump(), request.state.actor)

    @app.post(f"{API}/kill-switch")
    async def kill_switch(body: KillSwitchBody, request: Request) -> dict[str, Any]:
        return await backend.command("kill_switch", body.model_dump(), request.state.actor)

    @app.post(f"{API}/orders", status_code=201)
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

    @app.delete(f"{API}/orders/{{client_order_id}}")
    async def cancel_order(client_order_id: str, request: Request) -> dict[str, Any]:
        payload = {"client_order_id": client_order_id}
        return (await backend.command("cancel", payload, request.state.actor))["order"]

    @app.put(f"{API}/config")
    async def put_config(body: ConfigBody, request: Request) -> dict[str, Any]:
        return await backend.command("config", body.patch(), request.state.actor)

    @app.post(f"{API}/predict")
    async def predict(body: PredictBody) -> dict[str, Any]:
        # the Model deployment's model id: the name (promoted version) or name@version
        model_id = body.model if body.version is None else f"{body.model}@{body.version}"
        return await backend.predict(model_id, body.rows)

    @app.post(f"{API}/backtests", status_code=202)
    async def submit_backtest(body: BacktestBody, request: Request) -> dict[str, Any]:
        _check_backtest(body)
        job_id = await backend.submit_backtest(body.model_dump(), request.state.actor)
        return {"id": job_id, "status": "queued", "url": f"{API}/backtests/{job_id}"}

    return app


def _check_backtest(body: BacktestBody) -> None:
    """Refuse at the door what the task would fail on (names the field)."""
    from n1v1.data.datasets import dataset_names
    from n1v1.strategies.registry import list_strategies

    def invalid(field: str, message: str) -> ApiError:
        return ApiError(
            422,
            "invalid_request",
            f"invalid request: body.{field}",
            {"fields": [{"field": f"body.{field}", "message": message}]},
        )

    if body.dataset not in dataset_names():
        raise invalid("dataset", f"not a bundled dataset; choose from {dataset_names()}")
    if body.strategy not in list_strategies():
        raise invalid("strategy", f"not a built-in strategy; choose from {list_strategies()}")
    from n1v1.strategies.base import StrategyError
    from n1v1.strategies.registry import create_strategy

    try:
        create_strategy(body.strategy, body.params)
    except StrategyError as exc:
        raise invalid("params", str(exc)) from None


@functools.cache
def _swagger_asset(name: str) -> bytes:
    return resources.files("n1v1.serve").joinpath(f"static/swagger-ui/{name}").read_bytes()


def _is_json(content_type: str) -> bool:
    """application/json or application/<anything>+json, as FastAPI itself decides."""
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _body_problem(request: Request, errors: Any) -> tuple[str, str] | None:
    """(type, message) when the body as a whole is unusable: not JSON, sent without the JSON
    content type, or missing. None when the errors are about fields of a JSON body."""
    whole_body = [e for e in errors if tuple(e["loc"])[:1] == ("body",) and len(e["loc"]) <= 2]
    if not whole_body:
        return None
    raw = await request.body()
    content_type = request.headers.get("content-type")
    if raw.strip() and (content_type is None or not _is_json(content_type)):
        got = "no Content-Type header" if content_type is None else f"Content-Type {content_type}"
        return "content_type", f"send Content-Type: application/json (got {got})"
    kinds = {e["type"] for e in whole_body}
    if "json_invalid" in kinds:
        try:
            json.loads(raw)
        except ValueError as exc:
            where = (
                f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
                if isinstance(exc, json.JSONDecodeError)
                else str(exc)
            )
            return "json_invalid", f"not valid JSON ({where})"
        return "json_invalid", "not valid JSON"
    if "missing" in kinds and not raw.strip():
        return "missing", "a JSON object is required (send {} for no options)"
    return None


def _route_path(request: Request) -> str:
    """The path the routes match, without the prefix the app is mounted under (Serve passes its
    route_prefix as the ASGI root_path): a prefix must not move /api/v1 past the token check."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


def _audit(store: Store, actor: str, request: Request, status: int, extra: dict[str, Any]) -> None:
    """Write the audit row; with the store unreachable, log it instead (the answer the caller
    gets must stay the one its request earned: a 503 here could make it retry a done order)."""
    details = {"status": status, "path": request.url.path, **extra}
    action = f"{request.method} {request.url.path}"
    try:
        record_audit(store, actor, action, details)
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        log.error(
            "audit row not written, the store is unreachable (%s): actor=%s action=%s details=%s",
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


def downsample(points: list[Any], max_points: int) -> list[Any]:
    """At most `max_points`, evenly spaced by index, always keeping the first and the last."""
    n = len(points)
    if n <= max_points:
        return points
    step = (n - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]
