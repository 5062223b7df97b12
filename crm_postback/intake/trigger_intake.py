"""Accepting triggers: validate, hash, merge leads, store each trigger once (no commit here).

Set-based: a batch of any size costs a fixed handful of statements, not several per trigger.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from sqlalchemy import Boolean, bindparam, literal_column, or_, select, tuple_
from sqlalchemy.orm import Session

from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.settings import Settings
from crm_postback.intake.lead_keys import (
    WITHDRAWN_TRIGGER_WARNING,
    WITHDRAWN_WARNING,
    HashedKeys,
    hash_match_keys,
    merge_lead_keys,
)
from crm_postback.intake.trigger_schemas import TriggerIn
from models import EventSet, Lead, Trigger, TriggerStatus, utcnow
from models.bulk import bulk_insert
from models.workspace_scope import FILTERED_OPTION, workspace_of

UNKNOWN_EVENT_SET = "unknown event set: no event set has this name or TikTok event set ID"


class ScopedTrigger(NamedTuple):
    """A trigger and the event sets its sender may post to (None: every one of the
    workspace). An event set outside them is answered exactly as one that does not exist."""

    trigger: TriggerIn
    event_set_ids: Collection[int] | None = None
    strict: bool = False  # a bad match key refuses the trigger instead of being dropped


@dataclass(frozen=True)
class AcceptedTrigger:
    trigger_id: int
    duplicate: bool  # True when the idempotency key was seen before: nothing new to send
    # One per match key dropped because it did not normalise (never its value), and one when
    # the keys were not stored because the lead withdrew consent.
    warnings: tuple[FieldError, ...] = ()
    dropped_keys: tuple[str, ...] = ()  # the kinds dropped at the door (as triggers.dropped_keys)


def find_event_set(session: Session, reference: str) -> EventSet | None:
    """By our name or by the TikTok event set ID / pixel code, in the session's workspace."""
    return session.scalars(
        select(EventSet)
        .where(or_(EventSet.name == reference, EventSet.source_id == reference))
        .order_by(EventSet.id)
    ).first()


def occurrence_key(trigger: TriggerIn) -> str:
    if trigger.idempotency_key:
        return trigger.idempotency_key
    return f"{trigger.lead_id}|{trigger.type}|{trigger.occurred_at.isoformat()}"


def accept_triggers(
    session: Session, triggers: Sequence[ScopedTrigger], settings: Settings
) -> list[AcceptedTrigger | InputRejected]:
    """One answer per trigger, in order: accepted (maybe as a duplicate) or rejected. The
    session is scoped to the workspace the triggers are sent to."""
    workspace_id = workspace_of(session)
    outcomes: list[AcceptedTrigger | InputRejected | None] = [None] * len(triggers)
    event_sets = _event_set_ids(session, workspace_id, {t.trigger.event_set for t in triggers})
    keys_by_lead: dict[str, list[HashedKeys]] = {}
    rows: list[tuple[int, dict[str, object]]] = []
    warnings: dict[int, list[FieldError]] = {}
    dropped_by_index: dict[int, tuple[str, ...]] = {}
    keyed: dict[int, str] = {}  # trigger index -> the lead its keys are merged into
    for index, (trigger, allowed, strict) in enumerate(triggers):
        dropped: list[str] | None = None
        try:
            event_set_id = event_sets.get(trigger.event_set)
            if event_set_id is None or (allowed is not None and event_set_id not in allowed):
                # Not named: a caller's mistake here may be an email or phone number.
                raise InputRejected.one("event_set", UNKNOWN_EVENT_SET)
            if trigger.match_keys is not None:
                keys, dropped_warnings = hash_match_keys(
                    trigger.match_keys, settings.default_phone_region, strict=strict
                )
                if dropped_warnings:
                    warnings[index] = dropped_warnings
                if keys.dropped:
                    dropped = keys.dropped
                    dropped_by_index[index] = tuple(keys.dropped)
                if not keys.is_empty():
                    keys_by_lead.setdefault(trigger.lead_id, []).append(keys)
                    keyed[index] = trigger.lead_id
        except InputRejected as rejected:
            outcomes[index] = rejected
            continue
        rows.append(
            (
                index,
                {
                    "event_set_id": event_set_id,
                    "workspace_id": workspace_id,
                    "lead_ref": trigger.lead_id,
                    "trigger_type": trigger.type,
                    "occurred_at": trigger.occurred_at,
                    "attributes": dict(trigger.attributes),
                    "idempotency_key": occurrence_key(trigger),
                    "event_id": trigger.event_id,
                    "limited_data_use": trigger.limited_data_use,
                    "dropped_keys": dropped,
                    "status": TriggerStatus.RECEIVED,
                    "attempts": 0,
                },
            )
        )
    keys_refused = merge_lead_keys(session, workspace_id, keys_by_lead)
    for index, (accepted, lead_withdrew) in _insert_once(session, rows).items():
        if lead_withdrew:
            if keyed.get(index) in keys_refused:
                warnings.setdefault(index, []).append(WITHDRAWN_WARNING)
            warnings.setdefault(index, []).append(WITHDRAWN_TRIGGER_WARNING)
        outcomes[index] = replace(
            accepted,
            warnings=tuple(warnings.get(index, ())),
            dropped_keys=dropped_by_index.get(index, ()),
        )
    return [o for o in outcomes if o is not None]


