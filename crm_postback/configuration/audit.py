"""The audit trail of admin changes (no commit here; the command's unit of work commits).

Every change, from the page, the JSON API or the CLI, is one command in
`crm_postback.commands`; its entry is recorded in the same transaction as the change
(`configuration.event_set_service` / `mapping_service` record theirs as they change the
rows, the other commands through `UnitOfWork.audit`), so a change without its audit entry
cannot be committed.
Snapshots are JSON; an access token appears only masked, or as "replaced".

An entry belongs to the workspace whose data changed: in a session scoped to one workspace it
gets that workspace on flush; the event set and mapping services name it themselves (the
worker changes event sets in a session over every workspace). An entry recorded without a
workspace in a session over every workspace is the instance's own (`workspace_id` NULL: a
workspace made, an admin user changed, the retention purge), seen by instance admins only.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import AuditEntry, EventSet, Mapping

SYSTEM_ACTOR = "system"


def cli_actor() -> str:
    """`cli:<login name>` of whoever runs the command."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        user = "unknown"
    return f"cli:{user}"


def event_set_snapshot(event_set: EventSet) -> dict[str, Any]:
    """What an admin can change on an event set, without the token."""
    return {
        "name": event_set.name,
        "kind": event_set.kind,
        "event_set_id": event_set.source_id,
        "advertiser_id": event_set.advertiser_id,
        "lead_event_source": event_set.lead_event_source,
        "default_currency": event_set.default_currency,
        "test_event_code": event_set.test_event_code,
        "status": event_set.status,
        "paused_reason": event_set.paused_reason,
    }


def mapping_snapshot(mapping: Mapping) -> dict[str, Any]:
    return {
        "trigger_type": mapping.trigger_type,
        "event_name": mapping.event_name,
        "conditions": list(mapping.conditions or []),
        "properties": dict(mapping.properties or {}),
        "enabled": mapping.enabled,
        "version": mapping.version,
    }


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: int | None,
    event_set_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    note: str | None = None,
    workspace_id: int | None = None,
) -> AuditEntry:
    """`workspace_id`: the workspace whose data changed; None takes the session's (NULL, the
    instance's own entry, in a session over every workspace)."""
    entry = AuditEntry(
        workspace_id=workspace_id,
        actor=(actor or SYSTEM_ACTOR)[:200],
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        event_set_id=event_set_id,
        before=before,
        after=after,
        note=note,
    )
    session.add(entry)
    session.flush()
    return entry


def entries(
    session: Session,
    *,
    event_set_id: int | None = None,
    entity_type: str | None = None,
    entity_id: int | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditEntry]:
    """Newest first."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if event_set_id is not None:
        query = query.where(AuditEntry.event_set_id == event_set_id)
    if entity_type is not None:
        query = query.where(AuditEntry.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(AuditEntry.entity_id == entity_id)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(session.scalars(query))


def instance_entries(
    session: Session, *, limit: int = 100, before_id: int | None = None
) -> list[AuditEntry]:
    """The instance's own entries (workspaces, admin users, their tokens: no workspace),
    newest first; in a session over every workspace."""
    query = (
        select(AuditEntry)
        .where(AuditEntry.workspace_id.is_(None))
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any


def changes(entry: AuditEntry) -> list[Change]:
    """The fields that differ between before and after (all of them for a create/delete)."""
    before, after = entry.before or {}, entry.after or {}
    keys = list(dict.fromkeys([*before.keys(), *after.keys()]))
    return [
        Change(key, before.get(key), after.get(key))
        for key in keys
        if before.get(key) != after.get(key)
    ]


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "entity_type": entry.entity_type,
        "entity_id": entry.entity_id,
        "event_set_id": entry.event_set_id,
        "before": entry.before,
        "after": entry.after,
        "note": entry.note,
    }
