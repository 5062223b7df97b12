"""PUT /v1/leads/{lead_id} (match keys, hashed on arrival) and GET .../postbacks (history)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.core.privacy import sha256_hex
from crm_postback.simulator import SimulatorControl
from models import Lead, Trigger, TriggerStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.web.conftest import (  # type: ignore[import-not-found]
    RAW_EMAIL,
    RAW_FORMS,
    RAW_PHONE,
    submitted,
    trigger,
)


def lead(lead_ref: str) -> Lead:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        found = session.scalars(select(Lead).where(Lead.lead_ref == lead_ref)).one()
        session.expunge(found)
        return found


def test_upsert_hashes_keys_and_merges_them(client: TestClient) -> None:
    response = client.put("/v1/leads/L-1", json={"match_keys": {"email": RAW_EMAIL}})
    assert response.status_code == 200
    assert response.json() == {"lead_id": "L-1", "status": "stored", "warnings": []}
    response = client.put(
        "/v1/leads/L-1", json={"match_keys": {"phone": RAW_PHONE, "ttclid": "E.C.P.late"}}
    )
    assert response.status_code == 200
    stored = lead("L-1")
    assert stored.email_hashes == [sha256_hex(RAW_EMAIL.strip().lower())]
    assert stored.phone_hashes == [sha256_hex("+12133734253")]
    assert stored.ttclid == "E.C.P.late"


def test_a_lead_id_with_a_slash_or_spaces_is_one_path_segment(client: TestClient) -> None:
    response = client.put("/v1/leads/acme%2F17%20b", json={"match_keys": {"ttclid": "x"}})
    assert response.status_code == 200
    assert lead("acme/17 b").ttclid == "x"
    assert client.get("/v1/leads/acme%2F17%20b/postbacks").json()["known"] is True


def test_bad_keys_are_422_with_pointers_and_no_values(client: TestClient) -> None:
    response = client.put(
        "/v1/leads/L-1",
        json={"match_keys": {"phone": RAW_PHONE + " x", "email": "jane@", "favourite": 1}},
    )
    assert response.status_code == 422
    errors = {e["pointer"]: e["message"] for e in response.json()["errors"]}
    assert errors == {"/match_keys/favourite": "is not a known field"}
    keys = {"match_keys": {"phone": RAW_PHONE + " x", "email": "jane@"}}
    response = client.put("/v1/leads/L-1?strict=true", json=keys)
    assert response.status_code == 422
    errors = {e["pointer"]: e["message"] for e in response.json()["errors"]}
    assert errors == {
        "/match_keys/email": "not an email address",
        "/match_keys/phone": "contains letters",
    }
    for raw in RAW_FORMS:
        assert raw not in response.text
    # Without strict: stored without them, each named in a warning.
    response = client.put("/v1/leads/L-1", json={"match_keys": {**keys["match_keys"], "ttp": "t"}})
    assert response.status_code == 200
    warnings = {w["pointer"]: w["message"] for w in response.json()["warnings"]}
    assert warnings == {
        "/match_keys/email": "not an email address; dropped",
        "/match_keys/phone": "contains letters; dropped",
    }
    for raw in RAW_FORMS:
        assert raw not in response.text
    assert lead("L-1").ttp == "t" and lead("L-1").phone_hashes == []


def test_empty_keys_or_a_blank_lead_id_are_422(client: TestClient) -> None:
    response = client.put("/v1/leads/L-1", json={"match_keys": {}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/match_keys"
    response = client.put("/v1/leads/%20", json={"match_keys": {"ttclid": "x"}})
    assert response.status_code == 422
    assert response.json()["errors"][0] == {
        "pointer": None,
        "field": "path.lead_id",
        "message": "String should have at least 1 character",
    }
    response = client.put("/v1/leads/" + "x" * 200, json={"match_keys": {"ttclid": "x"}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] is None
    assert "x" * 20 not in response.text


def test_a_waiting_trigger_goes_out_once_its_keys_arrive(
    ready: SimulatorControl, client: TestClient
) -> None:
    client.post("/v1/triggers", json=trigger("lead.sold", "late", attributes={"value": 3}))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        waiting = session.scalars(select(Trigger)).one()
    assert waiting.status == TriggerStatus.WAITING_FOR_LEAD
    assert (
        client.put("/v1/leads/late", json={"match_keys": {"email": RAW_EMAIL}}).status_code == 200
    )
    from worker.tasks import process_triggers

    process_triggers([waiting.id])
    assert [e["event"] for e in ready.events()] == ["lead_sold"]


def test_history_shows_postbacks_with_tiktok_codes(
    ready: SimulatorControl, client: TestClient
) -> None:
    client.post("/v1/triggers", json=submitted())
    client.post("/v1/triggers", json=trigger("buyer.accepted", attributes={"buyer_id": "B9"}))
    response = client.get("/v1/leads/L-1/postbacks")
    assert response.status_code == 200
    history = response.json()
    assert history["lead_ref"] == "L-1" and history["known"] is True
    assert history["match_keys"]["email_sha256"] == [sha256_hex(RAW_EMAIL.lower())]
    submitted_trigger, custom = history["triggers"]
    [postback] = submitted_trigger["postbacks"]
    [sent] = ready.events()
    assert postback["status"] == "delivered" and postback["event_name"] == "Lead"
    assert postback["last_code"] == 0 and postback["last_request_id"] == sent["request_id"]
    assert postback["history"][0]["code"] == 0
    assert postback["history"][0]["http_status"] == 200
    assert custom["postbacks"][0]["status"] == "unmapped"
    assert "buyer.accepted" in custom["postbacks"][0]["last_message"]
    for raw in RAW_FORMS:
        assert raw not in response.text


def test_history_of_an_unknown_lead_is_404_naming_the_path(client: TestClient) -> None:
    response = client.get("/v1/leads/nobody/postbacks")
    assert response.status_code == 404
    assert response.json() == {
        "errors": [
            {
                "pointer": None,
                "field": "path.lead_id",
                "message": "no lead of this id in the API key's workspace",
            }
        ]
    }
    assert "nobody" not in response.text


def test_every_key_dropped_answers_nothing_stored_and_keeps_the_lead(client: TestClient) -> None:
    """200 still (the call is not refused), but the answer says nothing changed."""
    response = client.put("/v1/leads/L-1", json={"match_keys": {"email": "jane@"}})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "lead_id": "L-1",
        "status": "nothing_stored",
        "warnings": [
            {
                "pointer": "/match_keys/email",
                "field": "match_keys.email",
                "message": "not an email address; dropped",
            }
        ],
    }
    assert client.get("/v1/leads/L-1/postbacks").status_code == 404  # no lead row was made
    # One key left, or only limited_data_use: stored.
    both = {"match_keys": {"email": "jane@", "ttclid": "E.C.P.x"}}
    assert client.put("/v1/leads/L-1", json=both).json()["status"] == "stored"
    assert lead("L-1").ttclid == "E.C.P.x" and lead("L-1").email_hashes == []
    assert client.put("/v1/leads/L-2", json={"limited_data_use": True}).json()["status"] == "stored"
    assert lead("L-2").limited_data_use is True
    # An existing lead whose new keys are all dropped is unchanged, and said so.
    again = client.put("/v1/leads/L-1", json={"match_keys": {"phone": "+1 213 x"}})
    assert again.json()["status"] == "nothing_stored"
    assert lead("L-1").ttclid == "E.C.P.x" and lead("L-1").phone_hashes == []
