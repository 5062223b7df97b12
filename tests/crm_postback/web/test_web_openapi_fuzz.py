"""The published OpenAPI document, and a property-based run against it (schemathesis)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from crm_postback.web.app import create_app


def test_openapi_lists_every_route_with_examples(anonymous: TestClient) -> None:
    document = anonymous.get("/openapi.json").json()
    assert set(document["paths"]) == {
        "/healthz",
        "/readyz",
        "/v1/triggers",
        "/v1/leads/{lead_id}",
        "/v1/leads/{lead_id}/postbacks",
    }
    post = document["paths"]["/v1/triggers"]["post"]
    body = post["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"single", "batch"}
    assert {"202", "401", "403", "413", "422"} <= set(post["responses"])
    assert "TriggerIn" in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    put = document["paths"]["/v1/leads/{lead_id}"]["put"]
    assert put["requestBody"]["content"]["application/json"]["examples"]


# Loaded at import (the lazy fixture loader does not work with pytest 9): building the app and
# its schema touches no database; each request reads the settings of the running test.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@pytest.fixture
def fuzz_ready(sqlite_db: str, make_event_set: Callable[..., int]) -> None:
    make_event_set(name="acme-crm")  # the name the examples use


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_generated_request_gets_a_500(case: Any, fuzz_ready: None, api_key: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code < 500, response.text
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


@pytest.fixture
def pg_fuzz_key(pg_db: str, make_event_set: Callable[..., int]) -> str:
    from crm_postback.configuration.api_keys import create_key
    from models.db import session_scope

    make_event_set(name="acme-crm")
    with session_scope() as session:
        new = create_key(session, "fuzz")
        session.commit()
    return new.key


@pytest.mark.integration
@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_generated_request_gets_a_500_on_postgres(case: Any, pg_fuzz_key: str) -> None:
    """PostgreSQL refuses what SQLite stores (NUL characters, for one): the same run on it."""
    response = case.call(headers={"Authorization": f"Bearer {pg_fuzz_key}"})
    assert response.status_code < 500, response.text
