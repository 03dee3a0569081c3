"""Schema version 5: the `snapshots` table (bounded recovery, n1v1/live/snapshot.py).

Additive: every row already stored keeps its meaning, and a version-4 journal is a version-5 one
with no snapshot yet (its first recovery replays it all, then snapshots bound the next ones).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from n1v1.store.schema import UtcTimestamp

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("created_at", UtcTimestamp(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_snapshots_step", "snapshots", ["step"])
    op.execute(sa.text("UPDATE schema_version SET version = 5"))


def downgrade() -> None:
    raise NotImplementedError(
        "down-migrations are not supported: restore the copy taken before the upgrade"
    )
