"""A local fake of Binance's public spot REST API, for testing market-data code through real ccxt.

It serves the two endpoints that ccxt's ``binance.load_markets()`` (spot only) and
``fetch_ohlcv()`` call, ``GET /api/v3/exchangeInfo`` and ``GET /api/v3/klines``, with Binance's
response shapes, from an in-memory table of bars the test controls. Klines honour
``startTime``/``endTime``/``limit`` the way Binance does (both bounds inclusive on the open time,
oldest first, ``limit`` default 500 and capped at 1000; with no ``startTime`` the newest bars are
returned). Every request path is recorded, so a test can assert that ccxt talked to nothing else,
and faults (HTTP 500, malformed bodies) can be queued for the next requests to a path.

`local_binance` builds a real ``ccxt.binance`` whose every API URL points at the server, with the
options that keep ``load_markets`` on the one public spot endpoint (see its docstring).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import ccxt

KLINES = "/api/v3/klines"
EXCHANGE_INFO = "/api/v3/exchangeInfo"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
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
# Binance's error codes for the two mistakes a caller can make against /klines.
_BAD_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}
_BAD_INTERVAL = {"code": -1120, "msg": "Invalid interval."}

OHLCV = tuple[float, float, float, float, float]


def market_info(
    market_id: str, base: str, quote: str, filters: dict[str, dict[str, Any] | None] | None = None
) -> dict[str, Any]:
    """One entry of exchangeInfo's ``symbols``, as Binance spot returns it (filters abridged).

    ``filters`` maps a filterType to the fields to change in (or the whole of, for a filter not
    listed by default) that filter; None removes the filter.
    """
    info = {
        "symbol": market_id,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01000000",
                "maxPrice": "1000000.00000000",
                "tickSize": "0.01000000",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001000",
                "maxQty": "9000.00000000",
                "stepSize": "0.00001000",
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
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
    for filter_type, fields in (filters or {}).items():
        if fields is None:
            by_type.pop(filter_type, None)
        else:
            by_type[filter_type] = {**by_type.get(filter_type, {}), **fields}
            by_type[filter_type]["filterType"] = filter_type
    info["filters"] = list(by_type.values())
    return info


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


class FakeBinance:
    """The exchange's state (markets, bars, queued faults, request log) and its HTTP server.

    Bars live per market id (``BTCUSDT``) and interval, keyed by open time in epoch ms; what the
    table holds is what the "exchange" has, including a still-forming bar if the test puts one in.
    """

    def __init__(self, markets: Iterable[tuple[str, str, str]] = ()) -> None:
        self._lock = threading.Lock()
        self._markets: dict[str, dict[str, Any]] = {}
        self._bars: dict[tuple[str, str], dict[int, OHLCV]] = {}
        self._faults: dict[str, deque[tuple[int, str, str]]] = {}
        self.requests: list[str] = []
        for market_id, base, quote in markets:
            self.add_market(market_id, base, quote)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeBinance:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- what the exchange holds -------------------------------------------------------------
    def add_market(
        self,
        market_id: str,
        base: str,
        quote: str,
        filters: dict[str, dict[str, Any] | None] | None = None,
    ) -> None:
        with self._lock:
            self._markets[market_id] = market_info(market_id, base, quote, filters)

    def put_bars(
        self, market_id: str, interval: str, start_ms: int, bars: Iterable[OHLCV]
    ) -> list[int]:
        """Store consecutive bars from ``start_ms`` on; returns their open times."""
        step = INTERVAL_MS[interval]
        stamps = []
        with self._lock:
            table = self._bars.setdefault((market_id, interval), {})
            for i, bar in enumerate(bars):
                table[start_ms + i * step] = tuple(float(x) for x in bar)  # type: ignore[assignment]
                stamps.append(start_ms + i * step)
        return stamps

    def put_bar(self, market_id: str, interval: str, open_ms: int, bar: OHLCV) -> None:
        with self._lock:
            self._bars.setdefault((market_id, interval), {})[open_ms] = bar

    def fail_next(
        self, path: str, status: int, body: str, content_type: str = "application/json"
    ) -> None:
        """Answer the next request to ``path`` with this status and raw body instead."""
        with self._lock:
            self._faults.setdefault(path, deque()).append((status, body, content_type))

    def paths(self) -> set[str]:
        """The distinct paths requested so far."""
        with self._lock:
            return set(self.requests)

    def kline_requests(self) -> int:
        with self._lock:
            return sum(p == KLINES for p in self.requests)

    # -- request handling (called from the server thread) -------------------------------------
    def respond(self, path: str, query: dict[str, list[str]]) -> tuple[int, str, str]:
        with self._lock:
            self.requests.append(path)
            faults = self._faults.get(path)
            if faults:
                return faults.popleft()
            if path == EXCHANGE_INFO:
                return 200, json.dumps(self._exchange_info()), "application/json"
            if path == KLINES:
                status, payload = self._klines({k: v[-1] for k, v in query.items()})
                return status, json.dumps(payload), "application/json"
        return 404, "<html><body><h1>404 Not Found</h1></body></html>", "text/html"

    def _exchange_info(self) -> dict[str, Any]:
        return {
            "timezone": "UTC",
            "serverTime": 1_700_000_000_000,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {
                    "rateLimitType": "RAW_REQUESTS",
                    "interval": "MINUTE",
                    "intervalNum": 5,
                    "limit": 61000,
                },
            ],
            "exchangeFilters": [],
            "symbols": list(self._markets.values()),
        }

    def _klines(self, q: dict[str, str]) -> tuple[int, Any]:
        market_id, interval = q.get("symbol", ""), q.get("interval", "")
        if market_id not in self._markets:
            return 400, _BAD_SYMBOL
        if interval not in INTERVAL_MS:
            return 400, _BAD_INTERVAL
        limit = min(int(q.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        table = self._bars.get((market_id, interval), {})
        stamps = sorted(
            t for t in table if (start is None or t >= start) and (end is None or t <= end)
        )
        stamps = stamps[:limit] if start is not None else stamps[-limit:]
        step = INTERVAL_MS[interval]
        return 200, [kline_row(t, step, table[t]) for t in stamps]


def _handler_for(exchange: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            status, body, content_type = exchange.respond(parts.path, parse_qs(parts.query))
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the per-request stderr line; `FakeBinance.requests` is the log."""

    return Handler


def local_binance(base_url: str) -> ccxt.binance:
    """A real ``ccxt.binance`` that talks only to ``base_url``.

    Every entry of ``urls['api']`` keeps its path but gets the local scheme and host, so a call to
    any endpoint other than the two served lands on the fake (as a recorded 404), never on the
    internet. Options that keep ``load_markets()`` to ``GET /api/v3/exchangeInfo``:
    ``fetchMarkets.types = ['spot']`` (the default also loads the USDⓈ-M and COIN-M futures
    exchangeInfo from fapi/dapi), ``fetchCurrencies = False`` (it would call the keyed
    ``sapi/v1/capital/config/getall``; without keys ccxt skips it anyway) and ``fetchMargins =
    False`` (the keyed margin-pairs calls). The rate limiter is off: the server is ours.
    """
    exchange = ccxt.binance(
        {
            "enableRateLimit": False,
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
        }
    )
    local = urlsplit(base_url)
    exchange.urls["api"] = {
        name: urlunsplit((local.scheme, local.netloc, urlsplit(url).path, "", ""))
        for name, url in exchange.urls["api"].items()
        if isinstance(url, str)
    }
    exchange.session.trust_env = False  # a developer's HTTP(S)_PROXY must not route loopback
    return exchange
