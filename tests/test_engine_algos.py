"""Parent orders run by the engine, bar by bar (the bars are the clock): children placed like any
order, their fills counted, re-planned after a refusal, held while unknown, stopped by a cancel,
the kill switch or a pause, and strategies' entries and exits executed by an algorithm in a
backtest (n1v1/engine/algo_orders.py, docs/execution.md "Execution algorithms").

Every figure is worked out by hand: zero fees unless a test sets them, market orders fill at the
next bar's open, and most bars are flat (open = high = low = close).
"""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pandas as pd
import pytest
from builders import make_bars, settings

from n1v1.backtest.runner import run_backtest
from n1v1.config import AlgoSettings, Settings
from n1v1.data import load_dataset
from n1v1.domain import OrderPurpose, OrderStatus, Side, Symbol
from n1v1.engine.algo_orders import AlgoRequest, child_id_for
from n1v1.engine.engine import TradingEngine
from n1v1.engine.feeds import ReplayFeed
from n1v1.execution.algo_plan import PlanError
from n1v1.execution.algos import ParentStatus, parent_from_dict, parent_to_dict
from n1v1.execution.live_venue import EventKind, LiveVenue, VenueEvent
from n1v1.execution.profiles import dataset_profile
from n1v1.execution.shortfall import Shortfall, aggregate_shortfall, execution_rows
from n1v1.live.algo_commands import AlgoFieldError, algo_request
from n1v1.strategies.registry import create_strategy

Q = pd.Timedelta("15min")
LOT = {"BTC": {"lot_size": 0.001}}


def rising(n: int = 8, volume: float = 1000.0) -> pd.DataFrame:
    """Flat bars at 100, 101, 102, ... every 15 minutes."""
    return make_bars([(100 + i, 100 + i, 100 + i, 100 + i, volume) for i in range(n)], freq="15min")


class Desk:
    """One symbol's bars stepped one at a time, with an operator sending parents between bars."""

    def __init__(self, bars: pd.DataFrame, venue: Any = None, **sections: dict[str, Any]) -> None:
        sections.setdefault("execution", {"instruments": LOT})
        self.engine = TradingEngine(settings(**sections), venue=venue)
        self.steps = list(ReplayFeed({"BTC": bars}))
        self.done = 0

    def bar(self, n: int = 1) -> None:
        for ts, bars in self.steps[self.done : self.done + n]:
            self.engine.on_bar(ts, bars)
        self.done += n

    def parent(self, qty: float | str = "1", side: str = "buy", **kw: Any):
        ts, bars = self.steps[self.done - 1]
        request = AlgoRequest(
            "BTC", Side(side), qty, kw.pop("duration", 4 * Q), kw.pop("interval", Q), **kw
        )
        return self.engine.submit_algo_order(request, ts, bars[Symbol("BTC")][1])

    def children(self, parent) -> list[tuple[str, float, str]]:
        orders = {o.client_order_id: o for o in self.engine.journal.orders}
        return [(c, orders[c].qty, orders[c].status.value) for c in parent.children]


def test_a_twap_sends_a_quarter_each_slot_and_its_shortfall_is_the_hand_figure() -> None:
    desk = Desk(rising())
    desk.bar()  # bar 0 closes at 100: the arrival price
    parent = desk.parent("1")
    assert parent.arrival_price == 100.0
    desk.bar(6)
    # a child after bars 0, 1, 2, 3, each filled at the next bar's open: 101, 102, 103, 104
    assert [c for c, _, _ in desk.children(parent)] == [
        child_id_for(parent.parent_id, k) for k in range(4)
    ]
    assert [(q, s) for _, q, s in desk.children(parent)] == [(0.25, "filled")] * 4
    assert parent.status is ParentStatus.DONE and parent.filled == D("1.000")
    assert desk.engine.portfolio.position(Symbol("BTC")).qty == pytest.approx(1.0)
    assert parent.average_price == pytest.approx(102.5)
    s = parent.shortfall()
    # execution: (102.5 - 100) / 100 = 250 bps; no fee, nothing unfilled
    assert s.execution_bps == pytest.approx(250.0)
    assert s.fees_bps == 0.0 and s.opportunity_bps == 0.0 and s.total_bps == pytest.approx(250.0)
    # the market's VWAP over the bars it worked through (1..4, equal volume): 102.5
    assert parent.interval_vwap == pytest.approx(102.5) and s.vs_vwap_bps == pytest.approx(0.0)
    # as one market order: all of it at bar 1's open, 101: 100 bps
    assert parent.single_order_bps == pytest.approx(100.0)
    # children are the operator's orders: the manual rules and the journal as any other
    purposes = {
        o.purpose for o in desk.engine.journal.orders if o.client_order_id in parent.children
    }
    assert purposes == {OrderPurpose.MANUAL}


