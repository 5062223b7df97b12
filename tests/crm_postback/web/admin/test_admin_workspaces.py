"""The admin per workspace and role, trying to break it, on SQLite and PostgreSQL.

Workspace `default` holds event set `acme` (token TOKEN_A); workspace `b` holds `beta`
(TOKEN_B). vera is viewer, ed editor, olga owner of default; bert owner of b only; ida an
instance administrator (member of nothing). A viewer changes nothing (every write of the
pages and the JSON API is 403, no row and no audit entry changes) and never sees a token, a
masked token or a prefix; an editor changes mappings and replays but not event sets,
tokens or members; a member of default gets 404 for b's ids and for `?workspace=b` /
`X-Workspace: b`; the switcher lists only the user's workspaces; an instance admin sees all.

How a test acts as a user in a workspace (reusable): `make_admin_user(name, workspace=W,
role=R)` (conftest), then `pages_as(name)` (a logged-in TestClient and its CSRF token;
pages take `?workspace=W`, remembered afterwards) or `api_client(name, W)` (a JSON API
client sending `X-Workspace: W` with a fresh admin token).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crm_postback.commands.manage_api_keys import CreateApiKey, create_api_key
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration.audit import SYSTEM_ACTOR
from crm_postback.configuration.event_set_service import create_event_set
from crm_postback.configuration.mapping_service import add_mapping
from crm_postback.core.settings import get_settings
from crm_postback.web.app import create_app
from models import (
    AdminToken,
    AdminUser,
    AuditEntry,
    EventSet,
    Mapping,
    Postback,
    Workspace,
    WorkspaceMember,
)
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    api_client,
    csrf_of,
    ensure_workspace,
    login,
    make_admin_user,
    token_for,
)

TOKEN_A = "tok-secret-acme-QZXW"
TOKEN_B = "tok-secret-beta-JKVY"
MAPPINGS = (
    {"trigger_type": "lead.submitted", "event_name": "Lead"},
    {"trigger_type": "lead.sold", "event_name": "lead_sold", "properties": {"currency": "USD"}},
)


def make_event_set_in(workspace: str, name: str, source_id: str, token: str) -> dict[str, int]:
    workspace_id = ensure_workspace(workspace)
    with session_scope(workspace=workspace_id) as session:
        event_set = create_event_set(
            session,
            get_settings(),
            name=name,
            source_id=source_id,
            access_token=token,
            actor=SYSTEM_ACTOR,
        )
        mapping_ids = [
            add_mapping(session, event_set, **m, actor=SYSTEM_ACTOR).id  # type: ignore[arg-type]
            for m in MAPPINGS
        ]
        session.commit()
        return {"event_set": event_set.id, "mapping": mapping_ids[0]}


@pytest.fixture(params=["sqlite_db", "pg_db"])
def world(request: pytest.FixtureRequest) -> dict[str, Any]:
    request.getfixturevalue(request.param)
    a = make_event_set_in("default", "acme", "7300000000000000001", TOKEN_A)
    b = make_event_set_in("b", "beta", "7300000000000000002", TOKEN_B)
    make_admin_user("vera", workspace="default", role="viewer")
    make_admin_user("ed", workspace="default", role="editor")
    make_admin_user("olga", workspace="default", role="owner")
    make_admin_user("bert", workspace="b", role="owner")
    make_admin_user("ida", workspace=None, instance_admin=True)
    # Secrets a viewer must never see: other admins' token prefixes, an API key's prefix.
    olga_token = token_for("olga")
    key = create_api_key(CreateApiKey("acme-router"), Actor.cli())
    return {"a": a, "b": b, "olga_token": olga_token, "key": key.key}


@contextmanager
def pages_as(username: str) -> Iterator[tuple[TestClient, str]]:
    """A browser logged in as the user; the second item is the session's CSRF token."""
    with TestClient(create_app(), base_url="http://testserver") as client:
        yield client, login(client, username)


