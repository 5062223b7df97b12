"""Delivery metrics: counters recorded per batch, from what the results carry (no SQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from crm_postback.api import enqueue_trigger
from crm_postback.observability import metric_definitions
from crm_postback.observability.delivery_metrics import observe_many, record_delivery
from crm_postback.observability.metric_definitions import LATENCY_BUCKETS
from crm_postback.observability.metrics_exposition import render
from crm_postback.simulator import SimulatorControl
from crm_postback.tiktok.response_outcomes import Answer, Outcome
from models import DEFAULT_WORKSPACE_ID, DeliveryAttempt, Postback, PostbackStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.sql_statements import recorded_statements  # type: ignore[import-not-found]
from worker.claim_planning import Item
from worker.delivery import EventResult


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


def value(name: str, **labels: str) -> float:
    return metric_definitions.metrics().registry.get_sample_value(name, labels) or 0.0


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
def ready(
    sqlite_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> SimulatorControl:
    make_event_set()
    return simulator


def test_a_delivered_lifecycle_is_counted(ready: SimulatorControl) -> None:
    before = {
        "accepted": value(
            "postback_triggers_received_total", workspace="default", result="accepted"
        ),
        "duplicate": value(
            "postback_triggers_received_total", workspace="default", result="duplicate"
        ),
        "delivered": value(
            "postback_events_total",
            workspace="default",
            event_set="acme",
            status="delivered",
            code="0",
        ),
        "requests": value(
            "postback_tiktok_requests_total",
            workspace="default",
            event_set="acme",
            outcome="delivered",
            http_status="200",
        ),
        "latency": value(
            "postback_delivery_latency_seconds_count", workspace="default", event_set="acme"
        ),
        "durations": value(
            "postback_tiktok_request_duration_seconds_count", workspace="default", event_set="acme"
        ),
        "processed": value("postback_triggers_processed_total"),
    }
    for n in range(3):
        enqueue_trigger(submitted(f"L-{n}", idempotency_key=f"k-{n}"))
    enqueue_trigger(submitted("L-0", idempotency_key="k-0"))  # the same again: a duplicate
    with pytest.raises(Exception, match="email"):  # strict: a bad key refuses the trigger
        enqueue_trigger(submitted("L-9", match_keys={"email": "not an address"}), strict=True)

    assert (
        value("postback_triggers_received_total", workspace="default", result="accepted")
        - before["accepted"]
        == 3
    )
    assert (
        value("postback_triggers_received_total", workspace="default", result="duplicate")
        - before["duplicate"]
        == 1
    )
    assert value("postback_triggers_received_total", workspace="default", result="rejected") >= 1
    delivered = value(
        "postback_events_total", workspace="default", event_set="acme", status="delivered", code="0"
    )
    assert delivered - before["delivered"] == 3
    requests = value(
        "postback_tiktok_requests_total",
        workspace="default",
        event_set="acme",
        outcome="delivered",
        http_status="200",
    )
    with session_scope(workspace=ALL_WORKSPACES) as session:
        request_ids = set(session.scalars(select(DeliveryAttempt.request_id)))
    assert requests - before["requests"] == len(request_ids)
    latency = value(
        "postback_delivery_latency_seconds_count", workspace="default", event_set="acme"
    )
    assert latency - before["latency"] == 3
    durations = value(
        "postback_tiktok_request_duration_seconds_count", workspace="default", event_set="acme"
    )
    assert durations - before["durations"] == len(request_ids)
    assert value("postback_triggers_processed_total") - before["processed"] >= 3


def test_failures_are_counted_by_status_and_code(ready: SimulatorControl) -> None:
    from worker.tasks import deliver

    def by(status: str) -> dict[str, float]:
        counts: dict[str, float] = {}
        for (_, labels), count in _events().items():
            found = dict(labels)
            if found["status"] == status and found["event_set"] == "acme":
                counts[found["code"]] = counts.get(found["code"], 0) + count
        return counts

    ready.set_faults(http_5xx_rate=1.0)
    before = by("retrying")
    enqueue_trigger(submitted("L-1"))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.scalars(select(Postback)).one()
    assert row.status == PostbackStatus.RETRYING
    code = "none" if row.last_code is None else str(row.last_code)
    assert by("retrying").get(code, 0) - before.get(code, 0) == 1

    ready.set_faults(http_5xx_rate=0.0, auth_error_rate=1.0)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(
            update(Postback).values(next_attempt_at=datetime.now(UTC), lease_until=None)
        )
        session.commit()
    held_before = sum(by("held").values())
    deliver([row.id])
    assert sum(by("held").values()) - held_before == 1


def _events() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = render(include_outbox=False)
    return {k: v for k, v in scrape(body.decode()).items() if k[0] == "postback_events_total"}


def _result(postback_id: int, answer: Answer) -> EventResult:
    item = Item(postback_id, {"event_id": f"e-{postback_id}"}, 1, created_at=datetime.now(UTC))
    return EventResult(postback_id, 1, 1, answer, 1000, "", "acme", item, DEFAULT_WORKSPACE_ID)


def test_a_batch_of_1000_costs_one_increment_per_group(monkeypatch: pytest.MonkeyPatch) -> None:
    ok = Answer(Outcome.DELIVERED, 200, 0, "OK", "req-1", 120)
    bad = Answer(Outcome.INVALID, 200, 40002, "bad", "req-2", 80)
    results = [_result(n, ok) for n in range(990)] + [_result(n, bad) for n in range(990, 1000)]
    statuses = ["delivered"] * 990 + ["failed"] * 10
    calls: list[float] = []
    m = metric_definitions.metrics()
    real_labels = m.events.labels

    def counting_labels(*labels: str) -> Any:
        child = real_labels(*labels)
        real_inc = child.inc

        def inc(amount: float = 1) -> None:
            calls.append(amount)
            real_inc(amount)

        monkeypatch.setattr(child, "inc", inc)
        return child

    monkeypatch.setattr(m.events, "labels", counting_labels)
    record_delivery(results, statuses, datetime.now(UTC))
    assert sorted(calls) == [10, 990]


def test_observe_many_matches_observe() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    one = Histogram("one_seconds", "x", buckets=LATENCY_BUCKETS, registry=registry)
    many = Histogram("many_seconds", "x", buckets=LATENCY_BUCKETS, registry=registry)
    values = [0.01, 0.3, 0.3, 7, 59.9, 60, 4000, 10**6]
    for v in values:
        one.observe(v)
    observe_many(many, values)
    for suffix in ("_count", "_sum"):
        assert registry.get_sample_value("one_seconds" + suffix) == registry.get_sample_value(
            "many_seconds" + suffix
        )
    for bound in (*LATENCY_BUCKETS, float("inf")):
        le = "+Inf" if bound == float("inf") else str(float(bound))
        assert registry.get_sample_value(
            "one_seconds_bucket", {"le": le}
        ) == registry.get_sample_value("many_seconds_bucket", {"le": le})


def test_a_metrics_failure_never_breaks_delivery(
    ready: SimulatorControl, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Any:
        raise RuntimeError("metrics backend gone")

    monkeypatch.setattr(metric_definitions, "metrics", broken)
    enqueue_trigger(submitted("L-1"))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalar(select(Postback.status)) == PostbackStatus.DELIVERED
    assert "metrics: could not record" in caplog.text


def test_recording_sends_no_statement_inside_the_delivery_transaction(
    ready: SimulatorControl, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`record_delivery` runs inside `delivery.record`'s transaction, which holds the rows'
    locks: what it needs (event set names, row facts) comes with the results. Both ways
    rows are claimed are covered: inserted already claimed by the trigger's task, and
    claimed from the outbox by a delivery task."""
    from worker import delivery
    from worker.app import app
    from worker.tasks import deliver

    statements: list[str] = []
    recorded: list[list[str]] = []

    def record_and_count(results: Any, statuses: list[str], now: datetime) -> None:
        with recorded_statements() as seen:
            record_delivery(results, statuses, now)
        statements.extend(statement.sql for statement in seen)
        recorded.append(list(statuses))

    monkeypatch.setattr(delivery, "record_delivery", record_and_count)
    enqueue_trigger(submitted("L-1"))  # eager: the task inserts its row claimed, sends it
    assert recorded == [["delivered"]]

    app.conf.task_always_eager = False  # stored now, claimed by the delivery task below
    for n in range(2, 5):
        enqueue_trigger(submitted(f"L-{n}"))
    _process_all()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        poison = session.scalars(
            select(Postback).where(Postback.lead_ref == "L-3", Postback.status == "pending")
        ).one()
        poison.payload = {**poison.payload, "user": {"email": ["NOT-HASHED@example.com"]}}
        session.commit()
        poison_id, poison_event_id = poison.id, poison.event_id
        pending = list(session.scalars(select(Postback.id).where(Postback.status == "pending")))
    deliver(pending)

    assert sorted(recorded[1]) == ["delivered", "delivered", "failed"]
    assert statements == []
    [warning] = [r for r in caplog.records if getattr(r, "postback_id", None) == poison_id]
    assert (warning.lead_id, warning.event_id) == ("L-3", poison_event_id)  # type: ignore[attr-defined]
    assert warning.event_set == "acme"  # type: ignore[attr-defined]


def _process_all() -> None:
    from crm_postback.core.settings import get_settings
    from models import Trigger
    from worker.processing import process_triggers

    with session_scope(workspace=ALL_WORKSPACES) as session:
        ids = list(session.scalars(select(Trigger.id).where(Trigger.status == "received")))
        process_triggers(session, ids, get_settings(), datetime.now(UTC))
        session.commit()
