"""Client order ids for each exchange: valid by the exchange's documented rule, deterministic,
collision-free, and carried to the wire by the real ccxt client.

The documented rules are written out here a second time, as the regular expressions the
exchanges publish, so the module is checked against them rather than against itself.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest
from exchange_recorder import Recorder, local_exchange, spot_market
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from n1v1.domain import OrderPurpose, make_client_order_id
from n1v1.execution.client_ids import (
    RULES,
    ccxt_client_id_params,
    exchange_client_id,
    validate_client_id,
)

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
DOCUMENTED = {
    "binance": re.compile(r"[a-zA-Z0-9\-_]{1,36}"),  # spot's -1100 legal range
    "binanceusdm": re.compile(r"[a-zA-Z0-9\-_]{1,36}"),
    "binancecoinm": re.compile(r"[a-zA-Z0-9\-_]{1,36}"),
    "okx": re.compile(r"[a-zA-Z0-9]{1,32}"),
    "bybit": re.compile(r"[a-zA-Z0-9\-_]{1,36}"),
    "kraken": re.compile(rf"{UUID}|[0-9a-fA-F]{{32}}|[!-~]{{1,18}}"),
    "coinbase": re.compile(UUID),
    "coinbaseexchange": re.compile(UUID),
}
# The field each exchange's API reads the id from, as ccxt 4.5.90 sends it.
WIRE_FIELD = {
    "binance": "newClientOrderId",
    "binanceusdm": "newClientOrderId",
    "binancecoinm": "newClientOrderId",
    "okx": "clOrdId",
    "bybit": "orderLinkId",
    "kraken": "cl_ord_id",
    "coinbase": "client_order_id",
    "coinbaseexchange": "client_oid",
}
ENGINE_ID = make_client_order_id(
    "run-1", "BTC/USDT", pd.Timestamp("2024-01-01", tz="UTC"), OrderPurpose.ENTRY, 0
)
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "client-order-id.n1v1")
A_UUID = "6d1b345e-2821-40e2-ad83-4ecb18a06876"  # Kraken's documentation example


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_every_exchange_with_a_rule_is_checked_here():
    assert set(RULES) == set(DOCUMENTED) == set(WIRE_FIELD)


def test_the_engine_id_is_what_the_tests_assume():
    # "n1" + the first 30 hex digits of SHA-256 of the decision's key (n1v1.domain)
    key = f"run-1|BTC/USDT|{pd.Timestamp('2024-01-01', tz='UTC').value}|entry|0"
    assert "n1" + hashlib.sha256(key.encode()).hexdigest()[:30] == ENGINE_ID
    assert len(ENGINE_ID) == 32


@pytest.mark.parametrize("exchange_id", ["binance", "binanceusdm", "binancecoinm", "okx", "bybit"])
def test_engine_ids_pass_unchanged_where_the_exchange_allows_them(exchange_id: str):
    assert exchange_client_id(exchange_id, ENGINE_ID) == ENGINE_ID
    assert ccxt_client_id_params(exchange_id, ENGINE_ID) == {"clientOrderId": ENGINE_ID}


@pytest.mark.parametrize("exchange_id", ["kraken", "coinbase", "coinbaseexchange"])
def test_uuid_exchanges_get_the_name_based_uuid_of_the_engine_id(exchange_id: str):
    derived = exchange_client_id(exchange_id, ENGINE_ID)
    assert derived == str(uuid.uuid5(NAMESPACE, ENGINE_ID))
    assert uuid.UUID(derived).version == 5
    assert len(derived) == 36 and derived.count("-") == 4


def test_coinbase_gets_the_id_as_client_order_id_the_others_as_clientorderid():
    derived = str(uuid.uuid5(NAMESPACE, ENGINE_ID))
    assert ccxt_client_id_params("coinbase", ENGINE_ID) == {"client_order_id": derived}
    assert ccxt_client_id_params("kraken", ENGINE_ID) == {"clientOrderId": derived}
    assert ccxt_client_id_params("coinbaseexchange", ENGINE_ID) == {"clientOrderId": derived}


@pytest.mark.parametrize(
    ("exchange_id", "cid", "expected"),
    [
        # an id a token exchange refuses is replaced by "n1" + 30 hex of SHA-256 (domain-tagged)
        ("okx", "n1-with-dash", "n1" + sha256_hex("n1v1-client-id|n1-with-dash")[:30]),
        ("binance", "a.b", "n1" + sha256_hex("n1v1-client-id|a.b")[:30]),
        ("bybit", "x" * 37, "n1" + sha256_hex("n1v1-client-id|" + "x" * 37)[:30]),
        # ids the exchange accepts are kept, whatever their shape
        ("okx", "ABCdef123", "ABCdef123"),
        ("binance", "a_b-C", "a_b-C"),
        ("kraken", "arb-20240509-00010", "arb-20240509-00010"),  # Kraken's own free-text example
        ("kraken", "da8e4ad59b78481c93e589746b0cf91f", "da8e4ad59b78481c93e589746b0cf91f"),
        ("coinbase", A_UUID, A_UUID),
        ("kraken", A_UUID, A_UUID),
    ],
)
def test_known_answers(exchange_id: str, cid: str, expected: str):
    assert exchange_client_id(exchange_id, cid) == expected


@pytest.mark.parametrize(
    ("exchange_id", "cid", "words"),
    [
        ("okx", "n1-abc", ["clOrdId", "1-32 characters of A-Z a-z 0-9", "'-' at position 2"]),
        ("okx", "a" * 33, ["clOrdId", "33 characters long, more than 32"]),
        ("binance", "a.b", ["newClientOrderId", "1-36", "'.' at position 1"]),
        ("binance", "", ["newClientOrderId", "empty"]),
        ("bybit", "a" * 37, ["orderLinkId", "37 characters long, more than 36"]),
        ("bybit", "ab c", ["orderLinkId", "' ' at position 2"]),
        ("kraken", "a" * 19, ["cl_ord_id", "19 characters long and not a UUID", "at most 18"]),
        ("kraken", "ab\tc", ["cl_ord_id", "'\\t' at position 2 is not printable ASCII"]),
        ("coinbase", ENGINE_ID, ["client_order_id", "must be a UUID"]),
        ("coinbaseexchange", "not-a-uuid", ["client_oid", "must be a UUID"]),
    ],
)
def test_an_invalid_id_is_refused_naming_the_rule_broken(exchange_id, cid, words):
    with pytest.raises(ValueError) as err:
        validate_client_id(exchange_id, cid)
    for word in words:
        assert word in str(err.value)


def test_an_exchange_without_a_rule_is_refused_with_the_known_ones_listed():
    for call in (
        lambda: exchange_client_id("ftx", ENGINE_ID),
        lambda: ccxt_client_id_params("ftx", ENGINE_ID),
        lambda: validate_client_id("ftx", ENGINE_ID),
    ):
        with pytest.raises(ValueError, match=r"'ftx': no client-order-id rule.*binance.*okx"):
            call()


def test_an_empty_or_non_text_engine_id_is_refused():
    with pytest.raises(ValueError, match="client_order_id"):
        exchange_client_id("binance", "")
    with pytest.raises(ValueError, match="client_order_id"):
        exchange_client_id("binance", 123)  # type: ignore[arg-type]


# -- properties -------------------------------------------------------------------------------

engine_ids = st.builds(
    make_client_order_id,
    st.text(min_size=1, max_size=20),
    st.sampled_from(["BTC/USDT", "ETH/USDT", "BTC/USD"]),
    st.integers(0, 2_000_000_000).map(lambda s: pd.Timestamp(s, unit="s", tz="UTC")),
    st.sampled_from(list(OrderPurpose)),
    st.integers(0, 1_000),
)
any_ids = st.text(min_size=1, max_size=80)


@hyp_settings(max_examples=200, deadline=None)
@given(cid=st.one_of(engine_ids, any_ids), exchange_id=st.sampled_from(sorted(RULES)))
def test_any_id_becomes_a_valid_id_deterministically_and_idempotently(cid, exchange_id):
    out = exchange_client_id(exchange_id, cid)
    assert DOCUMENTED[exchange_id].fullmatch(out), out
    validate_client_id(exchange_id, out)
    assert exchange_client_id(exchange_id, cid) == out
    assert exchange_client_id(exchange_id, out) == out


@hyp_settings(max_examples=50, deadline=None)
@given(ids=st.lists(engine_ids, min_size=2, max_size=40, unique=True))
def test_distinct_engine_ids_stay_distinct_on_every_exchange(ids):
    for exchange_id in RULES:
        assert len({exchange_client_id(exchange_id, cid) for cid in ids}) == len(ids)


# -- on the wire, through the real ccxt client ------------------------------------------------


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = Recorder().start()
    yield server
    server.close()


def _market_for(exchange_id: str) -> dict:
    if exchange_id in ("binanceusdm", "binancecoinm"):
        quote = "USDT" if exchange_id == "binanceusdm" else "USD"
        return spot_market(
            "BTCUSDT" if quote == "USDT" else "BTCUSD_PERP",
            symbol=f"BTC/{quote}:{'USDT' if quote == 'USDT' else 'BTC'}",
            quote=quote,
            quoteId=quote,
            settle="USDT" if quote == "USDT" else "BTC",
            settleId="USDT" if quote == "USDT" else "BTC",
            type="swap",
            spot=False,
            swap=True,
            contract=True,
            linear=quote == "USDT",
            inverse=quote != "USDT",
            contractSize=1.0 if quote == "USDT" else 100.0,
        )
    market_id = {"okx": "BTC-USDT", "coinbase": "BTC-USDT", "coinbaseexchange": "BTC-USDT"}
    return spot_market(market_id.get(exchange_id, "BTCUSDT"))


@pytest.mark.parametrize("exchange_id", sorted(RULES))
def test_ccxt_sends_the_id_in_the_exchanges_field(recorder: Recorder, exchange_id: str):
    """create_order with our params puts exactly our id into the field the exchange reads."""
    recorder.clear()
    exchange = local_exchange(exchange_id, recorder.url)
    market = _market_for(exchange_id)
    exchange.set_markets([market])
    params = ccxt_client_id_params(exchange_id, ENGINE_ID)
    with pytest.raises(Exception):  # noqa: B017 - the recorder refuses every order
        exchange.create_order(market["symbol"], "limit", "buy", 1, 50000, params)
    assert len(recorder.requests) == 1, [r.path for r in recorder.requests]
    assert recorder.requests[0].field(WIRE_FIELD[exchange_id]) == exchange_client_id(
        exchange_id, ENGINE_ID
    )


def test_ccxt_coinbase_drops_a_client_order_id_param_which_is_why_it_gets_client_order_id(
    recorder: Recorder,
):
    """The trap `client_ids` avoids: ccxt's coinbase sends its own random id instead."""
    recorder.clear()
    exchange = local_exchange("coinbase", recorder.url)
    exchange.set_markets([spot_market("BTC-USDT")])
    ours = exchange_client_id("coinbase", ENGINE_ID)
    with pytest.raises(Exception):  # noqa: B017
        exchange.create_order("BTC/USDT", "limit", "buy", 1, 50000, {"clientOrderId": ours})
    sent = recorder.requests[0].field("client_order_id")
    assert sent is not None and sent != ours and sent.startswith("ccxt-")
