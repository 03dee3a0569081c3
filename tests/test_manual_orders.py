"""Operator (manual) orders, worked out by hand: never silently resized, never past flat by
accident, never dust (docs/execution.md, "Manual orders").

Each scenario steps the engine bar by bar with no strategy: the operator acts between bars at the
last close, and market orders fill at the next bar's open. Fees are zero unless a test sets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import pytest
from builders import make_bars, settings

from n1v1.backtest.runner import run_backtest
from n1v1.domain import OrderPurpose, Side
from n1v1.engine.engine import ManualOrderResult, TradingEngine
from n1v1.engine.feeds import ReplayFeed
from n1v1.strategies.registry import create_strategy

approx = pytest.approx
FLAT = make_bars([(100, 100, 100, 100)] * 6)  # every price 100: every number below is by hand


class Desk:
    """An engine on one symbol's bars, advanced one bar at a time, with an operator."""

    def __init__(self, symbol: str, bars: pd.DataFrame, **sections: Mapping[str, Any]) -> None:
        self.symbol = symbol
        self.engine = TradingEngine(settings(**sections))
        self.steps = list(ReplayFeed({symbol: bars}))
        self.done = 0

    def bar(self, n: int = 1) -> None:
        for ts, bars in self.steps[self.done : self.done + n]:
            self.engine.on_bar(ts, bars)
        self.done += n

    def order(self, side: str, qty: float, **flags: bool) -> ManualOrderResult:
        ts, bars = self.steps[self.done - 1]
        close = bars[self.symbol][1].close  # type: ignore[index]
        return self.engine.submit_manual_order(self.symbol, Side(side), qty, ts, close, **flags)

    @property
    def position(self) -> float:
        return self.engine.portfolio.position(self.symbol).qty  # type: ignore[arg-type]

    def decisions(self) -> list[tuple[str, str]]:
        return [(d.rule, d.action) for d in self.engine.journal.risk_decisions]


def test_an_order_over_a_limit_is_refused_naming_the_limit_and_places_nothing() -> None:
    desk = Desk("BTC", FLAT, risk={"max_total_exposure": 0.5})
    desk.bar()
    result = desk.order("buy", 1_000_000)
    # room: 0.5 x equity 10,000 = 5,000 at 100 -> 50 units would fit
    assert not result.accepted and result.orders == []
    assert result.rule == "max_total_exposure"
    assert result.details == {"requested_qty": 1_000_000, "limit": 0.5, "max_qty": approx(50)}
    assert "max_total_exposure 0.5" in result.reason and "resize=true" in result.reason
    assert desk.engine.venue.working_orders() == []
    assert desk.decisions() == [("max_total_exposure", "reject")]


def test_resize_cuts_to_the_limit_and_says_from_what_to_what() -> None:
    desk = Desk("BTC", FLAT, risk={"max_total_exposure": 0.5})
    desk.bar()
    result = desk.order("buy", 1_000_000, resize=True)
    (order,) = result.orders
    assert order.qty == approx(50) and order.purpose is OrderPurpose.MANUAL
    ((rule, was, now),) = [(a.rule, a.from_qty, a.to_qty) for a in result.adjustments]
    assert (rule, was, now) == ("max_total_exposure", 1_000_000, approx(50))
    desk.bar()
    assert desk.position == approx(50)
    assert desk.engine.journal.latest_orders()[order.client_order_id].qty == approx(50)


def test_a_buy_the_cash_cannot_pay_is_refused_with_the_cash_and_what_fits() -> None:
    desk = Desk("BTC", FLAT, execution={"taker_fee": 0.001})
    desk.bar()
    result = desk.order("buy", 1_000)
    # 1,000 x 100 x 1.001 = 100,100 > 10,000 of cash; at most 10,000 / 100.1 = 99.9000999 units
    assert result.rule == "insufficient_cash"
    assert result.details == {"requested_qty": 1_000, "cash": 10_000, "max_qty": approx(99.9000999)}
    assert "costs 100100.00" in result.reason
    resized = desk.order("buy", 1_000, resize=True)
    assert resized.orders[0].qty == approx(10_000 / 100.1)


def test_a_sell_larger_than_the_long_closes_it_and_says_so() -> None:
    desk = Desk("BTC", FLAT)
    desk.bar()
    desk.order("buy", 0.95)
    desk.bar()
    assert desk.position == approx(0.95)
    result = desk.order("sell", 5)
    (order,) = result.orders
    assert order.side is Side.SELL and order.qty == approx(0.95)
    ((rule, was, now),) = [(a.rule, a.from_qty, a.to_qty) for a in result.adjustments]
    assert (rule, was, now) == ("reduce_only", 5, approx(0.95))
    assert "reverse=true" in result.adjustments[0].reason
    desk.bar()
    assert desk.position == 0.0  # flat, not short 4.05
    assert desk.engine.portfolio.cash == approx(10_000)


