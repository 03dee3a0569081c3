"""A parent order driven bar by bar with an injected clock (the bars' times): what it sends, how
it re-plans, when it ends (n1v1/execution/algos.py)."""

from __future__ import annotations

from decimal import Decimal as D

import pandas as pd
import pytest

from n1v1.domain import Bar, Side
from n1v1.execution.algo_plan import PlanError
from n1v1.execution.algos import ParentOrder, ParentStatus

T0 = pd.Timestamp("2026-01-01 00:00", tz="UTC")
LOT = D("0.001")
HOUR, QUARTER = pd.Timedelta("1h"), pd.Timedelta("15min")


def bar(minute: int, close: float = 100.0, volume: float = 1_000.0) -> Bar:
    return Bar(T0 + pd.Timedelta(minutes=minute), close, close, close, close, volume)


def parent(qty: str = "1.000", side: Side = Side.BUY, **kw) -> ParentOrder:
    return ParentOrder.twap("p1", "BTC/USDT", side, qty, T0, HOUR, QUARTER, LOT, LOT, 100.0, **kw)


def drive(p: ParentOrder, minutes: list[int], fill: bool = True, **bar_kw) -> list[D]:
    """Hand the parent a bar at each minute; each child sent fills at once at the close."""
    sent = []
    for m in minutes:
        b = bar(m, **bar_kw)
        child = p.on_bar(b)
        if child:
            cid = f"c{len(p.children)}"
            p.sent(cid, child)
            sent.append(child)
            if fill:
                p.on_fill(cid, float(child), b.close, 0.0)
                p.on_child_closed(cid)
    return sent


def test_a_twap_sends_one_slice_per_slot_and_the_slices_sum_to_the_parent() -> None:
    p = parent()
    assert drive(p, list(range(0, 65, 5))) == [D("0.250")] * 4  # at 0, 15, 30 and 45
    assert p.status is ParentStatus.DONE and p.filled == D("1.000")
    assert p.children == ["c0", "c1", "c2", "c3"]


def test_a_refused_child_is_re_planned_over_the_slots_left() -> None:
    p = parent()
    assert drive(p, [0]) == [D("0.250")]
    child = p.on_bar(bar(15))
    p.sent("refused", child)
    p.on_child_closed("refused")  # refused by the venue: nothing filled
    # 0.750 left over the slots at 30 and 45: 0.375 each
    assert drive(p, [30, 45, 50]) == [D("0.375"), D("0.375")]
    assert p.filled == D("1.000") and p.status is ParentStatus.DONE


def test_slots_missed_while_down_are_spread_over_the_time_left_not_sent_at_once() -> None:
    p = parent()
    drive(p, [0])
    # down from 00:05 to 00:40: the slots at 15 and 30 passed; 0.750 goes over 30 (now) and 45
    assert drive(p, [40, 45, 50]) == [D("0.375"), D("0.375")]
    assert p.filled == D("1.000")


def test_an_unknown_child_holds_its_quantity_until_the_venue_answers() -> None:
    p = parent()
    first = p.on_bar(bar(0))
    p.sent("unknown", first)  # sent, no answer yet
    assert p.on_bar(bar(15)) == D("0.250")  # 0.750 over 3 slots: the unknown 0.250 held back
    p.sent("c1", D("0.250"))
    p.on_child_closed("unknown")  # proven never to have arrived: free again
    p.on_fill("c1", 0.25, 100.0, 0.0)
    p.on_child_closed("c1")
    assert p.on_bar(bar(30)) == D("0.375")  # 0.750 over 30 and 45


def test_the_participation_cap_binds_and_the_rest_is_unfilled_at_the_end() -> None:
    """At most 10 % of each bar's volume of 2.0: 0.2 a slice, 0.8 in all; 0.2 never traded."""
    p = parent(max_participation=0.1)
    assert drive(p, list(range(0, 65, 5)), volume=2.0) == [D("0.200")] * 4
    assert p.status is ParentStatus.ENDED and p.filled == D("0.800")
    s = p.shortfall(price=110.0)  # filled at arrival, the unfilled 0.2 marked at 110
    assert s.execution_bps == 0.0 and s.opportunity_bps == pytest.approx(200.0)  # 0.2 x 10 / 100


def test_a_limit_price_holds_slices_while_the_close_is_beyond_it() -> None:
    p = parent(limit_price=100.0)
    assert drive(p, [0], close=101.0) == []  # a buy above its limit waits
    # 1,000 lots over the slots at 15, 30 and 45: 333 each, the lot left to the first
    assert drive(p, [15], close=99.0) == [D("0.334")]
    assert drive(p, [30, 45], close=99.0) == [D("0.333"), D("0.333")]
    assert p.filled == D("1.000")


def test_cancel_returns_the_children_in_flight_and_stops_the_parent() -> None:
    p = parent()
    p.sent("c0", p.on_bar(bar(0)))
    assert p.cancel("operator", 100.0) == ["c0"]
    assert p.status is ParentStatus.CANCELLED and p.on_bar(bar(15)) == D(0)


def test_a_vwap_sends_by_the_profile() -> None:
    p = parent(weights=[0.4, 0.3, 0.2, 0.1])
    assert drive(p, [0, 15, 30, 45]) == [D("0.400"), D("0.300"), D("0.200"), D("0.100")]


def test_a_sell_reports_its_shortfall() -> None:
    p = parent(side=Side.SELL)
    for m, close in ((0, 99.0), (15, 98.0), (30, 97.0), (45, 96.0)):
        drive(p, [m], close=close)
    # average 97.5 sold against arrival 100: 250 bps
    assert p.shortfall().execution_bps == pytest.approx(250.0)


def test_what_cannot_run_is_refused_when_accepted_naming_the_field() -> None:
    with pytest.raises(PlanError, match="qty: must be finite"):
        parent(qty="NaN")
    with pytest.raises(PlanError, match="qty: must be > 0"):
        parent(qty="-1")
    with pytest.raises(PlanError, match="max_participation: at most 1"):
        parent(max_participation=1.5)
    with pytest.raises(PlanError, match="limit_price: must be > 0"):
        parent(limit_price=0.0)
    with pytest.raises(PlanError, match="weights: 2 for 4 slots"):
        parent(weights=[1.0, 1.0])
    with pytest.raises(PlanError, match="interval: must be > 0"):
        ParentOrder.twap("p", "BTC/USDT", Side.BUY, "1", T0, HOUR, pd.Timedelta(0), LOT, LOT, 100.0)
