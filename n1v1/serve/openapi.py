"""The OpenAPI document says what the API really answers: the bearer scheme on every /api/v1
operation, and each error status an operation can give, all in the one error envelope.

Statuses that depend on the route (404, 409, 503, ...) are declared beside each route in
n1v1/serve/api.py; those the guard middleware gives to every /api/v1 route (401, 429, 500; 403
and 413 on the state-changing ones) are added here, so no route can forget them. FastAPI's own
422 schema is replaced: the API's 422 is the envelope too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
SCHEME = "bearerAuth"
DESCRIPTIONS = {
    401: "no bearer token, or a wrong one",
    403: "the read-only token on a state-changing route",
    404: "no such resource",
    409: "refused in the engine's current state (e.g. a risk rule, the kill switch)",
    413: "request body over api.max_body_bytes",
    422: "invalid request: details.fields[].field names each bad field",
    429: "rate limited: wait Retry-After seconds",
    500: "internal error: details.error_id finds it in the gateway's log",
    503: "the engine, a model or the store is not available",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` for error statuses a route gives, in the envelope."""
    from n1v1.serve.schemas import ErrorResponse

    return {s: {"model": ErrorResponse, "description": DESCRIPTIONS[s]} for s in statuses}


def document(
    schema: dict[str, Any], api_prefix: str, changes_state: Callable[[str, str], bool]
) -> dict[str, Any]:
    """Add the security scheme and the guard's error answers to FastAPI's schema (in place)."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "the admin token, or the read-only token for reads and predictions",
    }
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = _error(422)
            statuses = [500]
            if path.startswith(api_prefix):
                operation["security"] = [{SCHEME: []}]
                statuses += [401, 429]
                if method.upper() in ("POST", "PUT", "PATCH", "DELETE"):
                    statuses.append(413)
                if changes_state(method.upper(), path):
                    statuses.append(403)
            for status in statuses:
                responses.setdefault(str(status), _error(status))
            if "429" in responses:
                responses["429"]["headers"] = RETRY_AFTER
    return schema


def _error(status: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": ERROR_REF}},
    }
