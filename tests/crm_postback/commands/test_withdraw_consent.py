"""Withdrawn consent: nothing of the lead leaves afterwards, whatever was waiting or comes later.

Each promise on SQLite and PostgreSQL: postbacks waiting on the retry ladder under a failing
TikTok end `consent_withdrawn` and none arrives once TikTok answers again; a trigger resolved
later makes `consent_withdrawn` rows; a row planned before the withdrawal but claimed after it
is refused at the claim; the call is idempotent, scoped to the workspace, and needs an editor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_postback.api import enqueue_trigger
from crm_postback.commands.lookups import NotFound
from crm_postback.commands.unit_of_work import Actor, NotPermitted
from crm_postback.commands.withdraw_consent import WithdrawConsent, withdraw_consent
from crm_postback.core.settings import get_settings
from crm_postback.simulator import SimulatorControl
from models import (
    DEFAULT_WORKSPACE_ID,
    AuditEntry,
    Lead,
    Postback,
    PostbackStatus,
    Role,
    Trigger,
    utcnow,
)
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import trigger_body  # type: ignore[import-not-found]
from tests.crm_postback.web.admin.conftest import acme_live  # type: ignore[import-not-found]  # noqa: F401
from worker import delivery, processing
from worker.tasks import sweep_due_postbacks

EDITOR = Actor("web:ed", DEFAULT_WORKSPACE_ID, Role.EDITOR)


def bodies(lead: str) -> list[dict[str, Any] | None]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        query = select(Postback.payload).where(Postback.lead_ref == lead).order_by(Postback.id)
        return list(session.scalars(query))


def statuses(lead: str | None = None) -> list[tuple[str | None, str, str | None]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        query = select(Postback).order_by(Postback.id)
        if lead is not None:
            query = query.where(Postback.lead_ref == lead)
        return [(r.event_name, r.status, r.last_message) for r in session.scalars(query)]


def resolve_stored(trigger_ids: list[int]) -> list[int]:
    """The sweeper's way: rows inserted pending under a lease, for a delivery task."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        processed = processing.process_triggers(session, trigger_ids, get_settings(), utcnow())
        session.commit()
    return processed.ready


@pytest.mark.usefixtures("acme_live")
def test_retrying_postbacks_end_withdrawn_and_none_arrives_after(
    any_db: str, simulator: SimulatorControl
) -> None:
    simulator.set_faults(http_5xx_rate=1.0)
    enqueue_trigger(trigger_body("lead.submitted", "L-1", match_keys={"email": "a@example.com"}))
    enqueue_trigger(trigger_body("lead.sold", "L-1", attributes={"value": 5}))
    enqueue_trigger(trigger_body("lead.submitted", "L-2", match_keys={"email": "b@example.com"}))
    assert {s for _, s, _ in statuses()} == {PostbackStatus.RETRYING}

    result = withdraw_consent(WithdrawConsent("L-1"), EDITOR)
    assert (result.already_withdrawn, result.postbacks_stopped) == (False, 2)
    assert "2 waiting postback(s) stopped" in result.message
    for _, status, message in statuses("L-1"):
        assert status == PostbackStatus.CONSENT_WITHDRAWN
        assert message is not None and "withdrew consent" in message
    # The stopped rows drop their event body (hashed keys); another lead's waiting row keeps it.
    assert bodies("L-1") == [None, None]
    assert [body is not None and "user" in body for body in bodies("L-2")] == [True]

    simulator.set_faults(http_5xx_rate=0.0)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(update(Postback).values(next_attempt_at=utcnow() - timedelta(hours=1)))
        session.commit()
    sweep_due_postbacks()
    assert statuses("L-2")[0][1] == PostbackStatus.DELIVERED
    assert {s for _, s, _ in statuses("L-1")} == {PostbackStatus.CONSENT_WITHDRAWN}
    assert simulator.count_events() == 1  # L-2's only


@pytest.mark.usefixtures("acme_live")
def test_triggers_of_a_withdrawn_lead_never_send(any_db: str, simulator: SimulatorControl) -> None:
    enqueue_trigger(trigger_body("lead.submitted", "L-1", match_keys={"email": "a@example.com"}))
    assert simulator.count_events() == 1
    withdraw_consent(WithdrawConsent("L-1"), EDITOR)
    # New keys for the lead and a later sale: still nothing leaves.
    accepted = enqueue_trigger(
        trigger_body(
            "lead.sold", "L-1", attributes={"value": 7}, match_keys={"phone": "+12133734253"}
        )
    )
    assert simulator.count_events() == 1
    assert statuses("L-1")[-1][:2] == ("lead_sold", PostbackStatus.CONSENT_WITHDRAWN)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        stored = session.get(Trigger, accepted.trigger_id)
        assert stored is not None and "withdrew consent" in (stored.error or "")
        row = session.scalars(select(Postback).where(Postback.event_name == "lead_sold")).one()
        assert row.payload is None  # nothing of the lead kept for an event never sent


