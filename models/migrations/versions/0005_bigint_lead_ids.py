"""leads.id becomes BIGINT: leads are inserted before they are looked up, and an insert that
meets an existing lead still takes a sequence value

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's INTEGER PRIMARY KEY is already 64-bit
    op.execute("ALTER TABLE leads ALTER COLUMN id TYPE BIGINT")
    op.execute("ALTER SEQUENCE leads_id_seq AS BIGINT")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER SEQUENCE leads_id_seq AS INTEGER")
    op.execute("ALTER TABLE leads ALTER COLUMN id TYPE INTEGER")
