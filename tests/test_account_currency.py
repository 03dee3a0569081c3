"""One account, one currency: symbols quoted in another currency are refused, never added.

The default paper session once traded BTC/EUR beside BTC/USD against one USD cash balance and
added euros into dollar equity. Every entry point (backtest runner, engine, paper session, Serve
arguments) now asks `account_currency` and refuses a mix by name.
"""

from __future__ import annotations

import pytest
from builders import make_bars, run_engine, settings

from n1v1.backtest.runner import run_backtest
from n1v1.config import ConfigError
from n1v1.execution.instruments import account_currency, quote_currency
from n1v1.serve.args import AppArgs
from n1v1.strategies.registry import create_strategy

BARS = make_bars([(100, 101, 99, 100)] * 30)


@pytest.mark.parametrize(
    ("symbol", "quote"),
    [("BTC/USD", "USD"), ("BTC/EUR", "EUR"), ("BTC/USDT:USDT", "USDT"), ("ASSET", None)],
)
def test_the_quote_currency_is_read_from_the_symbol(symbol: str, quote: str | None) -> None:
    assert quote_currency(symbol) == quote


def test_the_account_currency_is_the_one_quote_the_symbols_share() -> None:
    assert account_currency(None, ["BTC/EUR"]) == "EUR"
    assert account_currency(None, ["BTC/USD", "LTC/USD", "ASSET"]) == "USD"
    assert account_currency("USD", ["BTC/USD"]) == "USD"
    assert account_currency(None, ["ASSET"]) is None  # nothing declares a currency


def test_two_quote_currencies_are_refused_naming_each_symbol() -> None:
    with pytest.raises(ConfigError) as err:
        account_currency(None, ["BTC/USD", "BTC/EUR", "LTC/USD"])
    message = str(err.value)
    assert "quoted in more than one currency (EUR: BTC/EUR; USD: BTC/USD, LTC/USD)" in message
    assert "does not convert" in message


def test_a_symbol_quoted_outside_the_configured_currency_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"account currency is USD but BTC/EUR quoted in EUR"):
        account_currency("USD", ["BTC/USD", "BTC/EUR"])
    with pytest.raises(ConfigError, match=r"BTC/USDT quoted in USDT"):
        account_currency("USD", ["BTC/USDT"])  # a stablecoin is another currency too


def test_a_backtest_mixing_currencies_is_refused_before_it_trades() -> None:
    frames = {"BTC/USD": BARS, "BTC/EUR": BARS}
    with pytest.raises(ConfigError, match=r"EUR: BTC/EUR; USD: BTC/USD"):
        run_backtest(frames, create_strategy("sma_cross", {"fast": 2, "slow": 5}))


def test_a_single_currency_backtest_reports_its_currency() -> None:
    strategy = create_strategy("sma_cross", {"fast": 2, "slow": 5})
    result = run_backtest({"BTC/EUR": BARS}, strategy)
    assert result.currency == "EUR" and result.to_dict()["meta"]["currency"] == "EUR"
    with pytest.raises(ConfigError, match=r"account currency is USD but BTC/EUR"):
        run_backtest({"BTC/EUR": BARS}, strategy, settings(backtest={"currency": "USD"}))


def test_the_engine_itself_refuses_a_second_currency_as_it_meets_it() -> None:
    # the backstop under every caller: the first bar of LTC/USD after BTC/EUR stops the engine
    with pytest.raises(ConfigError, match=r"EUR: BTC/EUR; USD: LTC/USD"):
        run_engine(
            {"BTC/EUR": BARS, "LTC/USD": BARS},
            {"BTC/EUR": [0] * 30, "LTC/USD": [0] * 30},
            settings(),
        )


def test_serve_arguments_mixing_currencies_fail_validation_naming_them() -> None:
    mixed = {"feed": {"kind": "replay", "datasets": ["coinbase_BTC-USD_1m", "coinbase_BTC-EUR_1m"]}}
    with pytest.raises(ValueError, match=r"EUR: BTC/EUR; USD: BTC/USD"):
        AppArgs.model_validate(mixed)
    with pytest.raises(ValueError, match=r"account currency is USD but BTC/EUR quoted in EUR"):
        AppArgs.model_validate(
            {"currency": "USD", "feed": {"kind": "replay", "datasets": ["coinbase_BTC-EUR_1m"]}}
        )
    ccxt = {"kind": "ccxt", "exchange": "kraken", "symbols": ["BTC/USD", "ETH/EUR"]}
    with pytest.raises(ValueError, match=r"EUR: ETH/EUR; USD: BTC/USD"):
        AppArgs.model_validate({"feed": ccxt})
    eur = AppArgs.model_validate(
        {"currency": "EUR", "feed": {"kind": "replay", "datasets": ["coinbase_BTC-EUR_1m"]}}
    )
    assert eur.settings().backtest.currency == "EUR"
