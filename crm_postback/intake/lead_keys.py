"""Lead match keys: hashed at the door, merged into what we already know."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.privacy import MatchKeyError, hash_email, hash_external_id, hash_phone
from crm_postback.intake.trigger_schemas import MAX_KEYS_PER_KIND, MatchKeys
from models import Lead, utcnow
from models.bulk import bulk_insert, matches_any, planned_for_its_parameters

log = logging.getLogger(__name__)


@dataclass
class HashedKeys:
    """Match keys as they may be stored: email/phone/external id only as SHA-256 hex."""

    ttclid: str | None = None
    ttp: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    tiktok_lead_id: str | None = None
    email_hashes: list[str] = field(default_factory=list)
    phone_hashes: list[str] = field(default_factory=list)
    external_id_hashes: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not any(vars(self).values())


def hash_match_keys(
    keys: MatchKeys, default_region: str, prefix: str = "match_keys."
) -> HashedKeys:
    """Raises InputRejected naming each bad key; the raw values are dropped here."""
    errors: list[FieldError] = []
    hashed = HashedKeys(
        ttclid=(keys.ttclid or "").strip() or None,
        ttp=(keys.ttp or "").strip() or None,
        ip=keys.ip,
        user_agent=(keys.user_agent or "").strip() or None,
        tiktok_lead_id=keys.tiktok_lead_id,
    )
    hashers = {
        "email": hash_email,
        "phone": lambda raw: hash_phone(raw, default_region),
        "external_id": hash_external_id,
    }
    for name, hasher in hashers.items():
        target: list[str] = getattr(hashed, f"{name}_hashes")
        given = getattr(keys, name)
        values = [] if given is None else [given] if isinstance(given, str) else given
        for index, raw in enumerate(values):
            if not raw.strip():
                continue
            try:
                digest = hasher(raw)
            except Exception as error:  # one bad key fails only itself
                where = name if isinstance(getattr(keys, name), str) else f"{name}.{index}"
                if isinstance(error, MatchKeyError):
                    reason = error.reason
                else:
                    log.warning("%s while normalising %s", type(error).__name__, name)
                    reason = "could not be normalised"
                errors.append(FieldError(f"{prefix}{where}", reason))
                continue
            if digest not in target:
                target.append(digest)
    if errors:
        raise InputRejected(errors)
    return hashed


_HASH_COLUMNS = ("email_hashes", "phone_hashes", "external_id_hashes")


def _merge_list(current: list[str], new: list[str]) -> list[str]:
    merged = [digest for digest in current if digest not in new] + new
    return merged[-MAX_KEYS_PER_KIND:]


def merge_keys(lead: Any, keys: HashedKeys) -> None:
    """Newer scalar keys replace older ones; hashes accumulate (newest kept, at most five)."""
    for name in ("ttclid", "ttp", "ip", "user_agent", "tiktok_lead_id"):
        value = getattr(keys, name)
        if value:
            setattr(lead, name, value)
    for name in _HASH_COLUMNS:
        new = getattr(keys, name)
        if new:
            setattr(lead, name, _merge_list(list(getattr(lead, name) or []), new))


def _new_lead(workspace_id: int, lead_ref: str, keys: list[HashedKeys]) -> dict[str, object]:
    # A plain namespace, not a Lead: an ORM object tracks every assignment, which costs more
    # than the merge itself when a batch creates a thousand leads.
    lead = SimpleNamespace(
        **{**dict.fromkeys(LEAD_KEY_COLUMNS), **{name: [] for name in _HASH_COLUMNS}}
    )
    for item in keys:
        merge_keys(lead, item)
    now = utcnow()
    return {
        "workspace_id": workspace_id,
        "lead_ref": lead_ref,
        "created_at": now,
        "updated_at": now,
        **{name: getattr(lead, name) for name in LEAD_KEY_COLUMNS},
    }


LEAD_KEY_COLUMNS = (
    "ttclid",
    "ttp",
    "ip",
    "user_agent",
    "tiktok_lead_id",
    "email_hashes",
    "phone_hashes",
    "external_id_hashes",
)


def merge_lead_keys(
    session: Session, workspace_id: int, keys_by_lead: dict[str, list[HashedKeys]]
) -> None:
    """Creates or merges many leads of one workspace with a fixed number of statements.

    New leads are inserted first (most keys come with a lead's first trigger); only the refs
    that already existed are read back and merged.
    """
    if not keys_by_lead:
        return
    values = [_new_lead(workspace_id, ref, keys) for ref, keys in keys_by_lead.items()]
    created = {
        row.lead_ref
        for row in bulk_insert(
            session, Lead.__table__, values, returning=(Lead.lead_ref,), ignore_conflicts=True
        )
    }
    existing = [ref for ref in keys_by_lead if ref not in created]
    if not existing:
        return
    with planned_for_its_parameters(session):
        found = session.scalars(
            select(Lead)
            .where(Lead.workspace_id == workspace_id, matches_any(session, Lead.lead_ref, existing))
            .order_by(Lead.lead_ref)  # one lock order for every writer: no deadlocks
            .with_for_update()
        ).all()
    for lead in found:
        for keys in keys_by_lead[lead.lead_ref]:
            merge_keys(lead, keys)
    session.flush()


def upsert_lead(session: Session, workspace_id: int, lead_ref: str, keys: HashedKeys) -> None:
    merge_lead_keys(session, workspace_id, {lead_ref: [keys]})
