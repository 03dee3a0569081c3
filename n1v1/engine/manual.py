"""Operator (manual) orders: never past flat by accident, never resized without being asked.

Part of the engine (it places orders through `TradingEngine._submit_market`), kept apart because
its rules are the operator's, not the strategies'. The rules, in the order they apply, are in
docs/execution.md, "Manual orders".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from n1v1.domain import ClientOrderId, Order, OrderPurpose, OrderType, Side, Symbol
from n1v1.execution.instruments import round_qty_down
from n1v1.risk.manager import Adjustment

if TYPE_CHECKING:
    from n1v1.engine.engine import TradingEngine

_QTY_EPS = 1e-9  # relative: 0.1 + 0.2 is not more than 0.3


@dataclass(slots=True)
class ManualOrderResult:
    """What became of an operator's order: the orders placed (a reversal places two, the close and
    then the new position), every cut made to its quantity, or the rule that refused it (then
    nothing was placed)."""

    requested_qty: float
    orders: list[Order] = field(default_factory=list)
    adjustments: list[Adjustment] = field(default_factory=list)
    rule: str = ""
    reason: str = ""
    details: dict[str, float] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return bool(self.orders)

    def refuse(self, rule: str, reason: str, details: Mapping[str, float]) -> None:
        self.rule, self.reason = rule, reason
        self.details = {"requested_qty": self.requested_qty, **details}


def place_manual_order(
    engine: TradingEngine,
    symbol: str,
    side: Side,
    qty: float,
    ts: pd.Timestamp,
    price: float,
    resize: bool,
    reverse: bool,
    client_order_id: ClientOrderId | None = None,
    reason: str = "operator",
) -> ManualOrderResult:
    """An operator's market order, filled at the next bar's open (docs/execution.md, "Manual
    orders"). `price` is the last close, which the checks value the order at.

    Against the position plus the market orders already working (the projected position):
    the part that reduces it is never blocked, but never goes past flat: an order larger than
    the position closes it and stops there (rule `reduce_only`) unless `reverse` asks to open
    the other side with the rest, as a second order. What opens or adds passes
    `RiskManager.review_manual`: over a limit, the cash or off the lot it is refused naming
    the rule, unless `resize` asks to cut it. Nothing is placed when any part is refused.

    `client_order_id` names the order (a parent's child: n1v1/engine/algo_orders.py); it is
    for an order that places one order, so it is refused with `reverse`.
    """
    if client_order_id is not None and reverse:
        raise ValueError("client_order_id: one order's id, and a reversal places two")
    sym = Symbol(symbol)
    engine.state(sym)  # a symbol in another currency is refused here
    spec = engine.settings.execution.instrument(sym)
    result = ManualOrderResult(requested_qty=qty)
    projected = _projected_position(engine, sym)
    held = abs(projected) if projected * side.sign < 0 else 0.0  # what this side reduces
    close_qty = min(qty, held)
    open_qty = qty - close_qty if qty > held * (1.0 + _QTY_EPS) else 0.0
    if held > 0.0 and open_qty > 0.0 and not reverse:
        what, other = ("long", "short") if projected > 0 else ("short", "long")
        reason = (
            f"reduce_only: {side.value} {qty:.10g} is more than the {what} {held:.10g}; "
            f"capped to close it (send reverse=true to open a {other} with the rest)"
        )
        result.adjustments.append(Adjustment("reduce_only", qty, held, reason))
        engine.risk.record_decision(ts, sym, "reduce_only", "resize", reason, qty, held)
        open_qty = 0.0
    if 0.0 < close_qty < held * (1.0 - _QTY_EPS):  # a partial reduce trades whole lots
        lots = round_qty_down(close_qty, spec)
        if lots < close_qty * (1.0 - _QTY_EPS):
            reason = (
                f"lot_size: {close_qty:.10g} is not a multiple of the lot size {spec.lot_size:g}"
            )
            if not resize or lots <= 0.0:
                engine.risk.record_decision(ts, sym, "lot_size", "reject", reason, qty, 0.0)
                result.refuse("lot_size", reason, {"lot_size": spec.lot_size, "max_qty": lots})
                return result
            result.adjustments.append(Adjustment("lot_size", close_qty, lots, reason))
            engine.risk.record_decision(ts, sym, "lot_size", "resize", reason, close_qty, lots)
            close_qty = lots
    if open_qty > 0.0:
        open_elsewhere, exposure_elsewhere = engine.commitments(exclude=sym)
        cover = close_qty * price * (1.0 + engine.cost_rate) if side is Side.BUY else 0.0
        review = engine.risk.review_manual(
            ts,
            sym,
            open_qty,
            direction=side.sign,
            price=price,
            equity=engine.portfolio.equity,
            cost_rate=engine.cost_rate,
            cash=engine.portfolio.cash - _committed_cash(engine) - cover,
            open_positions=open_elsewhere,
            symbol_exposure=max(projected * side.sign, 0.0) * price,
            total_exposure=exposure_elsewhere,
            instrument=spec,
            resize=resize,
        )
        result.adjustments.extend(review.adjustments)
        if review.rejected:
            result.refuse(review.rule, review.reason, review.details)
            return result
        open_qty = review.qty
    elif close_qty > 0.0:
        reason = f"operator order for {qty:g} reduces the position {projected:g}"
        engine.risk.record_decision(ts, sym, "manual", "approve", reason, qty, close_qty)
    if close_qty > 0.0:
        result.orders.append(
            engine._submit_market(
                sym,
                side,
                close_qty,
                ts,
                OrderPurpose.MANUAL,
                None,
                f"{reason}: reduce",
                client_order_id=client_order_id,
            )
        )
    if open_qty > 0.0:
        result.orders.append(
            engine._submit_market(
                sym,
                side,
                open_qty,
                ts,
                OrderPurpose.MANUAL,
                None,
                reason,
                client_order_id=client_order_id,
            )
        )
    return result


def _projected_position(engine: TradingEngine, symbol: Symbol) -> float:
    """The position once the market orders already working for `symbol` have filled."""
    pending = sum(
        o.remaining_qty * o.side.sign
        for o in engine.venue.working_orders(symbol)
        if o.order_type is OrderType.MARKET
    )
    return engine.portfolio.position(symbol).qty + pending


def _committed_cash(engine: TradingEngine) -> float:
    """Cash the working market buys will spend, valued at each symbol's last price."""
    committed = 0.0
    for order in engine.venue.working_orders():
        if order.order_type is OrderType.MARKET and order.side is Side.BUY:
            price = engine.portfolio.position(order.symbol).last_price
            if math.isfinite(price):
                committed += order.remaining_qty * price * (1.0 + engine.cost_rate)
    return committed
