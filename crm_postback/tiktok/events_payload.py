"""The exact JSON TikTok receives: one data[] item per postback, and the request envelope."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Protocol

from crm_postback.tiktok.match_key_kinds import IDENTIFYING, MatchKeyKind


class LeadKeys(Protocol):
    ttclid: str | None
    ttp: str | None
    ip: str | None
    user_agent: str | None
    tiktok_lead_id: str | None
    email_hashes: list[str]
    phone_hashes: list[str]
    external_id_hashes: list[str]


# Hashed at the door (SHA-256 hex); sent under `user` for every event source.
HASHED_SCALAR_KEYS = (
    ("first_name", "first_name_hash"),
    ("last_name", "last_name_hash"),
    ("city", "city_hash"),
    ("state", "state_hash"),
    ("country", "country_hash"),
    ("zip_code", "zip_code_hash"),
)
# The lead's column beside each `user` key of a web event set's events only.
WEB_USER_KEYS = (("ttp", "ttp"), ("ip", "ip"), ("user_agent", "user_agent"), ("locale", "locale"))

NO_KEYS = MatchKeyKind(0)
# Plain ints: IntFlag arithmetic costs a few microseconds an event.
_USER_KEY_BITS = {
    "email": MatchKeyKind.EMAIL.value,
    "phone": MatchKeyKind.PHONE.value,
    "external_id": MatchKeyKind.EXTERNAL_ID.value,
    "ttclid": MatchKeyKind.TTCLID.value,
    "ttp": MatchKeyKind.TTP.value,
    "ip": MatchKeyKind.IP.value,
    "user_agent": MatchKeyKind.USER_AGENT.value,
    "first_name": MatchKeyKind.FIRST_NAME.value,
    "last_name": MatchKeyKind.LAST_NAME.value,
    "city": MatchKeyKind.CITY.value,
    "state": MatchKeyKind.STATE.value,
    "country": MatchKeyKind.COUNTRY.value,
    "zip_code": MatchKeyKind.ZIP_CODE.value,
    "locale": MatchKeyKind.LOCALE.value,
}
_LEAD_ID_BIT = MatchKeyKind.LEAD_ID.value
_PAGE_URL_BIT = MatchKeyKind.PAGE_URL.value


class NoMatchKey(ValueError):
    """The event would carry no key that identifies anyone (`match_key_kinds.IDENTIFYING`).

    `mask`: the kinds it does carry (names, address parts, ip...), for the match-quality score.
    """

    def __init__(self, message: str, mask: MatchKeyKind = NO_KEYS) -> None:
        super().__init__(message)
        self.mask = mask


def make_event_id(event_set_id: int, occurrence_key: str, event_name: str) -> str:
    """Same lead + trigger occurrence + event -> same id, so TikTok drops a retried copy."""
    digest = hashlib.sha256(f"{event_set_id}|{occurrence_key}|{event_name}".encode()).hexdigest()
    return digest[:40]


def resolve_limited_data_use(
    trigger_value: bool | None, lead_value: bool | None, event_set_default: bool
) -> bool:
    """The trigger's choice, else the lead's, else the event set's default."""
    if trigger_value is not None:
        return trigger_value
    if lead_value is not None:
        return lead_value
    return bool(event_set_default)


def build_user(lead: LeadKeys, event_source: str) -> dict[str, Any]:
    user: dict[str, Any] = {}
    if lead.ttclid:
        user["ttclid"] = lead.ttclid
    if lead.email_hashes:
        user["email"] = list(lead.email_hashes)
    if lead.phone_hashes:
        user["phone"] = list(lead.phone_hashes)
    if lead.external_id_hashes:
        user["external_id"] = list(lead.external_id_hashes)
    for key, column in HASHED_SCALAR_KEYS:
        value = getattr(lead, column, None)
        if value:
            user[key] = value
    if event_source == "web":
        for key, column in WEB_USER_KEYS:
            value = getattr(lead, column, None)
            if value:
                user[key] = value
    return user


def build_page(lead: LeadKeys, event_source: str) -> dict[str, str]:
    """The landing page (`page.url`, `page.referrer`): web event sets only."""
    if event_source != "web":
        return {}
    page = {}
    for key, column in (("url", "page_url"), ("referrer", "page_referrer")):
        value = getattr(lead, column, None)
        if value:
            page[key] = value
    return page


def match_key_mask(event: dict[str, Any]) -> MatchKeyKind:
    """The kinds of match key a built event carries (the bits of `postbacks.match_key_mask`)."""
    bits = 0
    for key in event.get("user") or ():
        bits |= _USER_KEY_BITS.get(key, 0)
    if (event.get("lead") or {}).get("lead_id"):
        bits |= _LEAD_ID_BIT
    if (event.get("page") or {}).get("url"):
        bits |= _PAGE_URL_BIT
    return MatchKeyKind(bits)


def _missing_identifier(event_source: str, mask: MatchKeyKind) -> str:
    wanted = (
        "email, phone, external_id, ttclid or ttp"
        if event_source == "web"
        else "email, phone, external_id, ttclid or tiktok_lead_id"
    )
    message = f"match_keys: the lead has no {wanted}"
    carried = [kind.name.lower() for kind in MatchKeyKind if kind in mask and kind.name]
    if carried:
        message += (
            f" (it has only {', '.join(carried)}: these narrow a match down but identify no one)"
        )
    return message + "; not sent"


def build_event(
    *,
    event_source: str,
    lead_event_source: str,
    lead: LeadKeys,
    event_name: str,
    event_id: str,
    occurred_at: datetime,
    properties: dict[str, Any],
    limited_data_use: bool = False,
) -> dict[str, Any]:
    """One data[] item. Raises `NoMatchKey` when it would carry no identifying key."""
    event: dict[str, Any] = {
        "event": event_name,
        "event_time": int(occurred_at.timestamp()),
        "event_id": event_id,
    }
    user = build_user(lead, event_source)
    if user:  # never an empty object: a CRM event may carry only lead.lead_id (contract §2)
        event["user"] = user
    if event_source == "crm" and lead.tiktok_lead_id:
        event["lead"] = {"lead_id": lead.tiktok_lead_id, "lead_event_source": lead_event_source}
    page = build_page(lead, event_source)
    if page:
        event["page"] = page
    if properties:
        event["properties"] = dict(properties)
    event["limited_data_use"] = bool(limited_data_use)
    mask = match_key_mask(event)
    if not mask & IDENTIFYING:
        raise NoMatchKey(_missing_identifier(event_source, mask), mask)
    return event


def build_request(
    *,
    event_source: str,
    event_source_id: str,
    events: list[dict[str, Any]],
    test_event_code: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"event_source": event_source, "event_source_id": event_source_id}
    if test_event_code:
        body["test_event_code"] = test_event_code
    body["data"] = events
    return body
