"""The audit trail: who changed what, when, and the state before and after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntId, JSONType, UTCDateTime, utcnow
from models.workspaces import WorkspaceFiltered


class AuditEntry(WorkspaceFiltered, Base):
    """One change. No foreign keys: the trail outlives what it describes (a deleted mapping)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_event_set_id_id", "event_set_id", "id"),
        Index("ix_audit_log_workspace_id_id", "workspace_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # workspace_id (WorkspaceFiltered): the workspace whose data changed; None for a change of
    # the instance itself (a workspace made, an admin user added), seen by instance admins.
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))  # web:alice, api:alice, cli:bob, system
    action: Mapped[str] = mapped_column(String(64))  # mapping.update, event_set.pause, ...
    entity_type: Mapped[str] = mapped_column(String(32))  # event_set, mapping, postbacks
    entity_id: Mapped[int | None] = mapped_column(Integer)
    event_set_id: Mapped[int | None] = mapped_column(Integer)
    # JSON snapshots; tokens appear only masked or as "replaced", never in clear.
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    note: Mapped[str | None] = mapped_column(Text)
