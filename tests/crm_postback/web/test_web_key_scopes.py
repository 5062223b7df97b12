"""A key's event sets and permissions: what is outside them is refused, and tells nothing.

A key limited to event set X posting to Y (which exists, in the same workspace) gets the
answer of an event set that does not exist. A route the key has no permission for is 403
naming the permission, whatever the lead id (so it is no oracle either).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crm_postback.intake.trigger_intake import UNKNOWN_EVENT_SET
from crm_postback.simulator import SimulatorControl
from crm_postback.web.app import create_app
from models import Lead, Trigger
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.web.conftest import (  # type: ignore[import-not-found]
    bearer,
    new_key,
    submitted,
    trigger,
)

SECOND_SET_ID = "7300000000000000003"


@pytest.fixture(params=["sqlite_db", "pg_db"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


@pytest.fixture
def two_sets(
    backend: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> Iterator[TestClient]:
    make_event_set()  # acme
    make_event_set(name="second", source_id=SECOND_SET_ID)
    with TestClient(create_app()) as client:
        yield client


def stored(model: Any) -> int:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_key_limited_to_one_event_set_cannot_post_to_another(two_sets: TestClient) -> None:
    key = new_key("acme-router", event_sets=["acme"])
    answers = {}
    for reference in ("second", SECOND_SET_ID, "no-such-set"):
        body = submitted("L-1") | {"event_set": reference}
        response = two_sets.post("/v1/triggers", json=body, headers=bearer(key))
        assert response.status_code == 422
        answers[reference] = response.json()
    assert answers["second"] == answers[SECOND_SET_ID] == answers["no-such-set"]
    [problem] = answers["second"]["items"][0]["errors"]
    assert problem["message"] == UNKNOWN_EVENT_SET
    assert "second" not in str(list(answers.values()))
    assert stored(Trigger) == 0 and stored(Lead) == 0
    # Its own event set, by name or TikTok ID, and a batch mixing both: item by item.
    batch = [submitted("L-2"), submitted("L-3") | {"event_set": "second"}]
    response = two_sets.post("/v1/triggers", json=batch, headers=bearer(key))
    assert response.status_code == 202
    assert [item["status"] for item in response.json()["items"]] == ["accepted", "rejected"]
    [problem] = response.json()["items"][1]["errors"]
    assert problem == {
        "pointer": "/1/event_set",
        "field": "event_set",
        "message": UNKNOWN_EVENT_SET,
    }


def test_a_key_limited_to_one_event_set_reads_only_its_history(two_sets: TestClient) -> None:
    """The other event set of the workspace is unknown to the key when it posts; its
    history must not show that set's name, attributes, payloads or TikTok's answers."""
    router = new_key("acme-router")
    landing = new_key("acme-landing", event_sets=["acme"])
    for event_set, secret in (("acme", "mine"), ("second", "not-for-landing-pages")):
        body = trigger("lead.sold", "L-1", event_set=event_set) | {
            "attributes": {"value": 1, "currency": "USD", "note": secret}
        }
        assert two_sets.post("/v1/triggers", json=body, headers=bearer(router)).status_code == 202
    everything = two_sets.get("/v1/leads/L-1/postbacks", headers=bearer(router))
    limited = two_sets.get("/v1/leads/L-1/postbacks", headers=bearer(landing))
    assert everything.status_code == limited.status_code == 200
    assert "not-for-landing-pages" in everything.text and "second" in everything.text
    assert "not-for-landing-pages" not in limited.text and '"second"' not in limited.text
    assert SECOND_SET_ID not in limited.text
    assert [t["event_set"] for t in limited.json()["triggers"]] == ["acme"]


def test_a_key_without_event_sets_sends_to_every_one_of_its_workspace_even_later_ones(
    two_sets: TestClient, make_event_set: Callable[..., int]
) -> None:
    key = new_key("acme-router")
    make_event_set(name="third", source_id="7300000000000000004")
    for name in ("acme", "second", "third"):
        body = submitted("L-1") | {"event_set": name}
        assert two_sets.post("/v1/triggers", json=body, headers=bearer(key)).status_code == 202


ROUTES = {
    "triggers:send": ("POST", "/v1/triggers", submitted()),
    "leads:write": ("PUT", "/v1/leads/L-1", {"match_keys": {"ttclid": "x"}}),
    "postbacks:read": ("GET", "/v1/leads/L-1/postbacks", None),
}


@pytest.mark.parametrize("missing", list(ROUTES))
def test_a_route_the_key_has_no_permission_for_is_403_naming_it(
    two_sets: TestClient, missing: str
) -> None:
    key = new_key("narrow", permissions=[p for p in ROUTES if p != missing])
    method, path, body = ROUTES[missing]
    # The same answer for a lead that exists and one that does not: no oracle.
    two_sets.post("/v1/triggers", json=submitted(), headers=bearer(new_key("full")))
    answers = []
    for lead in ("L-1", "L-nobody"):
        response = two_sets.request(
            method, path.replace("L-1", lead), json=body, headers=bearer(key)
        )
        assert response.status_code == 403
        answers.append(response.json())
    assert answers[0] == answers[1]
    assert answers[0] == {
        "errors": [
            {
                "pointer": None,
                "field": "Authorization",
                "message": f"this API key lacks the {missing} permission",
            }
        ]
    }
    # The routes it may use answer as usual.
    for permission, (other_method, other_path, other_body) in ROUTES.items():
        if permission != missing:
            response = two_sets.request(
                other_method, other_path, json=other_body, headers=bearer(key)
            )
            assert response.status_code in {200, 202}, (permission, response.text)


def test_a_key_with_one_permission_changes_nothing_elsewhere(two_sets: TestClient) -> None:
    reader = new_key("reader", permissions=["postbacks:read"])
    response = two_sets.post("/v1/triggers", json=submitted(), headers=bearer(reader))
    assert response.status_code == 403
    response = two_sets.put(
        "/v1/leads/L-1", json={"match_keys": {"ttclid": "x"}}, headers=bearer(reader)
    )
    assert response.status_code == 403
    assert stored(Trigger) == 0 and stored(Lead) == 0


def test_the_openapi_document_names_every_status(anonymous: TestClient) -> None:
    paths = anonymous.get("/openapi.json").json()["paths"]
    expected = {
        ("/v1/triggers", "post"): {"202", "401", "403", "413", "422", "429"},
        ("/v1/leads/{lead_id}", "put"): {"200", "401", "403", "413", "422", "429"},
        ("/v1/leads/{lead_id}/postbacks", "get"): {"200", "401", "403", "404", "422", "429"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert statuses <= set(responses), (path, set(responses))
        assert "Retry-After" in responses["429"]["headers"]
    lacks = paths["/v1/leads/{lead_id}"]["put"]["responses"]["403"]["description"]
    assert "leads:write" in lacks


def test_a_trigger_of_the_batch_outside_the_key_leaves_the_others(two_sets: TestClient) -> None:
    key = new_key("acme-router", event_sets=["second"])
    batch = [trigger("lead.submitted", f"L-{i}", match_keys={"ttclid": "x"}) for i in range(3)]
    batch[1]["event_set"] = "second"
    response = two_sets.post("/v1/triggers", json=batch, headers=bearer(key))
    assert response.status_code == 202
    assert [i["status"] for i in response.json()["items"]] == ["rejected", "accepted", "rejected"]
