"""POST /v1/triggers over HTTP (TestClient) on SQLite with Celery eager and the simulator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crm_postback.api import enqueue_trigger
from crm_postback.intake.trigger_intake import UNKNOWN_EVENT_SET
from crm_postback.simulator import SimulatorControl
from models import Lead, Trigger
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import apply_env  # type: ignore[import-not-found]
from tests.crm_postback.web.conftest import (  # type: ignore[import-not-found]
    RAW_EMAIL,
    RAW_FORMS,
    RAW_PHONE,
    submitted,
    trigger,
)


def trigger_count() -> int:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return session.scalar(select(func.count()).select_from(Trigger)) or 0


def errors_of(answer: dict[str, Any], index: int = 0) -> dict[str, str]:
    """{pointer: message} of one item."""
    return {e["pointer"]: e["message"] for e in answer["items"][index].get("errors", [])}


def test_one_trigger_is_accepted_stored_and_delivered(
    ready: SimulatorControl, client: TestClient
) -> None:
    response = client.post("/v1/triggers", json=submitted())
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == 1 and answer["rejected"] == 0
    item = answer["items"][0]
    assert item["index"] == 0 and item["status"] == "accepted"
    with session_scope(workspace=ALL_WORKSPACES) as session:
        stored = session.get(Trigger, item["trigger_id"])
        assert stored is not None and stored.lead_ref == "L-1"
    [event] = ready.events()
    assert event["event"] == "Lead"
    assert all(len(h) == 64 for h in event["payload"]["user"]["email"])


def test_batch_answers_per_item_and_keeps_the_good_ones(
    ready: SimulatorControl, client: TestClient
) -> None:
    response = client.post(
        "/v1/triggers?strict=true",
        json=[
            submitted("L-1"),
            {**submitted("L-2"), "match_keys": {"phone": "12"}},
            submitted("L-3"),
            {**submitted("L-4"), "event_set": "nobody"},
            "not a trigger",
            {**submitted("L-5"), "match_keys": {"email": ["a@example.com", 7]}},
        ],
    )
    assert response.status_code == 202
    answer = response.json()
    assert [i["status"] for i in answer["items"]] == [
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert [i["index"] for i in answer["items"]] == list(range(6))
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (2, 0, 4)
    assert list(errors_of(answer, 1)) == ["/1/match_keys/phone"]
    assert answer["items"][1]["errors"][0]["field"] == "match_keys.phone"
    assert errors_of(answer, 3) == {"/3/event_set": UNKNOWN_EVENT_SET}
    assert errors_of(answer, 4) == {"/4": "must be an object"}
    assert errors_of(answer, 5) == {"/5/match_keys/email/1": "must be a string"}
    assert "trigger_id" not in answer["items"][1]
    assert ready.stats()["events_unique"] == 2
    assert trigger_count() == 2


def test_a_time_out_of_range_fails_only_its_item(
    ready: SimulatorControl, client: TestClient
) -> None:
    response = client.post(
        "/v1/triggers",
        json=[submitted("L-1"), {**submitted("L-2"), "occurred_at": "0001-01-01T00:00:00+14:00"}],
    )
    assert response.status_code == 202
    answer = response.json()
    assert [i["status"] for i in answer["items"]] == ["accepted", "rejected"]
    assert list(errors_of(answer, 1)) == ["/1/occurred_at"]
    assert trigger_count() == 1


def test_batch_with_every_item_bad_is_422_with_the_same_shape(
    ready: SimulatorControl, client: TestClient
) -> None:
    response = client.post("/v1/triggers", json=[{"type": "lead.sold"}, {**submitted(), "x": 1}])
    assert response.status_code == 422
    answer = response.json()
    assert answer["accepted"] == 0 and answer["rejected"] == 2
    assert errors_of(answer, 0) == {
        "/0/lead_id": "is required",
        "/0/event_set": "is required",
        "/0/occurred_at": "is required",
    }
    assert errors_of(answer, 1) == {"/1/x": "is not a known field"}
    assert trigger_count() == 0


@pytest.mark.parametrize(
    ("change", "pointer", "says"),
    [
        ({"event_set": "nobody"}, "/event_set", UNKNOWN_EVENT_SET),
        ({"match_keys": {"phone": "call me"}}, "/match_keys/phone", "letters"),
        ({"match_keys": {"email": "not-an-email"}}, "/match_keys/email", "not an email"),
        ({"match_keys": {"email": ["a@b.co", "nope"]}}, "/match_keys/email/1", "not an email"),
        ({"match_keys": {"email": 5}}, "/match_keys/email", "must be a string or a list"),
        ({"match_keys": {"ip": "999.1.1.1"}}, "/match_keys/ip", "not an IPv4"),
        ({"attributes": {"value": "lots"}}, "/attributes", "value: not a number"),
        ({"attributes": {"note": [1]}}, "/attributes/note", "must be a string"),
        ({"attributes": {"x": "y" * 20_000}}, "/attributes", "bytes of JSON; the limit is"),
        ({"attributes": {"x": "y" * 1001}}, "/attributes", "longer than"),
        ({"type": "Lead Sold"}, "/type", "lowercase"),
        ({"occurred_at": "yesterday-ish"}, "/occurred_at", "datetime"),
        ({"occurred_at": "2999-01-01T00:00:00Z"}, "/occurred_at", "in the future"),
        ({"lead_id": ""}, "/lead_id", "at least 1 character"),
        ({"colour": "red"}, "/colour", "is not a known field"),
    ],
)
def test_one_bad_trigger_is_422_pointing_at_the_field(
    ready: SimulatorControl, client: TestClient, change: dict[str, Any], pointer: str, says: str
) -> None:
    # Strict: the refusal of before (without it a bad key's value is dropped, see below).
    response = client.post("/v1/triggers?strict=true", json={**submitted(), **change})
    assert response.status_code == 422
    errors = errors_of(response.json())
    assert pointer in errors, errors
    assert says in errors[pointer]
    assert trigger_count() == 0
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalar(select(Lead.id)) is None


def test_without_strict_a_bad_key_is_dropped_and_the_answer_warns(
    ready: SimulatorControl, client: TestClient
) -> None:
    response = client.post(
        "/v1/triggers",
        json=[
            {**submitted("L-1"), "match_keys": {"phone": "+2132435345", "email": "a@example.com"}},
            {**submitted("L-2"), "match_keys": {"ttclid": "jane@example.com", "phone": "12"}},
            {**submitted("L-3"), "match_keys": {"email": ["a@b.co", "nope"]}},
        ],
    )
    assert response.status_code == 202
    items = response.json()["items"]
    assert [i["status"] for i in items] == ["accepted"] * 3
    assert [[(w["pointer"], w["field"]) for w in i["warnings"]] for i in items] == [
        [("/0/match_keys/phone", "match_keys.phone")],
        [
            ("/1/match_keys/ttclid", "match_keys.ttclid"),
            ("/1/match_keys/phone", "match_keys.phone"),
        ],
        [("/2/match_keys/email/1", "match_keys.email.1")],
    ]
    assert all(w["message"].endswith("; dropped") for i in items for w in i["warnings"])
    assert "jane@example.com" not in response.text and "2132435345" not in response.text
    single = client.post("/v1/triggers", json={**submitted("L-4"), "match_keys": {"ip": "x"}})
    assert single.status_code == 202
    assert single.json()["items"][0]["warnings"][0]["pointer"] == "/match_keys/ip"
    clean = client.post("/v1/triggers", json=submitted("L-5"))
    assert "warnings" not in clean.json()["items"][0]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        dropped = dict(session.execute(select(Trigger.lead_ref, Trigger.dropped_keys)).all())
    assert dropped == {
        "L-1": ["phone"],
        "L-2": ["ttclid", "phone"],
        "L-3": ["email"],
        "L-4": ["ip"],
        "L-5": None,
    }


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "is not valid JSON"),
        (b"NaN", "is not a JSON number"),
        (b"42", "send a trigger object or a list"),
        (b"[]", "1 to 1000 triggers, not 0"),
        (b"\xff\xfe{", "is not valid JSON"),
    ],
)
def test_a_body_that_is_not_triggers_is_422_for_the_whole_document(
    client: TestClient, body: bytes, says: str
) -> None:
    response = client.post(
        "/v1/triggers", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["pointer"] == "" and error["field"] == "body"
    assert says in error["message"]


def test_more_than_1000_triggers_is_422(ready: SimulatorControl, client: TestClient) -> None:
    response = client.post("/v1/triggers", json=[submitted()] * 1001)
    assert response.status_code == 422
    assert "1 to 1000 triggers, not 1001" in response.json()["errors"][0]["message"]


def test_values_that_cannot_be_stored_are_refused(
    ready: SimulatorControl, client: TestClient
) -> None:
    body = b'{"type": "lead.sold", "lead_id": "L\\u0000", "event_set": "acme",'
    body += b' "occurred_at": "2026-01-01T00:00:00Z", "attributes": {"n": "\\ud800"}}'
    response = client.post("/v1/triggers", content=body)
    assert response.status_code == 422
    errors = errors_of(response.json())
    assert set(errors) == {"/lead_id", "/attributes/n"}
    assert trigger_count() == 0


def test_over_the_size_limit_is_413(
    ready: SimulatorControl, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, MAX_REQUEST_BYTES="2000")
    big = [submitted(f"L-{i}") for i in range(20)]
    response = client.post("/v1/triggers", json=big)
    assert response.status_code == 413
    [error] = response.json()["errors"]
    assert "larger than 2000 bytes" in error["message"]

    def chunks() -> Any:  # no Content-Length: the limit applies while the body streams
        yield b"["
        for i in range(20):
            yield (
                (b"," if i else b"") + b'{"type": "lead.sold", "lead_id": "L-%d"}' % i + b" " * 200
            )
        yield b"]"

    response = client.post("/v1/triggers", content=chunks())
    assert response.status_code == 413
    assert trigger_count() == 0
    assert client.post("/v1/triggers", json=submitted()).status_code == 202


def test_a_retried_call_gets_the_original_answer_and_sends_nothing_new(
    ready: SimulatorControl, client: TestClient
) -> None:
    batch = [submitted("L-1"), trigger("lead.sold", "L-1", attributes={"value": 5})]
    first = client.post("/v1/triggers", json=batch).json()
    again = client.post("/v1/triggers", json=batch)
    assert again.status_code == 202
    retried = again.json()
    assert [i["trigger_id"] for i in retried["items"]] == [i["trigger_id"] for i in first["items"]]
    assert [i["status"] for i in retried["items"]] == ["duplicate", "duplicate"]
    assert (retried["accepted"], retried["duplicates"]) == (0, 2)
    assert ready.stats()["events_accepted"] == 2
    assert trigger_count() == 2


def test_an_explicit_idempotency_key_wins_over_the_derived_one(
    ready: SimulatorControl, client: TestClient
) -> None:
    first = client.post("/v1/triggers", json={**submitted(), "idempotency_key": "sub-1"}).json()
    moved = {**submitted(), "occurred_at": "2026-01-01T00:00:00Z", "idempotency_key": "sub-1"}
    again = client.post("/v1/triggers", json=moved).json()
    assert again["items"][0]["status"] == "duplicate"
    assert again["items"][0]["trigger_id"] == first["items"][0]["trigger_id"]


def test_the_same_change_via_http_and_the_python_api_goes_out_once(
    ready: SimulatorControl, client: TestClient
) -> None:
    # The derived key is lead, type and occurred_at, without the source: lead ids are global.
    payload = submitted()
    accepted = enqueue_trigger(payload)
    answer = client.post("/v1/triggers", json=payload).json()
    assert answer["items"][0] == {
        "index": 0,
        "status": "duplicate",
        "trigger_id": accepted.trigger_id,
    }
    assert ready.stats()["events_accepted"] == 1


def test_the_same_change_twice_in_one_batch_is_stored_once(
    ready: SimulatorControl, client: TestClient
) -> None:
    payload = submitted()
    items = client.post("/v1/triggers", json=[payload, payload]).json()["items"]
    assert [i["status"] for i in items] == ["accepted", "duplicate"]
    assert items[0]["trigger_id"] == items[1]["trigger_id"]


def test_raw_email_and_phone_appear_in_no_answer_table_or_log(
    ready: SimulatorControl,
    client: TestClient,
    isolated_settings: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [
        client.post("/v1/triggers", json=submitted()),
        client.post("/v1/triggers", json=[submitted("L-2"), {**submitted("L-3"), "x": 1}]),
        # Bad next to raw values, raw values as key names, an email in an attribute.
        client.post(
            "/v1/triggers",
            json={
                **submitted("L-4"),
                "match_keys": {"email": RAW_EMAIL, "phone": f"{RAW_PHONE} ext. x", RAW_EMAIL: 1},
            },
        ),
        client.post("/v1/triggers", json={**submitted("L-5"), "attributes": {"to": RAW_EMAIL}}),
        client.post("/v1/triggers", json={**submitted("L-6"), "2133734253": RAW_PHONE}),
        client.post(
            "/v1/triggers", json={**submitted("L-7"), "match_keys": {"email": [RAW_EMAIL, 5]}}
        ),
        client.put("/v1/leads/L-8", json={"match_keys": {"phone": RAW_PHONE + "x", RAW_EMAIL: 1}}),
    ]
    assert [a.status_code for a in answers] == [202, 202, 422, 422, 422, 422, 422]
    text = "\n".join(a.text for a in answers) + caplog.text
    for raw in RAW_FORMS:
        assert raw not in text, raw
    assert "<redacted>" in text
    stored = b"".join(p.read_bytes() for p in isolated_settings.glob("postback.db*"))
    assert stored
    for raw in RAW_FORMS:
        assert raw.encode() not in stored, raw


@pytest.mark.parametrize("depth", [900, 990, 100_000])
def test_deeply_nested_bodies_are_422_not_500(client: TestClient, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    for body in (nested, '{"attributes": {"a": ' + nested + "}}"):
        assert client.post("/v1/triggers", content=body).status_code == 422
        assert client.put("/v1/leads/L-1", content=body).status_code == 422
