"""The simulated venue's fill rules for resting orders, price ticks and volume-driven slippage."""

from __future__ import annotations

import pandas as pd
import pytest

from n1v1.config import ExecutionSettings
from n1v1.domain import Bar, ClientOrderId, Liquidity, Order, OrderStatus, OrderType, Side, Symbol
from n1v1.execution.venue import SimulatedVenue

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def resting(
    side: Side, kind: OrderType, price: float, qty: float = 2.0, oco_group: str = ""
) -> Order:
    return Order(
        ClientOrderId(f"{side.value}-{kind.value}-{price}"),
        Symbol("X"),
        side,
        qty,
        kind,
        T0,
        price=price,
        oco_group=oco_group,
    )


def bar(o: float, h: float, low: float, c: float, v: float = 1_000.0) -> Bar:
    return Bar(T0, o, h, low, c, v)


def venue(**settings) -> SimulatedVenue:
    base = {"maker_fee": 0.001, "taker_fee": 0.002}
    return SimulatedVenue(ExecutionSettings(**{**base, **settings}))


@pytest.mark.parametrize(
    ("side", "kind", "price", "the_bar", "expected"),
    [
        # limit buy at 95: the low reaches it -> 95; opened below it -> the better open 93
        (Side.BUY, OrderType.LIMIT, 95, bar(100, 101, 94, 96), 95),
        (Side.BUY, OrderType.LIMIT, 95, bar(93, 96, 92, 95), 93),
        # limit sell at 105: high reaches it -> 105; opened above -> 107
        (Side.SELL, OrderType.LIMIT, 105, bar(100, 106, 99, 104), 105),
        (Side.SELL, OrderType.LIMIT, 105, bar(107, 108, 104, 106), 107),
        # stop buy at 105 triggers on the high -> 105; gapped above -> the worse open 108
        (Side.BUY, OrderType.STOP, 105, bar(100, 106, 99, 104), 105),
        (Side.BUY, OrderType.STOP, 105, bar(108, 109, 107, 108), 108),
        # stop sell at 95: low -> 95; gapped below -> 91
        (Side.SELL, OrderType.STOP, 95, bar(100, 101, 94, 96), 95),
        (Side.SELL, OrderType.STOP, 95, bar(91, 92, 90, 91), 91),
    ],
)
def test_resting_orders_fill_at_their_price_or_the_gapped_open(
    side, kind, price, the_bar, expected
):
    v = venue()
    order = resting(side, kind, price)
    v.submit(order, T0)
    (ex,) = v.match_range("X", the_bar)
    assert ex.fill.price == expected and order.status is OrderStatus.FILLED
    maker = kind is OrderType.LIMIT
    assert ex.fill.liquidity is (Liquidity.MAKER if maker else Liquidity.TAKER)
    assert ex.fill.fee == pytest.approx(2 * expected * (0.001 if maker else 0.002))


def test_untouched_resting_orders_keep_working():
    v = venue()
    buy, sell = resting(Side.BUY, OrderType.LIMIT, 90), resting(Side.SELL, OrderType.STOP, 80)
    v.submit(buy, T0)
    v.submit(sell, T0)
    assert v.match_range("X", bar(100, 101, 95, 99)) == []
    assert buy.status is sell.status is OrderStatus.SUBMITTED


def test_prices_are_rounded_to_the_tick_and_stops_pay_slippage():
    v = venue(slippage_bps=10, default_instrument={"tick_size": 0.5})
    order = resting(Side.SELL, OrderType.STOP, 95.3)
    v.submit(order, T0)
    assert order.price == 95.5  # nearest tick
    (ex,) = v.match_range("X", bar(100, 101, 94, 96))
    assert ex.fill.price == pytest.approx(95.5 * 0.999)


def test_volume_impact_slippage_grows_with_the_share_of_the_bar():
    v = venue(slippage_model="volume", slippage_bps=2, impact_bps=10, taker_fee=0.0)
    order = Order(ClientOrderId("m"), Symbol("X"), Side.BUY, 25, OrderType.MARKET, T0)
    v.submit(order, T0)
    (ex,) = v.match_open("X", bar(100, 101, 99, 100, v=100))
    # 25 of 100 traded: 2 bps + 10 bps x sqrt(0.25) = 7 bps -> 100 x 1.0007
    assert ex.fill.price == pytest.approx(100.07)


