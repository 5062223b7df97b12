"""The queries behind a diagnostics report: one per section, each returning its typed result.

Read-only; in a session scoped to one workspace, every statement reads only its rows.
"In the window" means created (or delivered, or attempted) at or after `since`;
what is still waiting is counted at any age.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from crm_postback.core.errors import InputRejected
from crm_postback.operations.diagnostics_report import (
    DeliveredVolume,
    EnabledMappings,
    ErrorCode,
    EventSetState,
    MatchKeyCoverage,
    MissingAttributeCount,
    MissingAttributes,
    OpenEvents,
    OutboxStatuses,
    ReusedEventIds,
    TikTokErrors,
    UnmappedTriggers,
    UnmappedType,
    WaitingTriggers,
)
from crm_postback.operations.diagnostics_scope import in_workspace
from crm_postback.operations.postback_messages import EVENT_ID_TAKEN_NOTES
from crm_postback.operations.retention import has_body
from crm_postback.tiktok.response_outcomes import Outcome
from mappings.resolve import MissingAttribute, missing_attributes
from mappings.rules import PropertyRules
from models import (
    OPEN_STATUSES,
    OPEN_TRIGGER_STATUSES,
    DeliveryAttempt,
    EventSet,
    EventSetKind,
    Lead,
    Mapping,
    Postback,
    PostbackStatus,
    Trigger,
    TriggerStatus,
    status_is_one_of,
)
from models.workspace_scope import FILTERED

# Where each match key sits in an event (the data[] item as sent).
CRM_KEYS: dict[str, tuple[str, str]] = {
    "tiktok_lead_id": ("lead", "lead_id"),
    "ttclid": ("user", "ttclid"),
    "email": ("user", "email"),
    "phone": ("user", "phone"),
    "external_id": ("user", "external_id"),
}
WEB_KEYS: dict[str, tuple[str, str]] = {
    "ttclid": ("user", "ttclid"),
    "email": ("user", "email"),
    "phone": ("user", "phone"),
    "external_id": ("user", "external_id"),
    "ip": ("user", "ip"),
    "user_agent": ("user", "user_agent"),
    "ttp": ("user", "ttp"),
}
EXAMPLE_CHARS = 300  # of one of TikTok's (or the resolver's) messages
ATTRIBUTE_SAMPLE = 1000  # a mapping's most recent triggers read for missing attributes

_postbacks = Postback.__table__
_attempts = DeliveryAttempt.__table__
_triggers = Trigger.__table__
_leads = Lead.__table__
_mappings = Mapping.__table__
# Every Core statement here is limited to the session's workspace by `in_workspace` (FILTERED).


def event_set_state(session: Session, event_set_id: int) -> EventSetState:
    """Raises InputRejected for an unknown id, and for another workspace's (the session's
    filter does not find it): the same answer."""
    event_set = session.get(EventSet, event_set_id)
    if event_set is None:
        raise InputRejected.one("event_set", f"no event set with id {event_set_id}")
    return EventSetState(
        id=event_set.id,
        name=event_set.name,
        kind=event_set.kind,
        source_id=event_set.source_id,
        status=event_set.status,
        paused_reason=event_set.paused_reason,
        test_event_code=event_set.test_event_code,
    )


def enabled_mappings(session: Session, event_set_id: int) -> EnabledMappings:
    trigger_types = list(
        session.scalars(
            select(Mapping.trigger_type).where(
                Mapping.event_set_id == event_set_id, Mapping.enabled.is_(True)
            )
        )
    )
    return EnabledMappings(count=len(trigger_types), trigger_types=frozenset(trigger_types))


def outbox_statuses(session: Session, event_set_id: int, since: datetime) -> OutboxStatuses:
    rows = session.execute(
        select(_postbacks.c.status, func.count())
        .where(
            *in_workspace(session, _postbacks),
            _postbacks.c.event_set_id == event_set_id,
            _postbacks.c.created_at >= since,
        )
        .group_by(_postbacks.c.status),
        execution_options=FILTERED,
    ).all()
    return OutboxStatuses(by_status=dict(rows))


def match_key_coverage(
    session: Session, event_set_id: int, kind: str, since: datetime
) -> MatchKeyCoverage:
    """Over the events built in the window; a CRM set and a Pixel look for different keys."""
    keys = CRM_KEYS if kind == EventSetKind.CRM else WEB_KEYS
    dialect = session.get_bind().dialect.name
    columns = [func.count()] + [
        func.sum(case((_carries(dialect, path), 1), else_=0)) for path in keys.values()
    ]
    row = session.execute(
        select(*columns).where(
            *in_workspace(session, _postbacks),
            _postbacks.c.event_set_id == event_set_id,
            _postbacks.c.created_at >= since,
            has_body(dialect),
        ),
        execution_options=FILTERED,
    ).one()
    events = int(row[0] or 0)
    shares = {
        name: (int(count or 0) / events if events else 0.0)
        for name, count in zip(keys, row[1:], strict=True)
    }
    return MatchKeyCoverage(events=events, shares=shares)


def _carries(dialect: str, path: tuple[str, str]) -> ColumnElement[bool]:
    """SQL: the stored event has this key (empty keys are never sent, so present = usable)."""
    column = _postbacks.c.payload
    if dialect == "postgresql":
        return func.jsonb_extract_path(column, *path).isnot(None)
    return func.json_extract(column, "$." + ".".join(path)).isnot(None)


def delivered_volume(session: Session, event_set_id: int, since: datetime) -> DeliveredVolume:
    rows = session.execute(
        select(_postbacks.c.event_name, func.count())
        .where(
            *in_workspace(session, _postbacks),
            _postbacks.c.event_set_id == event_set_id,
            _postbacks.c.status == PostbackStatus.DELIVERED,
            _postbacks.c.delivered_at >= since,
        )
        .group_by(_postbacks.c.event_name)
        .order_by(func.count().desc()),
        execution_options=FILTERED,
    )
    return DeliveredVolume(by_event={name or "?": count for name, count in rows})


def tiktok_errors(session: Session, event_set_id: int, since: datetime) -> TikTokErrors:
    rows = session.execute(
        select(
            _attempts.c.code,
            _attempts.c.outcome,
            _attempts.c.http_status,
            func.count(),
            func.max(_attempts.c.message),
        )
        .join(_postbacks, _postbacks.c.id == _attempts.c.postback_id)
        .where(
            *in_workspace(session, _attempts, _postbacks),
            _postbacks.c.event_set_id == event_set_id,
            _attempts.c.attempted_at >= since,
            _attempts.c.outcome != Outcome.DELIVERED.value,
        )
        .group_by(_attempts.c.code, _attempts.c.outcome, _attempts.c.http_status)
        .order_by(func.count().desc()),
        execution_options=FILTERED,
    )
    return TikTokErrors(
        codes=tuple(
            ErrorCode(code, outcome, http_status, count, _example(example))
            for code, outcome, http_status, count, example in rows
        )
    )


def missing_property_attributes(
    session: Session, event_set_id: int, since: datetime
) -> MissingAttributes:
    """For each enabled mapping whose properties read attributes (`value_from`,
    `order_id_from`), how many of its latest ATTRIBUTE_SAMPLE triggers in the window (made at
    its current version) lacked each attribute, in one query for all of them. An erased
    lead's triggers (its lead row deleted, their attributes cleared) are left out: what they
    lack was erased on purpose."""
    mappings = session.execute(
        select(Mapping.id, Mapping.event_name, Mapping.properties)
        .where(Mapping.event_set_id == event_set_id, Mapping.enabled.is_(True))
        .order_by(Mapping.id)
    ).all()
    reading: list[tuple[Any, PropertyRules, tuple[MissingAttribute, ...]]] = []
    for mapping in mappings:
        try:
            rules = PropertyRules.model_validate(mapping.properties or {})
        except ValidationError:
            continue  # not a mapping the worker can use either; its events fail with a reason
        reads = missing_attributes(rules, {})  # every attribute the rules read
        if reads:
            reading.append((mapping, rules, reads))
    if not reading:
        return MissingAttributes(counts=())
    latest_first = (
        func.row_number()
        .over(partition_by=_postbacks.c.mapping_id, order_by=_postbacks.c.id.desc())
        .label("latest_first")
    )
    ranked = (
        select(_postbacks.c.mapping_id, _triggers.c.attributes, latest_first)
        .join(_triggers, _triggers.c.id == _postbacks.c.trigger_id)
        .join(
            _mappings,
            and_(
                _mappings.c.id == _postbacks.c.mapping_id,
                _mappings.c.version == _postbacks.c.mapping_version,
            ),
        )
        .where(
            *in_workspace(session, _postbacks, _triggers, _mappings),
            _postbacks.c.mapping_id.in_([mapping.id for mapping, _, _ in reading]),
            _postbacks.c.created_at >= since,
            # The trigger's lead: its lead id in its workspace.
            exists().where(
                _leads.c.workspace_id == _triggers.c.workspace_id,
                _leads.c.lead_ref == _triggers.c.lead_ref,
            ),
        )
        .subquery()
    )
    sampled: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for mapping_id, attributes in session.execute(
        select(ranked.c.mapping_id, ranked.c.attributes).where(
            ranked.c.latest_first <= ATTRIBUTE_SAMPLE
        ),
        execution_options=FILTERED,
    ):
        sampled[mapping_id].append(attributes or {})
    counts: list[MissingAttributeCount] = []
    for mapping, rules, reads in reading:
        lacking = [missing_attributes(rules, attributes) for attributes in sampled[mapping.id]]
        for read in reads:
            missing = sum(1 for found in lacking if read in found)
            if missing:
                counts.append(
                    MissingAttributeCount(
                        mapping.id,
                        mapping.event_name,
                        read.property,
                        read.attribute,
                        missing,
                        len(lacking),
                    )
                )
    return MissingAttributes(counts=tuple(counts))


def unmapped_triggers(
    session: Session, event_set_id: int, since: datetime, mapped_types: frozenset[str]
) -> UnmappedTriggers:
    """`mapped_types`: the trigger types enabled mappings exist for (their conditions failed)."""
    rows = session.execute(
        select(_triggers.c.trigger_type, func.count(), func.max(_postbacks.c.last_message))
        .join(_triggers, _triggers.c.id == _postbacks.c.trigger_id)
        .where(
            *in_workspace(session, _postbacks, _triggers),
            _postbacks.c.event_set_id == event_set_id,
            status_is_one_of(_postbacks.c.status, (PostbackStatus.UNMAPPED,)),
            _postbacks.c.created_at >= since,
        )
        .group_by(_triggers.c.trigger_type)
        .order_by(func.count().desc()),
        execution_options=FILTERED,
    )
    return UnmappedTriggers(
        types=tuple(
            UnmappedType(trigger_type, count, trigger_type in mapped_types, _example(example))
            for trigger_type, count, example in rows
        )
    )


def open_events(session: Session, event_set_id: int, now: datetime) -> OpenEvents:
    by_status: dict[str, int] = {}
    oldest: datetime | None = None
    for status, count, first in session.execute(
        select(_postbacks.c.status, func.count(), func.min(_postbacks.c.created_at))
        .where(
            *in_workspace(session, _postbacks),
            _postbacks.c.event_set_id == event_set_id,
            status_is_one_of(_postbacks.c.status, OPEN_STATUSES),
        )
        .group_by(_postbacks.c.status),
        execution_options=FILTERED,
    ):
        by_status[status] = count
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    return OpenEvents(
        by_status=by_status,
        oldest_at=oldest,
        oldest_age_seconds=_age(now, oldest),
    )


def reused_event_ids(
    session: Session, event_set_id: int, since: datetime, examples: int = 3
) -> ReusedEventIds:
    """Triggers received in the window with a caller event_id whose event was not stored
    because that id was taken (the worker's note in `error`), and the ids taken most often."""
    taken = or_(*(_triggers.c.error.contains(note) for note in EVENT_ID_TAKEN_NOTES))
    rows = session.execute(
        select(_triggers.c.event_id, func.count())
        .where(
            *in_workspace(session, _triggers),
            _triggers.c.event_set_id == event_set_id,
            _triggers.c.received_at >= since,
            _triggers.c.event_id.is_not(None),
            taken,
        )
        .group_by(_triggers.c.event_id)
        .order_by(func.count().desc(), _triggers.c.event_id),
        execution_options=FILTERED,
    ).all()
    return ReusedEventIds(
        triggers=sum(int(count) for _, count in rows),
        distinct_ids=len(rows),
        most_taken=[(str(event_id), int(count)) for event_id, count in rows[:examples]],
    )


def waiting_triggers(session: Session, event_set_id: int, now: datetime) -> WaitingTriggers:
    by_status: dict[str, int] = {}
    oldest_received: datetime | None = None
    for status, count, first in session.execute(
        select(_triggers.c.status, func.count(), func.min(_triggers.c.received_at))
        .where(
            *in_workspace(session, _triggers),
            _triggers.c.event_set_id == event_set_id,
            status_is_one_of(_triggers.c.status, OPEN_TRIGGER_STATUSES),
        )
        .group_by(_triggers.c.status),
        execution_options=FILTERED,
    ):
        by_status[status] = count
        if status == TriggerStatus.RECEIVED:
            oldest_received = first
    return WaitingTriggers(
        by_status=by_status, oldest_received_age_seconds=_age(now, oldest_received)
    )


def _example(message: Any) -> str:
    return (message or "")[:EXAMPLE_CHARS]


def _age(now: datetime, then: datetime | None) -> float | None:
    # min() over a UTCDateTime column comes back through its type: aware on every backend.
    return (now - then).total_seconds() if then else None
