from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, UTCDateTime, utcnow
from models.workspaces import WorkspaceOwned


class ApiKey(WorkspaceOwned, Base):
    """A bearer key of one source system (a routing system) in one workspace, maybe limited
    to some event sets and permissions. Only its SHA-256 is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_workspace_id", "workspace_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))  # the source system
    key_prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell keys apart
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # None: every event set of the workspace, now and later.
    event_set_ids: Mapped[list[int] | None] = mapped_column(JSONType)
    permissions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # A `limits` rate ("100/second"); None: the INGEST_KEY_RATE_LIMIT setting.
    rate_limit: Mapped[str | None] = mapped_column(String(64))
    # True: a match key that does not normalise refuses the trigger instead of being dropped.
    strict: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
