"""The engine's side of a live venue: orders that execute at an exchange, no network in here.

The engine must stay a deterministic function of its inputs (bars, commands, model answers), so
that a new engine rebuilds the same state from the journal. An exchange breaks that unless what it
says is logged as an input too. So this venue never calls the exchange:

- `submit` and `cancel` only queue requests (the *outbox*). The order is `SUBMITTING` from the
  moment its row is written; the session sends the outbox only after the transaction holding
  those rows has committed (the intent is durable before any HTTP call: n1v1/live/broker.py).
- What the exchange answers (acknowledged, refused, ambiguous, filled, cancelled) arrives as
  `VenueEvent`s, stored by the broker the moment they are read and handed to this venue at the
  start of the next step (`receive`); the engine applies them (`TradingEngine.on_venue_events`).
  A rebuild hands the stored events to the same code at the same steps: the same fills, exactly.

Only market orders go to the exchange in this version: the engine's resting orders (stop-loss,
take-profit, trailing stops) are refused in live mode by the settings check (docs/live.md). While a
symbol has an order whose outcome is not final, the engine makes no new decision for it (`busy`): an
order in flight is never raced by a second one for the same position.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import pandas as pd

from n1v1.domain import (
    Bar,
    ClientOrderId,
    Fill,
    Liquidity,
    Order,
    OrderStatus,
    OrderType,
)
from n1v1.execution.venue import Execution, OnExecution, VenueError


class EventKind(StrEnum):
    ACCEPTED = "accepted"  # the exchange holds the order (its id in `exchange_order_id`)
    REJECTED = "rejected"  # refused, or proven never to have reached the exchange: final
    UNKNOWN = "unknown"  # the create call failed ambiguously: resolve by client id
    FILL = "fill"  # one trade of the order (its exchange trade id is unique)
    CANCELLED = "cancelled"  # closed with its remainder unfilled (after every fill it had)
    EXPIRED = "expired"  # closed by the exchange (e.g. an IOC remainder)


@dataclass(frozen=True, slots=True)
class VenueEvent:
    """One thing the exchange said about one of our orders, as stored (`venue_events`)."""

    kind: EventKind
    client_order_id: str
    at: pd.Timestamp
    exchange_order_id: str = ""
    trade_id: str = ""  # fills only; one row per (venue, trade id)
    qty: float = 0.0  # a fill's quantity; for ACCEPTED the quantity the exchange holds
    price: float = 0.0
    fee: float = 0.0  # in the account currency
    liquidity: str = Liquidity.TAKER.value
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind is EventKind.FILL:
            if not self.trade_id:
                raise ValueError(f"fill of {self.client_order_id}: no exchange trade id")
            if not (self.qty > 0 and self.price > 0 and math.isfinite(self.fee)):
                raise ValueError(
                    f"fill {self.trade_id} of {self.client_order_id}: qty {self.qty}, price "
                    f"{self.price} and fee {self.fee} must be positive and finite"
                )

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["kind"] = self.kind.value
        return row

    @classmethod
    def from_row(cls, row: Any) -> VenueEvent:
        get = row.get if isinstance(row, dict) else row._mapping.get
        return cls(
            kind=EventKind(get("kind")),
            client_order_id=get("client_order_id"),
            at=pd.Timestamp(get("at")),
            exchange_order_id=get("exchange_order_id") or "",
            trade_id=get("trade_id") or "",
            qty=float(get("qty") or 0.0),
            price=float(get("price") or 0.0),
            fee=float(get("fee") or 0.0),
            liquidity=get("liquidity") or Liquidity.TAKER.value,
            reason=get("reason") or "",
        )


@dataclass(slots=True)
class Heard:
    """What the exchange has said about an order so far, applied or still to be applied: what the
    broker must not report twice."""

    accepted: bool
    qty: float
    filled: float
    closed: bool


@dataclass(frozen=True, slots=True)
class VenueRequest:
    """An order to send, or a cancel to ask for, once its transaction has committed."""

    action: str  # "create" | "cancel"
    order: Order


class LiveVenue:
    """Engine-facing venue of orders that execute at an exchange (see the module docstring)."""

    def __init__(self) -> None:
        self._working: dict[ClientOrderId, Order] = {}
        self._fill_seq: dict[ClientOrderId, int] = {}
        self.outbox: list[VenueRequest] = []
        self._received: list[VenueEvent] = []

    # -- order entry (from the engine: queued, never sent from here) ------------------------------
    def submit(self, order: Order, at: pd.Timestamp) -> None:
        if order.order_type is not OrderType.MARKET:
            raise VenueError(
                f"order {order.client_order_id}: the live venue sends market orders only; "
                f"{order.order_type.value} orders are refused in live mode (docs/live.md)"
            )
        if order.client_order_id in self._working:
            raise VenueError(f"order {order.client_order_id} is already working")
        order.transition(OrderStatus.SUBMITTING, at)
        self._working[order.client_order_id] = order
        self.outbox.append(VenueRequest("create", order))

    def cancel(self, client_order_id: ClientOrderId, at: pd.Timestamp, reason: str) -> Order:
        """Ask the exchange to cancel: the order stays working until the exchange says it is
        closed (a fill may still come first); the engine sees the outcome as events."""
        order = self._working.get(client_order_id)
        if order is None:
            raise VenueError(f"order {client_order_id} is not working")
        if not any(r.action == "cancel" and r.order is order for r in self.outbox):
            self.outbox.append(VenueRequest("cancel", order))
        return order

    def working_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self._working.values() if symbol is None or o.symbol == symbol]

    def busy(self, symbol: str) -> bool:
        """Whether `symbol` has an order whose outcome is not final: no new decision for it."""
        return any(o.symbol == symbol for o in self._working.values())

    def take_outbox(self) -> list[VenueRequest]:
        out, self.outbox = self.outbox, []
        return out

    def heard(self, order: Order) -> Heard:
        """The order as the engine will see it once the events received so far are applied."""
        heard = Heard(
            accepted=order.status in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED)
            or order.status.is_terminal,
            qty=order.qty,
            filled=order.filled_qty,
            closed=order.status.is_terminal,
        )
        for event in self._received:
            if event.client_order_id != order.client_order_id:
                continue
            if event.kind is EventKind.ACCEPTED:
                heard.accepted = True
                heard.qty = event.qty if 0 < event.qty < heard.qty else heard.qty
            elif event.kind is EventKind.FILL:
                heard.accepted, heard.filled = True, heard.filled + event.qty
            elif event.kind is not EventKind.UNKNOWN:
                heard.closed = True
        if heard.accepted and heard.filled >= heard.qty * (1 - 1e-12):
            heard.closed = True
        return heard

    # -- what the exchange said -------------------------------------------------------------------
    def receive(self, events: Iterable[VenueEvent]) -> None:
        """Events to apply at the next `drain` (the start of the next step)."""
        self._received.extend(events)

    def waiting(self) -> int:
        """How many received events are not applied yet."""
        return len(self._received)

    def drain(self, limit: int | None = None) -> Iterator[Execution | Order | None]:
        """Apply the received events (the `limit` oldest, or all) in order: an `Execution` per
        fill, the `Order` for every other change (for the engine to journal), None for a repeat
        that changes nothing. An event for an order that is not working is refused loudly
        (VenueError): the broker reads every fill of an order before reporting it closed, so
        one arriving later means the exchange and the store disagree."""
        n = len(self._received) if limit is None else min(limit, len(self._received))
        events, self._received = self._received[:n], self._received[n:]
        for event in events:
            cid = ClientOrderId(event.client_order_id)
            order = self._working.get(cid)
            if order is None:
                raise VenueError(f"{event.kind.value} event for order {cid}, which is not working")
            if event.kind is EventKind.FILL:
                yield self._fill(order, event)
            else:
                yield order if self._status(order, event) else None
            if order.status.is_terminal:
                self._working.pop(cid, None)
                self._fill_seq.pop(cid, None)

    def _status(self, order: Order, event: VenueEvent) -> bool:
        at, kind = event.at, event.kind
        if kind is EventKind.ACCEPTED:
            if order.status not in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN):
                return False  # a repeat (e.g. found again by a later resolve): nothing new
            if 0 < event.qty < order.qty:
                # the exchange holds the quantity rounded to its step (always down): that is
                # the order now, so a complete fill closes it
                order.qty = event.qty
            order.transition(OrderStatus.SUBMITTED, at)
            return True
        if kind is EventKind.UNKNOWN:
            if order.status is OrderStatus.SUBMITTING:
                order.transition(OrderStatus.UNKNOWN, at, event.reason)
                return True
            return False
        if kind is EventKind.REJECTED:
            order.transition(OrderStatus.REJECTED, at, event.reason)
            return True
        if order.status in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN):
            order.transition(OrderStatus.SUBMITTED, at)  # a close implies it was accepted
        target = OrderStatus.CANCELLED if kind is EventKind.CANCELLED else OrderStatus.EXPIRED
        order.transition(target, at, event.reason)
        return True

    def _fill(self, order: Order, event: VenueEvent) -> Execution:
        if order.status in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN):
            order.transition(OrderStatus.SUBMITTED, event.at)  # a fill proves it was accepted
        if not order.status.is_open:
            raise VenueError(
                f"fill {event.trade_id} for order {order.client_order_id} which is "
                f"{order.status.value}"
            )
        seq = self._fill_seq.get(order.client_order_id, 0)
        self._fill_seq[order.client_order_id] = seq + 1
        order.apply_fill(event.qty, event.price, event.at)  # more than ordered: ValueError
        fill = Fill(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=event.qty,
            price=event.price,
            fee=event.fee,
            liquidity=Liquidity(event.liquidity),
            timestamp=event.at,
            purpose=order.purpose,
            seq=seq,
        )
        return Execution(order=order, fill=fill)

    # -- the simulated venue's matching hooks: nothing to match here -------------------------------
    def match_open(
        self, symbol: str, bar: Bar, on_execution: OnExecution | None = None
    ) -> list[Execution]:
        return []

    def match_range(
        self, symbol: str, bar: Bar, on_execution: OnExecution | None = None
    ) -> list[Execution]:
        return []

    def fill_at_close(self, order: Order, bar: Bar) -> Execution | None:
        return None  # live orders fill at the exchange, reported as events

    def fill_at_end(self, order: Order, bar: Bar) -> Execution | None:
        raise VenueError("a live venue has no end of data")

    def expire_all(self, at: pd.Timestamp, reason: str = "end of data") -> list[Order]:
        raise VenueError("a live venue has no end of data")

    def set_price(self, client_order_id: ClientOrderId, price: float) -> Order:
        raise VenueError("the live venue holds no resting orders")
