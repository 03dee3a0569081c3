"""The local fake of Binance's spot REST API, under the name the market-data tests import.

The implementation is the `fake_binance` package beside this file (public data, authenticated
trading, fault switches); see its modules' docstrings.
"""

from fake_binance import (
    EXCHANGE_INFO,
    KLINES,
    Account,
    FakeBinance,
    Fault,
    Market,
    local_binance,
    market_info,
)

__all__ = [
    "EXCHANGE_INFO",
    "KLINES",
    "Account",
    "FakeBinance",
    "Fault",
    "Market",
    "local_binance",
    "market_info",
]
