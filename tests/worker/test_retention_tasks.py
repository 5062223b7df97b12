"""The retention purge as beat runs it: scheduled daily, included in the app, batched."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from celery.schedules import crontab
from sqlalchemy import select, update

from crm_postback.api import enqueue_trigger
from crm_postback.observability import metric_definitions as metrics
from crm_postback.simulator import SimulatorControl
from models import Lead, Postback, Trigger
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from worker import retention_tasks
from worker.app import app


def test_the_purge_is_a_registered_task_scheduled_daily() -> None:
    assert "worker.retention_tasks" in app.conf.include
    assert "postback.purge_expired_data" in app.tasks
    entry = app.conf.beat_schedule["purge-expired-personal-data"]
    assert entry["task"] == "postback.purge_expired_data"
    schedule = entry["schedule"]
    assert isinstance(schedule, crontab)
    assert schedule.hour == {3} and schedule.minute == {17}
    assert schedule.day_of_week == set(range(7))  # every day
    # the sweeper is still there
    assert "sweep-due-postbacks" in app.conf.beat_schedule


def _old_lead(n: int, days: float = 120) -> None:
    enqueue_trigger(
        {
            "type": "lead.submitted",
            "lead_id": f"L-{n}",
            "event_set": "acme",
            "occurred_at": datetime.now(UTC).isoformat(),
            "match_keys": {"email": f"{n}@example.org", "ttclid": f"E.C.P.{n}"},
        }
    )
    then = datetime.now(UTC) - timedelta(days=days)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        ref = f"L-{n}"
        session.execute(update(Lead).where(Lead.lead_ref == ref).values(updated_at=then))
        session.execute(update(Trigger).where(Trigger.lead_ref == ref).values(received_at=then))
        session.execute(
            update(Postback)
            .where(Postback.lead_ref == ref)
            .values(created_at=then, updated_at=then)
        )
        session.commit()


@pytest.fixture
def ready(
    sqlite_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> None:
    make_event_set()


def test_the_task_purges_and_counts(ready: None, caplog: pytest.LogCaptureFixture) -> None:
    for n in range(3):
        _old_lead(n)
    _old_lead(9, days=10)  # recent: kept
    before = metrics.metrics().registry.get_sample_value(
        "postback_retention_purged_total", {"workspace": "default", "kind": "lead"}
    )
    caplog.set_level("INFO")
    answer = retention_tasks.purge_expired_data.apply().get()
    assert answer == {"leads": 3, "payloads": 3, "more": False}
    after = metrics.metrics().registry.get_sample_value(
        "postback_retention_purged_total", {"workspace": "default", "kind": "lead"}
    )
    assert after - (before or 0) == 3
    assert "cleared the match keys of 3 lead(s) and 3 stored event bod(ies)" in caplog.text
    with session_scope(workspace=ALL_WORKSPACES) as session:
        ttclids = dict(session.execute(select(Lead.lead_ref, Lead.ttclid)).all())
    assert ttclids == {"L-0": None, "L-1": None, "L-2": None, "L-9": "E.C.P.9"}
    assert retention_tasks.purge_expired_data.apply().get() == {
        "leads": 0,
        "payloads": 0,
        "more": False,
    }


def test_a_backlog_longer_than_one_run_continues_in_a_new_task(
    ready: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm_postback.operations import retention

    monkeypatch.setattr(retention_tasks, "PURGE_BATCH", 1)
    real = retention.purge_batch

    def one_at_a_time(*args: object, **kwargs: object) -> retention.PurgeBatch:
        return real(*args, **{**kwargs, "limit": 1})  # type: ignore[arg-type]

    monkeypatch.setattr(retention_tasks, "purge_batch", one_at_a_time)
    for n in range(3):
        _old_lead(n)
    queued: list[tuple[object, ...]] = []
    monkeypatch.setattr(retention_tasks.purge_expired_data, "delay", lambda *a: queued.append(a))
    answer = retention_tasks.purge_expired_data.apply(kwargs={"run_seconds": 0}).get()
    assert answer == {"leads": 0, "payloads": 0, "more": True} and queued == [()]
    answer = retention_tasks.purge_expired_data.apply().get()
    assert answer == {"leads": 3, "payloads": 3, "more": False}


def test_the_task_empties_sqlites_write_ahead_log_once_it_cleared_something(
    ready: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm_postback.core.settings import get_settings

    wal = get_settings().embedded_database_path.with_name("postback.db-wal")
    _old_lead(1)
    assert wal.stat().st_size > 0
    retention_tasks.purge_expired_data.apply().get()
    assert wal.stat().st_size == 0

    _old_lead(2)
    monkeypatch.setattr(retention_tasks, "truncate_sqlite_log", lambda: False)
    retention_tasks.purge_expired_data.apply().get()
    assert "write-ahead log still holds old copies" in caplog.text
