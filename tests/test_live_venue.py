"""The engine on a live venue, without a network: orders become intents, the exchange's answers
arrive as events, and the engine applies them at the next step (n1v1/execution/live_venue.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from n1v1.config import Settings
from n1v1.domain import Bar, OrderStatus, Symbol
from n1v1.engine.engine import TradingEngine
from n1v1.engine.journal import InMemoryJournal
from n1v1.engine.signals import PrecomputedTargets
from n1v1.execution.live_venue import EventKind, LiveVenue, VenueEvent
from n1v1.execution.venue import VenueError

SYMBOL = Symbol("BTC/USDT")
T0 = pd.Timestamp("2026-01-01", tz="UTC")


def bar(i: int, close: float = 100.0) -> Bar:
    return Bar(T0 + pd.Timedelta(minutes=i), close, close + 1, close - 1, close, 10.0)


def engine_with(targets: list[int]) -> tuple[TradingEngine, LiveVenue]:
    settings = Settings.model_validate(
        {"backtest": {"cash": 10_000.0}, "risk": {"fraction": 0.5}, "execution": {"taker_fee": 0.0}}
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


def test_the_live_venue_sends_market_orders_only() -> None:
    from n1v1.domain import Order, OrderType, Side

    venue = LiveVenue()
    stop = Order("n1x", SYMBOL, Side.SELL, 1.0, OrderType.STOP, T0, price=90.0)
    with pytest.raises(VenueError, match="market orders only"):
        venue.submit(stop, T0)


def test_an_event_row_round_trips() -> None:
    event = VenueEvent(EventKind.FILL, "n1a", T0, "X1", "binance:5", 0.5, 101.25, 0.05, "maker")
    assert VenueEvent.from_row(event.to_row()) == event
