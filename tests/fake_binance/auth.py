"""Binance's SIGNED-endpoint security: API key header, HMAC-SHA256 signature, timing window.

As rest-api.md of binance-spot-api-docs defines it: the key travels in the ``X-MBX-APIKEY``
header; ``signature`` is the hex HMAC-SHA256, keyed with the secret, of the query string
concatenated without separator to the request body (both as sent, percent-encoded, without the
``signature`` parameter itself), compared case-insensitively; and the request is processed only if
``timestamp < serverTime + 1000`` and ``serverTime - timestamp <= recvWindow`` (``recvWindow``
defaults to 5000 ms, at most 60000). Each failure is answered with Binance's code and message:
-2014 for a missing or malformed key, -2015 for an unknown one (HTTP 401), -1022 for a wrong
signature, -1021 for a timestamp outside the window, -1131 for a recvWindow above 60000.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Mapping

from .wire import ApiError, decimal_param, int_param, mandatory

API_KEY_FORMAT = re.compile(r"^[A-Za-z0-9]{64}$")
DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60000
_ALPHABET = string.ascii_letters + string.digits


def new_credential() -> str:
    """A fresh 64-character key or secret in Binance's format."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(64))


def signature(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def signed_payload(query: str, body: str) -> str:
    """What the client signed: the query string then the body, each without ``signature=``."""

    def strip(raw: str) -> str:
        return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))

    return strip(query) + strip(body)


def check_key(api_key: str | None, known: Mapping[str, object]) -> None:
    if not api_key or not API_KEY_FORMAT.match(api_key):
        raise ApiError(-2014, "API-key format invalid.", status=401)
    if api_key not in known:
        raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", status=401)


def check_signature(secret: str, params: Mapping[str, str], query: str, body: str) -> None:
    sent = params.get("signature")
    if not sent:
        raise mandatory("signature")
    if not hmac.compare_digest(signature(secret, signed_payload(query, body)), sent.lower()):
        raise ApiError(-1022, "Signature for this request is not valid.")


def check_timing(params: Mapping[str, str], server_ms: int) -> None:
    timestamp = int_param(params, "timestamp")
    if timestamp is None:
        raise mandatory("timestamp")
    if timestamp >= 10**15:  # microseconds, which Binance also accepts
        timestamp //= 1000
    window = decimal_param(params, "recvWindow")
    window_ms = DEFAULT_RECV_WINDOW_MS if window is None else window
    if window_ms > MAX_RECV_WINDOW_MS:
        raise ApiError(-1131, "recvWindow must be less than 60000")
    if timestamp >= server_ms + 1000:
        raise ApiError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server_ms - timestamp > window_ms:
        raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")
