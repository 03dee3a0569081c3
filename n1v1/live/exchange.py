"""Build a ccxt exchange object the one way the package does: market data, downloads, live venues.

Everything that talks to an exchange starts from `make_exchange`, so the rules below hold for all:

- **Rate limit on.** ``enableRateLimit`` makes ccxt space requests by the exchange's stated limit;
  being banned for flooding is worse than being slow.
- **Sandbox before anything else.** ``set_sandbox_mode(True)`` swaps ``urls['api']`` for the
  testnet's; done after ``load_markets`` it would leave markets (and their ids) from the real
  exchange. `make_exchange` never loads markets, so the switch always comes first. An exchange
  ccxt has no testnet URLs for is an error (ccxt itself would fail with a TypeError).
- **One base URL for every API section.** A testnet that ccxt does not know, a proxy or a local
  exchange is reached by replacing the scheme and host of every URL in ``urls['api']`` (binance
  has 22 sections in ccxt 4.5: spot, margin, futures, options, ...) and keeping each path, so
  whatever endpoint ccxt calls lands on the base URL, never on the real host.
- **Credentials never shown.** They are set on the object and never logged; errors about them
  name the key, not the value, and `scrub` removes their values from any text (a ccxt error
  message can quote a signed URL) before it is shown.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt

DEFAULT_TIMEOUT_MS = 10_000  # ccxt's own default HTTP timeout


class ExchangeSetupError(ValueError):
    """A bad argument for building or addressing an exchange; ``argument`` names it, so a caller
    can name its own option instead (`n1v1 data download` says ``--exchange``)."""

    def __init__(self, argument: str, detail: str) -> None:
        super().__init__(f"{argument}{detail}")
        self.argument = argument
        self.detail = detail  # the message after the argument's name: " 'x': ..." or ": ..."


def make_exchange(
    exchange_id: str,
    *,
    sandbox: bool = False,
    base_url: str | None = None,
    credentials: Mapping[str, str] | None = None,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    options: Mapping[str, Any] | None = None,
) -> ccxt.Exchange:
    """A ccxt exchange with the rate limiter on; markets are not loaded yet.

    ``credentials`` maps ccxt's credential names (``apiKey``, ``secret``, ``password``, ...: the
    keys of the exchange's ``requiredCredentials``) to values; ``options`` are ccxt options (e.g.
    ``{"defaultType": "swap"}``). `ExchangeSetupError` (naming the argument, never a secret) for
    an unknown exchange or credential name, a bad URL or timeout, or a sandbox the exchange lacks.
    """
    check_exchange_id(exchange_id)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise ExchangeSetupError(
            "timeout_ms", f" {timeout_ms!r}: expected a positive whole number of milliseconds"
        )
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": timeout_ms,
        "options": dict(options or {}),
    }
    exchange = getattr(ccxt, exchange_id)(config)
    known = list(exchange.requiredCredentials)
    for key, value in (credentials or {}).items():
        if key not in known:
            guess = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            raise ExchangeSetupError(
                "credentials",
                f": {key!r} is not a credential ccxt's {exchange_id} takes{hint}; "
                f"it takes {', '.join(known)}",
            )
        if not isinstance(value, str) or not value:
            raise ExchangeSetupError("credentials", f": {key!r} must be a non-empty string")
        setattr(exchange, key, value)
    if sandbox:
        if not exchange.urls.get("test"):
            raise ExchangeSetupError(
                "sandbox",
                f": ccxt {ccxt.__version__} has no sandbox (testnet) URLs for {exchange_id}; "
                "give a base URL to point it at a test server instead",
            )
        exchange.set_sandbox_mode(True)
    if base_url is not None:
        exchange.urls["api"] = rebase_urls(exchange.urls["api"], base_url)
    return exchange


def rebase_urls(api: Any, base_url: str) -> Any:
    """``urls['api']`` (a URL, or nested dicts of them) with every scheme and host replaced by
    ``base_url``'s; a path in ``base_url`` (a proxy's prefix) goes before each URL's own path."""
    base = urlsplit(base_url)
    if base.scheme not in ("http", "https") or not base.netloc or base.query or base.fragment:
        raise ExchangeSetupError(
            "base_url",
            f" {base_url!r}: expected http(s)://host[:port][/path prefix], "
            "e.g. http://127.0.0.1:8080",
        )
    prefix = base.path.rstrip("/")

    def rebase(value: Any) -> Any:
        if isinstance(value, str):
            path = urlsplit(value).path
            return urlunsplit((base.scheme, base.netloc, prefix + path, "", ""))
        if isinstance(value, dict):
            return {name: rebase(url) for name, url in value.items()}
        return value

    return rebase(api)


def check_exchange_id(exchange_id: str) -> None:
    """`ExchangeSetupError` naming ``exchange_id`` (with close matches) unless ccxt knows it."""
    if exchange_id not in ccxt.exchanges:
        guess = difflib.get_close_matches(str(exchange_id), ccxt.exchanges, n=3)
        hint = f"; did you mean {', '.join(guess)}?" if guess else ""
        raise ExchangeSetupError(
            "exchange_id",
            f" {exchange_id!r}: not an exchange ccxt {ccxt.__version__} knows "
            f"(see ccxt.exchanges){hint}",
        )


def check_symbols(exchange: ccxt.Exchange, symbols: list[str]) -> None:
    """Load the markets (ccxt caches them); `ExchangeSetupError` names the first symbol the
    exchange does not list, with the closest market it does."""
    markets = exchange.load_markets()
    for symbol in symbols:
        if symbol not in markets:
            guess = difflib.get_close_matches(symbol, list(markets), n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            raise ExchangeSetupError(
                "symbol", f" {symbol!r}: {exchange.id} has no such market{hint}"
            )


def scrub(text: str, exchange: ccxt.Exchange) -> str:
    """``text`` with the value of every credential set on ``exchange`` replaced by ``***``."""
    for key in exchange.requiredCredentials:
        value = getattr(exchange, key, None)
        if isinstance(value, str) and value:
            text = text.replace(value, "***")
    return text
