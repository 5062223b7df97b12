"""Accepting triggers: validate, hash, merge leads, store each trigger once (no commit here).

Set-based: a batch of any size costs a fixed handful of statements, not several per trigger.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Boolean, Integer, Text, bindparam, literal_column, or_, select, text, tuple_
from sqlalchemy.orm import Session

from crm_postback.core import jsontext
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
from models.bulk import bulk_insert, is_postgres
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
    session is scoped to the workspace the triggers are sent to.

    The triggers are stored first, their event sets resolved by the INSERT itself on
    PostgreSQL; then the match keys of those stored (or found stored) are merged into their
    leads. A trigger whose event set is unknown stores nothing, keys included."""
    workspace_id = workspace_of(session)
    outcomes: list[AcceptedTrigger | InputRejected | None] = [None] * len(triggers)
    hashed: dict[int, HashedKeys] = {}
    warnings: dict[int, list[FieldError]] = {}
    dropped_by_index: dict[int, tuple[str, ...]] = {}
    keys_refused: dict[int, InputRejected] = {}  # strict: a bad key refuses its trigger
    rows: list[tuple[int, dict[str, object]]] = []
    for index, (trigger, _allowed, strict) in enumerate(triggers):
        dropped: list[str] | None = None
        if trigger.match_keys is not None:
            try:
                keys, dropped_warnings = hash_match_keys(
                    trigger.match_keys, settings.default_phone_region, strict=strict
                )
            except InputRejected as rejected:
                keys_refused[index] = rejected
                continue
            if dropped_warnings:
                warnings[index] = dropped_warnings
            if keys.dropped:
                dropped = keys.dropped
                dropped_by_index[index] = tuple(keys.dropped)
            if not keys.is_empty():
                hashed[index] = keys
        rows.append(
            (
                index,
                {
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
    if is_postgres(session):
        stored = _insert_resolving_event_sets(session, workspace_id, triggers, rows)
    else:
        stored = _resolve_then_insert(session, workspace_id, triggers, rows)
    if keys_refused:
        # The event set is checked before the keys: an unknown one is the answer even then.
        known = _event_set_ids(
            session, workspace_id, {triggers[index].trigger.event_set for index in keys_refused}
        )
        for index, refusal in keys_refused.items():
            trigger, allowed, _ = triggers[index]
            outcomes[index] = (
                refusal if _permitted(known.get(trigger.event_set), allowed) else _unknown()
            )
    keys_by_lead: dict[str, list[HashedKeys]] = {}
    for index, keys in hashed.items():
        if index in stored:
            keys_by_lead.setdefault(triggers[index].trigger.lead_id, []).append(keys)
    withdrew_meanwhile = merge_lead_keys(session, workspace_id, keys_by_lead)
    for index, _ in rows:
        answer = stored.get(index)
        if answer is None:
            # Not named: a caller's mistake here may be an email or phone number.
            outcomes[index] = _unknown()
            continue
        accepted, lead_withdrew = answer
        keyed_lead_withdrew = index in hashed and triggers[index].trigger.lead_id in (
            withdrew_meanwhile
        )
        if keyed_lead_withdrew:
            warnings.setdefault(index, []).append(WITHDRAWN_WARNING)
        if lead_withdrew or keyed_lead_withdrew:
            warnings.setdefault(index, []).append(WITHDRAWN_TRIGGER_WARNING)
        outcomes[index] = replace(
            accepted,
            warnings=tuple(warnings.get(index, ())),
            dropped_keys=dropped_by_index.get(index, ()),
        )
    return [o for o in outcomes if o is not None]


def _unknown() -> InputRejected:
    return InputRejected.one("event_set", UNKNOWN_EVENT_SET)


def _permitted(event_set_id: int | None, allowed: Collection[int] | None) -> bool:
    return event_set_id is not None and (allowed is None or event_set_id in allowed)


def _resolve_then_insert(
    session: Session,
    workspace_id: int,
    triggers: Sequence[ScopedTrigger],
    rows: list[tuple[int, dict[str, object]]],
) -> dict[int, tuple[AcceptedTrigger, bool]]:
    """The portable form: the event sets looked up, then the triggers inserted."""
    resolved = [
        (index, {"event_set_id": event_set_id, **row})
        for index, event_set_id, row in _permitted_event_sets(session, workspace_id, triggers, rows)
    ]
    return _insert_once(session, resolved)


def _permitted_event_sets(
    session: Session,
    workspace_id: int,
    triggers: Sequence[ScopedTrigger],
    rows: list[tuple[int, dict[str, object]]],
) -> Iterator[tuple[int, int, dict[str, object]]]:
    """(index, event set id, row) for each row whose event set exists and the caller may use."""
    event_sets = _event_set_ids(
        session, workspace_id, {triggers[index].trigger.event_set for index, _ in rows}
    )
    for index, row in rows:
        trigger, allowed, _ = triggers[index]
        event_set_id = event_sets.get(trigger.event_set)
        if event_set_id is not None and _permitted(event_set_id, allowed):
            yield index, event_set_id, row


_EVENT_SETS = EventSet.__table__
_TRIGGERS = Trigger.__table__
_LEADS = Lead.__table__
# Read with the trigger's own INSERT (and the read-back of a duplicate), so asking costs no
# statement of its own. The merge has locked the leads that came with keys; for the others a
# withdrawal committing just after is caught by the worker, which reads the lead again.
# SQLAlchemy does not correlate a subquery in RETURNING with the inserted table (it would add
# the table to the subquery's FROM), hence the text.
_LEAD_WITHDREW_EXISTS = (
    f"EXISTS (SELECT 1 FROM {_LEADS.name}"
    f" WHERE {_LEADS.name}.workspace_id = {_TRIGGERS.name}.workspace_id"
    f" AND {_LEADS.name}.lead_ref = {_TRIGGERS.name}.lead_ref"
    f" AND {_LEADS.name}.consent_withdrawn_at IS NOT NULL)"
)
_LEAD_WITHDREW_CONSENT = literal_column(_LEAD_WITHDREW_EXISTS, Boolean()).label(
    "lead_withdrew_consent"
)
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


# PostgreSQL: the INSERT looks up each trigger's event set itself (the lowest id whose name or
# TikTok ID it names, as `_event_set_ids`) and inserts the triggers whose event set is known
# and permitted to the sender. The rows come as one JSON document: one text for any number of
# rows, which psycopg prepares once per connection, and whose row count the planner cannot
# see in any execution, so PostgreSQL keeps one generic plan instead of planning every call
# (an array's length it sees, and it planned each one anew). The withdrawn-consent check is
# a scalar subquery, a lookup by the leads' unique key per row, which is never hashed.
_INSERT_RESOLVING_EVENT_SETS = text(
    f"""
INSERT INTO {_TRIGGERS.name} (
    event_set_id, workspace_id, lead_ref, trigger_type, occurred_at, attributes,
    idempotency_key, event_id, limited_data_use, dropped_keys, status, attempts, received_at
)
SELECT matched.id, :workspace_id, given.lead_ref, given.trigger_type, given.occurred_at,
    given.attributes, given.idempotency_key, given.event_id, given.limited_data_use,
    given.dropped_keys, :status, 0, :received_at
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS given(
    position integer, reference text, allowed bigint[], lead_ref text, trigger_type text,
    occurred_at timestamptz, attributes jsonb, idempotency_key text, event_id text,
    limited_data_use boolean, dropped_keys jsonb
)
CROSS JOIN LATERAL (
    SELECT {_EVENT_SETS.name}.id FROM {_EVENT_SETS.name}
    WHERE {_EVENT_SETS.name}.workspace_id = :workspace_id
        AND ({_EVENT_SETS.name}.name = given.reference
            OR {_EVENT_SETS.name}.source_id = given.reference)
    ORDER BY {_EVENT_SETS.name}.id LIMIT 1
) AS matched
WHERE given.allowed IS NULL OR matched.id = ANY(given.allowed)
ORDER BY given.position
ON CONFLICT DO NOTHING
RETURNING {_TRIGGERS.name}.id, {_TRIGGERS.name}.event_set_id,
    {_TRIGGERS.name}.idempotency_key, coalesce((
        SELECT {_LEADS.name}.consent_withdrawn_at IS NOT NULL FROM {_LEADS.name}
        WHERE {_LEADS.name}.workspace_id = {_TRIGGERS.name}.workspace_id
            AND {_LEADS.name}.lead_ref = {_TRIGGERS.name}.lead_ref
    ), false) AS lead_withdrew_consent
"""
).bindparams(
    bindparam("rows", type_=Text()),
    bindparam("workspace_id", type_=Integer()),
    bindparam("status", type_=_TRIGGERS.c.status.type),
    bindparam("received_at", type_=_TRIGGERS.c.received_at.type),
)


def _insert_resolving_event_sets(
    session: Session,
    workspace_id: int,
    triggers: Sequence[ScopedTrigger],
    rows: list[tuple[int, dict[str, object]]],
) -> dict[int, tuple[AcceptedTrigger, bool]]:
    """`_INSERT_RESOLVING_EVENT_SETS`; the answer of each trigger stored or found stored (a
    trigger missing from it has no event set it may post to).

    A returned row is matched back by its idempotency key when only one trigger of the call
    has that key. The others (a key taken before, an unknown event set, one key sent to two
    event sets) have their event sets looked up and are answered as `_insert_once` does."""
    if not rows:
        return {}
    inserted = {
        (r.event_set_id, r.idempotency_key): r
        for r in session.execute(
            _INSERT_RESOLVING_EVENT_SETS,
            {
                "rows": jsontext.dumps(
                    [
                        {
                            "position": position,
                            "reference": triggers[index].trigger.event_set,
                            "allowed": _allowed(triggers[index].event_set_ids),
                            "lead_ref": row["lead_ref"],
                            "trigger_type": row["trigger_type"],
                            "occurred_at": _iso(row["occurred_at"]),
                            "attributes": row["attributes"],
                            "idempotency_key": row["idempotency_key"],
                            "event_id": row["event_id"],
                            "limited_data_use": row["limited_data_use"],
                            "dropped_keys": row["dropped_keys"],
                        }
                        for position, (index, row) in enumerate(rows)
                    ]
                ),
                "workspace_id": workspace_id,
                "status": TriggerStatus.RECEIVED,
                "received_at": utcnow(),
            },
            execution_options={FILTERED_OPTION: True},
        )
    }
    by_key: dict[object, list[tuple[int, object]]] = {}
    for event_set_id, key in inserted:
        by_key.setdefault(key, []).append((event_set_id, key))
    sent: dict[object, int] = {}
    for _, row in rows:
        sent[row["idempotency_key"]] = sent.get(row["idempotency_key"], 0) + 1
    answers: dict[int, tuple[AcceptedTrigger, bool]] = {}
    unmatched: list[tuple[int, dict[str, object]]] = []
    for index, row in rows:
        key = row["idempotency_key"]
        matches = by_key.get(key, [])
        if sent[key] == 1 and len(matches) == 1:
            found = inserted[matches[0]]
            answers[index] = (
                AcceptedTrigger(found.id, duplicate=False),
                found.lead_withdrew_consent,
            )
        else:
            unmatched.append((index, row))
    if not unmatched:
        return answers
    resolved = [
        (index, (event_set_id, row["idempotency_key"]))
        for index, event_set_id, row in _permitted_event_sets(
            session, workspace_id, triggers, unmatched
        )
    ]
    taken = sorted({key for _, key in resolved if key not in inserted}, key=str)
    stored = dict(_stored(session, taken)) if taken else {}
    first: set[tuple[int, object]] = set()
    for index, key in resolved:
        if key in inserted:
            found = inserted[key]
            answers[index] = (
                AcceptedTrigger(found.id, duplicate=key in first),
                bool(found.lead_withdrew_consent),
            )
        elif key in stored:
            trigger_id, withdrew = stored[key]
            answers[index] = (AcceptedTrigger(trigger_id, duplicate=True), withdrew)
        # Else an event set was created or renamed between the INSERT and this lookup: the
        # trigger is answered as naming no event set (its own item only, never the batch).
        first.add(key)
    return answers


def _allowed(event_set_ids: Collection[int] | None) -> list[int] | None:
    return None if event_set_ids is None else list(event_set_ids)


def _iso(value: object) -> str:
    assert isinstance(value, datetime)
    return value.isoformat()


def _stored(
    session: Session, keys: list[tuple[int, object]]
) -> Iterator[tuple[tuple[int, object], tuple[int, bool]]]:
    """The triggers already stored under these (event set, idempotency key)s."""
    for r in session.execute(
        select(
            Trigger.id, Trigger.event_set_id, Trigger.idempotency_key, _LEAD_WITHDREW_CONSENT
        ).where(tuple_(Trigger.event_set_id, Trigger.idempotency_key).in_(keys))
    ):
        yield (r.event_set_id, r.idempotency_key), (r.id, bool(r.lead_withdrew_consent))


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
