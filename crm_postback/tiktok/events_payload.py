"""The exact JSON TikTok receives: one data[] item per postback, and the request envelope."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Protocol


class LeadKeys(Protocol):
    ttclid: str | None
    ttp: str | None
    ip: str | None
    user_agent: str | None
    tiktok_lead_id: str | None
    email_hashes: list[str]
    phone_hashes: list[str]
    external_id_hashes: list[str]


class NoMatchKey(ValueError):
    pass


def make_event_id(event_set_id: int, occurrence_key: str, event_name: str) -> str:
    """Same lead + trigger occurrence + event -> same id, so TikTok drops a retried copy."""
    digest = hashlib.sha256(f"{event_set_id}|{occurrence_key}|{event_name}".encode()).hexdigest()
    return digest[:40]


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
    if event_source == "web":
        for key in ("ttp", "ip", "user_agent"):
            value = getattr(lead, key)
            if value:
                user[key] = value
    return user


def build_event(
    *,
    event_source: str,
    lead_event_source: str,
    lead: LeadKeys,
    event_name: str,
    event_id: str,
    occurred_at: datetime,
    properties: dict[str, Any],
) -> dict[str, Any]:
    user = build_user(lead, event_source)
    has_lead_id = event_source == "crm" and bool(lead.tiktok_lead_id)
    if not has_lead_id and not ({"ttclid", "email", "phone", "external_id"} & user.keys()):
        raise NoMatchKey(
            "match_keys: the lead has no ttclid, email, phone, external_id or tiktok_lead_id"
        )
    event: dict[str, Any] = {
        "event": event_name,
        "event_time": int(occurred_at.timestamp()),
        "event_id": event_id,
    }
    if user:  # `user` is optional: a CRM event may carry only lead.lead_id (contract §2)
        event["user"] = user
    if event_source == "crm":
        lead_object = {"lead_event_source": lead_event_source}
        if lead.tiktok_lead_id:
            lead_object = {"lead_id": lead.tiktok_lead_id, **lead_object}
        event["lead"] = lead_object
    if properties:
        event["properties"] = dict(properties)
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
