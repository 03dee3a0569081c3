"""What a ccxt error on an order call proves about the order, and how long to back off.

"Never a lost order, never a duplicate" comes down to one question after every failed call: did
the exchange act on it? `classify(exc, kind)` answers it for each class of ccxt's error tree
(``ccxt.base.errors``) and each kind of call, as an `Outcome`:

- ``RETRY``: the request certainly did nothing; send the same request again after
  `backoff_seconds`. Only refusals that happen before the exchange looks at the order qualify:
  rate limits (``RateLimitExceeded``: HTTP 429 or the exchange's own "too many requests" code;
  ``DDoSProtection``: HTTP 418 bans, Cloudflare pages, Binance's temporary key ban) and nonce or
  timestamp refusals (``InvalidNonce``), which are checked while authenticating. A query, which
  changes nothing, is also RETRY after any transport failure. This trusts ccxt's mapping of the
  exchange's codes; resend with the same client id, so that an exchange that did act refuses the
  copy as a duplicate (see EXISTS) while the order is open.
- ``REJECTED``: refused for good; resending the same request fails the same way. On a create the
  order does not exist: ``InvalidOrder``, ``InsufficientFunds``, ``BadSymbol``, ``BadRequest``,
  ``AuthenticationError``, ``PermissionDenied``, ``AccountSuspended``, ``OperationRejected``,
  ``MarketClosed``, ... and the errors ccxt raises before sending anything (``ArgumentsRequired``,
  ``NotSupported``, ``InvalidProxySettings``). `Classified.reason` keeps the exchange's words. On a
  cancel the cancel did not happen and the order is as it was (query it if its state matters). On
  a query there is no answer, and repeating the query unchanged will not give one; in particular
  it is *not* evidence that the order is absent.
- ``UNKNOWN``: the request may have taken effect. Never resubmit a create blindly: look the order
  up by its client id (a cancel is harmless to repeat, but its answer still has to be read).
  Resending is not safe even with the same client id: Binance and Kraken check a client id only
  against *open* orders, so a copy sent after the first filled is a second order. This
  is every transport failure on a create or cancel (``RequestTimeout``, ``NetworkError``,
  ``ExchangeNotAvailable`` and ``OnMaintenance``, which ccxt also raises for HTTP 5xx and for
  unmapped 4xx, ``BadResponse``/``NullResponse``: an answer ccxt could not read, e.g. Binance's
  -1006/-1007 "execution status unknown"), a bare ``ExchangeError`` or ``OperationFailed`` (what
  ccxt raises for unmapped error codes, TLS failures and the like) and ``CancelPending`` (the
  cancel was accepted and is still in progress). Binance documents the rule: a 5xx "is NOT a
  failure; the execution status is UNKNOWN and could have been a success".
- ``EXISTS`` (create only): an order with this client id already exists, so an earlier attempt got
  through; query it, never send another. ccxt has ``DuplicateOrderId`` for this, but none of the
  exchanges N1V1 covers raises it: Binance spot answers -2010 "Duplicate order sent.", Binance
  futures -4116 "ClientOrderId is duplicated", OKX 51016 "Duplicated client order ID", Bybit
  110072 "OrderLinkedID is duplicate" and 170141 "Duplicate clientOrderId", which ccxt raises as
  ``InvalidOrder`` or ``BadRequest``. Taking those for REJECTED would mark a live order rejected
  (a lost order), so any create error whose message mentions a duplicate is EXISTS. The mistake the
  other way only costs a query.
- ``NOT_OPEN`` (cancel only): ``OrderNotFound`` on a cancel means the order is not open any more
  (filled, cancelled, expired) or never was; query it to learn which. It does not mean "never
  existed".
- ``NOT_FOUND`` (query only): the exchange has no order with that id. Right after an ambiguous
  create it may not be visible yet; the caller decides how long to keep asking.

Every class of ccxt's tree has an explicit row below (tests fail when a ccxt upgrade adds one).
An exception outside the table (a class added later, or not a ccxt error at all) is UNKNOWN for
every kind and logged: the one answer that is never unsafe to act on.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from ccxt.base import errors as ccxt_errors

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 500


class CallKind(StrEnum):
    CREATE = "create"  # create_order
    CANCEL = "cancel"  # cancel_order
    QUERY = "query"  # fetch_order, fetch_open_orders, ...: reads that change nothing


class Outcome(StrEnum):
    RETRY = "retry"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    EXISTS = "exists"
    NOT_OPEN = "not_open"
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class Classified:
    outcome: Outcome
    error: str  # the exception's class name, e.g. "InsufficientFunds"
    reason: str  # ccxt's message (the exchange's answer), query strings removed, bounded


R, X, U = Outcome.RETRY, Outcome.REJECTED, Outcome.UNKNOWN
E = ccxt_errors

# (create, cancel, query) for every class of ccxt.base.errors. A row lists the class itself, never
# its parent's answer by default: ccxt hangs exchange codes of very different meaning off one
# parent (e.g. both "order not found" and "order rejected" under InvalidOrder).
_TABLE: dict[type[BaseException], tuple[Outcome, Outcome, Outcome]] = {
    # -- transport and unreadable answers: the request may have been executed
    E.BaseError: (U, U, R),  # the root, raised bare by nothing known; assume the worst
    E.OperationFailed: (U, U, R),  # ccxt's "the call failed" (Binance -1000/-1001/-1006 map here)
    E.NetworkError: (U, U, R),  # connection reset/refused/aborted: sent or not, cannot tell
    E.RequestTimeout: (U, U, R),  # sent, no answer in time (also HTTP 408/504, Binance -1007)
    E.ExchangeNotAvailable: (U, U, R),  # HTTP 5xx and unmapped 4xx: Binance says status unknown
    E.OnMaintenance: (U, U, R),  # 5xx-style answers during maintenance; same doubt
    E.BadResponse: (U, U, R),  # an answer ccxt could not parse: the exchange may have acted
    E.NullResponse: (U, U, R),  # an empty answer: likewise
    E.CancelPending: (U, U, R),  # a cancel accepted and still running: query until final
    E.ChecksumError: (U, U, R),  # websocket order-book checksum; says nothing about the order
    E.UnsubscribeError: (U, U, R),  # websocket unsubscribe; likewise
    E.ExchangeClosedByUser: (U, U, R),  # the client was closed, possibly mid-request
    E.ExchangeError: (U, U, R),  # unmapped exchange code, TLS error, bare refusals: unknown
    # -- refused before any processing: nothing happened, try again later
    E.RateLimitExceeded: (R, R, R),  # HTTP 429 / "too many requests": refused at the door
    E.DDoSProtection: (R, R, R),  # HTTP 418 ban, Cloudflare, Binance temporary key ban
    E.InvalidNonce: (R, R, R),  # nonce/timestamp outside the window: refused at authentication
    # -- refused by the exchange (or by ccxt before sending): final
    E.AuthenticationError: (X, X, X),
    E.PermissionDenied: (X, X, X),
    E.AccountNotEnabled: (X, X, X),
    E.AccountSuspended: (X, X, X),
    E.ArgumentsRequired: (X, X, X),  # raised by ccxt itself, nothing was sent
    E.BadRequest: (X, X, X),
    E.BadSymbol: (X, X, X),
    E.OperationRejected: (X, X, X),
    E.NoChange: (X, X, X),
    E.MarginModeAlreadySet: (X, X, X),
    E.MarketClosed: (X, X, X),
    E.ManualInteractionNeeded: (X, X, X),
    E.RestrictedLocation: (X, X, X),
    E.InsufficientFunds: (X, X, X),
    E.InvalidAddress: (X, X, X),
    E.AddressPending: (X, X, X),
    E.InvalidOrder: (X, X, X),
    E.OrderImmediatelyFillable: (X, X, X),  # a post-only order that would take: not placed
    E.OrderNotFillable: (X, X, X),  # FOK/IOC/post-only refusals: not placed
    E.ContractUnavailable: (X, X, X),
    E.NotSupported: (X, X, X),  # mostly raised by ccxt before sending
    E.InvalidProxySettings: (X, X, X),  # raised by ccxt before sending
    # ccxt's local order cache does not hold it: says nothing about the exchange, hence not
    # NOT_FOUND on a query
    E.OrderNotCached: (X, X, X),
    # -- the answers that say where the order stands
    E.OrderNotFound: (X, Outcome.NOT_OPEN, Outcome.NOT_FOUND),  # odd on a create: nothing placed
    E.DuplicateOrderId: (Outcome.EXISTS, X, X),
}
del R, X, U, E

_KIND_INDEX = {CallKind.CREATE: 0, CallKind.CANCEL: 1, CallKind.QUERY: 2}
_DUPLICATE = re.compile(r"duplicat", re.IGNORECASE)
_URL_QUERY = re.compile(r"(https?://[^\s?]+)\?\S*")


def ccxt_error_classes() -> list[type[ccxt_errors.BaseError]]:
    """Every exception class ccxt defines (``ccxt.base.errors``), found by inspection, by name."""
    members = inspect.getmembers(ccxt_errors, inspect.isclass)
    found = [c for _, c in members if issubclass(c, ccxt_errors.BaseError)]
    return sorted(found, key=lambda c: c.__name__)


def unclassified() -> list[str]:
    """Names of ccxt's error classes without a row here (empty unless ccxt grew new ones)."""
    return [c.__name__ for c in ccxt_error_classes() if c not in _TABLE]


