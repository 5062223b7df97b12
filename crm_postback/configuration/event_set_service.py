"""Event set administration (no commit here: `commands.manage_event_sets` commits).

Every change records its audit entry in the caller's transaction, as the `actor` it is given
(a command passes its actor's name; work done by the system passes `audit.SYSTEM_ACTOR`), in
the event set's workspace (also when the worker pauses it in a session over every workspace).

Names and TikTok IDs are unique per workspace: another workspace's "acme" neither blocks nor
is named by a new one here; the clash checks filter by the workspace themselves, whatever
the session's scope.
"""

from __future__ import annotations

import math
import re
import unicodedata
from enum import Enum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, object_session

from crm_postback.configuration import audit
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import Settings
from crm_postback.core.token_vault import seal_token, token_hint
from crm_postback.intake.trigger_intake import find_event_set
from crm_postback.tiktok.event_catalogue import SUPPORTED_CURRENCIES
from models import EventSet, EventSetKind, EventSetStatus, Postback, status_is_one_of
from models.postbacks import WAITING_STATUSES
from models.workspace_scope import workspace_of

SOURCE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{4,64}$")
# A token goes into an HTTP header: printable ASCII, no spaces (TikTok's are hex).
TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{1,1024}")
# Names are written back in messages only when plainly a name (not an email, not a phone).
_PLAIN_NAME = re.compile(r"\w[\w .\-]{0,99}")
CURRENCY_SHAPED = re.compile(r"[A-Za-z]{1,8}")
# Control characters (CR and LF above all: names reach headers and log lines), lone
# surrogates, and the Unicode line and paragraph separators.
_NOT_TEXT = frozenset({"Cc", "Cs", "Zl", "Zp"})
# An event set's own event age limit: past a year nothing is matched to an ad any more (TikTok's
# attribution windows are 28 days at most), and the bound keeps the worker's cutoff a date.
LONGEST_EVENT_AGE_LIMIT_DAYS = 365


def event_set_snapshot(event_set: EventSet) -> dict[str, Any]:
    """`audit.event_set_snapshot` and the event set's consent and age settings: what its audit
    entries and the admin JSON API show."""
    return {
        **audit.event_set_snapshot(event_set),
        "limited_data_use": bool(event_set.limited_data_use),
        "max_event_age_days": event_set.max_event_age_days,
    }


def event_age_limit(event_set: EventSet, settings: Settings) -> float:
    """The age past which the event set's events end `expired`: its own, else its event
    source's default."""
    return settings.event_age_limit_days(event_set.event_source, event_set.max_event_age_days)


