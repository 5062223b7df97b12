"""Lead match keys: hashed at the door, merged into what we already know."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from ipaddress import ip_address
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import Integer, Text, bindparam, select, text
from sqlalchemy.orm import Session

from crm_postback.core import jsontext
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.privacy import (
    MatchKeyError,
    PageUrl,
    hash_city,
    hash_country,
    hash_email,
    hash_external_id,
    hash_name,
    hash_phone,
    hash_state,
    hash_zip_code,
    normalize_locale,
    sanitize_page_url,
)
from crm_postback.intake.trigger_schemas import (
    AS_MATCH_KEY,
    MAX_KEYS_PER_KIND,
    MAX_TIKTOK_LEAD_ID_LENGTH,
    MAX_TTCLID_LENGTH,
    MAX_TTP_LENGTH,
    MAX_USER_AGENT_LENGTH,
    UNSTORABLE_MESSAGE,
    MatchKeys,
    personal_data_reason,
)
from models import Lead, utcnow
from models.bulk import bulk_insert, is_postgres, matches_any, planned_for_its_parameters
from models.workspace_scope import FILTERED_OPTION, WorkspaceScopeError, workspace_of

log = logging.getLogger(__name__)
Value = TypeVar("Value")


@dataclass
class HashedKeys:
    """Match keys as they may be stored: personal data only as SHA-256 hex."""

    ttclid: str | None = None
    ttp: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    tiktok_lead_id: str | None = None
    email_hashes: list[str] = field(default_factory=list)
    phone_hashes: list[str] = field(default_factory=list)
    external_id_hashes: list[str] = field(default_factory=list)
    first_name_hash: str | None = None
    last_name_hash: str | None = None
    city_hash: str | None = None
    state_hash: str | None = None
    country_hash: str | None = None
    zip_code_hash: str | None = None
    locale: str | None = None
    page_url: str | None = None
    page_referrer: str | None = None
    limited_data_use: bool | None = None  # None: unchanged (the lead's, else the event set's)
    # The kinds of key dropped at the door, each once, in order (never a value): not stored
    # on the lead; a trigger records them as `dropped_keys`.
    dropped: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return all(getattr(self, name) in (None, []) for name in LEAD_KEY_COLUMNS)


_NAMES_AND_PLACES: dict[str, Callable[[str], str]] = {
    "first_name": lambda raw: hash_name("first_name", raw),
    "last_name": lambda raw: hash_name("last_name", raw),
    "city": hash_city,
    "state": hash_state,
    "country": hash_country,
    "zip_code": hash_zip_code,
}
_IDENTIFIER_LIMITS = {
    "ttclid": MAX_TTCLID_LENGTH,
    "ttp": MAX_TTP_LENGTH,
    "tiktok_lead_id": MAX_TIKTOK_LEAD_ID_LENGTH,
}
_TIKTOK_LEAD_ID = re.compile(r"[0-9A-Za-z_\-]{1,64}")
DROPPED = "dropped"


class _Door:
    """Collects what is wrong with each key: dropped with a warning, or refused (strict)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.problems: list[FieldError] = []
        self.kinds: list[str] = []

    def bad(self, where: str, reason: str, kind: str | None = None) -> None:
        self.problems.append(FieldError(f"{self.prefix}{where}", reason))
        kind = kind or where.split(".")[0]
        if kind not in self.kinds:
            self.kinds.append(kind)

    def normalised(self, where: str, kind: str, work: Callable[[], Value]) -> Value | None:
        try:
            return work()
        except MatchKeyError as error:
            self.bad(where, error.reason, kind)
        except Exception as error:  # one bad key fails only itself
            log.warning("%s while normalising %s", type(error).__name__, kind)
            self.bad(where, "could not be normalised", kind)
        return None


def _identifier(door: _Door, name: str, raw: str | None, where: str | None = None) -> str | None:
    """The identifier key `name` as given, or None (dropped with a warning at `where`)."""
    value = (raw or "").strip()
    if not value:
        return None
    where = where or name
    limit = _IDENTIFIER_LIMITS[name]
    reason: str | None = None
    if len(value) > limit:
        reason = f"longer than {limit} characters"
    elif not jsontext.is_storable_text(value):
        reason = UNSTORABLE_MESSAGE
    elif name == "tiktok_lead_id" and not _TIKTOK_LEAD_ID.fullmatch(value):
        reason = "must be 1 to 64 letters, digits, '_' or '-'"
    else:
        reason = personal_data_reason(value, AS_MATCH_KEY)
    if reason is not None:
        door.bad(where, reason, name)
        return None
    return value


