"""The README's two workspaces, made by running the README's own commands, keep apart: each
key sends only to its own event sets, reads only its own leads, and the same lead id is two
leads. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.web.app import create_app
from models import Lead, Trigger, Workspace
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

README = Path(__file__).resolve().parents[2] / "README.md"
LOOP = re.compile(r"^for (\w+) in ([^;]+); do (.+); done$")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    return str(request.getfixturevalue(name))


def readme_commands() -> list[list[str]]:
    """The commands of the README's Workspaces block, one argument list each (`&&` and a
    `for` loop expanded, comments dropped)."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Workspaces", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    commands: list[str] = []
    for line in lines:
        line = line.split("  #", 1)[0].strip()
        loop = LOOP.match(line)
        if loop:
            name, values, body = loop.groups()
            commands += [body.replace(f"${name}", value) for value in values.split()]
        elif line:
            commands += [part.strip() for part in line.split("&&")]
    parsed = [shlex.split(command) for command in commands]
    assert all(words[0] == "postback" for words in parsed), parsed
    return [words[1:] for words in parsed]


def _trigger(event_set: str, lead: str = "L-1001") -> dict[str, Any]:
    occurred = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    return {
        "type": "lead.sold",
        "lead_id": lead,
        "event_set": event_set,
        "occurred_at": occurred,
        "attributes": {"value": 10, "currency": "USD"},
    }


def test_the_readme_shows_two_workspaces_with_a_source_each() -> None:
    commands = readme_commands()
    assert ["workspace", "add", "acme"] in commands and ["workspace", "add", "globex"] in commands
    assert sum(c[:2] == ["api-key", "create"] for c in commands) == 2
    assert all("--workspace" in c for c in commands if c[0] != "workspace")


def test_the_readmes_workspaces_keep_apart(database: str) -> None:
    runner = CliRunner()
    keys: dict[str, str] = {}
    for args in readme_commands():
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        if args[:2] == ["api-key", "create"]:
            keys[args[args.index("--workspace") + 1]] = result.output.strip().splitlines()[-1]
    assert set(keys) == {"acme", "globex"} and all(k.startswith("pbk_") for k in keys.values())
    with session_scope(workspace=ALL_WORKSPACES) as session:
        ids = {w.name: w.id for w in session.scalars(select(Workspace))}
    application = create_app()
    with (
        TestClient(application, headers={"Authorization": f"Bearer {keys['acme']}"}) as acme,
        TestClient(application, headers={"Authorization": f"Bearer {keys['globex']}"}) as globex,
    ):
        first = {**_trigger("acme-crm"), "match_keys": {"ttclid": "E.C.P.acme"}}
        sent = acme.post("/v1/triggers", json=first)
        assert sent.status_code == 202, sent.text
        unknown = acme.post("/v1/triggers", json=_trigger("no-such-set")).json()
        assert acme.post("/v1/triggers", json=_trigger("globex-crm")).json() == unknown
        assert globex.post("/v1/triggers", json=_trigger("acme-crm")).json() == unknown
        assert globex.post("/v1/triggers", json=_trigger("7300000000000000001")).json() == unknown
        # acme's key may only send triggers (--permission triggers:send).
        assert acme.get("/v1/leads/L-1001/postbacks").status_code == 403
        assert globex.get("/v1/leads/L-1001/postbacks").status_code == 404
        put = globex.put("/v1/leads/L-1001", json={"match_keys": {"ttclid": "E.C.P.globex"}})
        assert put.status_code == 200, put.text
        assert globex.get("/v1/leads/L-1001/postbacks").json()["triggers"] == []
    with session_scope(workspace=ALL_WORKSPACES) as session:
        leads = session.scalars(select(Lead).where(Lead.lead_ref == "L-1001")).all()
        by_workspace = {lead.workspace_id: lead for lead in leads}
        assert set(by_workspace) == {ids["acme"], ids["globex"]}
        assert by_workspace[ids["acme"]].ttclid == "E.C.P.acme"
        assert by_workspace[ids["globex"]].ttclid == "E.C.P.globex"
        triggers = session.scalars(select(Trigger)).all()
        assert [t.workspace_id for t in triggers] == [ids["acme"]]
