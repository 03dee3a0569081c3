"""What each ccxt error proves about an order: every class of ccxt's tree for each kind of call
(the expected table below is this test's own, written from the reasoning in the module doc), the
duplicate-id subtlety, the exchange answers seen through the real ccxt client, and the backoff.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

import ccxt
import pytest
from ccxt.base import errors as ccxt_errors
from exchange_recorder import Answer, Recorder, local_exchange, spot_market
from requests.structures import CaseInsensitiveDict

from n1v1.execution.exchange_errors import (
    MAX_REASON_CHARS,
    CallKind,
    Outcome,
    backoff_seconds,
    ccxt_error_classes,
    classify,
    retry_after_seconds,
    unclassified,
)

R, X, U = Outcome.RETRY, Outcome.REJECTED, Outcome.UNKNOWN
# name -> (create, cancel, query)
EXPECTED: dict[str, tuple[Outcome, Outcome, Outcome]] = {
    # may have been executed: find out before acting (a query is simply asked again)
    "BaseError": (U, U, R),
    "OperationFailed": (U, U, R),
    "NetworkError": (U, U, R),
    "RequestTimeout": (U, U, R),
    "ExchangeNotAvailable": (U, U, R),
    "OnMaintenance": (U, U, R),
    "BadResponse": (U, U, R),
    "NullResponse": (U, U, R),
    "CancelPending": (U, U, R),
    "ChecksumError": (U, U, R),
    "UnsubscribeError": (U, U, R),
    "ExchangeClosedByUser": (U, U, R),
    "ExchangeError": (U, U, R),
    # refused at the door: nothing happened, try again after a wait
    "RateLimitExceeded": (R, R, R),
    "DDoSProtection": (R, R, R),
    "InvalidNonce": (R, R, R),
    # refused for good
    "AuthenticationError": (X, X, X),
    "PermissionDenied": (X, X, X),
    "AccountNotEnabled": (X, X, X),
    "AccountSuspended": (X, X, X),
    "ArgumentsRequired": (X, X, X),
    "BadRequest": (X, X, X),
    "BadSymbol": (X, X, X),
    "OperationRejected": (X, X, X),
    "NoChange": (X, X, X),
    "MarginModeAlreadySet": (X, X, X),
    "MarketClosed": (X, X, X),
    "ManualInteractionNeeded": (X, X, X),
    "RestrictedLocation": (X, X, X),
    "InsufficientFunds": (X, X, X),
    "InvalidAddress": (X, X, X),
    "AddressPending": (X, X, X),
    "InvalidOrder": (X, X, X),
    "OrderImmediatelyFillable": (X, X, X),
    "OrderNotFillable": (X, X, X),
    "ContractUnavailable": (X, X, X),
    "NotSupported": (X, X, X),
    "InvalidProxySettings": (X, X, X),
    "OrderNotCached": (X, X, X),
    # where the order stands
    "OrderNotFound": (X, Outcome.NOT_OPEN, Outcome.NOT_FOUND),
    "DuplicateOrderId": (Outcome.EXISTS, X, X),
}
KINDS = (CallKind.CREATE, CallKind.CANCEL, CallKind.QUERY)


def _flatten(tree: dict) -> set[str]:
    return {name for name, sub in tree.items() for name in ({name} | _flatten(sub))}


def test_inspection_finds_exactly_the_classes_of_ccxts_published_hierarchy():
    found = {c.__name__ for c in ccxt_error_classes()}
    assert found == _flatten(ccxt_errors.error_hierarchy)
    assert len(found) >= 41


def test_no_ccxt_error_class_is_unclassified():
    assert unclassified() == []


@pytest.mark.parametrize("kind", KINDS, ids=str)
@pytest.mark.parametrize("cls", ccxt_error_classes(), ids=lambda c: c.__name__)
def test_every_ccxt_error_class_for_every_call_kind(cls: type, kind: CallKind):
    assert cls.__name__ in EXPECTED, f"ccxt {cls.__name__} has no expected outcome in this test"
    result = classify(cls("binance a neutral message"), kind)
    assert result.outcome is EXPECTED[cls.__name__][KINDS.index(kind)]
    assert result.error == cls.__name__
    assert result.reason == "binance a neutral message"


def test_a_class_ccxt_adds_later_is_unknown_never_retried_or_rejected(caplog):
    class FutureCcxtError(ccxt.InvalidOrder):  # a subclass the table has not seen
        pass

    for kind in KINDS:
        assert classify(FutureCcxtError("x"), kind).outcome is U
    assert "unclassified ccxt error FutureCcxtError" in caplog.text


def test_an_error_outside_ccxt_is_unknown():
    for kind in KINDS:
        result = classify(ConnectionResetError("peer reset"), kind)
        assert (result.outcome, result.error, result.reason) == (
            U,
            "ConnectionResetError",
            "peer reset",
        )


def test_kind_may_be_given_as_text_and_a_wrong_kind_is_refused():
    assert classify(ccxt.InsufficientFunds("x"), "create").outcome is X
    with pytest.raises(ValueError):
        classify(ccxt.InsufficientFunds("x"), "amend")


# What the covered exchanges answer when a client id is already in use (the bodies as they send
# them), and the class ccxt 4.5.90 raises for each: never DuplicateOrderId.
DUPLICATES = [
    (ccxt.InvalidOrder, 'binance {"code":-2010,"msg":"Duplicate order sent."}'),
    (ccxt.InvalidOrder, 'binanceusdm {"code":-4116,"msg":"ClientOrderId is duplicated."}'),
    (
        ccxt.InvalidOrder,
        'okx {"code":"1","data":[{"sCode":"51016","sMsg":"Duplicated client order ID"}]}',
    ),
    (ccxt.InvalidOrder, 'bybit {"retCode":110072,"retMsg":"OrderLinkedID is duplicate"}'),
    (ccxt.InvalidOrder, 'bybit {"retCode":170141,"retMsg":"Duplicate clientOrderId."}'),
    (ccxt.BadRequest, 'bybit {"retCode":10014,"retMsg":"Request is duplicate"}'),
    (ccxt.ExchangeError, 'kraken {"error":["EOrder:Duplicate order"]}'),
]


@pytest.mark.parametrize(("cls", "message"), DUPLICATES)
def test_a_duplicate_client_id_on_a_create_means_the_order_exists(cls, message):
    assert classify(cls(message), CallKind.CREATE).outcome is Outcome.EXISTS
    # the same words on a cancel or a query say nothing about a duplicate order
    assert classify(cls(message), CallKind.CANCEL).outcome is EXPECTED[cls.__name__][1]
    assert classify(cls(message), CallKind.QUERY).outcome is EXPECTED[cls.__name__][2]


def test_the_reason_drops_query_strings_and_is_bounded():
    url = "https://api.binance.com/api/v3/order?symbol=BTCUSDT&timestamp=1&signature=deadbeef"
    result = classify(ccxt.RequestTimeout(f"binance DELETE {url}"), CallKind.CANCEL)
    assert result.reason == "binance DELETE https://api.binance.com/api/v3/order?..."
    assert "deadbeef" not in result.reason
    long = classify(ccxt.ExchangeError("x" * 10_000), CallKind.CREATE).reason
    assert len(long) == MAX_REASON_CHARS


# -- through the real ccxt client, against answers the exchanges give -----------------------


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    server = Recorder().start()
    yield server
    server.close()


@pytest.fixture
def binance(recorder: Recorder) -> ccxt.Exchange:
    recorder.clear()
    exchange = local_exchange("binance", recorder.url)
    exchange.set_markets([spot_market("BTCUSDT")])
    return exchange


def _call(exchange: ccxt.Exchange, kind: CallKind) -> BaseException:
    try:
        if kind is CallKind.CREATE:
            exchange.create_order(
                "BTC/USDT", "limit", "buy", 0.001, 50000, {"clientOrderId": "n1a"}
            )
        elif kind is CallKind.CANCEL:
            exchange.cancel_order(None, "BTC/USDT", {"clientOrderId": "n1a"})
        else:
            exchange.fetch_order(None, "BTC/USDT", {"clientOrderId": "n1a"})
    except Exception as exc:  # the answer under test is always an error
        return exc
    raise AssertionError("the call succeeded")


def _json(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, f'{{"code":{code},"msg":"{msg}"}}', headers or {})


BINANCE_ANSWERS = [
    # (kind, answer, ccxt class raised, outcome); ccxt's binance raises DDoSProtection for every
    # HTTP 429, before it reads the code in the body
    (CallKind.CREATE, _json(429, -1003, "Too much request weight used"), "DDoSProtection", R),
    (CallKind.CREATE, _json(429, -1015, "Too many new orders."), "DDoSProtection", R),
    (CallKind.CREATE, Answer(418, "", {}), "DDoSProtection", R),
    (CallKind.CREATE, _json(400, -2010, "Duplicate order sent."), "InvalidOrder", Outcome.EXISTS),
    (
        CallKind.CREATE,
        _json(400, -2010, "Account has insufficient balance for requested action."),
        "InsufficientFunds",
        X,
    ),
    (CallKind.CREATE, _json(400, -1013, "Filter failure: LOT_SIZE"), "InvalidOrder", X),
    (
        CallKind.CREATE,
        _json(401, -2015, "Invalid API-key, IP, or permissions for action."),
        "AuthenticationError",
        X,
    ),
    (
        CallKind.CREATE,
        _json(400, -1021, "Timestamp for this request is outside of the recvWindow."),
        "InvalidNonce",
        R,
    ),
    (
        CallKind.CREATE,
        _json(
            500,
            -1007,
            "Timeout waiting for response from backend server. Send status "
            "unknown; execution status unknown.",
        ),
        "RequestTimeout",
        U,
    ),
    (
        CallKind.CREATE,
        _json(
            500,
            -1006,
            "An unexpected response was received from the message bus. Execution status unknown.",
        ),
        "OperationFailed",
        U,
    ),
    (CallKind.CREATE, Answer(502, "<html>Bad Gateway</html>", {}), "ExchangeNotAvailable", U),
    (CallKind.CANCEL, _json(400, -2011, "Unknown order sent."), "OrderNotFound", Outcome.NOT_OPEN),
    (CallKind.CANCEL, Answer(503, "", {}), "ExchangeNotAvailable", U),
    (
        CallKind.QUERY,
        _json(400, -2013, "Order does not exist."),
        "OrderNotFound",
        Outcome.NOT_FOUND,
    ),
    (CallKind.QUERY, Answer(503, "", {}), "ExchangeNotAvailable", R),
]


@pytest.mark.parametrize(("kind", "answer", "raised", "outcome"), BINANCE_ANSWERS)
def test_binance_answers_through_ccxt(binance, recorder, kind, answer, raised, outcome):
    recorder.answer(answer)
    result = classify(_call(binance, kind), kind)
    assert (result.error, result.outcome) == (raised, outcome), result.reason


def test_a_create_that_times_out_is_unknown_and_a_query_that_does_is_retried(binance, recorder):
    binance.timeout = 200  # ms
    for kind, outcome in ((CallKind.CREATE, U), (CallKind.QUERY, R)):
        recorder.answer(Answer(200, "{}", {}, delay=0.6))
        result = classify(_call(binance, kind), kind)
        assert (result.error, result.outcome) == ("RequestTimeout", outcome)


def test_the_retry_after_of_a_429_reaches_the_backoff(binance, recorder):
    recorder.answer(_json(429, -1003, "Too much request weight used", {"Retry-After": "7"}))
    result = classify(_call(binance, CallKind.CREATE), CallKind.CREATE)
    assert result.outcome is R
    wait = retry_after_seconds(binance.last_response_headers)
    assert wait == 7.0
    assert backoff_seconds(0, random.Random(1), retry_after=wait) == 7.0


@pytest.mark.parametrize(
    ("exchange_id", "market_id", "body"),
    [
        (
            "okx",
            "BTC-USDT",
            '{"code":"1","msg":"All operations failed","data":[{"clOrdId":"n1a","ordId":"",'
            '"sCode":"51016","sMsg":"Duplicated client order ID","tag":""}]}',
        ),
        ("bybit", "BTCUSDT", '{"retCode":170141,"retMsg":"Duplicate clientOrderId.","result":{}}'),
        (
            "bybit",
            "BTCUSDT",
            '{"retCode":110072,"retMsg":"OrderLinkedID is duplicate","result":{}}',
        ),
    ],
)
def test_okx_and_bybit_duplicates_through_ccxt_are_exists(recorder, exchange_id, market_id, body):
    recorder.clear()
    exchange = local_exchange(exchange_id, recorder.url)
    exchange.set_markets([spot_market(market_id)])
    recorder.answer(Answer(200, body, {}))
    with pytest.raises(ccxt.BaseError) as err:
        exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50000, {"clientOrderId": "n1a"})
    assert not isinstance(err.value, ccxt.DuplicateOrderId)  # why the message has to be read
    assert classify(err.value, CallKind.CREATE).outcome is Outcome.EXISTS


# -- backoff ----------------------------------------------------------------------------------


def test_backoff_is_half_the_capped_exponential_step_plus_a_jitter_from_the_rng():
    for attempt, step in [(0, 1.0), (1, 2.0), (3, 8.0), (5, 32.0), (6, 60.0), (40, 60.0)]:
        expected = step / 2 + random.Random(attempt).uniform(0.0, step / 2)
        assert backoff_seconds(attempt, random.Random(attempt)) == expected
        for seed in range(20):
            assert step / 2 <= backoff_seconds(attempt, random.Random(seed)) <= step
    assert backoff_seconds(2, random.Random(0), base=0.5, cap=1.5) <= 1.5


def test_backoff_is_deterministic_for_a_seeded_rng():
    a, b = random.Random(42), random.Random(42)
    assert [backoff_seconds(i, a) for i in range(10)] == [backoff_seconds(i, b) for i in range(10)]


def test_a_retry_after_wins_even_above_the_cap():
    assert backoff_seconds(0, random.Random(0), retry_after=120.0, cap=60.0) == 120.0
    assert backoff_seconds(9, random.Random(0), retry_after=0.0) == 0.0


@pytest.mark.parametrize(
    "kwargs", [{"attempt": -1}, {"base": 0.0}, {"base": 2.0, "cap": 1.0}, {"cap": float("inf")}]
)
def test_backoff_refuses_bad_arguments(kwargs):
    args = {"attempt": 0, **kwargs}
    with pytest.raises(ValueError):
        backoff_seconds(args.pop("attempt"), random.Random(0), **args)


NOW = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        (CaseInsensitiveDict({"RETRY-AFTER": "3"}), 3.0),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 30.0),  # RFC 9110's example date
        ({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),  # already past
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Content-Type": "application/json"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after_seconds(headers, seconds):
    assert retry_after_seconds(headers, now=NOW) == seconds
