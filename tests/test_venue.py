"""The simulated venue's fill rules for resting orders, price ticks and volume-driven slippage."""

from __future__ import annotations

import pandas as pd
import pytest

from n1v1.config import ExecutionSettings
from n1v1.domain import Bar, ClientOrderId, Liquidity, Order, OrderStatus, OrderType, Side, Symbol
from n1v1.execution.venue import SimulatedVenue

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def resting(side: Side, kind: OrderType, price: float, qty: float = 2.0) -> Order:
    return Order(
        ClientOrderId(f"{side.value}-{kind.value}-{price}"),
        Symbol("X"),
        side,
        qty,
        kind,
        T0,
        price=price,
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
