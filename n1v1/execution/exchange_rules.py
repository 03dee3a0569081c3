"""Orders that pass the exchange's own filters, prepared before they are sent.

The live counterpart of `n1v1.execution.instruments`: the simulated venue rounds with an
`InstrumentSpec` from the settings; a live venue must round with the exchange's rules as ccxt
loaded them (``exchange.load_markets()``), or its orders are refused. The rules and why:

- **Amount rounded down, never up** (ccxt ``amount_to_precision``, which truncates to the market's
  step): an order never exceeds what sizing allowed, the same rule as `round_qty_down`.
- **Price rounded to the nearest tick** (ccxt ``price_to_precision``), as `round_price` does.
- **Limits** from ``market["limits"]``: amount min/max (Binance ``LOT_SIZE``), for market orders
  also ``market`` min/max (``MARKET_LOT_SIZE``), price min/max (``PRICE_FILTER``) and cost min/max
  (``NOTIONAL``/``MIN_NOTIONAL``). A limit of None or 0 is no limit (Binance: "disabled on
  maxPrice == 0"). The notional of a market order uses `reference_price`, as the exchange uses a
  recent average price (https://github.com/binance/binance-spot-api-docs/blob/master/filters.md).
  The maximum notional is applied to market orders too, although Binance may not
  (``applyMaxToMarket``): the stricter reading, since ccxt does not expose the flag.

A refusal is an `OrderRuleError` (a ``ValueError``) whose message names the symbol, the rule and
the numbers, and whose ``rule`` attribute is machine-readable. Numbers are compared as decimals,
so an amount exactly at a limit passes.

`instrument_spec` turns a loaded market into the `InstrumentSpec` the risk manager sizes with, so
sizing and the exchange agree on the step and the minimum notional; `dust_rule` into the least
quantity and value the books can still trade.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import ccxt

from n1v1.config import InstrumentSpec
from n1v1.domain import DustRule

Side = Literal["buy", "sell"]


class OrderRuleError(ValueError):
    """An order the exchange's filters would refuse; ``rule`` names which one."""

    def __init__(self, symbol: str, rule: str, message: str) -> None:
        super().__init__(f"{symbol}: {message}")
        self.symbol = symbol
        self.rule = rule


@dataclass(frozen=True, slots=True)
class PreparedOrder:
    """What to pass to ccxt's ``create_order``: exact decimal strings, and the order's value."""

    amount: str
    price: str | None  # None for a market order
    notional: float  # amount x (price, or the reference price of a market order)


def _market(exchange: ccxt.Exchange, symbol: str) -> dict[str, Any]:
    if not exchange.markets:
        raise ValueError(f"{exchange.id}: markets are not loaded; call exchange.load_markets()")
    if symbol not in exchange.markets:
        raise ValueError(f"symbol {symbol!r}: not a market of {exchange.id}")
    return exchange.markets[symbol]


def _positive(name: str, value: float | None) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}")
    return Decimal(repr(float(value)))


def _limit(exchange: ccxt.Exchange, limits: dict[str, Any], key: str, end: str) -> Decimal | None:
    value = (limits.get(key) or {}).get(end)
    if value is None:
        return None
    limit = Decimal(exchange.number_to_string(value))
    return limit if limit > 0 else None


def _text(exchange: ccxt.Exchange, value: float | Decimal) -> str:
    if isinstance(value, float):
        return exchange.number_to_string(value)
    return format(value.normalize(), "f")