def test_a_row_planned_before_and_claimed_after_the_withdrawal_is_refused(
    any_db: str,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
) -> None:
    make_event_set()
    accepted = enqueue_trigger(
        trigger_body("lead.submitted", "L-1", match_keys={"email": "a@example.com"})
    )
    ready = resolve_stored([accepted.trigger_id])  # pending, leased for a delivery task
    assert len(ready) == 1
    # `sending` from a worker that died (lease past): the command leaves it (it may be in
    # flight), the claim that would send it again must refuse it.
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(
            update(Postback).values(
                status=PostbackStatus.SENDING, lease_until=utcnow() - timedelta(seconds=1)
            )
        )
        session.commit()
    result = withdraw_consent(WithdrawConsent("L-1"), EDITOR)
    assert (result.postbacks_stopped, result.postbacks_in_flight) == (0, 1)
    assert "may still arrive" in result.message
    with session_scope(workspace=ALL_WORKSPACES) as session:
        batches = delivery.claim(session, ready, get_settings(), utcnow())
        session.commit()
    assert batches == []
    assert statuses("L-1")[0][1] == PostbackStatus.CONSENT_WITHDRAWN
    assert bodies("L-1") == [None]  # refused at the claim: its body is dropped too
    assert simulator.count_events() == 0


def test_concurrent_withdrawal_and_delivery_never_send_after_the_withdrawal(
    any_db: str,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
) -> None:
    """Many rows, a claim and a withdrawal at once: each row is either claimed before the
    withdrawal committed (in flight, counted) or ends `consent_withdrawn`; never sent after."""
    make_event_set()
    ids = [
        enqueue_trigger(
            trigger_body("lead.submitted", f"L-{n}", match_keys={"email": f"{n}@example.com"})
        ).trigger_id
        for n in range(40)
    ]
    ready = resolve_stored(ids)
    settings = get_settings()
    barrier = threading.Barrier(2)
    claimed: list[int] = []
    results: dict[str, int] = {}

    def claim() -> None:
        barrier.wait()
        with session_scope(workspace=ALL_WORKSPACES) as session:
            batches = delivery.claim(session, ready, settings, utcnow())
            session.commit()
        claimed.extend(item.postback_id for batch in batches for item in batch.items)

    def withdraw() -> None:
        barrier.wait()
        for n in range(40):
            outcome = withdraw_consent(WithdrawConsent(f"L-{n}"), EDITOR)
            results[f"L-{n}"] = outcome.postbacks_stopped

    threads = [threading.Thread(target=claim), threading.Thread(target=withdraw)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = {r.id: r for r in session.scalars(select(Postback))}
    for row_id, row in rows.items():
        if row_id in claimed:
            assert row.status == PostbackStatus.SENDING
        else:
            assert row.status == PostbackStatus.CONSENT_WITHDRAWN, row_id
            assert row.payload is None, row_id
    assert sum(results.values()) == len(rows) - len(claimed)


def test_second_call_changes_nothing_and_says_so(
    any_db: str, make_event_set: Callable[..., int]
) -> None:
    make_event_set()
    enqueue_trigger(trigger_body("lead.submitted", "L-1", match_keys={"email": "a@example.com"}))
    first = withdraw_consent(WithdrawConsent("L-1"), EDITOR)
    second = withdraw_consent(WithdrawConsent("L-1"), EDITOR)
    assert not first.already_withdrawn and second.already_withdrawn
    assert second.withdrawn_at == first.withdrawn_at
    assert second.postbacks_stopped == 0
    assert "nothing changed" in second.message
    with session_scope(workspace=ALL_WORKSPACES) as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "lead.consent_withdrawn")
        ).all()
        assert len(entries) == 1
        assert entries[0].actor == "web:ed"
        lead = session.scalars(select(Lead)).one()
        assert lead.consent_withdrawn_at is not None


def test_unknown_lead_other_workspace_and_viewer_are_refused(
    any_db: str, make_event_set: Callable[..., int]
) -> None:
    from crm_postback.configuration.workspaces import add_workspace

    make_event_set()
    enqueue_trigger(trigger_body("lead.submitted", "L-1", match_keys={"email": "a@example.com"}))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        other = add_workspace(session, "globex").id
        session.commit()
    with pytest.raises(NotFound, match="no lead"):
        withdraw_consent(WithdrawConsent("nobody"), EDITOR)
    with pytest.raises(NotFound, match="no lead"):
        withdraw_consent(WithdrawConsent("L-1"), Actor("web:g", other, Role.OWNER))
    with pytest.raises(NotPermitted):
        withdraw_consent(WithdrawConsent("L-1"), Actor("web:v", DEFAULT_WORKSPACE_ID, Role.VIEWER))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(Lead)).one().consent_withdrawn_at is None


def test_cli_withdraws_once_and_refuses_an_unknown_lead(
    any_db: str, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from crm_postback.cli import app

    monkeypatch.setattr("getpass.getuser", lambda: "ops")
    make_event_set()
    enqueue_trigger(trigger_body("lead.submitted", "L-1", match_keys={"email": "a@example.com"}))
    runner = CliRunner()
    first = runner.invoke(app, ["withdraw-consent", "--workspace", "default", "L-1"])
    assert first.exit_code == 0, first.output
    assert "consent withdrawn" in first.output
    second = runner.invoke(app, ["withdraw-consent", "--workspace", "default", "L-1"])
    assert second.exit_code == 0 and "nothing changed" in second.output
    unknown = runner.invoke(app, ["withdraw-consent", "--workspace", "default", "L-2"])
    assert unknown.exit_code == 2 and "no lead of this id" in unknown.output
    with session_scope(workspace=ALL_WORKSPACES) as session:
        actors = session.scalars(
            select(AuditEntry.actor).where(AuditEntry.action == "lead.consent_withdrawn")
        ).all()
    assert actors == ["cli:ops"]
