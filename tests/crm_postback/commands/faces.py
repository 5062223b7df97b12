"""The three faces of one use case: the CLI, the admin pages and the admin JSON API.

A cross-face test is parametrized by `face`; it performs the use case through that face and
asserts one expected state and one expected audit trail, which only differ by the actor.
The `face` fixture (and the admin fixtures it asks for) reach the tests through conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.configuration.audit import entry_dict
from models import AuditEntry
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

ACTORS = {"cli": "cli:ops", "page": "web:alice", "api": "api:alice"}
runner = CliRunner()


@dataclass
class Face:
    name: str  # "cli", "page" or "api"
    page_client: TestClient | None = None
    csrf: str = ""
    api_client: TestClient | None = None

    @property
    def actor(self) -> str:
        return ACTORS[self.name]

    def cli(self, *args: str, input: str | None = None) -> tuple[int, str]:
        result = runner.invoke(app, list(args), input=input)
        return result.exit_code, result.output

    def post_form(self, path: str, **fields: Any) -> httpx.Response:
        """A logged-in form POST to /admin{path}, with the session's CSRF token."""
        assert self.page_client is not None
        return self.page_client.post(
            f"/admin{path}", data={"csrf_token": self.csrf, **fields}, follow_redirects=False
        )

    @property
    def api(self) -> TestClient:
        assert self.api_client is not None
        return self.api_client


@pytest.fixture(params=list(ACTORS))
def face(
    request: pytest.FixtureRequest, sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Face]:
    monkeypatch.setattr("getpass.getuser", lambda: "ops")
    if request.param == "page":
        client, csrf = request.getfixturevalue("admin_client")
        yield Face("page", page_client=client, csrf=csrf)
    elif request.param == "api":
        yield Face("api", api_client=request.getfixturevalue("api"))
    else:
        yield Face("cli")


def last_audit_id() -> int:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return session.scalar(select(func.max(AuditEntry.id))) or 0


def audit_since(mark: int) -> tuple[list[dict[str, Any]], set[str]]:
    """The entries written after `mark` without id, time and actor; and their actors."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.id > mark).order_by(AuditEntry.id)
        ).all()
        found = [entry_dict(row) for row in rows]
    for entry in found:
        del entry["id"], entry["at"]
    actors = {entry.pop("actor") for entry in found}
    return found, actors
