"""Read-only answers for operators: a lead's postback history and status counts.

A lead is named by (workspace, lead id): the history is read in a session scoped to one
workspace and shows only that workspace's lead. It never shows the raw IP address or user
agent (sent to TikTok unhashed for Pixel events): the IP is masked to its network
(`203.0.113.x`, `2001:db8:85a3::/48`), the user agent only said to be there (`<present>`), in
the lead's keys and in every stored event body alike.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_postback.tiktok.match_key_kinds import MatchKeyKind
from models import DeliveryAttempt, EventSet, Lead, Postback, Trigger
from models.workspace_scope import workspace_of

PRESENT = "<present>"
# The client details an event body carries unhashed (Pixel events), in its `user` object.
CLIENT_DETAILS = ("ip", "user_agent")


@dataclass
class AttemptView:
    attempted_at: datetime
    outcome: str
    http_status: int | None
    code: int | None
    message: str | None
    request_id: str | None
    batch_size: int


@dataclass
class PostbackView:
    id: int
    event_name: str | None
    event_id: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_code: int | None
    last_message: str | None
    last_request_id: str | None
    mapping_id: int | None
    mapping_version: int | None
    payload: dict[str, Any] | None
    delivered_at: datetime | None
    history: list[AttemptView] = field(default_factory=list)
    # The kinds of match key the event carries (or would have: no_match_key, consent_withdrawn)
    match_keys: list[str] = field(default_factory=list)


@dataclass
class TriggerView:
    id: int
    trigger_type: str
    event_set: str
    occurred_at: datetime
    received_at: datetime
    status: str
    error: str | None
    attributes: dict[str, Any]
    postbacks: list[PostbackView] = field(default_factory=list)
    event_id: str | None = None  # the caller's (Pixel's) event id, when it gave one
    dropped_keys: list[str] = field(default_factory=list)  # match keys dropped at the door


@dataclass
class LeadHistory:
    lead_ref: str
    known: bool  # a lead row (match keys) is stored
    match_keys: dict[str, Any]  # hashes and ids as stored; ip masked, user_agent PRESENT
    triggers: list[TriggerView]
    # Set once the lead withdrew consent: nothing of it is sent after this.
    consent_withdrawn_at: datetime | None = None

    @property
    def found(self) -> bool:
        """The workspace has this lead: its keys, or a trigger for it."""
        return self.known or bool(self.triggers)


def masked_ip(value: str) -> str:
    """The network an address is in, never the address: IPv4 to its /24 (`203.0.113.x`),
    IPv6 to its /48 (`2001:db8:85a3::/48`); anything else only `<present>`."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return PRESENT
    if isinstance(address, ipaddress.IPv4Address):
        return ".".join(str(address).split(".")[:3]) + ".x"
    if address.ipv4_mapped is not None:
        return masked_ip(str(address.ipv4_mapped))
    return str(ipaddress.ip_network(f"{address}/48", strict=False))


def _masked_client_details(details: dict[str, Any]) -> dict[str, Any]:
    masked = dict(details)
    if masked.get("ip"):
        masked["ip"] = masked_ip(str(masked["ip"]))
    if masked.get("user_agent"):
        masked["user_agent"] = PRESENT
    return masked


