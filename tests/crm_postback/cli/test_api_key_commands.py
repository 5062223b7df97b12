"""`postback api-key create/list/revoke --workspace NAME`: each acts in one workspace only."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.configuration.workspaces import add_workspace
from crm_postback.web.app import create_app
from models import AuditEntry
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def globex(sqlite_db: str, make_event_set: Callable[..., int]) -> int:
    make_event_set()  # `acme`, in the default workspace
    with session_scope(workspace=ALL_WORKSPACES) as session:
        workspace_id = add_workspace(session, "globex").id
        session.commit()
    return workspace_id


def created_key(out: str) -> str:
    return out.strip().splitlines()[-1]


def test_create_in_a_workspace_with_event_sets_permissions_and_a_rate(globex: int) -> None:
    code, out = run(
        "api-key",
        "create",
        "acme-router",
        "--event-set",
        "acme",
        "--permission",
        "triggers:send",
        "--permission",
        "postbacks:read",
        "--rate-limit",
        "50/second",
    )
    assert code == 0, out
    assert "permissions: triggers:send, postbacks:read" in out
    assert "rate limit: 50/second" in out
    code, out = run("api-key", "create", "globex-router", "--workspace", "globex")
    assert code == 0, out
    assert "in workspace globex" in out and "event sets: all" in out
    default_list = run("api-key", "list")[1]
    globex_list = run("api-key", "list", "-w", "globex")[1]
    assert "acme-router" in default_list and "globex-router" not in default_list
    assert "event sets acme; triggers:send,postbacks:read; 50/second" in default_list
    assert "globex-router" in globex_list and "acme-router" not in globex_list
    assert "all event sets; all permissions; default rate" in globex_list
    with session_scope(workspace=ALL_WORKSPACES) as session:
        entries = session.execute(
            select(AuditEntry.workspace_id).where(AuditEntry.action == "api_key.create")
        ).all()
    assert sorted(workspace for (workspace,) in entries) == [1, globex]


def test_an_event_set_of_another_workspace_cannot_be_given(globex: int) -> None:
    code, out = run("api-key", "create", "r", "--workspace", "globex", "--event-set", "acme")
    assert code == 2 and "event_set: no event set has this name" in out
    assert "'acme'" not in out
    assert "globex" not in run("api-key", "list", "-w", "globex")[1]


def test_revoking_another_workspaces_key_id_is_not_found(globex: int) -> None:
    key = created_key(run("api-key", "create", "acme-router")[1])
    code, out = run("api-key", "revoke", "1", "--workspace", "globex")
    assert code == 2 and "id: no api key 1" in out
    assert run("api-key", "revoke", "99", "--workspace", "globex")[1] == out.replace("1", "99")
    assert "active" in run("api-key", "list")[1]
    with TestClient(create_app()) as client:
        answer = client.get("/v1/leads/L-1/postbacks", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 404  # the key works: an unknown lead, not a revoked key
    assert run("api-key", "revoke", "1")[0] == 0
    assert "revoked" in run("api-key", "list")[1]


def test_an_unknown_workspace_is_refused_without_echo(globex: int) -> None:
    for args in (
        ("create", "r", "--workspace", "initech"),
        ("list", "--workspace", "initech"),
        ("revoke", "1", "--workspace", "initech"),
    ):
        code, out = run("api-key", *args)
        assert code == 2 and "workspace: there is no workspace of this name" in out
        assert "initech" not in out


def test_bad_options_name_the_field(globex: int) -> None:
    code, out = run("api-key", "create", "r", "--permission", "everything")
    assert code == 2 and "permission:" in out and "everything" not in out
    code, out = run("api-key", "create", "r", "--rate-limit", "fast")
    assert code == 2 and "rate_limit:" in out and "fast" not in out