def prepare_order(
    exchange: ccxt.Exchange,
    symbol: str,
    side: Side,
    qty: float,
    price: float | None,
    reference_price: float | None,
) -> PreparedOrder:
    """Round `qty` (down) and `price` (to the tick) to `symbol`'s rules on `exchange` and check
    its limits; `price` None is a market order, whose value is taken at `reference_price` (which a
    limit order does not need). `side` is checked but changes nothing yet: the filters that differ
    by side (Binance's PERCENT_PRICE_BY_SIDE) move with the market price and are left to the
    exchange.

    Raises `OrderRuleError` naming the broken rule, ValueError for malformed arguments.
    """
    if side not in ("buy", "sell"):
        raise ValueError(f"side: must be 'buy' or 'sell', got {side!r}")
    market = _market(exchange, symbol)
    limits = market.get("limits") or {}
    qty_dec = _positive("qty", qty)
    is_market = price is None
    if is_market:
        value_price = _positive("reference_price", reference_price)
    else:
        _positive("price", price)

    precision = market.get("precision") or {}
    for key in ("amount",) if is_market else ("amount", "price"):
        if precision.get(key) is None:
            raise ValueError(f"{exchange.id} {symbol}: the market states no {key} precision")
    try:
        # A quantity the engine summed from fills (10.60583 + 10.60584 = 21.211669999999998)
        # carries float noise in its last bits; truncated as is it would lose a whole step and
        # leave dust no order can sell. It is read at 15 significant digits (float's exact
        # range) before rounding down.
        amount = exchange.amount_to_precision(symbol, float(f"{float(qty):.15g}"))
    except ccxt.InvalidOrder:
        step = exchange.number_to_string(precision["amount"])
        raise OrderRuleError(
            symbol,
            "amount_step",
            f"qty {_text(exchange, qty_dec)} rounds down to 0 at the step {step}",
        ) from None
    amount_dec = Decimal(amount)
    checks = [("amount", "qty", "")]
    if is_market:
        checks.append(("market", "qty", " for market orders"))
    for key, what, scope in checks:
        low = _limit(exchange, limits, key, "min")
        if low is not None and amount_dec < low:
            raise OrderRuleError(
                symbol,
                f"{key}_min",
                f"{what} {amount} below the minimum {_text(exchange, low)}{scope}",
            )
        high = _limit(exchange, limits, key, "max")
        if high is not None and amount_dec > high:
            raise OrderRuleError(
                symbol,
                f"{key}_max",
                f"{what} {amount} above the maximum {_text(exchange, high)}{scope}",
            )

    price_text: str | None = None
    if not is_market:
        try:
            price_text = exchange.price_to_precision(symbol, float(price))
        except ccxt.InvalidOrder:
            tick = exchange.number_to_string(precision["price"])
            raise OrderRuleError(
                symbol,
                "price_tick",
                f"price {exchange.number_to_string(float(price))} rounds to 0 at the tick {tick}",
            ) from None
        value_price = Decimal(price_text)
        low = _limit(exchange, limits, "price", "min")
        if low is not None and value_price < low:
            raise OrderRuleError(
                symbol, "price_min", f"price {price_text} below the minimum {_text(exchange, low)}"
            )
        high = _limit(exchange, limits, "price", "max")
        if high is not None and value_price > high:
            raise OrderRuleError(
                symbol, "price_max", f"price {price_text} above the maximum {_text(exchange, high)}"
            )

    notional = amount_dec * value_price
    at = "reference price" if is_market else "price"
    shown = _text(exchange, value_price)
    value = f"notional {_text(exchange, notional)} (qty {amount} x {at} {shown})"
    low = _limit(exchange, limits, "cost", "min")
    if low is not None and notional < low:
        raise OrderRuleError(
            symbol, "cost_min", f"{value} below the minimum {_text(exchange, low)}"
        )
    high = _limit(exchange, limits, "cost", "max")
    if high is not None and notional > high:
        raise OrderRuleError(
            symbol, "cost_max", f"{value} above the maximum {_text(exchange, high)}"
        )
    return PreparedOrder(amount=amount, price=price_text, notional=float(notional))


def instrument_spec(exchange: ccxt.Exchange, symbol: str) -> InstrumentSpec:
    """`symbol`'s step, tick and minimum notional on `exchange` as an `InstrumentSpec`.

    Needs a fixed step, i.e. ccxt's TICK_SIZE or DECIMAL_PLACES precision mode; under
    SIGNIFICANT_DIGITS the step depends on the size of the number and there is none to give.
    """
    market = _market(exchange, symbol)
    mode = exchange.precisionMode

    def step(value: Any) -> float:
        if value is None:
            return 0.0
        if mode == ccxt.TICK_SIZE:
            return float(value)
        if mode == ccxt.DECIMAL_PLACES:
            return float(Decimal(1).scaleb(-int(value)))
        raise ValueError(
            f"{exchange.id} {symbol}: precision mode {mode} (significant digits) has no fixed step"
        )

    precision = market.get("precision") or {}
    min_cost = _limit(exchange, market.get("limits") or {}, "cost", "min")
    return InstrumentSpec(
        lot_size=step(precision.get("amount")),
        tick_size=step(precision.get("price")),
        min_notional=float(min_cost) if min_cost is not None else 0.0,
    )


def dust_rule(exchange: ccxt.Exchange, symbol: str) -> DustRule:
    """The least `symbol`'s market on `exchange` trades: a quantity (one step, or the minimum
    amount of a market order if larger) and a minimum value. A position below either can never
    be sold (every order for it is refused here), so the books call it dust."""
    market = _market(exchange, symbol)
    limits = market.get("limits") or {}
    spec = instrument_spec(exchange, symbol)
    least = [Decimal(repr(spec.lot_size))]
    for key in ("amount", "market"):
        low = _limit(exchange, limits, key, "min")
        if low is not None:
            least.append(low)
    return DustRule(min_qty=float(max(least)), min_cost=spec.min_notional)
