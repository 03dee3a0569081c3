"""Fees and slippage of the simulated venue (docs/execution.md, "Prices, slippage and fees")."""

from __future__ import annotations

import math
from dataclasses import dataclass

from n1v1.config import ExecutionSettings
from n1v1.domain import Liquidity, Side


@dataclass(frozen=True, slots=True)
class FeeModel:
    """Fees as a fraction of the fill's notional; makers add liquidity, takers remove it."""

    maker: float
    taker: float

    def fee(self, notional: float, liquidity: Liquidity) -> float:
        return notional * (self.maker if liquidity is Liquidity.MAKER else self.taker)


@dataclass(frozen=True, slots=True)
class SlippageModel:
    """Adverse price adjustment for orders that take liquidity (market and stop fills).

    `fixed_bps` always applies; with `impact_bps > 0` an order that is a larger share of the bar's
    volume pays `impact_bps * sqrt(qty / volume)` on top (square-root market impact).
    """

    fixed_bps: float = 0.0
    impact_bps: float = 0.0

    def adjust(self, price: float, side: Side, qty: float = 0.0, bar_volume: float = 0.0) -> float:
        bps = self.fixed_bps
        if self.impact_bps > 0.0 and bar_volume > 0.0 and qty > 0.0:
            bps += self.impact_bps * math.sqrt(qty / bar_volume)
        if bps == 0.0:
            return price
        factor = bps / 10_000.0
        return price * (1.0 + factor) if side is Side.BUY else price * (1.0 - factor)


def cost_models(settings: ExecutionSettings) -> tuple[FeeModel, SlippageModel]:
    fees = FeeModel(maker=settings.maker_fee, taker=settings.taker_fee)
    impact = settings.impact_bps if settings.slippage_model == "volume" else 0.0
    return fees, SlippageModel(fixed_bps=settings.slippage_bps, impact_bps=impact)
