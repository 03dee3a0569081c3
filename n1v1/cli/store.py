"""`n1v1 store`: which schema version a store is at, and its migration to this release's.

Opening a store never migrates it (n1v1/store/migrate.py says why); `n1v1 store upgrade` is the
step an operator takes, after a backup and with the engine stopped. docs/store.md, "Migrations".
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from n1v1.cli.common import EXIT_ERROR, EXIT_OK

_URL_HELP = (
    "the store, e.g. sqlite:///var/n1v1.db; N1V1_STORE_URL_FILE or N1V1_STORE_URL override it "
    "(a URL with a password is refused here: use those for PostgreSQL)"
)


def add_store_command(sub: Any) -> None:
    p = sub.add_parser("store", help="the state store: schema version and migrations")
    actions = p.add_subparsers(dest="store_action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "upgrade",
        help="migrate the store to this release's schema version",
        description="Run the migrations from the store's schema version to this release's, in "
        "one transaction (all or nothing). Refused while an engine or a retraining run holds a "
        "live lease: stop them first. A SQLite store is first copied beside itself "
        "(<file>.v<version>-<time>.bak); take a pg_dump of a PostgreSQL store yourself.",
    )
    up.add_argument("--store-url", help=_URL_HELP)
    up.add_argument("--no-backup", action="store_true", help="SQLite: do not copy it first")
    up.set_defaults(handler=cmd_store_upgrade)
    version = actions.add_parser(
        "version", help="the store's schema version and Alembic revision, and this release's"
    )
    version.add_argument("--store-url", help=_URL_HELP)
    version.set_defaults(handler=cmd_store_version)


def _url(args: argparse.Namespace) -> str:
    from n1v1.store.location import check_store_url, resolve_store_url

    if args.store_url is not None:  # refused even when a Secret overrides it: it is visible
        check_store_url(args.store_url, where="--store-url")
    return resolve_store_url(args.store_url)


def cmd_store_upgrade(args: argparse.Namespace) -> int:
    from n1v1.store import LeaseHeldError, SchemaVersionError
    from n1v1.store.migrate import upgrade_store

    try:
        report = upgrade_store(_url(args), backup=not args.no_backup)
    except (SchemaVersionError, LeaseHeldError) as exc:
        print(f"n1v1: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not report.changed:
        print(f"the store is at schema version {report.to_version} already: nothing to do")
        return EXIT_OK
    if report.backup is not None:
        print(f"copied the store to {report.backup} first")
    print(f"upgraded the store from schema version {report.from_version} to {report.to_version}")
    return EXIT_OK


def cmd_store_version(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect, select

    from n1v1.store.migrate import current_revision
    from n1v1.store.schema import SCHEMA_VERSION, open_engine, schema_version

    engine = open_engine(_url(args))
    try:
        with engine.connect() as conn:
            if "schema_version" not in inspect(conn).get_table_names():
                print(f"empty store (this release creates it at version {SCHEMA_VERSION})")
                return EXIT_OK
            versions = conn.execute(select(schema_version.c.version)).scalars().all()
            revision = current_revision(conn)
    finally:
        engine.dispose()
    found = versions[0] if len(versions) == 1 else versions
    print(f"store: schema version {found}, revision {revision or 'none (before migrations)'}")
    print(f"this release: schema version {SCHEMA_VERSION}")
    return EXIT_OK
