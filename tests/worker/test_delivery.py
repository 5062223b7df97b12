"""Delivery against the simulator over HTTP, on SQLite: every outcome ends in an explained state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_postback.api import enqueue_trigger
from crm_postback.configuration.audit import SYSTEM_ACTOR
from crm_postback.configuration.event_set_service import get_event_set, rotate_token
from crm_postback.core.settings import get_settings
from crm_postback.simulator import SimulatorControl
from models import (
    DeliveryAttempt,
    EventSet,
    Mapping,
    Postback,
    PostbackStatus,
)
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID, TOKEN, apply_env  # type: ignore[import-not-found]
from worker.tasks import deliver, sweep_due_postbacks


def sold(lead: str, value: float = 10, minutes_ago: float = 5, **extra: Any) -> dict[str, Any]:
    occurred = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "type": "lead.sold",
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": occurred.isoformat(),
        "attributes": {"value": value},
        "match_keys": {"email": f"{lead.lower()}@example.com"},
        **extra,
    }


def rows() -> list[Postback]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Postback).order_by(Postback.id)))


def process_all() -> None:
    """What the worker does on receiving the triggers' task, minus sending."""
    from models import Trigger
    from worker.processing import process_triggers

    with session_scope(workspace=ALL_WORKSPACES) as session:
        ids = list(session.scalars(select(Trigger.id)))
        process_triggers(session, ids, get_settings(), datetime.now(UTC))
        session.commit()


