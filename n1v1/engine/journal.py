"""The journal: everything the engine decides or learns, in the order it happened.

The engine never keeps a private record that the journal does not see, so a SQL-backed journal (the
state store) can rebuild a restarted engine, and an in-memory one serves backtests and tests.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from n1v1.domain import EquityPoint, Fill, Order, RiskDecision, Signal


class Journal(Protocol):
    def record_order(self, order: Order) -> None:
        """Called on creation and on every state change, with the order's current state."""

    def record_fill(self, fill: Fill) -> None: ...

    def record_signal(self, signal: Signal) -> None:
        """Called when a strategy's target for a symbol changes (not on every bar)."""

    def record_risk_decision(self, decision: RiskDecision) -> None: ...

    def record_equity(self, point: EquityPoint) -> None: ...


class InMemoryJournal:
    """Keeps everything in lists; orders are stored as snapshots, so their history survives."""

    def __init__(self, keep_equity: bool = True) -> None:
        self.orders: list[Order] = []
        self.fills: list[Fill] = []
        self.signals: list[Signal] = []
        self.risk_decisions: list[RiskDecision] = []
        self.equity: list[EquityPoint] = []
        self._keep_equity = keep_equity

    def record_order(self, order: Order) -> None:
        self.orders.append(dataclasses.replace(order))

    def record_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    def record_signal(self, signal: Signal) -> None:
        self.signals.append(signal)

    def record_risk_decision(self, decision: RiskDecision) -> None:
        self.risk_decisions.append(decision)

    def record_equity(self, point: EquityPoint) -> None:
        if self._keep_equity:
            self.equity.append(point)

    def latest_orders(self) -> dict[str, Order]:
        """The last known state of each order, by client order id."""
        return {o.client_order_id: o for o in self.orders}


class NullJournal:
    """Records nothing: for accounts whose journal nobody reads (per-strategy shadow accounts)."""

    def record_order(self, order: Order) -> None:
        pass

    def record_fill(self, fill: Fill) -> None:
        pass

    def record_signal(self, signal: Signal) -> None:
        pass

    def record_risk_decision(self, decision: RiskDecision) -> None:
        pass

    def record_equity(self, point: EquityPoint) -> None:
        pass
