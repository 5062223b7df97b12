"""Trigger processing: a trigger whose runs never finish is capped, not retried forever."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.settings import get_settings
from models import Trigger, TriggerStatus
from models.db import session_scope
from worker.processing import begin_attempt


def test_trigger_that_keeps_killing_workers_is_failed_at_the_cap(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    make_event_set()
    accepted = enqueue_trigger(
        {
            "type": "lead.submitted",
            "lead_id": "L-1",
            "event_set": "acme",
            "occurred_at": datetime.now(UTC).isoformat(),
            "match_keys": {"email": "a@b.co"},
        }
    )
    settings = get_settings()
    for run in range(settings.max_processing_attempts):
        with session_scope() as session:  # each run is counted, then the worker "dies"
            assert begin_attempt(session, [accepted.trigger_id], settings, datetime.now(UTC)) == [
                accepted.trigger_id
            ], run
            session.commit()
    with session_scope() as session:
        assert begin_attempt(session, [accepted.trigger_id], settings, datetime.now(UTC)) == []
        session.commit()
    with session_scope() as session:
        trigger = session.scalars(select(Trigger)).one()
        assert trigger.status == TriggerStatus.FAILED
        assert "did not finish in 5 runs" in (trigger.error or "")


def test_redelivered_message_counts_the_run_before_processing(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    from worker.tasks import process_triggers

    make_event_set()
    accepted = enqueue_trigger(
        {
            "type": "lead.submitted",
            "lead_id": "L-2",
            "event_set": "acme",
            "occurred_at": datetime.now(UTC).isoformat(),
            "match_keys": {"email": "c@d.co"},
        }
    )
    process_triggers.push_request(delivery_info={"redelivered": True})
    try:
        process_triggers.run([accepted.trigger_id])
    finally:
        process_triggers.pop_request()
    with session_scope() as session:
        trigger = session.get(Trigger, accepted.trigger_id)
        assert trigger is not None
        assert (trigger.attempts, trigger.status) == (1, TriggerStatus.RESOLVED)


def test_first_delivery_skips_the_extra_commit(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    from worker.tasks import process_triggers

    make_event_set()
    accepted = enqueue_trigger(
        {
            "type": "lead.submitted",
            "lead_id": "L-3",
            "event_set": "acme",
            "occurred_at": datetime.now(UTC).isoformat(),
            "match_keys": {"email": "e@f.co"},
        }
    )
    process_triggers.run([accepted.trigger_id])
    with session_scope() as session:
        trigger = session.get(Trigger, accepted.trigger_id)
        assert trigger is not None
        assert (trigger.attempts, trigger.status) == (0, TriggerStatus.RESOLVED)
