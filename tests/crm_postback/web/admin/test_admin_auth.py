"""Admin login, sessions, CSRF, logout: the page refuses what it must."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.configuration.admin_accounts import hash_password
from models import AdminSession, AdminUser, AuditEntry, EventSet
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import apply_env  # type: ignore[import-not-found]
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    PASSWORD,
    csrf_of,
    login,
)


def test_pages_need_a_login_and_come_back_after_it(browser: TestClient, alice: int) -> None:
    response = browser.get("/admin/event-sets/new", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=%2Fadmin%2Fevent-sets%2Fnew"
    page = browser.get(response.headers["location"])
    assert 'name="next" value="/admin/event-sets/new"' in page.text
    answer = browser.post(
        "/admin/login",
        data={
            "csrf_token": csrf_of(page.text),
            "username": "alice",
            "password": PASSWORD,
            "next": "/admin/event-sets/new",
        },
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/admin/event-sets/new"
    assert browser.get("/admin/event-sets/new").status_code == 200


def test_the_session_cookie_is_httponly_lax_and_scoped_to_admin(
    browser: TestClient, alice: int
) -> None:
    page = browser.get("/admin/login")
    answer = browser.post(
        "/admin/login",
        data={"csrf_token": csrf_of(page.text), "username": "alice", "password": PASSWORD},
        follow_redirects=False,
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/admin" in cookie


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/v1/triggers"])
def test_next_never_leaves_the_admin(browser: TestClient, alice: int, target: str) -> None:
    page = browser.get("/admin/login")
    answer = browser.post(
        "/admin/login",
        data={
            "csrf_token": csrf_of(page.text),
            "username": "alice",
            "password": PASSWORD,
            "next": target,
        },
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/admin/event-sets"


def test_wrong_passwords_are_refused_alike_and_lock_the_account(
    browser: TestClient, alice: int
) -> None:
    def attempt(username: str, password: str) -> tuple[int, str]:
        page = browser.get("/admin/login")
        response = browser.post(
            "/admin/login",
            data={"csrf_token": csrf_of(page.text), "username": username, "password": password},
        )
        return response.status_code, response.text

    status, text = attempt("nobody", PASSWORD)
    assert status == 401 and "wrong username or password" in text
    for _ in range(5):
        status, text = attempt("alice", "not the password")
        assert status == 401 and "wrong username or password" in text
    status, text = attempt("alice", PASSWORD)
    assert status == 401 and "too many failed attempts" in text
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(AdminSession)).all() == []


def test_login_needs_the_login_forms_csrf_token(browser: TestClient, alice: int) -> None:
    browser.get("/admin/login")
    response = browser.post(
        "/admin/login", data={"csrf_token": "forged", "username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 403
    assert "expired" in response.text


def test_bootstrap_admin_from_the_environment(
    browser: TestClient, sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, ADMIN_USERNAME="root", ADMIN_PASSWORD="from the environment")
    login(browser, "root", "from the environment")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = session.scalars(select(AdminUser)).one()
        assert user.username == "root" and user.source == "env"
        assert "from the environment" not in user.password_hash
    # A changed ADMIN_PASSWORD (here an argon2 hash) takes over at the next login.
    apply_env(monkeypatch, ADMIN_PASSWORD=hash_password("rotated secret!"))
    with TestClient(browser.app, base_url="http://testserver") as other:
        login(other, "root", "rotated secret!")


def test_forms_without_this_sessions_csrf_token_change_nothing(
    admin_client: tuple[TestClient, str], make_event_set: Callable[..., int]
) -> None:
    client, csrf = admin_client
    set_id = make_event_set()
    for token in ("", "forged", csrf + "x"):
        response = client.post(f"/admin/event-sets/{set_id}/pause", data={"csrf_token": token})
        assert response.status_code == 403
        assert "Nothing was changed" in response.text
    response = client.post(
        f"/admin/event-sets/{set_id}/pause",
        data={"csrf_token": csrf},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.get(EventSet, set_id).status == "active"  # type: ignore[union-attr]
        assert all(e.action != "event_set.pause" for e in session.scalars(select(AuditEntry)))
    ok = client.post(
        f"/admin/event-sets/{set_id}/pause",
        data={"csrf_token": csrf},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert ok.status_code == 303


def test_another_sessions_token_is_refused(
    admin_client: tuple[TestClient, str], make_event_set: Callable[..., int]
) -> None:
    client, _ = admin_client
    set_id = make_event_set()
    with TestClient(client.app, base_url="http://testserver") as other:
        other_csrf = login(other)
    response = client.post(f"/admin/event-sets/{set_id}/pause", data={"csrf_token": other_csrf})
    assert response.status_code == 403


def test_logout_ends_the_session_on_the_server(admin_client: tuple[TestClient, str]) -> None:
    client, csrf = admin_client
    stolen = dict(client.cookies)
    response = client.post("/admin/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/admin/login"
    assert "You are logged out." in client.get("/admin/login").text
    with TestClient(client.app, base_url="http://testserver", cookies=stolen) as replay:
        answer = replay.get("/admin/event-sets", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/login")


def test_a_disabled_users_session_ends(admin_client: tuple[TestClient, str]) -> None:
    client, _ = admin_client
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.scalars(select(AdminUser)).one().active = False
        session.commit()
    assert client.get("/admin/event-sets", follow_redirects=False).status_code == 303


def test_idle_sessions_end(
    admin_client: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = admin_client
    from datetime import timedelta

    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.scalars(select(AdminSession)).one()
        row.last_seen_at = row.last_seen_at - timedelta(minutes=121)
        session.commit()
    assert client.get("/admin/event-sets", follow_redirects=False).status_code == 303
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(AdminSession)).all() == []


def test_ingest_api_is_unaffected(browser: TestClient) -> None:
    assert browser.get("/healthz").status_code == 200
    assert browser.get("/v1/leads/L-1/postbacks").status_code == 401