def state() -> tuple[Any, ...]:
    """Everything a write could change (audit entries included)."""
    with session_scope(workspace=ALL_WORKSPACES) as session:

        def rows(query: Any) -> list[Any]:
            return [tuple(row) for row in session.execute(query)]

        return (
            session.scalar(select(func.count()).select_from(AuditEntry)),
            rows(
                select(
                    EventSet.id,
                    EventSet.name,
                    EventSet.status,
                    EventSet.test_event_code,
                    EventSet.sealed_token,
                ).order_by(EventSet.id)
            ),
            rows(select(Mapping.id, Mapping.version, Mapping.enabled).order_by(Mapping.id)),
            rows(select(Postback.id, Postback.status).order_by(Postback.id)),
            rows(
                select(
                    WorkspaceMember.workspace_id, WorkspaceMember.user_id, WorkspaceMember.role
                ).order_by(WorkspaceMember.id)
            ),
            rows(
                select(AdminUser.username, AdminUser.active, AdminUser.password_hash).order_by(
                    AdminUser.id
                )
            ),
            rows(select(AdminToken.id, AdminToken.revoked_at).order_by(AdminToken.id)),
            rows(select(Workspace.id, Workspace.name).order_by(Workspace.id)),
        )


def page_writes(ids: dict[str, int], csrf: str) -> list[tuple[str, dict[str, Any]]]:
    es, mapping = ids["event_set"], ids["mapping"]
    mapping_form = {
        "csrf_token": csrf,
        "trigger": "lead.sold",
        "event_choice": "Purchase",
        "enabled": "on",
        "value_mode": "none",
        "currency_mode": "fixed",
        "currency_fixed": "EUR",
        "action": "save",
    }
    event_set_form = {
        "csrf_token": csrf,
        "name": "new-one",
        "event_set_id": "7300000000000000009",
        "kind": "crm",
        "access_token": "tok-new-token-1234",
        "lead_event_source": "crm-postback",
    }
    plain = {"csrf_token": csrf}
    return [
        ("/admin/event-sets/new", event_set_form),
        (f"/admin/event-sets/{es}/edit", event_set_form | {"name": "renamed"}),
        (f"/admin/event-sets/{es}/pause", plain),
        (f"/admin/event-sets/{es}/resume", plain),
        (f"/admin/event-sets/{es}/test-code", plain | {"test_event_code": "TEST1"}),
        (f"/admin/event-sets/{es}/verify", plain),
        (f"/admin/event-sets/{es}/token", plain | {"access_token": "tok-other-5678"}),
        (f"/admin/event-sets/{es}/mappings/new", mapping_form),
        (f"/admin/event-sets/{es}/mappings/new", mapping_form | {"action": "preview"}),
        (f"/admin/event-sets/{es}/mappings/{mapping}", mapping_form),
        (f"/admin/event-sets/{es}/mappings/{mapping}/toggle", plain),
        (f"/admin/event-sets/{es}/mappings/{mapping}/delete", plain),
        (
            f"/admin/event-sets/{es}/preview",
            plain | {"preview_lead": "L-1", "preview_type": "lead.sold"},
        ),
        ("/admin/delivery/replay", plain | {"event_set_id": str(es)}),
        ("/admin/members/add", plain | {"username": "bert", "role": "owner"}),
        ("/admin/members/role", plain | {"username": "olga", "role": "viewer"}),
        ("/admin/members/remove", plain | {"username": "olga"}),
        ("/admin/workspaces/new", plain | {"name": "c"}),
        ("/admin/users/new", plain | {"username": "eve", "password": "a long password"}),
        ("/admin/users/password", plain | {"username": "olga", "password": "a long password"}),
        ("/admin/users/disable", plain | {"username": "olga"}),
    ]


