"""Bearer API keys: 401 without a known key, 403 once revoked; keys stored only as SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.configuration.api_keys import revoke_key
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, ApiKey
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.web.conftest import submitted  # type: ignore[import-not-found]

PROTECTED = [
    ("POST", "/v1/triggers"),
    ("PUT", "/v1/leads/L-1"),
    ("GET", "/v1/leads/L-1/postbacks"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_v1_route_needs_a_key(anonymous: TestClient, method: str, path: str) -> None:
    response = anonymous.request(method, path, json={"match_keys": {"ttclid": "x"}})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["errors"][0]["field"] == "Authorization"


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer pbk_not-a-key-we-issued", "pbk_no-scheme"],
)
def test_unknown_or_malformed_credentials_are_401_and_not_echoed(
    anonymous: TestClient, header: str
) -> None:
    response = anonymous.post("/v1/triggers", json=submitted(), headers={"Authorization": header})
    assert response.status_code == 401
    assert "pbk_" not in response.text and "dXNlcjpwYXNz" not in response.text


def test_revoked_key_is_403(anonymous: TestClient, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    assert anonymous.get("/v1/leads/L-1/postbacks", headers=headers).status_code == 404
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        key_id = session.scalars(select(ApiKey.id)).one()
        revoke_key(session, key_id)
        session.commit()
    response = anonymous.post("/v1/triggers", json=submitted(), headers=headers)
    assert response.status_code == 403
    assert response.json() == {
        "errors": [
            {
                "pointer": None,
                "field": "Authorization",
                "message": "this API key has been revoked",
            }
        ]
    }


def test_a_valid_key_is_accepted_and_its_use_recorded(
    ready: SimulatorControl, client: TestClient, api_key: str
) -> None:
    assert client.post("/v1/triggers", json=submitted()).status_code == 202
    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.scalars(select(ApiKey)).one()
    assert row.name == "acme-router" and row.revoked_at is None
    assert row.last_used_at is not None


def test_keys_are_stored_hashed_only(api_key: str, isolated_settings: Path) -> None:
    assert api_key.startswith("pbk_") and len(api_key) > 40
    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.scalars(select(ApiKey)).one()
    assert row.key_sha256 == hashlib.sha256(api_key.encode()).hexdigest()
    assert api_key.startswith(row.key_prefix) and len(row.key_prefix) < len(api_key) // 2
    stored = b"".join(p.read_bytes() for p in isolated_settings.glob("postback.db*"))
    assert api_key.encode() not in stored


def test_two_source_systems_have_their_own_keys(anonymous: TestClient, make_key: object) -> None:
    first, second = make_key("router-a"), make_key("router-b")  # type: ignore[operator]
    assert first != second
    for key in (first, second):
        response = anonymous.get(
            "/v1/leads/x/postbacks", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 404  # known keys: an unknown lead, not a refusal


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json"])
def test_health_and_schema_need_no_key(anonymous: TestClient, path: str) -> None:
    assert anonymous.get(path).status_code == 200
