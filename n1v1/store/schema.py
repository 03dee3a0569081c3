"""Table definitions, the UTC timestamp type and opening a store at a known schema version.

The schema is versioned twice over: Alembic's `alembic_version` names the revision (the
migrations in n1v1/store/migrations), and the one-row `schema_version` table keeps the number, so
a release from before the migrations still refuses a newer store by name. An empty database is
created at the current version; a database at an older one is refused with both versions named
and the command that migrates it (`n1v1 store upgrade`, n1v1/store/migrate.py), because a silent
migration of a trading journal, at the start of a replica that cannot trade yet, is how history
gets lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    make_url,
    select,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

# 2: bars, commands, positions and backtests tables. 3: orders.strategy is text (the strategies
# whose targets caused the order, "+"-joined); manual orders replay under the strict rules.
# 4: the retrain_runs table (scheduled retraining, one row per model and scheduled time).
# 5: the snapshots table (bounded recovery). From 4 on, each version is an Alembic revision named
# by its number (n1v1/store/migrations/versions, docs/store.md "Migrations").
# 6: the predictions table (an ml_signal slot's model answers, inputs of the engine).
# 7: the venue_events table (what a live exchange said about our orders, inputs of the engine).
# 8: the algo_orders table (parent orders of the execution algorithms, their plan and progress).
# 9: backtests.report (the job's self-contained HTML report, zlib-compressed).
SCHEMA_VERSION = 9


class SchemaVersionError(RuntimeError):
    """The database was written by a different schema version than this code understands."""


class UtcTimestamp(TypeDecorator[pd.Timestamp]):
    """A pd.Timestamp in UTC that round-trips exactly.

    PostgreSQL: `timestamp with time zone` (microsecond resolution, so a timestamp with
    nanoseconds is refused rather than silently truncated). SQLite: integer nanoseconds since the
    epoch (`pd.Timestamp.value`), exact and sortable.
    """

    impl = BigInteger
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        return dialect.type_descriptor(BigInteger())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        ts = pd.Timestamp(value)
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {ts} has no time zone; the store keeps UTC only")
        ts = ts.tz_convert("UTC")
        if dialect.name == "postgresql":
            if ts.nanosecond:
                raise ValueError(f"timestamp {ts} has nanoseconds; PostgreSQL keeps microseconds")
            return ts.to_pydatetime()
        return int(ts.value)

    def process_result_value(self, value: Any, dialect: Dialect) -> pd.Timestamp | None:
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            return pd.Timestamp(value).tz_convert("UTC")
        return pd.Timestamp(int(value), tz="UTC")


metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

orders = Table(
    "orders",
    metadata,
    Column("client_order_id", String(64), primary_key=True),
    Column("symbol", String(64), nullable=False),
    Column("side", String(8), nullable=False),
    Column("qty", Double, nullable=False),
    Column("order_type", String(16), nullable=False),
    Column("price", Double),
    Column("purpose", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("filled_qty", Double, nullable=False),
    Column("avg_fill_price", Double, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UtcTimestamp, nullable=False),
    Column("updated_at", UtcTimestamp),
    Column("strategy", Text, nullable=False),  # "+"-joined ids; any number of strategies
    Column("oco_group", String(128), nullable=False),
)

order_events = Table(
    "order_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_order_id", ForeignKey("orders.client_order_id"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("filled_qty", Double, nullable=False),
    Column("avg_fill_price", Double, nullable=False),
    Column("price", Double),
    Column("reason", Text, nullable=False),
    Column("at", UtcTimestamp, nullable=False),
    Index("ix_order_events_order", "client_order_id"),
)

fills = Table(
    "fills",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_order_id", ForeignKey("orders.client_order_id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("side", String(8), nullable=False),
    Column("qty", Double, nullable=False),
    Column("price", Double, nullable=False),
    Column("fee", Double, nullable=False),
    Column("liquidity", String(8), nullable=False),
    Column("timestamp", UtcTimestamp, nullable=False),
    Column("purpose", String(32), nullable=False),
    UniqueConstraint("client_order_id", "seq", name="uq_fills_order_seq"),
)

signals = Table(
    "signals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("timestamp", UtcTimestamp, nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("strategy", String(128), nullable=False),
    Column("target", Integer, nullable=False),
)

risk_decisions = Table(
    "risk_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("timestamp", UtcTimestamp, nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_qty", Double, nullable=False),
    Column("approved_qty", Double, nullable=False),
)

equity = Table(
    "equity",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("timestamp", UtcTimestamp, nullable=False),
    Column("cash", Double, nullable=False),
    Column("position_value", Double, nullable=False),
    Column("equity", Double, nullable=False),
    Index("ix_equity_timestamp", "timestamp"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", UtcTimestamp, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(128), nullable=False),
    Column("details", JSON, nullable=False),
)

lease = Table(
    "lease",
    metadata,
    Column("resource", String(128), primary_key=True),
    Column("holder", String(256), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", UtcTimestamp, nullable=False),
)

engine_state = Table(
    "engine_state",
    metadata,
    Column("key", String(256), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UtcTimestamp, nullable=False),
)


# The engine's inputs, in the order it consumed them: with the commands below they determine its
# state exactly, which is how a restarted engine rebuilds itself (docs/store.md).
bars = Table(
    "bars",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # keeps the feed's symbol order
    Column("step", Integer, nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("timestamp", UtcTimestamp, nullable=False),
    Column("open", Double, nullable=False),
    Column("high", Double, nullable=False),
    Column("low", Double, nullable=False),
    Column("close", Double, nullable=False),
    Column("volume", Double, nullable=False),
    UniqueConstraint("symbol", "timestamp", name="uq_bars_symbol_time"),
    Index("ix_bars_step", "step"),
)

# What the Model deployment answered an ml_signal slot (or why it did not), per step, slot, symbol
# and role: an input like the bars, replayed instead of asking a model (n1v1/live/predictions.py).
predictions = Table(
    "predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("step", Integer, nullable=False),
    Column("slot", String(64), nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("role", String(16), nullable=False),  # trade | shadow
    Column("status", String(16), nullable=False),  # ok | not_ready | timeout | error | mismatch
    Column("model", String(128), nullable=False),
    Column("version", String(16)),
    Column("row_hash", String(16)),
    Column("probabilities", JSON),
    Column("threshold", Double),
    Column("short_threshold", Double),
    Column("fallback", String(8), nullable=False),
    Column("detail", Text, nullable=False),
    Column("latency_ms", Double),
    Index("ix_predictions_step", "step"),
)

# What a live exchange said about our orders (n1v1/execution/live_venue.py), stored the moment the
# broker read it and applied by the engine at `step`: inputs, like bars. A fill's exchange trade id
# is unique, so reading the same trade twice (a retried poll, a restart) stores it once.
venue_events = Table(
    "venue_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("step", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("client_order_id", String(64), nullable=False),
    Column("exchange_order_id", String(128), nullable=False),
    Column("trade_id", String(128)),
    Column("qty", Double, nullable=False),
    Column("price", Double, nullable=False),
    Column("fee", Double, nullable=False),
    Column("base_fee", Double, nullable=False),  # a fee charged in the base asset, in base units
    Column("liquidity", String(8), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UtcTimestamp, nullable=False),
    Column("recorded_at", UtcTimestamp, nullable=False),
    Index("ix_venue_events_step", "step"),
    Index("ix_venue_events_order", "client_order_id"),
    UniqueConstraint("trade_id", name="uq_venue_events_trade"),
)

commands = Table(
    "commands",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("step", Integer, nullable=False),  # bars processed before the command applied
    Column("kind", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("at", UtcTimestamp, nullable=False),
)

positions = Table(
    "positions",
    metadata,
    Column("symbol", String(64), primary_key=True),
    Column("qty", Double, nullable=False),
    Column("avg_entry", Double, nullable=False),
    Column("last_price", Double, nullable=False),
    Column("market_value", Double, nullable=False),
    Column("unrealized_pnl", Double, nullable=False),
    Column("realized_pnl", Double, nullable=False),
    Column("updated_at", UtcTimestamp, nullable=False),
)

algo_orders = Table(
    "algo_orders",
    metadata,
    Column("parent_id", String(64), primary_key=True),
    Column("symbol", String(64), nullable=False),
    Column("side", String(8), nullable=False),
    Column("algo", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("qty", String(64), nullable=False),  # exact decimal
    Column("filled", String(64), nullable=False),
    Column("document", JSON, nullable=False),  # the whole parent (n1v1/execution/algos.py)
    Column("created_at", UtcTimestamp, nullable=False),
    Column("updated_at", UtcTimestamp, nullable=False),
)

backtests = Table(
    "backtests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("request", JSON, nullable=False),
    Column("result", JSON),
    Column("error", Text),
    Column("actor", String(128), nullable=False),
    Column("created_at", UtcTimestamp, nullable=False),
    Column("finished_at", UtcTimestamp),
    Column("report", LargeBinary),  # the HTML report of a done job, zlib-compressed
)

# Scheduled retraining (`n1v1 retrain`, n1v1/store/retrain_runs.py): one row per model and scheduled
# time, claimed under the lease `retrain:<model>`; a row in state `done` makes a later run for the
# same tick exit without training.
retrain_runs = Table(
    "retrain_runs",
    metadata,
    Column("model", String(64), nullable=False),
    Column("scheduled_at", UtcTimestamp, nullable=False),
    Column("schedule", String(256), nullable=False),
    Column("state", String(16), nullable=False),  # running | done | failed | abandoned
    Column("holder", String(256), nullable=False),
    Column("lease_token", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("run_name", String(128), nullable=False),
    Column("started_at", UtcTimestamp, nullable=False),
    Column("finished_at", UtcTimestamp),
    Column("version", String(16)),
    Column("promoted", Boolean),
    Column("outcome", Text, nullable=False),
    PrimaryKeyConstraint("model", "scheduled_at", name="pk_retrain_runs"),
)


# The engine's whole state every `snapshot_every` steps and at a clean shutdown, written in the
# step's fenced transaction, so recovery replays only the steps after it (n1v1/live/snapshot.py:
# the format; docs/store.md "Snapshots"). Only the newest `snapshots_kept` rows are kept.
snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("step", Integer, nullable=False),  # steps done when it was taken
    Column("format", Integer, nullable=False),  # n1v1.live.snapshot.FORMAT
    Column("reason", String(16), nullable=False),  # periodic | shutdown
    Column("created_at", UtcTimestamp, nullable=False),
    Column("size", Integer, nullable=False),  # bytes of the JSON document
    Column("sha256", String(64), nullable=False),  # of the JSON document
    Column("payload", LargeBinary, nullable=False),  # the JSON document, zlib-compressed
    Index("ix_snapshots_step", "step"),
)


@dataclass(frozen=True)
class Store:
    """An opened, version-checked database. `transaction()` is the only way writes happen."""

    engine: Engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: committed if the block returns, rolled back if it raises.

        On SQLite it starts with BEGIN IMMEDIATE: a deferred transaction that reads first (the
        fencing check) and writes later fails at once with "database is locked" when another
        connection wrote in between, instead of waiting its turn.
        """
        with self.engine.connect() as conn:
            conn.execution_options(n1v1_write=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL (readers never block the writer), foreign keys on, and real BEGINs.

    pysqlite by default opens a transaction only before the first INSERT/UPDATE, so a fencing
    check (a SELECT) would run outside the write's transaction; we emit BEGIN ourselves.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("n1v1_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_store(url: str) -> Store:
    """Open (creating tables on an empty database) the store at `url`.

    `sqlite:///path/to/n1v1.db` or `postgresql+psycopg://user@host:5432/db`. Raises
    SchemaVersionError when the database holds another schema version.
    """
    engine = open_engine(url)
    try:
        _check_or_create(engine)
    except Exception:
        engine.dispose()
        raise
    return Store(engine)


def open_engine(url: str) -> Engine:
    """The SQLAlchemy engine of the store at `url`, configured but not version-checked (for
    `create_store` and for the migrations, which must open an old store)."""
    if not url.startswith(("sqlite", "postgresql")):
        raise ValueError(
            f"store url {url!r}: only sqlite:/// and postgresql+psycopg:// are supported"
        )
    engine = create_engine(url, connect_args=_connect_args(url))
    if engine.dialect.name == "sqlite":
        _make_sqlite_dir(engine)
        _sqlite_pragmas(engine)
    return engine


# A PostgreSQL connection that cannot reach its server fails within seconds instead of hanging: a
# connect gives up after 5 s, data unacknowledged for 15 s fails the socket (a cut network, where
# no reset ever arrives) and an idle connection is probed after 10 s. The engine then stops
# trading until the store answers (n1v1/store/availability.py). A URL that sets one keeps its own.
_PG_TIMEOUTS = {
    "connect_timeout": 5,
    "tcp_user_timeout": 15_000,  # milliseconds
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def _connect_args(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return {}
    return {k: v for k, v in _PG_TIMEOUTS.items() if k not in parsed.query}


def check_store(store: Store) -> None:
    """Create the tables of an empty database, or check its schema version (SchemaVersionError);
    for a store opened before its database could be reached (availability.open_store)."""
    _check_or_create(store.engine)


def _make_sqlite_dir(engine: Engine) -> None:
    """Create the database file's directory: SQLite creates the file but not its folders, and a
    fresh clone has no `var/` (without it every replica failed with "unable to open database
    file" and Serve restarted it in a loop). In-memory databases have no directory."""
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _check_or_create(engine: Engine) -> None:
    # The migrations read this module's tables: imported here, not at the top, to avoid a cycle.
    from n1v1.store.migrate import check_revision, stamp_head, version_gap

    with engine.begin() as conn:
        tables = set(inspect(conn).get_table_names())
        if "schema_version" not in tables:
            known = tables & set(metadata.tables)
            if known:
                raise SchemaVersionError(
                    f"database has tables {sorted(known)} but no schema_version table; "
                    f"this code needs schema version {SCHEMA_VERSION} and will not guess"
                )
            metadata.create_all(conn)
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            stamp_head(conn)
            return
        versions = conn.execute(select(schema_version.c.version)).scalars().all()
        if versions != [SCHEMA_VERSION]:
            raise SchemaVersionError(version_gap(versions))
        check_revision(conn)
