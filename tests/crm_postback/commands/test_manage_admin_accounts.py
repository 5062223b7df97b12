"""Admin users and tokens through `postback admin`: the state, the audit entries, and never a
password, its hash or a token in them or in what the commands print."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from crm_postback.cli import app
from crm_postback.commands.manage_admin_accounts import AddAdminUser, add_admin_user
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration.admin_accounts import start_session
from crm_postback.configuration.audit import entry_dict
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings
from models import DEFAULT_WORKSPACE_ID, AdminSession, AdminToken, AdminUser, AuditEntry, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.sql_statements import recorded_statements  # type: ignore[import-not-found]

runner = CliRunner()
PASSWORD = "a long password"
NEW_PASSWORD = "another long password"


@pytest.fixture(autouse=True)
def operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "ops")


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.output


def audit_entries(action: str | None = None) -> list[dict[str, object]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        query = select(AuditEntry).order_by(AuditEntry.id)
        if action:
            query = query.where(AuditEntry.action == action)
        return [entry_dict(entry) for entry in session.scalars(query)]


def add_bob() -> str:
    code, out = run("admin", "user-add", "bob", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0, out
    return out


def bob() -> AdminUser:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return session.scalars(select(AdminUser).where(AdminUser.username == "bob")).one()


def sessions_of_bob() -> int:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = session.scalars(select(AdminUser)).one()
        start_session(session, get_settings(), user)
        session.commit()
        return int(session.scalar(select(func.count()).select_from(AdminSession)) or 0)


def test_user_add_is_audited(sqlite_db: str) -> None:
    add_bob()
    assert bob().password_hash.startswith("$argon2id$")
    [entry] = audit_entries("admin_user.add")
    assert entry["actor"] == "cli:ops"
    assert (entry["entity_type"], entry["entity_id"]) == ("admin_user", bob().id)
    assert entry["after"] == {
        "username": "bob",
        "source": "cli",
        "active": True,
        "instance_admin": False,
    }


def test_password_change_ends_sessions_and_is_audited(sqlite_db: str) -> None:
    add_bob()
    old_hash = bob().password_hash
    assert sessions_of_bob() == 1
    code, out = run("admin", "user-password", "bob", input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert code == 0 and "bob: password set; their sessions ended" in out
    assert bob().password_hash != old_hash
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalar(select(func.count()).select_from(AdminSession)) == 0
    [entry] = audit_entries("admin_user.change_password")
    assert entry["actor"] == "cli:ops" and entry["entity_id"] == bob().id
    assert entry["after"] == {"username": "bob", "sessions": "ended"}


def test_disable_and_enable_are_audited_when_they_change_something(sqlite_db: str) -> None:
    add_bob()
    sessions_of_bob()
    assert run("admin", "user-disable", "bob") == (0, "bob: disabled\n")
    assert run("admin", "user-disable", "bob") == (0, "bob: disabled\n")  # no change
    assert not bob().active
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalar(select(func.count()).select_from(AdminSession)) == 0
    assert run("admin", "user-disable", "bob", "--enable") == (0, "bob: enabled\n")
    assert bob().active
    found = [
        (e["action"], e["before"], e["after"])
        for e in audit_entries()
        if e["action"] != "admin_user.add"
    ]
    off = {"username": "bob", "source": "cli", "active": False}
    on = {**off, "active": True}
    assert found == [("admin_user.disable", on, off), ("admin_user.enable", off, on)]


def test_token_create_and_revoke_are_audited(sqlite_db: str) -> None:
    add_bob()
    code, out = run("admin", "token-create", "bob", "--label", "ci")
    assert code == 0, out
    token = out.splitlines()[-1]
    assert run("admin", "token-revoke", "1") == (0, "admin token 1 revoked\n")
    assert run("admin", "token-revoke", "1") == (0, "admin token 1 revoked\n")  # no change
    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.scalars(select(AdminToken)).one()
        assert row.revoked_at is not None and row.user_id == bob().id
    [created] = audit_entries("admin_token.create")
    assert created["actor"] == "cli:ops" and created["entity_id"] == row.id
    assert created["after"] == {
        "user": "bob",
        "label": "ci",
        "token_prefix": token[:12],
        "revoked_at": None,
    }
    [revoked] = audit_entries("admin_token.revoke")
    assert revoked["before"] == created["after"]
    assert revoked["after"]["revoked_at"] == row.revoked_at.isoformat()  # type: ignore[index]


def test_no_password_hash_or_token_in_the_audit_trail_or_the_output(sqlite_db: str) -> None:
    outputs = [add_bob()]
    first_hash = bob().password_hash
    outputs.append(
        run("admin", "user-password", "bob", input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")[1]
    )
    outputs.append(run("admin", "user-disable", "bob")[1])
    out = run("admin", "token-create", "bob")[1]
    token = out.splitlines()[-1]
    assert token.startswith("pba_")
    # The one place a token is shown: the line after the one that says so.
    assert out.count(token) == 1 and "shown only now" in out.splitlines()[-2]
    outputs.append(run("admin", "token-revoke", "1")[1])
    outputs.append(run("admin", "user-list")[1])
    outputs.append(run("admin", "audit", "--instance", "--limit", "100")[1])
    assert "admin_token.revoke" in outputs[-1] and "admin_user.add" in outputs[-1]
    secrets = (
        PASSWORD,
        NEW_PASSWORD,
        first_hash,
        bob().password_hash,
        token,
        token[12:],
        hashlib.sha256(token.encode()).hexdigest(),
    )
    trail = str(audit_entries())
    for text in (trail, *outputs):
        leaked = [secret for secret in secrets if secret in text]
        assert not leaked, f"{leaked} in {text!r}"


def test_refused_input_names_the_field_and_leaves_no_entry(sqlite_db: str) -> None:
    with pytest.raises(InputRejected) as refused:
        add_admin_user(
            AddAdminUser("bob", "short"),
            Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER, instance_admin=True),
        )
    assert [error.field for error in refused.value.errors] == ["password"]
    code, out = run("admin", "user-disable", "nobody")
    assert code == 2 and "username: there is no admin user of this name" in out
    code, out = run("admin", "token-create", "nobody")
    assert code == 2 and "username: there is no admin user of this name" in out
    code, out = run("admin", "token-revoke", "7")
    assert code == 2 and "id: there is no admin token with this id" in out
    assert audit_entries() == []


def test_members_from_the_cli(sqlite_db: str) -> None:
    code, out = run(
        "admin",
        "user-add",
        "carol",
        "--workspace",
        "default",
        "--role",
        "editor",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert code == 0 and "editor of default" in out, out
    add_bob()
    assert run("workspace", "add", "acme")[0] == 0
    code, out = run("admin", "member-add", "bob", "--workspace", "acme", "--role", "viewer")
    assert code == 0, out
    assert run("admin", "member-role", "bob", "--workspace", "acme", "--role", "owner")[0] == 0
    assert run("admin", "members", "--workspace", "acme")[1].split() == ["bob", "owner", "active"]
    assert "carol" in run("admin", "members")[1]
    code, out = run("admin", "member-remove", "bob", "--workspace", "acme")
    assert code == 2 and "at least one owner" in out  # acme's only owner
    code, out = run("admin", "member-add", "bob", "--workspace", "nope", "--role", "viewer")
    assert code == 2 and "nope" not in out
    code, out = run("admin", "member-add", "carol", "--workspace", "acme", "--role", "boss")
    assert code == 2 and "role: must be viewer, editor or owner" in out
    actions = [e["action"] for e in audit_entries()]
    assert actions.count("member.add") == 2 and "member.role" in actions
    assert "member.role" in run("admin", "audit", "--workspace", "acme")[1]
    assert "admin_user.add" in run("admin", "audit", "--instance")[1]
    help_text = run("admin", "--help")[1]
    assert all(name in help_text for name in ("member-add", "member-remove", "members"))


def test_two_owners_demoting_each_other_at_once_leave_one_owner(pg_db: str) -> None:
    """The owners' rows are locked before they are counted (PostgreSQL, two threads)."""
    import threading

    from crm_postback.commands.manage_admin_accounts import ChangeMemberRole, change_member_role
    from crm_postback.configuration.admin_accounts import add_member_in, create_user
    from crm_postback.configuration.workspaces import add_workspace
    from models import Role, WorkspaceMember
    from models.db import get_engine

    with recorded_statements(get_engine()) as statements:
        for round_ in range(4):
            with session_scope(workspace=ALL_WORKSPACES) as session:
                workspace = add_workspace(session, f"pair-{round_}")
                for name in ("olive", "oscar"):
                    user = create_user(session, f"{name}-{round_}", "a long password!")
                    add_member_in(session, workspace.id, user, Role.OWNER)
                session.commit()
                workspace_id = workspace.id
            barrier = threading.Barrier(2)
            outcomes: list[str] = []

            def demote(
                who: str,
                whom: str,
                workspace_id: int = workspace_id,
                barrier: threading.Barrier = barrier,
                outcomes: list[str] = outcomes,
            ) -> None:
                actor = Actor(f"web:{who}", workspace_id=workspace_id, role=Role.OWNER)
                barrier.wait()
                try:
                    change_member_role(ChangeMemberRole(whom, "editor"), actor)
                    outcomes.append("changed")
                except InputRejected:
                    outcomes.append("refused")

            threads = [
                threading.Thread(target=demote, args=(f"olive-{round_}", f"oscar-{round_}")),
                threading.Thread(target=demote, args=(f"oscar-{round_}", f"olive-{round_}")),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert sorted(outcomes) == ["changed", "refused"]
            with session_scope(workspace=ALL_WORKSPACES) as session:
                owners = session.scalar(
                    select(func.count())
                    .select_from(WorkspaceMember)
                    .where(
                        WorkspaceMember.workspace_id == workspace_id,
                        WorkspaceMember.role == Role.OWNER,
                    )
                )
            assert owners == 1
    assert any("FOR UPDATE" in s.sql and "workspace_members" in s.sql for s in statements)
