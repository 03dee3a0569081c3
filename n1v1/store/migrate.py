"""Schema migrations of the store: Alembic revisions, run only when asked (`n1v1 store upgrade`).

Each schema version from 4 on is one Alembic revision named by its number ("0004", "0005", ...)
in n1v1/store/migrations/versions; 4 is the baseline, the schema as `create_store` made it before
migrations existed. A new store is created at the head directly (the tables of
n1v1/store/schema.py) and stamped; tests/test_store_migrations.py checks that an upgraded store and
a new one have the same schema, so the two paths cannot drift.

Opening a store never migrates it: `create_store` refuses an older version and names the command.
An upgrade is a step an operator takes on purpose: the journal is the only record of what the
engine did; during a RayService upgrade the old engine is still trading on the store, and a new
replica that migrated at start would change the schema under it; and a migration that failed in a
replica's start-up would crash-loop it. `upgrade_store` refuses while an engine holds a live
lease, backs a SQLite file up first, and runs every revision in one transaction (PostgreSQL and
SQLite both roll DDL back), so it ends at the head or changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Connection, inspect, select, text

from n1v1.store.schema import SCHEMA_VERSION, SchemaVersionError, lease, open_engine, schema_version

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = 4  # the oldest version a migration starts from
UPGRADE_COMMAND = "n1v1 store upgrade"


def revision_of(version: int) -> str:
    """The Alembic revision id of a schema version."""
    return f"{version:04d}"


HEAD = revision_of(SCHEMA_VERSION)


def _alembic_config(connection: Connection | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def script_head() -> str:
    """The head of the revision files (a test checks it is `HEAD`)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def stamp_head(conn: Connection) -> None:
    """Mark a store just created from the current tables as being at the head revision."""
    _stamp(conn, HEAD)


def _stamp(conn: Connection, revision: str) -> None:
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    context = MigrationContext.configure(conn)
    context.stamp(ScriptDirectory.from_config(_alembic_config()), revision)


def current_revision(conn: Connection) -> str | None:
    """The revision in `alembic_version`, or None for a store from before the migrations."""
    if "alembic_version" not in inspect(conn).get_table_names():
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) != 1:
        raise SchemaVersionError(f"alembic_version holds {rows!r}; expected one revision")
    return str(rows[0])


def check_revision(conn: Connection) -> None:
    """A store at the current schema version must be at the head revision too."""
    found = current_revision(conn)
    if found != HEAD:
        raise SchemaVersionError(
            f"database says schema version {SCHEMA_VERSION} but its Alembic revision is "
            f"{found!r}, not {HEAD!r}; it was not made by this code, which will not guess"
        )


def version_gap(versions: Sequence[int]) -> str:
    """Why a store at `versions` (the schema_version rows) cannot be opened, and what to do."""
    if len(versions) != 1:
        return f"schema_version holds {list(versions)}; expected one row"
    (found,) = versions
    needs = f"database is at schema version {found}, this code needs version {SCHEMA_VERSION}"
    if found > SCHEMA_VERSION:
        return f"{needs}: it was written by a newer release; run that release on it"
    if found < BASELINE:
        return (
            f"{needs}; no migration exists from version {found} (its journal cannot be replayed "
            "by this code): start a new store"
        )
    return (
        f"{needs}; nothing is migrated on open. Back it up, stop the engine, then run "
        f'`{UPGRADE_COMMAND}` with the same store URL (docs/store.md, "Migrations")'
    )


@dataclass(frozen=True, slots=True)
class UpgradeReport:
    from_version: int
    to_version: int
    backup: Path | None  # the SQLite copy taken first (PostgreSQL: None, see docs/store.md)

    @property
    def changed(self) -> bool:
        return self.from_version != self.to_version


def upgrade_store(
    url: str, *, backup: bool = True, now: pd.Timestamp | None = None
) -> UpgradeReport:
    """Migrate the store at `url` to the current schema version (module docstring).

    Refuses (SchemaVersionError) a store with no migration path or one newer than this code, and
    (LeaseHeldError) while any lease in it is live: stop the engine first. With `backup`, a SQLite
    store is first copied (`VACUUM INTO`) beside itself as `<file>.v<version>-<UTC time>.bak`.
    """
    from alembic import command

    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            if "schema_version" not in inspect(conn).get_table_names():
                found = None
            else:
                rows = conn.execute(select(schema_version.c.version)).scalars().all()
                if len(rows) != 1 or not BASELINE <= rows[0] <= SCHEMA_VERSION:
                    raise SchemaVersionError(version_gap(rows))
                found = int(rows[0])
        if found is None:  # empty: create_store makes it at the head
            from n1v1.store.schema import create_store

            create_store(url).dispose()
            return UpgradeReport(SCHEMA_VERSION, SCHEMA_VERSION, None)
        if found == SCHEMA_VERSION:
            with engine.connect() as conn:
                check_revision(conn)
            return UpgradeReport(found, found, None)
        at = now if now is not None else pd.Timestamp.now(tz="UTC")
        with engine.connect() as conn:
            _refuse_live_leases(conn, at)  # before the copy: a refused upgrade leaves nothing
        copy = _backup_sqlite(engine, found, at) if backup else None
        with engine.connect() as conn:
            conn.execution_options(n1v1_write=True)
            with conn.begin():
                _refuse_live_leases(conn, at)
                if current_revision(conn) is None:  # from before the migrations: the baseline
                    _stamp(conn, revision_of(found))
                command.upgrade(_alembic_config(conn), HEAD)
                check_revision(conn)
        return UpgradeReport(found, SCHEMA_VERSION, copy)
    finally:
        engine.dispose()


def _refuse_live_leases(conn: Connection, now: pd.Timestamp) -> None:
    from n1v1.store.lease import LeaseHeldError

    live = conn.execute(select(lease).where(lease.c.expires_at > now)).all()
    if live:
        held = ", ".join(f"{r.resource!r} by {r.holder!r}" for r in live)
        raise LeaseHeldError(
            f"leases are live ({held}): stop the engine (and any retraining) before upgrading "
            "the store, or wait for the leases to expire"
        )


def _backup_sqlite(engine, version: int, at: pd.Timestamp) -> Path | None:  # type: ignore[no-untyped-def]
    """A consistent copy of a SQLite store beside it (None for PostgreSQL: use pg_dump)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    source = Path(database).expanduser()
    stamp = at.tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")
    target = source.with_name(f"{source.name}.v{version}-{stamp}.bak")
    if target.exists():
        raise FileExistsError(f"backup {target} exists already; move it away first")
    raw = engine.raw_connection()  # VACUUM cannot run in the transaction SQLAlchemy would begin
    try:
        raw.driver_connection.execute("VACUUM INTO ?", (str(target),))  # type: ignore[union-attr]
    finally:
        raw.close()
    return target
