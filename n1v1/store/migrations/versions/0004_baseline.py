"""Schema version 4, the baseline: the store as `create_store` made it before migrations existed.

Such a store has the tables of that release (tests/store_v4/ holds the DDL it ran, verbatim) and
no `alembic_version`; `n1v1 store upgrade` stamps it with this revision and goes on from here.
Versions 1 to 3 have no migration: their journals cannot be replayed by this code (docs/store.md).
"""

from __future__ import annotations

revision = "0004"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to do: a store reaches this revision by being stamped, never by migrating."""


def downgrade() -> None:
    raise NotImplementedError("no schema before version 4 can be migrated to")
