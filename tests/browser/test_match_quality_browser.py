"""The match-quality page in Chromium: the inline SVG chart renders (bars per day, coverage
lines) under the admin's CSP, the numbers match the table, another workspace's set is a 404."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from crm_postback.tiktok.match_key_kinds import MatchKeyKind as K
from models import utcnow
from tests.browser.test_admin_browser import log_in  # type: ignore[import-not-found]
from tests.crm_postback.operations.test_match_quality import add  # type: ignore[import-not-found]
from tests.crm_postback.web.admin.conftest import ensure_workspace  # type: ignore[import-not-found]


def test_the_chart_renders_under_the_policy(
    page: Any, server: str, make_event_set: Callable[..., int]
) -> None:
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    set_id = make_event_set("mq-acme", "7300000000000000077")
    now = utcnow()
    for days_ago, n, mask in ((0, 5, K.EMAIL | K.TTCLID), (2, 3, K.EMAIL), (9, 4, K.PHONE)):
        add(set_id, n, mask=int(mask), event_name="Lead", at=now - timedelta(days=days_ago))
    other = ensure_workspace("globex")
    theirs = make_event_set("hidden", "7300000000000000078", workspace_id=other)

    log_in(page, server)
    page.goto(f"{server}/admin/event-sets")
    page.locator(f'a[href$="/event-sets/{set_id}/match-quality"]').click()
    page.wait_for_url(f"**/event-sets/{set_id}/match-quality")
    page.goto(f"{server}/admin/event-sets/{set_id}")
    page.get_by_role("link", name="Match quality").click()
    page.wait_for_url(f"**/event-sets/{set_id}/match-quality")
    assert page.locator("h1").inner_text().startswith("Match quality")
    chart = page.locator("svg.mq-chart")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    bars = page.locator("svg.mq-chart rect.mq-bar")
    assert bars.count() == 14
    heights = [float(bars.nth(i).get_attribute("height")) for i in range(14)]
    assert heights[-1] > heights[-3] > 0 and heights[-2] == 0  # 5 today, 3 two days ago
    assert max(heights) == heights[-1]
    today = page.locator(f'rect.mq-bar[data-day="{now.date().isoformat()}"]')
    assert today.get_attribute("data-events") == "5"
    lines = page.locator("svg.mq-chart polyline.mq-line")
    assert lines.count() == 3  # TikTok lead id or ttclid, email, phone
    # the lead-or-click line is at 100 % today: its last point sits on the top of the plot
    points = page.locator('circle.mq-point[data-key="lead_or_click"]')
    assert points.count() == 3
    top = float(points.last.get_attribute("cy"))
    bottom = float(points.first.get_attribute("cy"))
    assert top < bottom
    assert page.locator("tr[data-day] >> nth=-1").inner_text().split()[1] == "5"
    assert page.locator("[data-suggestion]").is_visible()
    assert "neither ttclid nor TikTok lead id" in page.locator("[data-suggestion]").inner_text()
    assert refused == []

    answer = page.goto(f"{server}/admin/event-sets/{theirs}/match-quality")
    assert answer is not None and answer.status == 404
    assert "hidden" not in page.content()
