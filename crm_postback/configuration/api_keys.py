"""API keys of source systems: created once (shown once), stored as SHA-256, revoked, looked up.

A key belongs to one workspace and one source system (its `name`). It may be limited to some
of the workspace's event sets (`event_set_ids`; None: all of them, present and future) and to
some permissions (`PERMISSIONS`; all of them unless told otherwise), and may have its own rate
limit (None: the INGEST_KEY_RATE_LIMIT setting), and may be strict (a match key that does not
normalise refuses the trigger instead of being dropped with a warning). Create, list, get,
revoke and set_key_strict run in a session scoped to the workspace, so a key of another
workspace is one that does not exist; only `authenticate` looks a digest up across all
workspaces.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits import parse
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.configuration import event_set_service
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.rate_limits import rate_limit_disabled
from crm_postback.core.row_ids import is_row_id, row_id
from models import ApiKey, EventSet, utcnow

KEY_PREFIX = "pbk_"
DISPLAY_CHARS = 12  # "pbk_" + 8 random characters: enough to tell keys apart in a listing
# Writing last_used_at on every request would turn each read into a write; once a minute is
# plenty to see which systems still use a key.
LAST_USED_RESOLUTION = timedelta(seconds=60)

SEND_TRIGGERS = "triggers:send"
WRITE_LEADS = "leads:write"
READ_POSTBACKS = "postbacks:read"
PERMISSIONS: tuple[str, ...] = (SEND_TRIGGERS, WRITE_LEADS, READ_POSTBACKS)
MAX_RATE_LIMIT_CHARS = 64
MAX_EVENT_SETS = 100
NO_SUCH_EVENT_SET = "no event set has this name, id or TikTok event set ID"


@dataclass(frozen=True)
class NewKey:
    id: int
    name: str
    key: str  # the only time the full key exists outside the caller's vault
    key_prefix: str
    event_set_ids: tuple[int, ...] | None = None
    permissions: tuple[str, ...] = PERMISSIONS
    rate_limit: str | None = None
    strict: bool = False


@dataclass(frozen=True)
class Caller:
    """What a request's key allows: all of it is on the key's own row (one indexed lookup)."""

    key_id: int
    workspace_id: int
    event_set_ids: frozenset[int] | None  # None: every event set of the workspace
    permissions: frozenset[str]
    rate_limit: str | None  # None: the INGEST_KEY_RATE_LIMIT setting
    strict: bool = False  # a bad match key refuses the trigger instead of being dropped

    def may(self, permission: str) -> bool:
        return permission in self.permissions


class KeyRevoked(Exception):
    def __init__(self, caller: Caller) -> None:
        super().__init__(f"api key {caller.key_id} is revoked")
        self.caller = caller


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def checked_rate_limit(rate: str, field: str = "rate_limit") -> str:
    """A rate in `limits` notation ("100/second", "6000 per minute"), or a word of
    core.rate_limits.NO_RATE_LIMIT (no limit)."""
    rate = rate.strip()
    if rate_limit_disabled(rate):
        return rate.lower()
    message = 'a rate such as "100/second" or "6000 per minute", or "none"'
    if not 1 <= len(rate) <= MAX_RATE_LIMIT_CHARS or not rate.isascii():
        raise InputRejected.one(field, message)
    try:
        item = parse(rate)
    except ValueError:
        raise InputRejected.one(field, message) from None
    if item.amount < 1:
        raise InputRejected.one(field, message)
    return rate


def _permissions(permissions: Sequence[str] | None) -> tuple[str, ...]:
    if permissions is None:
        return PERMISSIONS
    wanted = {p.strip() for p in permissions}
    unknown = wanted - set(PERMISSIONS)
    if unknown or not wanted:
        raise InputRejected.one("permission", "each permission is one of " + ", ".join(PERMISSIONS))
    return tuple(p for p in PERMISSIONS if p in wanted)


def _event_set(session: Session, reference: int | str) -> EventSet | None:
    """By our id (an int, or digits), else by name or TikTok event set ID."""
    if isinstance(reference, int):
        return session.get(EventSet, reference) if is_row_id(reference) else None
    reference = reference.strip()
    by_id = row_id(reference)
    found = session.get(EventSet, by_id) if by_id is not None else None
    if found is not None:
        return found
    try:
        return event_set_service.get_event_set(session, reference)
    except InputRejected:
        return None


def _event_set_ids(
    session: Session, references: Sequence[int | str] | None
) -> tuple[int, ...] | None:
    """Our ids of the event sets named, in the session's workspace. One of another workspace
    is answered exactly as one that does not exist, and no reference is written back."""
    if references is None:
        return None
    if not 1 <= len(references) <= MAX_EVENT_SETS:
        raise InputRejected.one("event_set", f"name 1 to {MAX_EVENT_SETS} event sets")
    ids: list[int] = []
    errors: list[FieldError] = []
    for reference in references:
        found = _event_set(session, reference)
        if found is None:
            errors.append(FieldError("event_set", NO_SUCH_EVENT_SET))
        elif found.id not in ids:
            ids.append(found.id)
    if errors:
        raise InputRejected(errors[:1])
    return tuple(sorted(ids))


def create_key(
    session: Session,
    name: str,
    event_sets: Sequence[int | str] | None = None,
    permissions: Sequence[str] | None = None,
    rate_limit: str | None = None,
    strict: bool = False,
) -> NewKey:
    """A new key in the session's workspace. `event_sets`: our ids, names or TikTok event set
    IDs (None: all, present and future); `permissions`: some of PERMISSIONS (None: all);
    `strict`: a match key that does not normalise refuses the trigger (else it is dropped)."""
    name = name.strip()
    errors: list[FieldError] = []
    if not 1 <= len(name) <= 100 or not name.isprintable():
        errors.append(FieldError("name", "the source system's name needs 1 to 100 characters"))
    checks = (
        lambda: _event_set_ids(session, event_sets),
        lambda: _permissions(permissions),
        lambda: None if rate_limit is None else checked_rate_limit(rate_limit),
    )
    values: list[object] = []
    for check in checks:
        try:
            values.append(check())
        except InputRejected as rejected:
            errors.extend(rejected.errors)
    if errors:
        raise InputRejected(errors)
    event_set_ids, allowed, rate = values
    assert event_set_ids is None or isinstance(event_set_ids, tuple)
    assert isinstance(allowed, tuple) and (rate is None or isinstance(rate, str))
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        key_prefix=key[:DISPLAY_CHARS],
        key_sha256=key_digest(key),
        event_set_ids=list(event_set_ids) if event_set_ids is not None else None,
        permissions=list(allowed),
        rate_limit=rate,
        strict=strict,
    )
    session.add(row)
    session.flush()
    return NewKey(row.id, row.name, key, row.key_prefix, event_set_ids, allowed, rate, strict)


def set_key_strict(session: Session, key_id: int, strict: bool) -> ApiKey:
    """Makes a key of the session's workspace strict or lenient (from its next request)."""
    row = get_key(session, key_id)
    row.strict = strict
    return row


