"""Re-queueing postbacks that ended dead, failed or expired (no commit here; callers commit).

A replayed postback keeps its event_id, so TikTok deduplicates it if an earlier copy did
arrive. Its match keys are refreshed from the lead (keys may have arrived since), and its
properties are rebuilt from the mapping when the mapping still exists. The selection runs in
a session scoped to one workspace (every statement here is ORM, filtered by it); a row's lead
is its workspace's lead of that id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from crm_postback.configuration.event_set_service import get_event_set
from crm_postback.core.errors import InputRejected
from crm_postback.operations.postback_messages import consent_withdrawn_message
from crm_postback.tiktok.events_payload import (
    NoMatchKey,
    build_event,
    match_key_mask,
    resolve_limited_data_use,
)
from mappings.resolve import CompiledMapping, build_properties
from models import (
    REPLAYABLE_STATUSES,
    EventSet,
    Lead,
    Mapping,
    Postback,
    PostbackStatus,
    Trigger,
    status_is_one_of,
)


@dataclass
class ReplaySelection:
    ids: Sequence[int] = ()
    lead_ref: str | None = None
    event_set: str | None = None  # name or TikTok ID
    event_set_id: int | None = None  # ours
    code: int | None = None
    statuses: Sequence[str] = field(default_factory=lambda: list(REPLAYABLE_STATUSES))
    since: datetime | None = None
    until: datetime | None = None

    def is_empty(self) -> bool:
        return not (
            self.ids
            or self.lead_ref
            or self.event_set
            or self.event_set_id is not None
            or self.code is not None
            or self.since
            or self.until
        )


def selected_event_set_id(session: Session, selection: ReplaySelection) -> int | None:
    """The event set the selection is limited to, if any (InputRejected if unknown)."""
    if selection.event_set_id is not None:
        if session.get(EventSet, selection.event_set_id) is None:
            raise InputRejected.one("event_set", f"no event set {selection.event_set_id}")
        return selection.event_set_id
    if selection.event_set:
        return get_event_set(session, selection.event_set).id
    return None


def _query(session: Session, selection: ReplaySelection) -> Select[int]:
    unknown = set(selection.statuses) - set(REPLAYABLE_STATUSES)
    if unknown:
        raise InputRejected.one(
            "status", f"only {', '.join(REPLAYABLE_STATUSES)} can be replayed, not {unknown}"
        )
    query = select(Postback.id).where(
        status_is_one_of(Postback.status, map(PostbackStatus, selection.statuses))
    )
    if selection.ids:
        query = query.where(Postback.id.in_(selection.ids))
    if selection.lead_ref:
        query = query.where(Postback.lead_ref == selection.lead_ref)
    event_set_id = selected_event_set_id(session, selection)
    if event_set_id is not None:
        query = query.where(Postback.event_set_id == event_set_id)
    if selection.code is not None:
        query = query.where(Postback.last_code == selection.code)
    if selection.since:
        query = query.where(Postback.created_at >= selection.since)
    if selection.until:
        query = query.where(Postback.created_at < selection.until)
    return query


def count_replayable(session: Session, selection: ReplaySelection) -> int:
    subquery = _query(session, selection).subquery()
    return session.scalar(select(func.count()).select_from(subquery)) or 0


def replayable_ids(session: Session, selection: ReplaySelection) -> list[int]:
    return list(session.scalars(_query(session, selection).order_by(Postback.id)))


def replay(session: Session, postback_ids: Sequence[int], now: datetime) -> list[int]:
    """Makes the rows due now; returns the ids re-queued (a row whose payload can no longer
    be built stays failed, with the reason)."""
    rows = session.scalars(
        select(Postback)
        .where(Postback.id.in_(postback_ids), Postback.status.in_(REPLAYABLE_STATUSES))
        .with_for_update(skip_locked=True, of=Postback)
    ).all()
    queued = []
    for row in rows:
        previous = f"{row.status}: {row.last_message or '-'}"
        try:
            row.payload = _rebuilt_payload(session, row)
        except ConsentWithdrawn as error:
            row.status, row.payload = PostbackStatus.CONSENT_WITHDRAWN, None
            row.last_message = f"replay not possible: {error}"
            continue
        except NoMatchKey as error:
            row.status, row.match_key_mask = PostbackStatus.NO_MATCH_KEY, int(error.mask)
            row.last_message = f"replay not possible: {error}"
            continue
        except ValueError as error:
            row.status = PostbackStatus.FAILED
            row.last_message = f"replay not possible: {error}"
            continue
        row.match_key_mask = int(match_key_mask(row.payload))
        row.status = PostbackStatus.PENDING
        row.attempts = 0
        row.replays += 1
        row.next_attempt_at = now
        row.lease_until = None
        row.last_message = f"replayed by an operator (was {previous})"[:2000]
        queued.append(row.id)
    return queued


def _rebuilt_payload(session: Session, row: Postback) -> dict[str, object]:
    if row.event_name is None or row.event_id is None:
        raise ValueError("an unmapped trigger has no event to send")
    trigger = session.get(Trigger, row.trigger_id)
    event_set = session.get(EventSet, row.event_set_id)
    lead = session.scalar(
        select(Lead).where(Lead.workspace_id == row.workspace_id, Lead.lead_ref == row.lead_ref)
    )
    if trigger is None or event_set is None or lead is None:
        raise ValueError("its trigger, event set or lead no longer exists")
    if lead.consent_withdrawn_at is not None:
        raise ConsentWithdrawn(consent_withdrawn_message(lead.consent_withdrawn_at))
    properties = dict((row.payload or {}).get("properties", {}))
    mapping = session.get(Mapping, row.mapping_id) if row.mapping_id else None
    if mapping is not None:
        rules = CompiledMapping.from_record(mapping).rules
        properties = build_properties(rules, trigger.attributes, event_set.default_currency)
    return build_event(
        event_source=event_set.event_source,
        lead_event_source=event_set.lead_event_source,
        lead=lead,
        event_name=row.event_name,
        event_id=row.event_id,
        occurred_at=trigger.occurred_at,
        properties=properties,
        limited_data_use=resolve_limited_data_use(
            trigger.limited_data_use, lead.limited_data_use, event_set.limited_data_use
        ),
    )


class ConsentWithdrawn(ValueError):
    """The postback's lead withdrew consent: it is never sent."""