def test_cancel_and_expire_are_state_machine_moves():
    v = venue()
    a, b = resting(Side.BUY, OrderType.LIMIT, 90), resting(Side.BUY, OrderType.LIMIT, 91)
    v.submit(a, T0)
    v.submit(b, T0)
    v.cancel(a.client_order_id, T0, "user")
    assert a.status is OrderStatus.CANCELLED and a.reason == "user"
    (expired,) = v.expire_all(T0)
    assert expired is b and b.status is OrderStatus.EXPIRED


def test_participation_cap_limits_a_stop_per_bar_and_the_rest_keeps_its_level():
    v = venue(participation_cap=0.5, default_instrument={"lot_size": 1.0})
    stop = resting(Side.SELL, OrderType.STOP, 95, qty=10)
    v.submit(stop, T0)
    # volume 5: at most 0.5 x 5 = 2.5, rounded down to the lot -> 2 (not all 10 at once)
    (ex,) = v.match_range("X", bar(100, 101, 94, 96, v=5))
    assert ex.fill.qty == 2 and ex.fill.price == 95
    assert stop.status is OrderStatus.PARTIALLY_FILLED and stop.remaining_qty == 8
    assert v.working_orders("X") == [stop] and stop.price == 95  # still a stop, same level
    assert v.match_range("X", bar(96, 99, 95.5, 98, v=5)) == []  # not reached: no fill
    (ex,) = v.match_range("X", bar(93, 94, 92, 93, v=100))  # gapped below: the open, the rest
    assert (ex.fill.qty, ex.fill.price) == (8, 93) and stop.status is OrderStatus.FILLED


def test_a_partial_oco_fill_shrinks_the_sibling_which_waits_for_the_next_bar():
    v = venue(participation_cap=0.5)
    stop = resting(Side.SELL, OrderType.STOP, 95, qty=10, oco_group="g")
    take = resting(Side.SELL, OrderType.LIMIT, 105, qty=10, oco_group="g")
    v.submit(stop, T0)
    v.submit(take, T0)
    # both levels inside the bar: the stop is assumed first and takes 0.5 x 4 = 2; the
    # take-profit is the same exit, so it does not fill in this bar as well
    (ex,) = v.match_range("X", bar(100, 106, 94, 100, v=4))
    assert ex.order is stop and ex.fill.qty == 2
    assert ex.amended_siblings == (take,) and take.qty == 8 and take.remaining_qty == 8
    (ex,) = v.match_range("X", bar(104, 106, 103, 105, v=100))
    assert ex.order is take and ex.fill.qty == 8 and take.status is OrderStatus.FILLED
    assert ex.cancelled_siblings == (stop,) and stop.status is OrderStatus.CANCELLED


@pytest.mark.parametrize(
    ("limit_fill", "high", "filled"),
    [("touch", 105.0, True), ("through", 105.0, False), ("through", 105.01, True)],
)
def test_limit_fill_through_needs_the_bar_to_trade_beyond_the_price(limit_fill, high, filled):
    v = venue(limit_fill=limit_fill)
    order = resting(Side.SELL, OrderType.LIMIT, 105)
    v.submit(order, T0)
    executions = v.match_range("X", bar(100, high, 99, 104))
    assert [ex.fill.price for ex in executions] == ([105] if filled else [])
    buy = resting(Side.BUY, OrderType.LIMIT, 95)
    v.submit(buy, T0)
    low = 95.0 if high == 105.0 else 94.99  # the mirror image for a buy: low < 95 when through
    assert len(v.match_range("X", bar(100, 101, low, 100))) == int(filled)


def test_market_orders_fill_even_when_a_resting_order_was_placed_before_them():
    v = venue()
    v.submit(resting(Side.SELL, OrderType.STOP, 80), T0)
    market = Order(ClientOrderId("m"), Symbol("X"), Side.SELL, 1, OrderType.MARKET, T0)
    v.submit(market, T0)
    (ex,) = v.match_open("X", bar(100, 101, 99, 100))
    assert ex.order is market and ex.fill.price == 100
