"""Trigger processing: a trigger whose runs never finish is capped, not retried forever."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.core.settings import get_settings
from models import Trigger, TriggerStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.sql_statements import recorded_statements  # type: ignore[import-not-found]
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
        with session_scope(
            workspace=ALL_WORKSPACES
        ) as session:  # each run is counted, then the worker "dies"
            assert begin_attempt(session, [accepted.trigger_id], settings, datetime.now(UTC)) == [
                accepted.trigger_id
            ], run
            session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert begin_attempt(session, [accepted.trigger_id], settings, datetime.now(UTC)) == []
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
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
    with session_scope(workspace=ALL_WORKSPACES) as session:
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
    with session_scope(workspace=ALL_WORKSPACES) as session:
        trigger = session.get(Trigger, accepted.trigger_id)
        assert trigger is not None
        assert (trigger.attempts, trigger.status) == (0, TriggerStatus.RESOLVED)


def _submitted(lead: str) -> dict[str, object]:
    return {
        "type": "lead.submitted",
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": datetime.now(UTC).isoformat(),
        "match_keys": {"email": f"{lead.lower()}@example.com"},
    }


def test_a_full_batch_lets_another_worker_take_the_next_one_before_its_work(
    pg_db: str, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On real PostgreSQL: `when_full` runs while the first batch is locked, not committed,
    and a second run started from it takes the next triggers, not the same ones."""
    from tests.conftest import apply_env  # type: ignore[import-not-found]
    from worker.processing import process_triggers

    apply_env(monkeypatch, BROKER_URL="redis://127.0.0.1:1/0")  # no wake-ups in this test
    make_event_set()
    stored = [enqueue_trigger(_submitted(f"L-{n}")).trigger_id for n in range(5)]
    settings = get_settings()
    taken_by_second: list[int] = []
    open_when_woken: list[int] = []

    def second_worker() -> None:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            open_when_woken.extend(
                session.scalars(
                    select(Trigger.id).where(Trigger.status == TriggerStatus.RECEIVED)
                ).all()
            )
        with session_scope(workspace=ALL_WORKSPACES) as session:
            done = process_triggers(session, [], settings, datetime.now(UTC), also_ready=2)
            session.commit()
        taken_by_second.append(done.taken)

    with session_scope(workspace=ALL_WORKSPACES) as session:
        first = process_triggers(
            session, [], settings, datetime.now(UTC), also_ready=2, wake_early=second_worker
        )
        session.commit()
    assert first.taken == 2 and taken_by_second == [2]
    assert sorted(open_when_woken) == stored  # the first batch was not committed yet
    with session_scope(workspace=ALL_WORKSPACES) as session:
        statuses = {
            row.id: row.status for row in session.execute(select(Trigger.id, Trigger.status))
        }
    assert [statuses[i] for i in stored] == [TriggerStatus.RESOLVED] * 4 + [TriggerStatus.RECEIVED]


def test_a_partial_batch_wakes_nobody(sqlite_db: str, make_event_set: Callable[..., int]) -> None:
    from worker.processing import process_triggers

    make_event_set()
    enqueue_trigger(_submitted("L-1"))
    calls: list[int] = []
    with session_scope(workspace=ALL_WORKSPACES) as session:
        done = process_triggers(
            session, [], get_settings(), datetime.now(UTC), also_ready=2,
            wake_early=lambda: calls.append(1),
        )  # fmt: skip
        session.commit()
    assert (done.taken, done.full, calls) == (1, False, [])


def test_on_sqlite_a_full_batch_wakes_the_next_worker_only_after_commit(
    sqlite_db: str, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite has no row locks: a worker woken early would take these same triggers."""
    from tests.conftest import apply_env  # type: ignore[import-not-found]
    from worker import tasks

    apply_env(monkeypatch, SWEEP_BATCH_SIZE="2")
    make_event_set()
    stored = [enqueue_trigger(_submitted(f"L-{n}")).trigger_id for n in range(3)]
    open_when_woken: list[list[int]] = []

    def record_open_triggers(_settings: object) -> None:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            open_when_woken.append(
                list(
                    session.scalars(
                        select(Trigger.id).where(Trigger.status == TriggerStatus.RECEIVED)
                    )
                )
            )

    monkeypatch.setattr(tasks, "_wake_again", record_open_triggers)
    assert tasks.process_triggers.run([])["triggers"] == 2
    assert open_when_woken == [stored[2:]]  # woken once, with the first two already stored


def test_a_broker_fault_while_waking_the_next_worker_keeps_the_batch(
    sqlite_db: str,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The wake-up runs inside the batch's transaction: a broker error there is logged and
    the batch is still stored (the sweeper runs what is left)."""
    from tests.conftest import apply_env  # type: ignore[import-not-found]
    from worker import tasks, wakeups

    apply_env(monkeypatch, SWEEP_BATCH_SIZE="2")
    make_event_set()
    stored = [enqueue_trigger(_submitted(f"L-{n}")).trigger_id for n in range(3)]

    def broker_down(_settings: object) -> bool:
        raise ConnectionError("broker down")

    monkeypatch.setattr(wakeups, "claim_wakeup", broker_down)
    assert tasks.process_triggers.run([])["triggers"] == 2
    with session_scope(workspace=ALL_WORKSPACES) as session:
        statuses = {
            row.id: row.status for row in session.execute(select(Trigger.id, Trigger.status))
        }
    assert [statuses[i] for i in stored] == [TriggerStatus.RESOLVED] * 2 + [TriggerStatus.RECEIVED]
    assert "broker unavailable (ConnectionError)" in caplog.text


@pytest.mark.parametrize("size", [1, 5])
def test_triggers_inserted_claimed_cost_the_same_statements_whatever_the_batch_size(
    sqlite_db: str, make_event_set: Callable[..., int], size: int
) -> None:
    """Select triggers, leads, event sets, mappings; one UPDATE of the triggers; one INSERT
    of rows already claimed (no UPDATE after it, no second read of the event sets)."""
    from models import Postback, PostbackStatus
    from worker.processing import insert_claimed, resolve_triggers

    make_event_set()
    stored = [enqueue_trigger(_submitted(f"L-{n}")).trigger_id for n in range(size)]
    settings = get_settings()
    batches: list[Any] = []
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.expunge_all()

        def run() -> None:
            now = datetime.now(UTC)
            resolved = resolve_triggers(session, stored, settings, now)
            batches.extend(insert_claimed(session, resolved, settings, now))

        with recorded_statements() as statements:
            run()
        session.commit()
    assert [s.verb for s in statements] == ["SELECT"] * 4 + ["UPDATE", "INSERT"]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = {row.id: row for row in session.scalars(select(Postback))}
    assert sorted(item.postback_id for batch in batches for item in batch.items) == sorted(rows)
    assert {(row.status, row.attempts) for row in rows.values()} == {(PostbackStatus.SENDING, 1)}
    assert all(row.lease_until is not None for row in rows.values())


def test_triggers_inserted_reserved_are_leased_for_a_delivery_task(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    from models import Postback, PostbackStatus
    from worker.processing import process_triggers

    make_event_set()
    stored = [enqueue_trigger(_submitted(f"L-{n}")).trigger_id for n in range(3)]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        done = process_triggers(session, stored, get_settings(), datetime.now(UTC))
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = list(session.scalars(select(Postback).order_by(Postback.id)))
    assert done.ready == [row.id for row in rows]
    assert {(row.status, row.attempts) for row in rows} == {(PostbackStatus.PENDING, 0)}
    assert all(row.lease_until is not None for row in rows)