def list_keys(session: Session) -> list[ApiKey]:
    """The keys of the session's workspace."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def get_key(session: Session, key_id: int) -> ApiKey:
    """A key of the session's workspace; one of another workspace is not found."""
    valid = is_row_id(key_id)
    row = session.get(ApiKey, key_id) if valid else None
    if row is None:
        raise InputRejected.one("id", f"no api key {key_id}" if valid else "no such api key")
    return row


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revokes a key (idempotent); the row stays so listings show who had access and when."""
    row = get_key(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def event_set_names(session: Session, row: ApiKey) -> list[str] | None:
    """The names of the event sets a key is limited to (None: all of the workspace)."""
    if row.event_set_ids is None:
        return None
    names = session.scalars(
        select(EventSet.name).where(EventSet.id.in_(row.event_set_ids)).order_by(EventSet.name)
    )
    return list(names)


def authenticate(session: Session, key: str, now: datetime | None = None) -> Caller | None:
    """The caller a key belongs to, None for an unknown key; raises KeyRevoked for a revoked one.

    Runs in a session over all workspaces: the digest names the key, the key its workspace.
    """
    row = session.scalar(select(ApiKey).where(ApiKey.key_sha256 == key_digest(key)))
    if row is None:
        return None
    caller = Caller(
        key_id=row.id,
        workspace_id=row.workspace_id,
        event_set_ids=frozenset(row.event_set_ids) if row.event_set_ids is not None else None,
        permissions=frozenset(row.permissions or ()),
        rate_limit=row.rate_limit,
        strict=bool(row.strict),
    )
    if row.revoked_at is not None:
        raise KeyRevoked(caller)
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    return caller