def checked_event_age(value: object) -> float | None:
    """An event set's own age limit in days (None: the event source's default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputRejected.one("max_event_age_days", "must be a number of days")
    days = float(value)
    if not math.isfinite(days) or days <= 0 or days > LONGEST_EVENT_AGE_LIMIT_DAYS:
        raise InputRejected.one(
            "max_event_age_days",
            f"must be more than 0 and at most {LONGEST_EVENT_AGE_LIMIT_DAYS} days "
            "(or none: the event source's default)",
        )
    return days


def _flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InputRejected.one(field, "must be true or false")
    return value


def is_plain_text(text: str) -> bool:
    return not any(unicodedata.category(char) in _NOT_TEXT for char in text)


def _text(field: str, value: str, longest: int, *, required: bool = True) -> str | None:
    """The value stripped; InputRejected naming `field` if too long, empty when required,
    or holding a control character."""
    value = value.strip()
    if required and not value:
        raise InputRejected.one(field, f"must be 1 to {longest} characters")
    if len(value) > longest:
        raise InputRejected.one(field, f"must be at most {longest} characters")
    if not is_plain_text(value):
        raise InputRejected.one(field, "must not contain control characters or line breaks")
    return value or None


def _currency(value: str) -> str:
    currency = value.strip().upper()
    if currency not in SUPPORTED_CURRENCIES:
        shown = f"{value.strip()!r} " if CURRENCY_SHAPED.fullmatch(value.strip()) else ""
        raise InputRejected.one("currency", f"{shown}is not supported by TikTok")
    return currency


def _token(value: str) -> str:
    token = value.strip()
    if not token:
        raise InputRejected.one("access_token", "must not be empty")
    if not TOKEN_PATTERN.fullmatch(token):
        raise InputRejected.one(
            "access_token", "must be printable ASCII without spaces, at most 1024 characters"
        )
    return token


def named(reference: str) -> str:
    """How a name someone typed is written back: quoted if plainly a name, else not at all.
    Digits with separators (`213 373 4253`) may be a phone number; bare digits are an id."""
    plain = _PLAIN_NAME.fullmatch(reference) and (
        reference.isdigit() or any(c.isalpha() for c in reference)
    )
    return repr(reference) if plain else "(the name given)"


def create_event_set(
    session: Session,
    settings: Settings,
    *,
    name: str,
    source_id: str,
    access_token: str,
    kind: str = EventSetKind.CRM,
    lead_event_source: str = "crm-postback",
    test_event_code: str | None = None,
    advertiser_id: str | None = None,
    default_currency: str | None = None,
    actor: str,
    references_allowed: bool = False,
    workspace_id: int | None = None,
    limited_data_use: bool = False,
    max_event_age_days: float | None = None,
) -> EventSet:
    """In `workspace_id`, by default the session's (a session over every workspace must name
    one). `references_allowed`: the token may be an `env:` reference (the CLI operator's).
    `limited_data_use`: sent on the set's events unless a lead or trigger says otherwise;
    `max_event_age_days` None: the event source's default (settings)."""
    workspace = workspace_id if workspace_id is not None else workspace_of(session)
    if kind not in (EventSetKind.CRM, EventSetKind.WEB):
        raise InputRejected.one("kind", "must be 'crm' (CRM event set) or 'web' (Pixel)")
    name = _text("name", name, 100) or ""
    if not SOURCE_ID_PATTERN.fullmatch(source_id):
        raise InputRejected.one("event_set_id", "must be the TikTok event set ID or pixel code")
    access_token = _token(access_token)
    lead_event_source = _text("lead_event_source", lead_event_source, 64) or ""
    test_event_code = _text("test_event_code", test_event_code or "", 64, required=False)
    if advertiser_id and not SOURCE_ID_PATTERN.fullmatch(advertiser_id.strip()):
        raise InputRejected.one("advertiser_id", "must be the TikTok advertiser ID (digits)")
    if default_currency is not None:
        default_currency = _currency(default_currency)
    limited_data_use = _flag("limited_data_use", limited_data_use)
    max_event_age_days = checked_event_age(max_event_age_days)
    if _name_taken(session, workspace, name):
        raise InputRejected.one("name", f"an event set named {named(name)} exists")
    in_workspace = select(EventSet.id).where(
        EventSet.workspace_id == workspace, EventSet.kind == kind, EventSet.source_id == source_id
    )
    if session.scalar(in_workspace) is not None:
        raise InputRejected.one("event_set_id", f"{source_id} is already configured")
    sealed = seal_token(access_token, settings, references_allowed=references_allowed)
    event_set = EventSet(
        workspace_id=workspace,
        name=name,
        kind=kind,
        source_id=source_id,
        sealed_token=sealed,
        lead_event_source=lead_event_source,
        test_event_code=test_event_code,
        advertiser_id=(advertiser_id or "").strip() or None,
        default_currency=default_currency,
        status=EventSetStatus.ACTIVE,
        limited_data_use=limited_data_use,
        max_event_age_days=max_event_age_days,
    )
    session.add(event_set)
    session.flush()
    after = {
        **event_set_snapshot(event_set),
        "access_token": token_hint(event_set.sealed_token, settings),
    }
    audit.record(
        session,
        actor=actor,
        action="event_set.create",
        entity_type="event_set",
        entity_id=event_set.id,
        event_set_id=event_set.id,
        after=after,
        workspace_id=workspace,
    )
    return event_set


def _name_taken(session: Session, workspace: int, name: str, but: int | None = None) -> bool:
    query = select(EventSet.id).where(EventSet.workspace_id == workspace, EventSet.name == name)
    if but is not None:
        query = query.where(EventSet.id != but)
    return session.scalar(query) is not None


class Keep(Enum):
    """A clearable field left as it is (None clears it instead)."""

    KEEP = "keep"


KEEP = Keep.KEEP


def update_event_set(
    session: Session,
    event_set: EventSet,
    *,
    actor: str,
    name: str | None = None,
    advertiser_id: str | Keep | None = KEEP,
    lead_event_source: str | None = None,
    default_currency: str | Keep | None = KEEP,
    test_event_code: str | Keep | None = KEEP,
    limited_data_use: bool | None = None,
    max_event_age_days: float | Keep | None = KEEP,
) -> EventSet:
    """Changes what is given (None clears advertiser id, currency, test code or the age limit,
    which then is the event source's default; a name, lead event source or limited data use
    of None is left as it is, as they cannot be cleared)."""
    before = event_set_snapshot(event_set)
    if name is not None:
        name = _text("name", name, 100) or ""
        if _name_taken(session, event_set.workspace_id, name, but=event_set.id):
            raise InputRejected.one("name", f"an event set named {named(name)} exists")
        event_set.name = name
    if advertiser_id is not KEEP:
        advertiser = str(advertiser_id or "").strip() or None
        if advertiser is not None and not SOURCE_ID_PATTERN.fullmatch(advertiser):
            raise InputRejected.one("advertiser_id", "must be the TikTok advertiser ID (digits)")
        event_set.advertiser_id = advertiser
    if lead_event_source is not None:
        event_set.lead_event_source = _text("lead_event_source", lead_event_source, 64) or ""
    if default_currency is not KEEP:
        given = str(default_currency or "").strip()
        event_set.default_currency = _currency(given) if given else None
    if test_event_code is not KEEP:
        code = str(test_event_code or "")
        event_set.test_event_code = _text("test_event_code", code, 64, required=False)
    if limited_data_use is not None:
        event_set.limited_data_use = _flag("limited_data_use", limited_data_use)
    if max_event_age_days is not KEEP:
        event_set.max_event_age_days = checked_event_age(max_event_age_days)
    session.flush()
    after = event_set_snapshot(event_set)
    if after != before:
        audit.record(
            session,
            actor=actor,
            action="event_set.update",
            entity_type="event_set",
            entity_id=event_set.id,
            event_set_id=event_set.id,
            before=before,
            after=after,
            workspace_id=event_set.workspace_id,
        )
    return event_set


def get_event_set(session: Session, reference: str) -> EventSet:
    # Text no name can hold is not looked up (PostgreSQL refuses a NUL in a query).
    found = len(reference) <= 100 and is_plain_text(reference)
    event_set = find_event_set(session, reference) if found else None
    if event_set is None:
        raise InputRejected.one("event_set", f"unknown event set {named(reference)}")
    return event_set


def rotate_token(
    session: Session,
    settings: Settings,
    event_set: EventSet,
    token: str,
    *,
    actor: str,
    references_allowed: bool = False,
) -> None:
    """A new token resumes a set paused for token problems; held postbacks go out again.
    `references_allowed`: it may be an `env:` reference (the CLI operator's)."""
    token = _token(token)
    old_hint = token_hint(event_set.sealed_token, settings)
    event_set.sealed_token = seal_token(token, settings, references_allowed=references_allowed)
    audit.record(
        session,
        actor=actor,
        action="event_set.token",
        entity_type="event_set",
        entity_id=event_set.id,
        event_set_id=event_set.id,
        before={"access_token": old_hint},
        after={"access_token": "replaced"},
        workspace_id=event_set.workspace_id,
    )
    if event_set.status == EventSetStatus.PAUSED:
        resume(session, event_set, actor=actor)


def _record_status(
    session: Session | None, event_set: EventSet, actor: str, before: dict[str, str | None]
) -> None:
    if session is not None and event_set.id is not None:
        audit.record(
            session,
            actor=actor,
            action="event_set.pause"
            if event_set.status == EventSetStatus.PAUSED
            else "event_set.resume",
            entity_type="event_set",
            entity_id=event_set.id,
            event_set_id=event_set.id,
            before=before,
            after={"status": event_set.status, "paused_reason": event_set.paused_reason},
            workspace_id=event_set.workspace_id,
        )


def checked_reason(reason: str) -> str:
    """A pause reason typed by someone: one line of at most 500 characters."""
    return _text("reason", reason, 500) or ""


def pause(event_set: EventSet, reason: str, *, actor: str) -> None:
    before = {"status": event_set.status, "paused_reason": event_set.paused_reason}
    event_set.status = EventSetStatus.PAUSED
    event_set.paused_reason = reason
    _record_status(object_session(event_set), event_set, actor, before)


def resume(session: Session, event_set: EventSet, *, actor: str) -> None:
    before = {"status": event_set.status, "paused_reason": event_set.paused_reason}
    event_set.status = EventSetStatus.ACTIVE
    event_set.paused_reason = None
    # Rows held while paused become due now; their lease is cleared so the sweeper sends them.
    session.execute(
        update(Postback)
        .where(
            Postback.event_set_id == event_set.id,
            status_is_one_of(Postback.status, WAITING_STATUSES),
        )
        .values(lease_until=None)
        .execution_options(synchronize_session=False)
    )
    _record_status(session, event_set, actor, before)
