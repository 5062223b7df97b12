"""Headless Chromium (Debian's `chromium`) driven by Playwright, against the app served by a
real uvicorn server on 127.0.0.1 (a thread of the test process: same SQLite database, Celery
eager so a trigger is delivered to the simulator inside the request that accepted it).

Without Chromium or Playwright the tests skip with the reason; under CI=true they fail.
A failing test saves a screenshot and the page's HTML to test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_postback.configuration.admin_accounts import add_member_in, create_user
from crm_postback.configuration.api_keys import create_key
from crm_postback.simulator import SimulatorControl
from crm_postback.web.app import create_app
from models import DEFAULT_WORKSPACE_ID, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import app_in_thread, require_service  # type: ignore[import-not-found]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ADMIN_PASSWORD = "browser test password"


def _chromium_ready() -> None:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} (install the Debian package 'chromium')")
    import playwright.sync_api  # noqa: F401


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def playwright_browser() -> Iterator[Any]:
    require_service("Chromium for the browser tests", _chromium_ready)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(playwright_browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = playwright_browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the "Delete …?" confirmations
    yield page
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-120:]
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            (ARTIFACTS / f"{name}.html").write_text(page.content())
        except Exception as error:  # the page may be gone; the test's own error matters more
            print(f"could not save a screenshot: {error}")
    context.close()


@pytest.fixture
def server(sqlite_db: str, simulator: SimulatorControl, eager: None) -> Iterator[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        user = create_user(session, "admin", ADMIN_PASSWORD)
        add_member_in(session, DEFAULT_WORKSPACE_ID, user, Role.OWNER)
        session.commit()
    with app_in_thread(create_app()) as url:
        yield url


@pytest.fixture
def ingest_key(server: str) -> str:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        new = create_key(session, "acme-router")
        session.commit()
    return new.key
