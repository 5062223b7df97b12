"""Admin fixtures: a user (a member of a workspace with a role), a logged-in TestClient,
CSRF tokens scraped from the pages, admin tokens.

To act as a given user in a given workspace: `make_user("bob", workspace="b", role="viewer")`
(the workspace is made if missing), then either `login(client, "bob")` and pages with
`?workspace=b` (remembered afterwards), or `token_for("bob")` and JSON API calls with
`X-Workspace: b` (`as_user(...)` gives such a client).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from crm_postback.configuration.admin_accounts import add_member_in, create_token, create_user
from crm_postback.configuration.workspaces import add_workspace, find_workspace
from crm_postback.simulator import SimulatorControl
from crm_postback.web.app import create_app
from models import DEFAULT_WORKSPACE_NAME, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import trigger_body  # type: ignore[import-not-found]

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FIELD_ERROR = re.compile(r'class="field-error" data-field="([^"]+)">([^<]+)<')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def field_errors(html: str) -> dict[str, str]:
    import html as html_module

    return {name: html_module.unescape(message) for name, message in FIELD_ERROR.findall(html)}


def flashes(html: str) -> list[str]:
    import html as html_module

    return [
        html_module.unescape(m.strip())
        for m in re.findall(r'<div class="flash [a-z]+" role="status">([^<]*)</div>', html)
    ]


def login(client: TestClient, username: str = "alice", password: str = PASSWORD) -> str:
    """Logs in; returns the session's CSRF token."""
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"csrf_token": csrf_of(page.text), "username": username, "password": password},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text[:2000]
    return csrf_of(client.get("/admin/event-sets").text)


def ensure_workspace(name: str) -> int:
    """The workspace's id, made if missing."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        found = find_workspace(session, name) or add_workspace(session, name)
        session.commit()
        return found.id


def make_admin_user(
    username: str = "alice",
    password: str = PASSWORD,
    *,
    workspace: str | None = DEFAULT_WORKSPACE_NAME,
    role: Role | str = Role.OWNER,
    instance_admin: bool = False,
) -> int:
    """A user who is `role` of `workspace` (made if missing; None: of no workspace)."""
    workspace_id = ensure_workspace(workspace) if workspace else None
    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = create_user(session, username, password, instance_admin=instance_admin)
        if workspace_id is not None:
            add_member_in(session, workspace_id, user, Role(role))
        session.commit()
        return user.id


def add_membership(username: str, workspace: str, role: Role | str) -> None:
    from crm_postback.configuration.admin_accounts import get_user

    workspace_id = ensure_workspace(workspace)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        add_member_in(session, workspace_id, get_user(session, username), Role(role))
        session.commit()


def token_for(username: str) -> str:
    """A new admin token of the user (`Authorization: Bearer ...`)."""
    from crm_postback.configuration.admin_accounts import get_user

    with session_scope(workspace=ALL_WORKSPACES) as session:
        new = create_token(session, get_user(session, username), "tests")
        session.commit()
        return new.token


def api_client(username: str, workspace: str | None = None) -> TestClient:
    """A JSON API client with the user's new token, in `workspace` (X-Workspace) if given.
    Use it as a context manager."""
    headers = {"Authorization": f"Bearer {token_for(username)}"}
    if workspace is not None:
        headers["X-Workspace"] = workspace
    return TestClient(create_app(), headers=headers)


def submitted(lead: str, event_set: str = "acme") -> dict[str, object]:
    """A `lead.submitted` trigger of `lead`, five minutes ago, with an email key."""
    return trigger_body("lead.submitted", lead, event_set, match_keys={"email": "a@example.com"})


@pytest.fixture
def acme_live(
    request: pytest.FixtureRequest,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
) -> None:
    """The event set "acme", whose postbacks go out as they are queued (tasks run inline) to
    the simulator; made on the test's database: any_db's when the test asks for it, else
    SQLite."""
    request.getfixturevalue("any_db" if "any_db" in request.fixturenames else "sqlite_db")
    make_event_set()


@pytest.fixture
def make_user(sqlite_db: str) -> Callable[..., int]:
    """`make_user(name, password, workspace="default", role="owner", instance_admin=False)`."""
    return make_admin_user


@pytest.fixture
def alice(make_user: Callable[..., int]) -> int:
    return make_user("alice")


@pytest.fixture
def browser(sqlite_db: str) -> Iterator[TestClient]:
    """A client that keeps cookies, like a browser (not logged in)."""
    with TestClient(create_app(), base_url="http://testserver") as client:
        yield client


@pytest.fixture
def admin_client(browser: TestClient, alice: int) -> tuple[TestClient, str]:
    """Logged in as alice; the second item is the session's CSRF token."""
    return browser, login(browser)


@pytest.fixture
def admin_token(alice: int) -> str:
    from crm_postback.configuration.admin_accounts import find_user

    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = find_user(session, "alice")
        assert user is not None
        new = create_token(session, user, "tests")
        session.commit()
        return new.token


@pytest.fixture
def api(sqlite_db: str, admin_token: str) -> Iterator[TestClient]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    with TestClient(create_app(), headers=headers) as client:
        yield client
