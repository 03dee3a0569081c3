"""Execution-algorithm schedules and implementation shortfall, against hand-computed answers
(n1v1/execution/algo_plan.py, n1v1/execution/shortfall.py)."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from n1v1.execution.algo_plan import (
    PlanError,
    as_decimal,
    least_tradable,
    plan,
    profile_weights,
    slot_times,
    split,
    volume_profile,
)
from n1v1.execution.shortfall import implementation_shortfall

T0 = pd.Timestamp("2026-01-01 00:00", tz="UTC")
LOT = D("0.001")


def test_twap_splits_evenly_and_sums_exactly() -> None:
    assert split(D("1.000"), [1] * 4, LOT, LOT) == [D("0.250")] * 4
    # 0.1 + 0.2 is not 0.3 in floats; here the parts are exact
    parts = split(D("0.300"), [1] * 3, LOT, LOT)
    assert parts == [D("0.100")] * 3 and sum(parts) == D("0.300")


def test_the_lots_rounding_leaves_go_to_the_slots_that_lost_most_then_the_earliest() -> None:
    # 10 lots over 3 slots: 3.33 each, floored to 3; the one lot left goes to the first
    assert split(D("0.010"), [1, 1, 1], LOT, LOT) == [D("0.004"), D("0.003"), D("0.003")]
    # weights 1:2:2 of 10 lots: 2, 4, 4 exactly
    assert split(D("0.010"), [1, 2, 2], LOT, LOT) == [D("0.002"), D("0.004"), D("0.004")]
    # 7 lots at 1:1:1:1 -> 1.75 each: floors 1,1,1,1, the 3 lots left to the first three
    assert split(D("0.007"), [1] * 4, LOT, LOT) == [D("0.002")] * 3 + [D("0.001")]


def test_slices_below_the_minimum_merge_into_the_next_and_the_last_into_the_one_before() -> None:
    # 10 lots over 4 slots: 3, 3, 2, 2 lots; the market takes 4 lots at least
    assert split(D("0.010"), [1] * 4, LOT, D("0.004")) == [
        D("0"),
        D("0.006"),  # 0.003 + 0.003
        D("0"),
        D("0.004"),  # 0.002 + 0.002
    ]
    # the last slot's 2 lots are below 4: they join the slot before
    assert split(D("0.007"), [5, 2], LOT, D("0.004")) == [D("0.007"), D("0")]
    slices = plan(
        D("0.010"),
        slot_times(T0, pd.Timedelta("1h"), pd.Timedelta("15min")),
        [1] * 4,
        LOT,
        D("0.004"),
    )
    assert [(s.seq, s.due, s.qty) for s in slices] == [
        (0, T0 + pd.Timedelta("15min"), D("0.006")),
        (1, T0 + pd.Timedelta("45min"), D("0.004")),
    ]


def test_the_least_tradable_slice_counts_the_minimum_notional_at_the_price() -> None:
    # Binance BTC/USDT: step 0.00001, minimum 5 USDT; at 30,000: 5 / 30,000 = 0.000166.. -> 0.00017
    assert least_tradable(D("0.00001"), D("0.00001"), D("5"), D("30000")) == D("0.00017")
    assert least_tradable(LOT, D("0.0025"), D("0"), D("100")) == D("0.003")  # rounded up to lots


def test_what_cannot_be_planned_is_refused_naming_the_field() -> None:
    with pytest.raises(PlanError, match=r"qty: 0.0105 is not a whole number of lots of 0.001"):
        split(D("0.0105"), [1, 1], LOT, LOT)
    with pytest.raises(PlanError, match=r"qty: 0.003 is below the least the market trades"):
        split(D("0.003"), [1, 1], LOT, D("0.004"))
    with pytest.raises(PlanError, match="weights: all zero"):
        split(D("0.010"), [0, 0], LOT, LOT)
    with pytest.raises(PlanError, match=r"duration: .* shorter than one interval"):
        slot_times(T0, pd.Timedelta("5min"), pd.Timedelta("15min"))
    with pytest.raises(PlanError, match="interval: must be > 0"):
        slot_times(T0, pd.Timedelta("1h"), pd.Timedelta(0))
    for bad, message in (
        (float("nan"), "qty: must be finite"),
        (float("inf"), "qty: must be finite"),
        (0.0, r"qty: must be > 0"),
        (-1.0, r"qty: must be > 0"),
        ("abc", "qty: must be a number"),
        (True, "qty: must be a number"),
    ):
        with pytest.raises(PlanError, match=message):
            as_decimal("qty", bad)
    assert as_decimal("qty", 0.1) == D("0.1")  # a float through its shortest form


def _hourly(days: list[list[float]]) -> pd.DataFrame:
    volume = [v for day in days for v in day]
    index = pd.date_range(T0, periods=len(volume), freq="12h")
    return pd.DataFrame({"volume": volume}, index=index)


def test_vwap_weights_follow_the_volume_profile_by_time_of_day() -> None:
    # two days of 12-hour bars: mornings 30 + 50 = 80, afternoons 10 + 10 = 20 -> 0.8 / 0.2
    profile = volume_profile(_hourly([[30, 10], [50, 10]]), pd.Timedelta("12h"))
    assert profile.tolist() == [0.8, 0.2]
    due = [T0 + pd.Timedelta("2D6h"), T0 + pd.Timedelta("2D18h")]
    assert profile_weights(profile, due) == [0.8, 0.2]
    assert split(D("0.010"), profile_weights(profile, due), LOT, LOT) == [D("0.008"), D("0.002")]


def test_vwap_on_a_flat_profile_is_the_twap() -> None:
    bars = pd.DataFrame(
        {"volume": np.full(96 * 3, 7.0)},
        index=pd.date_range(T0, periods=96 * 3, freq="15min"),
    )
    profile = volume_profile(bars, pd.Timedelta("15min"))
    due = slot_times(T0 + pd.Timedelta("3D9h"), pd.Timedelta("2h"), pd.Timedelta("15min"))
    twap = plan(D("1.234"), due, [1.0] * len(due), LOT, D("0.01"))
    vwap = plan(D("1.234"), due, profile_weights(profile, due), LOT, D("0.01"))
    assert vwap == twap and sum(s.qty for s in twap) == D("1.234")


def test_a_profile_needs_volume_and_a_bucket_that_divides_the_day() -> None:
    with pytest.raises(PlanError, match="no volume"):
        volume_profile(_hourly([[0, 0]]), pd.Timedelta("12h"))
    with pytest.raises(PlanError, match="bucket: must divide a day evenly"):
        volume_profile(_hourly([[1, 1]]), pd.Timedelta("7h"))


def test_shortfall_of_a_partly_filled_buy_by_hand() -> None:
    """Buy 10 at arrival 100: 4 at 101 (fee 0.404) and 4 at 102 (fee 0.408), 2 never filled, the
    price 103 at the end; the interval's VWAP 101. Paper value 10 x 100 = 1,000:
    execution (404 + 408 - 8 x 100) / 1,000 = 120 bps; fees 0.812 / 1,000 = 8.12 bps;
    opportunity 2 x (103 - 100) / 1,000 = 60 bps; total 188.12 bps; average 101.5, which is
    (101.5 - 101) / 101 = 49.50 bps worse than the VWAP."""
    s = implementation_shortfall(1, 10, 100.0, [(4, 101.0, 0.404), (4, 102.0, 0.408)], 103.0, 101.0)
    assert s.executed == 8 and s.average_price == 101.5
    assert s.execution_bps == pytest.approx(120.0)
    assert s.fees_bps == pytest.approx(8.12)
    assert s.opportunity_bps == pytest.approx(60.0)
    assert s.total_bps == pytest.approx(188.12)
    assert s.vs_vwap_bps == pytest.approx(49.504950495)


def test_shortfall_of_a_filled_sell_by_hand() -> None:
    """Sell 5 at arrival 200, all at 198 (fee 0.99): -1 x (990 - 1,000) / 1,000 = 100 bps,
    fees 9.9 bps, nothing unfilled whatever the end price: 109.9 bps."""
    s = implementation_shortfall(-1, 5, 200.0, [(5, 198.0, 0.99)], 150.0)
    assert (s.execution_bps, s.opportunity_bps) == (pytest.approx(100.0), 0.0)
    assert s.total_bps == pytest.approx(109.9) and s.vs_vwap_bps is None


def test_shortfall_refuses_what_is_not_a_parent() -> None:
    with pytest.raises(ValueError, match="side"):
        implementation_shortfall(0, 1, 100.0, [], 100.0)
    with pytest.raises(ValueError, match="arrival price: must be finite and > 0"):
        implementation_shortfall(1, 1, float("nan"), [], 100.0)
    with pytest.raises(ValueError, match=r"fills: 2\.0 executed of a parent of 1"):
        implementation_shortfall(1, 1, 100.0, [(2.0, 100.0, 0.0)], 100.0)
    unfilled = implementation_shortfall(1, 1, 100.0, [], 90.0)
    assert unfilled.average_price is None and unfilled.total_bps == pytest.approx(-1000.0)


@given(
    lots=st.integers(min_value=1, max_value=100_000),
    weights=st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=60),
    least_lots=st.integers(min_value=1, max_value=50),
)
@settings(max_examples=300, deadline=None)
def test_every_plan_sums_exactly_and_every_slice_is_tradable(
    lots: int, weights: list[float], least_lots: int
) -> None:
    total, least = LOT * lots, LOT * least_lots
    if total < least or sum(weights) == 0:
        with pytest.raises(PlanError):
            split(total, weights, LOT, least)
        return
    parts = split(total, weights, LOT, least)
    assert len(parts) == len(weights) and sum(parts) == total
    for part in parts:
        assert part == 0 or part >= least
        assert part % LOT == 0
