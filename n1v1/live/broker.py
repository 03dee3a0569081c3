"""The network side of the live venue: sends what the engine queued, reads what the exchange did.

The engine's `LiveVenue` never calls the exchange; this broker does, between steps, in the session's
loop thread. Its rules, each for a failure that trading systems are known to get wrong:

- **Intent first.** It only sends orders whose rows a committed transaction already holds (state
  `SUBMITTING`, client order id deterministic from the decision).
- **Fenced at the exchange.** Every call that changes orders runs inside a store transaction
  that holds the lease row (shared on PostgreSQL, the write lock on SQLite) and checks its token
  first, and the answer is stored in that same transaction. An engine that lost the lease cannot
  send; one taking over waits until an in-flight call and its record are done (two engines
  overlap during a RayService upgrade).
- **Errors by what they prove** (n1v1/execution/exchange_errors.py): a refusal is final
  (`REJECTED`, with the exchange's reason); a timeout, dropped connection, 5xx or unreadable
  answer makes the order `UNKNOWN`: never sent again, found by its client order id. Not found
  after `grace_s` (new orders can be invisible for a moment): proven absent, `REJECTED`. A rate
  limit proves the order was not taken: the same request is retried after a back-off.
- **Fills by trade id.** Each fill is an event keyed by the exchange's trade id (unique in the
  store), so a poll repeated after a timeout or a restart stores it once. An order is reported
  closed only after every one of its fills has been read, so a fill racing a cancel is kept.

Everything read becomes a `VenueEvent`, stored the moment it is read (`EventLog.record`) and applied
by the engine at the next step.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import ccxt
import pandas as pd

from n1v1.domain import DustRule, Order, OrderStatus
from n1v1.execution.client_ids import ccxt_client_id_params, exchange_client_id
from n1v1.execution.exchange_errors import (
    Outcome,
    backoff_seconds,
    classify,
    retry_after_seconds,
)
from n1v1.execution.exchange_rules import OrderRuleError, dust_rule, prepare_order
from n1v1.execution.live_venue import EventKind, Heard, LiveVenue, VenueEvent, VenueRequest

log = logging.getLogger(__name__)


class ExchangeDisagreement(RuntimeError):
    """The exchange and the store disagree about an order: trading stops, an operator acts."""


class EventLog(Protocol):
    """Where the broker's events go (the store: `SqlJournal`)."""

    def fenced(self) -> AbstractContextManager[None]:
        """A transaction that holds the lease (FencingError if another engine has it)."""

    def record_venue_events(self, events: list[VenueEvent]) -> list[VenueEvent]:
        """Store events for the next step, inside the open fenced transaction; returns those that
        were new (a fill whose trade id is already stored is dropped)."""

    def stored_trade_ids(self, client_order_id: str) -> set[str]: ...


