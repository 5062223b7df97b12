"""What the delivery view reads and does: TikTok's last errors, dead counts, replays."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_postback.configuration import audit
from crm_postback.core.errors import InputRejected
from crm_postback.operations.replay import REPLAYABLE, ReplaySelection, replay, replayable_ids
from models import DeliveryAttempt, EventSet, Postback, PostbackStatus, utcnow

__all__ = ["REPLAYABLE", "dead_counts", "dispatch", "last_errors", "replay_postbacks"]

log = logging.getLogger(__name__)


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
    """{event set id: postbacks that can be replayed (dead, failed, expired)}."""
    rows = session.execute(
        select(Postback.event_set_id, func.count())
        .where(Postback.status.in_(REPLAYABLE))
        .group_by(Postback.event_set_id)
    ).all()
    return {int(event_set_id): int(count) for event_set_id, count in rows}


def replay_postbacks(
    session: Session,
    *,
    actor: str,
    ids: list[int] | None = None,
    event_set_id: int | None = None,
    statuses: tuple[str, ...] = (PostbackStatus.DEAD,),
) -> tuple[list[int], int]:
    """Re-queues the given postbacks, or an event set's dead ones; returns (queued, asked)."""
    if ids:
        selection = ReplaySelection(ids=ids)
    elif event_set_id is not None:
        event_set = session.get(EventSet, event_set_id)
        if event_set is None:
            raise InputRejected.one("event_set", f"no event set {event_set_id}")
        selection = ReplaySelection(event_set=event_set.name, statuses=list(statuses))
    else:
        raise InputRejected.one("postback_id", "name the postbacks to replay")
    wanted = replayable_ids(session, selection)
    queued = replay(session, wanted, utcnow())
    if wanted:
        audit.record(
            session,
            actor=actor,
            action="postbacks.replay",
            entity_type="postbacks",
            entity_id=None,
            event_set_id=event_set_id,
            after={"requested": len(wanted), "requeued": len(queued), "postback_ids": queued[:200]},
        )
    return queued, len(wanted)


def dispatch(postback_ids: list[int]) -> None:
    """Best effort: if the broker is down, the sweeper sends the re-queued rows."""
    if not postback_ids:
        return
    from worker.tasks import deliver_postbacks

    try:
        deliver_postbacks.delay(postback_ids)
    except Exception as error:  # the rows are due in the database; the sweeper sends them
        log.warning(
            "replay: broker unavailable (%s); the sweeper will send them", type(error).__name__
        )
