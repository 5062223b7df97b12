"""fair scheduling: an index of the triggers waiting for a worker, by event set, so a worker
can share a batch out across event sets (worker.processing) without reading another set's
backlog.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_WAITING = sa.text("status = 'received'")


def upgrade() -> None:
    op.create_index(
        "ix_triggers_received_event_set_id",
        "triggers",
        ["event_set_id", "id"],
        postgresql_where=_WAITING,
        sqlite_where=_WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_triggers_received_event_set_id", table_name="triggers")
