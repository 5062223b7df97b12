"""The ingest API with keys of two workspaces: neither reads nor changes the other's leads.

Workspace A is the default one (event set `acme`, TikTok ID EVENT_SET_ID); workspace B is
`globex` (event set `globex-crm`, its own TikTok ID). Key A stores lead L-victim; key B tries
to read it and to overwrite its match keys, as in the issue. Each test runs on SQLite and on
PostgreSQL, the worker inline (eager) against the simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.core.privacy import sha256_hex
from crm_postback.intake.trigger_intake import UNKNOWN_EVENT_SET
from crm_postback.simulator import SimulatorControl
from crm_postback.web.app import create_app
from models import DEFAULT_WORKSPACE_ID, Lead
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID  # type: ignore[import-not-found]
from tests.crm_postback.web.conftest import (  # type: ignore[import-not-found]
    OTHER_EVENT_SET_ID,
    OTHER_TOKEN,
    bearer,
    new_key,
    trigger,
)

VICTIM = "L-victim"
VICTIM_EMAIL = "victim.person@example.com"
VICTIM_TTCLID = "E.C.P.victim-click"
VICTIM_IP = "203.0.113.77"
VICTIM_UA = "Mozilla/5.0 (VictimOS 12; rv:99.0) VictimBrowser/99.0"
ATTACKER_TTCLID = "E.C.P.attacker-click"
ATTACKER_EMAILS = [f"attacker{i}@evil.example" for i in range(5)]


@pytest.fixture(params=["sqlite_db", "pg_db"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


class Tenants:
    def __init__(self, app_client: TestClient, key_a: str, key_b: str, b_id: int) -> None:
        self.client = app_client
        self.key_a = key_a
        self.key_b = key_b
        self.b_id = b_id

    def as_a(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, path, headers=bearer(self.key_a), **kwargs)

    def as_b(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, path, headers=bearer(self.key_b), **kwargs)


@pytest.fixture
def tenants(
    backend: str,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
    make_workspace: Callable[[str], int],
    make_event_set_in: Callable[..., int],
) -> Iterator[Tenants]:
    make_event_set()  # `acme` in the default workspace
    b_id = make_workspace("globex")
    simulator.register_event_set(OTHER_EVENT_SET_ID, OTHER_TOKEN, advertiser_id="7000000002")
    make_event_set_in(b_id, "globex-crm", OTHER_EVENT_SET_ID)
    key_a = new_key("acme-router")
    key_b = new_key("globex-router", b_id)
    with TestClient(create_app()) as client:
        yield Tenants(client, key_a, key_b, b_id)


def victim_submitted() -> dict[str, Any]:
    keys = {
        "email": VICTIM_EMAIL,
        "ttclid": VICTIM_TTCLID,
        "ip": VICTIM_IP,
        "user_agent": VICTIM_UA,
    }
    return trigger("lead.submitted", VICTIM, minutes_ago=30, match_keys=keys)


def lead_row(workspace_id: int, lead_ref: str) -> dict[str, Any] | None:
    with session_scope(workspace=workspace_id) as session:
        lead = session.scalars(select(Lead).where(Lead.lead_ref == lead_ref)).one_or_none()
        if lead is None:
            return None
        return {
            column.key: getattr(lead, column.key)
            for column in Lead.__table__.columns
            if column.key not in {"updated_at"}
        }


def test_key_b_cannot_read_or_overwrite_the_victims_lead(
    tenants: Tenants, simulator: SimulatorControl
) -> None:
    assert tenants.as_a("POST", "/v1/triggers", json=victim_submitted()).status_code == 202
    [lead_event] = simulator.events()
    before = lead_row(DEFAULT_WORKSPACE_ID, VICTIM)
    assert before is not None

    # B reads: exactly the answer for a lead nobody has, and nothing of A's.
    stolen = tenants.as_b("GET", f"/v1/leads/{VICTIM}/postbacks")
    nobody = tenants.as_b("GET", "/v1/leads/L-nobody-at-all/postbacks")
    assert stolen.status_code == nobody.status_code == 404
    assert stolen.json() == nobody.json()
    a_data = [
        VICTIM,
        VICTIM_TTCLID,
        VICTIM_IP,
        VICTIM_UA,
        sha256_hex(VICTIM_EMAIL),
        "acme",
        lead_event["request_id"],
        lead_event["event_id"],
    ]
    for value in a_data:
        assert value.encode() not in stolen.content

    # B writes: its own lead of that id, in its own workspace; A's lead is untouched.
    overwrite = {"match_keys": {"ttclid": ATTACKER_TTCLID, "email": ATTACKER_EMAILS}}
    assert tenants.as_b("PUT", f"/v1/leads/{VICTIM}", json=overwrite).status_code == 200
    assert lead_row(DEFAULT_WORKSPACE_ID, VICTIM) == before
    theirs = lead_row(tenants.b_id, VICTIM)
    assert theirs is not None and theirs["ttclid"] == ATTACKER_TTCLID
    assert theirs["id"] != before["id"]

    # A's next event carries A's ttclid and hashes only.
    sold = trigger("lead.sold", VICTIM, attributes={"value": 10})
    assert tenants.as_a("POST", "/v1/triggers", json=sold).status_code == 202
    [sold_event] = simulator.events(event="lead_sold")
    assert sold_event["event_source_id"] == EVENT_SET_ID
    user = sold_event["payload"]["user"]
    assert user["ttclid"] == VICTIM_TTCLID
    assert user["email"] == [sha256_hex(VICTIM_EMAIL)]
    sent = str(simulator.events())
    assert ATTACKER_TTCLID not in sent
    for email in ATTACKER_EMAILS:
        assert sha256_hex(email) not in sent

    # And A's history still shows only A's keys.
    history = tenants.as_a("GET", f"/v1/leads/{VICTIM}/postbacks").json()
    assert history["match_keys"]["ttclid"] == VICTIM_TTCLID
    assert history["match_keys"]["email_sha256"] == [sha256_hex(VICTIM_EMAIL)]


def test_key_b_cannot_send_to_an_event_set_of_workspace_a(
    tenants: Tenants, simulator: SimulatorControl
) -> None:
    answers = []
    for reference in ("acme", EVENT_SET_ID, "no-such-event-set"):
        item = trigger("lead.submitted", "L-1", match_keys={"ttclid": "x"})
        response = tenants.as_b("POST", "/v1/triggers", json={**item, "event_set": reference})
        assert response.status_code == 422
        answers.append(response.json())
    assert answers[0] == answers[1] == answers[2]
    [problem] = answers[0]["items"][0]["errors"]
    assert problem == {"pointer": "/event_set", "field": "event_set", "message": UNKNOWN_EVENT_SET}
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(Lead)).all() == []
    assert simulator.events() == []


def test_b_sends_to_its_own_event_set_and_the_same_lead_id_is_two_leads(
    tenants: Tenants, simulator: SimulatorControl
) -> None:
    tenants.as_a("POST", "/v1/triggers", json=victim_submitted())
    mine = trigger("lead.submitted", VICTIM, event_set="globex-crm", match_keys={"ttclid": "b"})
    answer = tenants.as_b("POST", "/v1/triggers", json=mine)
    assert answer.status_code == 202 and answer.json()["accepted"] == 1
    by_set = {e["event_source_id"]: e["payload"]["user"]["ttclid"] for e in simulator.events()}
    assert by_set == {EVENT_SET_ID: VICTIM_TTCLID, OTHER_EVENT_SET_ID: "b"}
    history_b = tenants.as_b("GET", f"/v1/leads/{VICTIM}/postbacks").json()
    assert history_b["match_keys"] == {"ttclid": "b"}
    [b_trigger] = history_b["triggers"]
    assert b_trigger["event_set"] == "globex-crm"


def test_two_keys_of_one_workspace_share_its_leads(
    tenants: Tenants, simulator: SimulatorControl
) -> None:
    landing_pages = new_key("landing-pages")
    late = {"match_keys": {"ttclid": "E.C.P.from-landing-pages"}}
    assert (
        tenants.client.put("/v1/leads/L-shared", json=late, headers=bearer(landing_pages))
    ).status_code == 200
    submitted = trigger("lead.submitted", "L-shared", match_keys={"email": VICTIM_EMAIL})
    assert tenants.as_a("POST", "/v1/triggers", json=submitted).status_code == 202
    [event] = simulator.events()
    assert event["payload"]["user"]["ttclid"] == "E.C.P.from-landing-pages"
    assert event["payload"]["user"]["email"] == [sha256_hex(VICTIM_EMAIL)]
    from_other_key = tenants.client.get(
        "/v1/leads/L-shared/postbacks", headers=bearer(landing_pages)
    )
    assert from_other_key.json() == tenants.as_a("GET", "/v1/leads/L-shared/postbacks").json()


def test_the_history_never_holds_the_raw_ip_or_user_agent(
    tenants: Tenants, simulator: SimulatorControl, make_event_set_in: Callable[..., int]
) -> None:
    # A Pixel event set sends the IP and user agent to TikTok unhashed, in the stored body.
    pixel_id = "CPIXEL0000000000001"
    simulator.register_event_set(pixel_id, OTHER_TOKEN, kind="web", advertiser_id="7000000001")
    make_event_set_in(DEFAULT_WORKSPACE_ID, "acme-pixel", pixel_id, kind="web")
    tenants.as_a("POST", "/v1/triggers", json=victim_submitted())
    pixel = {**victim_submitted(), "event_set": "acme-pixel", "idempotency_key": "pixel-1"}
    assert tenants.as_a("POST", "/v1/triggers", json=pixel).status_code == 202
    sent = [e for e in simulator.events() if e["event_source_id"] == pixel_id]
    assert sent and sent[0]["payload"]["user"]["ip"] == VICTIM_IP  # TikTok got it

    response = tenants.as_a("GET", f"/v1/leads/{VICTIM}/postbacks")
    assert response.status_code == 200
    for raw in (VICTIM_IP, VICTIM_UA, "VictimBrowser", "VictimOS"):
        assert raw.encode() not in response.content
    history = response.json()
    assert history["match_keys"]["ip"] == "203.0.113.x"
    assert history["match_keys"]["user_agent"] == "<present>"
    users = [p["payload"]["user"] for t in history["triggers"] for p in t["postbacks"]]
    assert {"ip": "203.0.113.x", "user_agent": "<present>"}.items() <= next(
        user for user in users if "ip" in user
    ).items()
