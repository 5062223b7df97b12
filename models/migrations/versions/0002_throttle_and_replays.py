"""per-event-set throttle window, replay counter, trigger processing attempts

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event_sets") as batch:
        batch.add_column(sa.Column("throttled_until", models.base.UTCDateTime(), nullable=True))
    with op.batch_alter_table("postbacks") as batch:
        batch.add_column(sa.Column("replays", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("triggers") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    # A rebuilt table is dropped, and with foreign_keys=ON that cascades: drop in place.
    with op.batch_alter_table("triggers", recreate="never") as batch:
        batch.drop_column("attempts")
    with op.batch_alter_table("postbacks", recreate="never") as batch:
        batch.drop_column("replays")
    with op.batch_alter_table("event_sets", recreate="never") as batch:
        batch.drop_column("throttled_until")
