"""Portfolio limits on new entries: open positions and exposure per symbol and in total."""

from __future__ import annotations

from dataclasses import dataclass

from n1v1.config import RiskSettings


@dataclass(frozen=True, slots=True)
class LimitCheck:
    qty: float
    rule: str = ""
    reason: str = ""
    limit: float | None = None  # the binding rule's configured value


def check_portfolio_limits(
    settings: RiskSettings,
    *,
    qty: float,
    price: float,
    equity: float,
    open_positions: int,
    symbol_exposure: float,
    total_exposure: float,
) -> LimitCheck:
    """Cut or reject an entry of `qty` at `price` against the configured limits.

    Exposures are absolute notional values (long and short both count). The first rule that binds is
    reported; a rule that leaves nothing to trade rejects the entry.
    """
    if settings.max_open_positions is not None and open_positions >= settings.max_open_positions:
        return LimitCheck(
            0.0,
            "max_open_positions",
            f"{open_positions} positions open (max {settings.max_open_positions})",
            settings.max_open_positions,
        )
    rule, reason, limit = "", "", None
    if settings.max_symbol_exposure is not None:
        room = settings.max_symbol_exposure * equity - symbol_exposure
        if qty * price > room:
            qty = max(room, 0.0) / price
            rule, limit = "max_symbol_exposure", settings.max_symbol_exposure
            reason = f"symbol exposure capped at {settings.max_symbol_exposure:g} of equity"
    if settings.max_total_exposure is not None:
        room = settings.max_total_exposure * equity - total_exposure
        if qty * price > room:
            qty = max(room, 0.0) / price
            rule, limit = "max_total_exposure", settings.max_total_exposure
            reason = f"total exposure capped at {settings.max_total_exposure:g} of equity"
    return LimitCheck(qty, rule, reason, limit)
