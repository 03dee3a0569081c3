"""Store migrations: a version-4 store, built by the very DDL version-4 code ran and holding a real
session's journal, upgrades to the head with nothing lost; it then has the schema of a new store,
a session rebuilds from it and snapshots into it. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from session_worker import SCHEDULE, make_session, market, run_to_end
from test_store import _postgres_url

from n1v1.cli import main
from n1v1.live.replay import PacedReplay
from n1v1.store import LeaseHeldError, SchemaVersionError, Store, StoreReader, create_store
from n1v1.store import schema as t
from n1v1.store.migrate import HEAD, current_revision, script_head, upgrade_store
from n1v1.store.schema import SCHEMA_VERSION
from n1v1.store.snapshots import list_snapshots

V4 = Path(__file__).with_name("store_v4")
V4_TABLES = (  # in an order their foreign keys allow
    "schema_version",
    "orders",
    "order_events",
    "fills",
    "signals",
    "risk_decisions",
    "equity",
    "audit_log",
    "lease",
    "engine_state",
    "bars",
    "commands",
    "positions",
    "backtests",
    "retrain_runs",
)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
    else:
        yield from _postgres_url()


@pytest.fixture(scope="module")
def session_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every row of a real session's store (120 steps, a config change and a manual order), by
    table: what a version-4 store would hold."""
    path = tmp_path_factory.mktemp("session") / "source.db"
    store = create_store(f"sqlite:///{path}")
    feed = PacedReplay(market(120), 0)
    session = make_session(store, feed, schedule=SCHEDULE, snapshot_every=0)
    session.start()
    try:
        run_to_end(session, feed, len(feed))
    finally:
        session.stop()
    rows = _rows(store.engine)
    store.dispose()
    assert rows["fills"] and rows["commands"] and rows["bars"]
    return rows


def _rows(engine: sa.Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of the version-4 tables, in the columns the database has (a table a later
    version widened reads as it was in an old store or its backup), decoded by today's types."""
    out = {}
    with engine.connect() as conn:
        present = sa.inspect(conn)
        for name in V4_TABLES:
            table = t.metadata.tables[name]
            have = {c["name"] for c in present.get_columns(name)}
            columns = [c for c in table.columns if c.name in have]
            order = list(table.primary_key.columns) or columns
            query = sa.select(*columns).order_by(*order)
            out[name] = [dict(r._mapping) for r in conn.execute(query)]
    return out


def _version_4_store(url: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    """A store exactly as version-4 code created it (its DDL, verbatim), holding `rows`."""
    engine = sa.create_engine(url)
    lines = (V4 / f"{engine.dialect.name}.sql").read_text().splitlines()
    ddl = "\n".join(line for line in lines if not line.startswith("--"))
    with engine.begin() as conn:
        for statement in filter(str.strip, ddl.split(";\n")):
            conn.exec_driver_sql(statement.rstrip(";"))
        for name in V4_TABLES:
            if name != "schema_version" and rows[name]:
                conn.execute(t.metadata.tables[name].insert(), rows[name])
        if engine.dialect.name == "postgresql":  # rows came with their ids: move the sequences on
            for name in V4_TABLES:
                if "id" in t.metadata.tables[name].c and rows[name]:
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(SELECT max(id) FROM {name}))"
                    )
    engine.dispose()