def _reason(exc: BaseException) -> str:
    # ccxt puts the URL in transport errors; for signed GET/DELETE calls its query string holds
    # the signature and timestamp, which have no place in logs or order records.
    text = _URL_QUERY.sub(r"\1?...", " ".join(str(exc).split()))
    return text[:MAX_REASON_CHARS]


def classify(exc: BaseException, kind: CallKind | str) -> Classified:
    """What `exc`, raised by a ccxt call of `kind`, proves about the order (see the module doc)."""
    kind = CallKind(kind)
    reason = _reason(exc)
    row = _TABLE.get(type(exc))
    if row is None:
        what = "ccxt error" if isinstance(exc, ccxt_errors.BaseError) else "error outside ccxt"
        log.warning("unclassified %s %s on %s: treated as unknown", what, type(exc).__name__, kind)
        return Classified(Outcome.UNKNOWN, type(exc).__name__, reason)
    outcome = row[_KIND_INDEX[kind]]
    if kind is CallKind.CREATE and _DUPLICATE.search(reason):
        outcome = Outcome.EXISTS
    return Classified(outcome, type(exc).__name__, reason)


def retry_after_seconds(
    headers: Mapping[str, str] | None, now: datetime | None = None
) -> float | None:
    """The wait an HTTP ``Retry-After`` header asks for, in seconds (>= 0), or None.

    ccxt keeps the last response's headers on the exchange (``exchange.last_response_headers``;
    it is set before the error is raised), so after a ``RateLimitExceeded`` or ``DDoSProtection``
    pass those. Binance sends Retry-After with its 429 and 418 answers and bans IPs that ignore
    it (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits). With several
    threads sharing one exchange object the headers may belong to another call; the wait is then
    merely a different one. The header is delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
    """
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def backoff_seconds(
    attempt: int,
    rng: random.Random,
    *,
    retry_after: float | None = None,
    base: float = 1.0,
    cap: float = 60.0,
) -> float:
    """How long to wait before retry number `attempt` (0 for the first retry).

    The exchange's own ``Retry-After`` wins when given, uncapped: it knows its limits, and
    retrying earlier only extends a ban. Otherwise "equal jitter": half of
    ``min(cap, base * 2**attempt)`` plus a uniform draw over the other half from `rng`, so
    clients that failed together do not retry together, yet no wait collapses to zero.
    """
    if attempt < 0:
        raise ValueError(f"attempt: must be >= 0, got {attempt}")
    if not (0.0 < base <= cap and math.isfinite(cap)):
        raise ValueError(f"base and cap: need 0 < base <= cap < inf, got base={base}, cap={cap}")
    if retry_after is not None and math.isfinite(retry_after):
        return max(retry_after, 0.0)
    step = min(cap, base * 2.0 ** min(attempt, 64))
    return step / 2.0 + rng.uniform(0.0, step / 2.0)
