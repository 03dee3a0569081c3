"""Fault switches: what goes wrong with the next requests to an endpoint, queued or at random.

Kinds, and what the client (ccxt) sees:

- ``accept_then_timeout``: the request IS carried out (the order created, the cancel done), then
  the answer is held for ``delay`` seconds (default 60, longer than ccxt's default timeout; the
  server's close ends the wait) and the socket closed unanswered: the client sees a read timeout
  (ccxt RequestTimeout).
- ``drop_after_accept``: carried out, then the socket is closed with no answer (NetworkError).
- ``drop_before_accept``: the socket is closed with no answer and nothing is done (NetworkError).
- ``error_5xx_before_accept``: HTTP ``status`` (500/502/503; 504 reads as a timeout to ccxt)
  with a text body, nothing done (ExchangeNotAvailable).
- ``error_5xx_after_accept``: carried out, then HTTP ``status``: Binance's "execution status
  UNKNOWN" 5XX (ExchangeNotAvailable), the order nevertheless exists.
- ``rate_limit``: HTTP 429 with ``Retry-After: retry_after`` and Binance's -1003 body, nothing done
  (ccxt raises DDoSProtection for any 429).
- ``delayed_visibility``: answered normally, but the order created stays out of GET order /
  openOrders / allOrders / myTrades for ``hide_for`` seconds. ``hide_for`` also applies to an
  order created under ``accept_then_timeout``, ``drop_after_accept`` or ``error_5xx_after_accept``:
  the worst case, where the client neither got an answer nor can find the order yet.
- ``fill_before_cancel`` (DELETE /api/v3/order only): ``fill_parts`` lots of the order fill just
  before the cancel is applied, the race a cancel can lose.
- ``raw``: answer ``status`` with ``body`` as is, nothing done (a malformed or HTML answer).

`FaultPlan.queue` arms a fault for the next ``times`` requests to (method, path); with method None
it matches any method. `FaultPlan.randomize` adds a seeded random mode: each request to one of the
given endpoints that no queued fault claimed gets, with ``probability``, one of ``faults`` drawn by
the same seeded generator, so a long run injects a reproducible ~20 % of faults. The server's
request log records which fault each request got.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

FaultKind = Literal[
    "accept_then_timeout",
    "drop_after_accept",
    "drop_before_accept",
    "error_5xx_before_accept",
    "error_5xx_after_accept",
    "rate_limit",
    "delayed_visibility",
    "fill_before_cancel",
    "raw",
]
BEFORE_ACCEPT = frozenset({"drop_before_accept", "error_5xx_before_accept", "rate_limit", "raw"})
KINDS = frozenset(get_args(FaultKind))
ORDER_PATH = "/api/v3/order"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    delay: float = 60.0  # accept_then_timeout: seconds the answer is held (or until close())
    hide_for: float = 0.0  # seconds a created order stays out of queries
    status: int = 503  # error_5xx_*: the HTTP status; raw: the status
    retry_after: int = 1  # rate_limit: the Retry-After header, seconds
    fill_parts: int = 1  # fill_before_cancel: lots filled just before the cancel
    body: str = ""  # raw: the body sent as is
    content_type: str = "application/json"  # raw

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind {self.kind!r} is not one of {sorted(KINDS)}")
        if self.kind.startswith("error_5xx") and not 500 <= self.status <= 599:
            raise ValueError(f"fault status {self.status} of {self.kind} is not a 5XX")
        if self.delay < 0 or self.hide_for < 0 or self.retry_after < 0 or self.fill_parts < 1:
            raise ValueError(f"fault {self} has a negative delay/hide_for/retry_after or no parts")

    @property
    def accepts(self) -> bool:
        """Whether the request is carried out despite the fault."""
        return self.kind not in BEFORE_ACCEPT


def _check_target(method: str | None, path: str, fault: Fault) -> None:
    if fault.kind == "fill_before_cancel" and (method, path) != ("DELETE", ORDER_PATH):
        raise ValueError(f"fill_before_cancel applies to DELETE {ORDER_PATH}, not {method} {path}")
    if fault.kind == "delayed_visibility" and (method, path) != ("POST", ORDER_PATH):
        raise ValueError(f"delayed_visibility applies to POST {ORDER_PATH}, not {method} {path}")


class FaultPlan:
    """Queued and random faults per endpoint; not thread-safe (the server locks around it)."""

    def __init__(self) -> None:
        self._queued: dict[tuple[str | None, str], deque[Fault]] = {}
        # one plan per `randomize` call, each with its own generator and endpoints
        self._random: list[tuple[random.Random, float, tuple[Fault, ...], frozenset]] = []

    def queue(self, method: str | None, path: str, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` requests to ``method`` (None: any) ``path``."""
        _check_target(method, path, fault)
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        self._queued.setdefault((method, path), deque()).extend([fault] * times)

    def randomize(
        self,
        seed: int,
        probability: float,
        faults: Sequence[Fault],
        endpoints: Iterable[tuple[str, str]],
    ) -> None:
        """From now on, each request to one of ``endpoints`` (method, path) gets, with
        ``probability``, a fault drawn from ``faults`` by a generator seeded with ``seed``
        (plans for different endpoints add up; the first whose endpoints match decides)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {probability}")
        endpoints = frozenset(endpoints)
        if not faults or not endpoints:
            raise ValueError("randomize needs at least one fault and one endpoint")
        for method, path in endpoints:
            for fault in faults:
                _check_target(method, path, fault)
        self._random.append((random.Random(seed), probability, tuple(faults), endpoints))

    def stop_random(self) -> None:
        self._random = []

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any (queued first, then random)."""
        fault = None
        for key in ((method, path), (None, path)):
            queued = self._queued.get(key)
            if queued:
                fault = queued.popleft()
                break
        for rng, probability, faults, endpoints in self._random if fault is None else ():
            if (method, path) in endpoints:
                if rng.random() < probability:
                    fault = rng.choice(faults)
                break
        return fault
