"""prepare_order against Binance markets loaded by the real ccxt client from a local exchangeInfo.

Known answers are worked out by hand from the filters below. The property test checks every
prepared order against Binance's filter arithmetic (filters.md: ``quantity % stepSize == 0``,
``minQty <= quantity <= maxQty``, ``price % tickSize == 0``, ``minPrice <= price <= maxPrice``
where not 0, ``minNotional <= price * quantity <= maxNotional``), computed here with Decimal from
the filter strings themselves, and every refusal against the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import ccxt
import numpy as np
import pytest
from exchange_server import FakeBinance, local_binance
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from n1v1.config import InstrumentSpec
from n1v1.execution.exchange_rules import (
    OrderRuleError,
    PreparedOrder,
    instrument_spec,
    prepare_order,
)


def _filters(tick, min_price, max_price, step, min_qty, max_qty, min_notional, max_notional):
    return {
        "PRICE_FILTER": {"tickSize": tick, "minPrice": min_price, "maxPrice": max_price},
        "LOT_SIZE": {"stepSize": step, "minQty": min_qty, "maxQty": max_qty},
        "NOTIONAL": {"minNotional": min_notional, "maxNotional": max_notional},
    }


# symbol -> (market id, base, quote, filters); BTCUSDT keeps exchange_server's defaults
MARKETS = {
    "BTC/USDT": (
        "BTCUSDT",
        "BTC",
        "USDT",
        _filters("0.01", "0.01", "1000000", "0.00001", "0.00001", "9000", "5", "9000000"),
    ),
    "SOL/USDT": (
        "SOLUSDT",
        "SOL",
        "USDT",
        _filters("0.01", "0.01", "10000", "0.001", "0.01", "90000", "5", "9000000"),
    ),
    "ETH/BTC": (
        "ETHBTC",
        "ETH",
        "BTC",
        _filters("0.00001", "0.00001", "922327", "0.0001", "0.0001", "100000", "0.0001", "9000000"),
    ),
    "DOGE/USDT": (
        "DOGEUSDT",
        "DOGE",
        "USDT",
        {
            **_filters("0.00001", "0.00001", "1000", "1", "1", "9000000", "1", "9000000"),
            "MARKET_LOT_SIZE": {"stepSize": "0", "minQty": "0", "maxQty": "500000"},
        },
    ),
    # PRICE_FILTER's minPrice and maxPrice disabled (0), as Binance allows
    "XRP/USDT": (
        "XRPUSDT",
        "XRP",
        "USDT",
        _filters("0.0001", "0", "0", "0.1", "0.1", "9222449", "5", "9000000"),
    ),
}


@pytest.fixture(scope="module")
def exchange() -> Iterator[ccxt.Exchange]:
    server = FakeBinance().start()
    for market_id, base, quote, filters in MARKETS.values():
        server.add_market(market_id, base, quote, published=filters)
    client = local_binance(server.url)
    client.load_markets()
    yield client
    server.close()


# -- known answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "qty", "price", "reference", "expected"),
    [
        # amount truncated to the step (never up), price rounded to the nearest tick
        ("BTC/USDT", 0.123456789, 50000.004, None, PreparedOrder("0.12345", "50000", 6172.5)),
        ("BTC/USDT", 0.5, 12345.675, None, PreparedOrder("0.5", "12345.68", 6172.84)),
        ("BTC/USDT", 0.5, 49999.996, None, PreparedOrder("0.5", "50000", 25000.0)),
        # 0.3 is 0.29999999999999998889... in binary; it must not lose a step
        ("BTC/USDT", 0.3, 20000.0, None, PreparedOrder("0.3", "20000", 6000.0)),
        # a market order's value is taken at the reference price
        ("BTC/USDT", 0.001, None, 50000.0, PreparedOrder("0.001", None, 50.0)),
        # exactly at the limits passes: minQty and minNotional (0.0001 x 50000 = 5)
        ("BTC/USDT", 0.0001, 50000.0, None, PreparedOrder("0.0001", "50000", 5.0)),
        ("SOL/USDT", 0.01, 500.0, None, PreparedOrder("0.01", "500", 5.0)),
        ("SOL/USDT", 1.23456, 150.123, None, PreparedOrder("1.234", "150.12", 185.24808)),
        ("ETH/BTC", 0.12349, 0.0512345, None, PreparedOrder("0.1234", "0.05123", 0.006321782)),
        ("DOGE/USDT", 1234.9, 0.123456, None, PreparedOrder("1234", "0.12346", 152.34964)),
        ("DOGE/USDT", 500000.0, None, 0.1, PreparedOrder("500000", None, 50000.0)),
        # no price limits on XRP: any tick-rounded price goes
        ("XRP/USDT", 1.05, 5_000_000.0, None, PreparedOrder("1", "5000000", 5_000_000.0)),
        ("XRP/USDT", 100000.0, 0.00005, None, PreparedOrder("100000", "0.0001", 10.0)),
    ],
)
def test_prepared_orders(exchange, symbol, qty, price, reference, expected):
    assert prepare_order(exchange, symbol, "buy", qty, price, reference) == expected


@pytest.mark.parametrize(
    ("symbol", "qty", "price", "reference", "rule", "message"),
    [
        (
            "SOL/USDT",
            0.005,
            150.0,
            None,
            "amount_min",
            "SOL/USDT: qty 0.005 below the minimum 0.01",
        ),
        (
            "BTC/USDT",
            0.000001,
            50000.0,
            None,
            "amount_step",
            "BTC/USDT: qty 0.000001 rounds down to 0 at the step 0.00001",
        ),
        (
            "BTC/USDT",
            9000.5,
            1.0,
            None,
            "amount_max",
            "BTC/USDT: qty 9000.5 above the maximum 9000",
        ),
        (
            "BTC/USDT",
            0.0001,
            40000.0,
            None,
            "cost_min",
            "BTC/USDT: notional 4 (qty 0.0001 x price 40000) below the minimum 5",
        ),
        (
            "BTC/USDT",
            0.00009,
            None,
            50000.0,
            "cost_min",
            "BTC/USDT: notional 4.5 (qty 0.00009 x reference price 50000) below the minimum 5",
        ),
        (
            "BTC/USDT",
            100.0,
            95000.0,
            None,
            "cost_max",
            "BTC/USDT: notional 9500000 (qty 100 x price 95000) above the maximum 9000000",
        ),
        (
            "BTC/USDT",
            1.0,
            0.004,
            None,
            "price_tick",
            "BTC/USDT: price 0.004 rounds to 0 at the tick 0.01",
        ),
        (
            "BTC/USDT",
            1.0,
            2_000_000.0,
            None,
            "price_max",
            "BTC/USDT: price 2000000 above the maximum 1000000",
        ),
        (
            "SOL/USDT",
            10.0,
            10000.01,
            None,
            "price_max",
            "SOL/USDT: price 10000.01 above the maximum 10000",
        ),
        (
            "DOGE/USDT",
            600000.0,
            None,
            0.1,
            "market_max",
            "DOGE/USDT: qty 600000 above the maximum 500000 for market orders",
        ),
    ],
)
def test_refusals_name_the_rule_and_the_numbers(
    exchange, symbol, qty, price, reference, rule, message
):
    with pytest.raises(OrderRuleError) as err:
        prepare_order(exchange, symbol, "sell", qty, price, reference)
    assert (err.value.rule, str(err.value), err.value.symbol) == (rule, message, symbol)
    assert isinstance(err.value, ValueError)


def test_numpy_and_int_numbers_are_numbers(exchange):
    order = prepare_order(exchange, "SOL/USDT", "buy", np.float64(1.5), np.float32(150.0), None)
    assert order == PreparedOrder("1.5", "150", 225.0)
    assert prepare_order(exchange, "DOGE/USDT", "buy", np.int64(10), 1, None).amount == "10"


def test_the_market_lot_limit_applies_to_market_orders_only(exchange):
    limit = prepare_order(exchange, "DOGE/USDT", "buy", 600000.0, 0.1, None)
    assert limit == PreparedOrder("600000", "0.1", 60000.0)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("BTC/USDT", "long", 1.0, 100.0, None), "side"),
        (("BTC/USDT", "buy", float("nan"), 100.0, None), "qty"),
        (("BTC/USDT", "buy", float("inf"), 100.0, None), "qty"),
        (("BTC/USDT", "buy", -1.0, 100.0, None), "qty"),
        (("BTC/USDT", "buy", 0.0, 100.0, None), "qty"),
        (("BTC/USDT", "buy", True, 100.0, None), "qty"),
        (("BTC/USDT", "buy", "1", 100.0, None), "qty"),
        (("BTC/USDT", "buy", 1.0, 0.0, None), "price"),
        (("BTC/USDT", "buy", 1.0, float("nan"), None), "price"),
        (("BTC/USDT", "buy", 1.0, None, None), "reference_price"),
        (("BTC/USDT", "buy", 1.0, None, -5.0), "reference_price"),
        (("BTC/EUR", "buy", 1.0, 100.0, None), "symbol 'BTC/EUR'"),
    ],
)
def test_malformed_arguments_are_value_errors_naming_the_field(exchange, args, field):
    with pytest.raises(ValueError, match=field) as err:
        prepare_order(exchange, *args)
    assert not isinstance(err.value, OrderRuleError)


def test_markets_must_be_loaded():
    with pytest.raises(ValueError, match="load_markets"):
        prepare_order(ccxt.binance(), "BTC/USDT", "buy", 1.0, 100.0, None)


def test_instrument_spec_gives_the_risk_manager_the_exchanges_step_and_minimum(exchange):
    assert instrument_spec(exchange, "BTC/USDT") == InstrumentSpec(
        lot_size=0.00001, tick_size=0.01, min_notional=5.0
    )
    assert instrument_spec(exchange, "DOGE/USDT") == InstrumentSpec(
        lot_size=1.0, tick_size=0.00001, min_notional=1.0
    )


def test_instrument_spec_refuses_significant_digits():
    exchange = ccxt.binance()
    exchange.precisionMode = ccxt.SIGNIFICANT_DIGITS
    exchange.markets = {"BTC/USDT": {"precision": {"amount": 5, "price": 5}, "limits": {}}}
    with pytest.raises(ValueError, match="significant digits"):
        instrument_spec(exchange, "BTC/USDT")


# -- property: Binance's own arithmetic -------------------------------------------------------


def _dec(text: str) -> Decimal:
    return Decimal(text)


def as_read(qty: float) -> Decimal:
    """The quantity as prepare_order reads it before rounding down: at 15 significant digits,
    so that the float noise of a sum of fills does not cost a whole step."""
    return Decimal(f"{qty:.15g}")


def binance_verdict(symbol: str, qty: float, price: float | None, reference: float) -> set[str]:
    """The rules an order breaks under Binance's filters, after the rounding prepare_order does
    (quantity down to the step, price to the nearest tick), worked out from the filter strings."""
    filters = MARKETS[symbol][3]
    lot, pf, notional = filters["LOT_SIZE"], filters["PRICE_FILTER"], filters["NOTIONAL"]
    step, tick = _dec(lot["stepSize"]), _dec(pf["tickSize"])
    q = (as_read(qty) / step).to_integral_value(ROUND_DOWN) * step
    if q == 0:
        return {"amount_step"}
    broken = set()
    if q < _dec(lot["minQty"]):
        broken.add("amount_min")
    if q > _dec(lot["maxQty"]):
        broken.add("amount_max")
    market_lot = filters.get("MARKET_LOT_SIZE")
    if price is None and market_lot:
        if _dec(market_lot["minQty"]) and q < _dec(market_lot["minQty"]):
            broken.add("market_min")
        if _dec(market_lot["maxQty"]) and q > _dec(market_lot["maxQty"]):
            broken.add("market_max")
    if price is None:
        p = Decimal(repr(reference))
    else:
        p = (Decimal(repr(price)) / tick).to_integral_value(ROUND_HALF_UP) * tick
        if p == 0:
            return broken | {"price_tick"}
        if _dec(pf["minPrice"]) and p < _dec(pf["minPrice"]):
            broken.add("price_min")
        if _dec(pf["maxPrice"]) and p > _dec(pf["maxPrice"]):
            broken.add("price_max")
    if q * p < _dec(notional["minNotional"]):
        broken.add("cost_min")
    if q * p > _dec(notional["maxNotional"]):
        broken.add("cost_max")
    return broken


def _magnitudes(low: int, high: int) -> st.SearchStrategy[float]:
    """Positive floats spread over the decades 10**low .. 10**high."""
    return st.integers(low, high - 1).flatmap(
        lambda e: st.floats(10.0**e, 10.0 ** (e + 1), allow_nan=False, allow_infinity=False)
    )


@hyp_settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    symbol=st.sampled_from(sorted(MARKETS)),
    qty=_magnitudes(-7, 7),
    price=st.one_of(st.none(), _magnitudes(-6, 7)),
    reference=_magnitudes(-5, 6),
    side=st.sampled_from(["buy", "sell"]),
)
def test_prepared_orders_pass_binances_filters_and_refusals_break_one(
    exchange, symbol, qty, price, reference, side
):
    broken = binance_verdict(symbol, qty, price, reference)
    try:
        order = prepare_order(exchange, symbol, side, qty, price, reference)
    except OrderRuleError as err:
        event(f"refused: {err.rule}")  # --hypothesis-show-statistics shows the mix
        assert err.rule in broken, (err.rule, broken, str(err))
        assert str(err).startswith(f"{symbol}: ")
        return
    event("prepared")
    assert not broken, (broken, order)
    filters = MARKETS[symbol][3]
    step, tick = _dec(filters["LOT_SIZE"]["stepSize"]), _dec(filters["PRICE_FILTER"]["tickSize"])
    amount = Decimal(order.amount)
    assert amount % step == 0
    assert amount <= as_read(qty) < amount + step  # rounded down, by less than a step
    assert _dec(filters["LOT_SIZE"]["minQty"]) <= amount <= _dec(filters["LOT_SIZE"]["maxQty"])
    value_price = Decimal(repr(reference)) if price is None else Decimal(order.price)
    if price is None:
        assert order.price is None
    else:
        assert value_price % tick == 0
        assert abs(value_price - Decimal(repr(price))) <= tick / 2
    notional = amount * value_price
    assert notional >= _dec(filters["NOTIONAL"]["minNotional"])
    assert math.isclose(order.notional, float(notional), rel_tol=1e-12)


def test_float_noise_from_summed_fills_does_not_cost_a_step(exchange: ccxt.Exchange) -> None:
    """A position summed from two lots is 21.211669999999998 in float: selling it all must send
    21.21167, not leave 0.00001 BTC of dust behind."""
    held = 10.60583 + 10.60584
    assert held == 21.211669999999998
    assert prepare_order(exchange, "BTC/USDT", "sell", held, None, 100.0).amount == "21.21167"
