"""A local fake of Binance's spot REST API (public data and authenticated trading) with fault
switches, for testing exchange code through the real ccxt client.

`server.FakeBinance` is the exchange; `server.local_binance` builds a real ``ccxt.binance``
pointed at it. The parts: `wire` (Binance's number formats and error bodies), `markets` (symbols and
their filters), `market_data` (klines), `auth` (API key, HMAC signature, recvWindow), `engine`
(accounts, orders, the fill model, balances), `faults` (the fault switches).
"""

from .faults import Fault, FaultKind
from .markets import Market, market_info
from .records import Account, Order, Trade
from .server import (
    ACCOUNT,
    ALL_ORDERS,
    EXCHANGE_INFO,
    KLINES,
    MY_TRADES,
    OPEN_ORDERS,
    ORDER,
    PING,
    TIME,
    FakeBinance,
    RequestRecord,
    local_binance,
)

__all__ = [
    "ACCOUNT",
    "ALL_ORDERS",
    "EXCHANGE_INFO",
    "KLINES",
    "MY_TRADES",
    "OPEN_ORDERS",
    "ORDER",
    "PING",
    "TIME",
    "Account",
    "FakeBinance",
    "Fault",
    "FaultKind",
    "Market",
    "Order",
    "RequestRecord",
    "Trade",
    "local_binance",
    "market_info",
]
