"""An exchange account for a session: one ccxt instance per account, shared by the feed and the
broker (both run in the session's loop thread, so ccxt's rate limiter sees every call)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import ccxt

from n1v1.execution.live_venue import LiveVenue
from n1v1.live.broker import EventLog, ExchangeBroker
from n1v1.live.credentials import exchange_credentials
from n1v1.live.exchange import make_exchange


class VenueConfig(Protocol):
    """The `venue` section of the app's arguments (n1v1/serve/args.py VenueArgs)."""

    exchange: str
    sandbox: bool
    base_url: str | None
    timeout_ms: int
    grace_s: float


def live_exchange(venue: VenueConfig, env: Mapping[str, str] | None = None) -> ccxt.Exchange:
    """The account's ccxt instance (credentials from the environment; markets not loaded)."""
    return make_exchange(
        venue.exchange,
        sandbox=venue.sandbox,
        base_url=venue.base_url,
        credentials=exchange_credentials(env),
        timeout_ms=venue.timeout_ms,
        # signed requests carry a timestamp the exchange checks against its own clock: measure
        # the difference when the markets load (and again after a clock error, the broker)
        options={"adjustForTimeDifference": True},
    )


def broker_factory(exchange: ccxt.Exchange, venue: VenueConfig) -> Any:
    """What a TradingSession calls when it takes the lease: markets loaded, then the broker."""

    def build(
        live_venue: LiveVenue, log: EventLog, reference_price: Callable[[str], float | None]
    ) -> ExchangeBroker:
        exchange.load_markets()
        return ExchangeBroker(
            exchange, live_venue, log, reference_price=reference_price, grace_s=venue.grace_s
        )

    return build
