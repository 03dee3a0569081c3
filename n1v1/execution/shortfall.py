"""Implementation shortfall: what executing a parent order cost against its arrival price.

The one home of the formula (docs/execution.md, "Implementation shortfall"). For a parent of
quantity Q on side s (+1 buy, -1 sell), accepted when the price was A (the arrival price: the
mid, or the last close when there is no quote), with fills (q_i, p_i, fee_i) and the price E
when it ended:

    executed    X = sum q_i,   average P = sum q_i p_i / X
    paper value V = Q x A                      (what trading all of Q at arrival would move)
    execution   = s x X x (P - A) / V          (the price moved against the fills)
    fees        = sum fee_i / V
    opportunity = s x (Q - X) x (E - A) / V    (the part never filled, marked at the end)
    shortfall   = execution + fees + opportunity

each in basis points (x 10,000): positive is a cost. The three parts add up to the total, and
for a parent filled in full the opportunity is 0 and the execution part is s x (P - A) / A.
`vs_vwap_bps` compares the average fill with the interval's volume-weighted average price W:
s x (P - W) / W, positive when the fills were worse than the market's average.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

BPS = 10_000.0


@dataclass(frozen=True, slots=True)
class Shortfall:
    executed: float
    average_price: float | None  # None: nothing filled
    execution_bps: float
    fees_bps: float
    opportunity_bps: float
    total_bps: float
    vs_vwap_bps: float | None  # None: no interval VWAP given, or nothing filled


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    return float(value)


def implementation_shortfall(
    side: int,
    qty: float,
    arrival: float,
    fills: Iterable[tuple[float, float, float]],
    end_price: float,
    interval_vwap: float | None = None,
) -> Shortfall:
    """The shortfall of a parent (module docstring); `fills` are (qty, price, fee in the account
    currency) and must not add up to more than `qty`."""
    if side not in (1, -1):
        raise ValueError(f"side: +1 (buy) or -1 (sell), got {side!r}")
    qty = _positive("qty", qty)
    arrival = _positive("arrival price", arrival)
    end_price = _positive("end price", end_price)
    executed = value = fees = 0.0
    for q, p, fee in fills:
        _positive("fill qty", q)
        _positive("fill price", p)
        if not math.isfinite(fee):
            raise ValueError(f"fill fee: must be finite, got {fee!r}")
        executed += q
        value += q * p
        fees += fee
    if executed > qty * (1 + 1e-12):
        raise ValueError(f"fills: {executed} executed of a parent of {qty}")
    paper = qty * arrival
    average = value / executed if executed > 0 else None
    execution = side * (value - executed * arrival) / paper * BPS
    fee_part = fees / paper * BPS
    unfilled = max(qty - executed, 0.0)
    opportunity = side * unfilled * (end_price - arrival) / paper * BPS
    vs_vwap = None
    if interval_vwap is not None and average is not None:
        vwap = _positive("interval vwap", interval_vwap)
        vs_vwap = side * (average - vwap) / vwap * BPS
    return Shortfall(
        executed=executed,
        average_price=average,
        execution_bps=execution,
        fees_bps=fee_part,
        opportunity_bps=opportunity,
        total_bps=execution + fee_part + opportunity,
        vs_vwap_bps=vs_vwap,
    )


def aggregate_shortfall(
    parents: Iterable[tuple[Shortfall, float, str, float | None]],
) -> dict[str, Any]:
    """Parents' shortfalls added up, each weighted by its paper value V (so the total is what
    the whole of it cost against the arrival prices: Σ total_i × V_i / Σ V_i); `parents` are
    (shortfall, paper value, status, the shortfall as one market order or None). The VWAP
    comparison is weighted by each executed value; the one-order figure is over the parents
    that have one."""
    count: dict[str, int] = {}
    paper = executed_value = single_paper = single = 0.0
    parts = {"execution_bps": 0.0, "fees_bps": 0.0, "opportunity_bps": 0.0, "total_bps": 0.0}
    vs_vwap = 0.0
    for shortfall, value, status, as_one_order in parents:
        count[status] = count.get(status, 0) + 1
        paper += value
        for name in parts:
            parts[name] += getattr(shortfall, name) * value
        if as_one_order is not None:
            single += as_one_order * value
            single_paper += value
        if shortfall.vs_vwap_bps is not None and shortfall.average_price is not None:
            weight = shortfall.executed * shortfall.average_price
            vs_vwap += shortfall.vs_vwap_bps * weight
            executed_value += weight
    return {
        "parents": sum(count.values()),
        "by_status": count,
        **{name: (total / paper if paper > 0 else None) for name, total in parts.items()},
        "vs_vwap_bps": vs_vwap / executed_value if executed_value > 0 else None,
        "single_order_bps": single / single_paper if single_paper > 0 else None,
    }


def execution_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """An `aggregate_shortfall` summary (a backtest's `execution`) as (label, value) rows, the
    same for the CLI and the HTML report."""

    def bps(value: float | None) -> str:
        return "-" if value is None else f"{value:,.2f} bps"

    algo = summary.get("algo") or {}
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(summary["by_status"].items()))
    how = algo.get("name", "").upper()
    if algo:
        how += f" over {algo['duration']}, a child every {algo['interval']}"
    rows = [
        ("parent orders", f"{summary['parents']} {how} ({statuses})".replace("  ", " ")),
        ("implementation shortfall", bps(summary["total_bps"])),
        ("  price moved against the fills", bps(summary["execution_bps"])),
        ("  fees", bps(summary["fees_bps"])),
        ("  unfilled, marked at the end", bps(summary["opportunity_bps"])),
        ("as one market order at the next open", bps(summary.get("single_order_bps"))),
        ("fills against the interval's VWAP", bps(summary["vs_vwap_bps"])),
    ]
    return rows