def _schema(engine: sa.Engine) -> dict[str, Any]:
    """Everything about the tables a migration could get wrong."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        return {
            name: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c.get("autoincrement"))
                    for c in inspector.get_columns(name)
                ],
                "pk": inspector.get_pk_constraint(name)["constrained_columns"],
                "fks": [
                    (f["constrained_columns"], f["referred_table"], f["referred_columns"])
                    for f in inspector.get_foreign_keys(name)
                ],
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(name)
                ),
                "unique": sorted(
                    (u["name"], tuple(u["column_names"]))
                    for u in inspector.get_unique_constraints(name)
                ),
            }
            for name in sorted(inspector.get_table_names())
        }


def test_the_last_revision_is_the_schema_version() -> None:
    assert script_head() == HEAD == f"{SCHEMA_VERSION:04d}"


def test_a_version_4_store_is_refused_naming_the_command_that_migrates_it(
    url: str, session_rows: dict[str, list[dict[str, Any]]]
) -> None:
    _version_4_store(url, session_rows)
    with pytest.raises(SchemaVersionError) as err:
        create_store(url)
    assert str(err.value) == (
        f"database is at schema version 4, this code needs version {SCHEMA_VERSION}; nothing is "
        "migrated on open. Back it up, stop the engine, then run `n1v1 store upgrade` with the "
        'same store URL (docs/store.md, "Migrations")'
    )


def test_upgrading_a_version_4_store_keeps_every_row_and_ends_like_a_new_store(
    url: str, session_rows: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _version_4_store(url, session_rows)
    report = upgrade_store(url)
    assert (report.from_version, report.to_version) == (4, SCHEMA_VERSION)

    store = create_store(url)  # opens now
    after = _rows(store.engine)
    assert after["schema_version"] == [{"version": SCHEMA_VERSION}]
    assert {k: v for k, v in after.items() if k != "schema_version"} == {
        k: v for k, v in session_rows.items() if k != "schema_version"
    }
    with store.engine.connect() as conn:
        assert current_revision(conn) == HEAD
        assert compare_metadata(MigrationContext.configure(conn), t.metadata) == []
    if url.startswith("sqlite"):
        fresh = create_store(f"sqlite:///{tmp_path / 'fresh.db'}")
        assert _schema(store.engine) == _schema(fresh.engine)
        fresh.dispose()
    else:
        for fresh_url in _postgres_url():
            fresh = create_store(fresh_url)
            assert _schema(store.engine) == _schema(fresh.engine)
            fresh.dispose()
    _a_session_rebuilds_from_it_and_snapshots_into_it(store)
    store.dispose()


def _a_session_rebuilds_from_it_and_snapshots_into_it(store: Store) -> None:
    feed = PacedReplay(market(120), 0)
    steps = len(feed)
    first = make_session(store, feed, holder="after-upgrade")
    first.start()
    try:
        run_to_end(first, feed, steps)
        assert first.recovery["from_snapshot_step"] is None  # the old journal, replayed in full
        assert first.recovery["replayed_steps"] == steps
    finally:
        first.stop()
    assert [(s.step, s.reason) for s in list_snapshots(store)] == [(steps, "shutdown")]
    feed = PacedReplay(market(120), 0)
    second = make_session(store, feed, holder="second")
    second.start()
    try:
        run_to_end(second, feed, steps)
        assert second.recovery["from_snapshot_step"] == steps
        assert second.snapshot["cash"] == first.snapshot["cash"]
    finally:
        second.stop()
    assert len(StoreReader(store).bar_log()) == steps


def test_upgrade_refuses_while_an_engine_holds_a_live_lease(
    url: str, session_rows: dict[str, list[dict[str, Any]]]
) -> None:
    live = [{**session_rows["lease"][0], "expires_at": pd.Timestamp("2100-01-01", tz="UTC")}]
    _version_4_store(url, {**session_rows, "lease": live})
    with pytest.raises(LeaseHeldError, match="stop the engine"):
        upgrade_store(url)
    with pytest.raises(SchemaVersionError):  # still version 4: nothing changed
        create_store(url)


def test_a_sqlite_upgrade_keeps_a_copy_of_the_old_store(
    tmp_path: Path, session_rows: dict[str, list[dict[str, Any]]]
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _version_4_store(url, session_rows)
    at = pd.Timestamp.now(tz="UTC").ceil("s")  # past the session's released lease
    report = upgrade_store(url, now=at)
    assert report.backup == tmp_path / f"old.db.v4-{at:%Y%m%dT%H%M%S}Z.bak"
    backup = sa.create_engine(f"sqlite:///{report.backup}")
    copied = _rows(backup)
    backup.dispose()
    assert copied == {**session_rows, "schema_version": [{"version": 4}]}  # as it was


def test_upgrading_a_store_at_the_head_changes_nothing_and_a_v3_store_is_refused(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'n1v1.db'}"
    create_store(url).dispose()
    assert not upgrade_store(url).changed
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE schema_version SET version = 3")
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="no migration exists from version 3"):
        upgrade_store(url)


def test_the_store_commands(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    session_rows: dict[str, list[dict[str, Any]]],
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _version_4_store(url, session_rows)
    assert main(["store", "version", "--store-url", url]) == 0
    assert capsys.readouterr().out == (
        f"store: schema version 4, revision none (before migrations)\n"
        f"this release: schema version {SCHEMA_VERSION}\n"
    )
    assert main(["store", "upgrade", "--store-url", url, "--no-backup"]) == 0
    assert capsys.readouterr().out == (
        f"upgraded the store from schema version 4 to {SCHEMA_VERSION}\n"
    )
    assert main(["store", "upgrade", "--store-url", url]) == 0
    assert f"at schema version {SCHEMA_VERSION} already" in capsys.readouterr().out
    assert main(["store", "version", "--store-url", url]) == 0
    assert capsys.readouterr().out.startswith(
        f"store: schema version {SCHEMA_VERSION}, revision {HEAD}\n"
    )
