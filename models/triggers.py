from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import (
    Base,
    BigIntId,
    JSONType,
    StrEnumText,
    UTCDateTime,
    status_index_where,
    utcnow,
)
from models.workspaces import WorkspaceOwnedThroughParent


class TriggerStatus(StrEnum):
    RECEIVED = "received"  # stored, not yet resolved by a worker
    WAITING_FOR_LEAD = "waiting_for_lead"  # names a lead we have not seen yet
    RESOLVED = "resolved"  # postbacks created
    UNMAPPED = "unmapped"  # no mapping matched: visible, not retried
    FAILED = "failed"  # cannot be resolved; `error` says why


OPEN_TRIGGER_STATUSES = (TriggerStatus.RECEIVED, TriggerStatus.WAITING_FOR_LEAD)


class Trigger(WorkspaceOwnedThroughParent, Base):
    """A lifecycle change reported by the routing system, as accepted."""

    __tablename__ = "triggers"
    __table_args__ = (
        UniqueConstraint("event_set_id", "idempotency_key"),
        # Open triggers by age (the sweeper, the gauges). On PostgreSQL only open ones are in it,
        # so resolving a trigger adds no entry to it.
        Index(
            "ix_triggers_status_received_at",
            "status",
            "received_at",
            postgresql_where=status_index_where(OPEN_TRIGGER_STATUSES),
        ),
        Index("ix_triggers_workspace_id_lead_ref", "workspace_id", "lead_ref"),
        # Triggers waiting for a worker, by event set: fair scheduling (worker.processing).
        Index(
            "ix_triggers_received_event_set_id",
            "event_set_id",
            "id",
            postgresql_where=text("status = 'received'"),
            sqlite_where=text("status = 'received'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    event_set_id: Mapped[int] = mapped_column(ForeignKey("event_sets.id", ondelete="CASCADE"))
    lead_ref: Mapped[str] = mapped_column(String(128))
    trigger_type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The event id the caller's Pixel used: sent as given, so TikTok merges the two copies.
    event_id: Mapped[str | None] = mapped_column(String(64))
    # None: the lead's choice, else the event set's default.
    limited_data_use: Mapped[bool | None] = mapped_column(Boolean)
    # The kinds of match key dropped at the door because they did not normalise (no values).
    dropped_keys: Mapped[list[str] | None] = mapped_column(JSONType)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[TriggerStatus] = mapped_column(
        StrEnumText(TriggerStatus, 20), default=TriggerStatus.RECEIVED
    )
    # Committed before each processing run, so a trigger that keeps killing workers is capped.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
