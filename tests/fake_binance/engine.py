"""The fake's matching engine: order entry, the fill model, balances, cancels and queries.

No order book: the test sets each market's price (`Engine.set_price`). A MARKET order fills at
that price (taker); a LIMIT GTC order fills when the price crosses it, i.e. price <= limit for a
BUY, >= limit for a SELL: at once at the current price if it crosses on entry (taker), later at its
own limit price (maker). With ``partial_fills = N`` an order created from then on fills in N parts
(equal lots on the step size, the last one taking the rest): one part on entry if it can fill, then
one part per fill step, and a fill step runs for every open order that can fill on each
`set_price` and each `advance`. So a test sees PARTIALLY_FILLED, can cancel a partly filled order,
and can let a fill land just before a cancel (``fill_first`` of `cancel`).

The ledger follows Binance's balance model. The commission is charged as Binance charges it when
BNB does not pay: in the asset received (``fee_asset = "received"``, the default): a BUY's in the
base asset, ``fee_rate`` of the quantity, a SELL's in the quote asset, ``fee_rate`` of the cost,
each rounded to 8 decimals half up. ``fee_asset = "quote"`` charges every fill's in the quote
asset instead (``fee_rate`` of the cost), as exchanges that charge the quote do. Each open order
holds its reserve in ``locked``: a SELL its base quantity, a BUY
``quantity * price * (1 + fee_rate)`` rounded up (at the limit price, or the market price on
entry for MARKET); fills release it and a cancel or the last fill returns what is left to
``free``. An order whose reserve the account cannot cover is refused with -2010 "Account has
insufficient balance for requested action."; a MARKET BUY part that a rising price makes dearer
than its reserve plus the free balance expires the order's rest (status EXPIRED), as Binance
expires a market order it cannot fill.

``newClientOrderId`` follows Binance: 1-36 characters of ``[.A-Z:/a-z0-9_-]``, unique among the
account's OPEN orders on the symbol (-2010 "Duplicate order sent."), reusable once the order is
closed; a query by ``origClientOrderId`` finds the newest order with that id.

An order can be hidden from queries for a while (``hide_for``): GET order, openOrders, allOrders
and myTrades do not show it or its trades, as Binance's database-backed queries can lag its
matching engine; the engine itself (duplicate ids, cancels, fills, balances) sees it at once.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from .markets import Market
from .records import BUY, SELL, ZERO, Account, Order, Trade
from .wire import (
    ApiError,
    ceil8,
    decimal_param,
    illegal,
    int_param,
    mandatory,
    need,
    not_required,
    round8,
)

CLIENT_ORDER_ID_PATTERN = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_CLIENT_ORDER_ID = re.compile(CLIENT_ORDER_ID_PATTERN)
_ID_ALPHABET = string.ascii_letters + string.digits
DAY_MS = 86_400_000
DEFAULT_LIMIT, MAX_LIMIT = 500, 1000
# Parameter combinations GET /api/v3/myTrades accepts (besides symbol), per Binance's docs.
_MY_TRADES_COMBOS = [
    set(),
    {"orderId"},
    {"startTime"},
    {"endTime"},
    {"fromId"},
    {"startTime", "endTime"},
    {"orderId", "fromId"},
]


def generated_client_id() -> str:
    """The id Binance gives an order or cancel sent without one (22 characters)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def client_id_param(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        return generated_client_id()
    if not value:
        raise ApiError(-1118, "New client order ID was empty.")
    if not _CLIENT_ORDER_ID.match(value):
        raise illegal(name, CLIENT_ORDER_ID_PATTERN)
    return value


class Engine:
    """Markets, prices, accounts, orders and trades; not thread-safe (the server locks around it).

    Order ids start at 10,000,001 and trade ids at 500,001 so that code confusing the two fails.
    """

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self.clock_ms = clock_ms
        self.markets: dict[str, Market] = {}
        self.prices: dict[str, Decimal] = {}
        self.accounts: dict[str, Account] = {}  # by API key
        self.orders: list[Order] = []
        self.trades: list[Trade] = []
        self.fee_rate = Decimal("0.001")
        self.fee_asset = "received"  # or "quote" (module docstring)
        self.partial_fills = 1
        self._next_order_id = 10_000_001
        self._next_trade_id = 500_001

    # -- order entry ---------------------------------------------------------------------------
    def market(self, params: Mapping[str, str]) -> Market:
        market = self.markets.get(need(params, "symbol"))
        if market is None:
            raise ApiError(-1121, "Invalid symbol.")
        return market

    def place(self, account: Account, p: Mapping[str, str], hide_for: float = 0.0) -> Order:
        """Validate and enter an order (POST /api/v3/order); it fills at once if it can."""
        market = self.market(p)
        side = need(p, "side")
        if side not in (BUY, SELL):
            raise ApiError(-1117, "Invalid side.")
        order_type = need(p, "type")
        if order_type not in ("LIMIT", "MARKET"):
            raise ApiError(-1116, "Invalid orderType.")
        client_id = client_id_param(p, "newClientOrderId")
        mark = self.prices.get(market.id)
        qty, price, quote_qty = _order_terms(market, order_type, p, mark)
        market.check(order_type, price, qty, mark)
        if any(
            o.is_open
            and o.client_order_id == client_id
            and o.account is account
            and o.market is market
            for o in self.orders
        ):
            raise ApiError(-2010, "Duplicate order sent.")
        reserve_price = price if price is not None else mark
        assert reserve_price is not None
        reserve = ceil8(qty * reserve_price * (1 + self.fee_rate)) if side == BUY else qty
        asset = market.quote if side == BUY else market.base
        if account.balance(asset)[0] < reserve:
            raise ApiError(-2010, "Account has insufficient balance for requested action.")
        now = self.clock_ms()
        order = Order(
            id=self._next_order_id,
            account=account,
            market=market,
            client_order_id=client_id,
            side=side,
            type=order_type,
            price=price if price is not None else ZERO,
            orig_qty=qty,
            orig_quote_qty=quote_qty if quote_qty is not None else ZERO,
            time=now,
            update_time=now,
            reserve_price=reserve_price,
            parts=self._lots(market, qty),
            reserved=reserve,
            hidden_until=time.monotonic() + hide_for if hide_for > 0 else 0.0,
        )
        self._next_order_id += 1
        account.lock(asset, reserve)
        self.orders.append(order)
        if self._can_fill(order):
            self._fill_part(order, taker=True)
        return order

    def _lots(self, market: Market, qty: Decimal) -> list[Decimal]:
        n = max(1, self.partial_fills)
        lot = market.floor_to_step(qty / n)
        if n == 1 or lot <= 0:
            return [qty]
        return [lot] * (n - 1) + [qty - lot * (n - 1)]

    # -- fills ---------------------------------------------------------------------------------
    def set_price(self, symbol: str, price: Decimal) -> list[Trade]:
        """Move the market's price, then run a fill step on it."""
        if symbol not in self.markets:
            raise KeyError(f"no market {symbol!r}")
        self.prices[symbol] = price
        return self.advance(symbol)

    def advance(self, symbol: str | None = None) -> list[Trade]:
        """A fill step: each open order (of ``symbol``, or all) that can fill fills one part."""
        trades = []
        for order in [o for o in self.orders if symbol is None or o.market.id == symbol]:
            if self._can_fill(order):
                trade = self._fill_part(order, taker=False)
                if trade is not None:
                    trades.append(trade)
        return trades

    def _can_fill(self, order: Order) -> bool:
        mark = self.prices.get(order.market.id)
        if not order.is_open or not order.parts or mark is None:
            return False
        if order.type == "MARKET":
            return True
        return mark <= order.price if order.side == BUY else mark >= order.price

    def _fill_part(self, order: Order, taker: bool) -> Trade | None:
        """Fill the order's next lot: at the market price if it is a taker (MARKET, or a LIMIT
        that crosses on entry), else at its limit price."""
        market, account = order.market, order.account
        is_maker = order.type == "LIMIT" and not taker
        price = order.price if is_maker else self.prices[market.id]
        qty = order.parts[0]
        cost = round8(qty * price)
        fee_in_base = order.side == BUY and self.fee_asset == "received"
        fee = round8((qty if fee_in_base else cost) * self.fee_rate)
        quote_fee = Decimal(0) if fee_in_base else fee
        if order.side == BUY:
            last = len(order.parts) == 1
            release = (
                order.reserved
                if last
                else min(order.reserved, ceil8(qty * order.reserve_price * (1 + self.fee_rate)))
            )
            if cost + quote_fee - release > account.balance(market.quote)[0]:
                self._close(order, "EXPIRED")
                return None
            account.unlock(market.quote, release)
            account.credit(market.quote, -(cost + quote_fee))
            account.credit(market.base, qty - fee if fee_in_base else qty)
            order.reserved -= release
        else:
            account.take_locked(market.base, qty)
            account.credit(market.quote, cost - fee)
            order.reserved -= qty
        order.parts.pop(0)
        order.executed += qty
        order.cum_quote += cost
        order.status = "PARTIALLY_FILLED" if order.parts else "FILLED"
        now = self.clock_ms()
        order.update_time = now
        trade = Trade(
            id=self._next_trade_id,
            order=order,
            price=price,
            qty=qty,
            quote_qty=cost,
            commission=fee,
            commission_asset=market.base if fee_in_base else market.quote,
            time=now,
            is_maker=is_maker,
        )
        self._next_trade_id += 1
        order.trades.append(trade)
        self.trades.append(trade)
        return trade

    def _close(self, order: Order, status: str) -> None:
        """End an open order, returning what it still holds to ``free``."""
        asset = order.market.quote if order.side == BUY else order.market.base
        order.account.unlock(asset, order.reserved)
        order.reserved = ZERO
        order.parts.clear()
        order.status = status
        order.update_time = self.clock_ms()

    # -- cancel and queries --------------------------------------------------------------------
    def cancel(self, account: Account, p: Mapping[str, str], fill_first: int = 0) -> Order:
        """DELETE /api/v3/order; ``fill_first`` lots fill just before the cancel lands (a race
        the cancel loses if they complete the order)."""
        market = self.market(p)
        order = self._find(account, market, p, visible_only=False)
        if order is None:
            raise ApiError(-2011, "Unknown order sent.")
        for _ in range(fill_first):
            if order.is_open and order.parts and market.id in self.prices:
                self._fill_part(order, taker=False)
        if not order.is_open:
            raise ApiError(-2011, "Unknown order sent.")
        self._close(order, "CANCELED")
        return order

    def query(self, account: Account, p: Mapping[str, str]) -> Order:
        """GET /api/v3/order."""
        order = self._find(account, self.market(p), p, visible_only=True)
        if order is None:
            raise ApiError(-2013, "Order does not exist.")
        return order

    def _find(
        self, account: Account, market: Market, p: Mapping[str, str], visible_only: bool
    ) -> Order | None:
        order_id = int_param(p, "orderId")
        client_id = p.get("origClientOrderId")
        if order_id is None and not client_id:
            raise ApiError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        now = time.monotonic()
        mine = [
            o
            for o in self.orders
            if o.account is account and o.market is market and (not visible_only or o.visible(now))
        ]
        if order_id is not None:
            found = next((o for o in mine if o.id == order_id), None)
            if found is not None and client_id and found.client_order_id != client_id:
                return None
            return found
        same = [o for o in mine if o.client_order_id == client_id]
        return same[-1] if same else None

    def visible_orders(self, account: Account, market: Market | None) -> list[Order]:
        now = time.monotonic()
        return [
            o
            for o in self.orders
            if o.account is account and (market is None or o.market is market) and o.visible(now)
        ]

    def open_orders(self, account: Account, p: Mapping[str, str]) -> list[Order]:
        """GET /api/v3/openOrders (all symbols without ``symbol``)."""
        market = self.market(p) if "symbol" in p else None
        return [o for o in self.visible_orders(account, market) if o.is_open]

    def all_orders(self, account: Account, p: Mapping[str, str]) -> list[Order]:
        """GET /api/v3/allOrders: ``orderId`` gives orders >= it, else the newest ``limit``."""
        orders = self.visible_orders(account, self.market(p))
        order_id = int_param(p, "orderId")
        return _page(orders, lambda o: o.id, lambda o: o.time, order_id, p)

    def my_trades(self, account: Account, p: Mapping[str, str]) -> list[Trade]:
        """GET /api/v3/myTrades: ``fromId`` gives trades >= it, else the newest ``limit``."""
        market = self.market(p)
        sent = {k for k in ("orderId", "startTime", "endTime", "fromId") if k in p}
        if sent not in _MY_TRADES_COMBOS:
            raise ApiError(-1128, "Combination of optional parameters invalid.")
        now = time.monotonic()
        trades = [
            t
            for t in self.trades
            if t.order.account is account and t.order.market is market and t.order.visible(now)
        ]
        order_id = int_param(p, "orderId")
        if order_id is not None:
            trades = [t for t in trades if t.order.id == order_id]
        return _page(trades, lambda t: t.id, lambda t: t.time, int_param(p, "fromId"), p)


def _order_terms(
    market: Market, order_type: str, p: Mapping[str, str], mark: Decimal | None
) -> tuple[Decimal, Decimal | None, Decimal | None]:
    """``(quantity, limit price, quoteOrderQty)`` of a new order, with Binance's errors for a
    missing or superfluous parameter; a MARKET order's quantity may come from quoteOrderQty."""
    qty, quote_qty = decimal_param(p, "quantity"), decimal_param(p, "quoteOrderQty")
    price = decimal_param(p, "price")
    if order_type == "LIMIT":
        if need(p, "timeInForce") != "GTC":
            raise ApiError(-1115, "Invalid timeInForce.")  # the fake executes GTC only
        if quote_qty is not None:
            raise not_required("quoteOrderQty")
        if qty is None:
            raise mandatory("quantity")
        if price is None:
            raise mandatory("price")
        return qty, price, None
    if "timeInForce" in p:
        raise ApiError(-1114, "TimeInForce parameter sent when not required.")
    if price is not None:
        raise not_required("price")
    if qty is None and quote_qty is None:
        raise ApiError(
            -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
        )
    if qty is not None and quote_qty is not None:
        raise not_required("quoteOrderQty")
    if mark is None:
        raise ApiError(-2010, "Market is closed.")  # no price set: nothing to fill at
    if quote_qty is not None:
        qty = market.floor_to_step(quote_qty / mark)
    assert qty is not None
    return qty, None, quote_qty


def _page(
    items: list[Any], key: Callable, stamp: Callable, from_key: int | None, p: Mapping[str, str]
) -> list[Any]:
    """Binance's paging: from a key up (oldest first), or by time, or the newest ``limit``."""
    limit = int_param(p, "limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if limit <= 0:
        raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
    limit = min(limit, MAX_LIMIT)
    start, end = int_param(p, "startTime"), int_param(p, "endTime")
    if start is not None and end is not None and end - start > DAY_MS:
        raise ApiError(-1127, "More than 24 hours between startTime and endTime.")
    items = sorted(items, key=key)
    if end is not None:
        items = [i for i in items if stamp(i) <= end]
    if from_key is not None:
        return [i for i in items if key(i) >= from_key][:limit]
    if start is not None:
        return [i for i in items if stamp(i) >= start][:limit]
    return items[-limit:]
