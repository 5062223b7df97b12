"""Defects the review of the workspaces' admin found, on SQLite and PostgreSQL: forms act in
the workspace their page showed; PATCH /api/users checks the role and runs one command;
personal tokens are the instance's in every face; adding an unknown user does not echo it;
the instance audit trail is a "no such page" for others; a viewer's invalid mapping form is
refused for the role first.

olive owns `acme` and `globex` (no default); ida is an instance administrator; bob is a user
of no workspace; vera a viewer of acme.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.web.app import create_app
from models import AdminToken, AdminUser, AuditEntry, Workspace, WorkspaceMember
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    PASSWORD,
    add_membership,
    api_client,
    csrf_of,
    login,
    make_admin_user,
)

HIDDEN_WORKSPACE = re.compile(r'name="workspace" value="([^"]+)"')


@pytest.fixture(params=["sqlite_db", "pg_db"])
def two_owned(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(request.param)
    make_admin_user("olive", workspace="acme", role="owner")
    add_membership("olive", "globex", "owner")
    make_admin_user("ida", workspace=None, instance_admin=True)
    make_admin_user("bob", workspace=None)
    make_admin_user("vera", workspace="acme", role="viewer")


def browser_as(username: str) -> tuple[TestClient, str]:
    client = TestClient(create_app(), base_url="http://testserver")
    return client, login(client, username, PASSWORD)


def form_of(page: str, action: str) -> dict[str, str]:
    """The hidden fields of the page's form posting to `action`."""
    start = page.index(f'action="/admin{action}"')
    end = page.index("</form>", start)
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page[start:end]))


