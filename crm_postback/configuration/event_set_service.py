"""Event set administration (no commit here: `commands.manage_event_sets` commits).

Every change records its audit entry in the caller's transaction, as the `actor` it is given
(a command passes its actor's name; work done by the system passes `audit.SYSTEM_ACTOR`).
"""

from __future__ import annotations

import re
from enum import Enum

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from crm_postback.configuration import audit
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import Settings
from crm_postback.core.token_vault import seal_token, token_hint
from crm_postback.intake.trigger_intake import find_event_set
from crm_postback.tiktok.event_catalogue import SUPPORTED_CURRENCIES
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
    actor: str,
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
    after = {
        **audit.event_set_snapshot(event_set),
        "access_token": token_hint(event_set.sealed_token, settings),
    }
    audit.record(
        session,
        actor=actor,
        action="event_set.create",
        entity_type="event_set",
        entity_id=event_set.id,
        event_set_id=event_set.id,
        after=after,
    )
    return event_set


class Keep(Enum):
    """A clearable field left as it is (None clears it instead)."""

    KEEP = "keep"


KEEP = Keep.KEEP


def update_event_set(
    session: Session,
    event_set: EventSet,
    *,
    actor: str,
    name: str | None = None,
    advertiser_id: str | Keep | None = KEEP,
    lead_event_source: str | None = None,
    default_currency: str | Keep | None = KEEP,
    test_event_code: str | Keep | None = KEEP,
) -> EventSet:
    """Changes what is given (None clears advertiser id, currency or test code; a name or
    lead event source of None is left as it is, as they cannot be cleared)."""
    before = audit.event_set_snapshot(event_set)
    if name is not None:
        name = name.strip()
        if not name or len(name) > 100:
            raise InputRejected.one("name", "must be 1 to 100 characters")
        taken = session.scalar(
            select(EventSet.id).where(EventSet.name == name, EventSet.id != event_set.id)
        )
        if taken is not None:
            raise InputRejected.one("name", f"an event set named {name!r} exists")
        event_set.name = name
    if advertiser_id is not KEEP:
        advertiser = str(advertiser_id or "").strip() or None
        if advertiser is not None and not SOURCE_ID_PATTERN.match(advertiser):
            raise InputRejected.one("advertiser_id", "must be the TikTok advertiser ID (digits)")
        event_set.advertiser_id = advertiser
    if lead_event_source is not None:
        if not lead_event_source.strip() or len(lead_event_source.strip()) > 64:
            raise InputRejected.one("lead_event_source", "must be 1 to 64 characters")
        event_set.lead_event_source = lead_event_source.strip()
    if default_currency is not KEEP:
        currency = str(default_currency or "").strip().upper() or None
        if currency is not None and currency not in SUPPORTED_CURRENCIES:
            raise InputRejected.one("currency", f"{currency!r} is not supported by TikTok")
        event_set.default_currency = currency
    if test_event_code is not KEEP:
        code = str(test_event_code or "").strip() or None
        if code is not None and len(code) > 64:
            raise InputRejected.one("test_event_code", "must be at most 64 characters")
        event_set.test_event_code = code
    session.flush()
    after = audit.event_set_snapshot(event_set)
    if after != before:
        audit.record(
            session,
            actor=actor,
            action="event_set.update",
            entity_type="event_set",
            entity_id=event_set.id,
            event_set_id=event_set.id,
            before=before,
            after=after,
        )
    return event_set


def get_event_set(session: Session, reference: str) -> EventSet:
    event_set = find_event_set(session, reference)
    if event_set is None:
        raise InputRejected.one("event_set", f"unknown event set {reference!r}")
    return event_set


def rotate_token(
    session: Session,
    settings: Settings,
    event_set: EventSet,
    token: str,
    *,
    actor: str,
) -> None:
    """A new token resumes a set paused for token problems; held postbacks go out again."""
    if not token.strip():
        raise InputRejected.one("access_token", "must not be empty")
    old_hint = token_hint(event_set.sealed_token, settings)
    event_set.sealed_token = seal_token(token.strip(), settings)
    audit.record(
        session,
        actor=actor,
        action="event_set.token",
        entity_type="event_set",
        entity_id=event_set.id,
        event_set_id=event_set.id,
        before={"access_token": old_hint},
        after={"access_token": "replaced"},
    )
    if event_set.status == EventSetStatus.PAUSED:
        resume(session, event_set, actor=actor)


def _record_status(
    session: Session | None, event_set: EventSet, actor: str, before: dict[str, str | None]
) -> None:
    if session is not None and event_set.id is not None:
        audit.record(
            session,
            actor=actor,
            action="event_set.pause"
            if event_set.status == EventSetStatus.PAUSED
            else "event_set.resume",
            entity_type="event_set",
            entity_id=event_set.id,
            event_set_id=event_set.id,
            before=before,
            after={"status": event_set.status, "paused_reason": event_set.paused_reason},
        )


def pause(event_set: EventSet, reason: str, *, actor: str) -> None:
    before = {"status": event_set.status, "paused_reason": event_set.paused_reason}
    event_set.status = EventSetStatus.PAUSED
    event_set.paused_reason = reason
    _record_status(object_session(event_set), event_set, actor, before)


def resume(session: Session, event_set: EventSet, *, actor: str) -> None:
    before = {"status": event_set.status, "paused_reason": event_set.paused_reason}
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
    _record_status(session, event_set, actor, before)
