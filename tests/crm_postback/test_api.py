"""The Python API end to end on SQLite: stored, hashed, queued, delivered, explained."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_postback import api
from crm_postback.api import InputRejected, enqueue_trigger, enqueue_triggers, upsert_lead_keys
from crm_postback.simulator import SimulatorControl
from models import Lead, Postback, PostbackStatus, Trigger, TriggerStatus
from models.base import utcnow
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

RAW_EMAIL = "Jane.Doe+crm@Example.com"
RAW_PHONE = "(213) 373-4253"


def trigger(kind: str, lead: str = "L-1", minutes_ago: int = 10, **extra: Any) -> dict[str, Any]:
    occurred = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "type": kind,
        "lead_id": lead,
        "event_set": "acme",
        "occurred_at": occurred.isoformat(),
        **extra,
    }


def submitted(lead: str = "L-1", **keys: Any) -> dict[str, Any]:
    match_keys = {"email": RAW_EMAIL, "phone": RAW_PHONE, "ttclid": "E.C.P.click-1", **keys}
    return trigger("lead.submitted", lead, minutes_ago=30, match_keys=match_keys)


def postbacks(lead: str = "L-1") -> list[Postback]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(
            session.scalars(select(Postback).where(Postback.lead_ref == lead).order_by(Postback.id))
        )


@pytest.fixture
def ready(
    sqlite_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> SimulatorControl:
    make_event_set()
    return simulator


def test_lifecycle_is_delivered_with_hashes_only(ready: SimulatorControl) -> None:
    enqueue_trigger(submitted())
    enqueue_trigger(trigger("lead.sold", attributes={"value": 42.5}))

    received = ready.events()
    assert [e["event"] for e in received] == ["Lead", "lead_sold"]
    sold = received[1]["payload"]
    assert sold["properties"] == {"value": 42.5, "currency": "USD"}
    assert sold["user"]["ttclid"] == "E.C.P.click-1"
    assert all(len(h) == 64 for h in sold["user"]["email"] + sold["user"]["phone"])
    rows = postbacks()
    assert [r.status for r in rows] == [PostbackStatus.DELIVERED] * 2
    assert rows[1].payload == sold  # the stored JSON is exactly what TikTok received
    assert rows[1].last_request_id == received[1]["request_id"]


def test_raw_email_and_phone_never_reach_the_database(
    ready: SimulatorControl, isolated_settings: Path
) -> None:
    enqueue_trigger(submitted())
    enqueue_trigger(trigger("lead.sold", attributes={"value": 10}))
    stored = b"".join(p.read_bytes() for p in isolated_settings.glob("postback.db*"))
    assert stored, "the SQLite files were not found"
    for raw in (RAW_EMAIL, RAW_EMAIL.lower(), "2133734253", "+12133734253"):
        assert raw.encode() not in stored


def test_retried_call_with_same_key_sends_nothing_new(ready: SimulatorControl) -> None:
    payload = submitted()
    first = enqueue_trigger(payload)
    again = enqueue_trigger(payload)
    assert again.trigger_id == first.trigger_id and again.duplicate
    assert ready.stats()["events_accepted"] == 1


def test_later_trigger_merges_keys_into_the_lead(ready: SimulatorControl) -> None:
    enqueue_trigger(
        trigger("lead.submitted", minutes_ago=30, match_keys={"email": "a@example.com"})
    )
    enqueue_trigger(
        trigger(
            "lead.sold",
            attributes={"value": 5},
            match_keys={"ttclid": "E.C.P.late", "tiktok_lead_id": "731"},
        )
    )
    sold = ready.events(event="lead_sold")[0]["payload"]
    assert sold["user"]["ttclid"] == "E.C.P.late"
    assert sold["lead"] == {"lead_id": "731", "lead_event_source": "crm-postback"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_set": "nobody"}, "event_set"),
        ({"match_keys": {"phone": 2133734253}}, "match_keys.phone"),  # a type, not a value
        ({"event_id": RAW_EMAIL}, "event_id"),
        ({"attributes": {"value": "lots"}}, "attributes"),
        ({"attributes": {"currency": "XBT", "value": 1}}, "attributes"),
        ({"attributes": {f"k{i}": i for i in range(60)}}, "attributes"),
        ({"attributes": {"note": "x" * 2000}}, "attributes"),
        ({"type": "Lead Sold"}, "type"),
        ({"occurred_at": "yesterday-ish"}, "occurred_at"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    ready: SimulatorControl, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(InputRejected) as caught:
        enqueue_trigger({**submitted(), **change})
    assert caught.value.errors[0].field == field
    assert "call me" not in str(caught.value)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalar(select(Trigger.id)) is None
        assert session.scalar(select(Lead.id)) is None


def test_batch_keeps_good_items_when_one_is_bad(ready: SimulatorControl) -> None:
    items = enqueue_triggers(
        [
            submitted("L-1"),
            {**submitted("L-2"), "match_keys": {"phone": ["+12133734253"] * 101}},
            submitted("L-3"),
        ]
    )
    assert [bool(i.accepted) for i in items] == [True, False, True]
    assert items[1].errors[0].field == "match_keys.phone"
    assert ready.stats()["events_unique"] == 2


@pytest.mark.parametrize("phone", ["+2132435345", "12345678901234"])
def test_a_bad_phone_drops_only_the_phone(ready: SimulatorControl, phone: str) -> None:
    accepted = enqueue_trigger(submitted(phone=phone))
    assert [(w.field, w.message) for w in accepted.warnings] == [
        ("match_keys.phone", "not a possible number (default region US); dropped")
    ]
    assert phone not in str(accepted)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(Trigger.dropped_keys)).one() == ["phone"]
    user = ready.events()[0]["payload"]["user"]
    assert user["ttclid"] == "E.C.P.click-1" and len(user["email"]) == 1
    assert "phone" not in user


def test_strict_per_call_keeps_refusing_the_whole_trigger(ready: SimulatorControl) -> None:
    with pytest.raises(InputRejected) as caught:
        enqueue_trigger(submitted(phone="+2132435345"), strict=True)
    assert [e.field for e in caught.value.errors] == ["match_keys.phone"]
    items = enqueue_triggers([submitted("L-1", ttclid=RAW_EMAIL), submitted("L-2")], strict=True)
    assert [bool(i.accepted) for i in items] == [False, True]
    assert items[0].errors[0].field == "match_keys.ttclid"
    assert RAW_EMAIL not in str(items[0].errors)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(Trigger.lead_ref)).all() == ["L-2"]


def test_a_ttclid_shaped_like_an_email_is_dropped_and_the_rest_arrives(
    ready: SimulatorControl,
) -> None:
    [item] = enqueue_triggers([submitted(ttclid=RAW_EMAIL)])
    assert item.accepted is not None
    assert [w.field for w in item.warnings] == ["match_keys.ttclid"]
    assert RAW_EMAIL not in str(item.warnings)
    user = ready.events()[0]["payload"]["user"]
    assert "ttclid" not in user and len(user["phone"]) == 1


def test_event_id_and_limited_data_use_are_stored_with_the_trigger(
    ready: SimulatorControl,
) -> None:
    enqueue_trigger({**submitted(), "event_id": " pixel-ev-1 ", "limited_data_use": True})
    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.scalars(select(Trigger)).one()
        assert (row.event_id, row.limited_data_use, row.dropped_keys) == (
            "pixel-ev-1",
            True,
            None,
        )


def test_upsert_lead_keys_answers_its_warnings_and_stores_the_lead_choice(
    ready: SimulatorControl,
) -> None:
    stored = upsert_lead_keys(
        "L-9",
        {"first_name": " Mary-Ann ", "phone": "+2132435345", "country": "US"},
        limited_data_use=True,
    )
    assert stored.lead_id == "L-9" and stored.stored
    assert [w.field for w in stored.warnings] == ["match_keys.phone"]
    with pytest.raises(InputRejected):
        upsert_lead_keys("L-9", {"phone": "+2132435345"}, strict=True)
    nothing = upsert_lead_keys("L-9", {"phone": "+2132435345"})
    assert not nothing.stored and [w.field for w in nothing.warnings] == ["match_keys.phone"]
    assert upsert_lead_keys("L-9", limited_data_use=False).stored
    with session_scope(workspace=ALL_WORKSPACES) as session:
        lead = session.scalars(select(Lead)).one()
        assert lead.first_name_hash == hashlib.sha256(b"maryann").hexdigest()
        assert lead.country_hash == hashlib.sha256(b"us").hexdigest()
        assert lead.phone_hashes == [] and lead.limited_data_use is False


def test_withdraw_consent_stops_the_lead_and_refuses_an_unknown_one(
    ready: SimulatorControl,
) -> None:
    upsert_lead_keys("L-1", {"email": RAW_EMAIL})
    result = api.withdraw_consent("L-1")
    assert result.lead_id == "L-1" and not result.already_withdrawn
    assert api.withdraw_consent("L-1").already_withdrawn
    with pytest.raises(InputRejected):
        api.withdraw_consent("nobody")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalars(select(Lead.consent_withdrawn_at)).one() is not None


def test_custom_trigger_without_mapping_is_unmapped_not_an_error(ready: SimulatorControl) -> None:
    enqueue_trigger(submitted())
    enqueue_trigger(trigger("buyer.accepted", attributes={"buyer_id": "B9"}))
    unmapped = postbacks()[-1]
    assert unmapped.status == PostbackStatus.UNMAPPED
    assert "buyer.accepted" in (unmapped.last_message or "")
    assert unmapped.next_attempt_at is None  # never retried


def test_trigger_for_unknown_lead_waits_then_fails_naming_lead_id(
    ready: SimulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import apply_env  # type: ignore[import-not-found]

    enqueue_trigger(trigger("lead.sold", lead="ghost", attributes={"value": 1}))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        waiting = session.scalars(select(Trigger)).one()
        assert waiting.status == TriggerStatus.WAITING_FOR_LEAD
    apply_env(monkeypatch, LEAD_WAIT_SECONDS="0")
    from worker.tasks import process_triggers

    process_triggers([waiting.id])
    with session_scope(workspace=ALL_WORKSPACES) as session:
        failed = session.get(Trigger, waiting.id)
        assert failed is not None and failed.status == TriggerStatus.FAILED
        assert (failed.error or "").startswith("lead_id:")


def test_waiting_trigger_is_sent_once_the_lead_arrives(ready: SimulatorControl) -> None:
    enqueue_trigger(trigger("lead.sold", lead="late", attributes={"value": 3}))
    assert ready.stats()["events_accepted"] == 0
    upsert_lead_keys("late", {"email": "late@example.com"})
    from worker.tasks import process_triggers

    with session_scope(workspace=ALL_WORKSPACES) as session:
        trigger_id = session.scalars(select(Trigger.id)).one()
    process_triggers([trigger_id])
    assert [e["event"] for e in ready.events()] == ["lead_sold"]


def test_a_trigger_waiting_for_its_lead_outlasts_many_sweeps(
    ready: SimulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sweep runs the stale waiting trigger again and counts the run first (the cap on
    runs that never finish, for a trigger that kills workers). Runs that finish waiting
    must not count: twice the cap of sweeps later, it is still waiting, not failed as if
    the worker had died, and goes out once the lead arrives."""
    from tests.conftest import apply_env  # type: ignore[import-not-found]
    from worker.tasks import sweep_due_postbacks

    apply_env(monkeypatch, STALE_TRIGGER_SECONDS="1", MAX_PROCESSING_ATTEMPTS="2")
    enqueue_trigger(trigger("lead.sold", lead="slow", attributes={"value": 3}))
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(update(Trigger).values(received_at=utcnow() - timedelta(minutes=1)))
        session.commit()
    for _ in range(4):
        assert sweep_due_postbacks()["stale_triggers"] == 1
    with session_scope(workspace=ALL_WORKSPACES) as session:
        waiting = session.scalars(select(Trigger)).one()
        assert waiting.status == TriggerStatus.WAITING_FOR_LEAD, waiting.error
    upsert_lead_keys("slow", {"email": "slow@example.com"})
    sweep_due_postbacks()
    assert [e["event"] for e in ready.events()] == ["lead_sold"]


