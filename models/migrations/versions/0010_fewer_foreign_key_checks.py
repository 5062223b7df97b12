"""fewer foreign-key checks on the hottest tables: triggers, postbacks and delivery attempts
no longer reference their workspace (nor postbacks their event set) directly. Each row's parent
(the event set of a trigger, the trigger of a postback, the postback of an attempt) is of the
same workspace and is deleted with it, so the cascade from a workspace still reaches them; the
checks these keys cost ran on every insert.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# (table, constraint, column, referred table)
_DROPPED = (
    ("triggers", "fk_triggers_workspace_id_workspaces", "workspace_id", "workspaces"),
    ("postbacks", "fk_postbacks_workspace_id_workspaces", "workspace_id", "workspaces"),
    ("postbacks", "fk_postbacks_event_set_id_event_sets", "event_set_id", "event_sets"),
    (
        "delivery_attempts",
        "fk_delivery_attempts_workspace_id_workspaces",
        "workspace_id",
        "workspaces",
    ),
)
_TABLES = tuple(dict.fromkeys(table for table, *_ in _DROPPED))


def upgrade() -> None:
    # On SQLite each table is rebuilt once (env.py turns foreign keys off meanwhile, so no
    # cascade fires); on PostgreSQL a constraint is dropped in place.
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            for owner, name, _, _ in _DROPPED:
                if owner == table:
                    batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            for owner, name, column, referred in _DROPPED:
                if owner == table:
                    batch.create_foreign_key(name, referred, [column], ["id"], ondelete="CASCADE")