def _masked_payload(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(payload, dict):
        return payload
    user = payload.get("user")
    if not isinstance(user, dict) or not any(user.get(name) for name in CLIENT_DETAILS):
        return copy.deepcopy(payload)
    masked = copy.deepcopy(payload)
    masked["user"] = _masked_client_details(user)
    return masked


def find_lead_history(
    session: Session, lead_ref: str, event_set_ids: Collection[int] | None = None
) -> LeadHistory | None:
    """The lead's history in the session's workspace; None when the workspace has no such
    lead (no lead row and no trigger): the same whether another workspace has one or none.
    With `event_set_ids`, only the triggers and postbacks of those event sets (an API key
    limited to them learns nothing of the others)."""
    history = lead_history(session, lead_ref, event_set_ids)
    return history if history.found else None


def lead_history(
    session: Session, lead_ref: str, event_set_ids: Collection[int] | None = None
) -> LeadHistory:
    """Everything of one lead of the session's workspace (`found` False: nothing)."""
    workspace = workspace_of(session)
    only = (lambda column: column.in_(list(event_set_ids))) if event_set_ids is not None else None
    lead = session.scalar(
        select(Lead).where(Lead.workspace_id == workspace, Lead.lead_ref == lead_ref)
    )
    names: dict[int, str] = {
        row.id: row.name for row in session.execute(select(EventSet.id, EventSet.name))
    }
    trigger_query = select(Trigger).where(
        Trigger.workspace_id == workspace, Trigger.lead_ref == lead_ref
    )
    postback_query = select(Postback).where(
        Postback.workspace_id == workspace, Postback.lead_ref == lead_ref
    )
    if only is not None:
        trigger_query = trigger_query.where(only(Trigger.event_set_id))
        postback_query = postback_query.where(only(Postback.event_set_id))
    triggers = session.scalars(trigger_query.order_by(Trigger.occurred_at, Trigger.id)).all()
    postbacks = session.scalars(postback_query.order_by(Postback.id)).all()
    attempts = session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.postback_id.in_([p.id for p in postbacks]))
        .order_by(DeliveryAttempt.id)
    ).all()
    attempts_by_postback: dict[int, list[AttemptView]] = {}
    for a in attempts:
        attempts_by_postback.setdefault(a.postback_id, []).append(
            AttemptView(
                a.attempted_at,
                a.outcome,
                a.http_status,
                a.code,
                a.message,
                a.request_id,
                a.batch_size,
            )
        )
    views = {
        t.id: TriggerView(
            t.id,
            t.trigger_type,
            names.get(t.event_set_id, "?"),
            t.occurred_at,
            t.received_at,
            t.status,
            t.error,
            dict(t.attributes),
            event_id=t.event_id,
            dropped_keys=list(t.dropped_keys or []),
        )
        for t in triggers
    }
    for p in postbacks:
        view = PostbackView(
            p.id,
            p.event_name,
            p.event_id,
            p.status,
            p.attempts,
            p.next_attempt_at,
            p.last_code,
            p.last_message,
            p.last_request_id,
            p.mapping_id,
            p.mapping_version,
            _masked_payload(p.payload),
            p.delivered_at,
            attempts_by_postback.get(p.id, []),
            match_key_names(p.match_key_mask),
        )
        if p.trigger_id in views:
            views[p.trigger_id].postbacks.append(view)
    keys: dict[str, Any] = {}
    if lead is not None:
        keys = {
            "ttclid": lead.ttclid,
            "tiktok_lead_id": lead.tiktok_lead_id,
            "email_sha256": lead.email_hashes,
            "phone_sha256": lead.phone_hashes,
            "external_id_sha256": lead.external_id_hashes,
            "ip": lead.ip,
            "user_agent": lead.user_agent,
            "ttp": lead.ttp,
            "first_name_sha256": lead.first_name_hash,
            "last_name_sha256": lead.last_name_hash,
            "city_sha256": lead.city_hash,
            "state_sha256": lead.state_hash,
            "country_sha256": lead.country_hash,
            "zip_code_sha256": lead.zip_code_hash,
            "locale": lead.locale,
            "page_url": lead.page_url,
            "page_referrer": lead.page_referrer,
            "limited_data_use": lead.limited_data_use,
        }
        keys = _masked_client_details({k: v for k, v in keys.items() if v is not None and v != []})
        keys = {k: v for k, v in keys.items() if v != ""}
    return LeadHistory(
        lead_ref,
        lead is not None,
        keys,
        list(views.values()),
        consent_withdrawn_at=lead.consent_withdrawn_at if lead is not None else None,
    )


def match_key_names(mask: int | None) -> list[str]:
    """`postbacks.match_key_mask` as key kind names (`email`, `lead_id`, ...)."""
    if not mask:
        return []
    return [kind.name.lower() for kind in MatchKeyKind if kind in MatchKeyKind(mask) and kind.name]


def status_counts(session: Session) -> dict[str, dict[str, int]]:
    """{event set name: {status: count}} over the outbox."""
    rows = session.execute(
        select(EventSet.name, Postback.status, func.count())
        .join(EventSet, EventSet.id == Postback.event_set_id)
        .group_by(EventSet.name, Postback.status)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for name, status, count in rows:
        counts.setdefault(name, {})[status] = count
    return counts


def trigger_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Trigger.status, func.count()).group_by(Trigger.status)).all()
    return dict(rows)
