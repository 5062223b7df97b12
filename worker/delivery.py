"""Sending outbox rows: claim (short transaction), POST (no locks held), record (short transaction).

Services here never commit; `worker.tasks` owns the transactions.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from crm_postback.core.pacing import RequestPacer
from crm_postback.core.settings import Settings
from crm_postback.observability.delivery_metrics import record_delivery, record_paced
from crm_postback.tiktok.event_catalogue import MAX_EVENTS_PER_REQUEST
from crm_postback.tiktok.events_client import EventsApiClient
from crm_postback.tiktok.events_payload import build_request
from crm_postback.tiktok.response_outcomes import MESSAGE_CHARS, Answer, Outcome
from models import (
    DeliveryAttempt,
    EventSet,
    EventSetStatus,
    Lead,
    Postback,
    PostbackStatus,
    is_due,
)
from models.bulk import bulk_insert, matches_any
from worker.claim_planning import (
    Item,
    OutgoingBatch,
    StoredRow,
    consent_withdrawn_values,
    final_values,
    load_event_sets,
    pause_event_set,
    plan_claim,
    with_items,
)
from worker.fair_shares import PerSetQuery, rows_of_sets, share_out
from worker.retry import next_attempt_at

log = logging.getLogger(__name__)


class EventResult(NamedTuple):
    postback_id: int
    event_set_id: int
    attempts: int
    answer: Answer
    batch_size: int
    sealed_token: str
    # What metrics and logs say about the event, carried so recording needs no query.
    event_set_name: str
    item: Item
    workspace_id: int

    def __repr__(self) -> str:  # without the sealed token
        return (
            f"EventResult(postback_id={self.postback_id}, event_set_id={self.event_set_id}, "
            f"attempts={self.attempts}, answer={self.answer!r})"
        )


def _sendable_set_ids(now: datetime) -> Any:
    """Event sets neither paused nor inside a TikTok throttle window."""
    return select(EventSet.id).where(
        EventSet.status == EventSetStatus.ACTIVE,
        or_(EventSet.throttled_until.is_(None), EventSet.throttled_until <= now),
    )


def reserve_due(session: Session, settings: Settings, now: datetime) -> list[list[int]]:
    """For the sweeper: due rows not already queued, leased so the next sweep skips them.

    Returns id groups of one event set each, at most one request's worth per group. The
    batch is shared out across the event sets with due rows (`worker.fair_shares`), so a
    set resumed with a long backlog does not hold back another set's retries.
    """
    reservable = and_(
        is_due(now),
        or_(
            Postback.status == PostbackStatus.SENDING,
            Postback.lease_until.is_(None),
            Postback.lease_until < now,
        ),
        Postback.event_set_id.in_(_sendable_set_ids(now)),
    )

    def of_set(set_id: Any, after: int | None, limit: Any) -> Any:
        conditions = [reservable, Postback.event_set_id == set_id]
        if after is not None:
            conditions.append(Postback.id > after)
        return (
            select(Postback.id, Postback.event_set_id)
            .where(*conditions)
            .order_by(Postback.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=Postback)
        )

    set_ids = session.scalars(select(Postback.event_set_id).where(reservable).distinct())
    reservable_by_set = PerSetQuery(of_set)
    rows, _more_due = share_out(
        sorted(set_ids),
        settings.sweep_batch_size,
        lambda shares: rows_of_sets(session, reservable_by_set, shares),
    )
    if not rows:
        return []
    lease = now + timedelta(seconds=settings.dispatch_lease_seconds)
    ids = [row.id for row in rows]
    table = Postback.__table__
    # A `sending` row past its lease belonged to a worker that died mid-call; its attempt
    # stays counted, which is what caps a message that keeps killing workers.
    session.execute(
        table.update()
        .where(matches_any(session, table.c.id, ids), table.c.status == PostbackStatus.SENDING)
        .values(
            status=PostbackStatus.RETRYING,
            next_attempt_at=now,
            last_message="worker stopped before an answer",
        )
    )
    session.execute(
        table.update().where(matches_any(session, table.c.id, ids)).values(lease_until=lease)
    )
    groups: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        groups[row.event_set_id].append(row.id)
    return [
        chunk[i : i + MAX_EVENTS_PER_REQUEST]
        for chunk in groups.values()
        for i in range(0, len(chunk), MAX_EVENTS_PER_REQUEST)
    ]


POSTBACKS = Postback.__table__
LEADS = Lead.__table__
_its_lead = and_(
    LEADS.c.workspace_id == POSTBACKS.c.workspace_id, LEADS.c.lead_ref == POSTBACKS.c.lead_ref
)
_ATTEMPT_GIVEN_BACK = POSTBACKS.c.attempts - 1


class GroupedUpdates:
    """Collects per-row changes and writes one UPDATE per distinct set of values."""

    def __init__(self) -> None:
        self._groups: dict[tuple[tuple[str, Any], ...], list[int]] = defaultdict(list)

    def add(self, row_id: int, **values: Any) -> None:
        self._groups[tuple(sorted(values.items()))].append(row_id)

    def execute(self, session: Session, only_status: PostbackStatus | None = None) -> None:
        for values, ids in self._groups.items():
            statement = update(POSTBACKS).where(matches_any(session, POSTBACKS.c.id, ids))
            if only_status is not None:
                statement = statement.where(POSTBACKS.c.status == only_status)
            session.execute(statement.values(dict(values)))


def claim(
    session: Session, postback_ids: Sequence[int], settings: Settings, now: datetime
) -> list[OutgoingBatch]:
    """Marks due rows `sending` under a lease and groups them into requests."""
    if not postback_ids:
        return []
    rows = session.execute(
        select(
            POSTBACKS.c.id,
            POSTBACKS.c.event_set_id,
            POSTBACKS.c.attempts,
            POSTBACKS.c.replays,
            POSTBACKS.c.payload,
            POSTBACKS.c.last_message,
            POSTBACKS.c.created_at,
            POSTBACKS.c.lead_ref,
            LEADS.c.consent_withdrawn_at,
        )
        .select_from(POSTBACKS.outerjoin(LEADS, _its_lead))
        .where(matches_any(session, POSTBACKS.c.id, postback_ids), is_due(now))
        .order_by(POSTBACKS.c.id)
        .with_for_update(skip_locked=True, of=POSTBACKS)
    ).all()
    changes = GroupedUpdates()
    stored = []
    for found in rows:
        values = dict(found._mapping)
        withdrawn_at = values.pop("consent_withdrawn_at")
        if withdrawn_at is not None:
            # Withdrawn after the row was planned (the command stops what waits; this is a
            # row planned meanwhile, a replay, or a dead worker's): it is never sent.
            changes.add(found.id, **consent_withdrawn_values(withdrawn_at))
            continue
        stored.append(StoredRow(**values))
    event_sets = load_event_sets(session, {row.event_set_id for row in stored})
    plan = plan_claim(stored, event_sets, settings, now)
    for row, values in plan.changes:
        changes.add(row.id, **values)
    changes.execute(session)
    return plan.batches(_row_id)


def _row_id(row: StoredRow) -> int:
    return row.id


class Deferred(NamedTuple):
    """A request not sent because its token's pacing budget was spent: its rows wait
    `retry_in` seconds, their attempt given back."""

    batch: OutgoingBatch
    retry_in: float


@dataclass
class Sent:
    results: list[EventResult] = field(default_factory=list)
    deferred: list[Deferred] = field(default_factory=list)


Gate = Callable[[OutgoingBatch], float]


def send_all(
    client: EventsApiClient,
    batches: Sequence[OutgoingBatch],
    pacer: RequestPacer | None,
    max_wait: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Sent:
    """Sends every batch, within its token's pacing budget when `pacer` is set.

    A batch whose token has no free slot does not hold up the others: every batch gets its
    turn, and only then does the worker wait, for the nearest free slot, and at most
    `max_wait` seconds in all. A batch that would need longer is deferred, never sent over
    the budget."""
    sent = Sent()
    if pacer is None:
        for batch in batches:
            sent.results.extend(_send(client, batch, None, sent))
        return sent
    # Built before a slot is taken, so a request goes out as soon as it has one.
    bodies = [_body(batch) for batch in batches]
    waited = 0.0
    pending = list(zip(batches, bodies, strict=True))
    while pending:
        waiting: list[tuple[OutgoingBatch, dict[str, Any], float]] = []
        for batch, body in pending:
            wait = pacer.try_acquire(batch.access_token)
            if wait == 0.0:
                if waited:
                    record_paced(batch.workspace_id, batch.event_set_name, "waited")
                gate = _gate(pacer, max_wait, sleep)
                sent.results.extend(_send(client, batch, gate, sent, body))
            elif waited + wait <= max_wait:
                waiting.append((batch, body, wait))
            else:
                sent.deferred.append(Deferred(batch, wait))
        if not waiting:
            break
        nearest = min(wait for _batch, _body, wait in waiting)
        sleep(nearest)
        waited += nearest
        pending = [(batch, body) for batch, body, _wait in waiting]
    return sent


def _gate(pacer: RequestPacer, max_wait: float, sleep: Callable[[float], None]) -> Gate:
    """For the further requests of a bisected batch: a slot each, waited for briefly."""

    def gate(batch: OutgoingBatch) -> float:
        wait = pacer.try_acquire(batch.access_token)
        if wait == 0.0 or wait > max_wait:
            return wait
        sleep(wait)
        wait = pacer.acquire(batch.access_token, max_wait - wait, sleep=sleep)
        if wait == 0.0:
            record_paced(batch.workspace_id, batch.event_set_name, "waited")
        return wait

    return gate


def send(client: EventsApiClient, batch: OutgoingBatch) -> list[EventResult]:
    """POSTs one request; a rejected multi-event request is bisected to isolate bad events."""
    return _send(client, batch, None, Sent())


def _body(batch: OutgoingBatch) -> dict[str, Any]:
    return build_request(
        event_source=batch.event_source,
        event_source_id=batch.source_id,
        events=[item.payload for item in batch.items],
        test_event_code=batch.test_event_code,
    )


def _send(
    client: EventsApiClient,
    batch: OutgoingBatch,
    gate: Gate | None,
    sent: Sent,
    body: dict[str, Any] | None = None,
) -> list[EventResult]:
    """One request (its slot already taken); the halves of a rejected one each take their
    own through `gate`, and a half that gets none is deferred into `sent`."""
    if body is None:
        body = _body(batch)
    answer = client.track(batch.access_token, body)
    if answer.outcome is Outcome.INVALID and len(batch.items) > 1:
        middle = len(batch.items) // 2
        halves = (batch.items[:middle], batch.items[middle:])
        results: list[EventResult] = []
        for half in halves:
            half_batch = with_items(batch, half)
            wait = gate(half_batch) if gate is not None else 0.0
            if wait:
                sent.deferred.append(Deferred(half_batch, wait))
                continue
            results.extend(_send(client, half_batch, gate, sent))
        return results
    return [
        EventResult(
            item.postback_id,
            batch.event_set_id,
            item.attempts,
            answer,
            len(batch.items),
            batch.sealed_token,
            batch.event_set_name,
            item,
            batch.workspace_id,
        )
        for item in batch.items
    ]


def record(
    session: Session, results: Sequence[EventResult], settings: Settings, now: datetime
) -> dict[str, int]:
    """Applies each answer to its outbox row and logs the attempt; returns counts by status."""
    if not results:
        return {}
    auth_failures: dict[int, EventResult] = {}
    not_tiktok: dict[int, EventResult] = {}
    throttled: set[int] = set()
    counts: dict[str, int] = defaultdict(int)
    retry_times: dict[tuple[int, bool], datetime | None] = {}
    changes = GroupedUpdates()
    attempts = []
    statuses: list[str] = []
    for result in results:
        answer = result.answer
        attempts.append(
            {
                "postback_id": result.postback_id,
                "workspace_id": result.workspace_id,
                "attempted_at": now,
                "outcome": answer.outcome.value,
                "http_status": answer.http_status,
                "code": answer.code,
                "message": answer.message[:MESSAGE_CHARS],
                "request_id": answer.request_id,
                "batch_size": result.batch_size,
                "duration_ms": answer.duration_ms,
            }
        )
        values = _outcome_values(result.attempts, answer, settings, now, retry_times)
        changes.add(
            result.postback_id,
            last_http_status=answer.http_status,
            last_code=answer.code,
            last_request_id=answer.request_id,
            **{"last_message": answer.message[:MESSAGE_CHARS], **values},
        )
        if answer.outcome is Outcome.AUTH:
            auth_failures[result.event_set_id] = result
        elif answer.outcome is Outcome.NOT_TIKTOK:
            not_tiktok[result.event_set_id] = result
        elif answer.outcome is Outcome.THROTTLED:
            throttled.add(result.event_set_id)
        counts[values["status"]] += 1
        statuses.append(values["status"])
    changes.execute(session)
    bulk_insert(session, DeliveryAttempt.__table__, attempts)
    _hold_event_sets(session, auth_failures, not_tiktok, throttled, settings, now)
    _log_requests(results)
    record_delivery(results, statuses, now)
    return dict(counts)


def defer(session: Session, deferred: Sequence[Deferred], settings: Settings, now: datetime) -> int:
    """Rows of requests pacing kept back: `retrying` until their token's window frees, their
    attempt given back (nothing was sent) and their lease released, so the sweeper finds
    them if the follow-up task is lost. Only rows still `sending`: repeated after a lost
    COMMIT answer, this changes nothing more. Returns the number of rows."""
    if not deferred:
        return 0
    changes = GroupedUpdates()
    for paced in deferred:
        message = (
            f"paced: the access token's budget (TIKTOK_REQUEST_RATE {settings.tiktok_request_rate})"
            f" was spent; sent when its window frees, about {paced.retry_in:.1f} s later "
            "(no attempt counted)"
        )
        retry_at = now + timedelta(seconds=paced.retry_in)
        for item in paced.batch.items:
            changes.add(
                item.postback_id,
                status=PostbackStatus.RETRYING,
                attempts=item.attempts - 1,
                next_attempt_at=retry_at,
                lease_until=None,
                last_message=message,
            )
        record_paced(paced.batch.workspace_id, paced.batch.event_set_name, "deferred")
    changes.execute(session, only_status=PostbackStatus.SENDING)
    return sum(len(paced.batch.items) for paced in deferred)


def _log_requests(results: Sequence[EventResult]) -> None:
    by_request: dict[tuple[int, str | None, str, int | None], int] = defaultdict(int)
    for result in results:
        answer = result.answer
        by_request[(result.event_set_id, answer.request_id, answer.outcome.value, answer.code)] += 1
        log.debug(
            "postback %s outcome=%s",
            result.postback_id,
            answer.outcome.value,
            extra={
                "postback_id": result.postback_id,
                "event_set_id": result.event_set_id,
                "outcome": answer.outcome.value,
                "tiktok_code": answer.code,
                "request_id": answer.request_id,
            },
        )
    for (event_set_id, request_id, outcome, code), count in by_request.items():
        log.info(
            "request_id=%s outcome=%s code=%s events=%d",
            request_id,
            outcome,
            code,
            count,
            extra={
                "event_set_id": event_set_id,
                "request_id": request_id,
                "outcome": outcome,
                "tiktok_code": code,
                "events": count,
            },
        )


def _outcome_values(
    attempts: int,
    answer: Answer,
    settings: Settings,
    now: datetime,
    retry_times: dict[tuple[int, bool], datetime | None],
) -> dict[str, Any]:
    """The row's new state for one answer (attempts already counts this try)."""
    if answer.outcome is Outcome.DELIVERED:
        return {
            "status": PostbackStatus.DELIVERED,
            "delivered_at": now,
            "next_attempt_at": None,
            "lease_until": None,
        }
    if answer.outcome is Outcome.INVALID:
        return final_values(PostbackStatus.FAILED, answer.message)
    if answer.outcome is Outcome.AUTH:
        # Not the event's fault: hold it (attempt given back) until the token is fixed.
        return {
            "status": PostbackStatus.PENDING,
            "attempts": _ATTEMPT_GIVEN_BACK,
            "next_attempt_at": now,
            "lease_until": None,
        }
    is_throttled = answer.outcome is Outcome.THROTTLED
    if (attempts, is_throttled) not in retry_times:  # one jittered time per group of rows
        retry_times[(attempts, is_throttled)] = next_attempt_at(
            attempts, settings, now, throttled=is_throttled
        )
    retry_at = retry_times[(attempts, is_throttled)]
    if retry_at is None:
        return final_values(
            PostbackStatus.DEAD,
            f"retry ladder exhausted after {attempts} attempts; last: {answer.message}",
        )
    return {"status": PostbackStatus.RETRYING, "next_attempt_at": retry_at, "lease_until": None}


def _hold_event_sets(
    session: Session,
    auth_failures: dict[int, EventResult],
    not_tiktok: dict[int, EventResult],
    throttled: set[int],
    settings: Settings,
    now: datetime,
) -> None:
    """Token errors pause a set (unless its token changed meanwhile), and so does an answer
    that is not TikTok's (the address or a proxy is wrong; its events wait on the ladder);
    throttling slows a set."""
    for event_set_id in auth_failures.keys() | not_tiktok.keys() | throttled:
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
        stray = not_tiktok.get(event_set_id)
        if stray is not None:
            pause_event_set(
                event_set,
                f"{stray.answer.message}: not an answer from TikTok. Check TIKTOK_API_BASE_URL "
                "and any proxy on the way, then resume the event set (its events wait on the "
                "retry ladder).",
            )
        if event_set_id in throttled and settings.throttle_pause_seconds:
            until = now + timedelta(seconds=settings.throttle_pause_seconds)
            if event_set.throttled_until is None or event_set.throttled_until < until:
                event_set.throttled_until = until
