"""The admin pages work under their Content-Security-Policy, in Chromium (docs/admin.md)."""

from __future__ import annotations

import re
from typing import Any

from tests.browser.test_admin_browser import (  # type: ignore[import-not-found]
    create_event_set,
    log_in,
)


def test_the_pages_work_under_their_policy(page: Any, server: str) -> None:
    """Chromium reports every script, style or form the policy refuses; the pages need none
    (no inline script or style), and their script still runs."""
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    log_in(page, server)
    create_event_set(page)
    found = re.search(r"/admin/event-sets/(\d+)", page.url)
    assert found, page.url
    event_set = found.group(1)
    for path in (
        f"/admin/event-sets/{event_set}",
        f"/admin/event-sets/{event_set}/preview",
        "/admin/delivery",
        "/admin/audit",
    ):
        page.goto(server + path)
    page.goto(f"{server}/admin/event-sets/{event_set}/mappings/new")
    page.select_option("#event-choice", "__custom__")  # admin.js shows the custom box
    assert page.locator("#custom-event").is_visible()
    assert refused == []
