"""The admin's match-quality page: score, suggestion, chart (inline SVG), coverage, dropped
keys; a viewer sees it, another workspace's event set is not found; hostile names escaped."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from crm_postback.tiktok.match_key_kinds import MatchKeyKind as K
from crm_postback.web.app import create_app
from models import Role, utcnow
from tests.crm_postback.operations.test_match_quality import add  # type: ignore[import-not-found]
from tests.crm_postback.web.admin.conftest import (  # type: ignore[import-not-found]
    ensure_workspace,
    login,
    make_admin_user,
)


@pytest.fixture(params=["sqlite_db", "pg_db"])
def db(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


def viewer_client() -> TestClient:
    make_admin_user("vera", role=Role.VIEWER)
    client = TestClient(create_app())
    login(client, "vera")
    return client


def test_a_viewer_sees_the_score_chart_and_suggestion(
    db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set()
    now = utcnow()
    add(set_id, 6, mask=int(K.EMAIL | K.PHONE), event_name="Purchase", at=now - timedelta(hours=1))
    add(set_id, 2, mask=int(K.EMAIL | K.TTCLID), event_name="Lead", at=now - timedelta(days=3))
    add(set_id, 1, mask=0, status="no_match_key", at=now - timedelta(days=2), dropped=["phone"])
    with viewer_client() as client:
        page = client.get(f"/admin/event-sets/{set_id}/match-quality")
    assert page.status_code == 200
    html = page.text
    assert 'data-score="' in html and "/ 10" in html
    assert 'data-suggestion="lead_or_click"' in html
    assert "of Purchase events in the last 14 days have neither ttclid nor TikTok lead id" in html
    assert html.count('class="mq-bar"') == 14
    bars = dict(re.findall(r'class="mq-bar" data-day="([0-9-]+)" data-events="(\d+)"', html))
    assert sum(int(n) for n in bars.values()) == 9
    assert bars[now.date().isoformat()] == "6"
    assert 'data-dropped="phone"' in html
    assert 'data-event="Purchase"' in html and 'data-event="Lead"' in html
    assert "1</strong> of them not sent for want of a match key" in html
    assert "<script>" not in html.split("<main>")[1]  # no inline script
    assert " style=" not in html  # the CSP allows no inline style
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_an_empty_event_set_says_so(db: str, make_event_set: Callable[..., int]) -> None:
    set_id = make_event_set()
    with viewer_client() as client:
        page = client.get(f"/admin/event-sets/{set_id}/match-quality")
    assert page.status_code == 200
    assert 'data-score="none"' in page.text
    assert "No events in the last 14 days: nothing to score yet." in page.text
    assert 'class="mq-line"' not in page.text and page.text.count('class="mq-bar"') == 14


def test_another_workspaces_event_set_is_not_found(
    db: str, make_event_set: Callable[..., int]
) -> None:
    other = ensure_workspace("globex")
    theirs = make_event_set("beta", "7300000000000000002", workspace_id=other)
    add(theirs, 3, mask=int(K.EMAIL), event_name="SecretEvent", workspace=other, at=utcnow())
    mine = make_event_set()
    with viewer_client() as client:
        for path in (
            f"/admin/event-sets/{theirs}/match-quality",
            f"/admin/event-sets/{theirs}/match-quality?workspace=globex",
            "/admin/event-sets/999999/match-quality",
            "/admin/event-sets/99999999999999999999999/match-quality",
        ):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert "SecretEvent" not in answer.text and "beta" not in answer.text
        assert client.get(f"/admin/event-sets/{mine}/match-quality").status_code == 200
        assert client.get("/admin/event-sets/x/match-quality").status_code in (404, 422)


def test_hostile_event_names_are_escaped(db: str, make_event_set: Callable[..., int]) -> None:
    set_id = make_event_set()
    recent = utcnow() - timedelta(hours=1)
    add(set_id, 1, mask=int(K.EMAIL), event_name='<img src=x onerror="alert(1)">', at=recent)
    add(set_id, 1, mask=int(K.EMAIL), dropped=['<script>alert("k")</script>'], at=recent)
    with viewer_client() as client:
        html = client.get(f"/admin/event-sets/{set_id}/match-quality").text
    assert "<img src=x" not in html and '<script>alert("k")' not in html
    assert "&lt;img src=x" in html and "&lt;script&gt;" in html


def test_logged_out_is_sent_to_the_login(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set()
    with TestClient(create_app()) as client:
        answer = client.get(f"/admin/event-sets/{set_id}/match-quality", follow_redirects=False)
    assert answer.status_code in (303, 307, 401)
