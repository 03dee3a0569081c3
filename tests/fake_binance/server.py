"""`FakeBinance`, the HTTP server speaking Binance's spot REST API, and `local_binance`.

Endpoints served, with Binance's request parameters, response shapes and error codes:

- public: ``GET /api/v3/ping``, ``/time``, ``/exchangeInfo``, ``/klines``;
- SIGNED (see `auth`): ``POST /api/v3/order`` (LIMIT GTC and MARKET, ``quantity`` or
  ``quoteOrderQty``, ``newOrderRespType`` ACK/RESULT/FULL), ``GET`` and ``DELETE /api/v3/order``
  (by ``orderId`` or ``origClientOrderId``), ``GET /api/v3/openOrders``, ``/allOrders``,
  ``/myTrades`` and ``/account``.

Anything else is a 404 HTML page, recorded like every request: `FakeBinance.requests` holds each
one's method, path and parameters (without ``signature``; the API key travels in a header and is
not kept), the account it authenticated as, the status answered (None when the socket was closed
unanswered) and the fault applied. What the exchange did is in `FakeBinance.orders` and `trades`,
so a test can assert "exactly one exchange order per client id" and compare balances and fills with
what a client stored. Faults (`faults`) are armed per endpoint with `queue_fault` or at random with
`randomize_faults`; the fill model (`engine`) is driven with `set_price` and `advance`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import ccxt

from . import auth
from .engine import Engine, client_id_param
from .faults import Fault, FaultKind, FaultPlan
from .market_data import Bars
from .markets import OHLCV, Market
from .records import Account, Order, Trade, as_decimal
from .wire import ApiError

PING = "/api/v3/ping"
TIME = "/api/v3/time"
EXCHANGE_INFO = "/api/v3/exchangeInfo"
FUTURES_INFO = ("/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo")
KLINES = "/api/v3/klines"
ORDER = "/api/v3/order"
OPEN_ORDERS = "/api/v3/openOrders"
ALL_ORDERS = "/api/v3/allOrders"
MY_TRADES = "/api/v3/myTrades"
ACCOUNT = "/api/v3/account"
_RESP_TYPES = ("ACK", "RESULT", "FULL")
_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


@dataclass
class RequestRecord:
    """One request as the exchange received it."""

    method: str
    path: str
    params: dict[str, str]
    account: str | None = None
    status: int | None = None
    fault: FaultKind | None = None


@dataclass
class Reply:
    status: int = 200
    body: str = ""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    answered: bool = True  # False: close the socket without a response
    hold: float = 0.0  # seconds to wait before answering (or closing)


def _json(payload: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(payload, separators=(",", ":")))  # compact, as Binance


def _error(err: ApiError) -> Reply:
    return _json(err.body(), err.status)


def _server_error(status: int) -> Reply:
    try:
        title = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        title = f"{status} Server Error"
    return Reply(status, f"<html><body><h1>{title}</h1></body></html>", "text/html")


def _refusal(fault: Fault) -> Reply:
    """The answer to a request a before-accept fault stops."""
    if fault.kind == "raw":
        return Reply(fault.status, fault.body, fault.content_type)
    if fault.kind == "error_5xx_before_accept":
        return _server_error(fault.status)
    if fault.kind == "rate_limit":
        body = {
            "code": -1003,
            "msg": "Too much request weight used; current limit is 6000 request weight per 1 "
            "MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
        }
        reply = _json(body, 429)
        reply.headers["Retry-After"] = str(fault.retry_after)
        return reply
    return Reply(answered=False)  # drop_before_accept


def _after_accept(fault: Fault, reply: Reply) -> Reply:
    """What the client gets for a request carried out under an accepting fault."""
    if fault.kind == "accept_then_timeout":
        return Reply(answered=False, hold=fault.delay)
    if fault.kind == "drop_after_accept":
        return Reply(answered=False)
    if fault.kind == "error_5xx_after_accept":
        return _server_error(fault.status)
    return reply


class FakeBinance:
    """The exchange's state and its HTTP server on a free 127.0.0.1 port.

    ``FakeBinance([("BTCUSDT", "BTC", "USDT")]).start()``; `add_account` for trading; `client`
    for a real ccxt client pointed at it; `close` at the end. The server clock is the wall clock
    plus ``clock_skew_ms``, which a test sets to make the client's timestamps look early or late.
    """

    def __init__(self, markets: Iterable[tuple[str, str, str]] = ()) -> None:
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.clock_skew_ms = 0
        self.engine = Engine(self.now_ms)
        self.faults = FaultPlan()
        self._bars = Bars()
        self.requests: list[RequestRecord] = []
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
        self._closing.set()  # releases answers held by accept_then_timeout
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_skew_ms

    def client(self, account: Account | None = None, timeout_ms: int = 10_000) -> ccxt.binance:
        return local_binance(self.url, account, timeout_ms=timeout_ms)

    # -- what the exchange holds -------------------------------------------------------------
    def add_market(
        self,
        market_id: str,
        base: str,
        quote: str,
        price: Any = None,
        published: dict[str, dict[str, Any] | None] | None = None,
        **filters: Any,
    ) -> Market:
        """A spot market; ``filters`` override the defaults (``step_size="0.001"``, ...);
        ``published`` overrides exchangeInfo's filters by filterType as given."""
        market = Market.build(market_id, base, quote, published, **filters)
        with self._lock:
            self.engine.markets[market_id] = market
            if price is not None:
                self.engine.prices[market_id] = as_decimal(price)
        return market

    def add_account(
        self,
        name: str,
        balances: Mapping[str, Any] | None = None,
        api_key: str | None = None,
        secret: str | None = None,
    ) -> Account:
        """A trading account with fresh credentials (unless given) and free ``balances``."""
        account = Account(
            name,
            api_key or auth.new_credential(),
            secret or auth.new_credential(),
            {asset: as_decimal(v) for asset, v in (balances or {}).items()},
        )
        with self._lock:
            if account.api_key in self.engine.accounts:
                raise ValueError(f"account {name!r}: that API key is already taken")
            self.engine.accounts[account.api_key] = account
        return account

    def revoke_key(self, account: Account) -> None:
        """Delete the account's API key: its requests get -2015 from now on."""
        with self._lock:
            del self.engine.accounts[account.api_key]

    def put_bars(
        self, market_id: str, interval: str, start_ms: int, bars: Iterable[OHLCV]
    ) -> list[int]:
        """Store consecutive bars from ``start_ms`` on; returns their open times."""
        with self._lock:
            return self._bars.put(market_id, interval, start_ms, bars)

    def put_bar(self, market_id: str, interval: str, open_ms: int, bar: OHLCV) -> None:
        with self._lock:
            self._bars.put(market_id, interval, open_ms, [bar])

    # -- the fill model ----------------------------------------------------------------------
    def set_price(self, symbol: str, price: Any) -> list[Trade]:
        """Set the price MARKET orders fill at; open orders it lets fill fill one part."""
        with self._lock:
            return self.engine.set_price(symbol, as_decimal(price))

    def advance(self, symbol: str | None = None) -> list[Trade]:
        """One fill step: every open order that can fill fills one part."""
        with self._lock:
            return self.engine.advance(symbol)

    def set_fee_rate(self, rate: Any) -> None:
        with self._lock:
            self.engine.fee_rate = as_decimal(rate)

    def set_fee_asset(self, asset: str) -> None:
        """ "received" (Binance without BNB: a buy pays in the base asset) or "quote"."""
        if asset not in ("received", "quote"):
            raise ValueError(f"fee asset: 'received' or 'quote', not {asset!r}")
        with self._lock:
            self.engine.fee_asset = asset

    def set_partial_fills(self, parts: int) -> None:
        """Orders created from now on fill in ``parts`` lots (1: at once)."""
        if parts < 1:
            raise ValueError(f"parts must be at least 1, got {parts}")
        with self._lock:
            self.engine.partial_fills = parts

    # -- faults ------------------------------------------------------------------------------
    def queue_fault(
        self, method: str | None, path: str, kind: FaultKind, times: int = 1, **options: Any
    ) -> None:
        """Apply a fault (see `faults`) to the next ``times`` requests to ``method path``."""
        with self._lock:
            self.faults.queue(method, path, Fault(kind, **options), times)

    def randomize_faults(
        self,
        seed: int,
        probability: float,
        faults: Sequence[Fault],
        endpoints: Iterable[tuple[str, str]],
    ) -> None:
        with self._lock:
            self.faults.randomize(seed, probability, faults, endpoints)

    def fail_next(
        self, path: str, status: int, body: str, content_type: str = "application/json"
    ) -> None:
        """Answer the next request to ``path`` with this status and raw body instead."""
        with self._lock:
            self.faults.queue(
                None, path, Fault("raw", status=status, body=body, content_type=content_type)
            )

    # -- what happened -----------------------------------------------------------------------
    def paths(self) -> set[str]:
        """The distinct paths requested so far."""
        with self._lock:
            return {r.path for r in self.requests}

    def kline_requests(self) -> int:
        with self._lock:
            return sum(r.path == KLINES for r in self.requests)

    def requests_to(self, method: str, path: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def orders(
        self, account: Account | None = None, client_order_id: str | None = None
    ) -> list[Order]:
        """Every order the exchange created, hidden ones included, oldest first (live records:
        read them once the requests that change them have returned)."""
        with self._lock:
            return [
                o
                for o in self.engine.orders
                if (account is None or o.account is account)
                and (client_order_id is None or o.client_order_id == client_order_id)
            ]

    def trades(self, account: Account | None = None) -> list[Trade]:
        with self._lock:
            return [t for t in self.engine.trades if account is None or t.order.account is account]

    def balance(self, account: Account, asset: str) -> tuple[Decimal, Decimal]:
        """``(free, locked)``."""
        with self._lock:
            return account.balance(asset)

    # -- request handling (called from the server's threads) --------------------------------
    def handle(self, method: str, target: str, body: str, api_key: str | None) -> Reply:
        parts = urlsplit(target)
        path, query = parts.path, parts.query
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(parse_qsl(query, keep_blank_values=True))  # the query string wins
        record = RequestRecord(method, path, {k: v for k, v in params.items() if k != "signature"})
        with self._lock:
            self.requests.append(record)
            fault = self.faults.take(method, path)
            record.fault = fault.kind if fault is not None else None
            if fault is not None and not fault.accepts:
                reply = _refusal(fault)
            else:
                reply = self._route(method, path, params, query, body, api_key, fault, record)
                if fault is not None:
                    reply = _after_accept(fault, reply)
            record.status = reply.status if reply.answered else None
        return reply

    def hold(self, seconds: float) -> None:
        self._closing.wait(seconds)

    def _route(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        query: str,
        body: str,
        api_key: str | None,
        fault: Fault | None,
        record: RequestRecord,
    ) -> Reply:
        public = self._public_routes().get((method, path))
        signed = self._signed_routes().get((method, path))
        if public is None and signed is None:
            return Reply(404, "<html><body><h1>404 Not Found</h1></body></html>", "text/html")
        try:
            if public is not None:
                return _json(public(params))
            assert signed is not None
            auth.check_key(api_key, self.engine.accounts)
            account = self.engine.accounts[api_key]  # type: ignore[index]
            auth.check_signature(account.secret, params, query, body)
            auth.check_timing(params, self.now_ms())
            record.account = account.name
            return _json(signed(account, params, fault))
        except ApiError as err:
            return _error(err)

    def _public_routes(self) -> dict[tuple[str, str], Callable[[dict[str, str]], Any]]:
        return {
            ("GET", PING): lambda p: {},
            ("GET", TIME): lambda p: {"serverTime": self.now_ms()},
            ("GET", EXCHANGE_INFO): lambda p: self._exchange_info(),
            # ccxt's binance `load_markets` also reads the futures sections' lists: none here
            ("GET", FUTURES_INFO[0]): lambda p: self._exchange_info(futures=True),
            ("GET", FUTURES_INFO[1]): lambda p: self._exchange_info(futures=True),
            ("GET", KLINES): lambda p: self._bars.klines(self.engine.markets, p),
        }

    def _signed_routes(
        self,
    ) -> dict[tuple[str, str], Callable[[Account, dict[str, str], Fault | None], Any]]:
        engine = self.engine
        return {
            ("POST", ORDER): self._new_order,
            ("GET", ORDER): lambda a, p, f: engine.query(a, p).json(),
            ("DELETE", ORDER): self._cancel_order,
            ("GET", OPEN_ORDERS): lambda a, p, f: [o.json() for o in engine.open_orders(a, p)],
            ("GET", ALL_ORDERS): lambda a, p, f: [o.json() for o in engine.all_orders(a, p)],
            ("GET", MY_TRADES): lambda a, p, f: [t.json() for t in engine.my_trades(a, p)],
            # what ccxt's load_markets asks a keyed binance besides exchangeInfo: the account's
            # coins and margin pairs (none here; the fake trades spot only)
            ("GET", "/sapi/v1/capital/config/getall"): lambda a, p, f: [],
            ("GET", "/sapi/v1/margin/allPairs"): lambda a, p, f: [],
            ("GET", "/sapi/v1/margin/isolated/allPairs"): lambda a, p, f: [],
            ("GET", ACCOUNT): lambda a, p, f: a.json(
                engine.fee_rate, self.now_ms(), p.get("omitZeroBalances") == "true"
            ),
        }

    def _new_order(self, account: Account, p: dict[str, str], fault: Fault | None) -> Any:
        resp_type = p.get("newOrderRespType", "FULL")
        if resp_type not in _RESP_TYPES:
            raise ApiError(-1130, "Data sent for parameter 'newOrderRespType' is not valid.")
        order = self.engine.place(account, p, hide_for=fault.hide_for if fault else 0.0)
        return order.new_order_json(resp_type, list(order.trades))

    def _cancel_order(self, account: Account, p: dict[str, str], fault: Fault | None) -> Any:
        cancel_id = client_id_param(p, "newClientOrderId")
        race = fault is not None and fault.kind == "fill_before_cancel"
        order = self.engine.cancel(account, p, fill_first=fault.fill_parts if race else 0)
        return order.cancel_json(cancel_id, self.now_ms())

    def _exchange_info(self, futures: bool = False) -> dict[str, Any]:
        markets = [] if futures else [m.info() for m in self.engine.markets.values()]
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": _RATE_LIMITS,
            "exchangeFilters": [],
            "symbols": markets,
        }


