"""Workspaces in Chromium: the header's switcher lists only the user's workspaces and
switches with a change of the select (admin.js, under the page policy); a viewer sees no
button to change an event set and gets the 403 page for a change they send anyway."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm_postback.configuration.admin_accounts import add_member_in, create_user, get_user
from crm_postback.configuration.workspaces import add_workspace
from models import DEFAULT_WORKSPACE_ID, Role, Workspace
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.browser.conftest import ADMIN_PASSWORD  # type: ignore[import-not-found]
from tests.browser.test_admin_browser import (  # type: ignore[import-not-found]
    create_event_set,
    log_in,
)


def log_in_as(page: Any, server: str, username: str) -> None:
    page.goto(f"{server}/admin/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{server}/admin/event-sets")


def test_the_switcher_and_a_viewer(page: Any, server: str) -> None:
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    with session_scope(workspace=ALL_WORKSPACES) as session:
        for name in ("beta", "gamma"):
            add_workspace(session, name)
        session.flush()
        beta = session.scalar(select(Workspace.id).where(Workspace.name == "beta"))
        add_member_in(session, beta, get_user(session, "admin"), Role.OWNER)
        viewer = create_user(session, "vera", ADMIN_PASSWORD)
        add_member_in(session, DEFAULT_WORKSPACE_ID, viewer, Role.VIEWER)
        session.commit()

    log_in(page, server)
    create_event_set(page)  # in default
    page.goto(f"{server}/admin/event-sets")
    options = page.locator("select[name=workspace] option").all_inner_texts()
    assert options == ["beta", "default"]  # not gamma: admin is no member of it
    page.select_option("select[name=workspace]", "beta")  # admin.js submits on change
    page.wait_for_url(f"{server}/admin/event-sets?workspace=beta")
    assert "acme-crm" not in page.content()
    page.goto(f"{server}/admin/delivery")  # remembered
    assert page.locator("select[name=workspace]").input_value() == "beta"
    page.goto(f"{server}/admin/event-sets?workspace=gamma")
    assert "Not found" in page.content()
    page.goto(f"{server}/admin/event-sets?workspace=default")
    page.click("text=acme-crm")
    event_set_url = page.url
    page.click("button:has-text('Log out')")

    log_in_as(page, server, "vera")
    assert page.locator("select[name=workspace] option").all_inner_texts() == ["default"]
    assert page.locator("text=+ New event set").count() == 0
    page.goto(event_set_url)
    assert page.locator("button:has-text('Pause')").count() == 0
    assert "hidden for viewers" in page.content()
    # A change sent anyway (a form kept from earlier) is refused by the server.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.request.post(event_set_url + "/pause", form={"csrf_token": csrf})
    assert answer.status == 403
    assert "does not allow this" in answer.text()
    assert refused == []
