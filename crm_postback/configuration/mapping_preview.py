"""The exact request TikTok would receive for a lead and a trigger, without storing anything.

Uses the same code as the worker: `mappings.resolve` picks the events, `tiktok.events_payload`
builds them, with the event set's envelope. A mapping that is not saved yet (a draft from the edit
form) can take the place of the saved one, or be added, so an admin sees what a change does
before saving it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.configuration.mapping_service import (
    event_name_warnings,
    list_mappings,
    validate_mapping,
)
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.settings import Settings
from crm_postback.intake.lead_keys import LEAD_KEY_COLUMNS, hash_match_keys, merge_keys
from crm_postback.intake.trigger_intake import occurrence_key
from crm_postback.intake.trigger_schemas import parse_trigger
from crm_postback.tiktok.events_payload import (
    NoMatchKey,
    build_event,
    build_request,
    make_event_id,
    resolve_limited_data_use,
)
from mappings.resolve import CompiledMapping, explain_unmapped, resolve
from mappings.rules import Condition
from models import EventSet, EventSetStatus, Lead, Trigger


@dataclass(frozen=True)
class DraftMapping:
    """A mapping as edited, not saved. `replaces` is the id of the saved one it edits."""

    trigger_type: str
    event_name: str
    conditions: list[dict[str, Any]] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    replaces: int | None = None


@dataclass
class PreviewEvent:
    event_name: str
    mapping_id: int | None  # None: the unsaved draft
    mapping_version: int | None
    event: dict[str, Any] | None  # the data[] item, when it can be built
    error: str | None  # why it would fail instead of being sent
    draft: bool = False


@dataclass
class MappingCheck:
    """One mapping of the trigger's type, and whether its conditions hold."""

    mapping_id: int | None
    event_name: str
    matched: bool
    failed_conditions: list[str]
    draft: bool = False
    enabled: bool = True


@dataclass
class Preview:
    event_set: str
    trigger_type: str
    lead_ref: str
    occurred_at: datetime
    attributes: dict[str, Any]
    lead_known: bool
    events: list[PreviewEvent]
    checks: list[MappingCheck]
    request: dict[str, Any] | None  # exactly what would be POSTed to /event/track/
    unmapped: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_set": self.event_set,
            "trigger_type": self.trigger_type,
            "lead_id": self.lead_ref,
            "occurred_at": self.occurred_at.isoformat(),
            "attributes": self.attributes,
            "lead_known": self.lead_known,
            "request": self.request,
            "events": [vars(e) for e in self.events],
            "checks": [vars(c) for c in self.checks],
            "unmapped": self.unmapped,
            "notes": self.notes,
        }


@dataclass
class _Record:
    """A mapping row's shape, for drafts (CompiledMapping.from_record reads these)."""

    id: int
    trigger_type: str
    event_name: str
    conditions: list[dict[str, Any]]
    properties: dict[str, Any]
    enabled: bool
    version: int


def _candidate_records(
    session: Session, event_set: EventSet, draft: DraftMapping | None
) -> tuple[list[_Record], int | None]:
    saved = list_mappings(session, event_set)
    records = [
        _Record(
            m.id, m.trigger_type, m.event_name, m.conditions, m.properties, m.enabled, m.version
        )
        for m in saved
    ]
    if draft is None:
        return records, None
    current = next((r for r in records if r.id == draft.replaces), None)
    if draft.replaces is not None and current is None:
        raise InputRejected.one("mapping_id", f"no mapping {draft.replaces} on this event set")
    trigger_type, event_name, conditions, properties = validate_mapping(
        draft.trigger_type,
        draft.event_name,
        draft.conditions,
        draft.properties,
        kind=event_set.kind,
        kept_name=current.event_name if current is not None else None,
    )
    if current is not None:
        records.remove(current)
        draft_id, version = current.id, current.version + 1
    else:
        draft_id, version = max((r.id for r in records), default=0) + 1, 1
    records.append(
        _Record(draft_id, trigger_type, event_name, conditions, properties, draft.enabled, version)
    )
    return records, draft_id


def _lead_keys(
    session: Session, workspace_id: int, lead_ref: str, match_keys: Any, settings: Settings
) -> tuple[Lead | None, list[FieldError]]:
    """The lead the events would be built from: the stored one (of the event set's workspace
    only) with the sample's keys merged over it, and a warning per key the door would drop."""
    stored = session.scalar(
        select(Lead).where(Lead.workspace_id == workspace_id, Lead.lead_ref == lead_ref)
    )
    lead = Lead(lead_ref=lead_ref, email_hashes=[], phone_hashes=[], external_id_hashes=[])
    if stored is not None:
        for name in (*LEAD_KEY_COLUMNS, "consent_withdrawn_at"):
            value = getattr(stored, name)
            setattr(lead, name, list(value or []) if name.endswith("_hashes") else value)
    if match_keys is None:
        return (lead if stored is not None else None), []
    keys, dropped = hash_match_keys(match_keys, settings.default_phone_region)
    merge_keys(lead, keys)
    return lead, dropped


