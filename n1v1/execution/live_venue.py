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

Only market orders go to the exchange. The engine's protective orders (stop-loss, take-profit,
trailing stop) are *held* here instead of resting at the exchange: each closed bar is checked
against them (`match_range`), and one whose price the bar reached is sent then as a market order
under its own client id (docs/live.md, "Stops and take-profits"). So they are decided by the
bars alone, as every other decision, and a rebuild triggers the same ones at the same bars. The
price is the exchange's after the bar, which can be worse than the stop's (a gap); its OCO
siblings wait, and are cancelled (or cut to the remainder) by its fills, as at the simulated
venue. None is sent while another order of the symbol is in flight.

While a symbol has an order in flight at the exchange, the engine makes no new decision for it
(`busy`): an order whose outcome is not final is never raced by a second one for the position.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import pandas as pd

from n1v1.domain import (
    PROTECTIVE_PURPOSES,
    Bar,
    ClientOrderId,
    Fill,
    Liquidity,
    Order,
    OrderStatus,
    OrderType,
    Side,
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
    fee: float = 0.0  # in the account currency (a fee charged in the base asset, valued at price)
    liquidity: str = Liquidity.TAKER.value
    reason: str = ""
    # The part of the fee charged in the base asset, in base units (Binance charges a buy's fee
    # in the asset bought): the account holds `qty - base_fee` more after a buy, `qty + base_fee`
    # less after a sell. Already counted in `fee`.
    base_fee: float = 0.0

    def __post_init__(self) -> None:
        if self.kind is EventKind.FILL:
            if not self.trade_id:
                raise ValueError(f"fill of {self.client_order_id}: no exchange trade id")
            if not (self.qty > 0 and self.price > 0 and math.isfinite(self.fee)):
                raise ValueError(
                    f"fill {self.trade_id} of {self.client_order_id}: qty {self.qty}, price "
                    f"{self.price} and fee {self.fee} must be positive and finite"
                )
            if not 0 <= self.base_fee < self.qty:
                raise ValueError(
                    f"fill {self.trade_id} of {self.client_order_id}: a fee of {self.base_fee} in "
                    f"the base asset on {self.qty} bought or sold"
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
            base_fee=float(get("base_fee") or 0.0),
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
        self._held: set[ClientOrderId] = set()  # protective orders not sent (module docstring)
        self._fill_seq: dict[ClientOrderId, int] = {}
        self.outbox: list[VenueRequest] = []
        self._received: list[VenueEvent] = []
        self._changed: list[Order] = []  # triggered in `match_range`, for the engine to journal

    # -- order entry (from the engine: queued, never sent from here) ------------------------------
    def submit(self, order: Order, at: pd.Timestamp) -> None:
        if order.client_order_id in self._working:
            raise VenueError(f"order {order.client_order_id} is already working")
        if order.order_type is not OrderType.MARKET:
            if order.purpose not in PROTECTIVE_PURPOSES:
                raise VenueError(
                    f"order {order.client_order_id}: the live venue sends market orders only; "
                    f"a {order.order_type.value} order is held only to protect a position "
                    "(stop-loss, take-profit, trailing stop: docs/live.md)"
                )
            order.transition(OrderStatus.SUBMITTED, at)  # working, here: nothing to send yet
            self._working[order.client_order_id] = order
            self._held.add(order.client_order_id)
            return
        order.transition(OrderStatus.SUBMITTING, at)
        self._working[order.client_order_id] = order
        self.outbox.append(VenueRequest("create", order))

    def cancel(self, client_order_id: ClientOrderId, at: pd.Timestamp, reason: str) -> Order:
        """A held order is cancelled at once (the exchange never saw it). Otherwise ask the
        exchange: the order stays working until the exchange says it is closed (a fill may
        still come first); the engine sees the outcome as events."""
        order = self._working.get(client_order_id)
        if order is None:
            raise VenueError(f"order {client_order_id} is not working")
        if client_order_id in self._held:
            self._forget(client_order_id)
            order.transition(OrderStatus.CANCELLED, at, reason)
            return order
        if not any(r.action == "cancel" and r.order is order for r in self.outbox):
            self.outbox.append(VenueRequest("cancel", order))
        return order

    def working_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self._working.values() if symbol is None or o.symbol == symbol]

    def in_flight(self, symbol: str | None = None) -> list[Order]:
        """Working orders sent (or being sent) to the exchange: what the broker reads."""
        return [o for o in self.working_orders(symbol) if o.client_order_id not in self._held]

    def resting(self, symbol: str | None = None) -> list[Order]:
        """The held protective orders: they wait for a bar to reach their price."""
        return [o for o in self.working_orders(symbol) if o.client_order_id in self._held]

    def is_held(self, client_order_id: str) -> bool:
        return client_order_id in self._held

    def busy(self, symbol: str) -> bool:
        """Whether `symbol` has an order in flight, whose outcome is not final: no new decision
        for it. A held stop or take-profit is no reason to wait."""
        return any(o.symbol == symbol for o in self.in_flight())

    def take_changed(self) -> list[Order]:
        """The held orders triggered since the last call (now SUBMITTING, in the outbox)."""
        out, self._changed = self._changed, []
        return out

    def _forget(self, client_order_id: ClientOrderId) -> None:
        self._working.pop(client_order_id, None)
        self._held.discard(client_order_id)
        self._fill_seq.pop(client_order_id, None)

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
                self._forget(cid)

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
        cancelled, amended = self._settle_siblings(order, event.at)
        # The books hold what the account holds: a fee paid in the base asset is base not
        # received (a buy) or given on top (a sell). The fill is that quantity at the trade's
        # price, its fee that base amount's value: cash moves by exactly the trade's cost.
        fill = Fill(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=event.qty - order.side.sign * event.base_fee,
            price=event.price,
            fee=event.fee,
            liquidity=Liquidity(event.liquidity),
            timestamp=event.at,
            purpose=order.purpose,
            seq=seq,
        )
        return Execution(
            order=order,
            fill=fill,
            cancelled_siblings=tuple(cancelled),
            amended_siblings=tuple(amended),
        )

    def _settle_siblings(self, order: Order, at: pd.Timestamp) -> tuple[list[Order], list[Order]]:
        """The members of an OCO group protect one quantity (the simulated venue's rule): a
        partial fill of one cuts the held others to its remainder, a complete fill cancels them."""
        cancelled: list[Order] = []
        amended: list[Order] = []
        if not order.oco_group:
            return cancelled, amended
        for sibling in self.resting(order.symbol):
            if sibling.oco_group != order.oco_group:
                continue
            if order.status is OrderStatus.FILLED:
                cancelled.append(self.cancel(sibling.client_order_id, at, "oco sibling filled"))
            else:
                sibling.qty = sibling.filled_qty + order.remaining_qty
                amended.append(sibling)
        return cancelled, amended

    # -- matching: only the held protective orders, against the closed bar -------------------------
    def match_open(
        self, symbol: str, bar: Bar, on_execution: OnExecution | None = None
    ) -> list[Execution]:
        return []

    def match_range(
        self, symbol: str, bar: Bar, on_execution: OnExecution | None = None
    ) -> list[Execution]:
        """Send the first held order whose price this closed bar reached, as a market order (it
        fills later, as events: no execution here). Stops first, as at the simulated venue: when
        a bar reaches both a stop and a take-profit, the worse is assumed. Nothing is sent while
        the symbol has an order in flight (`busy`): an exit sized from a position that fills
        are still changing could sell what the account does not hold. So one exit at a time;
        its fills cancel or cut its OCO siblings, and if it ends unfilled they keep protecting
        the position (and the engine holds it again: `TradingEngine.on_venue_events`)."""
        held = self.resting(symbol)
        if not held or self.busy(symbol):
            return []
        held.sort(key=lambda o: 0 if o.order_type is OrderType.STOP else 1)
        for order in held:
            assert order.price is not None  # a held order is a stop or a limit
            reached = _reached(order, bar)
            if reached is None:
                continue
            self._held.discard(order.client_order_id)
            order.transition(
                OrderStatus.SUBMITTING,
                bar.timestamp,
                f"{order.purpose.value} at {order.price:.10g} reached by the bar's {reached}: "
                "sent as a market order",
            )
            self.outbox.append(VenueRequest("create", order))
            self._changed.append(order)
            break
        return []

    def fill_at_close(self, order: Order, bar: Bar) -> Execution | None:
        return None  # live orders fill at the exchange, reported as events

    def fill_at_end(self, order: Order, bar: Bar) -> Execution | None:
        raise VenueError("a live venue has no end of data")

    def expire_all(self, at: pd.Timestamp, reason: str = "end of data") -> list[Order]:
        raise VenueError("a live venue has no end of data")

    def set_price(self, client_order_id: ClientOrderId, price: float) -> Order:
        """Move a held order's price (a trailing stop); one sent already cannot move."""
        if client_order_id not in self._held:
            raise VenueError(f"order {client_order_id} is not held here: its price cannot move")
        order = self._working[client_order_id]
        order.price = price
        return order


def _reached(order: Order, bar: Bar) -> str | None:
    """Which extreme of the bar reached the held order's price ("low 97.1"), or None. A stop
    protects against the move through it; a take-profit (limit) is reached when touched."""
    assert order.price is not None
    buy = order.side is Side.BUY
    stop = order.order_type is OrderType.STOP
    if buy == stop:  # a buy stop or a sell limit: reached from below
        return f"high {bar.high:.10g}" if bar.high >= order.price else None
    return f"low {bar.low:.10g}" if bar.low <= order.price else None
