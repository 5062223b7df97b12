"""`postback api-key create --strict` and `api-key strict ID --on/--off`: a strict key's bad
match key refuses the trigger; a lenient key's is dropped with a warning."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.configuration.workspaces import add_workspace
from crm_postback.web.app import create_app
from models import ApiKey, AuditEntry
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def acme(sqlite_db: str, make_event_set: Callable[..., int]) -> None:
    make_event_set()


def body(**keys: Any) -> dict[str, Any]:
    return {
        "type": "lead.submitted",
        "lead_id": "L-1",
        "event_set": "acme",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "match_keys": {"email": "jane@example.com", "phone": "+2132435345", **keys},
    }


def test_a_strict_key_refuses_and_can_be_made_lenient(acme: None) -> None:
    code, out = run("api-key", "create", "strict-router", "--strict")
    assert code == 0, out
    assert "bad match keys: refused (strict)" in out
    key = out.strip().splitlines()[-1]
    assert "; strict" in run("api-key", "list")[1]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        key_id = session.scalars(select(ApiKey.id)).one()
    with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as client:
        refused = client.post("/v1/triggers", json=body())
        assert refused.status_code == 422
        assert refused.json()["items"][0]["errors"][0]["field"] == "match_keys.phone"
        # ?strict=false does not loosen a strict key.
        assert client.post("/v1/triggers?strict=false", json=body()).status_code == 422
        lead = client.put("/v1/leads/L-1", json={"match_keys": {"phone": "+2132435345"}})
        assert lead.status_code == 422

        code, out = run("api-key", "strict", str(key_id), "--off")
        assert code == 0 and "is lenient" in out, out
        accepted = client.post("/v1/triggers", json=body())
        assert accepted.status_code == 202
        assert accepted.json()["items"][0]["warnings"][0]["field"] == "match_keys.phone"
    assert "already; nothing changed" in run("api-key", "strict", str(key_id), "--off")[1]
    assert "; lenient" in run("api-key", "list")[1]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        updates = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "api_key.update")
        ).all()
    assert len(updates) == 1
    assert updates[0].before["strict"] is True and updates[0].after["strict"] is False


def test_a_key_of_another_workspace_is_not_found(acme: None) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        add_workspace(session, "globex")
        session.commit()
    code, out = run("api-key", "create", "acme-router")
    assert code == 0
    with session_scope(workspace=ALL_WORKSPACES) as session:
        key_id = session.scalars(select(ApiKey.id)).one()
    code, out = run("api-key", "strict", str(key_id), "--on", "--workspace", "globex")
    assert code != 0 and "no api key" in out
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(ApiKey.strict)).one() is False
