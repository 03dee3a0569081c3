"""What the API answers when a request goes wrong: always the envelope
`{"error": {"code", "message", "details"}}`, naming the field, rule or limit, and never a value
the caller sent verbatim (it may be huge, or not JSON at all) nor a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from n1v1.config import suggest_key

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.details, self.headers)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def invalid_field(field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        f"invalid request: {field}",
        {"fields": [{"field": field, "message": message}]},
    )


def rate_limited(retry_after: float, message: str) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        message,
        {"retry_after_s": round(retry_after, 3)},
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


def _is_json(content_type: str) -> bool:
    """application/json or application/<anything>+json, as FastAPI itself decides."""
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def body_problem(request: Request, errors: Any) -> tuple[str, str] | None:
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


def undecodable(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
    return "cannot be read as JSON"


def internal_error(request: Request) -> JSONResponse:
    """A 500 in the envelope; the traceback goes to the log under an id the answer carries."""
    error_id = secrets.token_hex(6)
    log.exception(
        "unhandled error %s on %s %s", error_id, request.method, printable(request.url.path)
    )
    return error_response(
        500,
        "internal_error",
        f"internal error; the gateway's log has it under {error_id}",
        {"error_id": error_id},
    )


def field_error(request: Request, error: Any) -> dict[str, Any]:
    """One bad field: its dotted path and what is wrong (an unknown key with the closest valid
    one). Never the value sent: it may be huge, or not JSON at all (NaN)."""
    loc = [str(p) for p in error["loc"]]
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        body = getattr(getattr(request.scope.get("route"), "body_field", None), "field_info", None)
        model = getattr(body, "annotation", None)
        suggestion = suggest_key(model, loc[1:]) if loc[:1] == ["body"] and model else None
        message = "unknown key" + (f"; did you mean {suggestion}?" if suggestion else "")
    return {"field": ".".join(loc), "message": message, "type": error["type"]}


def printable(text: str, limit: int = 200) -> str:
    """`text` for a log, a message or an audit row: control characters (a NUL cannot be stored
    in PostgreSQL) replaced, at most `limit` characters."""
    clean = "".join(c if c.isprintable() else "\ufffd" for c in text[:limit])
    return clean if len(text) <= limit else clean + "..."