def api_writes(ids: dict[str, int]) -> list[tuple[str, str, Any]]:
    mapping = ids["mapping"]
    new_mapping = {"trigger": "lead.sold", "event": "Purchase", "properties": {"currency": "EUR"}}
    new_set = {"name": "new-one", "event_set_id": "7300000000000000009", "access_token": "t-1234"}
    return [
        ("POST", "/admin/api/event-sets", new_set),
        ("PATCH", "/admin/api/event-sets/acme", {"name": "renamed"}),
        ("PATCH", "/admin/api/event-sets/acme", {"access_token": "tok-other-5678"}),
        ("POST", "/admin/api/event-sets/acme/pause", {}),
        ("POST", "/admin/api/event-sets/acme/resume", None),
        ("POST", "/admin/api/event-sets/acme/verify", None),
        ("POST", "/admin/api/event-sets/acme/mappings", new_mapping),
        ("PUT", f"/admin/api/event-sets/acme/mappings/{mapping}", new_mapping),
        ("DELETE", f"/admin/api/event-sets/acme/mappings/{mapping}", None),
        ("PUT", "/admin/api/event-sets/acme/mappings.yaml", "event_set: acme\nmappings: []\n"),
        ("POST", "/admin/api/event-sets/acme/preview", {"trigger_id": 1}),
        ("POST", "/admin/api/postbacks/replay", {"event_set": "acme"}),
        ("POST", "/admin/api/members", {"username": "bert", "role": "owner"}),
        ("PATCH", "/admin/api/members/olga", {"role": "viewer"}),
        ("DELETE", "/admin/api/members/olga", None),
        ("POST", "/admin/api/workspaces", {"name": "c"}),
        ("POST", "/admin/api/users", {"username": "eve", "password": "a long password"}),
        ("PATCH", "/admin/api/users/olga", {"active": False}),
    ]


def call(client: TestClient, method: str, path: str, body: Any) -> Any:
    if isinstance(body, str):
        return client.request(method, path, content=body.encode())
    return (
        client.request(method, path, json=body)
        if body is not None
        else client.request(method, path)
    )


def test_a_viewer_changes_nothing_on_any_page(world: dict[str, Any]) -> None:
    before = state()
    with pages_as("vera") as (client, csrf):
        for path, form in page_writes(world["a"], csrf):
            response = client.post(path, data=form, follow_redirects=False)
            assert response.status_code == 403, (path, response.status_code)
            assert "your role in this workspace does not allow this" in response.text.lower()
            assert state() == before, path


def test_a_viewer_changes_nothing_through_the_json_api(world: dict[str, Any]) -> None:
    before = state()
    with api_client("vera") as api:
        before = state()  # the new token is not a change of the viewer's
        for method, path, body in api_writes(world["a"]):
            response = call(api, method, path, body)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["errors"][0]["field"] == "role"
            assert state() == before, (method, path)


def secrets_of(world: dict[str, Any]) -> list[str]:
    olga, key = world["olga_token"], world["key"]
    return [TOKEN_A, TOKEN_A[-4:], TOKEN_B, TOKEN_B[-4:], olga, olga[:12], key, key[:12]]


def test_a_viewer_never_sees_a_token_or_a_prefix(world: dict[str, Any]) -> None:
    es, mapping = world["a"]["event_set"], world["a"]["mapping"]
    pages = [
        "/admin/event-sets",
        f"/admin/event-sets/{es}",
        f"/admin/event-sets/{es}/edit",
        f"/admin/event-sets/{es}/mappings/{mapping}",
        f"/admin/event-sets/{es}/preview",
        "/admin/delivery",
        "/admin/audit",
        "/admin/members",
        "/admin/tokens",
    ]
    answers: list[bytes] = []
    with pages_as("vera") as (client, _):
        for path in pages:
            response = client.get(path)
            assert response.status_code == 200, path
            answers.append(response.content)
        assert b"hidden for viewers" in client.get(f"/admin/event-sets/{es}").content
        assert b"hidden for viewers" in client.get("/admin/audit").content
    with api_client("vera") as api:
        for path in (
            "/admin/api/event-sets",
            "/admin/api/event-sets/acme",
            "/admin/api/event-sets/acme/mappings",
            "/admin/api/delivery",
            "/admin/api/audit",
            "/admin/api/members",
            "/admin/api/workspaces",
        ):
            response = api.get(path)
            assert response.status_code == 200, path
            answers.append(response.content)
        tokens = api.get("/admin/api/tokens").json()["tokens"]
        # Their own tokens' prefixes only: they were shown each whole token once.
        assert tokens and all(t["prefix"].startswith("pba_") for t in tokens)
        assert api.get("/admin/api/event-sets/acme").json()["access_token"] == "hidden for viewers"
        entries = api.get("/admin/api/audit").json()["entries"]
        hidden = [
            value
            for e in entries
            for snapshot in (e["before"] or {}, e["after"] or {})
            for name, value in snapshot.items()
            if "token" in name or name.endswith("prefix")
        ]
        assert hidden and set(hidden) == {"hidden for viewers"}
    for answer in answers:
        text = answer.decode()
        leaked = [s for s in secrets_of(world) if s in text]
        assert not leaked, leaked
    # An editor sees the masked token as before (never the token itself).
    with pages_as("ed") as (client, _):
        page = client.get(f"/admin/event-sets/{es}").text
        assert TOKEN_A[-4:] in page and TOKEN_A not in page