def test_broker_down_at_enqueue_keeps_the_trigger(
    sqlite_db: str, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import apply_env  # type: ignore[import-not-found]

    make_event_set()
    apply_env(monkeypatch, BROKER_URL="redis://127.0.0.1:1/0")
    accepted = enqueue_trigger(submitted())
    with session_scope(workspace=ALL_WORKSPACES) as session:
        stored = session.get(Trigger, accepted.trigger_id)
        assert stored is not None and stored.status == TriggerStatus.RECEIVED


def test_text_that_cannot_be_stored_is_refused_naming_the_field(ready: SimulatorControl) -> None:
    with pytest.raises(InputRejected) as refused:
        enqueue_trigger(trigger("lead.sold", attributes={"note": "a\x00b"}))
    assert [e.field for e in refused.value.errors] == ["attributes.note"]
    items = enqueue_triggers(
        [submitted("L-ok"), submitted("L-bad", ttclid="E.C.P.\ud800"), submitted("L-ok2")]
    )
    assert [item.accepted is not None for item in items] == [True, False, True]
    assert [e.field for e in items[1].errors] == ["match_keys.ttclid"]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        refs = set(session.scalars(select(Trigger.lead_ref)))
    assert refs == {"L-ok", "L-ok2"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_does_not_inherit_the_groups_lock_held_in_the_parent() -> None:
    # A web or worker process forked while another thread was creating a workspace's group.
    with api._GROUPS_LOCK:
        pid = os.fork()
        if pid == 0:  # the child: exit at once, whatever happens
            os._exit(0 if api._GROUPS_LOCK.acquire(timeout=2) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
