"""Admin fixtures: a user, a logged-in TestClient, CSRF tokens scraped from the pages."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from crm_postback.configuration.admin_accounts import create_token, create_user
from crm_postback.web.app import create_app
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

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


@pytest.fixture
def make_user(sqlite_db: str) -> Callable[..., int]:
    def make(username: str = "alice", password: str = PASSWORD) -> int:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            user = create_user(session, username, password)
            session.commit()
            return user.id

    return make


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
