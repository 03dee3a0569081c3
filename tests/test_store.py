"""The state store on SQLite and PostgreSQL: round trips, idempotent fills, transactions, the
schema version, the lease and fencing, and an engine run rebuilt from the store."""

from __future__ import annotations

import dataclasses
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from builders import make_bars, settings

from n1v1.domain import (
    ClientOrderId,
    EquityPoint,
    Fill,
    Liquidity,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    RiskDecision,
    Side,
    Signal,
    Symbol,
)
from n1v1.engine.engine import TradingEngine
from n1v1.engine.feeds import ReplayFeed
from n1v1.engine.journal import InMemoryJournal
from n1v1.engine.signals import PrecomputedTargets
from n1v1.store import (
    FencingError,
    FillConflictError,
    LeaseHeldError,
    SchemaVersionError,
    SqlJournal,
    Store,
    acquire,
    create_store,
    record_audit,
    release,
    renew,
)
from n1v1.store.schema import SCHEMA_VERSION, schema_version

T0 = pd.Timestamp("2024-01-01 00:00", tz="UTC")
PG_ENV = "TEST_POSTGRES_URL"


def _postgres_url() -> Iterator[str]:
    """A fresh schema per test on the CI database; dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set, so the PostgreSQL cases are skipped")
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    except sa.exc.OperationalError as exc:
        pytest.fail(f"{PG_ENV}={base} is set but the server is unreachable: {exc}")
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'n1v1.db'}"
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


def _order(coid: str = "o1", at: pd.Timestamp = T0) -> Order:
    return Order(
        client_order_id=ClientOrderId(coid),
        symbol=Symbol("BTC"),
        side=Side.BUY,
        qty=0.5,
        order_type=OrderType.LIMIT,
        created_at=at,
        purpose=OrderPurpose.ENTRY,
        price=100.25,
        strategy="sma",
        oco_group="g1",
    )


def _fill(coid: str = "o1", seq: int = 0, qty: float = 0.5, fee: float = 0.05) -> Fill:
    return Fill(
        ClientOrderId(coid),
        Symbol("BTC"),
        Side.BUY,
        qty,
        100.25,
        fee,
        Liquidity.MAKER,
        T0 + pd.Timedelta(hours=1, microseconds=7),
        OrderPurpose.ENTRY,
        seq,
    )


def test_sqlite_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    s = create_store(f"sqlite:///{tmp_path / 'x.db'}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    s.dispose()


def test_a_sqlite_store_creates_the_folders_of_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh clone has no var/: serve_config.yaml's sqlite:///var/n1v1.db must still open, and a
    # relative path is relative to the working directory, as SQLite itself takes it.
    monkeypatch.chdir(tmp_path)
    s = create_store("sqlite:///var/deeper/n1v1.db")
    s.dispose()
    assert (tmp_path / "var" / "deeper" / "n1v1.db").is_file()
    nested = tmp_path / "a" / "b" / "x.db"
    create_store(f"sqlite:///{nested}").dispose()
    assert nested.is_file()


def test_every_record_type_round_trips(journal: SqlJournal, store: Store) -> None:
    order = _order()
    journal.record_order(order)
    fill = _fill()
    journal.record_fill(fill)
    signal = Signal(T0, Symbol("BTC"), "sma", -1)
    journal.record_signal(signal)
    decision = RiskDecision(T0, Symbol("BTC"), "max_position", "resize", "cap", 2.0, 0.5)
    journal.record_risk_decision(decision)
    points = [EquityPoint(T0 + pd.Timedelta(hours=h), 1e4 - h, h * 0.1, 1e4) for h in range(3)]
    for p in points:
        journal.record_equity(p)
    journal.set_state("last_bar", {"BTC": "2024-01-01T02:00:00+00:00"}, now=T0)
    record_audit(store, "token:abc", "pause", {"reason": "test", "n": 1}, now=T0)

    assert journal.latest_orders() == {"o1": order}
    assert journal.fills() == [fill]
    assert journal.fills()[0].timestamp == pd.Timestamp("2024-01-01 01:00:00.000007", tz="UTC")
    assert journal.signals() == [signal]
    assert journal.risk_decisions() == [decision]
    assert journal.equity() == points
    assert journal.equity(start=points[1].timestamp) == points[1:]
    assert journal.equity(end=points[1].timestamp) == points[:2]
    assert journal.get_state("last_bar") == {"BTC": "2024-01-01T02:00:00+00:00"}
    assert journal.get_state("missing") is None
    journal.set_state("last_bar", {"BTC": "later"}, now=T0)
    assert journal.get_state("last_bar") == {"BTC": "later"}
    assert journal.audit_log() == [
        {"time": T0, "actor": "token:abc", "action": "pause", "details": {"reason": "test", "n": 1}}
    ]


def test_order_state_history_is_kept(journal: SqlJournal) -> None:
    order = _order()
    journal.record_order(order)
    t1, t2 = T0 + pd.Timedelta(minutes=1), T0 + pd.Timedelta(minutes=2)
    order.transition(OrderStatus.SUBMITTED, t1)
    journal.record_order(order)
    order.apply_fill(0.2, 100.0, t2)
    journal.record_order(order)

    assert journal.order_history("o1") == [
        (T0, OrderStatus.NEW),
        (t1, OrderStatus.SUBMITTED),
        (t2, OrderStatus.PARTIALLY_FILLED),
    ]
    latest = journal.latest_orders()["o1"]
    assert latest.status is OrderStatus.PARTIALLY_FILLED and latest.filled_qty == 0.2


def test_duplicate_fill_is_idempotent_and_a_different_one_is_refused(
    journal: SqlJournal,
) -> None:
    journal.record_order(_order())
    journal.record_fill(_fill(qty=0.2))
    journal.record_fill(_fill(qty=0.2))  # a retry after a lost acknowledgement
    assert len(journal.fills()) == 1
    with pytest.raises(FillConflictError, match=r"o1#0.*qty"):
        journal.record_fill(_fill(qty=0.3))
    journal.record_fill(_fill(seq=1, qty=0.3))
    assert [f.qty for f in journal.fills()] == [0.2, 0.3]


def test_a_step_block_writes_what_single_writes_would(journal: SqlJournal) -> None:
    """Inside `atomic` the rows are held and written together before the commit: the same
    orders (latest state), events, fills and positions as one write at a time; a repeated fill
    is still a no-op and a conflicting one (held or stored) still refused, nothing written."""
    order = _order()
    with journal.atomic():
        journal.record_order(order)
        order.transition(OrderStatus.SUBMITTED, T0 + pd.Timedelta(minutes=1))
        journal.record_order(order)
        journal.record_fill(_fill(qty=0.2))
        journal.record_fill(_fill(qty=0.2))  # repeated inside the block
        with pytest.raises(FillConflictError, match=r"o1#0.*qty"):
            journal.record_fill(_fill(qty=0.3))  # conflicts with the held one: refused at once
        assert journal.latest_orders() == {}  # held: nothing is visible outside the block yet
    assert journal.latest_orders()["o1"].status is OrderStatus.SUBMITTED
    assert [s for _, s in journal.order_history("o1")] == [OrderStatus.NEW, OrderStatus.SUBMITTED]
    assert [f.qty for f in journal.fills()] == [0.2]
    with pytest.raises(FillConflictError, match=r"o1#0.*qty"), journal.atomic():
        journal.record_order(order)
        journal.record_fill(_fill(seq=1, qty=0.1))
        journal.record_fill(_fill(qty=0.4))  # conflicts with the stored fill: found at commit
    assert [f.qty for f in journal.fills()] == [0.2]  # the whole block rolled back
    assert len(journal.order_history("o1")) == 2


def test_a_failed_write_leaves_nothing_half_written(
    journal: SqlJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("disk gone after the orders row")

    monkeypatch.setattr(journal, "_append_event", broken)
    with pytest.raises(RuntimeError, match="disk gone"):
        journal.record_order(_order())
    monkeypatch.undo()
    assert journal.latest_orders() == {}
    assert journal.order_history("o1") == []
    # A fill for an order that was never recorded violates the foreign key: nothing is written.
    with pytest.raises(sa.exc.IntegrityError):
        journal.record_fill(_fill(coid="ghost"))
    assert journal.fills() == []


def test_an_order_caused_by_many_strategies_keeps_every_id(journal: SqlJournal) -> None:
    # five slot ids of the longest allowed length (64) joined by "+": 324 characters, more than
    # the VARCHAR(128) of schema version 2 held (PostgreSQL refused it)
    ids = "+".join(f"{k}" * 64 for k in range(5))
    journal.record_order(dataclasses.replace(_order(), strategy=ids))
    assert journal.latest_orders()["o1"].strategy == ids
    assert journal.query_orders()[0][0].strategy == ids


def test_schema_version_mismatch_names_both_versions(url: str) -> None:
    s = create_store(url)
    with s.transaction() as conn:
        conn.execute(sa.update(schema_version).values(version=99))
    s.dispose()
    with pytest.raises(SchemaVersionError, match=rf"version 99.*needs version {SCHEMA_VERSION}"):
        create_store(url)


def test_reopening_keeps_the_data(url: str) -> None:
    s = create_store(url)
    SqlJournal(s, acquire(s, "engine", "a", 60, now=T0).token).record_order(_order())
    s.dispose()
    s2 = create_store(url)
    assert list(SqlJournal(s2, 0).latest_orders()) == ["o1"]
    s2.dispose()


def test_lease_is_exclusive_until_it_expires_and_fences_the_old_holder(store: Store) -> None:
    first = acquire(store, "engine", "engine-a", ttl_seconds=30, now=T0)
    assert first.expires_at == T0 + pd.Timedelta(seconds=30)
    renewed = acquire(store, "engine", "engine-a", ttl_seconds=30, now=T0 + pd.Timedelta(10, "s"))
    assert renewed.token == first.token  # a renewal keeps the token
    assert renew(store, renewed, 30, now=T0 + pd.Timedelta(20, "s")).token == first.token

    # engine-a's lease now runs until T0 + 50 s.
    with pytest.raises(LeaseHeldError) as err:
        acquire(store, "engine", "engine-b", ttl_seconds=30, now=T0 + pd.Timedelta(40, "s"))
    assert "'engine-a'" in str(err.value) and "2024-01-01T00:00:50+00:00" in str(err.value)

    old = SqlJournal(store, first.token)
    old.record_order(_order("before"))
    second = acquire(store, "engine", "engine-b", ttl_seconds=30, now=T0 + pd.Timedelta(51, "s"))
    assert second.holder == "engine-b" and second.token > first.token
    with pytest.raises(FencingError, match=r"held by 'engine-b'"):
        old.record_order(_order("after"))
    with pytest.raises(FencingError):
        old.record_fill(_fill(coid="before"))
    with pytest.raises(FencingError):
        old.record_equity(EquityPoint(T0, 1.0, 0.0, 1.0))
    new = SqlJournal(store, second.token)
    new.record_order(_order("after"))
    assert list(new.latest_orders()) == ["before", "after"]

    # release lets the next engine in at once, with a yet higher token
    release(store, second, now=T0 + pd.Timedelta(60, "s"))
    third = acquire(store, "engine", "engine-c", ttl_seconds=30, now=T0 + pd.Timedelta(60, "s"))
    assert third.token > second.token


def test_writes_without_any_lease_are_refused(store: Store) -> None:
    with pytest.raises(FencingError, match="no lease"):
        SqlJournal(store, 1).record_signal(Signal(T0, Symbol("BTC"), "sma", 1))


def _run(journal: InMemoryJournal | SqlJournal) -> TradingEngine:
    # Up, down and up again so the run has entries, exits and a flip, with fees charged.
    closes = [100, 102, 105, 103, 99, 97, 100, 104, 108, 107]
    bars = make_bars([(c - 0.5, c + 1.0, c - 1.0, c) for c in closes])
    config = settings(execution={"taker_fee": 0.001, "maker_fee": 0.0005})
    engine = TradingEngine(config, journal=journal)
    targets = np.array([0, 1, 1, 1, -1, -1, 0, 1, 1, 0])
    engine.add_signal_source(PrecomputedTargets.from_arrays("test", {"BTC": targets}))
    engine.run(ReplayFeed({"BTC": bars}))
    return engine


def test_rebuild_portfolio_matches_an_in_memory_engine_run(journal: SqlJournal) -> None:
    memory = InMemoryJournal()
    expected = _run(memory).portfolio
    _run(journal)

    assert len(journal.fills()) == len(memory.fills) >= 3
    assert journal.fills() == memory.fills
    assert journal.latest_orders() == memory.latest_orders()
    assert journal.signals() == memory.signals
    assert journal.equity() == memory.equity

    rebuilt = journal.rebuild_portfolio(expected.initial_cash)
    assert math.isclose(rebuilt.cash, expected.cash, rel_tol=0, abs_tol=1e-9)
    assert math.isclose(rebuilt.fees_paid, expected.fees_paid, rel_tol=0, abs_tol=1e-12)
    assert expected.fees_paid > 0 and len(expected.closed_trades) >= 1
    assert {s: p.qty for s, p in rebuilt.positions.items()} == {
        s: p.qty for s, p in expected.positions.items()
    }
    assert {s: p.realized_pnl for s, p in rebuilt.positions.items()} == {
        s: p.realized_pnl for s, p in expected.positions.items()
    }
    assert [tr.pnl for tr in rebuilt.closed_trades] == [tr.pnl for tr in expected.closed_trades]
