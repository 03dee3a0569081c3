"""Alembic's environment for the store's migrations.

They run only through n1v1/store/migrate.py (`n1v1 store upgrade`), which passes the store's open
connection inside the one transaction it began, so every revision commits together or not at all.
"""

from __future__ import annotations

from alembic import context

from n1v1.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the store's migrations run through `n1v1 store upgrade` (n1v1/store/migrate.py), which "
        "hands them the store's connection; the plain alembic command is not set up for them"
    )
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