def test_an_editor_changes_mappings_and_replays_but_nothing_an_owner_does(
    world: dict[str, Any],
) -> None:
    es, mapping = world["a"]["event_set"], world["a"]["mapping"]
    with api_client("ed") as api:
        owners_only = [
            w
            for w in api_writes(world["a"])
            if "/mappings" not in w[1] and "/preview" not in w[1] and "/replay" not in w[1]
        ]
        for method, path, body in owners_only:
            before = state()
            response = call(api, method, path, body)
            assert response.status_code == 403, (method, path, response.text)
            assert state() == before
        preview = api.post(
            "/admin/api/event-sets/acme/preview",
            json={"trigger": {"type": "lead.submitted", "lead_id": "L-1"}},
        )
        assert preview.status_code == 200, preview.text
        created = api.post(
            "/admin/api/event-sets/acme/mappings",
            json={"trigger": "lead.sold", "event": "Purchase", "properties": {"currency": "EUR"}},
        )
        assert created.status_code == 201, created.text
        assert api.delete(f"/admin/api/event-sets/acme/mappings/{mapping}").status_code == 204
        replay = api.post("/admin/api/postbacks/replay", json={"event_set": "acme"})
        assert replay.status_code == 200, replay.text
    with pages_as("ed") as (client, csrf):
        response = client.post(f"/admin/event-sets/{es}/pause", data={"csrf_token": csrf})
        assert response.status_code == 403


def test_another_workspace_is_not_found(world: dict[str, Any]) -> None:
    b_es, b_mapping = world["b"]["event_set"], world["b"]["mapping"]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        b_audit = session.scalar(
            select(AuditEntry.id).where(AuditEntry.workspace_id == ensure_workspace("b"))
        )
    with pages_as("olga") as (client, csrf):
        for path in (
            f"/admin/event-sets/{b_es}",
            f"/admin/event-sets/{b_es}/edit",
            f"/admin/event-sets/{b_es}/mappings/{b_mapping}",
            f"/admin/event-sets/{b_es}/preview",
            f"/admin/event-sets/{b_es}/mappings.yaml",
            "/admin/event-sets?workspace=b",
            "/admin/audit?workspace=b",
            "/admin/event-sets?workspace=nope",
        ):
            assert client.get(path).status_code == 404, path
        before = state()
        nowhere = {"event_set": 2_000_000_000, "mapping": 2_000_000_001}
        for (path, form), (missing_path, missing_form) in list(
            zip(page_writes(world["b"], csrf), page_writes(nowhere, csrf), strict=True)
        )[1:14]:
            answer = client.post(path, data=form, follow_redirects=False)
            missing = client.post(missing_path, data=missing_form, follow_redirects=False)
            assert answer.status_code == missing.status_code, path
            assert answer.status_code in (404, 303), path
        assert state() == before
        audit_page = client.get("/admin/audit").text
        assert "beta" not in audit_page
    with api_client("olga") as api:
        for path in (
            "/admin/api/event-sets/beta",
            f"/admin/api/event-sets/beta/mappings/{b_mapping}",
            "/admin/api/event-sets/beta/mappings.yaml",
        ):
            assert api.get(path).status_code == 404, path
        assert b_audit not in [e["id"] for e in api.get("/admin/api/audit").json()["entries"]]
        assert all(e["workspace_id"] == 1 for e in api.get("/admin/api/audit").json()["entries"])
        for headers, query in (({"X-Workspace": "b"}, ""), ({}, "?workspace=b")):
            answer = api.get("/admin/api/event-sets" + query, headers=headers)
            assert answer.status_code == 404
            missing = api.get("/admin/api/event-sets?workspace=nope")
            assert answer.json() == missing.json()
        assert api.get("/admin/api/event-sets").json()["event_sets"][0]["name"] == "acme"
    with api_client("bert", "b") as api:
        assert [e["name"] for e in api.get("/admin/api/event-sets").json()["event_sets"]] == [
            "beta"
        ]
        assert api.get("/admin/api/event-sets/acme").status_code == 404


