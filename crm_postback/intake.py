"""Accepting triggers: validate, hash, merge the lead, store the trigger once (no commit here)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_postback.errors import InputRejected
from crm_postback.leads import hash_match_keys, upsert_lead
from crm_postback.schemas import TriggerIn
from crm_postback.settings import Settings
from models import EventSet, Trigger, TriggerStatus


@dataclass(frozen=True)
class AcceptedTrigger:
    trigger_id: int
    duplicate: bool  # True when the idempotency key was seen before: nothing new to send


def find_event_set(session: Session, reference: str) -> EventSet | None:
    """By our name or by the TikTok event set ID / pixel code."""
    return session.scalars(
        select(EventSet)
        .where(or_(EventSet.name == reference, EventSet.source_id == reference))
        .order_by(EventSet.id)
    ).first()


def occurrence_key(trigger: TriggerIn) -> str:
    if trigger.idempotency_key:
        return trigger.idempotency_key
    return f"{trigger.lead_id}|{trigger.type}|{trigger.occurred_at.isoformat()}"


def accept_trigger(session: Session, trigger: TriggerIn, settings: Settings) -> AcceptedTrigger:
    event_set = find_event_set(session, trigger.event_set)
    if event_set is None:
        raise InputRejected.one("event_set", f"unknown event set {trigger.event_set!r}")
    size = trigger.attributes_size()
    if size > settings.max_attribute_bytes:
        raise InputRejected.one(
            "attributes", f"{size} bytes of JSON; the limit is {settings.max_attribute_bytes}"
        )
    if trigger.match_keys is not None:
        keys = hash_match_keys(trigger.match_keys, settings.default_phone_region)
        if not keys.is_empty():
            upsert_lead(session, trigger.lead_id, keys)

    key = occurrence_key(trigger)
    existing = _existing(session, event_set.id, key)
    if existing is not None:
        return AcceptedTrigger(existing, duplicate=True)
    row = Trigger(
        event_set_id=event_set.id,
        lead_ref=trigger.lead_id,
        trigger_type=trigger.type,
        occurred_at=trigger.occurred_at,
        attributes=dict(trigger.attributes),
        idempotency_key=key,
        status=TriggerStatus.RECEIVED,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        found = _existing(session, event_set.id, key)
        if found is None:
            raise
        return AcceptedTrigger(found, duplicate=True)
    return AcceptedTrigger(row.id, duplicate=False)


def _existing(session: Session, event_set_id: int, key: str) -> int | None:
    return session.scalar(
        select(Trigger.id).where(
            Trigger.event_set_id == event_set_id, Trigger.idempotency_key == key
        )
    )
