"""API keys of source systems: created once (shown once), stored as SHA-256, revoked, looked up."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.core.errors import InputRejected
from models import ApiKey, utcnow

KEY_PREFIX = "pbk_"
DISPLAY_CHARS = 12  # "pbk_" + 8 random characters: enough to tell keys apart in a listing
# Writing last_used_at on every request would turn each read into a write; once a minute is
# plenty to see which systems still use a key.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class NewKey:
    id: int
    name: str
    key: str  # the only time the full key exists outside the caller's vault
    key_prefix: str


@dataclass(frozen=True)
class Caller:
    key_id: int
    name: str  # the source system


class KeyRevoked(Exception):
    def __init__(self, caller: Caller) -> None:
        super().__init__(f"api key {caller.key_id} ({caller.name}) is revoked")
        self.caller = caller


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(session: Session, name: str) -> NewKey:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InputRejected.one("name", "the source system's name needs 1 to 100 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, key_prefix=key[:DISPLAY_CHARS], key_sha256=key_digest(key))
    session.add(row)
    session.flush()
    return NewKey(row.id, row.name, key, row.key_prefix)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def get_key(session: Session, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise InputRejected.one("id", f"no api key {key_id}")
    return row


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revokes a key (idempotent); the row stays so listings show who had access and when."""
    row = get_key(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def authenticate(session: Session, key: str, now: datetime | None = None) -> Caller | None:
    """The caller a key belongs to, None for an unknown key; raises KeyRevoked for a revoked one."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_sha256 == key_digest(key)))
    if row is None:
        return None
    caller = Caller(row.id, row.name)
    if row.revoked_at is not None:
        raise KeyRevoked(caller)
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    return caller