def test_fees_count_in_the_shortfall() -> None:
    desk = Desk(rising(), execution={"instruments": LOT, "taker_fee": 0.001})
    desk.bar()
    parent = desk.parent("1")
    desk.bar(6)
    # fees 0.1 % of 0.25 x (101 + 102 + 103 + 104) = 0.1025 over V = 100: 10.25 bps
    assert parent.shortfall().fees_bps == pytest.approx(10.25)
    assert parent.shortfall().total_bps == pytest.approx(260.25)
    # one order at 101 with its fee of 0.101 on V = 100: 100 + 10.1 bps
    assert parent.single_order_bps == pytest.approx(110.1)


def test_slices_below_the_minimum_notional_are_merged_never_dropped_or_sent_small() -> None:
    desk = Desk(
        rising(), execution={"instruments": {"BTC": {"lot_size": 0.001, "min_notional": 30}}}
    )
    desk.bar()
    parent = desk.parent("1")  # least tradable 0.3 at 100: quarters of 0.25 are too small
    desk.bar(6)
    sizes = [q for _, q, _ in desk.children(parent)]
    # slot 0: [0.25, 0.25, 0.25, 0.25] merged to [0, 0.5, 0, 0.5]: nothing now; slot 1: 1.000 over
    # three slots in lots: 0.334, 0.333, 0.333; each re-planned, each >= 0.3
    assert sizes == [0.334, 0.333, 0.333]
    assert parent.filled == D("1.000") and parent.status is ParentStatus.DONE


def test_the_participation_cap_binds_and_the_unfilled_rest_costs_its_opportunity() -> None:
    desk = Desk(rising(volume=10.0))
    desk.bar()
    parent = desk.parent("6", max_participation=0.1)  # at most 1 unit a child (10 % of 10)
    desk.bar(6)
    assert [q for _, q, _ in desk.children(parent)] == [1.0] * 4
    assert parent.status is ParentStatus.ENDED and parent.filled == D("4.000")
    s = parent.shortfall()
    # fills at 101..104 (avg 102.5): 4 x 2.5 / 600 = 166.67 bps; 2 unfilled, ended at the
    # first bar after its last slot (bar 4, close 104): 2 x 4 / 600 = 133.33 bps
    assert s.execution_bps == pytest.approx(4 * 2.5 / 600 * 1e4)
    assert parent.end_price == 104.0
    assert s.opportunity_bps == pytest.approx(2 * 4 / 600 * 1e4)


def test_a_flat_profile_vwap_sends_what_the_twap_sends() -> None:
    twap, vwap = Desk(rising()), Desk(rising())
    twap.bar(), vwap.bar()
    a = twap.parent("1")
    b = vwap.parent("1", algo="vwap", weights=(0.25, 0.25, 0.25, 0.25))
    twap.bar(6), vwap.bar(6)
    assert [q for _, q, _ in twap.children(a)] == [q for _, q, _ in vwap.children(b)]


def test_a_vwap_follows_its_profile() -> None:
    desk = Desk(rising())
    desk.bar()
    parent = desk.parent("1", algo="vwap", weights=(0.1, 0.2, 0.3, 0.4))
    desk.bar(6)
    # re-planned each slot: 1.000 x 0.1; then 0.900 x 0.2/0.9 = 0.200; 0.700 x 0.3/0.7; rest
    assert [q for _, q, _ in desk.children(parent)] == [0.1, 0.2, 0.3, 0.4]


def test_cancel_stops_the_parent_and_cancels_its_working_child() -> None:
    desk = Desk(rising())
    desk.bar()
    parent = desk.parent("1")  # its first child works until the next open
    ts = desk.steps[0][0]
    desk.engine.cancel_algo_order(parent.parent_id, ts, "operator")
    (child,) = desk.children(parent)
    assert child[2] == "cancelled" and parent.status is ParentStatus.CANCELLED
    desk.bar(6)
    assert len(parent.children) == 1 and desk.engine.portfolio.position(Symbol("BTC")).qty == 0
    s = parent.shortfall()
    assert s.executed == 0 and parent.end_price == 100.0 and s.total_bps == 0.0