def roles_of(username: str) -> dict[str, str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = session.execute(
            select(Workspace.name, WorkspaceMember.role)
            .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
            .join(AdminUser, AdminUser.id == WorkspaceMember.user_id)
            .where(AdminUser.username == username)
        )
        return {name: role.value for name, role in rows}


def test_every_form_carries_the_workspace_its_page_showed(two_owned: None) -> None:
    client, _ = browser_as("olive")
    with client:
        for path in ("/admin/members", "/admin/tokens", "/admin/event-sets/new"):
            page = client.get(f"{path}?workspace=globex").text
            forms = page.count('name="csrf_token"')
            assert forms and HIDDEN_WORKSPACE.findall(page) == ["globex"] * forms, path


def test_a_form_acts_in_its_pages_workspace_after_another_tab_switched(two_owned: None) -> None:
    client, _ = browser_as("olive")
    with client:
        tab_one = client.get("/admin/members?workspace=acme").text
        client.get("/admin/event-sets?workspace=globex")  # tab 2 switches
        fields = form_of(tab_one, "/members/add")
        assert fields["workspace"] == "acme"
        answer = client.post(
            "/admin/members/add",
            data=fields | {"username": "bob", "role": "viewer"},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        assert roles_of("bob") == {"acme": "viewer"}
        # The redirect shows where it acted.
        assert "bob" in client.get(answer.headers["location"]).text

        tab_one = client.get("/admin/members?workspace=acme").text
        client.get("/admin/event-sets?workspace=globex")
        client.post(
            "/admin/members/role",
            data=form_of(tab_one, "/members/role") | {"username": "bob", "role": "editor"},
        )
        assert roles_of("bob") == {"acme": "editor"}

        tab_one = client.get("/admin/event-sets/new?workspace=acme").text
        client.get("/admin/event-sets?workspace=globex")
        fields = dict(
            re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', tab_one.split("<main>")[1])
        )
        client.post(
            "/admin/event-sets/new",
            data=fields
            | {"name": "spring", "event_set_id": "7300000000000000009", "access_token": "t-1"},
        )
    with session_scope(workspace=ALL_WORKSPACES) as session:
        from models import EventSet

        made = session.execute(
            select(Workspace.name)
            .join(EventSet, EventSet.workspace_id == Workspace.id)
            .where(EventSet.name == "spring")
        ).scalars()
        assert list(made) == ["acme"]


def test_a_new_users_role_is_in_the_workspace_the_users_page_showed(two_owned: None) -> None:
    client, _ = browser_as("ida")
    with client:
        page = client.get("/admin/users?workspace=acme").text
        client.get("/admin/event-sets?workspace=globex")
        client.post(
            "/admin/users/new",
            data=form_of(page, "/users/new")
            | {"username": "nora", "password": "a long password!", "role": "editor"},
        )
    assert roles_of("nora") == {"acme": "editor"}


def test_a_json_write_never_follows_the_browsers_remembered_workspace(two_owned: None) -> None:
    client, csrf = browser_as("olive")
    with client:
        client.get("/admin/event-sets?workspace=globex")
        added = client.post(
            "/admin/api/members",
            json={"username": "bob", "role": "viewer"},
            headers={"X-CSRF-Token": csrf},
        )
        assert added.status_code == 201, added.text
    assert roles_of("bob") == {"acme": "viewer"}  # olive's first workspace, not the cookie's


def audit_rows() -> list[tuple[str, int | None]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return [
            (e.action, e.workspace_id)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


def test_changing_a_user_needs_an_instance_admin_and_something_to_change(
    two_owned: None,
) -> None:
    with api_client("olive", "acme") as api:
        for body in ({}, {"active": False}, {"password": "another long one"}):
            refused = api.patch("/admin/api/users/bob", json=body)
            assert refused.status_code == 403, (body, refused.text)
            assert refused.json()["errors"][0]["field"] == "role"
    with api_client("ida") as api:
        empty = api.patch("/admin/api/users/bob", json={})
        assert empty.status_code == 422
        assert {p["field"] for p in empty.json()["errors"]} == {"password", "active"}
        before = len(audit_rows())
        both = api.patch(
            "/admin/api/users/bob", json={"password": "a brand new one!", "active": False}
        )
        assert both.status_code == 200, both.text
        assert [a for a, _ in audit_rows()[before:]] == [
            "admin_user.change_password",
            "admin_user.disable",
        ]
        # One transaction: a refused password changes nothing, not even `active`.
        refused = api.patch("/admin/api/users/bob", json={"password": "short", "active": True})
        assert refused.status_code == 422
    with session_scope(workspace=ALL_WORKSPACES) as session:
        bob = session.scalar(select(AdminUser).where(AdminUser.username == "bob"))
        assert bob is not None and bob.active is False


def test_personal_tokens_are_the_instances_in_every_face(two_owned: None) -> None:
    """Created and revoked from a page, the JSON API (in any workspace) or the CLI: an entry
    of no workspace. A viewer sees their own tokens' prefixes."""

    client, _ = browser_as("vera")
    with client:
        page = client.get("/admin/tokens?workspace=acme").text
        made = client.post("/admin/tokens/new", data=form_of(page, "/tokens/new") | {"label": "w"})
        assert made.status_code == 200 and 'class="new-token">pba_' in made.text
        listed = client.get("/admin/tokens").text
        with session_scope(workspace=ALL_WORKSPACES) as session:
            prefix = session.scalars(select(AdminToken.token_prefix)).first()
        assert prefix and f"{prefix}…" in listed  # their own, though a viewer
        token_id = re.search(r'action="/admin/tokens/(\d+)/revoke"', listed)
        assert token_id
        client.post(
            f"/admin/tokens/{token_id.group(1)}/revoke",
            data=form_of(listed, f"/tokens/{token_id.group(1)}/revoke"),
        )
    with api_client("olive", "globex") as api:
        created = api.post("/admin/api/tokens", json={"label": "j"})
        assert created.status_code == 201
        assert all(
            t["prefix"].startswith("pba_") for t in api.get("/admin/api/tokens").json()["tokens"]
        )
        assert api.delete(f"/admin/api/tokens/{created.json()['id']}").status_code == 204
    token_entries = [row for row in audit_rows() if row[0].startswith("admin_token.")]
    assert [a for a, _ in token_entries] == [
        "admin_token.create",
        "admin_token.revoke",
        "admin_token.create",
        "admin_token.revoke",
    ]
    assert {w for _, w in token_entries} == {None}


def test_someone_elses_token_needs_an_instance_admin(two_owned: None) -> None:
    from crm_postback.commands.lookups import NotFound
    from crm_postback.commands.manage_admin_accounts import (
        CreateAdminToken,
        RevokeAdminToken,
        create_admin_token,
        revoke_admin_token,
    )
    from crm_postback.commands.unit_of_work import Actor, NotPermitted
    from models import Role

    with session_scope(workspace=ALL_WORKSPACES) as session:
        ids = {
            row.username: row.id
            for row in session.execute(select(AdminUser.username, AdminUser.id))
        }
    # An owner whose actor name looks like bob's is still not bob.
    posing = Actor("web:bob", workspace_id=1, role=Role.OWNER)
    with pytest.raises(NotPermitted):
        create_admin_token(CreateAdminToken("bob", "x", caller_user_id=ids["olive"]), posing)
    with pytest.raises(NotPermitted):  # an unknown name is refused alike
        create_admin_token(CreateAdminToken("nobody", "x", caller_user_id=ids["olive"]), posing)
    bobs = create_admin_token(CreateAdminToken("bob", "cli"), Actor.cli())
    with pytest.raises(NotFound):
        revoke_admin_token(RevokeAdminToken(bobs.id, caller_user_id=ids["olive"]), posing)
    assert revoke_admin_token(RevokeAdminToken(bobs.id), Actor.cli()).newly_revoked
    assert {w for a, w in audit_rows() if a.startswith("admin_token.")} == {None}


def test_adding_an_unknown_user_does_not_repeat_the_name(two_owned: None) -> None:
    with api_client("olive", "acme") as api:
        refused = api.post("/admin/api/members", json={"username": "nobody-xq", "role": "viewer"})
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "username"
        assert refused.json()["errors"][0]["message"] == "there is no admin user of this name"
        assert "nobody-xq" not in refused.text
    client, _ = browser_as("olive")
    with client:
        page = client.get("/admin/members?workspace=acme").text
        answer = client.post(
            "/admin/members/add",
            data=form_of(page, "/members/add") | {"username": "nobody-xq", "role": "viewer"},
        )
        assert "there is no admin user of this name" in answer.text
        assert "nobody-xq" not in answer.text


def test_the_instance_trail_is_no_such_page_for_others(two_owned: None) -> None:
    with api_client("olive", "acme") as api:
        refused = api.get("/admin/api/audit?scope=instance")
        assert refused.status_code == 404
        assert refused.json()["errors"][0]["message"] == "there is no such page"
    client, _ = browser_as("olive")
    with client:
        page = client.get("/admin/audit?scope=instance")
        assert page.status_code == 404 and "there is no such page" in page.text
    with api_client("ida") as api:
        api.post("/admin/api/workspaces", json={"name": "initech"})
        found = api.get("/admin/api/audit?scope=instance").json()["entries"]
        assert found[0]["action"] == "workspace.create"


def test_the_event_set_form_does_not_offer_environment_references(two_owned: None) -> None:
    client, _ = browser_as("olive")
    with client:
        page = client.get("/admin/event-sets/new?workspace=acme").text
    assert "reads it from the environment" not in page
    assert "set by the operator only" in page


def test_a_viewers_invalid_mapping_form_is_refused_for_the_role_first(two_owned: None) -> None:
    from tests.crm_postback.web.admin.test_admin_workspaces import (  # type: ignore[import-not-found]
        make_event_set_in,
    )

    ids = make_event_set_in("acme", "acme-crm", "7300000000000000001", "tok-acme-1234")
    client, _ = browser_as("vera")
    with client:
        page = client.get(f"/admin/event-sets/{ids['event_set']}?workspace=acme").text
        fields = {"csrf_token": csrf_of(page), "workspace": "acme"}
        for action in ("save", "preview"):
            answer = client.post(
                f"/admin/event-sets/{ids['event_set']}/mappings/new",
                data=fields | {"trigger": "", "event_choice": "nonsense", "action": action},
            )
            assert answer.status_code == 403, (action, answer.status_code)
            assert "field-error" not in answer.text


def test_a_form_whose_field_and_url_name_two_workspaces_changes_nothing(two_owned: None) -> None:
    client, _ = browser_as("olive")
    with client:
        page = client.get("/admin/members?workspace=acme").text
        answer = client.post(
            "/admin/members/add?workspace=globex",
            data=form_of(page, "/members/add") | {"username": "bob", "role": "viewer"},
        )
        assert answer.status_code == 403
    assert roles_of("bob") == {}
