"""The store's additions for the trading session and the API, on SQLite and PostgreSQL: the bar log
and command log a restart replays, all-or-nothing steps, fencing inside a step, the positions
table, backtest jobs, and the paged queries the API serves.

PostgreSQL cases run where TEST_POSTGRES_URL is set, exactly as in test_store.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from test_store import _postgres_url

from n1v1.domain import (
    Bar,
    ClientOrderId,
    Fill,
    Liquidity,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Side,
    Signal,
    Symbol,
)
from n1v1.engine.portfolio import Portfolio
from n1v1.store import FencingError, SqlJournal, Store, acquire, create_store
from n1v1.store.backtests import create_backtest, get_backtest, update_backtest

T0 = pd.Timestamp("2024-01-01 00:00", tz="UTC")
MINUTE = pd.Timedelta(minutes=1)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 's.db'}"
    else:
        yield from _postgres_url()


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = create_store(url)
    yield s
    s.dispose()


@pytest.fixture
def journal(store: Store) -> SqlJournal:
    held = acquire(store, "engine", "engine-a", ttl_seconds=60, now=T0)
    return SqlJournal(store, held.token)


def _bar(ts: pd.Timestamp, close: float) -> Bar:
    return Bar(ts, close - 1.0, close + 2.0, close - 2.0, close, 10.0)


def _order(coid: str, symbol: str, side: Side, status: OrderStatus, at: pd.Timestamp) -> Order:
    return Order(
        client_order_id=ClientOrderId(coid),
        symbol=Symbol(symbol),
        side=side,
        qty=1.0,
        order_type=OrderType.MARKET,
        created_at=at,
        purpose=OrderPurpose.ENTRY,
        status=status,
    )


def _fill(side: Side, qty: float, price: float, fee: float, at: pd.Timestamp) -> Fill:
    return Fill(ClientOrderId("o1"), Symbol("BTC"), side, qty, price, fee, Liquidity.TAKER, at)


# -- the replay inputs -----------------------------------------------------------------------------
def test_bar_log_returns_each_step_with_the_feeds_symbol_order(journal: SqlJournal) -> None:
    step0 = {"LTC/USD": _bar(T0, 50.0), "BTC/EUR": _bar(T0, 6000.0)}
    step1 = {"LTC/USD": _bar(T0 + MINUTE, 51.0)}
    step2 = {"LTC/USD": _bar(T0 + 2 * MINUTE, 52.0), "BTC/EUR": _bar(T0 + 2 * MINUTE, 6010.0)}
    for step, bars in enumerate([step0, step1, step2]):
        journal.record_bars(step, bars)

    log = journal.bar_log()
    assert log == [(0, T0, step0), (1, T0 + MINUTE, step1), (2, T0 + 2 * MINUTE, step2)]
    assert [list(bars) for _, _, bars in log] == [
        ["LTC/USD", "BTC/EUR"],
        ["LTC/USD"],
        ["LTC/USD", "BTC/EUR"],  # not alphabetical
    ]


def test_commands_round_trip_in_the_order_they_applied(journal: SqlJournal) -> None:
    order = {"symbol": "BTC/EUR", "side": "buy", "qty": 0.5}
    config = {"risk": {"max_drawdown": 0.2}, "strategies": {"fast_sma": {"fast": 3}}}
    journal.record_command(3, "order", order, "admin:1234abcd", T0)
    journal.record_command(3, "pause", {"reason": "lunch"}, "admin:1234abcd", T0 + MINUTE)
    journal.record_command(7, "config", config, "serve", T0 + 2 * MINUTE)

    assert journal.commands() == [
        {"step": 3, "kind": "order", "payload": order, "actor": "admin:1234abcd", "at": T0},
        {
            "step": 3,
            "kind": "pause",
            "payload": {"reason": "lunch"},
            "actor": "admin:1234abcd",
            "at": T0 + MINUTE,
        },
        {"step": 7, "kind": "config", "payload": config, "actor": "serve", "at": T0 + 2 * MINUTE},
    ]


# -- one step, one transaction ---------------------------------------------------------------------
def test_atomic_commits_every_write_of_the_block(journal: SqlJournal) -> None:
    with journal.atomic():
        journal.record_bars(0, {"BTC": _bar(T0, 100.0)})
        journal.record_order(_order("o1", "BTC", Side.BUY, OrderStatus.NEW, T0))
        journal.set_state("last_step", {"step": 1}, now=T0)

    assert len(journal.bar_log()) == 1
    assert list(journal.latest_orders()) == ["o1"]
    assert journal.get_state("last_step") == {"step": 1}


def test_atomic_writes_nothing_when_the_block_raises(journal: SqlJournal) -> None:
    with pytest.raises(RuntimeError, match="crash mid-step"), journal.atomic():
        journal.record_bars(0, {"BTC": _bar(T0, 100.0)})
        journal.record_order(_order("o1", "BTC", Side.BUY, OrderStatus.NEW, T0))
        journal.set_state("last_step", {"step": 1}, now=T0)
        raise RuntimeError("crash mid-step")

    assert journal.bar_log() == []
    assert journal.latest_orders() == {}
    assert journal.order_history("o1") == []
    assert journal.get_state("last_step") is None


def test_a_stale_fencing_token_cannot_write_inside_atomic(store: Store) -> None:
    old = SqlJournal(store, acquire(store, "engine", "engine-a", 30, now=T0).token)
    acquire(store, "engine", "engine-b", 30, now=T0 + pd.Timedelta(seconds=31))

    with pytest.raises(FencingError, match="held by 'engine-b'"), old.atomic():
        old.record_signal(Signal(T0, Symbol("BTC"), "sma", 1))
    assert old.signals() == []


# -- the positions table ---------------------------------------------------------------------------
def test_write_positions_upserts_one_row_per_symbol(journal: SqlJournal) -> None:
    portfolio = Portfolio(10_000.0)
    portfolio.apply_fill(_fill(Side.BUY, 2.0, 100.0, 0.0, T0))
    portfolio.mark(Symbol("BTC"), 110.0)
    journal.write_positions(portfolio, T0)
    assert journal.positions() == [
        {
            "symbol": "BTC",
            "qty": 2.0,
            "avg_entry": 100.0,
            "last_price": 110.0,
            "market_value": 220.0,
            "unrealized_pnl": 20.0,
            "realized_pnl": 0.0,
            "updated_at": T0,
        }
    ]

    portfolio.apply_fill(_fill(Side.SELL, 2.0, 120.0, 1.0, T0 + MINUTE))
    portfolio.mark(Symbol("BTC"), 120.0)
    journal.write_positions(portfolio, T0 + MINUTE)
    assert journal.positions() == [
        {  # (120 - 100) x 2 - 1 fee realized; flat
            "symbol": "BTC",
            "qty": 0.0,
            "avg_entry": 0.0,
            "last_price": 120.0,
            "market_value": 0.0,
            "unrealized_pnl": 0.0,
            "realized_pnl": 39.0,
            "updated_at": T0 + MINUTE,
        }
    ]


# -- backtest jobs ---------------------------------------------------------------------------------
def test_a_backtest_job_goes_from_queued_to_done(store: Store) -> None:
    request = {"dataset": "coinbase_BTC-EUR_1m", "strategy": "rsi", "params": {"period": 14}}
    create_backtest(store, "bt1", request, "admin:1234abcd")
    queued = get_backtest(store, "bt1")
    assert queued is not None
    assert {k: queued[k] for k in ("id", "status", "request", "actor", "result", "error")} == {
        "id": "bt1",
        "status": "queued",
        "request": request,
        "actor": "admin:1234abcd",
        "result": None,
        "error": None,
    }
    assert pd.Timestamp(queued["created_at"]).tzinfo is not None
    assert queued["finished_at"] is None

    update_backtest(store, "bt1", "running")
    assert get_backtest(store, "bt1")["status"] == "running"  # type: ignore[index]
    update_backtest(store, "bt1", "done", result={"sharpe": 1.5, "trades": 12})
    done = get_backtest(store, "bt1")
    assert done is not None
    assert (done["status"], done["result"], done["error"]) == (
        "done",
        {"sharpe": 1.5, "trades": 12},
        None,
    )
    assert pd.Timestamp(done["finished_at"]) >= pd.Timestamp(done["created_at"])


def test_a_failed_backtest_keeps_its_error(store: Store) -> None:
    create_backtest(store, "bt2", {"dataset": "x"}, "admin:1234abcd")
    update_backtest(store, "bt2", "failed", error="DataError: unknown dataset 'x'")
    failed = get_backtest(store, "bt2")
    assert failed is not None
    assert (failed["status"], failed["error"]) == ("failed", "DataError: unknown dataset 'x'")


def test_backtest_updates_refuse_a_bad_status_and_an_unknown_job(store: Store) -> None:
    create_backtest(store, "bt3", {}, "admin:1234abcd")
    with pytest.raises(ValueError, match=r"'finished'.*queued.*running.*done.*failed"):
        update_backtest(store, "bt3", "finished")
    with pytest.raises(KeyError, match="nope"):
        update_backtest(store, "nope", "running")
    assert get_backtest(store, "nope") is None
    assert get_backtest(store, "bt3")["status"] == "queued"  # type: ignore[index]


# -- the API's paged queries -----------------------------------------------------------------------
@pytest.fixture
def five_orders(journal: SqlJournal) -> SqlJournal:
    """o4 and o5 share a creation time: the id breaks the tie (newest first: o5, o4)."""
    for coid, symbol, side, status, minutes in [
        ("o1", "BTC", Side.BUY, OrderStatus.FILLED, 0),
        ("o2", "BTC", Side.SELL, OrderStatus.CANCELLED, 1),
        ("o3", "LTC", Side.BUY, OrderStatus.FILLED, 2),
        ("o4", "LTC", Side.SELL, OrderStatus.FILLED, 3),
        ("o5", "BTC", Side.BUY, OrderStatus.SUBMITTED, 3),
    ]:
        journal.record_order(_order(coid, symbol, side, status, T0 + minutes * MINUTE))
    return journal


@pytest.mark.parametrize(
    ("query", "ids", "total"),
    [
        ({}, ["o5", "o4", "o3", "o2", "o1"], 5),
        ({"symbol": "BTC"}, ["o5", "o2", "o1"], 3),
        ({"status": "filled"}, ["o4", "o3", "o1"], 3),
        ({"status": "filled", "side": "buy"}, ["o3", "o1"], 2),
        ({"limit": 2, "offset": 1}, ["o4", "o3"], 5),
        ({"symbol": "BTC", "limit": 1, "offset": 1}, ["o2"], 3),
        ({"symbol": "XRP"}, [], 0),
    ],
)
def test_query_orders_filters_pages_newest_first_and_counts_all_matches(
    five_orders: SqlJournal, query: dict[str, object], ids: list[str], total: int
) -> None:
    rows, count = five_orders.query_orders(**query)  # type: ignore[arg-type]
    assert [o.client_order_id for o in rows] == ids
    assert count == total


def test_query_signals_returns_the_newest_first(journal: SqlJournal) -> None:
    signals = [
        Signal(T0, Symbol("BTC"), "sma", 1),
        Signal(T0 + MINUTE, Symbol("LTC"), "sma", 1),
        Signal(T0 + 2 * MINUTE, Symbol("BTC"), "rsi", -1),
        Signal(T0 + 3 * MINUTE, Symbol("BTC"), "sma", 0),
    ]
    for s in signals:
        journal.record_signal(s)
    s1, s2, s3, s4 = signals

    assert journal.query_signals() == [s4, s3, s2, s1]
    assert journal.query_signals(limit=2) == [s4, s3]
    assert journal.query_signals(symbol="BTC") == [s4, s3, s1]
    assert journal.query_signals(symbol="BTC", strategy="sma") == [s4, s1]
    assert journal.query_signals(strategy="macd") == []
