"""Exchange trading rules: lot size, price tick and minimum notional."""

from __future__ import annotations

import math

from n1v1.config import InstrumentSpec

# Quantities like 0.3 / 0.1 land a hair under an integer in binary floating point; without this
# tolerance flooring to the lot would lose a whole lot now and then.
_FLOOR_EPS = 1e-9


def round_qty_down(qty: float, spec: InstrumentSpec) -> float:
    """Round down to the lot size so an order never exceeds what sizing allowed."""
    if spec.lot_size <= 0.0 or qty <= 0.0:
        return max(qty, 0.0)
    lots = math.floor(qty / spec.lot_size + _FLOOR_EPS)
    return lots * spec.lot_size


def round_price(price: float, spec: InstrumentSpec) -> float:
    if spec.tick_size <= 0.0:
        return price
    return round(price / spec.tick_size) * spec.tick_size


def below_min_notional(qty: float, price: float, spec: InstrumentSpec) -> bool:
    return qty * price < spec.min_notional
