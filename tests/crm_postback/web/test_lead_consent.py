"""`POST /v1/leads/{lead_id}/consent-withdrawal`: the permission, the workspace, no echo, and
what it does to the lead's postbacks (seen through the lead's history)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.simulator import SimulatorControl
from crm_postback.web.app import create_app
from models import AuditEntry, PostbackStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.web.conftest import (  # type: ignore[import-not-found]
    OTHER_EVENT_SET_ID,
    bearer,
    new_key,
    submitted,
    trigger,
)

PATH = "/v1/leads/{}/consent-withdrawal"


@pytest.fixture
def api(
    any_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> TestClient:
    make_event_set()
    with TestClient(create_app()) as client:
        return client


def test_withdrawal_stops_what_waits_and_later_triggers_show_in_history(
    api: TestClient, simulator: SimulatorControl
) -> None:
    key = new_key("router")
    simulator.set_faults(http_5xx_rate=1.0)
    assert api.post("/v1/triggers", json=submitted("L-1"), headers=bearer(key)).status_code == 202
    answer = api.post(PATH.format("L-1"), headers=bearer(key))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "consent_withdrawn"
    assert (body["already_withdrawn"], body["postbacks_stopped"]) == (False, 1)
    assert "L-1" not in answer.text
    simulator.set_faults(http_5xx_rate=0.0)
    later = trigger("lead.sold", "L-1", attributes={"value": 4})
    assert api.post("/v1/triggers", json=later, headers=bearer(key)).status_code == 202
    assert simulator.count_events() == 0
    history = api.get("/v1/leads/L-1/postbacks", headers=bearer(key)).json()
    postbacks = [p for t in history["triggers"] for p in t["postbacks"]]
    assert [p["status"] for p in postbacks] == [PostbackStatus.CONSENT_WITHDRAWN] * 2
    assert all("withdrew consent" in (p["last_message"] or "") for p in postbacks)

    again = api.post(PATH.format("L-1"), headers=bearer(key)).json()
    assert again["already_withdrawn"] is True and again["postbacks_stopped"] == 0
    assert again["consent_withdrawn_at"] == body["consent_withdrawn_at"]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        actors = session.scalars(
            select(AuditEntry.actor).where(AuditEntry.action == "lead.consent_withdrawn")
        ).all()
    assert len(actors) == 1 and actors[0].startswith("api-key:")


def test_needs_leads_write(api: TestClient) -> None:
    api.post("/v1/triggers", json=submitted("L-1"), headers=bearer(new_key("full")))
    reader = new_key("reader", permissions=["postbacks:read", "triggers:send"])
    for lead in ("L-1", "L-nobody"):
        answer = api.post(PATH.format(lead), headers=bearer(reader))
        assert answer.status_code == 403
        assert "leads:write" in answer.text and lead not in answer.text
    assert api.post(PATH.format("L-1")).status_code == 401


def test_unknown_and_other_workspace_leads_are_the_same_404_without_echo(
    api: TestClient,
    make_workspace: Callable[[str], int],
    make_event_set_in: Callable[..., int],
) -> None:
    globex = make_workspace("globex")
    make_event_set_in(globex, "globex-set", OTHER_EVENT_SET_ID)
    theirs = new_key("theirs", workspace_id=globex)
    mine = new_key("mine")
    body = submitted("L-secret-7") | {"event_set": "globex-set"}
    assert api.post("/v1/triggers", json=body, headers=bearer(theirs)).status_code == 202
    answers = [
        api.post(PATH.format(lead), headers=bearer(mine)) for lead in ("L-secret-7", "L-nope-9")
    ]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].json() == answers[1].json()
    assert "L-secret-7" not in answers[0].text
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert not session.scalars(
            select(AuditEntry).where(AuditEntry.action == "lead.consent_withdrawn")
        ).all()


@pytest.mark.parametrize("lead", ["a%40b.example.com", "%2B12133734253", "x" * 129])
def test_a_bad_lead_id_is_422_without_echo(api: TestClient, lead: str) -> None:
    answer = api.post(PATH.format(lead), headers=bearer(new_key("router")))
    assert answer.status_code in (404, 422)
    assert "b.example.com" not in answer.text and "2133734253" not in answer.text
