from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    or_,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import (
    Base,
    BigIntId,
    JSONType,
    StrEnumText,
    UTCDateTime,
    status_index_where,
    status_is_one_of,
    utcnow,
)
from models.workspaces import WorkspaceOwnedThroughParent


class PostbackStatus(StrEnum):
    PENDING = "pending"  # due now
    SENDING = "sending"  # claimed by a worker until lease_until
    RETRYING = "retrying"  # last attempt failed; due again at next_attempt_at
    DELIVERED = "delivered"  # TikTok answered code 0
    FAILED = "failed"  # final: TikTok rejected the event, or it cannot be built
    DEAD = "dead"  # final: the retry ladder is exhausted
    EXPIRED = "expired"  # final: older than the configured event age limit
    UNMAPPED = "unmapped"  # no mapping matched the trigger; nothing to send
    NO_MATCH_KEY = "no_match_key"  # final: the event would carry nothing TikTok can match
    CONSENT_WITHDRAWN = "consent_withdrawn"  # final: the lead withdrew consent before it left


FINAL_STATUSES = frozenset(
    {
        PostbackStatus.DELIVERED,
        PostbackStatus.FAILED,
        PostbackStatus.DEAD,
        PostbackStatus.EXPIRED,
        PostbackStatus.UNMAPPED,
        PostbackStatus.NO_MATCH_KEY,
        PostbackStatus.CONSENT_WITHDRAWN,
    }
)
WAITING_STATUSES = frozenset({PostbackStatus.PENDING, PostbackStatus.RETRYING})
# Final without having been delivered: what an operator looks into and may replay.
NOT_DELIVERED_STATUSES = tuple(sorted(FINAL_STATUSES - {PostbackStatus.DELIVERED}))
OPEN_STATUSES = (PostbackStatus.PENDING, PostbackStatus.RETRYING, PostbackStatus.SENDING)
# What `postback replay` may send again. Never consent_withdrawn: that lead gets nothing more.
# A no_match_key event becomes sendable once the lead's keys have arrived.
REPLAYABLE_STATUSES = (
    PostbackStatus.DEAD,
    PostbackStatus.FAILED,
    PostbackStatus.EXPIRED,
    PostbackStatus.NO_MATCH_KEY,
)


class Postback(WorkspaceOwnedThroughParent, Base):
    """Outbox row: one TikTok event to send, and everything needed to explain it afterwards."""

    __tablename__ = "postbacks"
    __table_args__ = (
        # TikTok's own identity of an event: its name and id within the event set.
        UniqueConstraint("event_set_id", "event_name", "event_id"),
        # The rows a worker or the sweeper may still send. On PostgreSQL only open rows are in
        # it, so the update that makes a row final adds no entry to it (the update is not HOT
        # either way: its columns are indexed). SQLite cannot tell that `status = 'sending'`
        # lies inside such an index, and keeps every row.
        Index(
            "ix_postbacks_status_next_attempt_at",
            "status",
            "next_attempt_at",
            postgresql_where=status_index_where(OPEN_STATUSES),
        ),
        # Final rows that were not delivered, by event set and status: replay, the admin's
        # dashboard, diagnostics of unmapped triggers. No delivery adds an entry to it.
        Index(
            "ix_postbacks_not_delivered_event_set_id",
            "event_set_id",
            "status",
            postgresql_where=status_index_where(NOT_DELIVERED_STATUSES),
            sqlite_where=status_index_where(NOT_DELIVERED_STATUSES),
        ),
        Index("ix_postbacks_workspace_id_lead_ref", "workspace_id", "lead_ref"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    trigger_id: Mapped[int] = mapped_column(
        ForeignKey("triggers.id", ondelete="CASCADE"), index=True
    )
    # Its trigger's event set (no foreign key: the trigger's holds it).
    event_set_id: Mapped[int] = mapped_column(Integer)
    lead_ref: Mapped[str] = mapped_column(String(128))
    mapping_id: Mapped[int | None] = mapped_column(ForeignKey("mappings.id", ondelete="SET NULL"))
    mapping_version: Mapped[int | None] = mapped_column(Integer)
    event_name: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[PostbackStatus] = mapped_column(
        StrEnumText(PostbackStatus, 20), default=PostbackStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # How many times an operator re-queued it (`postback replay`).
    replays: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The data[] item exactly as sent (hashes only); the envelope comes from the event set.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Which kinds of match key the event carries (crm_postback.tiktok.match_key_kinds bits),
    # kept when the body is purged, for the match-quality score.
    match_key_mask: Mapped[int | None] = mapped_column(Integer)
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_message: Mapped[str | None] = mapped_column(Text)
    last_request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeliveryAttempt(WorkspaceOwnedThroughParent, Base):
    """One try at sending one postback: what TikTok (or the network) answered."""

    __tablename__ = "delivery_attempts"
    # Attempts are read by postback (and the cascade from postbacks finds them by it): one
    # index serves both that and the workspace filter, instead of a second on a hot table.
    __table_args__ = (
        Index("ix_delivery_attempts_postback_id_workspace_id", "postback_id", "workspace_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    postback_id: Mapped[int] = mapped_column(ForeignKey("postbacks.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A crm_postback.tiktok Outcome value: the ORM may not import the TikTok contract.
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int | None] = mapped_column(Integer)
    code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128))
    batch_size: Mapped[int] = mapped_column(Integer, default=1)
    duration_ms: Mapped[int | None] = mapped_column(Integer)


def is_due(now: datetime) -> ColumnElement[bool]:
    """Rows to send now: waiting and due, or `sending` past the lease of a worker that died.
    It lies inside `ix_postbacks_status_next_attempt_at`'s partial predicate on PostgreSQL."""
    return or_(
        and_(
            status_is_one_of(Postback.status, WAITING_STATUSES),
            Postback.next_attempt_at <= now,
        ),
        and_(
            status_is_one_of(Postback.status, (PostbackStatus.SENDING,)),
            Postback.lease_until < now,
        ),
    )
