"""A local HTTP server that records what a real ccxt client sends and answers as told.

For tests of order calls through ccxt: point any ccxt exchange's API URLs at it with
`local_exchange`, give the exchange a market with `spot_market`, make the call, then read
`Recorder.requests` (method, path, query, body) to see what reached the wire, or queue the
exchange's answer (`Recorder.answer`: status, body, headers, an optional delay) to see what ccxt
raises for it. Every request is answered; without a queued answer it gets ``default``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import ccxt


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: str = "{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: str

    def field(self, name: str) -> str | None:
        """`name` from the query string, a form body or a JSON body (first order of a batch)."""
        if name in self.query:
            return self.query[name][-1]
        form = parse_qs(self.body)
        if name in form:
            return form[name][-1]
        try:
            data = json.loads(self.body) if self.body else None
        except ValueError:
            return None
        if isinstance(data, list) and data:
            data = data[0]
        return data.get(name) if isinstance(data, dict) else None


class Recorder:
    def __init__(self, default: Answer | None = None) -> None:
        self.default = default or Answer(503, '{"code":-1,"msg":"recorder: no answer queued"}')
        self.requests: list[Request] = []
        self._answers: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> Recorder:
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

    def answer(self, *answers: Answer) -> None:
        """Queue answers for the next requests, in order."""
        with self._lock:
            self._answers.extend(answers)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._answers.clear()

    def _respond(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            return self._answers.popleft() if self._answers else self.default


def _handler_for(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            answer = recorder._respond(
                Request(self.command, parts.path, parse_qs(parts.query), body)
            )
            if answer.delay:
                time.sleep(answer.delay)
            data = answer.body.encode()
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        do_GET = do_POST = do_DELETE = do_PUT = _any

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the per-request stderr line; `Recorder.requests` is the log."""

    return Handler


def _localise(urls: Any, base: str) -> Any:
    local = urlsplit(base)
    if isinstance(urls, str):
        path = urlsplit(urls.replace("{hostname}", "localhost")).path
        return urlunsplit((local.scheme, local.netloc, path, "", ""))
    if isinstance(urls, dict):
        return {k: _localise(v, base) for k, v in urls.items()}
    return urls


# Exchange-specific options that keep create_order to the one order request (Bybit otherwise
# first asks which account type the key has).
_OPTIONS: dict[str, dict[str, Any]] = {
    "bybit": {"enableUnifiedMargin": False, "enableUnifiedAccount": True},
}


def local_exchange(exchange_id: str, base_url: str) -> ccxt.Exchange:
    """A real ccxt exchange with dummy credentials whose every API URL points at `base_url`."""
    exchange = getattr(ccxt, exchange_id)(
        {
            "apiKey": "test-key",
            "secret": base64.b64encode(b"test-secret" * 4).decode(),  # Kraken decodes it
            "password": "test-passphrase",
            "enableRateLimit": False,
            "options": _OPTIONS.get(exchange_id, {}),
        }
    )
    exchange.urls["api"] = _localise(exchange.urls["api"], base_url)
    exchange.session.trust_env = False  # a developer's HTTP(S)_PROXY must not route loopback
    return exchange


def spot_market(market_id: str, symbol: str = "BTC/USDT", **overrides: Any) -> dict[str, Any]:
    """A unified spot market for ``exchange.set_markets([...])``: step 0.00001, tick 0.01."""
    base, quote = symbol.split("/")
    market = {
        "id": market_id,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "baseId": base,
        "quoteId": quote,
        "type": "spot",
        "spot": True,
        "margin": False,
        "swap": False,
        "future": False,
        "option": False,
        "contract": False,
        "active": True,
        "precision": {"amount": 1e-5, "price": 0.01},
        "limits": {
            "amount": {"min": 1e-5, "max": 9000.0},
            "price": {"min": 0.01, "max": 1e6},
            "cost": {"min": 5.0, "max": None},
        },
        "info": {"orderTypes": ["LIMIT", "MARKET"]},  # Binance checks the type against these
    }
    market.update(overrides)
    return market
