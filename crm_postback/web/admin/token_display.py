"""What a viewer is not shown: any token, in any form (masked, a prefix, in the audit trail).

Viewers read everything else in the workspace; editors and owners see tokens masked as
before (`••••••••3456`), never in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_postback.configuration import audit
from crm_postback.configuration.admin_accounts import Admin
from crm_postback.core.settings import get_settings
from crm_postback.core.token_vault import token_hint
from models import AuditEntry, Role

HIDDEN = "hidden for viewers"


def sees_tokens(admin: Admin) -> bool:
    return admin.may(Role.EDITOR)


def shown_token(admin: Admin, sealed_token: str) -> str:
    """The masked token for an editor or owner; for a viewer, not even that."""
    return token_hint(sealed_token, get_settings()) if sees_tokens(admin) else HIDDEN


def _is_token_field(name: str) -> bool:
    """`access_token`, `token_prefix`, `key_prefix` and the like, in any snapshot."""
    lowered = name.lower()
    return "token" in lowered or lowered.endswith("prefix") or lowered == "key"


def _shown_value(admin: Admin, field: str, value: Any) -> Any:
    if sees_tokens(admin) or value is None or not _is_token_field(field):
        return value
    return HIDDEN


def _shown_snapshot(admin: Admin, snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    if snapshot is None:
        return None
    return {key: _shown_value(admin, key, value) for key, value in snapshot.items()}


@dataclass(frozen=True)
class ShownEntry:
    """An audit entry as this admin may see it (the template's and the JSON API's)."""

    id: int
    at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: int | None
    event_set_id: int | None
    workspace_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    note: str | None


def shown_entry(admin: Admin, entry: AuditEntry) -> ShownEntry:
    return ShownEntry(
        entry.id,
        entry.at,
        entry.actor,
        entry.action,
        entry.entity_type,
        entry.entity_id,
        entry.event_set_id,
        entry.workspace_id,
        _shown_snapshot(admin, entry.before),
        _shown_snapshot(admin, entry.after),
        entry.note,
    )


def shown_changes(admin: Admin, entries: list[AuditEntry]) -> list[tuple[ShownEntry, list[Any]]]:
    """Each entry with its changed fields (computed before hiding, so a replaced token still
    shows as a change of `access_token`)."""
    return [
        (
            shown_entry(admin, entry),
            [
                audit.Change(
                    c.field,
                    _shown_value(admin, c.field, c.before),
                    _shown_value(admin, c.field, c.after),
                )
                for c in audit.changes(entry)
            ],
        )
        for entry in entries
    ]


def shown_entry_dict(admin: Admin, entry: AuditEntry) -> dict[str, Any]:
    answer = audit.entry_dict(entry)
    answer["workspace_id"] = entry.workspace_id  # None: the instance's own entry
    answer["before"] = _shown_snapshot(admin, entry.before)
    answer["after"] = _shown_snapshot(admin, entry.after)
    return answer
