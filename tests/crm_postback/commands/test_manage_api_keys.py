"""API keys through `postback api-key`: the state, the audit entry, and no key in either."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.commands.manage_api_keys import CreateApiKey, create_api_key
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration.audit import entry_dict
from crm_postback.core.errors import InputRejected
from models import DEFAULT_WORKSPACE_ID, ApiKey, AuditEntry, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

runner = CliRunner()


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "ops")


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def audit_entries(action: str | None = None) -> list[dict[str, object]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            query = query.where(AuditEntry.action == action)
        return [entry_dict(entry) for entry in session.scalars(query)]


def create(name: str = "acme-router") -> str:
    code, out = run("api-key", "create", name)
    assert code == 0, out
    return out.strip().splitlines()[-1]


def test_create_stores_the_key_hashed_and_audits_its_name_and_prefix(sqlite_db: str) -> None:
    key = create()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.scalars(select(ApiKey)).one()
        assert row.key_sha256 == hashlib.sha256(key.encode()).hexdigest()
        assert row.name == "acme-router" and row.revoked_at is None
    [entry] = audit_entries("api_key.create")
    assert entry["actor"] == "cli:ops"
    assert (entry["entity_type"], entry["entity_id"]) == ("api_key", 1)
    assert entry["after"] == {
        "name": "acme-router",
        "key_prefix": key[:12],
        "revoked_at": None,
        "event_set_ids": None,
        "permissions": ["triggers:send", "leads:write", "postbacks:read"],
        "rate_limit": None,
        "strict": False,
    }
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(AuditEntry.workspace_id)).all() == [DEFAULT_WORKSPACE_ID]


def test_revoke_is_audited_once(sqlite_db: str) -> None:
    create()
    assert run("api-key", "revoke", "1")[0] == 0
    assert run("api-key", "revoke", "1")[0] == 0  # already revoked: nothing changes
    with session_scope(workspace=ALL_WORKSPACES) as session:
        revoked_at = session.scalars(select(ApiKey.revoked_at)).one()
    assert revoked_at is not None
    [entry] = audit_entries("api_key.revoke")
    assert entry["actor"] == "cli:ops" and entry["entity_id"] == 1
    assert entry["before"]["revoked_at"] is None  # type: ignore[index]
    assert entry["after"]["revoked_at"] == revoked_at.isoformat()  # type: ignore[index]


def test_no_key_or_key_hash_in_the_audit_trail_or_other_output(sqlite_db: str) -> None:
    key = create()
    digest = hashlib.sha256(key.encode()).hexdigest()
    outputs = [run("api-key", "revoke", "1")[1], run("api-key", "list")[1]]
    outputs.append(run("admin", "audit")[1])
    assert "api_key.create" in outputs[-1] and "api_key.revoke" in outputs[-1]
    trail = str(audit_entries())
    for text in (trail, *outputs):
        assert key not in text and key[12:] not in text and digest not in text


def test_refused_input_names_the_field_and_changes_nothing(sqlite_db: str) -> None:
    with pytest.raises(InputRejected) as refused:
        create_api_key(CreateApiKey("  "), Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER))
    assert [error.field for error in refused.value.errors] == ["name"]
    code, out = run("api-key", "revoke", "99")
    assert code == 2 and "id: no api key 99" in out
    assert audit_entries() == []


def test_only_an_owner_of_the_workspace_makes_or_revokes_its_keys(sqlite_db: str) -> None:
    from crm_postback.commands.manage_api_keys import RevokeApiKey, revoke_api_key
    from crm_postback.commands.unit_of_work import NotPermitted
    from crm_postback.configuration.workspaces import add_workspace
    from models import Role

    with session_scope(workspace=ALL_WORKSPACES) as session:
        other = add_workspace(session, "globex").id
        session.commit()
    for role in (Role.VIEWER, Role.EDITOR):
        with pytest.raises(NotPermitted):
            create_api_key(CreateApiKey("router"), Actor("web:bob", DEFAULT_WORKSPACE_ID, role))
    mine = create_api_key(
        CreateApiKey("router"), Actor("web:ann", DEFAULT_WORKSPACE_ID, Role.OWNER)
    )
    with pytest.raises(NotPermitted):
        revoke_api_key(RevokeApiKey(mine.id), Actor("web:bob", DEFAULT_WORKSPACE_ID, Role.EDITOR))
    # The owner of another workspace: the key is not found there, and stays active.
    with pytest.raises(InputRejected) as refused:
        revoke_api_key(RevokeApiKey(mine.id), Actor("web:eve", other, Role.OWNER))
    assert [(e.field, e.message) for e in refused.value.errors] == [("id", f"no api key {mine.id}")]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(ApiKey.revoked_at)).all() == [None]
    assert [entry["action"] for entry in audit_entries()] == ["api_key.create"]
