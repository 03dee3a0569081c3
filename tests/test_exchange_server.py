"""The fake Binance's trading API and fault switches, driven through the real ccxt client.

Each test starts `fake_binance.FakeBinance` on a free port and trades through ``ccxt.binance``
pointed at it, so what is checked is what a live venue will meet: Binance's request signing, its
response shapes as ccxt parses them, and the ccxt exception class each refusal or fault becomes.
Amounts are hand-computed from the fill model: commission 0.1 % of each fill's cost, charged in the
quote asset (`set_fee_asset("quote")` here; Binance's own rule, the asset received, has a test of
its own); a BUY reserves ``quantity * price * 1.001`` of quote while open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import ccxt
import pytest
from fake_binance import (
    ACCOUNT,
    EXCHANGE_INFO,
    ORDER,
    Account,
    FakeBinance,
    Fault,
    local_binance,
)
from fake_binance.auth import signature, signed_payload

D = Decimal
BTC = "BTC/USDT"


@pytest.fixture
def exchange() -> Iterator[FakeBinance]:
    server = FakeBinance([("BTCUSDT", "BTC", "USDT")])
    server.add_market("ETHUSDT", "ETH", "USDT", price="2000", step_size="0.0001", min_qty="0.001")
    server.set_price("BTCUSDT", "30000")
    server.set_fee_asset("quote")
    server.start()
    yield server
    server.close()


@pytest.fixture
def alice(exchange: FakeBinance) -> Account:
    return exchange.add_account("alice", {"USDT": "1000"})


def balances(exchange: FakeBinance, account: Account, *assets: str) -> dict[str, tuple]:
    return {a: exchange.balance(account, a) for a in assets}


# -- authentication --------------------------------------------------------------------------


def test_the_signature_is_binances_documented_hmac_example() -> None:
    # The example request, key secret and signature of Binance's spot REST docs (rest-api.md).
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    query = (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000&timestamp=1499827319559"
    )
    expected = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    assert signature(secret, signed_payload(f"{query}&signature={expected}", "")) == expected
    assert signed_payload("symbol=LTCBTC&side=BUY", "type=LIMIT&signature=ab") == (
        "symbol=LTCBTC&side=BUYtype=LIMIT"
    )


def test_signed_requests_are_accepted_and_logged_without_signature_or_key(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice)
    balance = client.fetch_balance()
    assert (balance["USDT"]["free"], balance["USDT"]["used"]) == (1000.0, 0.0)

    assert exchange.paths() == {EXCHANGE_INFO, ACCOUNT}  # nothing else (no sapi, no fapi)
    [record] = exchange.requests_to("GET", ACCOUNT)
    assert (record.account, record.status, record.fault) == ("alice", 200, None)
    assert set(record.params) == {"timestamp", "recvWindow"}
    logged = repr(exchange.requests) + repr(alice)
    assert alice.secret not in logged and alice.api_key not in logged


def test_a_wrong_secret_is_an_authentication_error_and_creates_nothing(
    exchange: FakeBinance, alice: Account
) -> None:
    impostor = Account("impostor", alice.api_key, "x" * 64)
    client = local_binance(exchange.url, impostor)
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        client.create_order(BTC, "market", "buy", 0.001)
    assert exchange.orders() == []
    [record] = exchange.requests_to("POST", ORDER)
    assert (record.account, record.status) == (None, 400)


@pytest.mark.parametrize(
    ("api_key", "code"),
    [("A" * 64, "-2015"), ("not-a-key", "-2014")],
    ids=["unknown-key", "malformed-key"],
)
def test_a_bad_api_key_is_an_authentication_error(
    exchange: FakeBinance, api_key: str, code: str
) -> None:
    client = local_binance(exchange.url, Account("nobody", api_key, "s" * 64))
    with pytest.raises(ccxt.AuthenticationError, match=code):
        client.fetch_balance()


def test_a_key_revoked_after_a_success_reads_as_ddos_protection_to_ccxt(
    exchange: FakeBinance, alice: Account
) -> None:
    # ccxt's binance treats -2015 after an authenticated success as a temporary ban.
    client = exchange.client(alice)
    client.fetch_balance()
    exchange.revoke_key(alice)
    with pytest.raises(ccxt.DDoSProtection, match="-2015"):
        client.fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        exchange.client(alice).fetch_balance()


@pytest.mark.parametrize(
    ("skew_ms", "message"),
    [
        (20_000, "outside of the recvWindow"),  # server 20 s ahead: the request is too old
        (-5_000, "1000ms ahead of the server's time"),  # server behind: from the future
    ],
    ids=["server-ahead", "server-behind"],
)
def test_a_timestamp_outside_the_window_is_an_invalid_nonce(
    exchange: FakeBinance, alice: Account, skew_ms: int, message: str
) -> None:
    client = exchange.client(alice)
    client.load_markets()
    exchange.clock_skew_ms = skew_ms
    with pytest.raises(ccxt.InvalidNonce, match=message):
        client.fetch_balance()
    exchange.clock_skew_ms = 5_000  # within ccxt's recvWindow of 10 s
    assert client.fetch_balance()["USDT"]["free"] == 1000.0


# -- markets and order entry -----------------------------------------------------------------


def test_ccxt_reads_the_filters_as_precision_and_limits(exchange: FakeBinance) -> None:
    market = local_binance(exchange.url).load_markets()["ETH/USDT"]
    assert market["precision"]["amount"] == 0.0001
    assert market["precision"]["price"] == 0.01
    assert market["limits"]["amount"]["min"] == 0.001
    assert market["limits"]["cost"]["min"] == 5.0


def test_filters_are_enforced_with_binances_errors(exchange: FakeBinance, alice: Account) -> None:
    client = exchange.client(alice)
    with pytest.raises(ccxt.InvalidOrder, match="Filter failure: LOT_SIZE"):
        client.create_order("ETH/USDT", "limit", "buy", 0.0005, 2000)  # below minQty 0.001
    raw = {"symbol": "ETHUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    with pytest.raises(ccxt.InvalidOrder, match="Filter failure: LOT_SIZE"):
        client.private_post_order({**raw, "quantity": "0.00125", "price": "2000"})  # off step
    with pytest.raises(ccxt.InvalidOrder, match="Filter failure: PRICE_FILTER"):
        client.private_post_order({**raw, "quantity": "0.01", "price": "2000.005"})  # off tick
    # ccxt has no message rule for NOTIONAL: the code -1013 alone makes it a BadRequest.
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):
        client.create_order(BTC, "limit", "buy", 0.0001, 30000)  # 3 USDT < minNotional 5
    with pytest.raises(ccxt.BadRequest, match="Filter failure: NOTIONAL"):
        client.create_order(BTC, "market", "buy", 0.0001)  # judged at the market price
    assert exchange.orders() == []
    assert balances(exchange, alice, "USDT") == {"USDT": (D(1000), D(0))}


def test_an_order_the_balance_cannot_cover_is_insufficient_funds(exchange: FakeBinance) -> None:
    exact = exchange.add_account("exact", {"USDT": "300.30"})  # 0.01 BTC at 30000 plus 0.1 %
    short = exchange.add_account("short", {"USDT": "300.29999999"})
    with pytest.raises(ccxt.InsufficientFunds, match="insufficient balance"):
        exchange.client(short).create_order(BTC, "market", "buy", 0.01)
    with pytest.raises(ccxt.InsufficientFunds):
        exchange.client(short).create_order(BTC, "limit", "sell", 0.001, 30000)  # holds no BTC
    assert exchange.orders(short) == []

    order = exchange.client(exact).create_order(BTC, "market", "buy", 0.01)
    assert order["status"] == "closed"
    assert balances(exchange, exact, "USDT", "BTC") == {
        "USDT": (D(0), D(0)),
        "BTC": (D("0.01"), D(0)),
    }


def test_a_client_order_id_must_follow_binances_rules(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice)
    for bad in ("a" * 37, "has#hash", "has space"):
        with pytest.raises(ccxt.BadRequest, match="-1100"):
            client.create_order(BTC, "limit", "buy", 0.001, 29000, {"clientOrderId": bad})
    longest = "AZaz09.:/_-" + "x" * 25  # 36 characters, every kind allowed
    order = client.create_order(BTC, "limit", "buy", 0.001, 29000, {"clientOrderId": longest})
    assert order["clientOrderId"] == longest
    assert [o.client_order_id for o in exchange.orders()] == [longest]


def test_a_client_id_in_use_by_an_open_order_is_a_duplicate(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice)
    first = client.create_order(BTC, "limit", "buy", 0.001, 29000, {"clientOrderId": "dup-1"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        client.create_order(BTC, "limit", "buy", 0.001, 29000, {"clientOrderId": "dup-1"})
    bob = exchange.add_account("bob", {"USDT": "100"})  # ids are per account
    exchange.client(bob).create_order(BTC, "limit", "buy", 0.001, 29000, {"clientOrderId": "dup-1"})

    client.cancel_order(first["id"], BTC)  # once closed, Binance accepts the id again
    second = client.create_order(BTC, "limit", "buy", 0.001, 29000, {"clientOrderId": "dup-1"})
    assert [o.id for o in exchange.orders(alice, "dup-1")] == [int(first["id"]), int(second["id"])]
    assert client.fetch_order(None, BTC, {"clientOrderId": "dup-1"})["id"] == second["id"]


# -- fills, balances, fees -------------------------------------------------------------------


def test_market_orders_fill_at_the_set_price_with_the_fee_in_quote(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice)
    buy = client.create_order(BTC, "market", "buy", 0.01)
    assert (buy["status"], buy["filled"], buy["average"], buy["cost"]) == (
        "closed",
        0.01,
        30000.0,
        300.0,
    )
    assert buy["fee"] == {"currency": "USDT", "cost": 0.3}

    exchange.set_price("BTCUSDT", "30500.50")
    sell = client.create_order(BTC, "market", "sell", 0.004)
    # 0.004 * 30500.50 = 122.002; fee 0.122002; 1000 - 300.3 + 121.879998 = 821.579998
    assert (sell["average"], sell["fee"]["cost"]) == (30500.5, 0.122002)
    assert balances(exchange, alice, "USDT", "BTC") == {
        "USDT": (D("821.579998"), D(0)),
        "BTC": (D("0.006"), D(0)),
    }
    fetched = client.fetch_balance()
    assert fetched["USDT"]["free"] == pytest.approx(821.579998, abs=1e-9)
    assert fetched["BTC"]["free"] == pytest.approx(0.006, abs=1e-12)

    trades = client.fetch_my_trades(BTC)
    assert [(t["side"], t["price"], t["amount"], t["fee"]["cost"]) for t in trades] == [
        ("buy", 30000.0, 0.01, 0.3),
        ("sell", 30500.5, 0.004, 0.122002),
    ]
    assert [t["order"] for t in trades] == [buy["id"], sell["id"]]
    assert {t["takerOrMaker"] for t in trades} == {"taker"}


def test_by_default_the_fee_is_charged_in_the_asset_received_as_binance_does(
    exchange: FakeBinance, alice: Account
) -> None:
    exchange.set_fee_asset("received")
    client = exchange.client(alice)
    buy = client.create_order(BTC, "market", "buy", 0.01)
    # 0.01 BTC bought for 300 USDT; the fee is 0.1 % of the BTC: 0.00001 BTC, 0.00999 received
    assert buy["fee"] == {"currency": "BTC", "cost": 0.00001}
    sell = client.create_order(BTC, "market", "sell", 0.00999)
    # 0.00999 x 30000 = 299.7 USDT; the fee 0.2997 USDT; 700 + 299.7 - 0.2997 = 999.4003
    assert sell["fee"] == {"currency": "USDT", "cost": 0.2997}
    assert balances(exchange, alice, "USDT", "BTC") == {
        "USDT": (D("999.4003"), D(0)),
        "BTC": (D(0), D(0)),
    }
    trades = client.fetch_my_trades(BTC)
    assert [(t["fee"]["currency"], t["fee"]["cost"]) for t in trades] == [
        ("BTC", 0.00001),
        ("USDT", 0.2997),
    ]


def test_a_market_buy_by_cost_buys_the_lots_the_quote_amount_pays_for(
    exchange: FakeBinance, alice: Account
) -> None:
    order = exchange.client(alice).create_market_buy_order_with_cost(BTC, 100)
    assert exchange.requests_to("POST", ORDER)[0].params["quoteOrderQty"] == "100"
    # 100 / 30000 = 0.0033333.. rounded down to the 0.00001 step; cost 99.9, fee 0.0999
    assert (order["filled"], order["cost"], order["fee"]["cost"]) == (0.00333, 99.9, 0.0999)
    assert exchange.balance(alice, "USDT") == (D("900.0001"), D(0))


def test_a_limit_buy_holds_its_reserve_and_fills_at_its_price_when_crossed(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice)
    order = client.create_order(BTC, "limit", "buy", 0.02, 29000)
    assert order["status"] == "open"
    # reserve 0.02 * 29000 * 1.001 = 580.58
    assert exchange.balance(alice, "USDT") == (D("419.42"), D("580.58"))

    exchange.set_price("BTCUSDT", "29500")  # not crossed yet
    assert client.fetch_order(order["id"], BTC)["status"] == "open"
    exchange.set_price("BTCUSDT", "28900")  # crossed: fills at its own price, as maker
    filled = client.fetch_order(order["id"], BTC)
    assert (filled["status"], filled["filled"], filled["average"]) == ("closed", 0.02, 29000.0)
    assert balances(exchange, alice, "USDT", "BTC") == {
        "USDT": (D("419.42"), D(0)),  # 580 + fee 0.58 = the whole reserve
        "BTC": (D("0.02"), D(0)),
    }
    [trade] = client.fetch_my_trades(BTC)
    assert (trade["price"], trade["takerOrMaker"], trade["fee"]["cost"]) == (29000.0, "maker", 0.58)


def test_a_limit_that_crosses_on_entry_fills_at_the_market_price_as_taker(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice)
    order = client.create_order(BTC, "limit", "buy", 0.01, 31000)
    assert (order["status"], order["average"], order["fee"]["cost"]) == ("closed", 30000.0, 0.3)
    assert [t["takerOrMaker"] for t in client.fetch_my_trades(BTC)] == ["taker"]
    assert exchange.balance(alice, "USDT") == (D("699.7"), D(0))  # the rest of 310.31 returned


def test_a_cancelled_sell_returns_the_base_it_held(exchange: FakeBinance) -> None:
    carol = exchange.add_account("carol", {"BTC": "0.05"})
    client = exchange.client(carol)
    order = client.create_order(BTC, "limit", "sell", 0.03, 32000)
    assert exchange.balance(carol, "BTC") == (D("0.02"), D("0.03"))
    assert [o["id"] for o in client.fetch_open_orders(BTC)] == [order["id"]]

    cancelled = client.cancel_order(order["id"], BTC)
    assert (cancelled["status"], cancelled["filled"]) == ("canceled", 0.0)
    assert exchange.balance(carol, "BTC") == (D("0.05"), D(0))
    assert client.fetch_open_orders(BTC) == []
    with pytest.raises(ccxt.OrderNotFound, match="Unknown order sent"):
        client.cancel_order(order["id"], BTC)


def test_partial_fills_are_observable_and_a_partly_filled_order_can_be_cancelled(
    exchange: FakeBinance, alice: Account
) -> None:
    exchange.set_partial_fills(3)
    client = exchange.client(alice)
    order = client.create_order(BTC, "limit", "buy", 0.03, 30000, {"clientOrderId": "part-1"})
    # Crosses on entry: the first lot of 0.01 fills at once; reserve 900.9, 300.3 of it spent.
    assert (order["status"], order["filled"], order["remaining"]) == ("open", 0.01, 0.02)
    assert order["info"]["status"] == "PARTIALLY_FILLED"
    assert exchange.balance(alice, "USDT") == (D("99.1"), D("600.6"))

    exchange.advance()
    seen = client.fetch_order(None, BTC, {"clientOrderId": "part-1"})
    assert (seen["status"], seen["filled"]) == ("open", 0.02)

    cancelled = client.cancel_order(order["id"], BTC)
    assert (cancelled["status"], cancelled["filled"]) == ("canceled", 0.02)
    assert balances(exchange, alice, "USDT", "BTC") == {
        "USDT": (D("399.4"), D(0)),  # 1000 - 2 * 300.3
        "BTC": (D("0.02"), D(0)),
    }
    exchange.advance()  # a cancelled order fills no more
    assert [t["takerOrMaker"] for t in client.fetch_my_trades(BTC)] == ["taker", "maker"]


def test_a_partly_filled_market_buy_pays_later_lots_at_the_later_price(
    exchange: FakeBinance,
) -> None:
    exchange.set_partial_fills(2)
    rich = exchange.add_account("rich", {"USDT": "1000"})
    tight = exchange.add_account("tight", {"USDT": "600.60"})  # 0.02 at 30000 plus 0.1 %
    rich_order = exchange.client(rich).create_order(BTC, "market", "buy", 0.02)
    tight_order = exchange.client(tight).create_order(BTC, "market", "buy", 0.02)
    assert rich_order["filled"] == tight_order["filled"] == 0.01
    assert exchange.balance(rich, "USDT") == (D("399.4"), D("300.3"))

    exchange.set_price("BTCUSDT", "31000")  # the second lot costs 310 + 0.31 fee
    done = exchange.client(rich).fetch_order(rich_order["id"], BTC)
    assert (done["status"], done["filled"], done["average"]) == ("closed", 0.02, 30500.0)
    assert exchange.balance(rich, "USDT") == (D("389.39"), D(0))  # 1000 - 300.3 - 310.31
    trades = exchange.client(rich).fetch_order_trades(rich_order["id"], BTC)
    assert [t["price"] for t in trades] == [30000.0, 31000.0]
    # The tight account's reserve (300.3) cannot pay 310.31: the rest expires, as on Binance.
    expired = exchange.client(tight).fetch_order(tight_order["id"], BTC)
    assert (expired["status"], expired["filled"]) == ("expired", 0.01)
    assert balances(exchange, tight, "USDT", "BTC") == {
        "USDT": (D("300.3"), D(0)),
        "BTC": (D("0.01"), D(0)),
    }


def test_a_fill_that_races_a_cancel_shows_in_the_cancel(
    exchange: FakeBinance, alice: Account
) -> None:
    exchange.set_partial_fills(2)
    client = exchange.client(alice)
    order = client.create_order(BTC, "limit", "buy", 0.02, 29000)  # rests: 29000 < 30000
    exchange.queue_fault("DELETE", ORDER, "fill_before_cancel", fill_parts=1)
    cancelled = client.cancel_order(order["id"], BTC)
    assert (cancelled["status"], cancelled["filled"]) == ("canceled", 0.01)
    # one lot of 0.01 at 29000: 290 + 0.29 fee
    assert exchange.balance(alice, "USDT") == (D("709.71"), D(0))

    other = client.create_order(BTC, "limit", "buy", 0.02, 29000)
    exchange.queue_fault("DELETE", ORDER, "fill_before_cancel", fill_parts=2)
    with pytest.raises(ccxt.OrderNotFound, match="Unknown order sent"):
        client.cancel_order(other["id"], BTC)  # the fills completed it first
    assert client.fetch_order(other["id"], BTC)["status"] == "closed"
    assert exchange.balance(alice, "USDT") == (D("129.13"), D(0))  # 709.71 - 580.58


def test_orders_are_found_by_id_or_client_id(exchange: FakeBinance, alice: Account) -> None:
    client = exchange.client(alice)
    order = client.create_order(BTC, "limit", "buy", 0.001, 29000, {"clientOrderId": "find-me"})
    by_id = client.fetch_order(order["id"], BTC)
    by_client_id = client.fetch_order(None, BTC, {"origClientOrderId": "find-me"})
    assert by_id["id"] == by_client_id["id"] == order["id"]
    assert by_client_id["clientOrderId"] == "find-me"
    with pytest.raises(ccxt.OrderNotFound, match="Order does not exist"):
        client.fetch_order(None, BTC, {"clientOrderId": "never-sent"})
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order(order["id"], BTC, {"clientOrderId": "another-id"})
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order(order["id"], "ETH/USDT")  # the id is BTCUSDT's


def test_open_and_all_orders(exchange: FakeBinance, alice: Account) -> None:
    client = exchange.client(alice)
    a = client.create_order(BTC, "limit", "buy", 0.001, 29000)
    b = client.create_order(BTC, "market", "buy", 0.001)
    c = client.create_order("ETH/USDT", "limit", "buy", 0.01, 1900)
    assert [o["id"] for o in client.fetch_open_orders()] == [a["id"], c["id"]]
    assert [o["id"] for o in client.fetch_orders(BTC)] == [a["id"], b["id"]]
    assert [o["id"] for o in client.fetch_orders(BTC, params={"orderId": b["id"]})] == [b["id"]]
    assert [o["id"] for o in client.fetch_orders(BTC, limit=1)] == [b["id"]]  # the newest


def test_my_trades_page_by_from_id_with_increasing_ids(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice)
    for i in range(5):
        if i == 3:
            exchange.clock_skew_ms = 3_000  # the last two trades 3 s later (within recvWindow)
        client.create_order(BTC, "market", "buy", 0.001)
    ids = [int(t.id) for t in exchange.trades(alice)]
    assert ids == sorted(ids) and len(set(ids)) == 5

    pages, from_id = [], ids[0]
    while True:
        page = client.fetch_my_trades(BTC, limit=2, params={"fromId": from_id})
        if not page:
            break
        pages.append([int(t["id"]) for t in page])
        from_id = int(page[-1]["id"]) + 1
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]
    assert [int(t["id"]) for t in client.fetch_my_trades(BTC, limit=2)] == ids[3:5]  # newest
    since = exchange.now_ms() - 2_000
    assert [int(t["id"]) for t in client.fetch_my_trades(BTC, since=since)] == ids[3:5]
    with pytest.raises(ccxt.BadRequest, match="-1128"):
        client.fetch_my_trades(BTC, since=0, params={"fromId": ids[0]})


# -- faults ----------------------------------------------------------------------------------


def test_accept_then_timeout_creates_an_order_the_client_never_heard_of(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice, timeout_ms=300)
    client.load_markets()
    exchange.queue_fault("POST", ORDER, "accept_then_timeout")
    started = time.monotonic()
    with pytest.raises(ccxt.RequestTimeout):
        client.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "lost-1"})
    assert time.monotonic() - started < 2.0
    [created] = exchange.orders(alice, "lost-1")
    assert created.status == "FILLED"
    assert client.fetch_order(None, BTC, {"clientOrderId": "lost-1"})["status"] == "closed"
    assert exchange.balance(alice, "USDT") == (D("699.7"), D(0))
    # A filled order's id is free again, so a blind resend buys twice: look before resending.
    client.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "lost-1"})
    assert len(exchange.orders(alice, "lost-1")) == 2


def test_an_order_created_under_a_timeout_can_stay_invisible_for_a_while(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice, timeout_ms=300)
    client.load_markets()
    exchange.queue_fault("POST", ORDER, "accept_then_timeout", hide_for=2.0)
    with pytest.raises(ccxt.RequestTimeout):
        client.create_order(BTC, "limit", "buy", 0.001, 29000, {"clientOrderId": "ghost"})
    created_at = time.monotonic()
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order(None, BTC, {"clientOrderId": "ghost"})
    assert client.fetch_open_orders(BTC) == [] and client.fetch_orders(BTC) == []
    # The matching engine knows it: the same client id is still a duplicate.
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        client.create_order(BTC, "limit", "buy", 0.001, 29000, {"clientOrderId": "ghost"})
    time.sleep(max(0.0, 2.05 - (time.monotonic() - created_at)))
    assert client.fetch_order(None, BTC, {"clientOrderId": "ghost"})["status"] == "open"
    assert len(exchange.orders(alice, "ghost")) == 1


def test_delayed_visibility_hides_an_acknowledged_order_and_its_trades(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice)
    client.load_markets()
    exchange.queue_fault("POST", ORDER, "delayed_visibility", hide_for=1.0)
    order = client.create_order(BTC, "market", "buy", 0.01)
    acknowledged = time.monotonic()
    assert order["status"] == "closed"
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order(order["id"], BTC)
    assert client.fetch_my_trades(BTC) == [] and client.fetch_orders(BTC) == []
    assert exchange.balance(alice, "BTC") == (D("0.01"), D(0))  # the ledger moved at once
    time.sleep(max(0.0, 1.05 - (time.monotonic() - acknowledged)))
    assert client.fetch_order(order["id"], BTC)["status"] == "closed"
    assert len(client.fetch_my_trades(BTC)) == 1


@pytest.mark.parametrize(
    ("kind", "options", "raised"),
    [
        ("error_5xx_before_accept", {"status": 503}, ccxt.ExchangeNotAvailable),
        ("error_5xx_before_accept", {"status": 500}, ccxt.ExchangeNotAvailable),
        ("rate_limit", {"retry_after": 7}, ccxt.DDoSProtection),
        ("drop_before_accept", {}, ccxt.NetworkError),
    ],
    ids=["503", "500", "429", "drop"],
)
def test_a_fault_before_accept_creates_nothing(
    exchange: FakeBinance, alice: Account, kind: str, options: dict, raised: type
) -> None:
    client = exchange.client(alice)
    client.load_markets()
    exchange.queue_fault("POST", ORDER, kind, **options)  # type: ignore[arg-type]
    with pytest.raises(raised) as err:
        client.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "try-1"})
    assert type(err.value) is raised  # not a subclass such as RequestTimeout
    if kind == "rate_limit":
        assert client.last_response_headers["Retry-After"] == "7"
        assert '"code":-1003' in str(err.value)
    assert exchange.orders() == []
    assert exchange.balance(alice, "USDT") == (D(1000), D(0))
    [record] = exchange.requests_to("POST", ORDER)
    assert record.fault == kind

    client.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "try-1"})
    assert len(exchange.orders(alice, "try-1")) == 1  # the fault was used up


@pytest.mark.parametrize(
    ("kind", "raised"),
    [
        ("drop_after_accept", ccxt.NetworkError),
        ("error_5xx_after_accept", ccxt.ExchangeNotAvailable),
    ],
)
def test_a_fault_after_accept_leaves_the_order_created(
    exchange: FakeBinance, alice: Account, kind: str, raised: type
) -> None:
    client = exchange.client(alice)
    client.load_markets()
    exchange.queue_fault("POST", ORDER, kind)  # type: ignore[arg-type]
    with pytest.raises(raised) as err:
        client.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "sent-1"})
    assert type(err.value) is raised
    assert [o.status for o in exchange.orders(alice, "sent-1")] == ["FILLED"]
    assert exchange.requests_to("POST", ORDER)[0].status == (None if "drop" in kind else 503)


def test_a_cancel_whose_answer_times_out_was_carried_out(
    exchange: FakeBinance, alice: Account
) -> None:
    client = exchange.client(alice, timeout_ms=300)
    order = client.create_order(BTC, "limit", "buy", 0.001, 29000)
    exchange.queue_fault("DELETE", ORDER, "accept_then_timeout")
    with pytest.raises(ccxt.RequestTimeout):
        client.cancel_order(order["id"], BTC)
    assert client.fetch_order(order["id"], BTC)["status"] == "canceled"
    assert exchange.balance(alice, "USDT") == (D(1000), D(0))


def test_faults_apply_to_reads_too(exchange: FakeBinance, alice: Account) -> None:
    client = exchange.client(alice)
    client.load_markets()
    exchange.queue_fault("GET", ACCOUNT, "rate_limit", times=2)
    for _ in range(2):
        with pytest.raises(ccxt.DDoSProtection):
            client.fetch_balance()
    assert client.fetch_balance()["USDT"]["free"] == 1000.0


def test_a_fault_aimed_at_the_wrong_endpoint_is_refused(exchange: FakeBinance) -> None:
    with pytest.raises(ValueError, match="fill_before_cancel applies to DELETE"):
        exchange.queue_fault("POST", ORDER, "fill_before_cancel")
    with pytest.raises(ValueError, match="is not a 5XX"):
        exchange.queue_fault("POST", ORDER, "error_5xx_before_accept", status=404)
    with pytest.raises(ValueError, match="kind 'timeout'"):
        exchange.queue_fault("POST", ORDER, "timeout")  # type: ignore[arg-type]


RANDOM_FAULTS = [
    Fault("error_5xx_before_accept"),
    Fault("rate_limit"),
    Fault("drop_before_accept"),
    Fault("drop_after_accept"),
    Fault("error_5xx_after_accept"),
]


def _random_run(seed: int) -> tuple[list[str], list[str | None], int]:
    """60 market buys through seeded random faults: what ccxt raised, what was injected, and
    how many orders the exchange created."""
    server = FakeBinance([("BTCUSDT", "BTC", "USDT")])
    server.set_price("BTCUSDT", "30000")
    account = server.add_account("random", {"USDT": "5000"})
    server.start()
    try:
        client = server.client(account)
        client.load_markets()
        server.randomize_faults(seed, 0.2, RANDOM_FAULTS, [("POST", ORDER)])
        outcomes = []
        for i in range(60):
            try:
                client.create_order(BTC, "market", "buy", 0.001, params={"clientOrderId": f"r-{i}"})
                outcomes.append("ok")
            except ccxt.NetworkError as err:
                outcomes.append(type(err).__name__)
        for i in range(60):  # never more than one order per client id
            assert len(server.orders(account, f"r-{i}")) <= 1
        injected = [r.fault for r in server.requests_to("POST", ORDER)]
        return outcomes, injected, len(server.orders(account))
    finally:
        server.close()


def test_random_faults_are_reproducible_from_the_seed() -> None:
    outcomes, injected, created = _random_run(seed=13)
    assert _random_run(seed=13) == (outcomes, injected, created)
    faulted = [k for k in injected if k is not None]
    assert 4 <= len(faulted) <= 24  # about 20 % of 60
    assert outcomes.count("ok") == injected.count(None)
    accepted = sum(Fault(k).accepts for k in faulted)
    assert created == injected.count(None) + accepted
    assert _random_run(seed=14)[1] != injected
