"""The /metrics exposition: counters, the outbox gauges read from the database, auth."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from crm_postback.api import enqueue_trigger
from crm_postback.observability.metric_definitions import METRIC_NAMES
from crm_postback.observability.metrics_exposition import render
from models import EventSet, Postback
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import apply_env  # type: ignore[import-not-found]


def submitted(lead: str, minutes_ago: float = 5, **extra: Any) -> dict[str, Any]:
    occurred = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "type": "lead.submitted",
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": occurred.isoformat(),
        "match_keys": {"email": f"{lead.lower()}@example.com"},
        **extra,
    }


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_endpoint_serves_counters_and_outbox_gauges(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    from crm_postback.web.app import create_app

    make_event_set()
    make_event_set(name="beta", source_id="7300000000000000002")
    enqueue_trigger(submitted("L-1"))  # not eager: the trigger and no postback yet
    from crm_postback.core.settings import get_settings
    from models import utcnow
    from worker.processing import process_triggers

    with session_scope(workspace=ALL_WORKSPACES) as session:
        process_triggers(session, [1], get_settings(), utcnow())
        session.commit()
        created = utcnow() - timedelta(minutes=10)
        session.execute(
            update(Postback).values(created_at=created, next_attempt_at=created, lease_until=None)
        )
        beta = session.scalar(select(EventSet).where(EventSet.name == "beta"))
        assert beta is not None
        beta.status = "paused"
        session.commit()
    enqueue_trigger(submitted("L-2"))

    with TestClient(create_app()) as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = scrape(answer.text)
    assert samples[("postback_database_up", ())] == 1
    assert (
        samples[
            (
                "postback_outbox_due",
                (
                    ("event_set", "acme"),
                    ("workspace", "default"),
                ),
            )
        ]
        == 1
    )
    assert (
        samples[
            (
                "postback_outbox_due",
                (
                    ("event_set", "beta"),
                    ("workspace", "default"),
                ),
            )
        ]
        == 0
    )
    assert (
        samples[
            (
                "postback_outbox_open",
                (("event_set", "acme"), ("status", "pending"), ("workspace", "default")),
            )
        ]
        == 1
    )
    age = samples[
        (
            "postback_outbox_oldest_pending_age_seconds",
            (
                ("event_set", "acme"),
                ("workspace", "default"),
            ),
        )
    ]
    assert 590 < age < 700
    assert (
        samples[
            (
                "postback_event_set_paused",
                (
                    ("event_set", "beta"),
                    ("workspace", "default"),
                ),
            )
        ]
        == 1
    )
    assert (
        samples[
            (
                "postback_event_set_paused",
                (
                    ("event_set", "acme"),
                    ("workspace", "default"),
                ),
            )
        ]
        == 0
    )
    assert samples[("postback_triggers_open", (("status", "received"),))] == 1
    with session_scope(workspace=ALL_WORKSPACES) as session:
        due = session.scalar(
            select(func.count()).where(Postback.status == "pending", Postback.event_set_id == 1)
        )
    assert due == 1
    assert (
        "postback_triggers_received_total",
        (("result", "accepted"), ("workspace", "default")),
    ) in samples
    for name in METRIC_NAMES:
        families = {f.name for f in text_string_to_metric_families(answer.text)}
        assert name.removesuffix("_total") in families, name


def test_metrics_token_is_required_when_set(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm_postback.web.app import create_app

    apply_env(monkeypatch, METRICS_TOKEN="scrape-secret-1")
    with TestClient(create_app()) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "scrape-secret-1" not in wrong.text
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1"})
        assert right.status_code == 200 and "postback_outbox_due" in right.text


def test_database_down_is_a_gauge_not_an_error(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none")
    body, _ = render()
    assert scrape(body.decode())[("postback_database_up", ())] == 0
