"""Parent orders in the engine: an execution algorithm's children placed like any other order.

Part of the engine, kept apart like `n1v1.engine.manual`. A parent (n1v1/execution/algos.py)
decides how much to send at each closed bar of its symbol; this module sends it, under the
deterministic id (parent, sequence), through the same path as every order: an operator's parent
through the manual-order rules and the risk manager (`place_manual_order`, resizing a child that
no longer fits rather than refusing it), a strategy's entry or exit parent as the strategy's own
market order (the entry was sized and reviewed as a whole when the strategy asked for it). Both
reach the venue through `TradingEngine._place`, journaled first.

What becomes of each child comes back from the venue: its fills count for the parent (what the
exchange executed, a fee paid in the asset included), and a child that ends without filling in
full - refused, cancelled, expired, proven never to have arrived - frees its rest for the slots
left. A child whose outcome is unknown stays in flight, holding its quantity, until the venue
says. The book is state of the engine: journaled commands and bars rebuild it, and a snapshot
stores it (n1v1/live/snapshot.py). docs/execution.md ("Execution algorithms") states the rules.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

import pandas as pd

from n1v1.domain import Bar, ClientOrderId, Liquidity, Order, OrderPurpose, Side, Symbol
from n1v1.execution.algo_plan import PlanError, as_decimal, least_tradable
from n1v1.execution.algos import ParentOrder, ParentStatus
from n1v1.execution.costs import cost_models
from n1v1.execution.shortfall import implementation_shortfall

if TYPE_CHECKING:
    from n1v1.engine.engine import TradingEngine

ALGOS = ("twap", "vwap")
# A symbol without a lot size trades any quantity; a parent still counts in whole units of this.
FINEST_LOT = Decimal("1e-8")
_QUANTUM = Decimal("1e-10")  # how exactly a float quantity is counted (as the parents count fills)
STRATEGY_PURPOSES = (OrderPurpose.ENTRY.value, OrderPurpose.EXIT.value)


@dataclass(frozen=True, slots=True)
class AlgoRequest:
    """What to execute: a parent of `qty` over `duration`, a child every `interval`. `weights`
    (one per slot) make it a VWAP; None is a TWAP. `purpose` is the children's."""

    symbol: str
    side: Side
    qty: float | str
    duration: pd.Timedelta
    interval: pd.Timedelta
    algo: str = "twap"
    limit_price: float | None = None
    max_participation: float | None = None
    weights: tuple[float, ...] | None = None
    purpose: OrderPurpose = OrderPurpose.MANUAL
    strategy: str = ""


def parent_id_for(run_id: str, accepted_at: pd.Timestamp, n: int) -> str:
    """The n-th parent of a run, accepted at bar time `accepted_at`: the same id whenever the
    run is rebuilt, and (with the time, as every client order id has) not the id of another
    run's parent, so an exchange never sees a child id twice."""
    key = f"{run_id}|parent|{accepted_at.value}|{n}"
    return "pa" + hashlib.sha256(key.encode()).hexdigest()[:22]


def child_id_for(parent_id: str, seq: int) -> ClientOrderId:
    """The client order id of a parent's `seq`-th child (the form of `make_client_order_id`, so
    it passes as any exchange's client id the same way)."""
    return ClientOrderId("n1" + hashlib.sha256(f"{parent_id}|{seq}".encode()).hexdigest()[:30])


