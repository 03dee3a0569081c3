"""Circuit breaker, daily-loss guard and kill switch: the rules that stop new risk being taken.

None of them ever blocks an exit: a halted engine may still close positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from n1v1.config import RiskSettings

# 1 - 9000/10000 is 0.09999999999999998 in binary floating point: a loss of exactly the
# limit must trip.
_LIMIT_EPS = 1e-12


@dataclass(slots=True)
class CircuitBreaker:
    """Trips on a drawdown from the equity peak or on a run of losing trades.

    With `cooldown_bars > 0` it re-arms that many bars later, with the peak and the loss count reset
    so it does not trip again at once on the same drawdown; with 0 it stays tripped until `reset()`.
    """

    settings: RiskSettings
    peak: float = 0.0
    consecutive_losses: int = 0
    tripped_at: int | None = None
    reason: str = ""

    def on_equity(self, bar_index: int, equity: float) -> str | None:
        """Update with a bar's closing equity; returns the reason when this bar trips the breaker"""
        if self.tripped_at is not None:
            cooldown = self.settings.cooldown_bars
            if cooldown and bar_index - self.tripped_at >= cooldown:
                self.reset(equity)
            else:
                return None
        self.peak = max(self.peak, equity)
        limit = self.settings.max_drawdown
        if limit is not None and self.peak > 0 and 1.0 - equity / self.peak >= limit - _LIMIT_EPS:
            return self._trip(
                bar_index,
                f"drawdown {1.0 - equity / self.peak:.2%} from peak {self.peak:.2f} "
                f"reached max_drawdown {limit:.2%}",
            )
        limit_losses = self.settings.max_consecutive_losses
        if limit_losses is not None and self.consecutive_losses >= limit_losses:
            return self._trip(
                bar_index,
                f"{self.consecutive_losses} consecutive losing trades (max {limit_losses})",
            )
        return None

    def on_trade_closed(self, pnl: float) -> None:
        self.consecutive_losses = self.consecutive_losses + 1 if pnl < 0 else 0

    @property
    def tripped(self) -> bool:
        return self.tripped_at is not None

    def reset(self, equity: float) -> None:
        self.tripped_at = None
        self.reason = ""
        self.peak = equity
        self.consecutive_losses = 0

    def _trip(self, bar_index: int, reason: str) -> str:
        self.tripped_at = bar_index
        self.reason = reason
        return reason


@dataclass(slots=True)
class DailyLossGuard:
    """Halts new entries for the rest of the UTC day once equity fell `max_daily_loss` below the
    equity at the start of that day (the previous day's last close)."""

    max_daily_loss: float | None
    day: object = None
    day_start_equity: float = 0.0
    last_equity: float = 0.0
    halted: bool = False

    def on_equity(
        self, timestamp: pd.Timestamp, equity: float, previous_equity: float
    ) -> str | None:
        day = timestamp.date()
        if day != self.day:
            self.day = day
            self.day_start_equity = previous_equity
            self.halted = False
        if self.max_daily_loss is None or self.halted or self.day_start_equity <= 0:
            return None
        loss = 1.0 - equity / self.day_start_equity
        if loss >= self.max_daily_loss - _LIMIT_EPS:
            self.halted = True
            return (
                f"daily loss {loss:.2%} from {self.day_start_equity:.2f} reached "
                f"max_daily_loss {self.max_daily_loss:.2%}"
            )
        return None


@dataclass(slots=True)
class KillSwitch:
    """Flatten everything and halt until a human resets it."""

    engaged: bool = False
    reason: str = ""

    def engage(self, reason: str) -> None:
        self.engaged = True
        self.reason = reason

    def reset(self) -> None:
        self.engaged = False
        self.reason = ""
