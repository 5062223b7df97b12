"""Metrics: counters recorded per batch, the /metrics exposition, outbox gauges, auth."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from crm_postback.api import enqueue_trigger
from crm_postback.observability import metrics
from crm_postback.simulator import SimulatorControl
from crm_postback.tiktok.response_outcomes import Answer, Outcome
from models import DeliveryAttempt, EventSet, Postback, PostbackStatus
from models.db import session_scope
from tests.conftest import apply_env  # type: ignore[import-not-found]
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
    return metrics.metrics().registry.get_sample_value(name, labels) or 0.0


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
        "accepted": value("postback_triggers_received_total", result="accepted"),
        "duplicate": value("postback_triggers_received_total", result="duplicate"),
        "delivered": value("postback_events_total", event_set="acme", status="delivered", code="0"),
        "requests": value(
            "postback_tiktok_requests_total",
            event_set="acme",
            outcome="delivered",
            http_status="200",
        ),
        "latency": value("postback_delivery_latency_seconds_count", event_set="acme"),
        "durations": value("postback_tiktok_request_duration_seconds_count", event_set="acme"),
        "processed": value("postback_triggers_processed_total"),
    }
    for n in range(3):
        enqueue_trigger(submitted(f"L-{n}", idempotency_key=f"k-{n}"))
    enqueue_trigger(submitted("L-0", idempotency_key="k-0"))  # the same again: a duplicate
    with pytest.raises(Exception, match="email"):
        enqueue_trigger(submitted("L-9", match_keys={"email": "not an address"}))

    assert value("postback_triggers_received_total", result="accepted") - before["accepted"] == 3
    assert value("postback_triggers_received_total", result="duplicate") - before["duplicate"] == 1
    assert value("postback_triggers_received_total", result="rejected") >= 1
    delivered = value("postback_events_total", event_set="acme", status="delivered", code="0")
    assert delivered - before["delivered"] == 3
    requests = value(
        "postback_tiktok_requests_total", event_set="acme", outcome="delivered", http_status="200"
    )
    with session_scope() as session:
        request_ids = set(session.scalars(select(DeliveryAttempt.request_id)))
    assert requests - before["requests"] == len(request_ids)
    latency = value("postback_delivery_latency_seconds_count", event_set="acme")
    assert latency - before["latency"] == 3
    durations = value("postback_tiktok_request_duration_seconds_count", event_set="acme")
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
    with session_scope() as session:
        row = session.scalars(select(Postback)).one()
    assert row.status == PostbackStatus.RETRYING
    code = "none" if row.last_code is None else str(row.last_code)
    assert by("retrying").get(code, 0) - before.get(code, 0) == 1

    ready.set_faults(http_5xx_rate=0.0, auth_error_rate=1.0)
    with session_scope() as session:
        session.execute(
            update(Postback).values(next_attempt_at=datetime.now(UTC), lease_until=None)
        )
        session.commit()
    held_before = sum(by("held").values())
    deliver([row.id])
    assert sum(by("held").values()) - held_before == 1


def _events() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render(include_outbox=False)
    return {k: v for k, v in scrape(body.decode()).items() if k[0] == "postback_events_total"}


def _result(postback_id: int, answer: Answer, event_set_id: int = 1) -> EventResult:
    return EventResult(postback_id, event_set_id, 1, answer, 1000)


def test_a_batch_of_1000_costs_one_increment_per_group(
    sqlite_db: str, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_id = make_event_set()
    ok = Answer(Outcome.DELIVERED, 200, 0, "OK", "req-1", 120)
    bad = Answer(Outcome.INVALID, 200, 40002, "bad", "req-2", 80)
    results = [_result(n, ok, set_id) for n in range(990)] + [
        _result(n, bad, set_id) for n in range(990, 1000)
    ]
    statuses = ["delivered"] * 990 + ["failed"] * 10
    calls: list[float] = []
    m = metrics.metrics()
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
    with session_scope() as session:
        metrics.record_delivery(session, results, statuses, datetime.now(UTC))
    assert sorted(calls) == [10, 990]


def test_observe_many_matches_observe() -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    one = Histogram("one_seconds", "x", buckets=metrics.LATENCY_BUCKETS, registry=registry)
    many = Histogram("many_seconds", "x", buckets=metrics.LATENCY_BUCKETS, registry=registry)
    values = [0.01, 0.3, 0.3, 7, 59.9, 60, 4000, 10**6]
    for v in values:
        one.observe(v)
    metrics.observe_many(many, values)
    for suffix in ("_count", "_sum"):
        assert registry.get_sample_value("one_seconds" + suffix) == registry.get_sample_value(
            "many_seconds" + suffix
        )
    for bound in (*metrics.LATENCY_BUCKETS, float("inf")):
        le = "+Inf" if bound == float("inf") else str(float(bound))
        assert registry.get_sample_value(
            "one_seconds_bucket", {"le": le}
        ) == registry.get_sample_value("many_seconds_bucket", {"le": le})


def test_a_metrics_failure_never_breaks_delivery(
    ready: SimulatorControl, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Any:
        raise RuntimeError("metrics backend gone")

    monkeypatch.setattr(metrics, "metrics", broken)
    enqueue_trigger(submitted("L-1"))
    with session_scope() as session:
        assert session.scalar(select(Postback.status)) == PostbackStatus.DELIVERED
    assert "metrics: could not record" in caplog.text


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

    with session_scope() as session:
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
    assert samples[("postback_outbox_due", (("event_set", "acme"),))] == 1
    assert samples[("postback_outbox_due", (("event_set", "beta"),))] == 0
    assert samples[("postback_outbox_open", (("event_set", "acme"), ("status", "pending")))] == 1
    age = samples[("postback_outbox_oldest_pending_age_seconds", (("event_set", "acme"),))]
    assert 590 < age < 700
    assert samples[("postback_event_set_paused", (("event_set", "beta"),))] == 1
    assert samples[("postback_event_set_paused", (("event_set", "acme"),))] == 0
    assert samples[("postback_triggers_open", (("status", "received"),))] == 1
    with session_scope() as session:
        due = session.scalar(
            select(func.count()).where(Postback.status == "pending", Postback.event_set_id == 1)
        )
    assert due == 1
    assert ("postback_triggers_received_total", (("result", "accepted"),)) in samples
    for name in metrics.METRIC_NAMES:
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
    body, _ = metrics.render()
    assert scrape(body.decode())[("postback_database_up", ())] == 0


def test_worker_metrics_port_in_use_is_a_warning(
    isolated_settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Run in-process with the env restored afterwards: multiprocess mode, a busy port."""
    import socket

    from crm_postback.core.settings import get_settings

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
        apply_env(monkeypatch, METRICS_PORT=str(port))
        served = metrics.start_worker_metrics(get_settings())
    try:
        assert served is not None and served.server is None
        assert "cannot listen" in caplog.text
        assert served.directory.is_dir()
    finally:
        assert served is not None
        served.stop()
        os.environ.pop(metrics.MULTIPROC_ENV, None)  # start_worker_metrics set it
        _back_to_single_process()
    assert not served.directory.exists()


def _back_to_single_process() -> None:
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    metrics._reset_metrics()


def test_metrics_off_when_the_port_is_zero(
    isolated_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm_postback.core.settings import get_settings

    apply_env(monkeypatch, METRICS_PORT="0")
    assert metrics.start_worker_metrics(get_settings()) is None
