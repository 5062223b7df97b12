"""Real worker processes on real Redis and PostgreSQL, posting to the simulator over HTTP.

The tests marked `on_both_brokers` run once on Redis and once on RabbitMQ (quorum queue); those
marked `through_pgbouncer` once more on Redis through a PgBouncer in transaction mode."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from crm_postback.api import enqueue_trigger
from crm_postback.simulator import SimulatorControl
from models import Postback, PostbackStatus, Trigger, TriggerStatus
from models.db import get_engine, session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import (  # type: ignore[import-not-found]
    WorkerProcess,
    apply_env,
    on_both_brokers,
    through_pgbouncer,
    unreachable_broker_url,
    wait_for,
)

pytestmark = pytest.mark.integration

RAW_EMAIL = "Integration.Person@Example.org"
RAW_PHONE = "+44 20 7946 0958"
StartWorker = Callable[..., WorkerProcess]


def trigger(kind: str, lead: str, minutes_ago: float, **extra: Any) -> dict[str, Any]:
    occurred = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "type": kind,
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": occurred.isoformat(),
        **extra,
    }


def statuses() -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Postback.status).order_by(Postback.id)))


@pytest.fixture
def acme(make_event_set: Callable[..., int]) -> int:
    return make_event_set(
        mappings=(
            {"trigger_type": "lead.submitted", "event_name": "Lead"},
            {
                "trigger_type": "lead.sold",
                "event_name": "lead_sold",
                "properties": {"currency": "USD"},
            },
            {
                "trigger_type": "offer.conversion",
                "event_name": "Purchase",
                "properties": {
                    "value_from": "payout",
                    "currency": "USD",
                    "order_id_from": "offer_id",
                },
            },
        )
    )


@on_both_brokers
@through_pgbouncer
def test_lifecycle_through_real_worker_redis_and_postgres(
    start_worker: StartWorker, simulator: SimulatorControl, acme: int
) -> None:
    worker = start_worker()
    enqueue_trigger(
        trigger(
            "lead.submitted",
            "L-1",
            30,
            match_keys={
                "email": RAW_EMAIL,
                "phone": RAW_PHONE,
                "ttclid": "E.C.P.int",
                "tiktok_lead_id": "7399",
            },
        )
    )
    enqueue_trigger(trigger("lead.sold", "L-1", 20, attributes={"value": 42.5}))
    enqueue_trigger(
        trigger("offer.conversion", "L-1", 5, attributes={"payout": 120, "offer_id": "offer-991"})
    )

    received = simulator.wait_for_events(3, timeout=30)
    assert [e["event"] for e in sorted(received, key=lambda e: e["event_time"])] == [
        "Lead",
        "lead_sold",
        "Purchase",
    ]
    purchase = next(e["payload"] for e in received if e["event"] == "Purchase")
    assert purchase["properties"] == {"value": 120.0, "currency": "USD", "order_id": "offer-991"}
    assert purchase["lead"] == {"lead_id": "7399", "lead_event_source": "crm-postback"}
    wait_for(lambda: statuses() == ["delivered"] * 3, what="outbox to record delivery")

    with session_scope(workspace=ALL_WORKSPACES) as session:
        request_ids = set(session.scalars(select(Postback.last_request_id)))
    assert request_ids == {e["request_id"] for e in received}
    sent = json.dumps([e["payload"] for e in received])
    dumped = _database_text()
    for raw in (RAW_EMAIL, RAW_EMAIL.lower(), "7946 0958", "2079460958"):
        assert raw not in sent and raw not in dumped
    assert "Traceback" not in worker.log()


@on_both_brokers
@through_pgbouncer
def test_tiktok_outage_is_retried_by_the_beat_sweeper(
    start_worker: StartWorker, simulator: SimulatorControl, acme: int
) -> None:
    simulator.set_faults(http_5xx_rate=1.0)
    start_worker()
    enqueue_trigger(trigger("lead.submitted", "L-2", 1, match_keys={"email": "x@example.com"}))
    wait_for(lambda: statuses() == ["retrying"], what="a failed first attempt")
    simulator.set_faults(http_5xx_rate=0.0)
    wait_for(lambda: statuses() == ["delivered"], timeout=30, what="the sweeper's retry")
    assert simulator.stats()["events_unique"] == 1


def test_bad_triggers_end_explained_and_the_worker_keeps_going(
    start_worker: StartWorker, simulator: SimulatorControl, make_event_set: Callable[..., int]
) -> None:
    make_event_set(
        mappings=(
            {"trigger_type": "lead.submitted", "event_name": "Lead"},
            {
                "trigger_type": "lead.sold",
                "event_name": "lead_sold",
                "properties": {"value_from": "price", "currency": "USD"},
            },
        )
    )
    worker = start_worker(LEAD_WAIT_SECONDS="1")
    enqueue_trigger(trigger("lead.sold", "ghost", 1))  # never submitted
    enqueue_trigger(trigger("lead.submitted", "L-3", 2, match_keys={"email": "y@example.com"}))
    enqueue_trigger(trigger("lead.sold", "L-3", 1, attributes={"price": "n/a"}))
    enqueue_trigger(trigger("buyer.accepted", "L-3", 1))
    simulator.wait_for_events(1, timeout=30)

    def explained() -> bool:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            ghost = session.scalars(select(Trigger).where(Trigger.lead_ref == "ghost")).one()
            return ghost.status == TriggerStatus.FAILED

    wait_for(explained, timeout=30, what="the unknown lead to fail")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        ghost = session.scalars(select(Trigger).where(Trigger.lead_ref == "ghost")).one()
        by_event = {p.event_name: p for p in session.scalars(select(Postback))}
    assert (ghost.error or "").startswith("lead_id:")
    assert by_event["lead_sold"].status == PostbackStatus.FAILED
    assert "attributes.price" in (by_event["lead_sold"].last_message or "")
    assert by_event[None].status == PostbackStatus.UNMAPPED
    assert by_event["Lead"].status == PostbackStatus.DELIVERED
    assert worker.process.poll() is None


@on_both_brokers
def test_trigger_accepted_while_the_broker_is_down_is_delivered_by_the_sweeper(
    start_worker: StartWorker,
    simulator: SimulatorControl,
    acme: int,
    monkeypatch: pytest.MonkeyPatch,
    broker_url: str,
) -> None:
    start_worker()
    # This process cannot publish; the worker still consumes from the real broker.
    apply_env(monkeypatch, BROKER_URL=unreachable_broker_url(broker_url))
    enqueue_trigger(trigger("lead.submitted", "L-4", 1, match_keys={"email": "z@example.com"}))
    apply_env(monkeypatch, BROKER_URL=broker_url)
    simulator.wait_for_events(1, timeout=30)
    wait_for(lambda: statuses() == ["delivered"], what="delivery")


def test_broker_messages_carry_ids_not_match_keys(
    redis_url: str,
    pg_db: str,
    simulator: SimulatorControl,
    acme: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis

    from crm_postback.core.settings import get_settings

    apply_env(monkeypatch, BROKER_URL=redis_url, CELERY_QUEUE=f"privacy-{time.time_ns()}")
    enqueue_trigger(
        trigger("lead.submitted", "L-5", 1, match_keys={"email": RAW_EMAIL, "phone": RAW_PHONE})
    )
    client = redis.Redis.from_url(redis_url)
    queue = get_settings().celery_queue
    messages = client.lrange(queue, 0, -1)
    client.delete(queue)
    assert len(messages) == 1
    message = json.loads(messages[0])
    import base64

    body = json.loads(base64.b64decode(message["body"]))
    assert body[0] == [[1], 100]  # args: one list of trigger ids, the linger in ms
    assert RAW_EMAIL.encode() not in messages[0] and b"7946" not in messages[0]


def _database_text() -> str:
    with get_engine().connect() as connection:
        rows = connection.execute(
            text(
                "SELECT row_to_json(t)::text FROM (SELECT * FROM leads) t UNION ALL "
                "SELECT row_to_json(t)::text FROM (SELECT * FROM triggers) t UNION ALL "
                "SELECT row_to_json(t)::text FROM (SELECT * FROM postbacks) t UNION ALL "
                "SELECT row_to_json(t)::text FROM (SELECT * FROM delivery_attempts) t"
            )
        )
        return "\n".join(row[0] for row in rows)


@on_both_brokers
def test_warm_shutdown_finishes_the_postback_in_flight(
    start_worker: StartWorker, simulator: SimulatorControl, acme: int
) -> None:
    import signal

    simulator.set_faults(slow_rate=1.0, slow_seconds=3)
    worker = start_worker(beat=False)
    enqueue_trigger(trigger("lead.submitted", "L-6", 1, match_keys={"email": "s@example.com"}))
    wait_for(lambda: statuses() == ["sending"], what="the request to be in flight")
    worker.process.send_signal(signal.SIGTERM)  # what docker stop / systemd send
    assert worker.process.wait(timeout=30) == 0
    assert statuses() == ["delivered"]
    assert simulator.stats()["events_unique"] == 1


def test_a_trigger_stored_while_the_wake_up_lingers_rides_in_it(
    start_worker: StartWorker,
    simulator: SimulatorControl,
    acme: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The publisher publishes no wake-up for the second trigger: the first one's task is
    still lingering. That holds only if the task lingers as long as the publisher was told,
    so the worker here has a shorter linger of its own (a host configured otherwise); with no
    beat, a trigger the task missed would never be sent."""
    apply_env(monkeypatch, BATCH_LINGER_MS="1000")
    start_worker(beat=False, BATCH_LINGER_MS="0")
    started = time.monotonic()
    enqueue_trigger(trigger("lead.submitted", "L-ride-1", 1, match_keys={"email": "a@example.com"}))
    # Long enough for a worker lingering its own 0 ms to have taken the first trigger alone.
    time.sleep(0.4)
    enqueue_trigger(trigger("lead.submitted", "L-ride-2", 1, match_keys={"email": "b@example.com"}))
    if time.monotonic() - started >= 1.0:
        # The second trigger published a wake-up of its own: nothing here was spared.
        pytest.skip("the machine took longer than the linger to store two triggers")
    simulator.wait_for_events(2, timeout=20)
    assert simulator.stats()["events_unique"] == 2
    assert simulator.stats()["requests_total"] == 1  # both in the lingering task's request