_EVENT_SETS = EventSet.__table__
_TRIGGERS = Trigger.__table__
_LEADS = Lead.__table__
# Read with the trigger's own INSERT (and the read-back of a duplicate), so asking costs no
# statement of its own. The merge has locked the leads that came with keys; for the others a
# withdrawal committing just after is caught by the worker, which reads the lead again.
# SQLAlchemy does not correlate a subquery in RETURNING with the inserted table (it would add
# the table to the subquery's FROM), hence the text.
_LEAD_WITHDREW_CONSENT = literal_column(
    f"EXISTS (SELECT 1 FROM {_LEADS.name}"
    f" WHERE {_LEADS.name}.workspace_id = {_TRIGGERS.name}.workspace_id"
    f" AND {_LEADS.name}.lead_ref = {_TRIGGERS.name}.lead_ref"
    f" AND {_LEADS.name}.consent_withdrawn_at IS NOT NULL)",
    Boolean(),
).label("lead_withdrew_consent")
# Built once: constructing this statement per call cost more than running it.
_EVENT_SETS_BY_REFERENCE = (
    select(_EVENT_SETS.c.id, _EVENT_SETS.c.name, _EVENT_SETS.c.source_id)
    .where(
        _EVENT_SETS.c.workspace_id == bindparam("workspace_id"),
        or_(
            _EVENT_SETS.c.name.in_(bindparam("references", expanding=True)),
            _EVENT_SETS.c.source_id.in_(bindparam("references", expanding=True)),
        ),
    )
    .order_by(_EVENT_SETS.c.id.desc())
)


def _event_set_ids(session: Session, workspace_id: int, references: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for event_set in session.execute(
        _EVENT_SETS_BY_REFERENCE,
        {"references": list(references), "workspace_id": workspace_id},
        execution_options={FILTERED_OPTION: True},
    ):
        for reference in (event_set.source_id, event_set.name):
            if reference in references:
                found[reference] = event_set.id
    return found


def _insert_once(
    session: Session, rows: list[tuple[int, dict[str, object]]]
) -> dict[int, tuple[AcceptedTrigger, bool]]:
    """Inserts triggers whose (event set, idempotency key) is new; others map to the first.
    Each answer comes with whether the trigger's lead withdrew consent."""
    if not rows:
        return {}
    first_index: dict[tuple[object, object], int] = {}
    for index, row in rows:
        first_index.setdefault((row["event_set_id"], row["idempotency_key"]), index)
    fresh = [
        row
        for index, row in rows
        if first_index[(row["event_set_id"], row["idempotency_key"])] == index
    ]
    received_at = utcnow()
    stored = {
        (r.event_set_id, r.idempotency_key): r
        for r in bulk_insert(
            session,
            _TRIGGERS,
            [{**row, "received_at": received_at} for row in fresh],
            returning=(
                _TRIGGERS.c.id,
                _TRIGGERS.c.event_set_id,
                _TRIGGERS.c.idempotency_key,
                _LEAD_WITHDREW_CONSENT,
            ),
            ignore_conflicts=True,
        )
    }
    inserted = set(stored)
    missing = [key for key in first_index if key not in inserted]
    if missing:
        stored.update(
            ((r.event_set_id, r.idempotency_key), r)
            for r in session.execute(
                select(
                    Trigger.id,
                    Trigger.event_set_id,
                    Trigger.idempotency_key,
                    _LEAD_WITHDREW_CONSENT,
                ).where(tuple_(Trigger.event_set_id, Trigger.idempotency_key).in_(missing))
            )
        )
    answers: dict[int, tuple[AcceptedTrigger, bool]] = {}
    for index, row in rows:
        key = (row["event_set_id"], row["idempotency_key"])
        found = stored[key]
        duplicate = key not in inserted or first_index[key] != index
        answers[index] = (
            AcceptedTrigger(found.id, duplicate=duplicate),
            bool(found.lead_withdrew_consent),
        )
    return answers
