"""Properties of manual order requests at the API: whatever quantity or symbol a caller sends, a
request that is not a finite positive quantity within bounds of a plain ASCII symbol is a 422
naming the field, and no order reaches the engine; a well-formed order the account cannot afford
is a 409, and no order either.

Against the real `create_api` over a real TradingSession held at step 30 (tests/test_api.py),
served by uvicorn; bodies are sent as raw JSON text, so NaN and infinities arrive as a client
would send them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from test_api import Client, Live, running_session, served

from n1v1.config import MAX_QUANTITY
from n1v1.serve.api import API
from n1v1.store import StoreReader

SETTINGS = hyp_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SYMBOLS = ("BTC/USD", "LTC/USD")


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running_session(tmp_path_factory.mktemp("orders")) as live:
        yield live


@pytest.fixture(scope="module")
def api(held: Live) -> Iterator[Client]:
    with served(held) as client:
        yield client


def post(api: Client, text: str) -> tuple[int, dict]:
    response = api.call(
        "POST", f"{API}/orders", data=text.encode(), headers={"Content-Type": "application/json"}
    )
    return response.status_code, response.json()


def orders_in(live: Live) -> tuple[int, int]:
    """(orders in the journal, orders working at the venue): neither may move."""
    return len(StoreReader(live.store).latest_orders()), len(
        live.session.snapshot["working_orders"]
    )


# A quantity as JSON text: NaN, infinities, numbers JSON parses to infinity, zero or negative,
# past the bound, or not a number at all.
BAD_QTY = st.one_of(
    st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "0", "-0.0", "true", "null"]
    ),
    st.floats(max_value=0.0, allow_nan=False, allow_infinity=False).map(repr),
    st.floats(min_value=MAX_QUANTITY, exclude_min=True, allow_infinity=False).map(repr),
    st.integers(min_value=int(MAX_QUANTITY) + 1).map(str),
    st.integers(max_value=0).map(str),
    st.text(max_size=8).map(json.dumps),  # "1" is text, not a number
)


@SETTINGS
@given(qty=BAD_QTY, symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(["buy", "sell"]))
def test_a_quantity_that_is_not_finite_positive_and_bounded_is_a_422_and_no_order(
    api: Client, held: Live, qty: str, symbol: str, side: str
) -> None:
    before = orders_in(held)
    status, body = post(api, f'{{"symbol": "{symbol}", "side": "{side}", "qty": {qty}}}')
    assert status == 422, (qty, body)
    assert [f["field"] for f in body["error"]["details"]["fields"]] == ["body.qty"]
    assert orders_in(held) == before


# A symbol with at least one character outside plain ASCII letters, digits and . _ : / -
ODD = st.characters(
    exclude_characters="._:/-", exclude_categories=["Lu", "Ll", "Nd"]
) | st.characters(min_codepoint=0x80)


@SETTINGS
@given(
    head=st.text(alphabet="ABCLTU/", max_size=4),
    odd=ODD,
    tail=st.text(max_size=4),
    qty=st.floats(min_value=0.01, max_value=1.0),
)
def test_a_symbol_with_any_other_character_is_a_422_and_no_order(
    api: Client, held: Live, head: str, odd: str, tail: str, qty: float
) -> None:
    symbol = head + odd + tail
    before = orders_in(held)
    body = json.dumps({"symbol": symbol, "side": "buy", "qty": qty})
    status, answer = post(api, body)
    assert status == 422, (symbol, answer)
    assert [f["field"] for f in answer["error"]["details"]["fields"]] == ["body.symbol"]
    assert orders_in(held) == before


@hyp_settings(SETTINGS, max_examples=20)  # each one goes through the engine's command queue
@given(
    qty=st.floats(min_value=1_000.0, max_value=MAX_QUANTITY),  # at 2018 prices, beyond 10,000 USD
    symbol=st.sampled_from(SYMBOLS),
)
def test_a_well_formed_buy_beyond_the_cash_is_a_409_and_no_order(
    api: Client, held: Live, qty: float, symbol: str
) -> None:
    before = orders_in(held)
    status, body = post(api, json.dumps({"symbol": symbol, "side": "buy", "qty": qty}))
    assert status == 409, body
    error = body["error"]
    assert error["code"] == "risk_rejected" and error["details"]["requested_qty"] == qty
    assert math.isfinite(error["details"]["max_qty"])
    assert orders_in(held) == before
