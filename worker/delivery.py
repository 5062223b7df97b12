"""Sending outbox rows: claim (short transaction), POST (no locks held), record (short transaction).

Services here never commit; `worker.tasks` owns the transactions.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from crm_postback.settings import Settings
from crm_postback.token_vault import TokenUnavailable, open_token
from mappings.catalogue import MAX_EVENTS_PER_REQUEST
from models import (
    DeliveryAttempt,
    EventSet,
    EventSetStatus,
    Postback,
    PostbackStatus,
)
from worker.client import EventsApiClient
from worker.outcomes import Answer, Outcome
from worker.payload import build_request
from worker.retry import max_attempts, next_attempt_at

log = logging.getLogger(__name__)


@dataclass
class OutgoingBatch:
    event_set_id: int
    event_source: str
    source_id: str
    test_event_code: str | None
    access_token: str = field(repr=False)
    # The stored (sealed) token this request used: an auth error pauses the set only if the
    # token was not rotated while the request was in flight.
    sealed_token: str = field(repr=False, default="")
    items: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class EventResult:
    postback_id: int
    answer: Answer
    batch_size: int
    sealed_token: str = field(repr=False, default="")


def _due(now: datetime) -> Any:
    return or_(
        and_(
            Postback.status.in_((PostbackStatus.PENDING, PostbackStatus.RETRYING)),
            Postback.next_attempt_at <= now,
        ),
        and_(Postback.status == PostbackStatus.SENDING, Postback.lease_until < now),
    )


def _sendable_set_ids(now: datetime) -> Any:
    """Event sets neither paused nor inside a TikTok throttle window."""
    return select(EventSet.id).where(
        EventSet.status == EventSetStatus.ACTIVE,
        or_(EventSet.throttled_until.is_(None), EventSet.throttled_until <= now),
    )


def reserve_due(session: Session, settings: Settings, now: datetime) -> list[list[int]]:
    """For the sweeper: due rows not already queued, leased so the next sweep skips them.

    Returns id groups of one event set each, at most one request's worth per group.
    """
    rows = session.execute(
        select(Postback.id, Postback.event_set_id)
        .where(
            _due(now),
            or_(
                Postback.status == PostbackStatus.SENDING,
                Postback.lease_until.is_(None),
                Postback.lease_until < now,
            ),
            Postback.event_set_id.in_(_sendable_set_ids(now)),
        )
        .order_by(Postback.next_attempt_at)
        .limit(settings.sweep_batch_size)
        .with_for_update(skip_locked=True, of=Postback)
    ).all()
    if not rows:
        return []
    lease = now + timedelta(seconds=settings.dispatch_lease_seconds)
    ids = [row.id for row in rows]
    table = Postback.__table__
    # A `sending` row past its lease belonged to a worker that died mid-call; its attempt
    # stays counted, which is what caps a message that keeps killing workers.
    session.execute(
        table.update()
        .where(table.c.id.in_(ids), table.c.status == PostbackStatus.SENDING)
        .values(
            status=PostbackStatus.RETRYING,
            next_attempt_at=now,
            last_message="worker stopped before an answer",
        )
    )
    session.execute(table.update().where(table.c.id.in_(ids)).values(lease_until=lease))
    groups: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        groups[row.event_set_id].append(row.id)
    return [
        chunk[i : i + MAX_EVENTS_PER_REQUEST]
        for chunk in groups.values()
        for i in range(0, len(chunk), MAX_EVENTS_PER_REQUEST)
    ]


def claim(
    session: Session, postback_ids: Sequence[int], settings: Settings, now: datetime
) -> list[OutgoingBatch]:
    """Marks due rows `sending` under a lease and groups them into requests."""
    if not postback_ids:
        return []
    rows = session.scalars(
        select(Postback)
        .where(Postback.id.in_(postback_ids), _due(now))
        .order_by(Postback.id)
        .with_for_update(skip_locked=True, of=Postback)
    ).all()
    if not rows:
        return []
    event_sets = {
        es.id: es
        for es in session.scalars(
            select(EventSet).where(EventSet.id.in_({r.event_set_id for r in rows}))
        )
    }
    tokens: dict[int, str] = {}
    lease = now + timedelta(seconds=settings.dispatch_lease_seconds)
    oldest_allowed = int((now - timedelta(days=settings.max_event_age_days)).timestamp())
    batches: dict[int, OutgoingBatch] = {}
    for row in rows:
        event_set = event_sets[row.event_set_id]
        throttled = event_set.throttled_until is not None and event_set.throttled_until > now
        if event_set.status != EventSetStatus.ACTIVE or throttled:
            row.lease_until = None  # the sweeper picks it up again once resumed or unthrottled
            continue
        if row.attempts >= max_attempts(settings):
            _finish(
                row,
                PostbackStatus.DEAD,
                f"gave up after {row.attempts} attempts "
                f"(the worker never recorded an answer); last: {row.last_message or '-'}",
            )
            continue
        # An operator's replay is sent whatever its age: they chose to send it.
        too_old = row.replays == 0 and row.payload is not None and (
            row.payload["event_time"] < oldest_allowed
        )
        if row.payload is None or too_old:
            _finish(
                row,
                PostbackStatus.EXPIRED,
                f"event_time older than {settings.max_event_age_days:g} days; not sent",
            )
            continue
        if event_set.id not in tokens:
            try:
                tokens[event_set.id] = open_token(event_set.sealed_token, settings)
            except TokenUnavailable as error:
                pause_event_set(event_set, str(error))
                row.lease_until = None
                continue
        row.status = PostbackStatus.SENDING
        row.attempts += 1
        row.lease_until = lease
        batch = batches.get(event_set.id)
        if batch is None:
            batch = batches[event_set.id] = OutgoingBatch(
                event_set_id=event_set.id,
                event_source=event_set.event_source,
                source_id=event_set.source_id,
                test_event_code=event_set.test_event_code,
                access_token=tokens[event_set.id],
                sealed_token=event_set.sealed_token,
            )
        batch.items.append((row.id, row.payload))
    return [part for batch in batches.values() for part in _split(batch)]


def _split(batch: OutgoingBatch) -> list[OutgoingBatch]:
    # TikTok expects test events one per request; live events go up to 1,000 per request.
    size = 1 if batch.test_event_code else MAX_EVENTS_PER_REQUEST
    return [
        OutgoingBatch(
            event_set_id=batch.event_set_id,
            event_source=batch.event_source,
            source_id=batch.source_id,
            test_event_code=batch.test_event_code,
            access_token=batch.access_token,
            sealed_token=batch.sealed_token,
            items=batch.items[i : i + size],
        )
        for i in range(0, len(batch.items), size)
    ]


def send(client: EventsApiClient, batch: OutgoingBatch) -> list[EventResult]:
    """POSTs one request; a rejected multi-event request is bisected to isolate bad events."""
    body = build_request(
        event_source=batch.event_source,
        event_source_id=batch.source_id,
        events=[payload for _, payload in batch.items],
        test_event_code=batch.test_event_code,
    )
    answer = client.track(batch.access_token, body)
    if answer.outcome is Outcome.INVALID and len(batch.items) > 1:
        middle = len(batch.items) // 2
        halves = (batch.items[:middle], batch.items[middle:])
        results: list[EventResult] = []
        for half in halves:
            results.extend(send(client, _with_items(batch, half)))
        return results
    return [
        EventResult(pid, answer, len(batch.items), batch.sealed_token) for pid, _ in batch.items
    ]


def _with_items(batch: OutgoingBatch, items: list[tuple[int, dict[str, Any]]]) -> OutgoingBatch:
    return OutgoingBatch(
        event_set_id=batch.event_set_id,
        event_source=batch.event_source,
        source_id=batch.source_id,
        test_event_code=batch.test_event_code,
        access_token=batch.access_token,
        sealed_token=batch.sealed_token,
        items=items,
    )


def record(
    session: Session, results: Sequence[EventResult], settings: Settings, now: datetime
) -> dict[str, int]:
    """Applies each answer to its outbox row and logs the attempt; returns counts by status."""
    if not results:
        return {}
    rows = {
        row.id: row
        for row in session.scalars(
            select(Postback).where(Postback.id.in_([r.postback_id for r in results]))
        )
    }
    auth_failures: dict[int, EventResult] = {}
    throttled: set[int] = set()
    counts: dict[str, int] = defaultdict(int)
    attempts = []
    for result in results:
        row = rows.get(result.postback_id)
        if row is None:
            continue
        answer = result.answer
        attempts.append(
            {
                "postback_id": row.id,
                "attempted_at": now,
                "outcome": answer.outcome.value,
                "http_status": answer.http_status,
                "code": answer.code,
                "message": answer.message[:2000],
                "request_id": answer.request_id,
                "batch_size": result.batch_size,
                "duration_ms": answer.duration_ms,
            }
        )
        row.last_http_status = answer.http_status
        row.last_code = answer.code
        row.last_message = answer.message[:2000]
        row.last_request_id = answer.request_id
        _apply(row, answer, settings, now)
        if answer.outcome is Outcome.AUTH:
            auth_failures[row.event_set_id] = result
        elif answer.outcome is Outcome.THROTTLED:
            throttled.add(row.event_set_id)
        counts[row.status] += 1
        log.info(
            "postback %s event_id=%s event_set=%s outcome=%s code=%s request_id=%s",
            row.id,
            row.event_id,
            row.event_set_id,
            answer.outcome.value,
            answer.code,
            answer.request_id,
        )
    session.execute(DeliveryAttempt.__table__.insert(), attempts)
    _hold_event_sets(session, auth_failures, throttled, settings, now)
    return dict(counts)


def _hold_event_sets(
    session: Session,
    auth_failures: dict[int, EventResult],
    throttled: set[int],
    settings: Settings,
    now: datetime,
) -> None:
    """Token errors pause a set (unless its token changed meanwhile); throttling slows it."""
    for event_set_id in auth_failures.keys() | throttled:
        event_set = session.get(EventSet, event_set_id)
        if event_set is None:
            continue
        failure = auth_failures.get(event_set_id)
        if failure is not None and failure.sealed_token == event_set.sealed_token:
            answer = failure.answer
            pause_event_set(
                event_set,
                f"TikTok code {answer.code}: {answer.message} (request_id {answer.request_id})",
            )
        if event_set_id in throttled and settings.throttle_pause_seconds:
            until = now + timedelta(seconds=settings.throttle_pause_seconds)
            if event_set.throttled_until is None or event_set.throttled_until < until:
                event_set.throttled_until = until


def _apply(row: Postback, answer: Answer, settings: Settings, now: datetime) -> None:
    if answer.outcome is Outcome.DELIVERED:
        row.status = PostbackStatus.DELIVERED
        row.delivered_at = now
        row.next_attempt_at = None
        row.lease_until = None
    elif answer.outcome is Outcome.INVALID:
        _finish(row, PostbackStatus.FAILED, answer.message)
    elif answer.outcome is Outcome.AUTH:
        # Not the event's fault: hold it (attempt not counted) until the token is fixed.
        row.status = PostbackStatus.PENDING
        row.attempts = max(row.attempts - 1, 0)
        row.next_attempt_at = now
        row.lease_until = None
    else:
        retry_at = next_attempt_at(
            row.attempts, settings, now, throttled=answer.outcome is Outcome.THROTTLED
        )
        if retry_at is None:
            _finish(
                row,
                PostbackStatus.DEAD,
                f"retry ladder exhausted after {row.attempts} attempts; last: {answer.message}",
            )
        else:
            row.status = PostbackStatus.RETRYING
            row.next_attempt_at = retry_at
            row.lease_until = None


def _finish(row: Postback, status: PostbackStatus, message: str) -> None:
    row.status = status
    row.last_message = message[:2000]
    row.next_attempt_at = None
    row.lease_until = None


def pause_event_set(event_set: EventSet, reason: str) -> None:
    if event_set.status != EventSetStatus.PAUSED:
        log.warning("pausing event set %s: %s", event_set.id, reason)
    event_set.status = EventSetStatus.PAUSED
    event_set.paused_reason = reason[:2000]
