"""Read-only answers for operators: a lead's postback history and status counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import DeliveryAttempt, EventSet, Lead, Postback, Trigger


@dataclass
class AttemptView:
    attempted_at: datetime
    outcome: str
    http_status: int | None
    code: int | None
    message: str | None
    request_id: str | None
    batch_size: int


@dataclass
class PostbackView:
    id: int
    event_name: str | None
    event_id: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_code: int | None
    last_message: str | None
    last_request_id: str | None
    mapping_id: int | None
    mapping_version: int | None
    payload: dict[str, Any] | None
    delivered_at: datetime | None
    history: list[AttemptView] = field(default_factory=list)


@dataclass
class TriggerView:
    id: int
    trigger_type: str
    event_set: str
    occurred_at: datetime
    received_at: datetime
    status: str
    error: str | None
    attributes: dict[str, Any]
    postbacks: list[PostbackView] = field(default_factory=list)


@dataclass
class LeadHistory:
    lead_ref: str
    known: bool
    match_keys: dict[str, Any]
    triggers: list[TriggerView]


def lead_history(session: Session, lead_ref: str) -> LeadHistory:
    lead = session.scalar(select(Lead).where(Lead.lead_ref == lead_ref))
    names: dict[int, str] = {
        row.id: row.name for row in session.execute(select(EventSet.id, EventSet.name))
    }
    triggers = session.scalars(
        select(Trigger)
        .where(Trigger.lead_ref == lead_ref)
        .order_by(Trigger.occurred_at, Trigger.id)
    ).all()
    postbacks = session.scalars(
        select(Postback).where(Postback.lead_ref == lead_ref).order_by(Postback.id)
    ).all()
    attempts = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.postback_id.in_([p.id for p in postbacks]))
        .order_by(DeliveryAttempt.id)
    ).all()
    attempts_by_postback: dict[int, list[AttemptView]] = {}
    for a in attempts:
        attempts_by_postback.setdefault(a.postback_id, []).append(
            AttemptView(
                a.attempted_at,
                a.outcome,
                a.http_status,
                a.code,
                a.message,
                a.request_id,
                a.batch_size,
            )
        )
    views = {
        t.id: TriggerView(
            t.id,
            t.trigger_type,
            names.get(t.event_set_id, "?"),
            t.occurred_at,
            t.received_at,
            t.status,
            t.error,
            dict(t.attributes),
        )
        for t in triggers
    }
    for p in postbacks:
        view = PostbackView(
            p.id,
            p.event_name,
            p.event_id,
            p.status,
            p.attempts,
            p.next_attempt_at,
            p.last_code,
            p.last_message,
            p.last_request_id,
            p.mapping_id,
            p.mapping_version,
            p.payload,
            p.delivered_at,
            attempts_by_postback.get(p.id, []),
        )
        if p.trigger_id in views:
            views[p.trigger_id].postbacks.append(view)
    keys: dict[str, Any] = {}
    if lead is not None:
        keys = {
            "ttclid": lead.ttclid,
            "tiktok_lead_id": lead.tiktok_lead_id,
            "email_sha256": lead.email_hashes,
            "phone_sha256": lead.phone_hashes,
            "external_id_sha256": lead.external_id_hashes,
            "ip": lead.ip,
            "user_agent": lead.user_agent,
            "ttp": lead.ttp,
        }
        keys = {k: v for k, v in keys.items() if v}
    return LeadHistory(lead_ref, lead is not None, keys, list(views.values()))


def status_counts(session: Session) -> dict[str, dict[str, int]]:
    """{event set name: {status: count}} over the outbox."""
    rows = session.execute(
        select(EventSet.name, Postback.status, func.count())
        .join(EventSet, EventSet.id == Postback.event_set_id)
        .group_by(EventSet.name, Postback.status)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for name, status, count in rows:
        counts.setdefault(name, {})[status] = count
    return counts


def trigger_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Trigger.status, func.count()).group_by(Trigger.status)).all()
    return dict(rows)
