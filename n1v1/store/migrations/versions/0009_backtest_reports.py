"""Schema version 9: `backtests.report`, the self-contained HTML report of a backtest requested
over HTTP (zlib-compressed), which the dashboard offers for download (docs/serve.md).

Additive: jobs that ran before version 9 have no report (NULL); their result is unchanged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backtests") as batch:
        batch.add_column(sa.Column("report", sa.LargeBinary(), nullable=True))
    op.execute(sa.text("UPDATE schema_version SET version = 9"))


def downgrade() -> None:
    raise NotImplementedError(
        "down-migrations are not supported: restore the copy taken before the upgrade"
    )
