"""match quality: hashed names and address parts, the landing page and locale of a lead,
consent (limited data use per event set, lead and trigger; withdrawn consent), the caller's
event id, the match keys dropped at the door, strict API keys, an event age limit per event
set, which match keys each postback carries,
and postbacks unique by TikTok's own identity of an event (set, name, id).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_LEAD_HASHES = (
    "first_name_hash",
    "last_name_hash",
    "city_hash",
    "state_hash",
    "country_hash",
    "zip_code_hash",
)


def upgrade() -> None:
    # Plain ALTERs (new nullable columns, or with a server default): no table is copied.
    with op.batch_alter_table("leads", recreate="never") as batch:
        for name in _LEAD_HASHES:
            batch.add_column(sa.Column(name, sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("locale", sa.String(length=35), nullable=True))
        batch.add_column(sa.Column("page_url", sa.String(length=2048), nullable=True))
        batch.add_column(sa.Column("page_referrer", sa.String(length=2048), nullable=True))
        batch.add_column(sa.Column("limited_data_use", sa.Boolean(), nullable=True))
        batch.add_column(
            sa.Column("consent_withdrawn_at", models.base.UTCDateTime(), nullable=True)
        )
    with op.batch_alter_table("triggers", recreate="never") as batch:
        batch.add_column(sa.Column("event_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("limited_data_use", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("dropped_keys", models.base.JSONType, nullable=True))
    with op.batch_alter_table("event_sets", recreate="never") as batch:
        batch.add_column(
            sa.Column("limited_data_use", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("max_event_age_days", sa.Float(), nullable=True))
    with op.batch_alter_table("api_keys", recreate="never") as batch:
        batch.add_column(
            sa.Column("strict", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # One rebuild of postbacks on SQLite (in place on PostgreSQL): a longer status for the
    # new final states, and the unique key that lets one caller event id serve several
    # events of one trigger (TikTok tells them apart by name).
    with op.batch_alter_table("postbacks") as batch:
        batch.add_column(sa.Column("match_key_mask", sa.Integer(), nullable=True))
        batch.alter_column(
            "status",
            existing_type=sa.String(length=16),
            type_=sa.String(length=20),
            existing_nullable=False,
        )
        batch.drop_constraint("uq_postbacks_event_set_id_event_id", type_="unique")
        batch.create_unique_constraint(
            "uq_postbacks_event_set_id_event_name_event_id",
            ["event_set_id", "event_name", "event_id"],
        )


def downgrade() -> None:
    # Fails on rows the old schema cannot hold (a status longer than 16 characters, two
    # events of one trigger sharing a caller's event id): delete or rewrite those first.
    with op.batch_alter_table("postbacks") as batch:
        batch.drop_constraint("uq_postbacks_event_set_id_event_name_event_id", type_="unique")
        batch.create_unique_constraint(
            "uq_postbacks_event_set_id_event_id", ["event_set_id", "event_id"]
        )
        batch.alter_column(
            "status",
            existing_type=sa.String(length=20),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
        batch.drop_column("match_key_mask")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("strict")
    with op.batch_alter_table("event_sets") as batch:
        batch.drop_column("max_event_age_days")
        batch.drop_column("limited_data_use")
    with op.batch_alter_table("triggers") as batch:
        batch.drop_column("dropped_keys")
        batch.drop_column("limited_data_use")
        batch.drop_column("event_id")
    with op.batch_alter_table("leads") as batch:
        for name in (*_LEAD_HASHES, "locale", "page_url", "page_referrer"):
            batch.drop_column(name)
        batch.drop_column("limited_data_use")
        batch.drop_column("consent_withdrawn_at")