def _handler_for(exchange: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            reply = exchange.handle(method, self.path, body, self.headers.get("X-MBX-APIKEY"))
            if reply.hold:
                exchange.hold(reply.hold)
            if not reply.answered:
                self.close_connection = True
                return
            data = reply.body.encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the per-request stderr line; `FakeBinance.requests` is the log."""

    return Handler


def local_binance(
    base_url: str, account: Account | None = None, *, timeout_ms: int = 10_000
) -> ccxt.binance:
    """A real ``ccxt.binance`` that talks only to ``base_url``, signed as ``account`` if given.

    Every entry of ``urls['api']`` keeps its path but gets the local scheme and host, so a call to
    any endpoint the fake does not serve lands on it (as a recorded 404), never on the internet.
    Options that keep ``load_markets()`` to ``GET /api/v3/exchangeInfo``:
    ``fetchMarkets.types = ['spot']`` (the default also loads the USDⓈ-M and COIN-M futures
    exchangeInfo from fapi/dapi), ``fetchCurrencies = False`` (with keys it would call
    ``sapi/v1/capital/config/getall``) and ``fetchMargins = False`` (the keyed margin-pairs calls);
    ``fetchOpenOrders.warnWithoutSymbol = False`` lets ``fetch_open_orders()`` ask for all symbols.
    The rate limiter is off (the server is ours) and ``timeout_ms`` is the client's HTTP timeout,
    which a test shortens to see the fake's held answers as timeouts. ccxt's URL-based spot error
    table does not apply to a local URL, but its spot table only adds codes the fake never sends,
    so errors map to the same exception classes as against api.binance.com.
    """
    config: dict[str, Any] = {
        "enableRateLimit": False,
        "timeout": timeout_ms,
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "fetchOpenOrders": {"warnWithoutSymbol": False},
        },
    }
    if account is not None:
        config["apiKey"] = account.api_key
        config["secret"] = account.secret
    exchange = ccxt.binance(config)
    local = urlsplit(base_url)
    exchange.urls["api"] = {
        name: urlunsplit((local.scheme, local.netloc, urlsplit(url).path, "", ""))
        for name, url in exchange.urls["api"].items()
        if isinstance(url, str)
    }
    exchange.session.trust_env = False  # a developer's HTTP(S)_PROXY must not route loopback
    return exchange
