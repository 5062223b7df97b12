"""Event set administration (no commit here; callers commit)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.errors import InputRejected
from crm_postback.settings import Settings
from crm_postback.token_vault import seal_token
from mappings.catalogue import SUPPORTED_CURRENCIES
from models import EventSet, EventSetKind, EventSetStatus, Postback, PostbackStatus

SOURCE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{4,64}$")


def create_event_set(
    session: Session,
    settings: Settings,
    *,
    name: str,
    source_id: str,
    access_token: str,
    kind: str = EventSetKind.CRM,
    lead_event_source: str = "crm-postback",
    test_event_code: str | None = None,
    advertiser_id: str | None = None,
    default_currency: str | None = None,
) -> EventSet:
    if kind not in (EventSetKind.CRM, EventSetKind.WEB):
        raise InputRejected.one("kind", "must be 'crm' (CRM event set) or 'web' (Pixel)")
    if not name.strip() or len(name) > 100:
        raise InputRejected.one("name", "must be 1 to 100 characters")
    if not SOURCE_ID_PATTERN.match(source_id):
        raise InputRejected.one("event_set_id", "must be the TikTok event set ID or pixel code")
    if not access_token.strip():
        raise InputRejected.one("access_token", "must not be empty")
    if default_currency is not None:
        default_currency = default_currency.upper()
        if default_currency not in SUPPORTED_CURRENCIES:
            raise InputRejected.one("currency", f"{default_currency!r} is not supported by TikTok")
    if session.scalar(select(EventSet.id).where(EventSet.name == name)) is not None:
        raise InputRejected.one("name", f"an event set named {name!r} exists")
    if (
        session.scalar(
            select(EventSet.id).where(EventSet.kind == kind, EventSet.source_id == source_id)
        )
        is not None
    ):
        raise InputRejected.one("event_set_id", f"{source_id} is already configured")
    event_set = EventSet(
        name=name.strip(),
        kind=kind,
        source_id=source_id,
        sealed_token=seal_token(access_token.strip(), settings),
        lead_event_source=lead_event_source,
        test_event_code=test_event_code or None,
        advertiser_id=advertiser_id or None,
        default_currency=default_currency,
        status=EventSetStatus.ACTIVE,
    )
    session.add(event_set)
    session.flush()
    return event_set


def get_event_set(session: Session, reference: str) -> EventSet:
    from crm_postback.intake import find_event_set

    event_set = find_event_set(session, reference)
    if event_set is None:
        raise InputRejected.one("event_set", f"unknown event set {reference!r}")
    return event_set


def rotate_token(session: Session, settings: Settings, event_set: EventSet, token: str) -> None:
    """A new token resumes a set paused for token problems; held postbacks go out again."""
    if not token.strip():
        raise InputRejected.one("access_token", "must not be empty")
    event_set.sealed_token = seal_token(token.strip(), settings)
    if event_set.status == EventSetStatus.PAUSED:
        resume(session, event_set)


def pause(event_set: EventSet, reason: str) -> None:
    event_set.status = EventSetStatus.PAUSED
    event_set.paused_reason = reason


def resume(session: Session, event_set: EventSet) -> None:
    event_set.status = EventSetStatus.ACTIVE
    event_set.paused_reason = None
    # Rows held while paused become due now; their lease is cleared so the sweeper sends them.
    session.execute(
        Postback.__table__.update()
        .where(
            Postback.event_set_id == event_set.id,
            Postback.status.in_((PostbackStatus.PENDING, PostbackStatus.RETRYING)),
        )
        .values(lease_until=None)
    )