def make_due() -> None:
    """Moves the clock for the outbox: every waiting row becomes due now."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(
            update(Postback)
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1), lease_until=None)
            .where(Postback.status.in_(("pending", "retrying")))
        )
        session.commit()


@pytest.fixture
def ready(
    sqlite_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> SimulatorControl:
    make_event_set()
    return simulator


def test_server_errors_are_retried_then_delivered_with_the_same_event_id(
    ready: SimulatorControl,
) -> None:
    ready.set_faults(http_5xx_rate=1.0)
    enqueue_trigger(sold("L-1"))
    [row] = rows()
    assert row.status == PostbackStatus.RETRYING and row.attempts == 1
    assert row.next_attempt_at is not None and row.next_attempt_at > datetime.now(UTC)
    assert row.last_http_status in (500, 502, 503)

    ready.set_faults(http_5xx_rate=0.0)
    make_due()
    sweep_due_postbacks()
    [row] = rows()
    assert row.status == PostbackStatus.DELIVERED and row.attempts == 2
    assert [e["event_id"] for e in ready.events()] == [row.event_id]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        outcomes = session.scalars(select(DeliveryAttempt.outcome).order_by(DeliveryAttempt.id))
        assert list(outcomes) == ["transient", "delivered"]


def test_throttling_is_retried_later(ready: SimulatorControl) -> None:
    ready.set_faults(throttle_rate=1.0)
    enqueue_trigger(sold("L-1"))
    [row] = rows()
    assert (row.status, row.last_code) == (PostbackStatus.RETRYING, 40100)
    # Throttled retries skip a rung: at least the second delay of the ladder (60 s - jitter).
    assert row.next_attempt_at is not None
    assert row.next_attempt_at - datetime.now(UTC) > timedelta(seconds=40)


def test_exhausted_ladder_ends_dead_with_the_last_reason(
    ready: SimulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, RETRY_SCHEDULE_SECONDS="[1]")
    ready.set_faults(http_5xx_rate=1.0)
    enqueue_trigger(sold("L-1"))
    make_due()
    sweep_due_postbacks()
    [row] = rows()
    assert row.status == PostbackStatus.DEAD and row.attempts == 2
    assert "exhausted" in (row.last_message or "")


def test_token_error_pauses_the_event_set_without_burning_attempts(
    ready: SimulatorControl,
) -> None:
    ready.register_event_set(EVENT_SET_ID, "rotated-at-tiktok", kind="crm")
    enqueue_trigger(sold("L-1"))
    [row] = rows()
    assert (row.status, row.attempts, row.last_code) == (PostbackStatus.PENDING, 0, 40105)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = get_event_set(session, "acme")
        assert event_set.status == "paused" and "40105" in (event_set.paused_reason or "")
    sweep_due_postbacks()  # paused: nothing is sent
    assert ready.stats()["events_accepted"] == 0

    with session_scope(workspace=ALL_WORKSPACES) as session:
        rotate_token(
            session,
            get_settings(),
            get_event_set(session, "acme"),
            "rotated-at-tiktok",
            actor=SYSTEM_ACTOR,
        )
        session.commit()
    sweep_due_postbacks()
    [row] = rows()
    assert row.status == PostbackStatus.DELIVERED and row.attempts == 1


def test_poison_event_is_isolated_and_the_rest_delivered(ready: SimulatorControl) -> None:
    from worker.app import app

    app.conf.task_always_eager = False  # store rows now, deliver them together below
    for n in range(5):
        enqueue_trigger(sold(f"L-{n}"))
    process_all()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        poison = session.scalars(select(Postback).order_by(Postback.id).offset(2)).first()
        assert poison is not None
        poison.payload = {**poison.payload, "user": {"email": ["NOT-HASHED@example.com"]}}
        session.commit()
        poison_id = poison.id
    deliver([r.id for r in rows()])

    by_id = {r.id: r for r in rows()}
    assert by_id[poison_id].status == PostbackStatus.FAILED
    assert by_id[poison_id].last_code == 40062 and by_id[poison_id].last_request_id
    assert "email" in (by_id[poison_id].last_message or "")
    assert sorted(r.status for r in by_id.values()).count(PostbackStatus.DELIVERED) == 4
    assert ready.stats()["events_unique"] == 4


def test_events_older_than_the_age_limit_expire_unsent(ready: SimulatorControl) -> None:
    enqueue_trigger(sold("L-1", minutes_ago=29 * 24 * 60))  # CRM: 28 days by default
    [row] = rows()
    assert row.status == PostbackStatus.EXPIRED
    assert ready.stats()["requests_total"] == 0


def test_mapping_deleted_while_postback_waits_is_still_delivered(ready: SimulatorControl) -> None:
    ready.set_faults(http_5xx_rate=1.0)
    enqueue_trigger(sold("L-1"))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        for mapping in session.scalars(select(Mapping)):
            session.delete(mapping)
        session.commit()
    ready.set_faults(http_5xx_rate=0.0)
    make_due()
    sweep_due_postbacks()
    [row] = rows()
    assert row.status == PostbackStatus.DELIVERED and row.mapping_id is None


def test_worker_that_died_mid_call_is_recovered_after_its_lease(ready: SimulatorControl) -> None:
    ready.set_faults(http_5xx_rate=1.0)
    enqueue_trigger(sold("L-1"))
    ready.set_faults(http_5xx_rate=0.0)
    with session_scope(
        workspace=ALL_WORKSPACES
    ) as session:  # as if a worker claimed it and was SIGKILLed
        session.execute(
            update(Postback).values(
                status="sending", lease_until=datetime.now(UTC) - timedelta(seconds=1)
            )
        )
        session.commit()
    sweep_due_postbacks()
    [row] = rows()
    assert row.status == PostbackStatus.DELIVERED


def test_a_message_that_keeps_killing_its_worker_ends_dead(ready: SimulatorControl) -> None:
    ready.set_faults(http_5xx_rate=1.0)
    enqueue_trigger(sold("L-1"))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(
            update(Postback).values(
                status="sending", attempts=99, lease_until=datetime.now(UTC) - timedelta(seconds=1)
            )
        )
        session.commit()
    sweep_due_postbacks()
    [row] = rows()
    assert row.status == PostbackStatus.DEAD and "gave up" in (row.last_message or "")


def test_test_event_code_sends_one_event_per_request(
    sqlite_db: str,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
) -> None:
    make_event_set(test_event_code="TEST123")
    for n in range(3):
        enqueue_trigger(sold(f"L-{n}"))
    process_all()
    deliver([r.id for r in rows()])
    assert simulator.stats()["requests_total"] == 3
    assert {e["test_event_code"] for e in simulator.events()} == {"TEST123"}


def test_live_events_share_one_request(
    sqlite_db: str,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
) -> None:
    make_event_set()
    for n in range(25):
        enqueue_trigger(sold(f"L-{n}"))
    process_all()
    deliver([r.id for r in rows()])
    assert simulator.stats()["requests_total"] == 1
    assert simulator.stats()["events_unique"] == 25


def test_pixel_event_set_sends_web_fields(
    sqlite_db: str,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
) -> None:
    simulator.register_event_set("CPIXEL12345", TOKEN, kind="web")
    make_event_set(source_id="CPIXEL12345", kind="web")
    enqueue_trigger(
        sold(
            "L-1",
            match_keys={
                "email": "p@example.com",
                "ip": "203.0.113.9",
                "user_agent": "Mozilla/5.0",
                "ttp": "ttp-1",
            },
        )
    )
    [event] = simulator.events()
    assert event["event_source"] == "web"
    assert {"ip", "user_agent", "ttp"} <= event["payload"]["user"].keys()
    assert "lead" not in event["payload"]


def test_paused_event_set_holds_postbacks_until_resumed(ready: SimulatorControl) -> None:
    from crm_postback.configuration.event_set_service import pause, resume

    with session_scope(workspace=ALL_WORKSPACES) as session:
        pause(get_event_set(session, "acme"), "operator", actor=SYSTEM_ACTOR)
        session.commit()
    enqueue_trigger(sold("L-1"))
    assert rows()[0].status == PostbackStatus.PENDING
    assert ready.stats()["requests_total"] == 0
    with session_scope(workspace=ALL_WORKSPACES) as session:
        resume(session, session.scalars(select(EventSet)).one(), actor=SYSTEM_ACTOR)
        session.commit()
    sweep_due_postbacks()
    assert rows()[0].status == PostbackStatus.DELIVERED


def test_throttling_slows_the_whole_event_set(ready: SimulatorControl) -> None:
    ready.set_faults(throttle_rate=1.0)
    enqueue_trigger(sold("L-1"))
    ready.set_faults(throttle_rate=0.0)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = session.scalars(select(EventSet)).one()
        assert event_set.throttled_until is not None
        assert event_set.throttled_until > datetime.now(UTC) + timedelta(seconds=20)
    enqueue_trigger(sold("L-2"))  # a fresh event for the same set waits out the window
    make_due()
    sweep_due_postbacks()
    assert ready.stats()["events_accepted"] == 0
    assert {r.status for r in rows()} == {PostbackStatus.PENDING, PostbackStatus.RETRYING}

    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(update(EventSet).values(throttled_until=datetime.now(UTC)))
        session.commit()
    make_due()
    sweep_due_postbacks()
    assert [r.status for r in rows()] == [PostbackStatus.DELIVERED] * 2


def test_token_rotated_while_a_request_was_in_flight_does_not_pause(
    ready: SimulatorControl,
) -> None:
    from crm_postback.tiktok.events_client import EventsApiClient
    from models import utcnow
    from worker import delivery

    ready.register_event_set(EVENT_SET_ID, "new-token", kind="crm")
    from worker.app import app

    app.conf.task_always_eager = False
    enqueue_trigger(sold("L-1"))
    process_all()
    settings = get_settings()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        batches = delivery.claim(session, [r.id for r in rows()], settings, utcnow())
        session.commit()
    client = EventsApiClient(settings.tiktok_api_base_url, settings.http_timeout)
    results = [r for b in batches for r in delivery.send(client, b)]  # old token: 40105
    with session_scope(
        workspace=ALL_WORKSPACES
    ) as session:  # ... meanwhile the operator rotated the token
        rotate_token(
            session, settings, get_event_set(session, "acme"), "new-token", actor=SYSTEM_ACTOR
        )
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        delivery.record(session, results, settings, utcnow())
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert get_event_set(session, "acme").status == "active"
    app.conf.task_always_eager = True
    sweep_due_postbacks()
    [row] = rows()
    assert row.status == PostbackStatus.DELIVERED and row.attempts == 1


def test_an_admin_edit_of_a_mapping_applies_to_the_next_trigger(ready: SimulatorControl) -> None:
    from crm_postback.configuration.mapping_service import update_mapping

    enqueue_trigger(sold("L-1"))  # compiles and caches the mapping in this process
    with session_scope(workspace=ALL_WORKSPACES) as session:
        mapping = session.scalars(select(Mapping).where(Mapping.trigger_type == "lead.sold")).one()
        update_mapping(
            session,
            mapping,
            event_name="Purchase",
            properties={"currency": "EUR"},
            actor=SYSTEM_ACTOR,
        )
        session.commit()
    enqueue_trigger(sold("L-2"))
    first, second = rows()
    assert first.event_name == "lead_sold" and first.payload["properties"]["currency"] == "USD"
    assert second.event_name == "Purchase" and second.payload["properties"]["currency"] == "EUR"
    assert second.mapping_version == first.mapping_version + 1


def test_a_lead_with_only_a_tiktok_lead_id_is_sent_without_a_user_object(
    ready: SimulatorControl,
) -> None:
    enqueue_trigger(sold("L-1", match_keys={"tiktok_lead_id": "7311111111111111111"}))
    [row] = rows()
    assert row.status == PostbackStatus.DELIVERED
    assert row.payload is not None and "user" not in row.payload
    [received] = ready.events()  # the simulator enforces the contract: it accepted it
    assert "user" not in received["payload"]
    assert received["payload"]["lead"]["lead_id"] == "7311111111111111111"
