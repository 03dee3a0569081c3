"""Position sizing: how much to buy or sell when a strategy asks for a position.

All methods size from the signal bar's close and the equity at that close (see "Sizing" in
docs/execution.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from n1v1.config import RiskSettings
from n1v1.domain import Trade


@dataclass(frozen=True, slots=True)
class SizeResult:
    qty: float
    method: str
    detail: str


def fraction_qty(fraction: float, equity: float, price: float, cost_rate: float) -> float:
    """Quantity worth `fraction` of equity, leaving room for the entry's fee and slippage."""
    if equity <= 0.0 or price <= 0.0:
        return 0.0
    return fraction * equity / (price * (1.0 + cost_rate))


def kelly_fraction(trades: Sequence[Trade], settings: RiskSettings) -> float | None:
    """Capped fractional Kelly from recent closed trades; None while there are too few of them.

    f* = p − (1 − p) / b with p the win rate and b the average win over the average loss; we bet
    `kelly_fraction × f*`, never below 0 and never above `kelly_cap`.
    """
    recent = [t for t in trades if t.exit_time is not None][-settings.kelly_lookback :]
    if len(recent) < settings.kelly_min_trades:
        return None
    wins = [t.pnl for t in recent if t.pnl > 0]
    losses = [-t.pnl for t in recent if t.pnl < 0]
    if not losses:
        return settings.kelly_cap
    if not wins:
        return 0.0
    p = len(wins) / len(recent)
    b = (sum(wins) / len(wins)) / (sum(losses) / len(losses))
    f_star = p - (1.0 - p) / b
    return min(max(settings.kelly_fraction * f_star, 0.0), settings.kelly_cap)


def size_entry(
    settings: RiskSettings,
    *,
    equity: float,
    price: float,
    cost_rate: float,
    atr: float | None,
    closed_trades: Sequence[Trade] = (),
) -> SizeResult:
    """Quantity for a new position, before lot rounding and portfolio limits.

    `cost_rate` is the taker fee plus fixed slippage as a fraction, so an all-in
    entry stays payable.
    """
    if settings.sizing == "fixed":
        assert settings.qty is not None  # enforced by RiskSettings validation
        return SizeResult(settings.qty, "fixed", f"fixed qty {settings.qty:g}")
    cap = fraction_qty(settings.fraction, equity, price, cost_rate)
    if settings.sizing == "fraction":
        return SizeResult(cap, "fraction", f"{settings.fraction:g} of equity {equity:.2f}")
    if settings.sizing == "atr_risk":
        if atr is None or not math.isfinite(atr) or atr <= 0.0:
            return SizeResult(0.0, "atr_risk", "ATR not available yet (warm-up)")
        qty = settings.risk_per_trade * equity / (settings.atr_multiple * atr)
        detail = f"risk {settings.risk_per_trade:g} of equity over {settings.atr_multiple:g} ATR"
        if qty > cap:
            return SizeResult(
                cap, "atr_risk", detail + f", capped at fraction {settings.fraction:g}"
            )
        return SizeResult(qty, "atr_risk", detail)
    f = kelly_fraction(closed_trades, settings)
    if f is None:
        return SizeResult(cap, "kelly", "too few trades for Kelly; using fraction")
    qty = fraction_qty(f, equity, price, cost_rate)
    return SizeResult(qty, "kelly", f"Kelly fraction {f:.4f}")
