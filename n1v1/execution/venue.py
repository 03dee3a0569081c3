"""The simulated venue: where the engine's orders meet historical or replayed bars.

It implements the fill rules of docs/execution.md and nothing else; the engine decides *what* to
trade, the venue decides *how* it fills. A live venue (ccxt) offers the same three calls: `submit`,
`cancel` and the matching hooks driven by the feed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from n1v1.config import ExecutionSettings
from n1v1.domain import (
    Bar,
    ClientOrderId,
    Fill,
    Liquidity,
    Order,
    OrderStatus,
    OrderType,
    Side,
)
from n1v1.execution.costs import FeeModel, SlippageModel, cost_models
from n1v1.execution.instruments import round_price, round_qty_down

# (order, fill price, fee rate) -> the largest quantity the account can pay for, or None: no limit
AffordableQty = Callable[[Order, float, float], float | None]
OnExecution = Callable[["Execution"], None]


class VenueError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Execution:
    """A fill together with the order it belongs to and, when the venue cut the size, why."""

    order: Order
    fill: Fill
    note: str = ""
    cancelled_siblings: tuple[Order, ...] = ()
    cut_from: float = 0.0  # the quantity wanted before the venue cut it (0: not cut)
    amended_siblings: tuple[Order, ...] = ()  # OCO siblings shrunk to the order's remainder


class SimulatedVenue:
    """Matches working orders against bars with the documented fill, fee and slippage model."""

    def __init__(self, settings: ExecutionSettings, affordable_qty: AffordableQty | None = None):
        self.settings = settings
        self.fees: FeeModel
        self.slippage: SlippageModel
        self.fees, self.slippage = cost_models(settings)
        self.affordable_qty = affordable_qty
        self._working: dict[ClientOrderId, Order] = {}
        self._fill_seq: dict[ClientOrderId, int] = {}

    # -- order entry -------------------------------------------------------------------------------
    def submit(self, order: Order, at: pd.Timestamp) -> None:
        if order.client_order_id in self._working:
            raise VenueError(f"order {order.client_order_id} is already working")
        if order.price is not None:
            order.price = round_price(order.price, self.settings.instrument(order.symbol))
        order.transition(OrderStatus.SUBMITTED, at)
        self._working[order.client_order_id] = order

    def cancel(self, client_order_id: ClientOrderId, at: pd.Timestamp, reason: str) -> Order:
        order = self._working.pop(client_order_id, None)
        if order is None:
            raise VenueError(f"order {client_order_id} is not working")
        order.transition(OrderStatus.CANCELLED, at, reason)
        return order

    def working_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self._working.values() if symbol is None or o.symbol == symbol]

    def busy(self, symbol: str) -> bool:
        """Never: a simulated order's outcome is decided against the bars, within the step."""
        return False

    def resting(self, symbol: str | None = None) -> list[Order]:
        """Working stop and limit orders: those whose price may still move (trailing)."""
        return [o for o in self.working_orders(symbol) if o.order_type is not OrderType.MARKET]

    def take_changed(self) -> list[Order]:
        """Orders changed without a fill since the last call: none here (every change of a
        simulated order comes with the execution or the call that made it)."""
        return []

    def expire_all(self, at: pd.Timestamp, reason: str = "end of data") -> list[Order]:
        expired = list(self._working.values())
        for order in expired:
            order.transition(OrderStatus.EXPIRED, at, reason)
        self._working.clear()
        return expired

    def set_price(self, client_order_id: ClientOrderId, price: float) -> Order:
        """Move a resting order's price (a trailing stop); the simulated venue amends in place."""
        order = self._working[client_order_id]
        order.price = round_price(price, self.settings.instrument(order.symbol))
        return order

    # -- matching ----------------------------------------------------------------------------------
    def match_open(
        self, symbol: str, bar: Bar, on_execution: OnExecution | None = None
    ) -> list[Execution]:
        """Fill working market orders of `symbol` at the bar's open (the `next_open` rule).

        `on_execution` books each fill before the next order is matched, so that the account the
        next order is checked against (e.g. cash after a short was covered) is already up to date.
        """
        executions = []
        for order in self.working_orders(symbol):
            if order.order_type is not OrderType.MARKET:
                continue  # resting orders fill against the bar's range (match_range)
            ex = self._fill_market(order, bar.open, bar, cap_by_volume=True)
            if ex is not None:
                executions.append(ex)
                if on_execution is not None:
                    on_execution(ex)
            if order.status.is_open:
                break  # first in, first out: a reversal's entry waits for its exit
        return executions

    def fill_at_close(self, order: Order, bar: Bar) -> Execution | None:
        """The optimistic `close` rule: a market order fills at the close of its signal bar."""
        if self._queued_behind(order):
            return None  # an earlier market order of this symbol is still filling
        return self._fill_market(order, bar.close, bar, cap_by_volume=True)

    def fill_at_end(self, order: Order, bar: Bar) -> Execution | None:
        """`backtest.close_at_end`: the whole order fills at the last bar's close (taker fee and
        slippage, no participation cap: it turns the position into cash for the books)."""
        return self._fill_market(order, bar.close, bar, cap_by_volume=False)

    def _queued_behind(self, order: Order) -> bool:
        for other in self.working_orders(order.symbol):
            if other is order:
                return False
            if other.order_type is OrderType.MARKET:
                return True
        return False

    def match_range(
        self, symbol: str, bar: Bar, on_execution: OnExecution | None = None
    ) -> list[Execution]:
        """Fill resting stop and limit orders whose price the bar's range reached.

        Stops are matched before limits: when a stop-loss and a take-profit are both inside one
        bar's range we cannot know which came first, so we assume the worse one did. Orders of
        one OCO group are one exit: once a member has filled in a bar (even partly, under the
        participation cap) the others do not fill in that bar.
        """
        executions = []
        resting = [o for o in self.working_orders(symbol) if o.order_type is not OrderType.MARKET]
        resting.sort(key=lambda o: 0 if o.order_type is OrderType.STOP else 1)
        filled_groups: set[str] = set()
        for order in resting:
            if order.client_order_id not in self._working:
                continue  # cancelled by its OCO sibling earlier in this loop
            if order.oco_group and order.oco_group in filled_groups:
                continue
            ex = self._match_resting(order, bar)
            if ex is not None:
                if order.oco_group:
                    filled_groups.add(order.oco_group)
                executions.append(ex)
                if on_execution is not None:
                    on_execution(ex)
        return executions

    # -- internals ---------------------------------------------------------------------------------
    def _match_resting(self, order: Order, bar: Bar) -> Execution | None:
        assert order.price is not None
        price = order.price
        buy = order.side is Side.BUY
        if order.order_type is OrderType.STOP:
            touched = bar.high >= price if buy else bar.low <= price
            qty = self._tradable_qty(order, bar) if touched else 0.0
            if qty <= 0.0:
                return None
            gapped = bar.open >= price if buy else bar.open <= price
            raw = bar.open if gapped else price
            fill_price = self.slippage.adjust(raw, order.side, qty, bar.volume)
            return self._execute(order, qty, fill_price, Liquidity.TAKER, bar)
        if self.settings.limit_fill == "through":  # the bar must trade strictly beyond the price
            touched = bar.low < price if buy else bar.high > price
        else:
            touched = bar.low <= price if buy else bar.high >= price
        qty = self._tradable_qty(order, bar) if touched else 0.0
        if qty <= 0.0:
            return None
        # the open when the bar opened at or beyond the price (a favourable gap), else the price
        fill_price = min(bar.open, price) if buy else max(bar.open, price)
        return self._execute(order, qty, fill_price, Liquidity.MAKER, bar)

    def _tradable_qty(self, order: Order, bar: Bar) -> float:
        """The order's remainder, capped at participation_cap × bar volume (rounded down to the
        lot): 0 when nothing can trade in this bar."""
        qty = order.remaining_qty
        cap = self.settings.participation_cap
        if cap is not None:
            qty = min(qty, round_qty_down(cap * bar.volume, self.settings.instrument(order.symbol)))
        return qty

    def _fill_market(
        self, order: Order, raw_price: float, bar: Bar, cap_by_volume: bool
    ) -> Execution | None:
        qty = self._tradable_qty(order, bar) if cap_by_volume else order.remaining_qty
        note, cut_from = "", 0.0
        if qty <= 0.0:
            return None  # nothing tradable in this bar; the order keeps working
        price = self.slippage.adjust(raw_price, order.side, qty, bar.volume)
        if self.affordable_qty is not None:
            affordable = self.affordable_qty(order, price, self.fees.taker)
            if affordable is not None and affordable < qty:
                spec = self.settings.instrument(order.symbol)
                affordable = round_qty_down(affordable, spec)
                note = f"insufficient_cash: cut from {qty:.10g} to {affordable:.10g}"
                cut_from = qty
                if affordable <= 0.0:
                    self._working.pop(order.client_order_id, None)
                    order.transition(OrderStatus.CANCELLED, bar.timestamp, note)
                    return None
                # The unaffordable remainder will never fill: shrink the order to what was possible.
                order.qty = order.filled_qty + affordable
                qty = affordable
                price = self.slippage.adjust(raw_price, order.side, qty, bar.volume)
        return self._execute(order, qty, price, Liquidity.TAKER, bar, note, cut_from)

    def _execute(
        self,
        order: Order,
        qty: float,
        price: float,
        liquidity: Liquidity,
        bar: Bar,
        note: str = "",
        cut_from: float = 0.0,
    ) -> Execution:
        seq = self._fill_seq.get(order.client_order_id, 0)
        self._fill_seq[order.client_order_id] = seq + 1
        fill = Fill(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price,
            fee=self.fees.fee(qty * price, liquidity),
            liquidity=liquidity,
            timestamp=bar.timestamp,
            purpose=order.purpose,
            seq=seq,
        )
        order.apply_fill(qty, price, bar.timestamp)
        cancelled: list[Order] = []
        amended: list[Order] = []
        if order.status is OrderStatus.FILLED:
            self._working.pop(order.client_order_id, None)
        if order.oco_group:
            # The members of an OCO group protect one quantity: a partial fill of one shrinks the
            # others to its remainder, a complete fill cancels them.
            for sibling in self.working_orders(order.symbol):
                if sibling is order or sibling.oco_group != order.oco_group:
                    continue
                if order.status is OrderStatus.FILLED:
                    cancelled.append(
                        self.cancel(sibling.client_order_id, bar.timestamp, "oco sibling filled")
                    )
                else:
                    sibling.qty = sibling.filled_qty + order.remaining_qty
                    amended.append(sibling)
        return Execution(order, fill, note, tuple(cancelled), cut_from, tuple(amended))
