"""Binance's wire conventions, shared by the fake's modules: decimal strings, error bodies, params.

Binance prints every amount and price as a decimal string with 8 places and answers a refused
request with an HTTP 4XX status and a ``{"code": <negative int>, "msg": <text>}`` body; the codes
and messages here are the ones its spot REST API documents (errors.md of binance-spot-api-docs),
because ccxt maps them to its exception classes by exact code and message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

EIGHT = Decimal("0.00000001")
# The pattern Binance quotes in its -1100 message for decimal parameters.
DECIMAL_PATTERN = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
_DECIMAL = re.compile(DECIMAL_PATTERN)
_INTEGER = re.compile(r"^-?[0-9]{1,19}$")


class ApiError(Exception):
    """A refusal the way Binance sends it: an HTTP status and a ``{"code", "msg"}`` body."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}


def fmt(value: Decimal) -> str:
    """An amount as Binance prints it: fixed point, 8 decimals."""
    return f"{value.quantize(EIGHT):f}"


def round8(value: Decimal) -> Decimal:
    """An amount the exchange books (a cost, a commission): 8 decimals, half up."""
    return value.quantize(EIGHT, rounding=ROUND_HALF_UP)


def ceil8(value: Decimal) -> Decimal:
    """An amount the exchange reserves: rounded up, so the reserve always covers the charge."""
    return value.quantize(EIGHT, rounding=ROUND_CEILING)


def mandatory(name: str) -> ApiError:
    return ApiError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def not_required(name: str) -> ApiError:
    return ApiError(-1106, f"Parameter '{name}' sent when not required.")


def illegal(name: str, pattern: str) -> ApiError:
    return ApiError(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is '{pattern}'."
    )


def need(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise mandatory(name)
    return value


def decimal_param(params: Mapping[str, str], name: str) -> Decimal | None:
    """A DECIMAL parameter, None when absent; a malformed one is Binance's -1100."""
    raw = params.get(name)
    if raw is None:
        return None
    if not _DECIMAL.match(raw):
        raise illegal(name, DECIMAL_PATTERN)
    return Decimal(raw)


def int_param(params: Mapping[str, str], name: str) -> int | None:
    """A LONG/INT parameter, None when absent; a malformed one is Binance's -1100."""
    raw = params.get(name)
    if raw is None:
        return None
    if not _INTEGER.match(raw):
        raise illegal(name, "^-?[0-9]{1,19}$")
    return int(raw)
