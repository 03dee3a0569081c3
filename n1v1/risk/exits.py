"""Protective exit levels: stop-loss, ATR stop, take-profit, trailing stop (docs/execution.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from n1v1.config import RiskSettings


@dataclass(frozen=True, slots=True)
class ExitLevels:
    stop: float | None
    take_profit: float | None


def exit_levels(
    settings: RiskSettings, direction: int, entry_price: float, atr: float | None
) -> ExitLevels:
    """Stop and take-profit of a position entered at `entry_price` (direction +1 long, -1 short)."""
    stops = []
    if settings.stop_loss_pct is not None:
        stops.append(entry_price * (1.0 - direction * settings.stop_loss_pct))
    if settings.atr_stop_multiple is not None and atr is not None and math.isfinite(atr):
        stops.append(entry_price - direction * settings.atr_stop_multiple * atr)
    stop = tighter_stop(direction, *stops) if stops else None
    if stop is not None and stop <= 0.0:
        stop = None  # a long's stop below zero can never trigger
    take_profit = None
    if settings.take_profit_pct is not None:
        take_profit = entry_price * (1.0 + direction * settings.take_profit_pct)
    elif settings.take_profit_r is not None and stop is not None:
        take_profit = entry_price + direction * settings.take_profit_r * abs(entry_price - stop)
    if take_profit is not None and take_profit <= 0.0:
        take_profit = None
    return ExitLevels(stop, take_profit)


def trailing_stop(direction: int, extreme: float, trail_pct: float) -> float:
    """Stop trailing the best price seen (highest high for a long, lowest low for a short)."""
    return extreme * (1.0 - direction * trail_pct)


def tighter_stop(direction: int, *stops: float | None) -> float | None:
    """The stop closest to the price: the highest for a long, the lowest for a short."""
    valid = [s for s in stops if s is not None]
    if not valid:
        return None
    return max(valid) if direction > 0 else min(valid)
