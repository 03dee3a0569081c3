"""Schema version 6: the `predictions` table (an ml_signal slot's model answers, the engine's
inputs: n1v1/live/predictions.py).

Additive: a version-5 journal has no ml_signal slot traded through the Model deployment yet; its
rebuild replays it as before (a slot of a stored session then records its answers from the next
step on).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("slot", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(16)),
        sa.Column("row_hash", sa.String(16)),
        sa.Column("probabilities", sa.JSON()),
        sa.Column("threshold", sa.Double()),
        sa.Column("short_threshold", sa.Double()),
        sa.Column("fallback", sa.String(8), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Double()),
    )
    op.create_index("ix_predictions_step", "predictions", ["step"])
    op.execute(sa.text("UPDATE schema_version SET version = 6"))


def downgrade() -> None:
    raise NotImplementedError(
        "down-migrations are not supported: restore the copy taken before the upgrade"
    )
