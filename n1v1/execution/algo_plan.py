"""Schedules of execution algorithms: how a parent order's quantity is cut into child orders.

Pure arithmetic, no clock and no venue: the engine asks for a plan when a parent order is
accepted, and again over the time left when a child is refused or after a restart (re-planning
is the same split of what is left over the slots left). docs/execution.md ("Execution
algorithms") states the rules; in short:

- **Exact.** Quantities are counted in whole lots (`Decimal`, never float): the slices always sum
  to the parent's quantity, which must itself be a whole number of lots.
- **Proportional.** TWAP gives every slot the same weight; VWAP the weight of the slot's time of
  day in a volume profile (`volume_profile`). Each slot gets its share rounded down to the lot,
  and the lots left over go one each to the slots whose share lost the most to rounding (largest
  remainder; ties to the earlier slot), so a flat profile gives exactly the TWAP.
- **Tradable.** A slice below what the market trades (`least`: the minimum quantity, or the
  minimum notional at the reference price, rounded up to the lot) is merged into the next slice
  (the last one into the one before it): never dropped, never sent invalid. A parent smaller than
  `least` is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

import pandas as pd


class PlanError(ValueError):
    """A parent order that cannot be planned; the message names the field."""


@dataclass(frozen=True, slots=True)
class Slice:
    """One child order of the plan: its number in the parent, when it is due, how much."""

    seq: int
    due: pd.Timestamp
    qty: Decimal


def as_decimal(name: str, value: float | str | Decimal, *, positive: bool = True) -> Decimal:
    """`value` as an exact decimal (a float through its shortest repr: 0.1 is 0.1), or PlanError
    naming `name` when it is not a finite number (> 0 when `positive`, else >= 0)."""
    if isinstance(value, bool):
        raise PlanError(f"{name}: must be a number, got {value!r}")
    try:
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise PlanError(f"{name}: must be a number, got {value!r}") from None
    if not exact.is_finite():
        raise PlanError(f"{name}: must be finite, got {value!r}")
    if exact < 0 or (positive and exact == 0):
        raise PlanError(f"{name}: must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return exact


def least_tradable(
    lot: Decimal, min_qty: Decimal, min_notional: Decimal, price: Decimal
) -> Decimal:
    """The smallest slice the market takes: the larger of one lot, the minimum quantity and the
    minimum notional at `price`, rounded up to the lot."""
    least = max(lot, min_qty, min_notional / price if min_notional > 0 else Decimal(0))
    return (least / lot).to_integral_value(rounding=ROUND_CEILING) * lot


def split(total: Decimal, weights: Sequence[float], lot: Decimal, least: Decimal) -> list[Decimal]:
    """`total` cut in proportion to `weights` (one per slot, >= 0, not all zero) in whole lots,
    slices below `least` merged into a neighbour. Zero slices are kept (as 0) so the result lines
    up with the slots; their sum is `total` exactly."""
    if lot <= 0:
        raise PlanError(f"lot size: must be > 0, got {lot}")
    lots = total / lot
    if lots != lots.to_integral_value():
        raise PlanError(f"qty: {total} is not a whole number of lots of {lot}")
    if total < least:
        raise PlanError(f"qty: {total} is below the least the market trades ({least})")
    if not weights:
        raise PlanError("slots: none to spread the quantity over")
    exact_weights = [as_decimal("weight", float(w), positive=False) for w in weights]
    whole = sum(exact_weights)
    if whole == 0:
        raise PlanError("weights: all zero (no volume in the profile for these slots)")
    n_lots = int(lots)
    shares = [n_lots * w / whole for w in exact_weights]
    counts = [int(s.to_integral_value(rounding=ROUND_FLOOR)) for s in shares]
    left = n_lots - sum(counts)
    by_loss = sorted(range(len(shares)), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in by_loss[:left]:
        counts[i] += 1
    qty = [lot * c for c in counts]
    return _merge_small(qty, least)


def _merge_small(qty: list[Decimal], least: Decimal) -> list[Decimal]:
    """Move every slice below `least` (and above 0) into the next non-zero slice; the last into
    the one before it. Repeats until every slice is 0 or tradable (the total is, so it ends)."""
    out = list(qty)
    while True:
        small = [i for i, q in enumerate(out) if 0 < q < least]
        if not small:
            return out
        i = small[0]
        later = [j for j in range(i + 1, len(out)) if out[j] > 0]
        earlier = [j for j in range(i) if out[j] > 0]
        into = later[0] if later else earlier[-1]
        out[into] += out[i]
        out[i] = Decimal(0)


def parse_span(name: str, value: object) -> pd.Timedelta:
    """A duration such as "30min", "4h" or "1d" (pandas' spelling), or PlanError naming `name`
    (the settings' `execution.algo` and an API parent alike)."""
    if not isinstance(value, str) or not value.strip():
        raise PlanError(f"{name}: a duration such as '15min', '4h' or '1d', got {value!r}")
    try:
        span = pd.Timedelta(value)
    except (ValueError, TypeError):
        raise PlanError(f"{name}: not a duration: {value!r} (e.g. '15min', '4h', '1d')") from None
    if span is pd.NaT or span <= pd.Timedelta(0):
        raise PlanError(f"{name}: must be > 0, got {value!r}")
    return span


def slot_times(start: pd.Timestamp, duration: pd.Timedelta, interval: pd.Timedelta) -> list:
    """The due time of each slot: start, start + interval, ... before start + duration."""
    if interval <= pd.Timedelta(0):
        raise PlanError(f"interval: must be > 0, got {interval}")
    if duration < interval:
        raise PlanError(f"duration: {duration} is shorter than one interval ({interval})")
    n = int(duration / interval)
    return [start + k * interval for k in range(n)]


def plan(
    total: Decimal,
    due: Sequence[pd.Timestamp],
    weights: Sequence[float],
    lot: Decimal,
    least: Decimal,
    first_seq: int = 0,
) -> list[Slice]:
    """The slices of `total` over the slots `due` (weights as `split`), numbered from
    `first_seq`; slots left empty by rounding or merging send nothing."""
    if len(due) != len(weights):
        raise PlanError(f"weights: {len(weights)} for {len(due)} slots")
    qty = split(total, weights, lot, least)
    out, seq = [], first_seq
    for at, q in zip(due, qty, strict=True):
        if q > 0:
            out.append(Slice(seq, at, q))
            seq += 1
    return out


def volume_profile(bars: pd.DataFrame, bucket: pd.Timedelta) -> pd.Series:
    """Each time-of-day bucket's share of the day's volume, averaged over the days of `bars`
    (a DatetimeIndex and a `volume` column): the weights of a VWAP. Buckets with no bar in the
    history get 0."""
    if "volume" not in bars.columns:
        raise PlanError("volume profile: the bars have no volume column")
    if bucket <= pd.Timedelta(0) or pd.Timedelta(days=1) % bucket != pd.Timedelta(0):
        raise PlanError(f"bucket: must divide a day evenly, got {bucket}")
    volume = bars["volume"].astype(float)
    if not len(volume) or not math.isfinite(volume.sum()) or volume.sum() <= 0:
        raise PlanError("volume profile: the history has no volume")
    index = pd.DatetimeIndex(bars.index)
    of_day = (index - index.normalize()) // bucket
    per_bucket = volume.groupby(of_day).sum()
    buckets = int(pd.Timedelta(days=1) / bucket)
    profile = per_bucket.reindex(range(buckets), fill_value=0.0)
    return profile / profile.sum()


def profile_weights(profile: pd.Series, due: Sequence[pd.Timestamp]) -> list[float]:
    """The weight of each slot: its time of day's share in `profile` (from `volume_profile`)."""
    buckets = len(profile)
    bucket = pd.Timedelta(days=1) / buckets
    return [float(profile.iloc[int((t - t.normalize()) // bucket)]) for t in pd.DatetimeIndex(due)]
