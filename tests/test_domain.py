"""Order state machine and deterministic identifiers."""

from __future__ import annotations

import pandas as pd
import pytest

from n1v1.domain import (
    LEGAL_TRANSITIONS,
    ClientOrderId,
    IllegalOrderTransition,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    make_client_order_id,
)

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def order(qty: float = 10.0, **kw) -> Order:
    return Order(
        ClientOrderId("id-1"), Symbol("BTC/USD"), Side.BUY, qty, OrderType.MARKET, T0, **kw
    )


def test_happy_path_new_submitted_partial_filled():
    o = order()
    o.transition(OrderStatus.SUBMITTED, T0)
    o.apply_fill(4, 100.0, T0)
    assert o.status is OrderStatus.PARTIALLY_FILLED and o.remaining_qty == 6
    o.apply_fill(6, 110.0, T0)
    assert o.status is OrderStatus.FILLED
    assert o.avg_fill_price == pytest.approx((4 * 100 + 6 * 110) / 10)


@pytest.mark.parametrize("status", [s for s in OrderStatus if s.is_terminal])
def test_terminal_states_accept_no_transition(status):
    for target in OrderStatus:
        o = order()
        o.status = status
        with pytest.raises(IllegalOrderTransition, match=f"{status.value} -> {target.value}"):
            o.transition(target, T0)


def test_new_order_cannot_fill_before_it_is_submitted():
    with pytest.raises(IllegalOrderTransition, match="new -> filled"):
        order().apply_fill(10, 100.0, T0)


def test_every_edge_outside_the_table_raises():
    for source in OrderStatus:
        for target in OrderStatus:
            o = order()
            o.status = source
            if target in LEGAL_TRANSITIONS[source]:
                o.transition(target, T0)
                assert o.status is target
            else:
                with pytest.raises(IllegalOrderTransition):
                    o.transition(target, T0)


def test_overfill_is_refused():
    o = order()
    o.transition(OrderStatus.SUBMITTED, T0)
    with pytest.raises(ValueError, match="fill qty 11"):
        o.apply_fill(11, 100.0, T0)


def test_orders_validate_quantity_and_price():
    with pytest.raises(ValueError, match="qty must be > 0"):
        order(qty=0)
    with pytest.raises(ValueError, match="limit order needs a price"):
        Order(ClientOrderId("x"), Symbol("A"), Side.SELL, 1, OrderType.LIMIT, T0)


def test_client_order_id_is_a_pure_function_of_the_decision():
    a = make_client_order_id("run", "BTC/USD", T0, OrderPurpose.ENTRY, 0)
    assert a == make_client_order_id("run", "BTC/USD", T0, OrderPurpose.ENTRY, 0)
    others = {
        make_client_order_id("run2", "BTC/USD", T0, OrderPurpose.ENTRY, 0),
        make_client_order_id("run", "ETH/USD", T0, OrderPurpose.ENTRY, 0),
        make_client_order_id("run", "BTC/USD", T0 + pd.Timedelta("1min"), OrderPurpose.ENTRY, 0),
        make_client_order_id("run", "BTC/USD", T0, OrderPurpose.EXIT, 0),
        make_client_order_id("run", "BTC/USD", T0, OrderPurpose.ENTRY, 1),
    }
    assert a not in others and len(others) == 5
    assert len(a) == 32 and a.isalnum()
