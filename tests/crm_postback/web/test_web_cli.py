"""`postback api-key create/list/revoke` and `postback serve` as an operator uses them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.web.app import create_app

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_create_prints_the_key_once_and_list_shows_only_its_prefix(sqlite_db: str) -> None:
    code, out = run("api-key", "create", "acme-router")
    assert code == 0, out
    key = out.strip().splitlines()[-1]
    assert key.startswith("pbk_") and "api key 1 for 'acme-router'" in out
    code, out = run("api-key", "list")
    assert code == 0
    assert "acme-router" in out and "active" in out and key[:12] in out and key not in out
    with TestClient(create_app()) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert client.get("/v1/leads/L-1/postbacks", headers=headers).status_code == 404
    code, out = run("api-key", "list")
    assert "used never" not in out


def test_revoke_makes_the_key_403(sqlite_db: str) -> None:
    key = run("api-key", "create", "acme-router")[1].strip().splitlines()[-1]
    code, out = run("api-key", "revoke", "1")
    assert code == 0 and "api key 1 (acme-router) revoked" in out
    assert "revoked" in run("api-key", "list")[1]
    assert run("api-key", "revoke", "1")[0] == 0  # again: no error
    with TestClient(create_app()) as client:
        response = client.post("/v1/triggers", json={}, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 403


def test_mistakes_are_refused_with_the_reason(sqlite_db: str) -> None:
    code, out = run("api-key", "revoke", "99")
    assert code == 2 and "id: no api key 99" in out
    code, out = run("api-key", "create", "  ")
    assert code == 2 and "name:" in out


def test_serve_is_a_command(isolated_settings: object) -> None:
    code, out = run("serve", "--help")
    assert code == 0 and "--port" in out and "--host" in out
