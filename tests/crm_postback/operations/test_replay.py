"""Replay: dead, failed and expired postbacks go out again with the same event_id."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from crm_postback.api import enqueue_trigger, upsert_lead_keys
from crm_postback.cli import app
from crm_postback.simulator import SimulatorControl
from crm_postback.tiktok.match_key_kinds import MatchKeyKind
from models import Postback, PostbackStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import apply_env  # type: ignore[import-not-found]
from worker.tasks import sweep_due_postbacks

runner = CliRunner()


def sold(lead: str, minutes_ago: float = 5, **extra: Any) -> dict[str, Any]:
    occurred = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "type": "lead.sold",
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": occurred.isoformat(),
        "attributes": {"value": 10},
        **extra,
    }


def rows() -> list[Postback]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Postback).order_by(Postback.id)))


@pytest.fixture
def ready(
    sqlite_db: str,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> SimulatorControl:
    make_event_set()
    apply_env(monkeypatch, RETRY_SCHEDULE_SECONDS="[]")  # first failure is final: dead
    return simulator


def dead_postbacks(simulator: SimulatorControl, leads: list[str]) -> None:
    simulator.set_faults(http_5xx_rate=1.0)
    for lead in leads:
        enqueue_trigger(sold(lead, match_keys={"email": f"{lead}@example.com"}))
    simulator.set_faults(http_5xx_rate=0.0)
    assert {r.status for r in rows()} == {PostbackStatus.DEAD}


def test_dry_run_counts_and_changes_nothing(ready: SimulatorControl) -> None:
    dead_postbacks(ready, ["L-1", "L-2"])
    result = runner.invoke(app, ["replay", "--all", "--dry-run"])
    assert result.exit_code == 0 and "2 postback(s) would be replayed" in result.output
    assert {r.status for r in rows()} == {PostbackStatus.DEAD}


def test_replay_by_lead_sends_the_same_event_id(ready: SimulatorControl) -> None:
    dead_postbacks(ready, ["L-1", "L-2"])
    before = {r.lead_ref: r.event_id for r in rows()}
    result = runner.invoke(app, ["replay", "--lead-id", "L-1"])
    assert result.exit_code == 0 and "1 postback(s) re-queued" in result.output
    by_lead = {r.lead_ref: r for r in rows()}
    assert by_lead["L-1"].status == PostbackStatus.DELIVERED and by_lead["L-1"].replays == 1
    assert by_lead["L-2"].status == PostbackStatus.DEAD
    assert [e["event_id"] for e in ready.events()] == [before["L-1"]]


def test_replay_by_code_and_time_range(ready: SimulatorControl) -> None:
    dead_postbacks(ready, ["L-1"])
    code = rows()[0].last_code
    assert runner.invoke(app, ["replay", "--code", "40002", "--dry-run"]).output.startswith("0 ")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert runner.invoke(app, ["replay", "--since", tomorrow, "--dry-run"]).output.startswith("0 ")
    if code is not None:
        out = runner.invoke(app, ["replay", "--code", str(code), "--dry-run"]).output
        assert out.startswith("1 ")


def test_failed_for_missing_keys_succeeds_once_keys_arrive(ready: SimulatorControl) -> None:
    upsert_lead_keys("L-9", {"ip": "203.0.113.1"})  # a lead, but no key CRM events can use
    enqueue_trigger(sold("L-9"))
    [row] = rows()
    assert row.status == PostbackStatus.NO_MATCH_KEY and "match_keys" in (row.last_message or "")
    # Replayed before a key arrived, it stays no_match_key, with the reason.
    assert runner.invoke(app, ["replay", "--id", str(row.id)]).exit_code == 0
    [row] = rows()
    assert row.status == PostbackStatus.NO_MATCH_KEY
    assert (row.last_message or "").startswith("replay not possible: match_keys")
    upsert_lead_keys("L-9", {"email": "nine@example.com"})
    assert runner.invoke(app, ["replay", "--id", str(row.id)]).exit_code == 0
    [row] = rows()
    assert row.status == PostbackStatus.DELIVERED
    assert row.match_key_mask is not None and row.match_key_mask & MatchKeyKind.EMAIL
    assert ready.events()[0]["payload"]["user"]["email"]


def test_a_replay_keeps_limited_data_use_and_never_sends_for_a_withdrawn_lead(
    ready: SimulatorControl,
) -> None:
    from crm_postback.api import withdraw_consent
    from crm_postback.operations.postback_messages import consent_withdrawn_message

    ready.set_faults(http_5xx_rate=1.0)
    keys = {"email": "one@example.com"}
    enqueue_trigger(sold("L-1", match_keys=keys, limited_data_use=True))
    enqueue_trigger(sold("L-2", match_keys=keys))
    ready.set_faults(http_5xx_rate=0.0)
    assert {r.status for r in rows()} == {PostbackStatus.DEAD}
    withdrawn = withdraw_consent("L-2")
    assert runner.invoke(app, ["replay", "--status", "dead", "--all"]).exit_code == 0
    by_lead = {row.lead_ref: row for row in rows()}
    assert by_lead["L-1"].status == PostbackStatus.DELIVERED
    assert by_lead["L-2"].status == PostbackStatus.CONSENT_WITHDRAWN
    # The same text the withdrawal and the worker write, behind the replay's own prefix.
    assert by_lead["L-2"].last_message == (
        f"replay not possible: {consent_withdrawn_message(withdrawn.withdrawn_at)}"
    )
    [event] = ready.events()
    assert event["payload"]["limited_data_use"] is True


def test_expired_event_replayed_by_an_operator_is_sent(ready: SimulatorControl) -> None:
    enqueue_trigger(sold("L-1", minutes_ago=30 * 24 * 60, match_keys={"email": "o@example.com"}))
    assert rows()[0].status == PostbackStatus.EXPIRED
    assert runner.invoke(app, ["replay", "--status", "expired", "--all"]).exit_code == 0
    assert rows()[0].status == PostbackStatus.DELIVERED


def test_replay_refuses_without_a_selection_or_with_a_bad_status(ready: SimulatorControl) -> None:
    assert runner.invoke(app, ["replay"]).exit_code == 2
    result = runner.invoke(app, ["replay", "--status", "delivered", "--all"])
    assert result.exit_code == 2 and "status" in result.output


def test_replayed_rows_wait_for_the_sweeper_when_the_broker_is_down(
    ready: SimulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_postbacks(ready, ["L-1"])
    from worker.app import app as celery_app

    celery_app.conf.task_always_eager = False
    apply_env(monkeypatch, BROKER_URL="redis://127.0.0.1:1/0")
    result = runner.invoke(app, ["replay", "--all"])
    assert result.exit_code == 0 and "sweeper" in result.output
    assert rows()[0].status == PostbackStatus.PENDING
    apply_env(monkeypatch, BROKER_URL="memory://")
    celery_app.conf.task_always_eager = True
    sweep_due_postbacks()
    assert rows()[0].status == PostbackStatus.DELIVERED
