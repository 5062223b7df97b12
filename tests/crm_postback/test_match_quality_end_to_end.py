"""Issue 15's lifecycle through a real worker, Redis and PostgreSQL to the simulator over HTTP:
every match key, a web event set's landing page and locale, limited data use set on the event
set and overridden per lead and per trigger, consent withdrawn, a Pixel event id, a bad phone
and a lead known only by its TikTok lead id. Each event must arrive as exactly the JSON that
docs/payloads.md documents (the README links it), `event_time` aside: that one is checked
against the trigger's `occurred_at`, then set to the documented value."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm_postback.api import enqueue_trigger, upsert_lead_keys, withdraw_consent
from crm_postback.core.errors import FieldError
from crm_postback.simulator import SimulatorControl
from crm_postback.tiktok.events_payload import make_event_id
from models import EventSet, Postback, PostbackStatus, Trigger
from models.db import session_scope
from models.postbacks import FINAL_STATUSES
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID, WorkerProcess, wait_for  # type: ignore[import-not-found]

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "docs" / "payloads.md"
README = ROOT / "README.md"
PIXEL_ID = "CPIXEL0000000000001"
PIXEL_TOKEN = "pixel-token-abcdef-123456"
DOCUMENTED_EVENT_TIME = 1767225600
StartWorker = Callable[..., WorkerProcess]
Payload = dict[str, Any]

# When each trigger happened: whole seconds, so `event_time` is known exactly.
NOW = datetime.now(UTC).replace(microsecond=0)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def trigger(kind: str, lead: str, event_set: str, minutes_ago: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "lead_id": lead,
        "event_set": event_set,
        "occurred_at": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "idempotency_key": f"{lead}:{kind}",
        **extra,
    }


def postbacks() -> dict[tuple[str, str | None], Postback]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = session.scalars(select(Postback).order_by(Postback.id)).all()
        session.expunge_all()
    return {(row.lead_ref, row.event_name): row for row in rows}


def all_final() -> bool:
    return all(row.status in FINAL_STATUSES for row in postbacks().values())


def json_blocks(document: Path) -> list[Payload]:
    text = document.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"^```json\n(.*?)^```", text, re.M | re.S)]


def documented_events(document: Path) -> dict[str, Payload]:
    """The JSON blocks of a document that are TikTok events, by event_id (each once)."""
    events = [block for block in json_blocks(document) if "event_time" in block]
    by_id = {event["event_id"]: event for event in events}
    assert len(by_id) == len(events), "an event id is documented twice"
    return by_id


def documented_triggers(document: Path) -> list[Payload]:
    """The JSON blocks of a document that are triggers."""
    return [block for block in json_blocks(document) if "type" in block]


EVERY_CRM_KEY = {
    "email": "  Alice.Example@Example.COM ",
    "phone": "+1 (213) 373-4253",
    "external_id": "crm-100",
    "ttclid": "E.C.P.crm-click-100",
    "first_name": " Alice ",
    "last_name": "Example",
    "city": "San Francisco",
    "state": "CA",
    "country": "US",
    "zip_code": "94103",
    "tiktok_lead_id": "7311111111111111111",
}
EVERY_WEB_KEY = {
    "email": "erin@example.com",
    "phone": "+44 20 7946 0958",
    "external_id": "web-600",
    "ttclid": "E.C.P.given-separately",
    "ttp": "2Kx8b3L0F1nTq",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    "first_name": "Erin",
    "last_name": "O'Neil",
    "city": "London",
    "state": "England",
    "country": "GB",
    "zip_code": "SW1A 1AA",
    "locale": "en-GB",
    "page": {
        "url": "https://landing.example.com/offer?utm_source=tiktok&ttclid=E.C.P.from-url#form",
        "referrer": "https://www.tiktok.com/",
    },
}


@pytest.fixture
def event_sets(make_event_set: Callable[..., int], simulator: SimulatorControl) -> dict[str, int]:
    crm = make_event_set(
        name="acme-crm",
        lead_event_source="AcmeLeads",
        limited_data_use=True,  # the event set's default: leads and triggers may override it
        mappings=(
            {"trigger_type": "lead.submitted", "event_name": "Lead"},
            {
                "trigger_type": "lead.sold",
                "event_name": "lead_sold",
                "properties": {"value_from": "value", "currency": "USD"},
            },
        ),
    )
    simulator.register_event_set(PIXEL_ID, PIXEL_TOKEN, kind="web", advertiser_id="7000000001")
    web = make_event_set(
        name="acme-pixel",
        source_id=PIXEL_ID,
        token=PIXEL_TOKEN,
        kind="web",
        mappings=({"trigger_type": "lead.submitted", "event_name": "Lead"},),
    )
    return {"crm": crm, "web": web}


def test_every_key_consent_and_pixel_id_arrive_as_documented(
    start_worker: StartWorker, simulator: SimulatorControl, event_sets: dict[str, int]
) -> None:
    start_worker()
    crm, web = event_sets["crm"], event_sets["web"]
    sent: list[dict[str, Any]] = []

    def send(document: dict[str, Any]) -> tuple[FieldError, ...]:
        sent.append(document)
        return enqueue_trigger(document).warnings

    # Every key on a CRM event set whose default is limited data use; the sale overrides it.
    assert send(trigger("lead.submitted", "L-100", "acme-crm", 50, match_keys=EVERY_CRM_KEY)) == ()
    send(
        trigger(
            "lead.sold", "L-100", "acme-crm", 40, attributes={"value": 42.5}, limited_data_use=False
        )
    )
    # The lead's own choice beats the event set's; the trigger's beats the lead's.
    stored = upsert_lead_keys("L-200", {"email": "bob@example.com"}, limited_data_use=False)
    assert stored.warnings == ()
    send(trigger("lead.submitted", "L-200", "acme-crm", 30))
    send(
        trigger(
            "lead.sold", "L-200", "acme-crm", 20, attributes={"value": 10}, limited_data_use=True
        )
    )
    # A phone that cannot be a number is dropped with a warning; the email still goes.
    warnings = send(
        trigger(
            "lead.submitted",
            "L-400",
            "acme-crm",
            25,
            match_keys={"email": "dan@example.com", "phone": "+2132435345"},
        )
    )
    assert [warning.field for warning in warnings] == ["match_keys.phone"]
    assert warnings[0].message == "not a possible number (default region US); dropped"
    # Only a TikTok lead id: a `lead` object and no `user`.
    send(
        trigger(
            "lead.submitted",
            "L-500",
            "acme-crm",
            15,
            match_keys={"tiktok_lead_id": "7322222222222222222"},
        )
    )
    # A web event set: landing page, locale, browser keys and the Pixel's own event id.
    send(
        trigger(
            "lead.submitted",
            "L-600",
            "acme-pixel",
            10,
            event_id="pixel-evt-600",
            match_keys=EVERY_WEB_KEY,
        )
    )
    # Consent: the first event goes; after the withdrawal nothing more does.
    send(trigger("lead.submitted", "L-300", "acme-crm", 35, match_keys={"email": "cy@example.com"}))
    first = make_event_id(crm, "L-300:lead.submitted", "Lead")
    simulator.wait_for_events(1, timeout=30, event_id=first)
    wait_for(
        lambda: postbacks()["L-300", "Lead"].status == PostbackStatus.DELIVERED,
        what="the first event of L-300 to be delivered",
    )
    withdrawn = withdraw_consent("L-300")
    assert (withdrawn.already_withdrawn, withdrawn.postbacks_stopped) == (False, 0)
    send(trigger("lead.sold", "L-300", "acme-crm", 5, attributes={"value": 99}))

    received = simulator.wait_for_events(8, timeout=60)
    wait_for(
        lambda: len(postbacks()) == 9 and all_final(), timeout=30, what="every postback to end"
    )
    rows = postbacks()
    assert rows["L-300", "lead_sold"].status == PostbackStatus.CONSENT_WITHDRAWN
    message = rows["L-300", "lead_sold"].last_message or ""
    assert message.startswith("the lead withdrew consent at ") and message.endswith("; not sent")
    delivered = [key for key, row in rows.items() if row.status == PostbackStatus.DELIVERED]
    assert len(delivered) == 8, {key: row.status for key, row in rows.items()}
    time.sleep(1.5)  # a sweep or two: still nothing for the withdrawn lead's sale
    assert simulator.count_events() == 8
    stats = simulator.stats()
    # Each event passed the contract at its first request: no refusal, retry or duplicate.
    assert set(stats["requests_by_code"]) == {"0"}
    assert (stats["events_accepted"], stats["events_duplicate"]) == (8, 0)
    assert not simulator.events(event="lead_sold", event_id=rows["L-300", "lead_sold"].event_id)

    with session_scope(workspace=ALL_WORKSPACES) as session:
        dropped = session.scalars(
            select(Trigger.dropped_keys).where(Trigger.lead_ref == "L-400")
        ).one()
        source_ids = {
            row.id: row.source_id
            for row in session.execute(select(EventSet.id, EventSet.source_id))
        }
    assert dropped == ["phone"]
    assert source_ids == {crm: EVENT_SET_ID, web: PIXEL_ID}

    arrived = {event["payload"]["event_id"]: event for event in received}
    assert len(arrived) == 8
    occurred = {
        row.event_id: int((NOW - timedelta(minutes=minutes)).timestamp())
        for (lead, name), minutes in {
            ("L-100", "Lead"): 50,
            ("L-100", "lead_sold"): 40,
            ("L-200", "Lead"): 30,
            ("L-200", "lead_sold"): 20,
            ("L-300", "Lead"): 35,
            ("L-400", "Lead"): 25,
            ("L-500", "Lead"): 15,
            ("L-600", "Lead"): 10,
        }.items()
        for row in [rows[lead, name]]
    }
    payloads: dict[str, Payload] = {}
    for event_id, event in arrived.items():
        payload = dict(event["payload"])
        assert payload["event_time"] == occurred[event_id], event_id
        payload["event_time"] = DOCUMENTED_EVENT_TIME
        payloads[event_id] = payload
    assert arrived["pixel-evt-600"]["event_source_id"] == PIXEL_ID
    assert {e["event_source_id"] for i, e in arrived.items() if i != "pixel-evt-600"} == {
        EVENT_SET_ID
    }

    _check_the_meaning(payloads, crm)
    assert payloads == documented_events(PAYLOADS)
    as_documented = [{k: v for k, v in t.items() if k != "occurred_at"} for t in sent]
    assert sorted(as_documented, key=_order) == sorted(documented_triggers(PAYLOADS), key=_order)
    # The README links this page and shows one of its events: byte for byte what arrived.
    assert "docs/payloads.md" in README.read_text(encoding="utf-8")
    in_readme = documented_events(README)
    assert in_readme and all(payloads.get(i) == event for i, event in in_readme.items())


def _order(trigger: Payload) -> tuple[str, str]:
    return trigger["lead_id"], trigger["type"]


def _check_the_meaning(payloads: dict[str, Payload], crm: int) -> None:
    """What the documented JSON must say, worked out from the inputs (so the document is
    not merely a copy of what arrived)."""

    def crm_event(lead: str, kind: str, name: str) -> Payload:
        return payloads[make_event_id(crm, f"{lead}:{kind}", name)]

    every = crm_event("L-100", "lead.submitted", "Lead")
    assert every["lead"] == {"lead_id": "7311111111111111111", "lead_event_source": "AcmeLeads"}
    assert every["user"] == {
        "ttclid": "E.C.P.crm-click-100",
        "email": [sha256("alice.example@example.com")],
        "phone": [sha256("+12133734253")],
        "external_id": [sha256("crm-100")],
        "first_name": sha256("alice"),
        "last_name": sha256("example"),
        "city": sha256("sanfrancisco"),
        "state": sha256("ca"),
        "country": sha256("us"),
        "zip_code": sha256("94103"),
    }
    assert "page" not in every and "locale" not in every["user"]  # web event sets only
    assert every["limited_data_use"] is True  # the event set's default
    sale = crm_event("L-100", "lead.sold", "lead_sold")
    assert sale["limited_data_use"] is False  # the trigger's override
    assert sale["properties"] == {"value": 42.5, "currency": "USD"}
    assert crm_event("L-200", "lead.submitted", "Lead")["limited_data_use"] is False  # the lead's
    assert crm_event("L-200", "lead.sold", "lead_sold")["limited_data_use"] is True  # trigger's
    bad_phone = crm_event("L-400", "lead.submitted", "Lead")
    assert bad_phone["user"] == {"email": [sha256("dan@example.com")]}
    assert "lead" not in bad_phone  # no TikTok lead id: no lead object
    only_lead_id = crm_event("L-500", "lead.submitted", "Lead")
    assert "user" not in only_lead_id
    assert only_lead_id["lead"] == {
        "lead_id": "7322222222222222222",
        "lead_event_source": "AcmeLeads",
    }
    web = payloads["pixel-evt-600"]
    assert web["event_id"] == "pixel-evt-600"
    assert "lead" not in web
    assert web["limited_data_use"] is False
    assert web["user"] == {
        "ttclid": "E.C.P.from-url",  # the landing page's wins over the one given beside it
        "email": [sha256("erin@example.com")],
        "phone": [sha256("+442079460958")],
        "external_id": [sha256("web-600")],
        "first_name": sha256("erin"),
        "last_name": sha256("oneil"),
        "city": sha256("london"),
        "state": sha256("england"),
        "country": sha256("gb"),
        "zip_code": sha256("sw1a1aa"),
        "ttp": "2Kx8b3L0F1nTq",
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "locale": "en-GB",
    }
    assert web["page"] == {  # the fragment dropped
        "url": "https://landing.example.com/offer?utm_source=tiktok&ttclid=E.C.P.from-url",
        "referrer": "https://www.tiktok.com/",
    }