def test_the_switcher_shows_only_the_users_workspaces(world: dict[str, Any]) -> None:
    with pages_as("olga") as (client, _):
        page = client.get("/admin/event-sets").text
        assert '<option value="default"' in page and '<option value="b"' not in page
    with pages_as("bert") as (client, _):
        page = client.get("/admin/event-sets").text  # b: bert's first (and only) workspace
        assert '<option value="b"' in page and '<option value="default"' not in page
        assert "beta" in page and "acme" not in page
    with pages_as("ida") as (client, _):
        page = client.get("/admin/event-sets").text
        assert '<option value="b"' in page and '<option value="default"' in page
        assert "acme" in page  # the default workspace first
        assert "beta" in client.get("/admin/event-sets?workspace=b").text
        assert "beta" in client.get("/admin/event-sets").text  # remembered
        assert client.get("/admin/workspaces").status_code == 200
        assert client.get("/admin/users").status_code == 200
        instance = client.get("/admin/audit?scope=instance")
        assert instance.status_code == 200 and "api_key.create" not in instance.text
    with pages_as("olga") as (client, _):
        for path in ("/admin/workspaces", "/admin/users", "/admin/audit?scope=instance"):
            assert client.get(path).status_code == 404, path


def test_owners_manage_members_and_instance_admins_workspaces(
    world: dict[str, Any], make_user: Callable[..., int]
) -> None:
    make_admin_user("newbie", workspace=None)
    with api_client("olga") as api:
        added = api.post("/admin/api/members", json={"username": "newbie", "role": "editor"})
        assert added.status_code == 201, added.text
        assert {"username": "newbie", "role": "editor", "active": True} in api.get(
            "/admin/api/members"
        ).json()["members"]
        changed = api.patch("/admin/api/members/newbie", json={"role": "viewer"})
        assert changed.json() == {"username": "newbie", "role": "viewer"}
        assert api.delete("/admin/api/members/newbie").status_code == 204
        last_owner = api.patch("/admin/api/members/olga", json={"role": "viewer"})
        assert last_owner.status_code == 422
        actions = [e["action"] for e in api.get("/admin/api/audit").json()["entries"]]
        assert actions[:3] == ["member.remove", "member.role", "member.add"]
        assert api.post("/admin/api/workspaces", json={"name": "c"}).status_code == 403
    with api_client("ida") as api:
        made = api.post("/admin/api/workspaces", json={"name": "c"})
        assert made.status_code == 201
        added = api.post(
            "/admin/api/members",
            json={"username": "newbie", "role": "owner"},
            headers={"X-Workspace": "c"},
        )
        assert added.status_code == 201
    with api_client("newbie") as api:
        assert api.get("/admin/api/workspaces").json()["workspaces"] == [
            {"id": made.json()["id"], "name": "c", "role": "owner"}
        ]


def test_any_member_manages_only_their_own_tokens(world: dict[str, Any]) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        olgas = session.scalar(select(AdminToken.id).order_by(AdminToken.id))
    with api_client("vera") as api:
        created = api.post("/admin/api/tokens", json={"label": "mine"})
        assert created.status_code == 201 and created.json()["token"].startswith("pba_")
        assert api.delete(f"/admin/api/tokens/{created.json()['id']}").status_code == 204
        before = state()
        assert api.delete(f"/admin/api/tokens/{olgas}").status_code == 404
        assert state() == before
    with pages_as("vera") as (client, csrf):
        page = client.post("/admin/tokens/new", data={"csrf_token": csrf, "label": "web"})
        assert page.status_code == 200 and 'class="new-token">pba_' in page.text
        assert "new-token" not in client.get("/admin/tokens").text  # shown once
        csrf = csrf_of(client.get("/admin/tokens").text)
        refused = client.post(f"/admin/tokens/{olgas}/revoke", data={"csrf_token": csrf})
        assert "no admin token" in refused.text
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.get(AdminToken, olgas).revoked_at is None  # type: ignore[union-attr]
