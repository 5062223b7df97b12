"""The published OpenAPI document, and a property-based run against it (schemathesis), on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from crm_postback.web.app import create_app
from models import DEFAULT_WORKSPACE_ID
from tests.crm_postback.web.no_echo import (  # type: ignore[import-not-found]
    assert_echoes_nothing,
)


def test_openapi_lists_every_route_with_examples(anonymous: TestClient) -> None:
    document = anonymous.get("/openapi.json").json()
    assert set(document["paths"]) == {
        "/healthz",
        "/readyz",
        "/v1/triggers",
        "/v1/leads/{lead_id}",
        "/v1/leads/{lead_id}/postbacks",
        "/v1/leads/{lead_id}/consent-withdrawal",
    }
    post = document["paths"]["/v1/triggers"]["post"]
    body = post["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"single", "batch"}
    assert {"202", "401", "403", "413", "422"} <= set(post["responses"])
    assert "TriggerIn" in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    put = document["paths"]["/v1/leads/{lead_id}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["examples"]


# Loaded at import (the lazy fixture loader does not work with pytest 9); the requests go to
# an app built in each test (case.call(app=...)), after its database and settings are set.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@pytest.fixture(
    params=[
        pytest.param("sqlite_db", id="sqlite"),
        # PostgreSQL refuses what SQLite stores (NUL characters, for one).
        pytest.param("pg_db", id="postgres", marks=pytest.mark.integration),
    ]
)
def fuzz_key(request: pytest.FixtureRequest, make_event_set: Callable[..., int]) -> str:
    from crm_postback.configuration.api_keys import create_key
    from models.db import session_scope

    request.getfixturevalue(request.param)
    make_event_set(name="acme-crm")  # the name the examples use
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        new = create_key(session, "fuzz")
        session.commit()
    return new.key


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_generated_request_breaks_a_promise(case: Any, fuzz_key: str) -> None:
    response = case.call(app=create_app(), headers={"Authorization": f"Bearer {fuzz_key}"})
    assert response.status_code < 500, response.text
    # A refusal holds no value that was sent; nor does any answer about triggers (items are
    # an index, a status, a trigger id or errors). Other answers are about the lead named.
    if response.status_code >= 400 or case.path == "/v1/triggers":
        sent = {"body": case.body, **(case.path_parameters or {}), **(case.query or {})}
        try:
            answer = response.json()
        except ValueError:
            answer = response.text
        assert_echoes_nothing(response.status_code, answer, sent)
    # Every other check runs (status codes, content types, answers matching their schemas,
    # auth, 405 for undeclared methods). Excluded: a JSON schema cannot say "an event set that
    # exists" or "a phone number", so schema-valid data is rightly refused at times; and
    # pydantic coerces some schema-invalid input (epoch seconds for occurred_at) on purpose.
    case.validate_response(
        response,
        excluded_checks=[
            schemathesis.checks.positive_data_acceptance,
            schemathesis.checks.negative_data_rejection,
        ],
    )
