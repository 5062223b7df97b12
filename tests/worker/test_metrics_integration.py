"""Metrics of a real prefork worker (multiprocess mode) match the outbox after a run."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from crm_postback.api import enqueue_trigger
from crm_postback.simulator import SimulatorControl
from models import DeliveryAttempt, Postback
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import WorkerProcess, free_port, wait_for  # type: ignore[import-not-found]

pytestmark = pytest.mark.integration


def submitted(lead: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "lead.submitted",
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "match_keys": {"email": f"{lead.lower()}@example.org"},
        **extra,
    }


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
        for sample in family.samples:
            families[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return families


def total(samples: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    return sum(v for k, v in samples.items() if all((n, x) in k for n, x in labels.items()))


def outbox() -> dict[str, int]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return dict(
            session.execute(select(Postback.status, func.count()).group_by(Postback.status)).all()
        )


def test_worker_metrics_match_the_outbox(
    start_worker: Callable[..., WorkerProcess],
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
) -> None:
    make_event_set()
    port = free_port()
    worker = start_worker(METRICS_PORT=str(port), METRICS_HOST="127.0.0.1")
    url = f"http://127.0.0.1:{port}/metrics"
    # The main process serves the pool's metrics before any task ran.
    assert requests.get(url, timeout=5).status_code == 200

    for n in range(6):
        enqueue_trigger(submitted(f"L-{n}"))
    enqueue_trigger({**submitted("L-0"), "type": "buyer.accepted"})  # unmapped, never sent
    wait_for(lambda: outbox() == {"delivered": 6, "unmapped": 1}, "six deliveries")

    simulator.set_faults(http_5xx_rate=1.0)  # one event fails once, then the sweeper retries
    enqueue_trigger(submitted("L-9"))
    wait_for(lambda: outbox().get("retrying") == 1, "a failed attempt")
    simulator.set_faults(http_5xx_rate=0.0)
    wait_for(lambda: outbox() == {"delivered": 7, "unmapped": 1}, "the retry")

    metrics = scrape(url)
    events = metrics["postback_events_total"]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        attempts = session.execute(
            select(
                DeliveryAttempt.outcome,
                DeliveryAttempt.code,
                DeliveryAttempt.request_id,
                DeliveryAttempt.batch_size,
            )
        ).all()
        latency_rows = session.scalar(
            select(func.count()).where(Postback.status == "delivered", Postback.replays == 0)
        )
    assert total(events, event_set="acme", status="delivered") == outbox()["delivered"] == 7
    assert total(events, event_set="acme", status="delivered", code="0") == 7
    transient = [a for a in attempts if a.outcome == "transient"]
    assert transient and total(events, event_set="acme", status="retrying") == len(transient)
    code = "none" if transient[0].code is None else str(transient[0].code)
    assert total(events, status="retrying", code=code) == len(transient)
    assert total(events, status="failed") == total(events, status="dead") == 0

    requests_total = metrics["postback_tiktok_requests_total"]
    delivered_requests = {a.request_id for a in attempts if a.outcome == "delivered"}
    assert total(requests_total, event_set="acme", outcome="delivered") == len(delivered_requests)
    assert total(requests_total, outcome="transient") == len(transient)  # one event each
    assert total(metrics["postback_tiktok_request_duration_seconds_count"]) == total(requests_total)
    latency_count = total(metrics["postback_delivery_latency_seconds_count"], event_set="acme")
    assert latency_count == latency_rows == 7
    assert total(metrics["postback_triggers_processed_total"]) >= 8
    assert "Traceback" not in worker.log()


def test_web_metrics_gauges_match_the_outbox_on_postgresql(
    pg_db: str, make_event_set: Callable[..., int]
) -> None:
    """No worker: the triggers stay open, and the web app's gauges say so."""
    from crm_postback.web.app import create_app

    make_event_set()
    for n in range(3):
        enqueue_trigger(submitted(f"L-{n}"))
    with TestClient(create_app()) as client:
        text = client.get("/metrics").text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("postback_database_up", ())] == 1
    assert samples[("postback_triggers_open", (("status", "received"),))] == 3
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
        == 0
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
