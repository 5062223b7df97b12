"""A caller event_id already held by an outbox row: the trigger's note says what that row is.

The row may never have left (no_match_key, failed, dead, expired, consent_withdrawn): then
"TikTok would drop it as a duplicate" would be false, so the note names the stored row's
status, says TikTok never got it and, where a replay can send it, names the command. The
advice is followed here and has to work. SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_postback.api import enqueue_trigger
from crm_postback.commands.replay_postbacks import ReplayPostbacks, replay_postbacks
from crm_postback.commands.unit_of_work import Actor
from crm_postback.commands.withdraw_consent import WithdrawConsent, withdraw_consent
from crm_postback.core.settings import get_settings
from crm_postback.operations.diagnostics import diagnose
from crm_postback.operations.replay import ReplaySelection
from models import DEFAULT_WORKSPACE_ID, Postback, PostbackStatus, Role, Trigger, utcnow
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from worker import processing

PIXEL_ID = "pixel-evt-0042"
EDITOR = Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.EDITOR)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, make_event_set: Callable[..., int]) -> str:
    url: str = request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")
    make_event_set()
    return url


def send(lead: str, event_id: str = PIXEL_ID, **match_keys: Any) -> int:
    occurred = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    accepted = enqueue_trigger(
        {
            "type": "lead.submitted",
            "lead_id": lead,
            "event_set": "acme",
            "occurred_at": occurred,
            "event_id": event_id,
            "match_keys": match_keys,
        }
    )
    with session_scope(workspace=ALL_WORKSPACES) as session:
        processing.process_triggers(session, [accepted.trigger_id], get_settings(), utcnow())
        session.commit()
    return accepted.trigger_id


def postbacks() -> list[Postback]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = list(session.scalars(select(Postback).order_by(Postback.id)))
        session.expunge_all()
        return rows


def note(trigger_id: int) -> str:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return session.scalar(select(Trigger.error).where(Trigger.id == trigger_id)) or ""


def test_a_reused_id_of_a_no_match_key_row_says_tiktok_never_got_it_and_replay_sends_it(
    db: str,
) -> None:
    first = send("L-1", first_name="Jo")  # a name alone identifies nobody: no_match_key
    (held,) = postbacks()
    assert held.status == PostbackStatus.NO_MATCH_KEY
    again = send("L-1", email="jo@example.com")  # the keys arrive with the re-sent event
    assert [p.id for p in postbacks()] == [held.id]
    text = note(again)
    assert f"postback {held.id} (no_match_key)" in text
    assert "TikTok never got" in text and f"`postback replay --id {held.id}`" in text
    assert "would drop it as a duplicate" not in text
    assert note(first) == ""
    # The advice works: the lead's keys are stored now, the replay makes the event sendable.
    outcome = replay_postbacks(ReplayPostbacks(ReplaySelection(ids=[held.id])), EDITOR)
    assert outcome.requeued == [held.id], outcome
    (replayed,) = postbacks()
    assert replayed.status == PostbackStatus.PENDING
    assert replayed.payload and replayed.payload["user"]["email"]


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (PostbackStatus.FAILED, "which TikTok never got; not stored again: to send it"),
        (PostbackStatus.DEAD, "which TikTok never got; not stored again: to send it"),
        (PostbackStatus.EXPIRED, "which TikTok never got; not stored again: to send it"),
        (PostbackStatus.CONSENT_WITHDRAWN, "which is never sent; not stored again"),
        (PostbackStatus.DELIVERED, "TikTok has it; not stored again"),
        (PostbackStatus.PENDING, "which is sent once; not stored again"),
        (PostbackStatus.RETRYING, "which is sent once; not stored again"),
    ],
)
def test_the_note_names_the_stored_rows_status(db: str, status: str, says: str) -> None:
    send("L-1", email="a@example.com")
    (held,) = postbacks()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(update(Postback).where(Postback.id == held.id).values(status=status))
        session.commit()
    text = note(send("L-2", email="b@example.com"))
    assert text.startswith(
        f"event Lead with event_id {PIXEL_ID!r} is already in the outbox as postback "
        f"{held.id} ({status})"
    )
    assert says in text
    assert ("replay --id" in text) == (says.endswith("to send it"))
    assert "would drop it" not in text


def test_a_withdrawn_leads_row_is_not_offered_for_replay(db: str) -> None:
    send("L-1", email="a@example.com")
    withdraw_consent(WithdrawConsent("L-1"), EDITOR)
    (held,) = postbacks()
    assert held.status == PostbackStatus.CONSENT_WITHDRAWN
    text = note(send("L-2", email="b@example.com"))
    assert f"postback {held.id} (consent_withdrawn), which is never sent" in text
    assert "replay" not in text


def reused_finding() -> Any:
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        set_id = session.scalar(select(Postback.event_set_id).limit(1))
        assert set_id is not None
        found = [f for f in diagnose(session, set_id).findings if f.code == "event_id_reused"]
    return found[0] if found else None


def test_diagnose_names_a_constant_pixel_event_id(db: str) -> None:
    """A broken Pixel setup sends 'undefined' for every conversion: each trigger is accepted,
    only the first makes an event. Diagnose says so, with the id and how often."""
    for n in range(5):
        send(f"L-{n}", event_id="undefined", email=f"{n}@example.com")
    send("L-9", event_id="px-9", email="9@example.com")
    send("L-9", event_id="px-9", email="9@example.com")  # the same conversion re-sent
    assert len(postbacks()) == 2
    finding = reused_finding()
    assert finding is not None and finding.severity.value == "warning"
    assert finding.title.startswith("5 trigger(s) in 14 days made no new event")
    assert "(2 id(s); 'undefined' 4 time(s), 'px-9' 1 time(s))" in finding.title
    assert "probably constant" in finding.fix and "replay --id N" in finding.fix


def test_an_occasional_re_send_is_only_information_and_old_ones_do_not_count(db: str) -> None:
    send("L-1", event_id="px-1", email="1@example.com")
    again = send("L-1", event_id="px-1", email="1@example.com")
    finding = reused_finding()
    assert finding is not None and finding.severity.value == "info"
    assert "probably constant" not in finding.fix
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(
            update(Trigger)
            .where(Trigger.id == again)
            .values(received_at=utcnow() - timedelta(days=15))
        )
        session.commit()
    assert reused_finding() is None
