"""Parent orders at an exchange: the real session, live venue, broker and ccxt client against the
fake Binance (tests/fake_binance), with the exchange failing a quarter of the order calls. Each
child reaches the exchange once under its (parent, sequence) id, the parents count what the
exchange executed (its fee in BTC included), and the books agree with the account afterwards."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from fake_binance import FakeBinance
from fake_binance.faults import Fault
from live_support import MARKET, SETTINGS, bars, exchange, live_session, run_until_settled
from test_live_trading import account, check_books_agree, wait_for

from n1v1.config import Settings
from n1v1.engine.algo_orders import child_id_for
from n1v1.store import create_store
from n1v1.store.journal import StoreReader

# the strategy's entries and exits in three children a minute apart (one-minute bars)
SLICED = Settings.model_validate(
    {
        **SETTINGS.model_dump(),
        "execution": {
            **SETTINGS.execution.model_dump(),
            "algo": {"name": "twap", "duration": "3min", "interval": "1min"},
        },
    }
)
OPERATOR_TWAP = {
    "symbol": "BTC/USDT",
    "side": "buy",
    "qty": "3",
    "algo": "twap",
    "duration": "6min",
    "interval": "1min",
}


@pytest.fixture
def fake() -> Any:
    server = exchange()
    yield server
    server.close()


def test_parents_at_a_faulty_exchange_send_each_child_once_and_the_books_agree(
    fake: FakeBinance, tmp_path
) -> None:
    acct = account(fake)
    faults = [
        Fault("accept_then_timeout", delay=1.0),  # created, answer lost: unknown, found by id
        Fault("error_5xx_before_accept"),
        Fault("drop_after_accept"),
        Fault("rate_limit", retry_after=0),
    ]
    fake.randomize_faults(11, 0.25, faults, [("POST", "/api/v3/order")])
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = create_store(url)
    session = live_session(
        store,
        fake.url,
        acct.api_key,
        acct.secret,
        bars(90),
        price=lambda c: fake.set_price(MARKET, c),
        timeout_ms=500,
        grace_s=1.0,
        bars_per_second=20,
        settings=SLICED,
    )
    try:
        session.start()
        wait_for(lambda: session.steps_done >= 10, "the tenth bar")
        placed = session.submit("algo_order", OPERATOR_TWAP, "desk").result(10)["algo_order"]
        run_until_settled(session, timeout_s=120)
        stats = session.broker.stats if session.broker else None
    finally:
        store.dispose()
    seen = check_books_agree(fake, acct, url)  # one exchange order per intent, books = account
    faulted = [r for r in fake.requests_to("POST", "/api/v3/order") if r.fault]
    assert len(faulted) >= 3, "the run must meet faults"
    assert stats is not None and stats.unknown >= 1, stats

    store = create_store(url)
    try:
        reader = StoreReader(store)
        parents = {row["parent_id"]: row["document"] for row in reader.algo_orders()}
        orders = reader.latest_orders()
    finally:
        store.dispose()
    at_exchange = {o.client_order_id: o for o in fake.orders(acct)}
    trades = fake.trades(acct)
    executed: Counter[str] = Counter()
    for trade in trades:
        executed[trade.order.client_order_id] += trade.qty
    strategy_parents = [p for p in parents.values() if p["purpose"] in ("entry", "exit")]
    assert len(strategy_parents) >= 4, "the strategy traded through parents"
    for parent in parents.values():
        children = parent["children"]
        assert children == [child_id_for(parent["parent_id"], k) for k in range(len(children))]
        # what the parent counts is what the exchange executed for its children
        done = sum((executed[c] for c in children), Decimal(0))
        assert Decimal(parent["filled"]) == done, parent["parent_id"]
        for child in children:
            assert orders[child].status.is_terminal, (child, orders[child].status)
            if child in at_exchange:
                assert orders[child].filled_qty == float(at_exchange[child].executed)
    operator = parents[placed["parent_id"]]
    assert operator["status"] in ("done", "ended"), operator
    assert len(operator["children"]) >= 2
    # a buy's fee is charged in BTC: the parent still counts the 3 BTC executed, not less
    if operator["status"] == "done":
        assert Decimal(operator["filled"]) == Decimal(3)
    assert seen["exchange_orders"] >= 10
