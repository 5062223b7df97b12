"""Resolving stored triggers into outbox rows (no commit here; tasks commit)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from crm_postback.settings import Settings
from mappings.resolve import CompiledMapping, compile_mappings, resolve
from models import EventSet, Lead, Mapping, Postback, PostbackStatus, Trigger, TriggerStatus
from worker.payload import NoMatchKey, build_event, make_event_id

OPEN_TRIGGER_STATUSES = (TriggerStatus.RECEIVED, TriggerStatus.WAITING_FOR_LEAD)


def load_mappings(session: Session, event_set_ids: set[int]) -> dict[int, list[CompiledMapping]]:
    rows = session.scalars(select(Mapping).where(Mapping.event_set_id.in_(event_set_ids)))
    by_set: dict[int, list[Mapping]] = defaultdict(list)
    for row in rows:
        by_set[row.event_set_id].append(row)
    return {set_id: compile_mappings(by_set.get(set_id, [])) for set_id in event_set_ids}


def begin_attempt(
    session: Session, trigger_ids: Sequence[int], settings: Settings, now: datetime
) -> list[int]:
    """Counts a processing run of each open trigger; the caller commits before processing.

    A trigger whose earlier runs never finished (the worker died) is failed at the cap
    instead of being retried forever by broker redelivery and the sweeper.
    """
    if not trigger_ids:
        return []
    triggers = session.scalars(
        select(Trigger)
        .where(Trigger.id.in_(trigger_ids), Trigger.status.in_(OPEN_TRIGGER_STATUSES))
        .with_for_update(skip_locked=True, of=Trigger)
    ).all()
    runnable = []
    for trigger in triggers:
        if trigger.attempts >= settings.max_processing_attempts:
            trigger.status = TriggerStatus.FAILED
            trigger.error = (
                f"processing did not finish in {trigger.attempts} runs (the worker stopped); "
                "see the worker logs for this trigger id"
            )
            trigger.processed_at = now
            continue
        trigger.attempts += 1
        runnable.append(trigger.id)
    return runnable


def process_triggers(
    session: Session, trigger_ids: Sequence[int], settings: Settings, now: datetime
) -> list[int]:
    """Turns open triggers into postbacks; returns the ids of postbacks ready to send."""
    if not trigger_ids:
        return []
    triggers = session.scalars(
        select(Trigger)
        .where(Trigger.id.in_(trigger_ids), Trigger.status.in_(OPEN_TRIGGER_STATUSES))
        .order_by(Trigger.id)
        .with_for_update(skip_locked=True, of=Trigger)
    ).all()
    if not triggers:
        return []
    lead_refs = {t.lead_ref for t in triggers}
    leads = {
        lead.lead_ref: lead
        for lead in session.scalars(select(Lead).where(Lead.lead_ref.in_(lead_refs)))
    }
    set_ids = {t.event_set_id for t in triggers}
    event_sets = {
        es.id: es for es in session.scalars(select(EventSet).where(EventSet.id.in_(set_ids)))
    }
    mappings = load_mappings(session, set_ids)
    lease_until = now + timedelta(seconds=settings.dispatch_lease_seconds)

    ready: list[Postback] = []
    for trigger in triggers:
        lead = leads.get(trigger.lead_ref)
        if lead is None:
            _wait_for_lead(trigger, settings, now)
            continue
        postbacks = _postbacks_for(trigger, lead, event_sets[trigger.event_set_id], mappings, now)
        for postback in postbacks:
            if postback.status == PostbackStatus.PENDING:
                postback.lease_until = lease_until
                ready.append(postback)
        session.add_all(postbacks)
        trigger.processed_at = now
    session.flush()
    return [p.id for p in ready]


def _wait_for_lead(trigger: Trigger, settings: Settings, now: datetime) -> None:
    waited = (now - trigger.received_at).total_seconds()
    if waited >= settings.lead_wait_seconds:
        trigger.status = TriggerStatus.FAILED
        trigger.error = (
            f"lead_id: no lead {trigger.lead_ref!r} arrived with match keys within "
            f"{settings.lead_wait_seconds} s (send lead.submitted or upsert the lead first)"
        )
        trigger.processed_at = now
    else:
        trigger.status = TriggerStatus.WAITING_FOR_LEAD
        trigger.error = f"lead_id: waiting for lead {trigger.lead_ref!r} to be submitted"


def _postbacks_for(
    trigger: Trigger,
    lead: Lead,
    event_set: EventSet,
    mappings: dict[int, list[CompiledMapping]],
    now: datetime,
) -> list[Postback]:
    candidates = mappings.get(event_set.id, [])
    resolved = resolve(
        trigger.trigger_type, trigger.attributes, candidates, event_set.default_currency
    )
    base = {
        "trigger_id": trigger.id,
        "event_set_id": event_set.id,
        "lead_ref": trigger.lead_ref,
        "created_at": now,
    }
    if not resolved:
        trigger.status = TriggerStatus.UNMAPPED
        reason = explain_unmapped(trigger, candidates)
        trigger.error = reason
        return [Postback(**base, status=PostbackStatus.UNMAPPED, last_message=reason)]

    trigger.status = TriggerStatus.RESOLVED
    trigger.error = None
    postbacks = []
    for event in resolved:
        postback = Postback(
            **base,
            mapping_id=event.mapping_id,
            mapping_version=event.mapping_version,
            event_name=event.event_name,
            event_id=make_event_id(event_set.id, trigger.idempotency_key, event.event_name),
            status=PostbackStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
        )
        try:
            if event.error:
                raise ValueError(event.error)
            postback.payload = build_event(
                event_source=event_set.event_source,
                lead_event_source=event_set.lead_event_source,
                lead=lead,
                event_name=event.event_name,
                event_id=postback.event_id or "",
                occurred_at=trigger.occurred_at,
                properties=event.properties,
            )
        except (ValueError, NoMatchKey) as error:
            postback.status = PostbackStatus.FAILED
            postback.last_message = str(error)
            postback.next_attempt_at = None
        postbacks.append(postback)
    return postbacks


def explain_unmapped(trigger: Trigger, candidates: Sequence[CompiledMapping]) -> str:
    same_type = [m for m in candidates if m.trigger_type == trigger.trigger_type]
    if not same_type:
        return f"no enabled mapping for trigger {trigger.trigger_type!r} on this event set"
    conditions = "; ".join(
        " and ".join(c.describe() for c in m.conditions) or "(always)" for m in same_type
    )
    return f"{len(same_type)} mapping(s) for {trigger.trigger_type!r}, none matched: {conditions}"


def stale_trigger_ids(
    session: Session, now: datetime, stale_after: timedelta, limit: int
) -> list[int]:
    """Triggers whose task never ran (broker lost it, or Redis was down at enqueue time)."""
    cutoff = now - stale_after
    return list(
        session.scalars(
            select(Trigger.id)
            .where(
                or_(
                    Trigger.status == TriggerStatus.WAITING_FOR_LEAD,
                    Trigger.status == TriggerStatus.RECEIVED,
                ),
                Trigger.received_at <= cutoff,
            )
            .order_by(Trigger.id)
            .limit(limit)
        )
    )
