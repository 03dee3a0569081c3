"""Schema version 7: the `venue_events` table (what a live exchange said about our orders, the
engine's inputs: n1v1/execution/live_venue.py, docs/live.md).

Additive: a version-6 journal traded on the simulated venue only, which records no events.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from n1v1.store.schema import UtcTimestamp

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "venue_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("exchange_order_id", sa.String(128), nullable=False),
        sa.Column("trade_id", sa.String(128)),
        sa.Column("qty", sa.Double(), nullable=False),
        sa.Column("price", sa.Double(), nullable=False),
        sa.Column("fee", sa.Double(), nullable=False),
        sa.Column("base_fee", sa.Double(), nullable=False),
        sa.Column("liquidity", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", UtcTimestamp(), nullable=False),
        sa.Column("recorded_at", UtcTimestamp(), nullable=False),
        sa.UniqueConstraint("trade_id", name="uq_venue_events_trade"),
    )
    op.create_index("ix_venue_events_step", "venue_events", ["step"])
    op.create_index("ix_venue_events_order", "venue_events", ["client_order_id"])
    op.execute(sa.text("UPDATE schema_version SET version = 7"))


def downgrade() -> None:
    raise NotImplementedError(
        "down-migrations are not supported: restore the copy taken before the upgrade"
    )
