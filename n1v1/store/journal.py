"""The SQL journal: the engine's Journal protocol written to the store, plus the reads that
rebuild a restarted engine.

Every write is one transaction that first checks, inside that same transaction, that the lease's
current token is this journal's fencing token; a stale engine therefore cannot write after a
newer one took over, even if its clock or its lease renewal lagged.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Row, bindparam, func, select

from n1v1.domain import (
    Bar,
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
from n1v1.engine.portfolio import Portfolio
from n1v1.execution.live_venue import VenueEvent
from n1v1.store import schema as t
from n1v1.store.schema import Store
from n1v1.store.snapshots import JournalMarks, StoredSnapshot, insert_snapshot, journal_marks

DEFAULT_RESOURCE = "engine"


class FencingError(RuntimeError):
    """This journal's fencing token is no longer the lease's: another engine holds it."""


class FillConflictError(RuntimeError):
    """A fill with an already recorded (client_order_id, seq) but different contents."""


def order_row(order: Order) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "qty": order.qty,
        "order_type": order.order_type.value,
        "price": order.price,
        "purpose": order.purpose.value,
        "status": order.status.value,
        "filled_qty": order.filled_qty,
        "avg_fill_price": order.avg_fill_price,
        "reason": order.reason,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "strategy": order.strategy,
        "oco_group": order.oco_group,
    }


def _order_from(row: Row[Any]) -> Order:
    return Order(
        client_order_id=ClientOrderId(row.client_order_id),
        symbol=Symbol(row.symbol),
        side=Side(row.side),
        qty=row.qty,
        order_type=OrderType(row.order_type),
        created_at=row.created_at,
        purpose=OrderPurpose(row.purpose),
        price=row.price,
        strategy=row.strategy,
        oco_group=row.oco_group,
        status=OrderStatus(row.status),
        filled_qty=row.filled_qty,
        avg_fill_price=row.avg_fill_price,
        reason=row.reason,
        updated_at=row.updated_at,
    )


def _event_row(order: Order) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "status": order.status.value,
        "filled_qty": order.filled_qty,
        "avg_fill_price": order.avg_fill_price,
        "price": order.price,
        "reason": order.reason,
        "at": order.updated_at if order.updated_at is not None else order.created_at,
    }


def _fill_row(fill: Fill) -> dict[str, Any]:
    return {
        "client_order_id": fill.client_order_id,
        "seq": fill.seq,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "qty": fill.qty,
        "price": fill.price,
        "fee": fill.fee,
        "liquidity": fill.liquidity.value,
        "timestamp": fill.timestamp,
        "purpose": fill.purpose.value,
    }


def _fill_from(row: Row[Any]) -> Fill:
    return Fill(
        client_order_id=ClientOrderId(row.client_order_id),
        symbol=Symbol(row.symbol),
        side=Side(row.side),
        qty=row.qty,
        price=row.price,
        fee=row.fee,
        liquidity=Liquidity(row.liquidity),
        timestamp=row.timestamp,
        purpose=OrderPurpose(row.purpose),
        seq=row.seq,
    )


class StoreReader:
    """Read-only views of the store; needs no lease (the gateway reads while the engine writes)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _rows(self, query: Any) -> list[Row[Any]]:
        with self.store.engine.connect() as conn:
            return list(conn.execute(query))

    def latest_orders(self) -> dict[str, Order]:
        """The last known state of each order, by client order id, in creation order."""
        rows = self._rows(select(t.orders).order_by(t.orders.c.created_at))
        return {r.client_order_id: _order_from(r) for r in rows}

    def order_history(self, client_order_id: str) -> list[tuple[pd.Timestamp, OrderStatus]]:
        """Every recorded state change of one order, oldest first."""
        ev = t.order_events
        q = select(ev.c.at, ev.c.status).where(ev.c.client_order_id == client_order_id)
        return [(r.at, OrderStatus(r.status)) for r in self._rows(q.order_by(ev.c.id))]

    def fills(self, after_id: int = 0) -> list[Fill]:
        """All fills in the order they were recorded (the order the portfolio booked them); those
        recorded after the fill `after_id` (a snapshot's mark) only, when given."""
        q = select(t.fills).where(t.fills.c.id > after_id).order_by(t.fills.c.id)
        return [_fill_from(r) for r in self._rows(q)]

    def orders_changed_after(self, order_event_id: int) -> dict[str, Order]:
        """The last known state of each order with an event after `order_event_id` (a snapshot's
        mark; 0: every order), by client order id."""
        ev = t.order_events
        changed = select(ev.c.client_order_id).where(ev.c.id > order_event_id)
        q = select(t.orders).where(t.orders.c.client_order_id.in_(changed))
        rows = self._rows(q.order_by(t.orders.c.created_at))
        return {r.client_order_id: _order_from(r) for r in rows}

    def signals(self) -> list[Signal]:
        rows = self._rows(select(t.signals).order_by(t.signals.c.id))
        return [Signal(r.timestamp, Symbol(r.symbol), r.strategy, r.target) for r in rows]

    def risk_decisions(self) -> list[RiskDecision]:
        rd = t.risk_decisions
        return [
            RiskDecision(
                r.timestamp,
                Symbol(r.symbol),
                r.rule,
                r.action,
                r.reason,
                r.requested_qty,
                r.approved_qty,
            )
            for r in self._rows(select(rd).order_by(rd.c.id))
        ]

    def equity(
        self, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
    ) -> list[EquityPoint]:
        """Equity points with start <= timestamp <= end (either bound optional)."""
        q = select(t.equity)
        if start is not None:
            q = q.where(t.equity.c.timestamp >= start)
        if end is not None:
            q = q.where(t.equity.c.timestamp <= end)
        rows = self._rows(q.order_by(t.equity.c.timestamp, t.equity.c.id))
        return [EquityPoint(r.timestamp, r.cash, r.position_value, r.equity) for r in rows]

    def audit_log(self) -> list[dict[str, Any]]:
        rows = self._rows(select(t.audit_log).order_by(t.audit_log.c.id))
        return [
            {"time": r.time, "actor": r.actor, "action": r.action, "details": r.details}
            for r in rows
        ]

    def get_state(self, key: str) -> Any:
        """An engine_state value (JSON), or None when the key was never set."""
        rows = self._rows(select(t.engine_state.c.value).where(t.engine_state.c.key == key))
        return rows[0].value if rows else None

    def query_orders(
        self,
        *,
        symbol: str | None = None,
        status: str | None = None,
        side: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Order], int]:
        """One page of orders, newest first, and the total count matching the filters."""
        q = select(t.orders)
        count = select(func.count()).select_from(t.orders)
        for column, value in (("symbol", symbol), ("status", status), ("side", side)):
            if value is not None:
                q = q.where(t.orders.c[column] == value)
                count = count.where(t.orders.c[column] == value)
        q = q.order_by(t.orders.c.created_at.desc(), t.orders.c.client_order_id.desc())
        rows = self._rows(q.limit(limit).offset(offset))
        with self.store.engine.connect() as conn:
            total = int(conn.execute(count).scalar_one())
        return [_order_from(r) for r in rows], total

    def query_signals(
        self, *, symbol: str | None = None, strategy: str | None = None, limit: int = 100
    ) -> list[Signal]:
        """The most recent target changes, newest first."""
        q = select(t.signals)
        if symbol is not None:
            q = q.where(t.signals.c.symbol == symbol)
        if strategy is not None:
            q = q.where(t.signals.c.strategy == strategy)
        rows = self._rows(q.order_by(t.signals.c.id.desc()).limit(limit))
        return [Signal(r.timestamp, Symbol(r.symbol), r.strategy, r.target) for r in rows]

    def positions(self) -> list[dict[str, Any]]:
        """The positions table as the engine last wrote it (one row per symbol ever traded)."""
        rows = self._rows(select(t.positions).order_by(t.positions.c.symbol))
        return [dict(r._mapping) for r in rows]

    def algo_orders(self, parent_id: str | None = None) -> list[dict[str, Any]]:
        """The parent orders as last written, newest first (one: `parent_id`)."""
        stmt = select(t.algo_orders).order_by(
            t.algo_orders.c.created_at.desc(), t.algo_orders.c.parent_id.desc()
        )
        if parent_id is not None:
            stmt = stmt.where(t.algo_orders.c.parent_id == parent_id)
        return [dict(r._mapping) for r in self._rows(stmt)]

    def query_algo_orders(
        self, *, symbol: str | None = None, status: str | None = None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of parent orders, newest first, and how many match the filters."""
        q = select(t.algo_orders)
        count = select(func.count()).select_from(t.algo_orders)
        for column, value in (("symbol", symbol), ("status", status)):
            if value is not None:
                q = q.where(t.algo_orders.c[column] == value)
                count = count.where(t.algo_orders.c[column] == value)
        q = q.order_by(t.algo_orders.c.created_at.desc(), t.algo_orders.c.parent_id.desc())
        rows = self._rows(q.limit(limit).offset(offset))
        with self.store.engine.connect() as conn:
            total = int(conn.execute(count).scalar_one())
        return [dict(r._mapping) for r in rows], total

    def orders_by_id(self, client_order_ids: list[str]) -> dict[str, Order]:
        """The latest state of each of these orders that is stored."""
        if not client_order_ids:
            return {}
        rows = self._rows(select(t.orders).where(t.orders.c.client_order_id.in_(client_order_ids)))
        return {r.client_order_id: _order_from(r) for r in rows}

    def bar_log(self, from_step: int = 0) -> list[tuple[int, pd.Timestamp, dict[str, Bar]]]:
        """The engine's input bars, grouped into the steps it processed, in order (from the step
        numbered `from_step`: a snapshot's)."""
        b = t.bars
        steps: dict[int, tuple[pd.Timestamp, dict[str, Bar]]] = {}
        for r in self._rows(select(b).where(b.c.step >= from_step).order_by(b.c.id)):
            _, bars = steps.setdefault(r.step, (r.timestamp, {}))
            bars[r.symbol] = Bar(r.timestamp, r.open, r.high, r.low, r.close, r.volume)
        return [(step, ts, bars) for step, (ts, bars) in sorted(steps.items())]

    def recent_bars(self, symbol: str, limit: int, end: pd.Timestamp | None = None) -> list[Bar]:
        """The `limit` newest bars of `symbol` the engine took (at or before `end`), oldest
        first."""
        b = t.bars
        q = select(b).where(b.c.symbol == symbol)
        if end is not None:
            q = q.where(b.c.timestamp <= end)
        rows = self._rows(q.order_by(b.c.timestamp.desc()).limit(limit))
        return [Bar(r.timestamp, r.open, r.high, r.low, r.close, r.volume) for r in reversed(rows)]

    def closes(self, start: pd.Timestamp | None = None) -> pd.DataFrame:
        """The closes of every symbol the engine took, one row per bar time (NaN where a symbol
        had no bar), from `start`."""
        b = t.bars
        q = select(b.c.timestamp, b.c.symbol, b.c.close)
        if start is not None:
            q = q.where(b.c.timestamp >= start)
        rows = self._rows(q.order_by(b.c.timestamp))
        frame = pd.DataFrame(rows, columns=["timestamp", "symbol", "close"])
        if frame.empty:
            return pd.DataFrame()
        return frame.pivot(index="timestamp", columns="symbol", values="close")

    def symbol_fills(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> list[Fill]:
        """The fills of `symbol` with start <= timestamp <= end, in time order."""
        f = t.fills
        q = select(f).where(f.c.symbol == symbol, f.c.timestamp >= start, f.c.timestamp <= end)
        return [_fill_from(r) for r in self._rows(q.order_by(f.c.timestamp, f.c.id))]

    def predictions(self, after_step: int = -1) -> dict[int, list[dict[str, Any]]]:
        """The model answers the engine used, by step (those after `after_step`), in order."""
        p = t.predictions
        query = select(p).where(p.c.step > after_step).order_by(p.c.id)
        out: dict[int, list[dict[str, Any]]] = {}
        for r in self._rows(query):
            row = dict(r._mapping)
            out.setdefault(row.pop("step"), []).append(row)
        return out

    def venue_events(self, from_step: int = 0) -> dict[int, list[VenueEvent]]:
        """What a live exchange said, by the step that applies it (from `from_step`), in order."""
        ve = t.venue_events
        query = select(ve).where(ve.c.step >= from_step).order_by(ve.c.id)
        out: dict[int, list[VenueEvent]] = {}
        for r in self._rows(query):
            out.setdefault(r.step, []).append(VenueEvent.from_row(r))
        return out

    def stored_trade_ids(self, client_order_id: str) -> set[str]:
        ve = t.venue_events
        query = select(ve.c.trade_id).where(
            ve.c.client_order_id == client_order_id, ve.c.trade_id.is_not(None)
        )
        return {r.trade_id for r in self._rows(query)}

    def bars_before(self, symbol: str, before: pd.Timestamp, count: int) -> list[Bar]:
        """The `count` bars of `symbol` just before `before`, oldest first (a restored bar
        history that must show more of the past: n1v1/live/history.py)."""
        b = t.bars
        q = select(b).where(b.c.symbol == symbol, b.c.timestamp < before)
        rows = self._rows(q.order_by(b.c.timestamp.desc()).limit(count))
        return [Bar(r.timestamp, r.open, r.high, r.low, r.close, r.volume) for r in rows[::-1]]

    def commands(self, after_id: int = 0) -> list[dict[str, Any]]:
        """Operator commands in the order they applied, each with the step it applied before
        (those logged after the command `after_id`, a snapshot's mark, only, when given)."""
        c = t.commands
        rows = self._rows(select(c).where(c.c.id > after_id).order_by(c.c.id))
        return [
            {"step": r.step, "kind": r.kind, "payload": r.payload, "actor": r.actor, "at": r.at}
            for r in rows
        ]

    def rebuild_portfolio(self, initial_cash: float) -> Portfolio:
        """Replay every fill through the engine's own Portfolio (one accounting, not two).

        Positions are marked at their last fill price; the engine re-marks them on the next bar.
        """
        portfolio = Portfolio(initial_cash)
        for fill in self.fills():
            portfolio.apply_fill(fill)
        return portfolio


# The engine writes these on every bar. Built once with bound parameters, so SQLAlchemy compiles
# each once and a write only binds values: `.values(**row)` per call spent more time building and
# hashing the statement than the database spent on the row.
_LEASE_ROW = select(t.lease.c.holder, t.lease.c.token).where(
    t.lease.c.resource == bindparam("b_resource")
)
_LEASE_ROW_SHARED = _LEASE_ROW.with_for_update(read=True)
_FILL_BY_KEY = select(t.fills).where(
    t.fills.c.client_order_id == bindparam("b_order"), t.fills.c.seq == bindparam("b_seq")
)
_FILLS_OF_ORDERS = select(t.fills).where(
    t.fills.c.client_order_id.in_(bindparam("b_orders", expanding=True))
)


class _PendingWrites:
    """The rows of one `atomic` block, written together just before its commit.

    Why: a bar with a few orders made dozens of single-row statements (order upserts, events,
    fills, signals, risk decisions), each a round trip to PostgreSQL; held here they become one
    multi-row statement per table. Orders keep only their latest row (an upsert); fills keep
    their idempotency check (a repeat within the block is compared here, one already stored is
    compared at the flush).
    """

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}  # client_order_id -> latest row
        self.positions: dict[str, dict[str, Any]] = {}  # symbol -> latest row
        self.algo_orders: dict[str, dict[str, Any]] = {}  # parent id -> latest row
        self.state: dict[str, dict[str, Any]] = {}  # engine_state key -> latest row
        self.fills: dict[tuple[str, int], dict[str, Any]] = {}
        self.rows: dict[Any, list[dict[str, Any]]] = {}  # table -> appended rows, in order

    def append(self, table: Any, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)

    def flush(self, conn: Connection) -> None:
        _upsert(conn, t.orders, list(self.orders.values()))
        _upsert(conn, t.positions, list(self.positions.values()))
        _upsert(conn, t.algo_orders, list(self.algo_orders.values()))
        _upsert(conn, t.engine_state, list(self.state.values()))
        if self.fills:
            orders = sorted({k[0] for k in self.fills})
            for existing in conn.execute(_FILLS_OF_ORDERS, {"b_orders": orders}):
                key = (existing.client_order_id, existing.seq)
                new = self.fills.pop(key, None)
                if new is not None:
                    _check_same_fill(_fill_row(_fill_from(existing)), new)
            if self.fills:
                conn.execute(t.fills.insert(), list(self.fills.values()))
        for table, rows in self.rows.items():  # events after their orders (foreign keys)
            conn.execute(table.insert(), rows)
        self.orders, self.positions, self.state, self.fills, self.rows = {}, {}, {}, {}, {}
        self.algo_orders = {}


def _upsert(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert `rows`, or update the row already stored under the same primary key: one
    statement (INSERT ... ON CONFLICT DO UPDATE, SQLite and PostgreSQL alike) for any count."""
    if rows:
        conn.execute(_upsert_statement(conn.dialect.name, table, tuple(rows[0])), rows)


@functools.cache
def _upsert_statement(dialect: str, table: Any, columns: tuple[str, ...]) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # create_store admits only sqlite and postgresql
        from sqlalchemy.dialects.sqlite import insert
    key = [c.name for c in table.primary_key]
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=key, set_={c: stmt.excluded[c] for c in columns if c not in key}
    )


def _check_same_fill(old: dict[str, Any], new: dict[str, Any]) -> None:
    """FillConflictError unless `new` repeats the stored fill `old` exactly."""
    diff = {k: (old[k], v) for k, v in new.items() if old[k] != v}
    if diff:
        raise FillConflictError(
            f"fill {new['client_order_id']}#{new['seq']} already recorded with different "
            f"values (stored, new): {diff}"
        )


class SqlJournal(StoreReader):
    """Implements n1v1.engine.journal.Journal against the store, fenced by a lease token."""

    def __init__(self, store: Store, fencing_token: int, resource: str = DEFAULT_RESOURCE) -> None:
        super().__init__(store)
        self.fencing_token = fencing_token
        self.resource = resource
        self._batch: Connection | None = None
        self._pending: _PendingWrites | None = None

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Every write inside the block goes into one fenced transaction: all or nothing.

        The paper engine wraps each bar in one, so a crash leaves either the whole bar (its input,
        orders, fills, signals, equity and the step marker) in the store or none of it. Appends
        and upserts are held (`_PendingWrites`) and written together before the commit; anything
        that reads or needs a row id in the block writes them first.
        """
        if self._batch is not None:
            yield
            return
        with self.store.transaction() as conn:
            self._fence(conn)
            self._batch, self._pending = conn, _PendingWrites()
            try:
                yield
                self._pending.flush(conn)
            finally:
                self._batch, self._pending = None, None

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        if self._batch is not None:
            if self._pending is not None:
                self._pending.flush(self._batch)  # whatever comes next sees every held row
            yield self._batch
            return
        with self.store.transaction() as conn:
            self._fence(conn)
            yield conn

    def _fence(self, conn: Connection) -> None:
        # On PostgreSQL, hold the lease row shared until commit, so a takeover waits for this write.
        q = _LEASE_ROW_SHARED if conn.dialect.name == "postgresql" else _LEASE_ROW
        row = conn.execute(q, {"b_resource": self.resource}).first()
        if row is None:
            raise FencingError(f"no lease on {self.resource!r}: acquire it before writing")
        if int(row.token) != self.fencing_token:
            raise FencingError(
                f"lease {self.resource!r} is held by {row.holder!r} with token {row.token}; "
                f"this journal's token {self.fencing_token} is stale, refusing to write"
            )

    # -- Journal protocol ------------------------------------------------------------------------
    def record_order(self, order: Order) -> None:
        """Upsert the latest state and append an order_events row, in one transaction."""
        row = order_row(order)
        if self._pending is not None:
            self._pending.orders[order.client_order_id] = row
            self._pending.append(t.order_events, _event_row(order))
            return
        with self._tx() as conn:
            _upsert(conn, t.orders, [row])
            self._append_event(conn, order)

    def _append_event(self, conn: Connection, order: Order) -> None:
        conn.execute(t.order_events.insert(), _event_row(order))

    def record_fill(self, fill: Fill) -> None:
        """Idempotent on (client_order_id, seq): an identical repeat is a no-op, a different one
        raises FillConflictError (a venue or engine bug that must not be papered over)."""
        new = _fill_row(fill)
        if self._pending is not None:
            held = self._pending.fills.setdefault((fill.client_order_id, fill.seq), new)
            _check_same_fill(held, new)
            return
        with self._tx() as conn:
            key = {"b_order": fill.client_order_id, "b_seq": fill.seq}
            existing = conn.execute(_FILL_BY_KEY, key).first()
            if existing is None:
                conn.execute(t.fills.insert(), new)
                return
            _check_same_fill(_fill_row(_fill_from(existing)), new)

    def record_signal(self, signal: Signal) -> None:
        self._insert(t.signals, dataclasses.asdict(signal))

    def record_risk_decision(self, decision: RiskDecision) -> None:
        self._insert(t.risk_decisions, dataclasses.asdict(decision))

    def record_equity(self, point: EquityPoint) -> None:
        self._insert(t.equity, dataclasses.asdict(point))

    # -- engine state and audit --------------------------------------------------------------------
    def set_state(self, key: str, value: Any, now: pd.Timestamp | None = None) -> None:
        """Upsert a JSON value (e.g. the last processed bar per feed), fenced like every write."""
        at = now if now is not None else pd.Timestamp.now(tz="UTC").floor("us")
        row = {"key": key, "value": value, "updated_at": at}
        if self._pending is not None:
            self._pending.state[key] = row
            return
        with self._tx() as conn:
            _upsert(conn, t.engine_state, [row])

    def record_bars(self, step: int, bars: Mapping[str, Bar]) -> None:
        """Log the bars of one step: the input a restarted engine replays."""
        for symbol, bar in bars.items():
            self._insert(t.bars, {"step": step, "symbol": symbol, **bar._asdict()})

    def record_predictions(self, step: int, rows: list[dict[str, Any]]) -> None:
        """Log the model answers of one step (PredictionRecord.to_row()): inputs, like its bars."""
        for row in rows:
            self._insert(t.predictions, {"step": step, **row})

    def record_venue_events(self, step: int, events: list[VenueEvent]) -> list[VenueEvent]:
        """Store what the exchange said, for the engine to apply at `step`; a fill whose trade
        id is already stored (a repeated poll, a restart) is dropped. Returns the new events."""
        if not events:
            return []
        ve = t.venue_events
        now = pd.Timestamp.now(tz="UTC")
        with self._tx() as conn:
            ids = [e.trade_id for e in events if e.trade_id]
            stored: set[str] = set()
            if ids:
                query = select(ve.c.trade_id).where(ve.c.trade_id.in_(ids))
                stored = set(conn.execute(query).scalars())
            new = []
            for event in events:
                if event.trade_id:
                    if event.trade_id in stored:
                        continue
                    stored.add(event.trade_id)
                new.append(event)
            if new:
                rows = [
                    {**e.to_row(), "trade_id": e.trade_id or None, "step": step, "recorded_at": now}
                    for e in new
                ]
                conn.execute(ve.insert(), rows)
        return new

    def record_command(
        self, step: int, kind: str, payload: Mapping[str, Any], actor: str, at: pd.Timestamp
    ) -> None:
        """Log an operator command with the step it applied before, for an exact replay."""
        row = {"step": step, "kind": kind, "payload": dict(payload), "actor": actor, "at": at}
        self._insert(t.commands, row)

    def write_positions(self, portfolio: Portfolio, at: pd.Timestamp) -> None:
        """Upsert every position's current state (derived from fills; kept for readers)."""
        rows: dict[str, dict[str, Any]] = {}
        for symbol, pos in portfolio.positions.items():
            marked = math.isfinite(pos.last_price)
            rows[symbol] = {
                "symbol": symbol,
                "qty": pos.qty,
                "avg_entry": pos.avg_entry if pos.is_open else 0.0,
                "last_price": pos.last_price if marked else pos.avg_entry,
                "market_value": pos.market_value if marked else 0.0,
                "unrealized_pnl": pos.unrealized_pnl if pos.is_open and marked else 0.0,
                "realized_pnl": pos.realized_pnl,
                "updated_at": at,
            }
        if self._pending is not None:
            self._pending.positions.update(rows)
            return
        with self._tx() as conn:
            _upsert(conn, t.positions, list(rows.values()))

    def write_algo_orders(self, parents: list[dict[str, Any]], at: pd.Timestamp) -> None:
        """Upsert parent orders (`parent_to_dict` documents) that changed."""
        rows = {
            d["parent_id"]: {
                "parent_id": d["parent_id"],
                "symbol": d["symbol"],
                "side": d["side"],
                "algo": d["algo"],
                "status": d["status"],
                "qty": d["qty"],
                "filled": d["filled"],
                "document": d,
                "created_at": pd.Timestamp(d["created_at"]),
                "updated_at": at,
            }
            for d in parents
        }
        if self._pending is not None:
            self._pending.algo_orders.update(rows)
            return
        with self._tx() as conn:
            _upsert(conn, t.algo_orders, list(rows.values()))

    def journal_marks(self, step: int) -> JournalMarks:
        """Where the journal stands now (in the open transaction: a snapshot's marks)."""
        with self._tx() as conn:
            return journal_marks(conn, step)

    def record_snapshot(
        self, step: int, format: int, reason: str, document: bytes, keep: int
    ) -> StoredSnapshot:
        """Store a snapshot of the engine, fenced like every write; keep the newest `keep`."""
        at = pd.Timestamp.now(tz="UTC").floor("us")
        with self._tx() as conn:
            return insert_snapshot(
                conn, step=step, format=format, reason=reason, document=document, keep=keep, at=at
            )

    def _insert(self, table: Any, values: Mapping[str, Any]) -> None:
        if self._pending is not None:
            self._pending.append(table, dict(values))
            return
        with self._tx() as conn:
            conn.execute(table.insert(), dict(values))


def record_audit(
    store: Store,
    actor: str,
    action: str,
    details: Mapping[str, Any],
    now: pd.Timestamp | None = None,
) -> None:
    """Append an API action to the audit log. Not fenced: the gateway, not the engine, writes it."""
    at = now if now is not None else pd.Timestamp.now(tz="UTC").floor("us")
    with store.transaction() as conn:
        conn.execute(
            t.audit_log.insert().values(time=at, actor=actor, action=action, details=dict(details))
        )