class AlgoBook:
    """The engine's parents, in the order they were accepted, and which parent owns each child."""

    def __init__(self, engine: TradingEngine) -> None:
        self.engine = engine
        self.parents: dict[str, ParentOrder] = {}
        self._owner: dict[str, str] = {}  # child id -> parent id
        self.accepted = 0  # parents ever accepted by this run (names the next one)
        self._at_open: list[ParentOrder] = []  # working when the current bar began

    # -- set-up and stored state -------------------------------------------------------------------
    def restore(self, parents: list[ParentOrder], accepted: int) -> None:
        self.parents = {p.parent_id: p for p in parents}
        self._owner = {cid: p.parent_id for p in parents for cid in p.children}
        self.accepted = accepted

    def working(self, symbol: str | None = None) -> list[ParentOrder]:
        return [
            p
            for p in self.parents.values()
            if p.status is ParentStatus.WORKING and (symbol is None or p.symbol == symbol)
        ]

    def parent_of(self, client_order_id: str) -> ParentOrder | None:
        pid = self._owner.get(client_order_id)
        return None if pid is None else self.parents[pid]

    # -- accepting a parent ------------------------------------------------------------------------
    def accept(self, request: AlgoRequest, ts: pd.Timestamp, bar: Bar) -> ParentOrder:
        """Plan the parent (PlanError naming the field when it cannot be), keep it and send its
        first child now if its first slot is due at `bar` (the bar the request was decided on)."""
        engine = self.engine
        symbol = Symbol(request.symbol)
        engine.state(symbol)  # a symbol in another currency is refused here
        if request.algo not in ALGOS:
            raise PlanError(f"algo: one of {', '.join(ALGOS)}, got {request.algo!r}")
        if request.algo == "vwap" and request.weights is None:
            raise PlanError("weights: a VWAP needs a volume profile")
        price = bar.close
        if not (math.isfinite(price) and price > 0):
            raise PlanError(f"{symbol}: no usable last price ({price!r}) to value the parent at")
        spec = engine.settings.execution.instrument(symbol)
        lot = as_decimal("lot size", spec.lot_size) if spec.lot_size > 0 else FINEST_LOT
        min_qty = Decimal(0)
        min_cost = as_decimal("min notional", spec.min_notional, positive=False)
        dust = engine.portfolio.dust_rules.get(symbol)
        if dust is not None:  # a live exchange's own least
            min_qty = as_decimal("min qty", dust.min_qty, positive=False)
            min_cost = max(min_cost, as_decimal("min cost", dust.min_cost, positive=False))
        least = least_tradable(lot, min_qty, min_cost, as_decimal("price", price))
        qty = as_decimal("qty", request.qty)
        if request.purpose is not OrderPurpose.MANUAL:  # a strategy's size: to the lot, down
            qty = (qty / lot).to_integral_value(rounding=ROUND_FLOOR) * lot
        parent = ParentOrder.twap(
            parent_id_for(engine.run_id, ts, self.accepted),
            symbol,
            request.side,
            str(qty),
            ts,
            request.duration,
            request.interval,
            lot,
            least,
            price,
            request.limit_price,
            request.max_participation,
            None if request.weights is None else list(request.weights),
        )
        parent.algo, parent.purpose = request.algo, request.purpose.value
        parent.strategy, parent.created_at = request.strategy, ts
        self.accepted += 1
        self.parents[parent.parent_id] = parent
        self._work(parent, bar, ts)
        return parent

    # -- each bar ----------------------------------------------------------------------------------
    def begin_bar(self) -> None:
        """A bar starts: the parents working now count its volume into their interval's VWAP,
        even the one its opening fills complete."""
        self._at_open = self.working()

    def on_bars(self, ts: pd.Timestamp, bars: Mapping[Symbol, tuple[int, Bar]]) -> None:
        """After the bar's decisions: each working parent of a symbol with a bar sends what is
        due. Paused or with the kill switch engaged, the slots of a parent that would open or add
        to a position pass without a child; one that reduces a position goes on."""
        for parent in self._at_open:
            entry = bars.get(Symbol(parent.symbol))
            if entry is not None:
                parent.observe_market(entry[1])
                if parent.single_order_bps is None:
                    parent.single_order_bps = self._as_one_order(parent, entry[1])
        self._at_open = []
        for parent in self.working():
            entry = bars.get(Symbol(parent.symbol))
            if entry is not None:
                self._work(parent, entry[1], ts)

    def _work(self, parent: ParentOrder, bar: Bar, ts: pd.Timestamp) -> None:
        self._sweep(parent)
        risk = self.engine.risk
        halted = risk.paused_reason is not None or risk.kill_switch.engaged
        hold = halted and self._adds(parent)  # exits work while paused, as everywhere
        slot = parent.next_slot
        try:
            qty = parent.on_bar(bar, hold=hold)
        except PlanError as exc:  # a bug, but one parent must not stop the engine: it ends
            parent.end(self._price(parent), f"could not plan the rest: {exc}")
            return
        if hold and parent.next_slot != slot:
            why = (
                "kill switch engaged"
                if risk.kill_switch.engaged
                else f"paused: {risk.paused_reason}"
            )
            parent.reason = f"slot {parent.next_slot - 1} passed unsent ({why})"
        if qty > 0:
            self._send(parent, qty, bar, ts)

    def _adds(self, parent: ParentOrder) -> bool:
        """Whether the parent's next child would open or add to a position (an entry's always;
        an operator's when it is on the position's side or the symbol is flat)."""
        if parent.purpose == OrderPurpose.ENTRY.value:
            return True
        if parent.purpose == OrderPurpose.EXIT.value:
            return False
        return self.engine.portfolio.position(Symbol(parent.symbol)).qty * parent.side.sign >= 0

    def _sweep(self, parent: ParentOrder) -> None:
        """Children no longer working at the venue are final: their unfilled rest is free."""
        working = {o.client_order_id for o in self.engine.venue.working_orders(parent.symbol)}
        for cid in list(parent.in_flight):
            if cid not in working:
                parent.on_child_closed(cid)

    def _send(self, parent: ParentOrder, qty: Decimal, bar: Bar, ts: pd.Timestamp) -> None:
        engine = self.engine
        seq = len(parent.children)
        cid = child_id_for(parent.parent_id, seq)
        parent.sent(cid, qty)
        self._owner[cid] = parent.parent_id
        reason = f"{parent.algo} {parent.parent_id} child {seq}"
        symbol, side = Symbol(parent.symbol), parent.side
        size = float(qty)
        placed: Order | None
        if parent.purpose == OrderPurpose.MANUAL.value:
            result = engine.submit_manual_order(
                symbol, side, size, ts, bar.close, resize=True, client_order_id=cid, reason=reason
            )
            placed = result.orders[0] if result.orders else None
            if placed is None:
                parent.reason = f"child {seq} refused: {result.reason}"
        else:
            if parent.purpose == OrderPurpose.EXIT.value and parent.open_qty == 0:
                size = self._rest_of_position(parent, cid, qty)
                if size <= 0.0:
                    return  # nothing is held any more: the exit is over
            placed = engine._submit_market(
                symbol,
                side,
                size,
                ts,
                OrderPurpose(parent.purpose),
                bar,
                reason,
                strategy=parent.strategy,
                client_order_id=cid,
            )
        if placed is None or placed.status.is_terminal:
            parent.on_child_closed(cid)  # refused, or filled at once at the close
        elif placed.qty < size:  # resized to what still fits: the rest goes to later slots
            parent.in_flight[cid] = Decimal(repr(placed.remaining_qty)).quantize(_QUANTUM)

    def _rest_of_position(self, parent: ParentOrder, cid: ClientOrderId, planned: Decimal) -> float:
        """An exit's last child closes what is held, to the last float unit, whatever the plan
        said: an entry child that filled after the exit was planned (its cancel raced it at a
        live exchange) is sold too, and the parent's quantity becomes what it sells in all (the
        shortfall is of that). With nothing held, the child is not sent."""
        # what is held on the side this exit closes (a sell closes a long): a reversal's entry
        # may be filling meanwhile, and its short is not this exit's to buy back
        held = max(
            -parent.side.sign * self.engine.portfolio.position(Symbol(parent.symbol)).qty, 0.0
        )
        size = max(held - self._in_flight_size(parent), 0.0)
        exact = Decimal(repr(size)).quantize(_QUANTUM) if size > 0 else Decimal(0)
        parent.qty += exact - planned
        if exact <= 0:
            parent.in_flight.pop(cid, None)
            parent.children.pop()
            del self._owner[cid]
            parent.qty = max(parent.qty, parent.filled)  # what it sold is all there was
            return 0.0
        parent.in_flight[cid] = exact
        return size

    def _in_flight_size(self, parent: ParentOrder) -> float:
        working = {o.client_order_id: o for o in self.engine.venue.working_orders(parent.symbol)}
        return sum(working[c].remaining_qty for c in parent.in_flight if c in working)

    def _as_one_order(self, parent: ParentOrder, bar: Bar) -> float:
        """The shortfall (bps) of the whole parent as one market order filled at `bar`'s open,
        under the fee and slippage rules of the settings (n1v1/execution/costs.py), volume
        impact included: the cost slicing is measured against."""
        fees, slippage = cost_models(self.engine.settings.execution)
        qty = float(parent.qty)
        price = slippage.adjust(bar.open, parent.side, qty, bar.volume)
        fee = fees.fee(qty * price, Liquidity.TAKER)
        fills = [(qty, price, fee)]
        return implementation_shortfall(
            parent.side.sign, qty, parent.arrival_price, fills, price
        ).total_bps

    # -- what the venue says -----------------------------------------------------------------------
    def on_execution(self, order: Order, fill_price: float, fee: float) -> None:
        parent = self.parent_of(order.client_order_id)
        if parent is None:
            return
        parent.on_fill(order.client_order_id, order.filled_qty, fill_price, fee)
        if order.status.is_terminal:
            parent.on_child_closed(order.client_order_id)

    def on_order_closed(self, order: Order) -> None:
        parent = self.parent_of(order.client_order_id)
        if parent is not None and order.status.is_terminal:
            parent.on_child_closed(order.client_order_id)

    # -- stopping parents --------------------------------------------------------------------------
    def cancel(self, parent_id: str, ts: pd.Timestamp, reason: str) -> ParentOrder:
        """Cancel a working parent and its working children (KeyError: no such parent)."""
        parent = self.parents[parent_id]
        self._stop(parent, ts, reason, cancel_children=True)
        return parent

    def cancel_symbol(
        self, symbol: str, ts: pd.Timestamp, reason: str, purposes: tuple[str, ...]
    ) -> None:
        """Stop a symbol's working parents of `purposes` (their children are cancelled by the
        caller, which cancels the symbol's market orders)."""
        for parent in self.working(symbol):
            if parent.purpose in purposes:
                self._stop(parent, ts, reason, cancel_children=True)

    def cancel_all(self, ts: pd.Timestamp, reason: str) -> None:
        """The kill switch: every working parent stops (its children go with every working
        order, which the kill switch cancels)."""
        for parent in self.working():
            self._stop(parent, ts, reason, cancel_children=False)

    def end_all(self, ts: pd.Timestamp) -> None:
        """End of data: the working parents end where they stand."""
        for parent in self.working():
            parent.end(self._price(parent), "end of data")

    def _stop(
        self, parent: ParentOrder, ts: pd.Timestamp, reason: str, *, cancel_children: bool
    ) -> None:
        engine = self.engine
        in_flight = parent.cancel(reason, self._price(parent))
        if not cancel_children:
            return
        working = {o.client_order_id for o in engine.venue.working_orders(parent.symbol)}
        for cid in in_flight:
            if cid in working:
                cancelled = engine.venue.cancel(ClientOrderId(cid), ts, reason)
                engine.journal.record_order(cancelled)
                if cancelled.status.is_terminal:
                    parent.on_child_closed(cid)

    def _price(self, parent: ParentOrder) -> float:
        last = self.engine.portfolio.position(Symbol(parent.symbol)).last_price
        return last if math.isfinite(last) and last > 0 else parent.arrival_price

    # -- what the risk checks see ------------------------------------------------------------------
    def pending_entries(self, symbol: str) -> float:
        """The quantity a symbol's working entry parents will still send (not yet a child)."""
        return sum(
            float(p.open_qty) for p in self.working(symbol) if p.purpose == OrderPurpose.ENTRY
        )
