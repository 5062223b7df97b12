"""admin_users.failed_logins_since: when the current count of failed logins began, so the
count is forgotten a window after it began (a slow trickle of bad attempts never locks)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("admin_users") as batch:
        batch.add_column(sa.Column("failed_logins_since", models.base.UTCDateTime(), nullable=True))


def downgrade() -> None:
    # Not a batch rebuild: on SQLite, dropping the old admin_users table with foreign_keys=ON
    # cascaded to every admin token and session. ALTER TABLE ... DROP COLUMN (SQLite 3.35+)
    # changes the table in place.
    with op.batch_alter_table("admin_users", recreate="never") as batch:
        batch.drop_column("failed_logins_since")