@dataclass
class BrokerStats:
    """Counters the status and the metrics show."""

    sent: int = 0
    rejected: int = 0
    unknown: int = 0
    resolved: int = 0
    fills: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class ExchangeBroker:
    def __init__(
        self,
        exchange: Any,
        venue: LiveVenue,
        log_: EventLog,
        *,
        reference_price: Callable[[str], float | None],
        grace_s: float = 10.0,
        max_retries: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        checkpoint: Callable[[str, str], None] | None = None,
    ) -> None:
        self.exchange = exchange
        self.exchange_id = str(exchange.id)
        self.venue = venue
        self.log = log_
        self.reference_price = reference_price  # the last close: a market order's value
        self.grace_s = grace_s
        self.max_retries = max_retries
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        # named points of the order lifecycle, for the crash tests (tests/live_support.py):
        # (point, the order's purpose, "" for fills)
        self.checkpoint = checkpoint or (lambda _point, _purpose: None)
        self.stats = BrokerStats()
        self._unknown_since: dict[str, float] = {}  # client order id -> first time not found

    # -- sending -----------------------------------------------------------------------------------
    def dispatch(self) -> None:
        """Send every queued request; each call and its stored answer in one fenced transaction."""
        for request in self.venue.take_outbox():
            if request.action == "create":
                self._create(request.order)
            else:
                self._cancel(request)

    def _create(self, order: Order) -> None:
        params = self._id_params(order)
        now = pd.Timestamp.now(tz="UTC")
        try:
            prepared = prepare_order(
                self.exchange,
                order.symbol,
                order.side.value,
                order.qty,
                None,
                self.reference_price(order.symbol),
            )
        except (OrderRuleError, ValueError) as exc:  # e.g. below the minimum: never sent
            with self.log.fenced():
                self._record(
                    [VenueEvent(EventKind.REJECTED, order.client_order_id, now, reason=str(exc))]
                )
            self.stats.rejected += 1
            return
        for attempt in range(self.max_retries + 1):
            with self.log.fenced():
                self.checkpoint("before_create", order.purpose.value)
                try:
                    answer = self.exchange.create_order(
                        order.symbol,
                        "market",
                        order.side.value,
                        float(prepared.amount),
                        None,
                        dict(params),
                    )
                except Exception as exc:  # every error is classified by what it proves
                    outcome, reason = self._outcome(exc, "create")
                    retry = outcome is Outcome.RETRY and attempt < self.max_retries
                    if not retry:
                        self._record(self._failed_create(order, reason, outcome))
                else:
                    self.checkpoint("after_create", order.purpose.value)
                    self.stats.sent += 1
                    accepted = VenueEvent(
                        EventKind.ACCEPTED,
                        order.client_order_id,
                        pd.Timestamp.now(tz="UTC"),
                        exchange_order_id=str(answer.get("id") or ""),
                        qty=float(prepared.amount),
                    )
                    self._record([accepted])
                    return
            if not retry:
                return
            self.stats.retries += 1
            if reason.startswith("InvalidNonce"):  # our clock and the exchange's drifted apart
                self._resync_clock()
            headers = getattr(self.exchange, "last_response_headers", None)
            self.sleep(backoff_seconds(attempt, self.rng, retry_after=retry_after_seconds(headers)))

    def _failed_create(self, order: Order, reason: str, outcome: Outcome) -> list[VenueEvent]:
        """A refusal is final; anything else leaves the order to be found by its client id (a
        duplicate id says it is at the exchange already: found the same way)."""
        now = pd.Timestamp.now(tz="UTC")
        if outcome is Outcome.REJECTED:
            self.stats.rejected += 1
            return [VenueEvent(EventKind.REJECTED, order.client_order_id, now, reason=reason)]
        self.stats.unknown += 1
        return [VenueEvent(EventKind.UNKNOWN, order.client_order_id, now, reason=reason)]

    def _resync_clock(self) -> None:
        """Measure the exchange's clock again (ccxt keeps the difference for signing)."""
        try:
            self.exchange.load_time_difference()
        except Exception as exc:  # the retry will fail again and say so
            log.warning("%s: clock difference not measured: %s", self.exchange_id, exc)

    def _id_params(self, order: Order) -> dict[str, str]:
        xid = exchange_client_id(self.exchange_id, order.client_order_id)
        return ccxt_client_id_params(self.exchange_id, xid)

    def _cancel(self, request: VenueRequest) -> None:
        order = request.order
        if order.status.is_terminal:
            return
        with self.log.fenced():
            try:
                self.exchange.cancel_order(None, order.symbol, self._id_params(order))
            except Exception as exc:
                self._outcome(exc, "cancel")  # counted; what happened is read below
        self._read(order)  # its fills up to the cancel, then its final state

    # -- reading -----------------------------------------------------------------------------------
    def poll(self) -> None:
        """Bring every working order up to date: found, filled, closed."""
        for order in list(self.venue.in_flight()):
            self._read(order)

    def _read(self, order: Order) -> None:
        """`refresh`, where a failed read is logged and left to the next poll (it reads the
        order again by its client id); only what no retry can fix is raised."""
        try:
            self.refresh(order)
        except ExchangeDisagreement:
            raise
        except Exception as exc:
            outcome, reason = self._outcome(exc, "query")
            if reason.startswith("InvalidNonce"):
                self._resync_clock()  # read again at the next poll
            elif outcome is Outcome.REJECTED:
                raise  # e.g. authentication: nothing will work, say so
            log.warning("read of %s: %s", order.client_order_id, reason)

    def refresh(self, order: Order) -> None:
        """Read one order at the exchange by its client id and store what is new about it."""
        heard = self.venue.heard(order)
        if heard.closed:
            return  # its last word is in; the next step applies it
        try:
            found = self.exchange.fetch_order(None, order.symbol, self._id_params(order))
        except ccxt.OrderNotFound:
            self._not_found(order, heard)
            return
        self._unknown_since.pop(order.client_order_id, None)
        now = pd.Timestamp.now(tz="UTC")
        exchange_id = str(found.get("id") or "")
        events: list[VenueEvent] = []
        if not heard.accepted:
            self.stats.resolved += order.status is OrderStatus.UNKNOWN
            amount = float(found.get("amount") or 0.0)
            events.append(
                VenueEvent(EventKind.ACCEPTED, order.client_order_id, now, exchange_id, qty=amount)
            )
        filled = float(found.get("filled") or 0.0)
        if filled > heard.filled * (1 + 1e-12) + 1e-15:
            events.extend(self._new_fills(order, found))
        status = found.get("status")
        if status in ("canceled", "expired", "rejected"):
            kind = EventKind.CANCELLED if status == "canceled" else EventKind.EXPIRED
            reason = f"{status} at the exchange"
            events.append(VenueEvent(kind, order.client_order_id, now, exchange_id, reason=reason))
        if events:
            with self.log.fenced():
                self._record(events)

    def _new_fills(self, order: Order, found: dict[str, Any]) -> Iterator[VenueEvent]:
        """The order's trades not stored yet, oldest first."""
        trades = self.exchange.fetch_order_trades(str(found["id"]), order.symbol)
        seen = self.log.stored_trade_ids(order.client_order_id)
        for trade in sorted(trades, key=lambda t: (t.get("timestamp") or 0, str(t.get("id")))):
            trade_id = f"{self.exchange_id}:{trade['id']}"
            if trade_id in seen:
                continue
            quote_fee, base_fee = _fee_parts(trade, order.symbol, float(trade["price"]))
            yield VenueEvent(
                EventKind.FILL,
                order.client_order_id,
                pd.Timestamp(int(trade["timestamp"]), unit="ms", tz="UTC"),
                exchange_order_id=str(found["id"]),
                trade_id=trade_id,
                qty=float(trade["amount"]),
                price=float(trade["price"]),
                fee=quote_fee,
                liquidity="maker" if trade.get("takerOrMaker") == "maker" else "taker",
                base_fee=base_fee,
            )

    def _not_found(self, order: Order, heard: Heard) -> None:
        """Not visible by its client id. A new order can be invisible for a moment, so only a
        miss that outlasts the grace window counts: an order never acknowledged then never got
        there (`REJECTED`); one the exchange acknowledged and then lost is a disagreement that
        stops trading rather than be guessed at."""
        first = self._unknown_since.setdefault(order.client_order_id, self.clock())
        if self.clock() - first < self.grace_s:
            return
        if heard.accepted:
            raise ExchangeDisagreement(
                f"order {order.client_order_id} ({order.status.value}) was acknowledged by the "
                f"exchange but has not been found by its client id for {self.grace_s:g} s"
            )
        self._unknown_since.pop(order.client_order_id, None)
        reason = (
            f"not found at the exchange by its client id after {self.grace_s:g} s: it never "
            "reached the exchange"
        )
        with self.log.fenced():
            self._record(
                [
                    VenueEvent(
                        EventKind.REJECTED,
                        order.client_order_id,
                        pd.Timestamp.now(tz="UTC"),
                        reason=reason,
                    )
                ]
            )
        self.stats.rejected += 1

    # -- reconciliation ----------------------------------------------------------------------------
    def balances(self) -> dict[str, float]:
        """The account's total balance per asset (free + locked)."""
        total = self.exchange.fetch_balance().get("total") or {}
        return {str(k): float(v) for k, v in total.items() if v is not None}

    def dust_rule(self, symbol: str) -> DustRule:
        """The least `symbol`'s market trades (n1v1/execution/exchange_rules.py)."""
        return dust_rule(self.exchange, symbol)

    def reconcile(
        self, positions: dict[str, float], baseline: dict[str, float], ours: set[str]
    ) -> dict[str, Any]:
        """The exchange against the books: each traded symbol's base asset must hold the balance
        it held before the session's first order (`baseline`) plus the stored position, to the
        market's amount precision; open orders at the exchange that are not ours (`ours`: our
        orders' exchange client ids) are reported as external. `ok` False names each problem."""
        balances = self.balances()
        rows, problems = [], []
        for symbol, qty in sorted(positions.items()):
            market = self.exchange.market(symbol)
            base = str(market["base"])
            step = float(market.get("precision", {}).get("amount") or 0.0)
            expected = baseline.get(base, 0.0) + qty
            actual = balances.get(base, 0.0)
            tolerance = max(step, 1e-12) / 2
            rows.append({"symbol": symbol, "asset": base, "books": expected, "exchange": actual})
            if abs(actual - expected) > tolerance:
                problems.append(
                    f"{symbol}: the exchange holds {actual:.8f} {base}, the books "
                    f"{expected:.8f} (baseline {baseline.get(base, 0.0):.8f} + position "
                    f"{qty:.8f})"
                )
        external = []
        for symbol in sorted(positions):
            for o in self.exchange.fetch_open_orders(symbol):
                if str(o.get("clientOrderId") or "") not in ours:
                    external.append(
                        {
                            "symbol": symbol,
                            "id": str(o.get("id")),
                            "client_order_id": str(o.get("clientOrderId") or ""),
                            "side": o.get("side"),
                            "amount": o.get("amount"),
                        }
                    )
        return {
            "ok": not problems,
            "checked_at": pd.Timestamp.now(tz="UTC").isoformat(),
            "positions": rows,
            "external_orders": external,
            "problems": problems,
        }

    # -- helpers -----------------------------------------------------------------------------------
    def _record(self, events: list[VenueEvent]) -> None:
        new = self.log.record_venue_events(events)
        self.stats.fills += sum(e.kind is EventKind.FILL for e in new)
        self.venue.receive(new)
        if any(e.kind is EventKind.FILL for e in new):
            self.checkpoint("after_fill", "")

    def _outcome(self, exc: Exception, call: str) -> tuple[Outcome, str]:
        """What the error proves (n1v1/execution/exchange_errors.py), counted and logged with
        the exchange's words (query strings, which may carry a signature, removed)."""
        found = classify(exc, call)
        self.stats.errors[found.error] = self.stats.errors.get(found.error, 0) + 1
        reason = f"{found.error}: {found.reason}"
        log.warning("%s %s: %s -> %s", self.exchange_id, call, reason, found.outcome.value)
        return found.outcome, reason


def _fee_parts(trade: dict[str, Any], symbol: str, price: float) -> tuple[float, float]:
    """A trade's fee: its value in the quote currency (the account's), and the part charged in
    the base asset in base units (Binance charges a buy's fee in the asset bought), which the
    books must not count as held. Other currencies (e.g. BNB) are refused: their value is not
    known here."""
    fees = trade.get("fees") or [trade.get("fee") or {}]
    base, _, quote = symbol.partition("/")
    value = in_base = 0.0
    for fee in fees:
        cost = float((fee or {}).get("cost") or 0.0)
        currency = (fee or {}).get("currency")
        if cost == 0.0 or currency in (None, quote):
            value += cost
        elif currency == base:
            value += cost * price
            in_base += cost
        else:
            raise ValueError(f"a fee in {currency} on {symbol} cannot be valued in {quote}")
    return value, in_base