def _page(door: _Door, keys: MatchKeys) -> tuple[str | None, ...]:
    """(url, referrer, the url's ttclid), each sanitised; a bad one is dropped. The url's
    ttclid passes the checks of a ttclid given as a key (a warning at `page.url` else)."""
    found: dict[str, PageUrl | None] = {"url": None, "referrer": None}
    for part in found:
        raw = getattr(keys.page, part) if keys.page is not None else None
        if raw is not None and raw.strip():
            where = f"page.{part}"
            found[part] = door.normalised(
                where,
                f"page_{part}",
                partial(sanitize_page_url, where, raw),
            )
    url, referrer = found["url"], found["referrer"]
    ttclid = None
    if url is not None and url.ttclid is not None:
        ttclid = _identifier(door, "ttclid", url.ttclid, where="page.url")
    return (
        url.url if url is not None else None,
        referrer.url if referrer is not None else None,
        ttclid,
    )


def hash_match_keys(
    keys: MatchKeys, default_region: str, prefix: str = "match_keys.", strict: bool = False
) -> tuple[HashedKeys, list[FieldError]]:
    """The keys as they may be stored, and a warning for each key dropped because it could not
    be normalised (the raw values are dropped here; no warning names a value). With `strict`,
    raises InputRejected naming each bad key instead."""
    door = _Door(prefix)
    hashed = HashedKeys(
        ttclid=_identifier(door, "ttclid", keys.ttclid),
        ttp=_identifier(door, "ttp", keys.ttp),
        tiktok_lead_id=_identifier(door, "tiktok_lead_id", keys.tiktok_lead_id),
    )
    if keys.ip is not None and keys.ip.strip():
        hashed.ip = door.normalised("ip", "ip", lambda: _ip(keys.ip or ""))
    user_agent = (keys.user_agent or "").strip()
    if len(user_agent) > MAX_USER_AGENT_LENGTH:
        door.bad("user_agent", f"longer than {MAX_USER_AGENT_LENGTH} characters")
    elif user_agent:
        hashed.user_agent = user_agent
    hashers: dict[str, Callable[[str], str]] = {
        "email": hash_email,
        "phone": lambda raw: hash_phone(raw, default_region),
        "external_id": hash_external_id,
    }
    for name, hasher in hashers.items():
        target: list[str] = getattr(hashed, f"{name}_hashes")
        given = getattr(keys, name)
        values = [] if given is None else [given] if isinstance(given, str) else given
        if len(values) > MAX_KEYS_PER_KIND:
            door.bad(name, f"at most {MAX_KEYS_PER_KIND} values")
            continue
        for index, raw in enumerate(values):
            if not raw.strip():
                continue
            where = name if isinstance(given, str) else f"{name}.{index}"
            digest = door.normalised(where, name, partial(hasher, raw))
            if digest is not None and digest not in target:
                target.append(digest)
    for name, hasher in _NAMES_AND_PLACES.items():
        raw = getattr(keys, name)
        if raw is not None and raw.strip():
            digest = door.normalised(name, name, partial(hasher, raw))
            setattr(hashed, f"{name}_hash", digest)
    if keys.locale is not None and keys.locale.strip():
        hashed.locale = door.normalised(
            "locale", "locale", lambda: normalize_locale(keys.locale or "")
        )
    hashed.page_url, hashed.page_referrer, url_ttclid = _page(door, keys)
    if url_ttclid is not None:
        hashed.ttclid = url_ttclid  # the landing page's own click id wins (as Segment's)
    if strict and door.problems:
        raise InputRejected(door.problems)
    hashed.dropped = door.kinds
    return hashed, [FieldError(p.field, f"{p.message}; {DROPPED}") for p in door.problems]


def _ip(raw: str) -> str:
    try:
        return str(ip_address(raw.strip()))
    except ValueError:
        raise MatchKeyError("ip", "not an IPv4 or IPv6 address") from None


HASH_COLUMNS = ("email_hashes", "phone_hashes", "external_id_hashes")
SCALAR_COLUMNS = (
    "ttclid",
    "ttp",
    "ip",
    "user_agent",
    "tiktok_lead_id",
    "first_name_hash",
    "last_name_hash",
    "city_hash",
    "state_hash",
    "country_hash",
    "zip_code_hash",
    "locale",
    "page_url",
    "page_referrer",
)
# Every column of `leads` a caller's keys fill (the retention purge clears all but the last).
LEAD_KEY_COLUMNS = (*SCALAR_COLUMNS, *HASH_COLUMNS, "limited_data_use")


def _merge_list(current: list[str], new: list[str]) -> list[str]:
    merged = [digest for digest in current if digest not in new] + new
    return merged[-MAX_KEYS_PER_KIND:]


def merge_keys(lead: Any, keys: HashedKeys) -> None:
    """Newer scalar keys (names and address parts too) replace older ones; hashes of email,
    phone and external id accumulate (newest kept, at most five)."""
    for name in SCALAR_COLUMNS:
        value = getattr(keys, name)
        if value:
            setattr(lead, name, value)
    if keys.limited_data_use is not None:
        lead.limited_data_use = keys.limited_data_use
    for name in HASH_COLUMNS:
        new = getattr(keys, name)
        if new:
            setattr(lead, name, _merge_list(list(getattr(lead, name) or []), new))


