from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, Float, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, StrEnumText, UTCDateTime, utcnow
from models.workspaces import WorkspaceOwned


class EventSetKind(StrEnum):
    CRM = "crm"  # TikTok CRM event set: event_source "crm"
    WEB = "web"  # TikTok Pixel, for advertisers without a CRM event set: event_source "web"


class EventSetStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class EventSet(WorkspaceOwned, Base):
    """One advertiser destination: a CRM event set (or a Pixel) and its access token."""

    __tablename__ = "event_sets"
    # Unique per workspace: two advertisers' names never collide, and adding one that exists
    # in another workspace must not say so.
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        UniqueConstraint("workspace_id", "kind", "source_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[EventSetKind] = mapped_column(
        StrEnumText(EventSetKind, 8), default=EventSetKind.CRM
    )
    source_id: Mapped[str] = mapped_column(String(64))
    advertiser_id: Mapped[str | None] = mapped_column(String(64))
    # Fernet ciphertext, or an "env:NAME" reference; never the token itself.
    sealed_token: Mapped[str] = mapped_column(Text)
    test_event_code: Mapped[str | None] = mapped_column(String(64))
    lead_event_source: Mapped[str] = mapped_column(String(64), default="crm-postback")
    default_currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[EventSetStatus] = mapped_column(
        StrEnumText(EventSetStatus, 16), default=EventSetStatus.ACTIVE
    )
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # Sent as `limited_data_use` on every event unless the lead or the trigger says otherwise.
    limited_data_use: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # None: the default for the event source (settings).
    max_event_age_days: Mapped[float | None] = mapped_column(Float)
    # TikTok throttled this set's token: nothing is sent for it before this time.
    throttled_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def event_source(self) -> str:
        return "crm" if self.kind == EventSetKind.CRM else "web"
