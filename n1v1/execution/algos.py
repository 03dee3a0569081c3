"""A parent order run by an execution algorithm (TWAP or VWAP): what to send at each bar.

No clock, no venue, no store: the engine hands it each closed bar of its symbol and the outcome of
each child, and asks what to send now; the bar times are the clock, so a backtest, a paper session
and a rebuild replaying the journal send the same children at the same bars.

**Re-planned at every slot.** A child's quantity is not read from the plan made at the start: at
each due slot the quantity still open (the parent's, less what filled and what is in flight) is
split again over the slots left, this one included (`algo_plan.split`), and the first part is
sent. With nothing going wrong that is the original plan; after a refused child the rest spreads
over the time left; slots whose time passed while the engine was down are not sent in a burst:
their quantity joins the slots left; a child whose outcome is unknown holds its quantity until
the venue says what became of it. At the last slot the whole rest is due.

**Limits on a slice.** With `max_participation`, a child is at most that share of the volume of
the bar just closed (rounded down to the lot), and the rest goes to later slots. With
`limit_price`, a slice is sent only if the bar's close is not beyond it (a buy: close <= limit),
else it waits. A child below what the market trades is not sent. Whatever has not been sent by
the end stays unfilled, and counts in the shortfall at the end price (n1v1/execution/shortfall.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

import pandas as pd

from n1v1.domain import Bar, Side
from n1v1.execution.algo_plan import PlanError, as_decimal, slot_times, split
from n1v1.execution.shortfall import Shortfall, implementation_shortfall

_FILL_QUANTUM = Decimal("1e-10")


class ParentStatus(StrEnum):
    WORKING = "working"
    DONE = "done"  # the whole quantity filled
    ENDED = "ended"  # its time is over with part unfilled
    CANCELLED = "cancelled"  # by the operator (or the kill switch)


@dataclass(slots=True)
class ParentOrder:
    """One parent order (TWAP: `weights` all equal; VWAP: a volume profile's)."""

    parent_id: str
    symbol: str
    side: Side
    qty: Decimal
    slots: list[pd.Timestamp]
    weights: list[float]
    lot: Decimal
    least: Decimal
    arrival_price: float
    limit_price: float | None = None
    max_participation: float | None = None
    status: ParentStatus = ParentStatus.WORKING
    filled: Decimal = Decimal(0)
    in_flight: dict[str, Decimal] = field(default_factory=dict)  # child id -> its unfilled qty
    children: list[str] = field(default_factory=list)
    fills: list[tuple[float, float, float]] = field(default_factory=list)  # (qty, price, fee)
    end_price: float | None = None
    reason: str = ""
    next_slot: int = 0  # the first slot not acted on yet
    algo: str = "twap"
    purpose: str = "manual"  # the children's: manual (an operator's parent), entry or exit
    strategy: str = ""
    created_at: pd.Timestamp | None = None
    child_filled: dict[str, Decimal] = field(default_factory=dict)  # child id -> filled so far
    market_value: float = 0.0  # sum of typical price x volume of the bars while it worked
    market_volume: float = 0.0
    # the same parent as one market order at the first open after acceptance (the venue's fee
    # and slippage rules): what slicing is compared with; None until that bar
    single_order_bps: float | None = None

    @classmethod
    def twap(
        cls,
        parent_id: str,
        symbol: str,
        side: Side,
        qty: float | str,
        start: pd.Timestamp,
        duration: pd.Timedelta,
        interval: pd.Timedelta,
        lot: Decimal,
        least: Decimal,
        arrival_price: float,
        limit_price: float | None = None,
        max_participation: float | None = None,
        weights: list[float] | None = None,
    ) -> ParentOrder:
        """A parent over `duration` from `start`, a slot every `interval` (equal weights, or
        `weights` per slot for a VWAP: `algo_plan.profile_weights`). Checked now: a parent that
        cannot be planned is refused (PlanError naming the field), not discovered later."""
        total = as_decimal("qty", qty)
        slots = slot_times(start, duration, interval)
        weights = [1.0] * len(slots) if weights is None else list(weights)
        if len(weights) != len(slots):
            raise PlanError(f"weights: {len(weights)} for {len(slots)} slots")
        as_decimal("arrival price", arrival_price)
        if limit_price is not None:
            as_decimal("limit_price", limit_price)
        if max_participation is not None:
            rate = as_decimal("max_participation", max_participation)
            if rate > 1:
                raise PlanError(f"max_participation: at most 1, got {max_participation!r}")
        split(total, weights, lot, least)  # the whole plan must be possible
        return cls(
            parent_id,
            symbol,
            side,
            total,
            slots,
            weights,
            lot,
            least,
            float(arrival_price),
            limit_price,
            max_participation,
        )

    # -- what to send ------------------------------------------------------------------------------
    @property
    def open_qty(self) -> Decimal:
        """Neither filled nor in flight: what the slots left must place."""
        return self.qty - self.filled - sum(self.in_flight.values(), Decimal(0))

    def on_bar(self, bar: Bar, hold: bool = False) -> Decimal:
        """The quantity of the child to send after this closed bar (0: none now). A slot is due
        at the first bar at or after its time; of several due at once (the engine was down) only
        the latest counts and the rest is spread over it and the slots after it. Ends the parent
        at the first bar after its last slot, once nothing is in flight. With `hold` (trading is
        paused) the due slots pass without a child: their quantity goes to the slots after."""
        if self.status is not ParentStatus.WORKING:
            return Decimal(0)
        n = len(self.slots)
        due = [i for i in range(self.next_slot, n) if self.slots[i] <= bar.timestamp]
        if not due:
            if self.next_slot >= n:
                self._end(bar.close)
            return Decimal(0)
        current = due[-1]
        self.next_slot = current + 1
        # in whole lots: a partial fill capped by the bar's volume need not be one
        rest = (self.open_qty / self.lot).to_integral_value(rounding=ROUND_FLOOR) * self.lot
        if rest <= 0 or hold:
            return Decimal(0)
        if self.limit_price is not None and self.side.sign * (bar.close - self.limit_price) > 0:
            return Decimal(0)  # beyond the limit: this slice waits
        # the last slot takes all that is left
        child = rest if current == n - 1 else self._first_share(rest, self.weights[current:])
        if self.max_participation is not None:
            cap = Decimal(repr(self.max_participation * bar.volume))
            child = min(child, (cap / self.lot).to_integral_value(rounding=ROUND_FLOOR) * self.lot)
        if child < self.least:
            return Decimal(0)
        return child

    def _first_share(self, rest: Decimal, weights: list[float]) -> Decimal:
        if rest < self.least:
            return Decimal(0)  # too small for the market: it stays open, unfilled at the end
        if sum(weights) == 0:
            return Decimal(0)
        return split(rest, weights, self.lot, self.least)[0]

    # -- what became of the children ---------------------------------------------------------------
    def sent(self, child_id: str, qty: Decimal) -> None:
        self.children.append(child_id)
        self.in_flight[child_id] = qty

    def on_fill(self, child_id: str, child_filled: float, price: float, fee: float) -> None:
        """A fill of a child: `child_filled` is all the child has filled so far at the venue
        (gross of a fee paid in the asset, so the parent counts what the exchange executed),
        `price` and `fee` this fill's. Counted to 1e-10 so float sums (0.1 + 0.2) add up."""
        total = Decimal(repr(child_filled)).quantize(_FILL_QUANTUM)
        exact = total - self.child_filled.get(child_id, Decimal(0))
        if exact <= 0:
            return
        self.child_filled[child_id] = total
        self.filled += exact
        self.in_flight[child_id] = max(self.in_flight.get(child_id, Decimal(0)) - exact, Decimal(0))
        self.fills.append((float(exact), price, fee))
        if self.filled >= self.qty and self.status is ParentStatus.WORKING:
            self.status = ParentStatus.DONE
            self.end_price = price

    @property
    def average_price(self) -> float | None:
        executed = sum(q for q, _, _ in self.fills)
        return sum(q * p for q, p, _ in self.fills) / executed if executed > 0 else None

    def end(self, price: float, reason: str) -> None:
        """End it where it stands (the data ended): what is unfilled stays unfilled."""
        if self.status is ParentStatus.WORKING:
            self.in_flight.clear()
            self.status = ParentStatus.DONE if self.filled >= self.qty else ParentStatus.ENDED
            self.end_price = price
            self.reason = reason

    def on_child_closed(self, child_id: str) -> None:
        """A child is final (filled, cancelled, refused, expired): its unfilled rest is free for
        the slots left."""
        self.in_flight.pop(child_id, None)

    def cancel(self, reason: str, price: float) -> list[str]:
        """Stop the parent; returns the children still in flight, for the engine to cancel."""
        if self.status is ParentStatus.WORKING:
            self.status = ParentStatus.CANCELLED
            self.reason = reason
            self.end_price = price
        return [cid for cid, q in self.in_flight.items() if q > 0]

    def _end(self, price: float) -> None:
        if self.in_flight:
            return  # its last children decide first
        self.status = ParentStatus.DONE if self.filled >= self.qty else ParentStatus.ENDED
        self.end_price = price

    # -- what it cost ------------------------------------------------------------------------------
    def observe_market(self, bar: Bar) -> None:
        """Count a bar after the parent's acceptance into the interval's market VWAP (typical
        price (high + low + close) / 3 weighted by volume)."""
        if self.created_at is not None and bar.timestamp <= self.created_at:
            return
        if bar.volume > 0:
            self.market_value += (bar.high + bar.low + bar.close) / 3.0 * bar.volume
            self.market_volume += bar.volume

    @property
    def paper_value(self) -> float:
        """The parent's quantity at its arrival price (the shortfall's denominator)."""
        return float(self.qty) * self.arrival_price

    @property
    def interval_vwap(self) -> float | None:
        return self.market_value / self.market_volume if self.market_volume > 0 else None

    def shortfall(
        self, price: float | None = None, interval_vwap: float | None = None
    ) -> Shortfall:
        """Implementation shortfall so far, the unfilled part marked at `price` (default: the
        end price once ended, else the arrival price), against `interval_vwap` (default: the
        market's VWAP over the bars it worked through)."""
        mark = price if price is not None else (self.end_price or self.arrival_price)
        vwap = interval_vwap if interval_vwap is not None else self.interval_vwap
        return implementation_shortfall(
            self.side.sign, float(self.qty), self.arrival_price, self.fills, mark, vwap
        )


# -- stored form (snapshots, the algo_orders table) ------------------------------------------------
def parent_to_dict(p: ParentOrder) -> dict[str, Any]:
    """Everything a parent is, as JSON: exact quantities as decimal strings, times as ISO."""
    return {
        "parent_id": p.parent_id,
        "algo": p.algo,
        "symbol": p.symbol,
        "side": p.side.value,
        "qty": str(p.qty),
        "slots": [t.isoformat() for t in p.slots],
        "weights": list(p.weights),
        "lot": str(p.lot),
        "least": str(p.least),
        "arrival_price": p.arrival_price,
        "limit_price": p.limit_price,
        "max_participation": p.max_participation,
        "status": p.status.value,
        "filled": str(p.filled),
        "in_flight": {k: str(v) for k, v in p.in_flight.items()},
        "children": list(p.children),
        "fills": [list(f) for f in p.fills],
        "end_price": p.end_price,
        "reason": p.reason,
        "next_slot": p.next_slot,
        "purpose": p.purpose,
        "strategy": p.strategy,
        "created_at": None if p.created_at is None else p.created_at.isoformat(),
        "child_filled": {k: str(v) for k, v in p.child_filled.items()},
        "market_value": p.market_value,
        "market_volume": p.market_volume,
        "single_order_bps": p.single_order_bps,
    }


def parent_from_dict(d: dict[str, Any]) -> ParentOrder:
    return ParentOrder(
        parent_id=d["parent_id"],
        symbol=d["symbol"],
        side=Side(d["side"]),
        qty=Decimal(d["qty"]),
        slots=[pd.Timestamp(t) for t in d["slots"]],
        weights=[float(w) for w in d["weights"]],
        lot=Decimal(d["lot"]),
        least=Decimal(d["least"]),
        arrival_price=float(d["arrival_price"]),
        limit_price=d["limit_price"],
        max_participation=d["max_participation"],
        status=ParentStatus(d["status"]),
        filled=Decimal(d["filled"]),
        in_flight={k: Decimal(v) for k, v in d["in_flight"].items()},
        children=list(d["children"]),
        fills=[(float(q), float(p), float(f)) for q, p, f in d["fills"]],
        end_price=d["end_price"],
        reason=d["reason"],
        next_slot=int(d["next_slot"]),
        algo=d["algo"],
        purpose=d["purpose"],
        strategy=d["strategy"],
        created_at=None if d["created_at"] is None else pd.Timestamp(d["created_at"]),
        child_filled={k: Decimal(v) for k, v in d["child_filled"].items()},
        market_value=float(d["market_value"]),
        market_volume=float(d["market_volume"]),
        single_order_bps=d["single_order_bps"],
    )