def _new_lead(workspace_id: int, lead_ref: str, keys: list[HashedKeys]) -> dict[str, object]:
    # A plain namespace, not a Lead: an ORM object tracks every assignment, which costs more
    # than the merge itself when a batch creates a thousand leads.
    lead = SimpleNamespace(
        **{**dict.fromkeys(LEAD_KEY_COLUMNS), **{name: [] for name in HASH_COLUMNS}}
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


# The answer's warnings for a lead that withdrew consent: its keys are not stored, and
# nothing is sent for its triggers (never a value).
WITHDRAWN_WARNING = FieldError("match_keys", "the lead withdrew consent; keys not stored")
WITHDRAWN_TRIGGER_WARNING = FieldError(
    "lead_id", "the lead withdrew consent; nothing is sent for this trigger"
)


_LEADS = Lead.__table__
# PostgreSQL: the new leads as one JSON document, for any number of rows one text, which
# psycopg prepares once per connection and PostgreSQL plans once (as the trigger INSERT in
# `trigger_intake`).
_INSERT_NEW_LEADS = text(
    f"""
INSERT INTO {_LEADS.name} (workspace_id, lead_ref, created_at, updated_at,
    {", ".join(LEAD_KEY_COLUMNS)})
SELECT :workspace_id, given.lead_ref, :now, :now,
    {", ".join(f"given.{c}" for c in LEAD_KEY_COLUMNS)}
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS given(lead_ref text,
    {", ".join(f"{c} text" for c in SCALAR_COLUMNS)},
    {", ".join(f"{c} jsonb" for c in HASH_COLUMNS)}, limited_data_use boolean)
ON CONFLICT DO NOTHING
RETURNING {_LEADS.name}.lead_ref
"""
).bindparams(
    bindparam("workspace_id", type_=Integer()),
    bindparam("now", type_=_LEADS.c.created_at.type),
    bindparam("rows", type_=Text()),
)


def _insert_new_leads(
    session: Session, workspace_id: int, values: list[dict[str, object]]
) -> set[str]:
    """The refs of the leads inserted (the others exist already)."""
    if workspace_of(session) != workspace_id or any(
        row["workspace_id"] != workspace_id for row in values
    ):
        raise WorkspaceScopeError("leads inserted must be of the session's workspace")
    rows = [
        {name: row[name] for name in ("lead_ref", *LEAD_KEY_COLUMNS)}
        for row in sorted(values, key=lambda row: str(row["lead_ref"]))
    ]
    return set(
        session.scalars(
            _INSERT_NEW_LEADS,
            {
                "workspace_id": workspace_id,
                "now": values[0]["created_at"],
                "rows": jsontext.dumps(rows),
            },
            execution_options={FILTERED_OPTION: True},
        )
    )


def merge_lead_keys(
    session: Session, workspace_id: int, keys_by_lead: dict[str, list[HashedKeys]]
) -> set[str]:
    """Creates or merges many leads of one workspace with a fixed number of statements; answers
    the refs whose keys were not stored because the lead withdrew consent.

    New leads are inserted first (most keys come with a lead's first trigger); only the refs
    that already existed are read back (locked, so a withdrawal committing meanwhile is seen)
    and merged.
    """
    if not keys_by_lead:
        return set()
    values = [_new_lead(workspace_id, ref, keys) for ref, keys in keys_by_lead.items()]
    if is_postgres(session):
        created = _insert_new_leads(session, workspace_id, values)
    else:
        created = {
            row.lead_ref
            for row in bulk_insert(
                session, Lead.__table__, values, returning=(Lead.lead_ref,), ignore_conflicts=True
            )
        }
    existing = [ref for ref in keys_by_lead if ref not in created]
    if not existing:
        return set()
    with planned_for_its_parameters(session):
        found = session.scalars(
            select(Lead)
            .where(Lead.workspace_id == workspace_id, matches_any(session, Lead.lead_ref, existing))
            .order_by(Lead.lead_ref)  # one lock order for every writer: no deadlocks
            # FOR NO KEY UPDATE: no wait for a worker reading these leads FOR KEY SHARE, and
            # still one writer at a time with a consent withdrawal (FOR UPDATE).
            .with_for_update(key_share=True)
        ).all()
    withdrawn: set[str] = set()
    for lead in found:
        if lead.consent_withdrawn_at is not None:
            # Fresh personal data about someone who withdrew consent is not kept.
            withdrawn.add(lead.lead_ref)
            continue
        for keys in keys_by_lead[lead.lead_ref]:
            merge_keys(lead, keys)
    session.flush()
    return withdrawn


def upsert_lead(session: Session, workspace_id: int, lead_ref: str, keys: HashedKeys) -> bool:
    """Creates or merges one lead; False when its keys were not stored (consent withdrawn)."""
    return not merge_lead_keys(session, workspace_id, {lead_ref: [keys]})
