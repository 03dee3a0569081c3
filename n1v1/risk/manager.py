"""The risk manager: the single gate between what strategies want and the orders the engine places.

Every strategy entry passes through `review_entry`, which sizes it and applies halts, limits and
exchange rules in a fixed order, cutting what exceeds a limit; an operator's order passes through
`review_manual`, which applies the same rules strictly (refused naming the rule unless resizing
was asked). Every decision (approved, resized or rejected) goes to the journal with its rule and
reason. Exits are never blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from n1v1.config import InstrumentSpec, RiskSettings
from n1v1.domain import RiskDecision, Symbol, Trade
from n1v1.engine.journal import Journal
from n1v1.execution.instruments import below_min_notional, round_qty_down
from n1v1.risk.breaker import CircuitBreaker, DailyLossGuard, KillSwitch
from n1v1.risk.limits import check_portfolio_limits
from n1v1.risk.sizing import size_entry

# Relative tolerance for "more than": 0.1 + 0.2 must not count as more than 0.3.
_QTY_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A change made to an operator's quantity, the rule that made it and why."""

    rule: str
    from_qty: float
    to_qty: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "from_qty": self.from_qty,
            "to_qty": self.to_qty,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ManualReview:
    """The risk manager's answer to an operator's order: the approved quantity (0: rejected, with
    the rule, the reason and the numbers behind it) and every cut it made on the way."""

    qty: float
    adjustments: tuple[Adjustment, ...] = ()
    rule: str = ""
    reason: str = ""
    details: dict[str, float] = field(default_factory=dict)

    @property
    def rejected(self) -> bool:
        return self.qty <= 0.0


class RiskManager:
    def __init__(self, settings: RiskSettings, journal: Journal) -> None:
        self.settings = settings
        self.journal = journal
        self.breaker = CircuitBreaker(settings)
        self.daily = DailyLossGuard(settings.max_daily_loss)
        self.kill_switch = KillSwitch()
        self.paused_reason: str | None = None  # an operator's pause: no new entries, exits work
        self._previous_equity: float | None = None

    def update_settings(self, settings: RiskSettings) -> None:
        """Apply new limits live; breaker and guard state (peak, losses, halts) is kept."""
        self.settings = settings
        self.breaker.settings = settings
        self.daily.max_daily_loss = settings.max_daily_loss

    # -- state updates ---------------------------------------------------------------------------
    def on_bar_close(
        self, timestamp: pd.Timestamp, bar_index: int, equity: float
    ) -> list[tuple[str, str]]:
        """Update the breaker and the daily-loss guard; returns the (rule, reason) of each limit
        this bar breached (each is journaled as a halt)."""
        previous = equity if self._previous_equity is None else self._previous_equity
        breaches = []
        for rule, reason in (
            ("circuit_breaker", self.breaker.on_equity(bar_index, equity)),
            ("max_daily_loss", self.daily.on_equity(timestamp, equity, previous)),
        ):
            if reason:
                self.record_decision(timestamp, Symbol("*"), rule, "halt", reason)
                breaches.append((rule, reason))
        self._previous_equity = equity
        return breaches

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
        direction: int,
        price: float,
        equity: float,
        cost_rate: float,
        cash: float,
        open_positions: int,
        symbol_exposure: float,
        total_exposure: float,
        instrument: InstrumentSpec,
        resize: bool,
    ) -> ManualReview:
        """Review an operator's order that opens or adds to a position in `direction`.

        The same halts, limits and exchange rules as a strategy entry, but strict: a quantity over
        a limit, over the cash, or off the lot size is rejected naming the rule and its value,
        unless the operator asked for `resize`, in which case it is cut and each cut is listed.
        Below the lot size or the minimum notional it is always rejected: resizing cannot help.
        Every outcome is journaled (reject, or resize per cut, or approve).
        """
        requested = qty
        adjustments: list[Adjustment] = []

        def reject(rule: str, reason: str, **details: float) -> ManualReview:
            self.record_decision(timestamp, symbol, rule, "reject", reason, requested, 0.0)
            info = {"requested_qty": requested, **details}
            return ManualReview(0.0, tuple(adjustments), rule, reason, info)

        def too_much(rule: str, reason: str, fits: float, **details: float) -> ManualReview | None:
            """Reject (None: cut to `fits` and go on, when resizing was asked and it helps)."""
            nonlocal qty
            if not resize or fits <= 0.0:
                hint = "" if fits <= 0.0 else f"; send resize=true to trade {fits:.10g} instead"
                return reject(rule, reason + hint, max_qty=max(fits, 0.0), **details)
            adjustments.append(Adjustment(rule, qty, fits, reason))
            qty = fits
            return None

        halt = self.halt
        if halt is not None:
            return reject(*halt)
        if direction < 0 and not self.settings.allow_short:
            return reject("allow_short", "opening a short needs risk.allow_short, which is false")
        limits = check_portfolio_limits(
            self.settings,
            qty=qty,
            price=price,
            equity=equity,
            open_positions=open_positions,
            symbol_exposure=symbol_exposure,
            total_exposure=total_exposure,
        )
        if limits.rule == "max_open_positions":
            return reject(limits.rule, limits.reason, limit=float(limits.limit or 0))
        if limits.rule and limits.qty < qty * (1.0 - _QTY_EPS):
            reason = (
                f"{limits.rule} {limits.limit:g}: {qty:.10g} at {price:.2f} would take the "
                f"exposure past {limits.limit:g} x equity {equity:.2f}"
            )
            refused = too_much(limits.rule, reason, limits.qty, limit=float(limits.limit or 0))
            if refused is not None:
                return refused
        if direction > 0:
            unit_cost = price * (1.0 + cost_rate)
            affordable = max(cash, 0.0) / unit_cost
            if qty > affordable * (1.0 + _QTY_EPS):
                reason = (
                    f"insufficient_cash: buying {qty:.10g} at {price:.2f} costs "
                    f"{qty * unit_cost:.2f} with fees and slippage; cash available is {cash:.2f}"
                )
                refused = too_much("insufficient_cash", reason, affordable, cash=cash)
                if refused is not None:
                    return refused
        lots = round_qty_down(qty, instrument)
        if lots <= 0.0:
            reason = f"lot_size: {qty:.10g} is below the lot size {instrument.lot_size:g}"
            return reject("lot_size", reason, lot_size=instrument.lot_size)
        if lots < qty * (1.0 - _QTY_EPS):
            step = instrument.lot_size
            reason = f"lot_size: {qty:.10g} is not a multiple of the lot size {step:g}"
            refused = too_much("lot_size", reason, lots, lot_size=instrument.lot_size)
            if refused is not None:
                return refused
        if below_min_notional(lots, price, instrument):
            reason = (
                f"min_notional: {lots:.10g} at {price:.2f} is worth {lots * price:.2f}, below "
                f"the minimum {instrument.min_notional:g}"
            )
            return reject("min_notional", reason, min_notional=instrument.min_notional)
        for cut in adjustments:
            self.record_decision(
                timestamp, symbol, cut.rule, "resize", cut.reason, cut.from_qty, cut.to_qty
            )
        if not adjustments:
            reason = f"operator order for {requested:g}"
            self.record_decision(timestamp, symbol, "manual", "approve", reason, requested, lots)
        return ManualReview(lots, tuple(adjustments))

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
        self.journal.record_risk_decision(decision)
