"""Schema version 8: the `algo_orders` table (parent orders of the execution algorithms: their
schedule and progress, upserted in the step or command that changed them; docs/execution.md).

Additive: no parent order existed before version 8.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from n1v1.store.schema import UtcTimestamp

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "algo_orders",
        sa.Column("parent_id", sa.String(64), primary_key=True),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("algo", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("qty", sa.String(64), nullable=False),
        sa.Column("filled", sa.String(64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcTimestamp(), nullable=False),
        sa.Column("updated_at", UtcTimestamp(), nullable=False),
    )
    op.execute(sa.text("UPDATE schema_version SET version = 8"))


def downgrade() -> None:
    raise NotImplementedError(
        "down-migrations are not supported: restore the copy taken before the upgrade"
    )
