"""workspaces: every advertiser's event sets, mappings, leads, triggers, postbacks, attempts,
API keys and audit entries belong to one; leads are named per workspace; admin users get a
role per workspace. Everything stored before goes to the workspace "default".

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

import models.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DEFAULT = 1
# The tables that get a workspace_id column with a foreign key (audit_log gets one without).
OWNED = (
    "event_sets",
    "mappings",
    "leads",
    "triggers",
    "postbacks",
    "delivery_attempts",
    "api_keys",
)


def _add_workspace_column(
    table: str, also: Callable[[BatchOperations], None] | None = None
) -> None:
    # A plain ALTER: the server default fills the rows of before, without copying them.
    with op.batch_alter_table(table, recreate="never") as batch:
        batch.add_column(
            sa.Column("workspace_id", sa.Integer(), nullable=False, server_default=str(DEFAULT))
        )
    # The rest in one step (on SQLite the one rebuild of the table): the foreign key, no
    # default any more (a new row must name its workspace), and the table's new uniques
    # and indexes.
    with op.batch_alter_table(table) as batch:
        batch.alter_column(
            "workspace_id",
            existing_type=sa.Integer(),
            existing_nullable=False,
            server_default=None,
        )
        batch.create_foreign_key(
            f"fk_{table}_workspace_id_workspaces",
            "workspaces",
            ["workspace_id"],
            ["id"],
            ondelete="CASCADE",
        )
        if also is not None:
            also(batch)


def _event_sets(batch: BatchOperations) -> None:
    batch.drop_constraint("uq_event_sets_name", type_="unique")
    batch.drop_constraint("uq_event_sets_kind_source_id", type_="unique")
    batch.create_unique_constraint("uq_event_sets_workspace_id_name", ["workspace_id", "name"])
    batch.create_unique_constraint(
        "uq_event_sets_workspace_id_kind_source_id", ["workspace_id", "kind", "source_id"]
    )


def _leads(batch: BatchOperations) -> None:
    batch.drop_constraint("uq_leads_lead_ref", type_="unique")
    batch.create_unique_constraint("uq_leads_workspace_id_lead_ref", ["workspace_id", "lead_ref"])


def _mappings(batch: BatchOperations) -> None:
    batch.create_index("ix_mappings_workspace_id", ["workspace_id"])


def _triggers(batch: BatchOperations) -> None:
    batch.drop_index("ix_triggers_lead_ref")
    batch.create_index("ix_triggers_workspace_id_lead_ref", ["workspace_id", "lead_ref"])


def _postbacks(batch: BatchOperations) -> None:
    batch.drop_index("ix_postbacks_lead_ref")
    batch.create_index("ix_postbacks_workspace_id_lead_ref", ["workspace_id", "lead_ref"])


def _delivery_attempts(batch: BatchOperations) -> None:
    batch.drop_index("ix_delivery_attempts_postback_id")
    batch.create_index(
        "ix_delivery_attempts_postback_id_workspace_id", ["postback_id", "workspace_id"]
    )


def _api_keys(batch: BatchOperations) -> None:
    batch.create_index("ix_api_keys_workspace_id", ["workspace_id"])


def upgrade() -> None:
    workspaces = op.create_table(
        "workspaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint("name", name=op.f("uq_workspaces_name")),
    )
    # Without an explicit id, so that PostgreSQL's sequence is past it.
    op.bulk_insert(workspaces, [{"name": "default", "created_at": models.base.utcnow()}])
    op.create_table(
        "workspace_members",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["admin_users.id"],
            name=op.f("fk_workspace_members_user_id_admin_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workspace_members_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace_members")),
        sa.UniqueConstraint(
            "workspace_id", "user_id", name=op.f("uq_workspace_members_workspace_id_user_id")
        ),
    )
    op.create_index("ix_workspace_members_user_id", "workspace_members", ["user_id"])

    _add_workspace_column("event_sets", _event_sets)
    _add_workspace_column("mappings", _mappings)
    _add_workspace_column("leads", _leads)
    _add_workspace_column("triggers", _triggers)
    _add_workspace_column("postbacks", _postbacks)
    _add_workspace_column("delivery_attempts", _delivery_attempts)
    _add_workspace_column("api_keys", _api_keys)

    # Audit entries have no foreign keys (the trail outlives what it describes); NULL is a
    # change of the instance itself. The default moves the entries of before without an
    # UPDATE of every row.
    with op.batch_alter_table("audit_log", recreate="never") as batch:
        batch.add_column(
            sa.Column("workspace_id", sa.Integer(), nullable=True, server_default=str(DEFAULT))
        )
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("workspace_id", existing_type=sa.Integer(), server_default=None)
        batch.create_index("ix_audit_log_workspace_id_id", ["workspace_id", "id"])

    json_type = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("api_keys", recreate="never") as batch:
        batch.add_column(sa.Column("event_set_ids", json_type, nullable=True))
        batch.add_column(sa.Column("permissions", json_type, nullable=True))
        batch.add_column(sa.Column("rate_limit", sa.String(length=64), nullable=True))
    # Keys made before had every permission.
    op.execute(
        """UPDATE api_keys SET permissions = '["triggers:send", "leads:write", "postbacks:read"]'"""
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("permissions", existing_type=json_type, nullable=False)

    with op.batch_alter_table("admin_users", recreate="never") as batch:
        batch.add_column(
            sa.Column("instance_admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Everyone could do everything: the users of before own the default workspace, and the
    # one bootstrapped from ADMIN_USERNAME administers the instance.
    op.execute("UPDATE admin_users SET instance_admin = (source = 'env')")
    op.execute(
        "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) "
        f"SELECT {DEFAULT}, id, 'owner', created_at FROM admin_users"
    )


def downgrade() -> None:
    others = op.get_bind().scalar(sa.text(f"SELECT count(*) FROM workspaces WHERE id <> {DEFAULT}"))
    if others:
        raise RuntimeError(
            "there are workspaces besides the default one: their data would collide with the "
            "default workspace's once names are global again; move or delete them first"
        )
    with op.batch_alter_table("admin_users", recreate="never") as batch:
        batch.drop_column("instance_admin")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_workspace_id")
        batch.drop_column("rate_limit")
        batch.drop_column("permissions")
        batch.drop_column("event_set_ids")
    op.drop_index("ix_audit_log_workspace_id_id", table_name="audit_log")
    with op.batch_alter_table("audit_log", recreate="never") as batch:
        batch.drop_column("workspace_id")
    op.drop_index("ix_delivery_attempts_postback_id_workspace_id", table_name="delivery_attempts")
    op.create_index("ix_delivery_attempts_postback_id", "delivery_attempts", ["postback_id"])
    op.drop_index("ix_postbacks_workspace_id_lead_ref", table_name="postbacks")
    op.create_index("ix_postbacks_lead_ref", "postbacks", ["lead_ref"])
    op.drop_index("ix_triggers_workspace_id_lead_ref", table_name="triggers")
    op.create_index("ix_triggers_lead_ref", "triggers", ["lead_ref"])
    op.drop_index("ix_mappings_workspace_id", table_name="mappings")
    with op.batch_alter_table("leads") as batch:
        batch.drop_constraint("uq_leads_workspace_id_lead_ref", type_="unique")
        batch.create_unique_constraint("uq_leads_lead_ref", ["lead_ref"])
    with op.batch_alter_table("event_sets") as batch:
        batch.drop_constraint("uq_event_sets_workspace_id_kind_source_id", type_="unique")
        batch.drop_constraint("uq_event_sets_workspace_id_name", type_="unique")
        batch.create_unique_constraint("uq_event_sets_kind_source_id", ["kind", "source_id"])
        batch.create_unique_constraint("uq_event_sets_name", ["name"])
    for table in reversed(OWNED):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_workspace_id_workspaces", type_="foreignkey")
            batch.drop_column("workspace_id")
    op.drop_index("ix_workspace_members_user_id", table_name="workspace_members")
    op.drop_table("workspace_members")
    op.drop_table("workspaces")
