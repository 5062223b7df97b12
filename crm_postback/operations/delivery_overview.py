"""What the delivery view and the JSON API read: TikTok's last errors, replayable counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import REPLAYABLE_STATUSES, DeliveryAttempt, EventSet, Postback, status_is_one_of


@dataclass(frozen=True)
class ErrorRow:
    attempted_at: datetime
    event_set: str
    event_set_id: int
    postback_id: int
    lead_ref: str
    event_name: str | None
    outcome: str
    http_status: int | None
    code: int | None
    message: str | None
    request_id: str | None
    status: str


def last_errors(
    session: Session, event_set_id: int | None = None, limit: int = 25
) -> list[ErrorRow]:
    """The newest attempts TikTok (or the network) did not accept, with code and message."""
    query = (
        select(DeliveryAttempt, Postback, EventSet.name)
        .join(Postback, Postback.id == DeliveryAttempt.postback_id)
        .join(EventSet, EventSet.id == Postback.event_set_id)
        .where(DeliveryAttempt.outcome != "delivered")
        .order_by(DeliveryAttempt.id.desc())
        .limit(limit)
    )
    if event_set_id is not None:
        query = query.where(Postback.event_set_id == event_set_id)
    return [
        ErrorRow(
            attempt.attempted_at,
            name,
            postback.event_set_id,
            postback.id,
            postback.lead_ref,
            postback.event_name,
            attempt.outcome,
            attempt.http_status,
            attempt.code,
            attempt.message,
            attempt.request_id,
            postback.status,
        )
        for attempt, postback, name in session.execute(query).all()
    ]


def dead_counts(session: Session) -> dict[int, int]:
    """{event set id: postbacks that can be replayed (`REPLAYABLE_STATUSES`)}."""
    rows = session.execute(
        select(Postback.event_set_id, func.count())
        .where(status_is_one_of(Postback.status, REPLAYABLE_STATUSES))
        .group_by(Postback.event_set_id)
    ).all()
    return {int(event_set_id): int(count) for event_set_id, count in rows}
