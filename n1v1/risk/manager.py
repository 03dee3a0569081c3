"""The risk manager: the single gate between what strategies want and the orders the engine places.

Every entry passes through `review_entry`, which sizes it and applies halts, limits and exchange
rules in a
fixed order; every decision (approved, resized or rejected) goes to the journal with its rule and
reason.
Exits are never blocked.
"""

from __future__ import annotations

import pandas as pd

from n1v1.config import InstrumentSpec, RiskSettings
from n1v1.domain import RiskDecision, Symbol, Trade
from n1v1.engine.journal import Journal
from n1v1.execution.instruments import below_min_notional, round_qty_down
from n1v1.risk.breaker import CircuitBreaker, DailyLossGuard, KillSwitch
from n1v1.risk.limits import check_portfolio_limits
from n1v1.risk.sizing import size_entry


class RiskManager:
    def __init__(self, settings: RiskSettings, journal: Journal) -> None:
        self.settings = settings
        self.journal = journal
        self.breaker = CircuitBreaker(settings)
        self.daily = DailyLossGuard(settings.max_daily_loss)
        self.kill_switch = KillSwitch()
        self.paused_reason: str | None = None  # an operator's pause: no new entries, exits work
        self.last_decision: RiskDecision | None = None
        self._previous_equity: float | None = None

    def update_settings(self, settings: RiskSettings) -> None:
        """Apply new limits live; breaker and guard state (peak, losses, halts) is kept."""
        self.settings = settings
        self.breaker.settings = settings
        self.daily.max_daily_loss = settings.max_daily_loss

    # -- state updates ---------------------------------------------------------------------------
    def on_bar_close(self, timestamp: pd.Timestamp, bar_index: int, equity: float) -> None:
        previous = equity if self._previous_equity is None else self._previous_equity
        for rule, reason in (
            ("circuit_breaker", self.breaker.on_equity(bar_index, equity)),
            ("max_daily_loss", self.daily.on_equity(timestamp, equity, previous)),
        ):
            if reason:
                self.record_decision(timestamp, Symbol("*"), rule, "halt", reason)
        self._previous_equity = equity

    def on_trade_closed(self, trade: Trade) -> None:
        self.breaker.on_trade_closed(trade.pnl)

    def set_initial_equity(self, equity: float) -> None:
        self._previous_equity = equity
        self.breaker.peak = max(self.breaker.peak, equity)

    def engage_kill_switch(self, timestamp: pd.Timestamp, reason: str) -> None:
        self.kill_switch.engage(reason)
        self.record_decision(timestamp, Symbol("*"), "kill_switch", "flatten", reason)

    @property
    def halt(self) -> tuple[str, str] | None:
        """(rule, reason) that refuses new entries right now, or None when they are allowed."""
        if self.kill_switch.engaged:
            return "kill_switch", f"kill switch engaged: {self.kill_switch.reason}"
        if self.paused_reason is not None:
            return "paused", f"paused by operator: {self.paused_reason}"
        if self.breaker.tripped:
            return "circuit_breaker", f"circuit breaker tripped: {self.breaker.reason}"
        if self.daily.halted:
            return "max_daily_loss", "daily loss limit reached; entries resume next UTC day"
        return None

    # -- the gate ---------------------------------------------------------------------------------
    def review_entry(
        self,
        timestamp: pd.Timestamp,
        symbol: Symbol,
        *,
        price: float,
        equity: float,
        cost_rate: float,
        atr: float | None,
        closed_trades: list[Trade],
        open_positions: int,
        symbol_exposure: float,
        total_exposure: float,
        instrument: InstrumentSpec,
    ) -> float:
        """Approved quantity for a new position in `symbol` (0 when rejected)."""
        halt = self.halt
        if halt is not None:
            rule, reason = halt
            self.record_decision(timestamp, symbol, rule, "reject", reason)
            return 0.0

        sized = size_entry(
            self.settings,
            equity=equity,
            price=price,
            cost_rate=cost_rate,
            atr=atr,
            closed_trades=closed_trades,
        )
        return self._within_limits(
            timestamp,
            symbol,
            sized.qty,
            f"sizing_{sized.method}",
            sized.detail,
            price=price,
            equity=equity,
            open_positions=open_positions,
            symbol_exposure=symbol_exposure,
            total_exposure=total_exposure,
            instrument=instrument,
        )

    def review_manual(
        self,
        timestamp: pd.Timestamp,
        symbol: Symbol,
        qty: float,
        *,
        price: float,
        equity: float,
        open_positions: int,
        symbol_exposure: float,
        total_exposure: float,
        instrument: InstrumentSpec,
    ) -> float:
        """Approved quantity for an operator's order that adds risk: the same halts, limits and
        exchange rules as a strategy's entry, with the operator's quantity instead of sizing."""
        halt = self.halt
        if halt is not None:
            rule, reason = halt
            self.record_decision(timestamp, symbol, rule, "reject", reason, qty, 0.0)
            return 0.0
        return self._within_limits(
            timestamp,
            symbol,
            qty,
            "manual",
            f"operator order for {qty:g}",
            price=price,
            equity=equity,
            open_positions=open_positions,
            symbol_exposure=symbol_exposure,
            total_exposure=total_exposure,
            instrument=instrument,
        )

    def _within_limits(
        self,
        timestamp: pd.Timestamp,
        symbol: Symbol,
        requested: float,
        approve_rule: str,
        approve_reason: str,
        *,
        price: float,
        equity: float,
        open_positions: int,
        symbol_exposure: float,
        total_exposure: float,
        instrument: InstrumentSpec,
    ) -> float:
        limits = check_portfolio_limits(
            self.settings,
            qty=requested,
            price=price,
            equity=equity,
            open_positions=open_positions,
            symbol_exposure=symbol_exposure,
            total_exposure=total_exposure,
        )
        qty = round_qty_down(limits.qty, instrument)
        if qty <= 0.0:
            rule = limits.rule or approve_rule
            reason = limits.reason or f"{approve_reason}: quantity rounds to zero"
            self.record_decision(timestamp, symbol, rule, "reject", reason, requested, 0.0)
            return 0.0
        if below_min_notional(qty, price, instrument):
            self.record_decision(
                timestamp,
                symbol,
                "min_notional",
                "reject",
                f"notional {qty * price:.2f} below minimum {instrument.min_notional:g}",
                requested,
                0.0,
            )
            return 0.0
        if limits.rule:
            self.record_decision(
                timestamp, symbol, limits.rule, "resize", limits.reason, requested, qty
            )
        else:
            self.record_decision(
                timestamp, symbol, approve_rule, "approve", approve_reason, requested, qty
            )
        return qty

    def record_decision(
        self,
        timestamp: pd.Timestamp,
        symbol: Symbol,
        rule: str,
        action: str,
        reason: str,
        requested: float = 0.0,
        approved: float = 0.0,
    ) -> None:
        """Journal what a rule did (also for decisions taken elsewhere: the venue's cash cut)."""
        decision = RiskDecision(timestamp, symbol, rule, action, reason, requested, approved)
        self.last_decision = decision
        self.journal.record_risk_decision(decision)