def test_the_kill_switch_stops_every_parent() -> None:
    desk = Desk(rising())
    desk.bar(2)
    parent = desk.parent("1")
    desk.bar()  # the first child fills at 102
    ts, bars = desk.steps[desk.done - 1]
    desk.engine.kill_switch(ts, "test", {Symbol("BTC"): bars[Symbol("BTC")][1]})
    desk.bar(4)
    assert parent.status is ParentStatus.CANCELLED and parent.reason == "kill switch"
    assert parent.filled == D("0.250") and len(parent.children) == 2  # the second cancelled
    assert desk.engine.portfolio.position(Symbol("BTC")).qty == 0.0  # flattened


def test_a_pause_holds_the_slots_and_the_rest_spreads_over_the_time_left() -> None:
    desk = Desk(rising(10))
    desk.bar()
    parent = desk.parent("1")  # child of 0.25 at slot 0
    desk.engine.risk.paused_reason = "lunch"
    desk.bar(2)  # slots 1 and 2 pass paused
    desk.engine.risk.paused_reason = None
    desk.bar(4)
    # slot 3 (the last) takes the whole rest
    assert [q for _, q, _ in desk.children(parent)] == [0.25, 0.75]
    assert parent.status is ParentStatus.DONE


def test_a_parent_that_reduces_the_position_goes_on_while_paused() -> None:
    desk = Desk(rising(10))
    desk.bar()
    ts, bars = desk.steps[0]
    desk.engine.submit_manual_order("BTC", Side.BUY, 1.0, ts, bars[Symbol("BTC")][1].close)
    desk.bar()  # long 1 at 101
    parent = desk.parent("1", side="sell")
    desk.engine.risk.paused_reason = "lunch"
    desk.bar(5)
    assert [q for _, q, _ in desk.children(parent)] == [0.25] * 4
    assert parent.status is ParentStatus.DONE
    assert desk.engine.portfolio.position(Symbol("BTC")).qty == pytest.approx(0.0)


def test_a_child_refused_by_the_venue_is_re_planned_and_an_unknown_one_holds_its_quantity() -> None:
    venue = LiveVenue()
    desk = Desk(rising(), venue=venue)
    desk.bar()
    parent = desk.parent("1")
    first = child_id_for(parent.parent_id, 0)
    venue.take_outbox()
    at = desk.steps[0][0]
    venue.receive([VenueEvent(EventKind.REJECTED, first, at, reason="insufficient balance")])
    desk.engine.on_venue_events()
    desk.bar()  # slot 1: 1.000 open over three slots -> 0.334
    second = child_id_for(parent.parent_id, 1)
    assert venue.working_orders()[0].client_order_id == second
    assert venue.working_orders()[0].qty == 0.334
    venue.receive([VenueEvent(EventKind.UNKNOWN, second, at, reason="timeout")])
    desk.engine.on_venue_events()
    desk.bar()  # slot 2: the unknown 0.334 held; 0.666 over two slots -> 0.333
    third = child_id_for(parent.parent_id, 2)
    assert {o.client_order_id: o.qty for o in venue.working_orders()}[third] == 0.333
    # the unknown child is found filled after all
    venue.receive(
        [
            VenueEvent(EventKind.FILL, second, at, "x2", "t2", 0.334, 101.0, 0.0),
            VenueEvent(EventKind.FILL, third, at, "x3", "t3", 0.333, 102.0, 0.0),
        ]
    )
    desk.engine.on_venue_events()
    desk.bar()  # slot 3: the rest, 0.333
    fourth = child_id_for(parent.parent_id, 3)
    assert {o.client_order_id: o.qty for o in venue.working_orders()}[fourth] == 0.333
    venue.receive([VenueEvent(EventKind.FILL, fourth, at, "x4", "t4", 0.333, 103.0, 0.0)])
    desk.engine.on_venue_events()
    assert parent.status is ParentStatus.DONE and parent.filled == D("1.000")
    assert parent.average_price == pytest.approx((0.334 * 101 + 0.333 * 102 + 0.333 * 103) / 1.0)


