"""Mapping administration (no commit here: `commands.manage_mappings` commits).

Every change records its audit entry in the caller's transaction, as the `actor` it is given.
A mapping and its entries belong to its event set's workspace.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.configuration import audit
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.intake.trigger_schemas import UNSTORABLE_MESSAGE, unstorable_paths
from mappings.rules import Condition, PropertyRules
from mappings.validation import (
    MappingError,
    event_name_warning,
    validate_event_name,
    validate_trigger_type,
)
from models import EventSet, Mapping

MAX_CONDITIONS = 100
MAX_VALUES = 1000  # in one `in` / `not in` list


def _not_finite(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, float) and not math.isfinite(node):
        yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _not_finite(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _not_finite(value, f"{path}.{index}")


def _storable(conditions: list[dict[str, Any]], properties: dict[str, Any]) -> None:
    """What JSONB on PostgreSQL (and the JSON sent to TikTok) can hold: no NaN or infinity
    (YAML and form fields can write them), no NUL or lone surrogate in any text."""
    errors = [
        FieldError(f"when.{i}.value", f"at most {MAX_VALUES} values in one list")
        for i, condition in enumerate(conditions)
        if isinstance(condition.get("value"), list) and len(condition["value"]) > MAX_VALUES
    ]
    for name, document in (("when", conditions), ("properties", properties)):
        for path in _not_finite(document, name):
            errors.append(FieldError(path, "must be a finite number"))
        for parts in unstorable_paths(document):
            where = ".".join([name, *(str(p) for p in parts)]) if parts else name
            errors.append(FieldError(where if "@" not in where else name, UNSTORABLE_MESSAGE))
    if errors:
        raise InputRejected(errors[:20])


def checked_event_name(event_name: str, kind: str | None, *, kept: str | None = None) -> str:
    """The name as saved for an event set of `kind`, or InputRejected. `kept` is the name the
    mapping has now: a name saved before today's rules (a non-English name on a Pixel) stays
    as long as it is not changed, so the mapping can still be edited, disabled or exported
    and imported back (`event_name_warnings` says it should be renamed)."""
    try:
        return validate_event_name(event_name, kind)
    except MappingError as error:
        if kept is not None and event_name.strip() == kept:
            return kept
        raise InputRejected.one(error.field, error.reason) from None


def event_name_warnings(event_name: str, kind: str | None) -> list[FieldError]:
    """What saving `event_name` on an event set of `kind` should say besides "saved": a
    legacy name on a CRM event set, or a name kept from before that its kind now refuses."""
    warning = event_name_warning(event_name, kind)
    if warning is not None:
        return [FieldError("event", warning)]
    try:
        validate_event_name(event_name, kind)
    except MappingError as error:
        return [FieldError("event", f"{error.reason} (kept as saved before this rule; rename it)")]
    return []


def _checked(
    trigger_type: str,
    event_name: str,
    conditions: Sequence[Condition | dict[str, Any]],
    properties: PropertyRules | dict[str, Any],
    kind: str | None,
    kept_name: str | None = None,
) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    try:
        trigger_type = validate_trigger_type(trigger_type)
    except MappingError as error:
        raise InputRejected.one(error.field, error.reason) from None
    event_name = checked_event_name(event_name, kind, kept=kept_name)
    if len(conditions) > MAX_CONDITIONS:
        raise InputRejected.one("when", f"at most {MAX_CONDITIONS} conditions in one mapping")
    try:
        parsed_conditions = [
            c if isinstance(c, Condition) else Condition.model_validate(c) for c in conditions
        ]
        rules = (
            properties
            if isinstance(properties, PropertyRules)
            else PropertyRules.model_validate(properties)
        )
    except ValidationError as error:
        raise InputRejected.from_validation(error) from None
    dumped = [c.model_dump(exclude_none=False) for c in parsed_conditions]
    stored = rules.model_dump(exclude_defaults=True)
    _storable(dumped, stored)
    return trigger_type, event_name, dumped, stored


def validate_mapping(
    trigger_type: str,
    event_name: str,
    conditions: Sequence[Condition | dict[str, Any]],
    properties: PropertyRules | dict[str, Any],
    *,
    kind: str | None,
    kept_name: str | None = None,
) -> tuple[str, str, list[dict[str, Any]], dict[str, Any]]:
    """What `add_mapping` would store (trigger, event, conditions, properties) on an event set
    of `kind`, or InputRejected: for previews of a mapping that is not saved. `kind` None:
    the checks every kind shares (see `validate_event_name`); `kept_name`: see
    `checked_event_name`."""
    return _checked(trigger_type, event_name, list(conditions), properties, kind, kept_name)


def add_mapping(
    session: Session,
    event_set: EventSet,
    *,
    trigger_type: str,
    event_name: str,
    conditions: Sequence[Condition | dict[str, Any]] = (),
    properties: PropertyRules | dict[str, Any] | None = None,
    enabled: bool = True,
    actor: str,
) -> Mapping:
    trigger_type, event_name, checked_conditions, rules = _checked(
        trigger_type, event_name, list(conditions), properties or {}, event_set.kind
    )
    mapping = Mapping(
        workspace_id=event_set.workspace_id,
        event_set_id=event_set.id,
        trigger_type=trigger_type,
        event_name=event_name,
        conditions=checked_conditions,
        properties=rules,
        enabled=enabled,
        version=1,
    )
    session.add(mapping)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="mapping.create",
        entity_type="mapping",
        entity_id=mapping.id,
        event_set_id=event_set.id,
        after=audit.mapping_snapshot(mapping),
        workspace_id=event_set.workspace_id,
    )
    return mapping


def update_mapping(
    session: Session,
    mapping: Mapping,
    *,
    trigger_type: str | None = None,
    event_name: str | None = None,
    conditions: Sequence[Condition | dict[str, Any]] | None = None,
    properties: PropertyRules | dict[str, Any] | None = None,
    enabled: bool | None = None,
    actor: str,
) -> Mapping:
    """Saves what changed and bumps the version; an edit that changes nothing is a no-op.
    The event name is checked for the event set's kind; one it refuses that the mapping
    already has is kept (see `checked_event_name`)."""
    before = audit.mapping_snapshot(mapping)
    owner = session.get(EventSet, mapping.event_set_id)
    checked = _checked(
        trigger_type or mapping.trigger_type,
        event_name or mapping.event_name,
        list(conditions) if conditions is not None else mapping.conditions,
        properties if properties is not None else mapping.properties,
        owner.kind if owner is not None else None,
        kept_name=mapping.event_name,
    )
    unchanged = checked == (
        mapping.trigger_type,
        mapping.event_name,
        mapping.conditions,
        mapping.properties,
    ) and (enabled is None or enabled == mapping.enabled)
    if unchanged:
        return mapping
    mapping.trigger_type, mapping.event_name, mapping.conditions, mapping.properties = checked
    if enabled is not None:
        mapping.enabled = enabled
    mapping.version += 1
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="mapping.update",
        entity_type="mapping",
        entity_id=mapping.id,
        event_set_id=mapping.event_set_id,
        before=before,
        after=audit.mapping_snapshot(mapping),
        workspace_id=mapping.workspace_id,
    )
    return mapping


def delete_mapping(session: Session, mapping: Mapping, *, actor: str) -> None:
    """Postbacks the mapping already produced are kept (their mapping_id becomes NULL) and
    still delivered; the audit entry keeps what the mapping was."""
    audit.record(
        session,
        actor=actor,
        action="mapping.delete",
        entity_type="mapping",
        entity_id=mapping.id,
        event_set_id=mapping.event_set_id,
        before=audit.mapping_snapshot(mapping),
        workspace_id=mapping.workspace_id,
    )
    session.delete(mapping)
    session.flush()


def list_mappings(session: Session, event_set: EventSet) -> list[Mapping]:
    return list(
        session.scalars(
            select(Mapping)
            .where(Mapping.event_set_id == event_set.id)
            .order_by(Mapping.trigger_type, Mapping.id)
        )
    )


def describe_mapping(mapping: Mapping) -> str:
    conditions = " and ".join(Condition.model_validate(c).describe() for c in mapping.conditions)
    rules = PropertyRules.model_validate(mapping.properties)
    parts = [f"{mapping.trigger_type} -> {mapping.event_name}"]
    if conditions:
        parts.append(f"when {conditions}")
    props = [
        f"{name}{'<-' if from_attribute else '='}{value}"
        for name, from_attribute, value in rules.describe()
        if name != "description"
    ]
    parts.append("[" + ", ".join(props) + "]")
    return " ".join(parts)
