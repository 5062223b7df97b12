"""Use cases of the ingest API keys of source (routing) systems: create, revoke, make strict.

Each acts in the actor's workspace and need its owner role; a key id of another workspace is
not found. The audit trail (in the workspace) names a key by its id, its source system and its
display prefix (`pbk_` and 8 characters, as listings show it), with its event sets,
permissions and rate limit; the key itself exists only in the result of `create_api_key`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_postback.commands.unit_of_work import Actor, unit_of_work
from crm_postback.configuration.api_keys import (
    NewKey,
    create_key,
    get_key,
    revoke_key,
    set_key_strict,
)
from models import ApiKey, Role


@dataclass(frozen=True)
class CreateApiKey:
    name: str  # the source system, e.g. acme-router
    # Our ids, names or TikTok event set IDs; None: every event set of the workspace, now and
    # later.
    event_sets: Sequence[int | str] | None = None
    permissions: Sequence[str] | None = None  # None: all of api_keys.PERMISSIONS
    rate_limit: str | None = None  # None: the INGEST_KEY_RATE_LIMIT setting
    strict: bool = False  # a match key that does not normalise refuses the trigger


@dataclass(frozen=True)
class RevokeApiKey:
    key_id: int


@dataclass(frozen=True)
class SetApiKeyStrict:
    key_id: int
    strict: bool


@dataclass(frozen=True)
class ApiKeyStrictness:
    id: int
    name: str
    key_prefix: str
    strict: bool
    changed: bool  # False: it was so already and nothing changed


@dataclass(frozen=True)
class RevokedApiKey:
    id: int
    name: str
    key_prefix: str
    revoked_at: datetime
    newly_revoked: bool  # False: it was revoked already and nothing changed


def _snapshot(row: ApiKey) -> dict[str, Any]:
    return {
        "name": row.name,
        "key_prefix": row.key_prefix,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "event_set_ids": row.event_set_ids,
        "permissions": row.permissions,
        "rate_limit": row.rate_limit,
        "strict": bool(row.strict),
    }


def create_api_key(request: CreateApiKey, actor: Actor) -> NewKey:
    """A new key; `NewKey.key` is its only copy (the database keeps its SHA-256)."""
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        new = create_key(
            uow.session,
            request.name,
            event_sets=request.event_sets,
            permissions=request.permissions,
            rate_limit=request.rate_limit,
            strict=request.strict,
        )
        uow.audit(
            "api_key.create",
            entity_type="api_key",
            entity_id=new.id,
            after=_snapshot(get_key(uow.session, new.id)),
        )
    return new


def revoke_api_key(request: RevokeApiKey, actor: Actor) -> RevokedApiKey:
    """Requests with the key get 403 from now on; revoking a revoked key changes nothing."""
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        row = get_key(uow.session, request.key_id)
        before = _snapshot(row)
        revoke_key(uow.session, row.id)
        newly_revoked = before["revoked_at"] is None
        if newly_revoked:
            uow.audit(
                "api_key.revoke",
                entity_type="api_key",
                entity_id=row.id,
                before=before,
                after=_snapshot(row),
            )
        assert row.revoked_at is not None
        return RevokedApiKey(row.id, row.name, row.key_prefix, row.revoked_at, newly_revoked)


def set_api_key_strict(request: SetApiKeyStrict, actor: Actor) -> ApiKeyStrictness:
    """Strict: a match key that does not normalise refuses the key's triggers and lead keys;
    lenient (the default): it is dropped with a warning. From the key's next request."""
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        row = get_key(uow.session, request.key_id)
        before = _snapshot(row)
        changed = bool(row.strict) != request.strict
        if changed:
            set_key_strict(uow.session, row.id, request.strict)
            uow.audit(
                "api_key.update",
                entity_type="api_key",
                entity_id=row.id,
                before=before,
                after=_snapshot(row),
            )
        return ApiKeyStrictness(row.id, row.name, row.key_prefix, bool(row.strict), changed)
