"""The engine on a live venue, without a network: orders become intents, the exchange's answers
arrive as events, and the engine applies them at the next step (n1v1/execution/live_venue.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from n1v1.config import Settings
from n1v1.domain import Bar, DustRule, Order, OrderStatus, OrderType, Side, Symbol
from n1v1.engine.engine import TradingEngine
from n1v1.engine.journal import InMemoryJournal
from n1v1.engine.signals import PrecomputedTargets
from n1v1.execution.live_venue import EventKind, LiveVenue, VenueEvent
from n1v1.execution.venue import VenueError

SYMBOL = Symbol("BTC/USDT")
T0 = pd.Timestamp("2026-01-01", tz="UTC")


def bar(i: int, close: float = 100.0) -> Bar:
    return Bar(T0 + pd.Timedelta(minutes=i), close, close + 1, close - 1, close, 10.0)


def engine_with(targets: list[int], **risk: float) -> tuple[TradingEngine, LiveVenue]:
    settings = Settings.model_validate(
        {
            "backtest": {"cash": 10_000.0},
            "risk": {"fraction": 0.5, **risk},
            "execution": {"taker_fee": 0.0},
        }
    )
    venue = LiveVenue()
    engine = TradingEngine(settings, journal=InMemoryJournal(), venue=venue)
    engine.add_signal_source(
        PrecomputedTargets.from_arrays("script", {SYMBOL: np.asarray(targets, dtype=np.int8)})
    )
    return engine, venue


def step(engine: TradingEngine, i: int, close: float = 100.0) -> None:
    engine.on_venue_events()
    engine.on_bar(bar(i, close).timestamp, {SYMBOL: (i, bar(i, close))})


def filled(venue: LiveVenue, order: Order, price: float, trade: str, qty: float = 0.0) -> None:
    """The exchange accepts `order` and fills it (all of it unless `qty`) at `price`."""
    cid, at = order.client_order_id, T0 + pd.Timedelta(hours=1)
    venue.receive(
        [
            VenueEvent(EventKind.ACCEPTED, cid, at, "X" + trade, qty=order.qty),
            VenueEvent(EventKind.FILL, cid, at, "X" + trade, trade, qty or order.qty, price, 0.0),
        ]
    )


def entered(engine: TradingEngine, venue: LiveVenue) -> Order:
    """Step 0 decides a long entry of 50 at 100; the exchange fills it; step 1 books it."""
    step(engine, 0)
    [entry] = venue.take_outbox()
    filled(venue, entry.order, 100.0, "b:1")
    step(engine, 1)
    return entry.order


def test_an_entry_is_an_intent_until_the_exchange_answers_and_fills_it() -> None:
    engine, venue = engine_with([1, 1, 1, 1])
    step(engine, 0)
    [request] = venue.take_outbox()
    order = request.order
    assert request.action == "create" and order.status is OrderStatus.SUBMITTING
    assert order.qty == pytest.approx(50.0)  # half of 10,000 at 100
    step(engine, 1)  # nothing heard yet: the symbol waits, no second entry
    assert venue.take_outbox() == [] and engine.portfolio.position(SYMBOL).qty == 0
    at = T0 + pd.Timedelta(minutes=1, seconds=5)
    venue.receive(
        [
            VenueEvent(EventKind.ACCEPTED, order.client_order_id, at, "X1", qty=49.99),
            VenueEvent(EventKind.FILL, order.client_order_id, at, "X1", "b:1", 20.0, 101.0, 0.5),
            VenueEvent(EventKind.FILL, order.client_order_id, at, "X1", "b:2", 29.99, 102.0, 0.7),
        ]
    )
    step(engine, 2)
    pos = engine.portfolio.position(SYMBOL)
    assert order.status is OrderStatus.FILLED and order.qty == 49.99  # the exchange's rounding
    assert pos.qty == pytest.approx(49.99)
    # cash: 10,000 - 20 x 101 - 29.99 x 102 - fees 1.2 = 4,919.82
    assert engine.portfolio.cash == pytest.approx(10_000 - 2020 - 3058.98 - 1.2)
    journal = engine.journal
    assert isinstance(journal, InMemoryJournal)
    assert [f.seq for f in journal.fills] == [0, 1]
    assert [o.status for o in journal.orders if o.client_order_id == order.client_order_id][
        -2:
    ] == [OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    assert not venue.busy(SYMBOL)


def test_an_ambiguous_failure_holds_the_symbol_until_it_is_resolved() -> None:
    engine, venue = engine_with([1, 0, 0, 0])
    step(engine, 0)
    [request] = venue.take_outbox()
    cid = request.order.client_order_id
    venue.receive([VenueEvent(EventKind.UNKNOWN, cid, T0, reason="RequestTimeout")])
    step(engine, 1)  # target is now 0, but the entry's outcome is unknown: no exit is sent
    assert request.order.status is OrderStatus.UNKNOWN and venue.take_outbox() == []
    venue.receive([VenueEvent(EventKind.REJECTED, cid, T0, reason="not found after 10 s")])
    step(engine, 2)
    assert request.order.status is OrderStatus.REJECTED
    assert request.order.reason == "not found after 10 s"
    assert not venue.busy(SYMBOL) and engine.portfolio.position(SYMBOL).qty == 0


def test_a_cancel_is_a_request_and_fills_before_it_still_count() -> None:
    engine, venue = engine_with([1, 1, 1])
    step(engine, 0)
    [request] = venue.take_outbox()
    order = request.order
    cid = order.client_order_id
    assert venue.cancel(cid, T0, "operator") is order and order.status is OrderStatus.SUBMITTING
    venue.cancel(cid, T0, "operator again")  # asked once only
    assert [r.action for r in venue.take_outbox()] == ["cancel"]
    venue.receive(
        [
            VenueEvent(EventKind.ACCEPTED, cid, T0, "X9", qty=50.0),
            VenueEvent(EventKind.FILL, cid, T0, "X9", "b:7", 10.0, 100.0, 0.0),
            VenueEvent(EventKind.CANCELLED, cid, T0, "X9", reason="canceled at the exchange"),
        ]
    )
    step(engine, 1)
    assert order.status is OrderStatus.CANCELLED and order.filled_qty == 10.0
    assert engine.portfolio.position(SYMBOL).qty == 10.0


def test_events_that_contradict_the_order_are_refused_loudly() -> None:
    engine, venue = engine_with([1, 1])
    step(engine, 0)
    [request] = venue.take_outbox()
    cid = request.order.client_order_id
    venue.receive([VenueEvent(EventKind.FILL, cid, T0, "X", "b:1", 60.0, 100.0, 0.0)])
    with pytest.raises(ValueError, match="outside"):  # more than ordered
        engine.on_venue_events()
    with pytest.raises(ValueError, match="trade id"):
        VenueEvent(EventKind.FILL, cid, T0, "X", "", 1.0, 100.0, 0.0)
    with pytest.raises(ValueError, match="positive and finite"):
        VenueEvent(EventKind.FILL, cid, T0, "X", "b:2", 1.0, float("nan"), 0.0)
    venue.receive([VenueEvent(EventKind.ACCEPTED, "n1nobody", T0)])
    with pytest.raises(VenueError, match="not working"):
        engine.on_venue_events()


def test_the_live_venue_sends_market_orders_only_and_holds_only_protective_ones() -> None:
    venue = LiveVenue()
    limit = Order("n1x", SYMBOL, Side.SELL, 1.0, OrderType.LIMIT, T0, price=110.0)
    with pytest.raises(VenueError, match="market orders only"):
        venue.submit(limit, T0)  # a manual or entry limit order: it would have to rest there


def test_a_stop_loss_is_held_and_sent_as_a_market_order_when_a_closed_bar_reaches_it() -> None:
    engine, venue = engine_with([1] * 8, stop_loss_pct=0.05, take_profit_pct=0.10)
    entry = entered(engine, venue)
    stop, take_profit = sorted(
        venue.resting(SYMBOL), key=lambda o: o.order_type is not OrderType.STOP
    )
    assert stop.order_type is OrderType.STOP and stop.price == 95.0
    assert stop.qty == pytest.approx(50.0) == take_profit.qty
    assert take_profit.order_type is OrderType.LIMIT
    assert take_profit.price == pytest.approx(110.0)
    # held here: nothing sent, nothing in flight, the symbol free for decisions
    assert venue.take_outbox() == [] and venue.in_flight() == [] and not venue.busy(SYMBOL)
    assert stop.status is OrderStatus.SUBMITTED
    step(engine, 2, close=96.5)  # low 95.5: above the stop
    assert venue.take_outbox() == []
    step(engine, 3, close=95.5)  # low 94.5 reaches 95
    [request] = venue.take_outbox()
    assert request.action == "create" and request.order is stop
    assert stop.status is OrderStatus.SUBMITTING and venue.busy(SYMBOL)
    assert stop.reason == "stop_loss at 95 reached by the bar's low 94.5: sent as a market order"
    journal = engine.journal
    assert isinstance(journal, InMemoryJournal)
    journaled = journal.orders[-1]  # the journal says so before the request goes out
    assert journaled.client_order_id == stop.client_order_id
    assert journaled.status is OrderStatus.SUBMITTING
    step(engine, 4, close=112.0)  # reaches the take-profit, but its sibling is being sent
    assert venue.take_outbox() == [] and take_profit.status is OrderStatus.SUBMITTED
    filled(venue, stop, 94.2, "b:2")  # the exchange's price after the bar: worse than 95
    step(engine, 5)
    assert stop.status is OrderStatus.FILLED
    assert take_profit.status is OrderStatus.CANCELLED
    assert take_profit.reason == "oco sibling filled"
    assert venue.working_orders() == [] and engine.portfolio.position(SYMBOL).qty == 0
    [trade] = engine.portfolio.closed_trades
    assert trade.exit_price == 94.2 and trade.entry_price == entry.avg_fill_price == 100.0
    # 50 x (94.2 - 100), no fees: -290.0
    assert engine.portfolio.cash == pytest.approx(10_000 - 290.0)
    step(engine, 6)  # the target is still long: no re-entry after a stop (blocked)
    assert venue.take_outbox() == []


def test_a_stop_that_ends_partly_filled_cuts_its_sibling_and_is_held_again_for_the_rest() -> None:
    engine, venue = engine_with([1] * 8, stop_loss_pct=0.05, take_profit_pct=0.10)
    entered(engine, venue)
    stop, take_profit = sorted(
        venue.resting(SYMBOL), key=lambda o: o.order_type is not OrderType.STOP
    )
    step(engine, 2, close=95.0)
    [request] = venue.take_outbox()
    filled(venue, stop, 94.9, "b:2", qty=20.0)
    venue.receive([VenueEvent(EventKind.EXPIRED, stop.client_order_id, T0, reason="no depth")])
    step(engine, 3, close=97.0)  # low 96: above the stop
    assert stop.status is OrderStatus.EXPIRED and stop.filled_qty == 20.0
    assert engine.portfolio.position(SYMBOL).qty == pytest.approx(30.0)
    again, tp = sorted(venue.resting(SYMBOL), key=lambda o: o.order_type is not OrderType.STOP)
    assert tp is take_profit and take_profit.qty == pytest.approx(30.0)  # cut to the rest
    assert again.client_order_id != stop.client_order_id and again.price == 95.0
    assert again.qty == pytest.approx(30.0) and again.oco_group == stop.oco_group
    step(engine, 4, close=111.0)  # the take-profit goes for the rest
    [request] = venue.take_outbox()
    assert request.order is take_profit and take_profit.status is OrderStatus.SUBMITTING


def test_an_exit_the_exchange_refuses_is_held_again_and_sent_at_the_next_bar_reaching_it() -> None:
    engine, venue = engine_with([1] * 8, stop_loss_pct=0.05)
    entered(engine, venue)
    [stop] = venue.resting(SYMBOL)
    step(engine, 2, close=95.0)
    [request] = venue.take_outbox()
    reason = "InsufficientFunds: Account has insufficient balance"
    venue.receive([VenueEvent(EventKind.REJECTED, stop.client_order_id, T0, reason=reason)])
    step(engine, 3, close=97.0)
    assert stop.status is OrderStatus.REJECTED
    [again] = venue.resting(SYMBOL)
    assert again.price == 95.0 and again.qty == pytest.approx(50.0)
    step(engine, 4, close=94.0)
    [request] = venue.take_outbox()
    assert request.order is again and again.status is OrderStatus.SUBMITTING


def test_no_exit_is_sent_while_an_order_of_the_symbol_is_in_flight() -> None:
    """The entry fills in two lots, one per bar; the stop placed after the first lot is not
    sent while the second is on its way, though a bar reaches it; once the entry is done, the
    stop is held again for the whole position and goes at the next bar that reaches it."""
    engine, venue = engine_with([1] * 8, stop_loss_pct=0.05)
    step(engine, 0)
    [entry] = venue.take_outbox()
    filled(venue, entry.order, 100.0, "b:1", qty=25.0)
    step(engine, 1)
    [stop] = venue.resting(SYMBOL)
    assert stop.qty == pytest.approx(25.0) and venue.busy(SYMBOL)
    step(engine, 2, close=94.0)  # reaches 95, but the entry is in flight
    assert venue.take_outbox() == [] and stop.status is OrderStatus.SUBMITTED
    cid = entry.order.client_order_id
    venue.receive([VenueEvent(EventKind.FILL, cid, T0, "Xb:1", "b:9", 25.0, 100.0, 0.0)])
    step(engine, 3, close=94.0)
    [request] = venue.take_outbox()
    assert request.order.purpose.value == "stop_loss" and request.order.qty == pytest.approx(50.0)


def test_a_trailing_stop_moves_while_held_and_not_once_sent() -> None:
    engine, venue = engine_with([1] * 8, trailing_stop_pct=0.05)
    entered(engine, venue)
    [stop] = venue.resting(SYMBOL)
    step(engine, 2, close=110.0)  # high 111: the stop trails to 111 x 0.95
    assert stop.price == pytest.approx(105.45) and stop.purpose.value == "trailing_stop"
    step(engine, 3, close=106.0)  # low 105 reaches it
    [request] = venue.take_outbox()
    assert request.order is stop and stop.status is OrderStatus.SUBMITTING
    step(engine, 4, close=120.0)  # a higher high while it is sent: it no longer moves
    assert stop.price == pytest.approx(105.45)
    with pytest.raises(VenueError, match="not held"):
        venue.set_price(stop.client_order_id, 110.0)


def test_cancelling_a_held_order_is_immediate_and_the_kill_switch_sends_only_the_exit() -> None:
    engine, venue = engine_with([1] * 8, stop_loss_pct=0.05)
    entered(engine, venue)
    [stop] = venue.resting(SYMBOL)
    report = engine.kill_switch(bar(2).timestamp, "operator", {SYMBOL: bar(1)})
    assert stop.status is OrderStatus.CANCELLED and report.cancelled == [stop]
    [request] = venue.take_outbox()  # no cancel request for what the exchange never saw
    assert request.action == "create" and request.order.side is Side.SELL
    assert request.order.qty == pytest.approx(50.0)


def test_an_event_row_round_trips() -> None:
    event = VenueEvent(EventKind.FILL, "n1a", T0, "X1", "binance:5", 0.5, 101.25, 0.05, "maker")
    assert VenueEvent.from_row(event.to_row()) == event


def test_a_fee_charged_in_the_base_asset_is_base_not_received() -> None:
    """Binance charges a buy's fee in the asset bought: 50 BTC bought at 100 for 5,000 USDT, the
    fee 0.05 BTC (worth 5 USDT). The books hold 49.95 BTC, as the account does, and cash goes
    down by exactly the 5,000 the trade cost; the fee paid is the 5 USDT the 0.05 BTC are worth."""
    engine, venue = engine_with([1, 1, 1])
    step(engine, 0)
    [request] = venue.take_outbox()
    order, at = request.order, T0 + pd.Timedelta(minutes=1)
    cid = order.client_order_id
    venue.receive(
        [
            VenueEvent(EventKind.ACCEPTED, cid, at, "X1", qty=50.0),
            VenueEvent(EventKind.FILL, cid, at, "X1", "b:1", 50.0, 100.0, 5.0, base_fee=0.05),
        ]
    )
    step(engine, 1)
    assert order.status is OrderStatus.FILLED and order.filled_qty == 50.0  # the exchange's
    assert engine.portfolio.position(SYMBOL).qty == pytest.approx(49.95)
    assert engine.portfolio.cash == pytest.approx(10_000 - 5_000)
    assert engine.portfolio.fees_paid == pytest.approx(5.0)
    with pytest.raises(ValueError, match="in the base asset"):
        VenueEvent(EventKind.FILL, cid, at, "X1", "b:2", 1.0, 100.0, 100.0, base_fee=1.0)


def test_dust_left_by_an_exit_closes_the_trade_and_does_not_stop_the_next_entry() -> None:
    """The exchange trades 0.01 at least and rounds the exit of 49.955 down to 49.95: 0.005 is
    left, which no order can sell. The books keep it (as the exchange does), the trade is
    closed, and the next long target enters again."""
    engine, venue = engine_with([1, 0, 0, 1, 1, 1])
    engine.portfolio.dust_rules = {SYMBOL: DustRule(min_qty=0.01, min_cost=5.0)}
    step(engine, 0)
    [entry] = venue.take_outbox()
    filled(venue, entry.order, 100.0, "b:1", qty=49.955)  # as if 0.045 went to fees elsewhere
    venue.receive([VenueEvent(EventKind.EXPIRED, entry.order.client_order_id, T0)])
    step(engine, 1)  # booked; the target is now flat: an exit of 49.955
    [exit_] = venue.take_outbox()
    assert exit_.order.qty == pytest.approx(49.955)
    cid = exit_.order.client_order_id
    venue.receive(
        [
            VenueEvent(EventKind.ACCEPTED, cid, T0, "X2", qty=49.95),  # rounded to its step
            VenueEvent(EventKind.FILL, cid, T0, "X2", "b:2", 49.95, 110.0, 0.0),
        ]
    )
    step(engine, 2)
    pos = engine.portfolio.position(SYMBOL)
    assert pos.qty == pytest.approx(0.005) and engine.portfolio.is_dust(pos)
    assert not engine.portfolio.holds(SYMBOL)
    [trade] = engine.portfolio.closed_trades
    assert trade.exit_price == 110.0 and trade.qty == pytest.approx(49.955)
    assert venue.take_outbox() == []  # no order for the dust
    step(engine, 3)  # long again: a new entry, the dust no obstacle
    [again] = venue.take_outbox()
    assert again.order.side is Side.BUY and again.order.qty > 40
    filled(venue, again.order, 100.0, "b:3", qty=40.0)
    venue.receive([VenueEvent(EventKind.EXPIRED, again.order.client_order_id, T0)])
    step(engine, 4)
    assert engine.portfolio.position(SYMBOL).qty == pytest.approx(40.005)  # the dust joins it
    assert engine.portfolio.open_trade(SYMBOL).qty == pytest.approx(40.0)


def test_a_trades_fee_is_valued_in_the_quote_and_its_base_part_kept_apart() -> None:
    from n1v1.live.broker import _fee_parts

    trade = {"fee": {"currency": "BTC", "cost": 0.00001}}
    assert _fee_parts(trade, "BTC/USDT", 30_000.0) == (pytest.approx(0.3), 0.00001)
    assert _fee_parts({"fee": {"currency": "USDT", "cost": 0.3}}, "BTC/USDT", 1.0) == (0.3, 0.0)
    both = {"fees": [{"currency": "USDT", "cost": 0.1}, {"currency": "BTC", "cost": 0.00001}]}
    assert _fee_parts(both, "BTC/USDT", 30_000.0) == (pytest.approx(0.4), 0.00001)
    assert _fee_parts({"fee": None}, "BTC/USDT", 1.0) == (0.0, 0.0)
    with pytest.raises(ValueError, match="a fee in BNB on BTC/USDT cannot be valued in USDT"):
        _fee_parts({"fee": {"currency": "BNB", "cost": 0.001}}, "BTC/USDT", 1.0)


def test_two_satoshi_left_by_an_exit_stay_on_the_books_at_an_exchange() -> None:
    """25.00000002 BTC bought, 25 sold: a backtest calls the 2e-8 float noise (below 1e-9 of
    the trade) and is flat; at an exchange they are in the account, so the books keep them."""
    from n1v1.domain import Fill, Liquidity, OrderPurpose
    from n1v1.engine.portfolio import Portfolio

    def fill(cid: str, side: Side, qty: float, purpose: OrderPurpose) -> Fill:
        return Fill(cid, SYMBOL, side, qty, 100.0, 0.0, Liquidity.TAKER, T0, purpose, 0)

    for rules, left in (({}, 0.0), ({SYMBOL: DustRule(1e-5, 5.0)}, 2e-8)):
        portfolio = Portfolio(10_000.0)
        portfolio.dust_rules = rules
        portfolio.apply_fill(fill("a", Side.BUY, 25.00000002, OrderPurpose.ENTRY))
        trade = portfolio.apply_fill(fill("b", Side.SELL, 25.0, OrderPurpose.EXIT))
        assert trade is not None  # closed either way: what is left is dust at most
        assert portfolio.position(SYMBOL).qty == pytest.approx(left, abs=1e-14)
