"""/metrics: the match-quality score per event set, bounded labels, computed once per refresh."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from crm_postback.configuration.workspaces import add_workspace
from crm_postback.observability.metrics_exposition import render
from crm_postback.operations import match_quality_metrics
from crm_postback.operations.match_quality_metrics import match_quality_gauges
from crm_postback.tiktok.match_key_kinds import MatchKeyKind as K
from models import utcnow
from models.db import get_engine, session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import apply_env  # type: ignore[import-not-found]
from tests.crm_postback.operations.test_match_quality import add  # type: ignore[import-not-found]
from tests.sql_statements import recorded_statements  # type: ignore[import-not-found]


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    match_quality_metrics.forget_match_quality()
    yield
    match_quality_metrics.forget_match_quality()


@pytest.fixture(params=["sqlite_db", "pg_db"])
def db(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


def recent() -> datetime:
    return utcnow() - timedelta(hours=1)


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = render(now=utcnow(), per_event_set=(match_quality_gauges,))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def labels(workspace: str, event_set: str) -> tuple[tuple[str, str], ...]:
    return (("event_set", event_set), ("workspace", workspace))


def test_the_score_per_event_set_and_none_without_events(
    db: str, make_event_set: Callable[..., int]
) -> None:
    acme = make_event_set()
    make_event_set("empty", "7300000000000000002")
    add(acme, 3, mask=int(K.EMAIL | K.PHONE), at=recent())  # 4 of 10
    add(acme, 1, mask=int(K.EMAIL | K.PHONE | K.LEAD_ID | K.EXTERNAL_ID), at=recent())  # 9 of 10
    samples = scrape()
    assert samples[("postback_match_quality_score", labels("default", "acme"))] == 5.2
    assert samples[("postback_match_quality_events", labels("default", "acme"))] == 4
    assert samples[("postback_match_quality_events", labels("default", "empty"))] == 0
    assert ("postback_match_quality_score", labels("default", "empty")) not in samples
    names = {name for name, _ in samples}
    for name in ("postback_match_quality_score", "postback_match_quality_events"):
        assert name in names


def test_workspaces_beyond_the_limit_share_other_weighted_by_events(
    db: str, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, METRICS_MAX_WORKSPACES="1")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        b = add_workspace(session, "bravo").id
        c = add_workspace(session, "charlie").id
        session.commit()
    one = make_event_set("leads", "7300000000000000002", workspace_id=b)
    two = make_event_set("leads", "7300000000000000003", workspace_id=c)
    add(one, 3, mask=int(K.EMAIL), workspace=b, at=recent())  # 2 of 10
    add(
        two, 1, mask=int(K.EMAIL | K.PHONE | K.LEAD_ID | K.EXTERNAL_ID), workspace=c, at=recent()
    )  # 9
    samples = scrape()
    assert samples[("postback_match_quality_events", labels("other", "leads"))] == 4
    assert samples[("postback_match_quality_score", labels("other", "leads"))] == 3.75
    assert not any(dict(key).get("workspace") in ("bravo", "charlie") for _, key in samples)


def test_a_scrape_within_the_refresh_reads_no_postbacks(
    db: str, make_event_set: Callable[..., int]
) -> None:
    acme = make_event_set()
    add(acme, 2, mask=int(K.EMAIL), at=recent())
    scrape()
    add(acme, 2, mask=int(K.EMAIL | K.PHONE), at=recent())
    with recorded_statements(get_engine()) as seen:
        second = scrape()
    assert second[("postback_match_quality_events", labels("default", "acme"))] == 2  # cached
    assert not any("match_key_mask" in statement.sql for statement in seen)
    match_quality_metrics.forget_match_quality()
    with recorded_statements(get_engine()) as seen:
        third = scrape()
    assert third[("postback_match_quality_events", labels("default", "acme"))] == 4
    assert any("match_key_mask" in statement.sql for statement in seen)
    assert not any("dropped_keys" in statement.sql for statement in seen)  # no triggers read


def test_the_http_metrics_serve_the_score(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    from crm_postback.web.app import create_app

    add(make_event_set(), 1, mask=int(K.EMAIL), at=recent())
    with TestClient(create_app()) as client:
        answer = client.get("/metrics")
    assert 'postback_match_quality_score{event_set="acme",workspace="default"} 2.0' in answer.text
