"""The fake's spot markets: exchangeInfo entries with Binance's real filters, and the filter checks.

A `Market` carries the three filters that matter for spot order entry, as Binance lists them in
``GET /api/v3/exchangeInfo`` and enforces them on ``POST /api/v3/order`` (filters.md of
binance-spot-api-docs): PRICE_FILTER (``minPrice <= price <= maxPrice``, ``price % tickSize ==
0``), LOT_SIZE (``minQty <= quantity <= maxQty``, ``quantity % stepSize == 0``) and NOTIONAL
(``minNotional <= price * quantity <= maxNotional``; for MARKET orders the minimum applies at the
average price, here the price the test set, and the maximum does not). A failure is Binance's
``-1013 "Filter failure: <FILTER>"``, checked in that order. ccxt reads tickSize / stepSize as the
market's precision and minQty / minNotional as its limits; it reads MIN_NOTIONAL or NOTIONAL alike,
so only NOTIONAL, the filter Binance lists today, is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .wire import ApiError, fmt

INTERVAL_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
OHLCV = tuple[float, float, float, float, float]


def _dec(value: Decimal | str | float | int) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True)
class Market:
    """One spot symbol and its filters (defaults are BTCUSDT's, abridged)."""

    id: str
    base: str
    quote: str
    tick_size: Decimal = Decimal("0.01")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    step_size: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")
    # exchangeInfo's filters as published, by filterType: merged over the defaults, None drops
    # one (for ccxt's market parsing only; the engine enforces the typed fields above)
    published: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def build(
        cls,
        market_id: str,
        base: str,
        quote: str,
        published: dict[str, dict[str, Any] | None] | None = None,
        **filters: Any,
    ) -> Market:
        """A market from filter values given as str/float/Decimal (``tick_size="0.1"``), and
        exchangeInfo filters to publish as given (`published`)."""
        typed = {k: _dec(v) for k, v in filters.items()}
        return cls(market_id, base, quote, **typed, published=tuple((published or {}).items()))

    def info(self) -> dict[str, Any]:
        """The market's entry in exchangeInfo's ``symbols``, as Binance spot returns it."""
        info: dict[str, Any] = {
            "symbol": self.id,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            # Only what the fake executes, so ccxt refuses other types before sending them.
            "orderTypes": ["LIMIT", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt(self.min_price),
                    "maxPrice": fmt(self.max_price),
                    "tickSize": fmt(self.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fmt(self.min_qty),
                    "maxQty": fmt(self.max_qty),
                    "stepSize": fmt(self.step_size),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": fmt(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": fmt(self.max_notional),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }
        by_type = {f["filterType"]: f for f in info["filters"]}
        for filter_type, fields in self.published:
            if fields is None:
                by_type.pop(filter_type, None)
            else:
                by_type[filter_type] = {**by_type.get(filter_type, {}), **fields}
                by_type[filter_type]["filterType"] = filter_type
        info["filters"] = list(by_type.values())
        return info

    def check(
        self, order_type: str, price: Decimal | None, qty: Decimal, mark: Decimal | None
    ) -> None:
        """Raise Binance's -1013 filter failure for an order of ``qty`` (at ``price`` if LIMIT;
        ``mark`` is the price a MARKET order's notional is judged at)."""
        if order_type == "LIMIT":
            assert price is not None
            if price < self.min_price or price > self.max_price or price % self.tick_size:
                raise _filter_failure("PRICE_FILTER")
        if qty < self.min_qty or qty > self.max_qty or qty % self.step_size:
            raise _filter_failure("LOT_SIZE")
        if order_type == "LIMIT":
            assert price is not None
            notional = price * qty
            if notional < self.min_notional or notional > self.max_notional:
                raise _filter_failure("NOTIONAL")
        elif mark is not None and mark * qty < self.min_notional:
            raise _filter_failure("NOTIONAL")

    def floor_to_step(self, qty: Decimal) -> Decimal:
        return qty - qty % self.step_size


def _filter_failure(name: str) -> ApiError:
    return ApiError(-1013, f"Filter failure: {name}")


def market_info(market_id: str, base: str, quote: str) -> dict[str, Any]:
    """exchangeInfo's entry for a market with the default filters."""
    return Market(market_id, base, quote).info()


def kline_row(open_ms: int, interval_ms: int, bar: OHLCV) -> list[Any]:
    """A Binance kline: open time, OHLCV as decimal strings, close time, then the extra fields."""
    o, h, low, c, v = bar
    return [
        open_ms,
        f"{o:.8f}",
        f"{h:.8f}",
        f"{low:.8f}",
        f"{c:.8f}",
        f"{v:.8f}",
        open_ms + interval_ms - 1,
        f"{c * v:.8f}",
        1,
        "0.00000000",
        "0.00000000",
        "0",
    ]