def preview(
    session: Session,
    settings: Settings,
    event_set: EventSet,
    *,
    trigger: dict[str, Any] | None = None,
    trigger_id: int | None = None,
    draft: DraftMapping | None = None,
    now: datetime | None = None,
) -> Preview:
    """`trigger` is a trigger as a routing system sends it (lead_id, type, occurred_at,
    attributes, optional match_keys: hashed here, merged over the stored lead's keys, never
    stored); `trigger_id` picks a stored trigger instead. Raises InputRejected."""
    now = now or datetime.now(UTC)
    if trigger_id is not None:
        row = session.get(Trigger, trigger_id)
        if row is None or row.workspace_id != event_set.workspace_id:
            raise InputRejected.one("trigger_id", f"no trigger {trigger_id}")
        trigger_type, lead_ref, occurred_at = row.trigger_type, row.lead_ref, row.occurred_at
        attributes, key, match_keys = dict(row.attributes), row.idempotency_key, None
        caller_event_id, trigger_limited_data_use = row.event_id, row.limited_data_use
    elif trigger is not None:
        document = {"occurred_at": now.isoformat(), **trigger, "event_set": event_set.name}
        try:
            parsed = parse_trigger(document)
        except ValidationError as error:
            raise InputRejected.from_validation(error, "trigger.") from None
        trigger_type, lead_ref, occurred_at = parsed.type, parsed.lead_id, parsed.occurred_at
        attributes, key = dict(parsed.attributes), occurrence_key(parsed)
        match_keys = parsed.match_keys
        caller_event_id, trigger_limited_data_use = parsed.event_id, parsed.limited_data_use
    else:
        raise InputRejected.one("trigger", "give a trigger (type, lead_id, ...) or a trigger_id")

    records, draft_id = _candidate_records(session, event_set, draft)
    compiled = [
        CompiledMapping.from_record(r) for r in sorted(records, key=lambda r: r.id) if r.enabled
    ]
    lead, dropped = _lead_keys(session, event_set.workspace_id, lead_ref, match_keys, settings)
    result = Preview(
        event_set=event_set.name,
        trigger_type=trigger_type,
        lead_ref=lead_ref,
        occurred_at=occurred_at,
        attributes=attributes,
        lead_known=lead is not None,
        events=[],
        checks=_checks(records, trigger_type, attributes, draft_id),
        request=None,
    )
    result.notes.extend(f"{warning.field}: {warning.message}" for warning in dropped)
    if lead is not None and lead.consent_withdrawn_at is not None:
        result.notes.append(
            f"lead {lead_ref!r} withdrew consent: its postbacks would end consent_withdrawn, unsent"
        )
    if event_set.status == EventSetStatus.PAUSED:
        result.notes.append(
            f"the event set is paused ({event_set.paused_reason or 'no reason given'}): "
            "postbacks would be held until it is resumed"
        )
    max_age_days = settings.event_age_limit_days(
        event_set.event_source, event_set.max_event_age_days
    )
    if now - occurred_at > timedelta(days=max_age_days):
        result.notes.append(
            f"occurred_at is older than {max_age_days:g} days: "
            "the postback would end expired, unsent"
        )
    if event_set.test_event_code:
        result.notes.append(
            f"test_event_code {event_set.test_event_code!r} is on: TikTok shows these events "
            "in Test Events only (sent one per request)"
        )
    if draft is not None and not draft.enabled:
        result.notes.append("the edited mapping is disabled: it produces no event")
    if draft is not None:
        result.notes.extend(
            f"the edited mapping: {w.message}"
            for w in event_name_warnings(draft.event_name.strip(), event_set.kind)
        )

    resolved = resolve(trigger_type, attributes, compiled, event_set.default_currency)
    if not resolved:
        result.unmapped = explain_unmapped(trigger_type, compiled)
        return result
    built: list[dict[str, Any]] = []
    for item in resolved:
        event_id = caller_event_id or make_event_id(event_set.id, key, item.event_name)
        event: dict[str, Any] | None = None
        problem = item.error
        is_draft = item.mapping_id == draft_id
        result.notes.extend(item.explain_missing("the edited mapping" if is_draft else None))
        if problem is None and lead is None:
            problem = (
                f"lead_id: no lead {lead_ref!r} is stored and the trigger has no match keys: "
                "the trigger would wait for the lead"
            )
        if problem is None:
            assert lead is not None
            try:
                event = build_event(
                    event_source=event_set.event_source,
                    lead_event_source=event_set.lead_event_source,
                    lead=lead,
                    event_name=item.event_name,
                    event_id=event_id,
                    occurred_at=occurred_at,
                    properties=item.properties,
                    limited_data_use=resolve_limited_data_use(
                        trigger_limited_data_use,
                        lead.limited_data_use,
                        event_set.limited_data_use,
                    ),
                )
            except (ValueError, NoMatchKey) as failure:
                problem = str(failure)
        result.events.append(
            PreviewEvent(
                event_name=item.event_name,
                mapping_id=None
                if is_draft and draft and draft.replaces is None
                else item.mapping_id,
                mapping_version=item.mapping_version,
                event=event,
                error=problem,
                draft=is_draft,
            )
        )
        if event is not None:
            built.append(event)
    if built:
        result.request = build_request(
            event_source=event_set.event_source,
            event_source_id=event_set.source_id,
            events=built,
            test_event_code=event_set.test_event_code,
        )
    return result


def _checks(
    records: list[_Record], trigger_type: str, attributes: dict[str, Any], draft_id: int | None
) -> list[MappingCheck]:
    checks = []
    for record in sorted(records, key=lambda r: r.id):
        if record.trigger_type != trigger_type:
            continue
        conditions = [Condition.model_validate(c) for c in record.conditions]
        failed = [c.describe() for c in conditions if not c.matches(attributes)]
        checks.append(
            MappingCheck(
                mapping_id=record.id,
                event_name=record.event_name,
                matched=record.enabled and not failed,
                failed_conditions=failed,
                draft=record.id == draft_id,
                enabled=record.enabled,
            )
        )
    return checks