def test_a_fee_paid_in_the_asset_bought_still_completes_the_parent() -> None:
    venue = LiveVenue()
    desk = Desk(rising(), venue=venue, execution={"instruments": LOT}, risk={})
    desk.bar()
    parent = desk.parent("1", duration=Q)  # one slot: one child of 1.000
    at = desk.steps[0][0]
    cid = child_id_for(parent.parent_id, 0)
    fill = VenueEvent(EventKind.FILL, cid, at, "x", "t", 1.0, 100.0, 0.1, base_fee=0.001)
    venue.receive([fill])
    desk.engine.on_venue_events()
    # the account holds 0.999, but the exchange executed the whole 1.000 the parent asked for
    assert desk.engine.portfolio.position(Symbol("BTC")).qty == pytest.approx(0.999)
    assert parent.status is ParentStatus.DONE and parent.filled == D("1.000")


def test_a_parent_round_trips_through_its_stored_form() -> None:
    desk = Desk(rising())
    desk.bar()
    parent = desk.parent("1", limit_price=150.0, max_participation=0.5)
    desk.bar(2)
    again = parent_from_dict(parent_to_dict(parent))
    assert parent_to_dict(again) == parent_to_dict(parent)
    assert again == parent


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("qty", float("nan"), "qty: must be finite"),
        ("qty", 0, "qty: must be > 0"),
        ("qty", -1, "qty: must be > 0"),
        ("qty", "1.0005", "qty: 1.0005 is not a whole number of lots of 0.001"),
        ("qty", "0.0001", "is not a whole number of lots"),
        ("duration", "0min", "duration: must be > 0"),
        ("duration", "-1h", "duration: must be > 0"),
        ("duration", "soon", "duration: not a duration"),
        ("interval", "2h", "duration: 0 days 01:00:00 is shorter than one interval"),
        ("limit_price", float("nan"), "limit_price: must be finite"),
        ("limit_price", -5.0, "limit_price: must be finite and > 0"),
        ("max_participation", 0.0, "max_participation: must be finite and > 0"),
        ("max_participation", 1.5, "max_participation: at most 1"),
        ("side", "hold", "side: 'buy' or 'sell'"),
        ("algo", "pov", "algo: one of twap, vwap"),
        ("colour", "red", "colour: unknown field"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(field: str, value: Any, message: str) -> None:
    desk = Desk(rising())
    desk.bar()
    payload = {"symbol": "BTC", "side": "buy", "qty": "1", "duration": "1h", "interval": "15min"}
    payload[field] = value
    with pytest.raises(PlanError, match=message.replace("(", r"\(")) as caught:
        ts, bars = desk.steps[0]
        desk.engine.submit_algo_order(algo_request(payload), ts, bars[Symbol("BTC")][1])
    if isinstance(caught.value, AlgoFieldError):
        assert caught.value.field == field or field == "interval"
    assert desk.engine.algos.parents == {}  # nothing kept, nothing sent
    assert desk.engine.journal.orders == []


def test_parents_add_up_weighted_by_paper_value() -> None:
    a = Shortfall(10.0, 101.0, 80.0, 20.0, 0.0, 100.0, 10.0)  # V = 1,000
    b = Shortfall(30.0, 99.0, 10.0, 10.0, 0.0, 20.0, -10.0)  # V = 3,000
    summary = aggregate_shortfall([(a, 1000.0, "done", 50.0), (b, 3000.0, "ended", None)])
    assert summary["parents"] == 2 and summary["by_status"] == {"done": 1, "ended": 1}
    # (100 x 1,000 + 20 x 3,000) / 4,000 = 40; (80 x 1,000 + 10 x 3,000) / 4,000 = 27.5
    assert summary["total_bps"] == pytest.approx(40.0)
    assert summary["execution_bps"] == pytest.approx(27.5)
    assert summary["fees_bps"] == pytest.approx(12.5)
    # by executed value: (10 x 1,010 - 10 x 2,970) / 3,980
    assert summary["vs_vwap_bps"] == pytest.approx((10 * 1010 - 10 * 2970) / 3980)
    assert summary["single_order_bps"] == pytest.approx(50.0)  # over the parents that have one
    rows = dict(execution_rows(summary))
    assert rows["implementation shortfall"] == "40.00 bps"
    assert rows["parent orders"] == "2 (1 done, 1 ended)"


# -- strategies executed by an algorithm ---------------------------------------------------------
def _cross_bars() -> pd.DataFrame:
    """A dip and a rise and a fall again: one sma_cross entry and its exit."""
    closes = (
        [100.0] * 30 + [100.0 + 2 * i for i in range(1, 31)] + [160.0 - 3 * i for i in range(30)]
    )
    return make_bars([(c, c + 1, c - 1, c) for c in closes], freq="15min")


def _backtest(algo: dict[str, Any] | None) -> Any:
    execution: dict[str, Any] = {"instruments": LOT, "taker_fee": 0.001}
    if algo is not None:
        execution["algo"] = algo
    config = settings(execution=execution, risk={"fraction": 0.5})
    strategy = create_strategy("sma_cross", {"fast": 5, "slow": 20})
    return run_backtest({"BTC": _cross_bars()}, strategy, config, engine="event")


def test_a_backtest_executes_entries_and_exits_by_twap_and_reports_the_shortfall() -> None:
    single = _backtest(None)
    sliced = _backtest({"name": "twap", "duration": "1h", "interval": "15min"})
    assert sliced.engine == "event"
    assert len(single.trades) == len(sliced.trades) >= 1
    orders = [o for o in sliced.journal.orders if o.status is OrderStatus.FILLED]
    entry_children = {o.client_order_id for o in orders if o.purpose is OrderPurpose.ENTRY}
    single_entries = {
        o.client_order_id
        for o in single.journal.orders
        if o.purpose is OrderPurpose.ENTRY and o.status is OrderStatus.FILLED
    }
    assert len(entry_children) == 4 * len(single_entries)  # each entry in four children
    # whole lots of 0.001 each, the four adding up to the single order's size
    sizes = [o.qty for o in orders if o.purpose is OrderPurpose.ENTRY]
    assert all(round(q / 0.001) * 0.001 == pytest.approx(q, abs=1e-12) for q in sizes)
    assert sum(sizes) == pytest.approx(single.trades[0].qty, abs=1e-9)
    execution = sliced.execution
    assert execution is not None and execution["parents"] >= 2
    assert execution["by_status"] == {"done": execution["parents"]}
    # rising into the entry, falling into the exit: slicing costs against the arrival price,
    # more than one market order at the next open would have
    assert execution["total_bps"] > execution["single_order_bps"] > 0
    assert single.execution is None
    # the report's figure is the parents' own, weighted by paper value
    engine_parents = sliced.execution["parents"]
    assert sliced.to_dict()["meta"]["execution"]["parents"] == engine_parents


def test_a_vwap_profile_must_come_from_before_the_run() -> None:
    with pytest.raises(PlanError, match=r"no bars before .*no lookahead"):
        config = settings(
            execution={
                "instruments": LOT,
                "algo": {
                    "name": "vwap",
                    "duration": "1h",
                    "interval": "15min",
                    "profile": "coinbase_BTC-USD_1m",
                },
            }
        )
        bars = make_bars(
            [(100, 100, 100, 100)] * 30, freq="15min", start=pd.Timestamp("2016-01-01")
        )
        run_backtest(bars, create_strategy("sma_cross", {"fast": 5, "slow": 20}), config)


def test_a_backtest_by_vwap_slices_by_the_profile_before_each_parent() -> None:
    """Hourly BTC/USDT of May 2018; the profile from the one-minute BTC/USD history before each
    parent's first bar (it ends in April): the children follow its hours, not equal shares."""
    bars = load_dataset("binance_BTC-USDT_1h")
    config = Settings.model_validate(
        {
            "execution": {
                "algo": {
                    "name": "vwap",
                    "duration": "3h",
                    "interval": "1h",
                    "profile": "coinbase_BTC-USD_1m",
                }
            }
        }
    )
    result = run_backtest(
        {"BTC/USDT": bars}, create_strategy("sma_cross", {"fast": 3, "slow": 8}), config
    )
    assert result.execution is not None and result.execution["parents"] >= 4
    orders = {o.client_order_id: o for o in result.journal.orders}
    entries = [o for o in orders.values() if o.purpose is OrderPurpose.ENTRY]
    first = entries[0]
    profile = dataset_profile("coinbase_BTC-USD_1m", first.created_at, pd.Timedelta("1h"))
    slots = [first.created_at + k * pd.Timedelta("1h") for k in range(3)]
    weights = [float(profile.iloc[t.hour]) for t in slots]
    sizes = [o.qty for o in entries[:3]]
    assert len({round(q, 5) for q in sizes}) > 1  # not a TWAP
    # the first child is its slot's share of the parent, to the lot (1e-5 for BTC/USDT)
    assert sizes[0] == pytest.approx(sum(sizes) * weights[0] / sum(weights), abs=2e-5)


def test_a_vwap_profile_must_name_a_bundled_dataset() -> None:
    with pytest.raises(ValueError, match="profile: no bundled dataset 'nope'"):
        AlgoSettings(name="vwap", duration="1h", interval="15min", profile="nope")