def test_reverse_is_refused_when_shorts_are_not_allowed() -> None:
    desk = Desk("BTC", FLAT)
    desk.bar()
    desk.order("buy", 0.95)
    desk.bar()
    result = desk.order("sell", 5, reverse=True)
    assert not result.accepted and result.rule == "allow_short"
    assert desk.engine.venue.working_orders() == []  # not even the closing part
    assert desk.order("sell", 1).orders[0].qty == approx(0.95)  # without reverse: closes it
    desk.bar()
    assert desk.position == 0.0
    assert desk.order("sell", 1).rule == "allow_short"  # from flat a sell is a short: refused


def test_reverse_with_shorts_allowed_closes_then_opens_the_rest_as_two_orders() -> None:
    desk = Desk("BTC", FLAT, risk={"allow_short": True})
    desk.bar()
    desk.order("buy", 0.95)
    desk.bar()
    result = desk.order("sell", 5, reverse=True)
    assert [(o.side, o.qty) for o in result.orders] == [
        (Side.SELL, approx(0.95)),  # closes the long
        (Side.SELL, approx(4.05)),  # opens the short, reviewed like an entry
    ]
    assert result.adjustments == []
    desk.bar()
    assert desk.position == approx(-4.05)
    # the long 0.95 bought and sold at 100: one closed trade with pnl 0, a short still open
    (closed,) = desk.engine.portfolio.closed_trades
    assert closed.pnl == approx(0) and closed.qty == approx(0.95)


def test_orders_already_working_count_towards_the_position_being_reduced() -> None:
    desk = Desk("BTC", FLAT)
    desk.bar()
    desk.order("buy", 2)
    desk.bar()
    first = desk.order("sell", 1.5)  # working until the next open
    second = desk.order("sell", 1.5)  # only 0.5 is left to sell
    assert [o.qty for o in first.orders] == [approx(1.5)]
    assert [o.qty for o in second.orders] == [approx(0.5)]
    assert second.adjustments[0].rule == "reduce_only"
    desk.bar()
    assert desk.position == 0.0


# -- the bundled instruments' rules: no dust ------------------------------------------------------
BTC = make_bars([(7_000, 7_000, 7_000, 7_000)] * 6)


def test_dust_is_refused_on_a_bundled_symbol_by_its_lot_size_and_minimum_notional() -> None:
    desk = Desk("BTC/USD", BTC)  # bundled rules: lot 0.00000001, minimum notional 1 USD
    desk.bar()
    tiny = desk.order("buy", 1e-9)
    assert (tiny.rule, tiny.details["lot_size"]) == ("lot_size", 1e-8)
    assert "below the lot size 1e-08" in tiny.reason
    small = desk.order("buy", 0.0001)  # 0.0001 x 7,000 = 0.70 USD
    assert (small.rule, small.details["min_notional"]) == ("min_notional", 1.0)
    assert "worth 0.70, below the minimum 1" in small.reason
    assert not desk.order("buy", 0.0001, resize=True).accepted  # resizing cannot add value
    assert desk.engine.venue.working_orders() == []


def test_a_quantity_off_the_lot_is_refused_unless_resize_rounds_it_down() -> None:
    desk = Desk("BTC/USD", BTC)
    desk.bar()
    off = desk.order("buy", 0.123456789)
    assert off.rule == "lot_size" and off.details["max_qty"] == approx(0.12345678)
    rounded = desk.order("buy", 0.123456789, resize=True)
    assert rounded.orders[0].qty == approx(0.12345678, abs=1e-12)
    assert [a.rule for a in rounded.adjustments] == ["lot_size"]


def test_a_strategy_entry_worth_less_than_the_minimum_notional_never_trades() -> None:
    bars = make_bars([(7_000 + i, 7_001 + i, 6_999 + i, 7_000 + i) for i in range(30)])
    bars.attrs["symbol"] = "BTC/USD"
    strategy = create_strategy("sma_cross", {"fast": 2, "slow": 5})
    assert run_backtest(bars, strategy, settings()).trades, "precondition: with cash it trades"
    for engine in ("event", "fast"):
        # all-in with 0.50 USD of cash: 0.5 / 7,00x < 1 USD of notional at every entry
        result = run_backtest(bars, strategy, settings(backtest={"cash": 0.5}), engine=engine)
        assert result.trades == [], engine
        assert result.metrics["final_equity"] == 0.5
