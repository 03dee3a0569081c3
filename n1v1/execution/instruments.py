"""Exchange trading rules (lot size, price tick, minimum notional) and the quote currency of a
symbol, which decides the one account currency a portfolio may be kept in.

These are the simulated venue's rules, from the settings; orders for a live exchange are rounded
and checked against the exchange's own markets by `n1v1.execution.exchange_rules`."""

from __future__ import annotations

import math
from collections.abc import Iterable

from n1v1.config import ConfigError, InstrumentSpec

# Quantities like 0.3 / 0.1 land a hair under an integer in binary floating point; without this
# tolerance flooring to the lot would lose a whole lot now and then.
_FLOOR_EPS = 1e-9


def round_qty_down(qty: float, spec: InstrumentSpec) -> float:
    """Round down to the lot size so an order never exceeds what sizing allowed."""
    if spec.lot_size <= 0.0 or qty <= 0.0:
        return max(qty, 0.0)
    lots = math.floor(qty / spec.lot_size + _FLOOR_EPS)
    return lots * spec.lot_size


def round_price(price: float, spec: InstrumentSpec) -> float:
    if spec.tick_size <= 0.0:
        return price
    return round(price / spec.tick_size) * spec.tick_size


def below_min_notional(qty: float, price: float, spec: InstrumentSpec) -> bool:
    return qty * price < spec.min_notional


def quote_currency(symbol: str) -> str | None:
    """The currency `symbol` is priced in: QUOTE of "BASE/QUOTE" (and of ccxt's
    "BASE/QUOTE:SETTLE"); None for a bare name such as "ASSET", which declares none."""
    _, slash, rest = symbol.partition("/")
    quote = rest.partition(":")[0] if slash else ""
    return quote or None


def account_currency(configured: str | None, symbols: Iterable[str]) -> str | None:
    """The one currency an account trading `symbols` is kept in, or ConfigError.

    An account holds one currency and N1V1 converts none: cash, fees, position values and P&L of
    every symbol are added up, so they must all be in the same currency. `configured`
    (`backtest.currency`) must then be every symbol's quote currency; when it is None the symbols
    must share one quote currency, which becomes the account's. Symbols without a declared quote
    (no "/") are taken to be in the account currency. Returns None when nothing declares one.
    """
    quotes: dict[str, list[str]] = {}
    for symbol in symbols:
        quote = quote_currency(symbol)
        if quote is not None:
            quotes.setdefault(quote, []).append(symbol)
    advice = (
        "an account holds one currency and N1V1 does not convert between currencies: trade "
        "each quote currency in its own account (its own backtest or session, with "
        "backtest.currency set to it)"
    )
    if configured is not None:
        foreign = {q: s for q, s in quotes.items() if q != configured}
        if foreign:
            named = "; ".join(f"{', '.join(s)} quoted in {q}" for q, s in sorted(foreign.items()))
            raise ConfigError(
                f"backtest.currency: the account currency is {configured} but {named}; {advice}"
            )
        return configured
    if len(quotes) > 1:
        named = "; ".join(f"{q}: {', '.join(s)}" for q, s in sorted(quotes.items()))
        raise ConfigError(f"symbols: quoted in more than one currency ({named}); {advice}")
    return next(iter(quotes), None)
