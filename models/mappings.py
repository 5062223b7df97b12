from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, UTCDateTime, utcnow
from models.workspaces import WorkspaceOwned


class Mapping(WorkspaceOwned, Base):
    """Admin-edited rule: trigger type (+ optional conditions) -> one TikTok event."""

    __tablename__ = "mappings"
    __table_args__ = (Index("ix_mappings_workspace_id", "workspace_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_set_id: Mapped[int] = mapped_column(
        ForeignKey("event_sets.id", ondelete="CASCADE"), index=True
    )
    trigger_type: Mapped[str] = mapped_column(String(64))
    event_name: Mapped[str] = mapped_column(String(64))
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
