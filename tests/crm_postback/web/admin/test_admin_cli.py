"""`postback admin`, `postback mapping export/import`, `postback event-set verify`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.simulator import SimulatorControl
from models import AdminUser, AuditEntry
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

runner = CliRunner()


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.output


def test_users_and_tokens(sqlite_db: str) -> None:
    assert run("admin", "user-add", "bob", input="short\nshort\n")[0] == 2
    code, out = run("admin", "user-add", "bob", input="a long password\na long password\n")
    assert code == 0, out
    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = session.scalars(select(AdminUser)).one()
        assert user.password_hash.startswith("$argon2id$")
    code, out = run("admin", "token-create", "bob", "--label", "ci")
    assert code == 0 and out.splitlines()[-1].startswith("pba_")
    code, out = run("admin", "user-list")
    assert "bob" in out and "active" in out
    assert run("admin", "user-disable", "bob")[0] == 0
    assert "disabled" in run("admin", "user-list")[1]
    assert run("admin", "token-revoke", "1") == (0, "admin token 1 revoked\n")
    assert run("admin", "user-password", "nobody", input="x" * 12 + "\n" + "x" * 12 + "\n")[0] == 2


def test_mapping_export_import_round_trip(
    sqlite_db: str, make_event_set: Callable[..., int], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "ops")
    make_event_set()
    target = tmp_path / "acme.yaml"
    code, out = run("mapping", "export", "acme", "-o", str(target))
    assert code == 0, out
    first = target.read_text()
    assert run("mapping", "import", str(target)) == (
        0,
        "acme: 0 created, 0 updated, 0 deleted, 2 unchanged\n",
    )
    code, out = run("mapping", "export", "acme")
    assert out == first
    document = yaml.safe_load(first)
    document["mappings"][0]["when"] = ["value > 100"]
    target.write_text(yaml.safe_dump(document))
    assert run("mapping", "import", str(target), "--dry-run")[1] == (
        "acme: dry run: would be 0 created, 1 updated, 0 deleted, 1 unchanged\n"
    )
    assert run("mapping", "import", str(target))[0] == 0
    with session_scope(workspace=ALL_WORKSPACES) as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "mapping.update"))
        assert entry.one().actor == "cli:ops"
    code, out = run("admin", "audit", "--event-set", "acme")
    assert "cli:ops" in out and "mapping.update" in out and "conditions" in out
    document["mappings"][0]["event"] = "purchase"
    target.write_text(yaml.safe_dump(document))
    code, out = run("mapping", "import", str(target))
    assert code == 2 and "mappings.0.event" in out


def test_event_set_verify(
    sqlite_db: str, make_event_set: Callable[..., int], simulator: SimulatorControl
) -> None:
    make_event_set(advertiser_id="7000000001")
    make_event_set(name="other", source_id="7300000000000000002", advertiser_id="7000000001")
    code, out = run("event-set", "verify", "acme")
    assert code == 0 and "verified" in out and "request_id" in out
    code, out = run("event-set", "verify", "other")
    assert code == 1 and "is not among its 1 CRM event set(s)" in out


def test_cli_changes_are_audited_as_the_unix_user(
    sqlite_db: str, make_event_set: Callable[..., int], monkeypatch
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    make_event_set()
    assert run("event-set", "pause", "acme")[0] == 0
    assert run("mapping", "remove", "1")[0] == 0
    with session_scope(workspace=ALL_WORKSPACES) as session:
        found = [(e.action, e.actor) for e in session.scalars(select(AuditEntry))][-2:]
    assert found == [("event_set.pause", "cli:carol"), ("mapping.delete", "cli:carol")]
