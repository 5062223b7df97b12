from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntId, JSONType, UTCDateTime, utcnow
from models.workspaces import WorkspaceOwned


class Lead(WorkspaceOwned, Base):
    """What we know about a lead: only hashes of email/phone/external id, never the raw values.

    A lead is named by (workspace, lead_ref): every source of one workspace speaks of the same
    lead by the same id; another workspace's `L-1001` is another lead."""

    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("workspace_id", "lead_ref"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    lead_ref: Mapped[str] = mapped_column(String(128))  # the routing system's id
    ttclid: Mapped[str | None] = mapped_column(String(512))
    ttp: Mapped[str | None] = mapped_column(String(256))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(1024))
    tiktok_lead_id: Mapped[str | None] = mapped_column(String(64))
    email_hashes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    phone_hashes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    external_id_hashes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Names and address parts, each normalised and SHA-256 hashed at the door.
    first_name_hash: Mapped[str | None] = mapped_column(String(64))
    last_name_hash: Mapped[str | None] = mapped_column(String(64))
    city_hash: Mapped[str | None] = mapped_column(String(64))
    state_hash: Mapped[str | None] = mapped_column(String(64))
    country_hash: Mapped[str | None] = mapped_column(String(64))
    zip_code_hash: Mapped[str | None] = mapped_column(String(64))
    # Web event sets only: the landing page the lead came from (no personal data in it).
    locale: Mapped[str | None] = mapped_column(String(35))
    page_url: Mapped[str | None] = mapped_column(String(2048))
    page_referrer: Mapped[str | None] = mapped_column(String(2048))
    # None: the event set's default (TikTok's limited data use, a US state privacy opt-out).
    limited_data_use: Mapped[bool | None] = mapped_column(Boolean)
    # Set once the lead withdrew consent: nothing more is sent for it.
    consent_withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
