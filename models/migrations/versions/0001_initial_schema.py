"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 21:58:07.044051
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import models.base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "event_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("advertiser_id", sa.String(length=64), nullable=True),
        sa.Column("sealed_token", sa.Text(), nullable=False),
        sa.Column("test_event_code", sa.String(length=64), nullable=True),
        sa.Column("lead_event_source", sa.String(length=64), nullable=False),
        sa.Column("default_currency", sa.String(length=3), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_sets")),
        sa.UniqueConstraint("kind", "source_id", name=op.f("uq_event_sets_kind_source_id")),
        sa.UniqueConstraint("name", name=op.f("uq_event_sets_name")),
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_ref", sa.String(length=128), nullable=False),
        sa.Column("ttclid", sa.String(length=512), nullable=True),
        sa.Column("ttp", sa.String(length=256), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=1024), nullable=True),
        sa.Column("tiktok_lead_id", sa.String(length=64), nullable=True),
        sa.Column(
            "email_hashes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "phone_hashes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "external_id_hashes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", models.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
        sa.UniqueConstraint("lead_ref", name=op.f("uq_leads_lead_ref")),
    )
    op.create_table(
        "mappings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_set_id", sa.Integer(), nullable=False),
        sa.Column("trigger_type", sa.String(length=64), nullable=False),
        sa.Column("event_name", sa.String(length=64), nullable=False),
        sa.Column(
            "conditions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_set_id"],
            ["event_sets.id"],
            name=op.f("fk_mappings_event_set_id_event_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mappings")),
    )
    with op.batch_alter_table("mappings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mappings_event_set_id"), ["event_set_id"], unique=False
        )

    op.create_table(
        "triggers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_set_id", sa.Integer(), nullable=False),
        sa.Column("lead_ref", sa.String(length=128), nullable=False),
        sa.Column("trigger_type", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", models.base.UTCDateTime(), nullable=False),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", models.base.UTCDateTime(), nullable=False),
        sa.Column("processed_at", models.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_set_id"],
            ["event_sets.id"],
            name=op.f("fk_triggers_event_set_id_event_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_triggers")),
        sa.UniqueConstraint(
            "event_set_id", "idempotency_key", name=op.f("uq_triggers_event_set_id_idempotency_key")
        ),
    )
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_triggers_lead_ref"), ["lead_ref"], unique=False)
        batch_op.create_index(
            "ix_triggers_status_received_at", ["status", "received_at"], unique=False
        )

    op.create_table(
        "postbacks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "trigger_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("event_set_id", sa.Integer(), nullable=False),
        sa.Column("lead_ref", sa.String(length=128), nullable=False),
        sa.Column("mapping_id", sa.Integer(), nullable=True),
        sa.Column("mapping_version", sa.Integer(), nullable=True),
        sa.Column("event_name", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", models.base.UTCDateTime(), nullable=True),
        sa.Column("lease_until", models.base.UTCDateTime(), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("last_http_status", sa.Integer(), nullable=True),
        sa.Column("last_code", sa.Integer(), nullable=True),
        sa.Column("last_message", sa.Text(), nullable=True),
        sa.Column("last_request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(), nullable=False),
        sa.Column("delivered_at", models.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_set_id"],
            ["event_sets.id"],
            name=op.f("fk_postbacks_event_set_id_event_sets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["mapping_id"],
            ["mappings.id"],
            name=op.f("fk_postbacks_mapping_id_mappings"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trigger_id"],
            ["triggers.id"],
            name=op.f("fk_postbacks_trigger_id_triggers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postbacks")),
        sa.UniqueConstraint(
            "event_set_id", "event_id", name=op.f("uq_postbacks_event_set_id_event_id")
        ),
    )
    with op.batch_alter_table("postbacks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_postbacks_lead_ref"), ["lead_ref"], unique=False)
        batch_op.create_index(
            "ix_postbacks_status_next_attempt_at", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_postbacks_trigger_id"), ["trigger_id"], unique=False)

    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "postback_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("attempted_at", models.base.UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["postback_id"],
            ["postbacks.id"],
            name=op.f("fk_delivery_attempts_postback_id_postbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_postback_id"), ["postback_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_postback_id"))

    op.drop_table("delivery_attempts")
    with op.batch_alter_table("postbacks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_postbacks_trigger_id"))
        batch_op.drop_index("ix_postbacks_status_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_postbacks_lead_ref"))

    op.drop_table("postbacks")
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.drop_index("ix_triggers_status_received_at")
        batch_op.drop_index(batch_op.f("ix_triggers_lead_ref"))

    op.drop_table("triggers")
    with op.batch_alter_table("mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mappings_event_set_id"))

    op.drop_table("mappings")
    op.drop_table("leads")
    op.drop_table("event_sets")
