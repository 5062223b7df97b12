from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntId, JSONType, UTCDateTime, utcnow


class Lead(Base):
    """What we know about a lead: only hashes of email/phone/external id, never the raw values."""

    __tablename__ = "leads"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    lead_ref: Mapped[str] = mapped_column(String(128), unique=True)  # the routing system's id
    ttclid: Mapped[str | None] = mapped_column(String(512))
    ttp: Mapped[str | None] = mapped_column(String(256))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(1024))
    tiktok_lead_id: Mapped[str | None] = mapped_column(String(64))
    email_hashes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    phone_hashes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    external_id_hashes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
