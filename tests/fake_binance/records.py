"""The exchange's records: accounts, orders and trades, and the JSON Binance shows for each.

Amounts are Decimals, printed with Binance's 8 decimals; the rules that change these records are
in `engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .markets import Market
from .wire import fmt

BUY, SELL = "BUY", "SELL"
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
ZERO = Decimal(0)


def as_decimal(value: Decimal | str | float | int) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(eq=False)
class Account:
    """A trading account: credentials (never shown by repr) and balances per asset."""

    name: str
    api_key: str = field(repr=False)
    secret: str = field(repr=False)
    free: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """``(free, locked)`` of ``asset``."""
        return self.free.get(asset, ZERO), self.locked.get(asset, ZERO)

    def _add(self, book: dict[str, Decimal], asset: str, delta: Decimal) -> None:
        book[asset] = book.get(asset, ZERO) + delta
        if book[asset] < 0:
            raise AssertionError(f"{self.name}'s {asset} balance went negative: {book[asset]}")

    def credit(self, asset: str, delta: Decimal) -> None:
        """Add ``delta`` (negative: take) to the free balance."""
        self._add(self.free, asset, delta)

    def take_locked(self, asset: str, amount: Decimal) -> None:
        """Spend ``amount`` of what orders hold (a SELL's base delivered by a fill)."""
        self._add(self.locked, asset, -amount)

    def lock(self, asset: str, amount: Decimal) -> None:
        self._add(self.free, asset, -amount)
        self._add(self.locked, asset, amount)

    def unlock(self, asset: str, amount: Decimal) -> None:
        self._add(self.locked, asset, -amount)
        self._add(self.free, asset, amount)

    def json(self, fee_rate: Decimal, now_ms: int, omit_zero: bool) -> dict[str, Any]:
        """GET /api/v3/account's answer."""
        bps = int(fee_rate * 10_000)
        assets = sorted(set(self.free) | set(self.locked))
        balances = [
            {"asset": a, "free": fmt(self.balance(a)[0]), "locked": fmt(self.balance(a)[1])}
            for a in assets
            if not omit_zero or any(self.balance(a))
        ]
        return {
            "makerCommission": bps,
            "takerCommission": bps,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": fmt(fee_rate),
                "taker": fmt(fee_rate),
                "buyer": fmt(ZERO),
                "seller": fmt(ZERO),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": now_ms,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 354937868,
        }


@dataclass(eq=False)
class Trade:
    """One fill of one order."""

    id: int
    order: Order
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool

    def fill_json(self) -> dict[str, Any]:
        """An entry of a FULL order response's ``fills``."""
        return {
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.id,
        }

    def json(self) -> dict[str, Any]:
        """An entry of GET /api/v3/myTrades."""
        return {
            "symbol": self.order.market.id,
            "id": self.id,
            "orderId": self.order.id,
            "orderListId": -1,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.quote_qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.order.side == BUY,
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


@dataclass(eq=False)
class Order:
    """One exchange order and its fill state."""

    id: int
    account: Account
    market: Market
    client_order_id: str
    side: str
    type: str
    price: Decimal  # 0 for MARKET, as Binance shows it
    orig_qty: Decimal
    orig_quote_qty: Decimal
    time: int
    reserve_price: Decimal  # the price a BUY's quote reserve was computed at
    parts: list[Decimal]  # the lots still to fill
    reserved: Decimal  # what the order still holds locked: quote for a BUY, base for a SELL
    hidden_until: float = 0.0  # time.monotonic() before which queries do not see the order
    status: str = "NEW"
    executed: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_time: int = 0
    trades: list[Trade] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def visible(self, now: float) -> bool:
        return now >= self.hidden_until

    def _common(self) -> dict[str, Any]:
        return {
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed),
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": "GTC",
            "type": self.type,
            "side": self.side,
        }

    def new_order_json(self, resp_type: str, fills: list[Trade]) -> dict[str, Any]:
        """POST /api/v3/order's answer in ``newOrderRespType`` ACK, RESULT or FULL."""
        ack = {
            "symbol": self.market.id,
            "orderId": self.id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": self.time,
        }
        if resp_type == "ACK":
            return ack
        result = {
            **ack,
            **self._common(),
            "workingTime": self.time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if resp_type == "FULL":
            result["fills"] = [t.fill_json() for t in fills]
        return result

    def json(self) -> dict[str, Any]:
        """GET /api/v3/order's answer (and an entry of openOrders / allOrders)."""
        return {
            "symbol": self.market.id,
            "orderId": self.id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            **self._common(),
            "stopPrice": fmt(ZERO),
            "icebergQty": fmt(ZERO),
            "time": self.time,
            "updateTime": self.update_time,
            "isWorking": True,
            "workingTime": self.time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def cancel_json(self, cancel_client_id: str, now_ms: int) -> dict[str, Any]:
        """DELETE /api/v3/order's answer: ``clientOrderId`` is the cancel's own id."""
        return {
            "symbol": self.market.id,
            "origClientOrderId": self.client_order_id,
            "orderId": self.id,
            "orderListId": -1,
            "clientOrderId": cancel_client_id,
            "transactTime": now_ms,
            **self._common(),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
