"""Resolution with the match-quality keys: caller event ids, duplicates, consent, no match key.

Each on SQLite and PostgreSQL through the worker's own code (eager tasks posting to the
simulator over HTTP); the race between two workers on PostgreSQL with two threads, and with
real worker processes on Redis.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_postback.api import enqueue_trigger
from crm_postback.core.settings import get_settings
from crm_postback.simulator import SimulatorControl
from crm_postback.tiktok.match_key_kinds import IDENTIFYING, MatchKeyKind
from models import Lead, Postback, PostbackStatus, Trigger, TriggerStatus, utcnow
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import (  # type: ignore[import-not-found]
    WorkerProcess,
    on_both_brokers,
    through_pgbouncer,
    trigger_body,
)
from worker import processing
from worker.claim_planning import OutgoingBatch
from worker.tasks import _send_and_record

PIXEL_ID = "pixel-evt-0001"
TWO_EVENTS = (
    {"trigger_type": "lead.submitted", "event_name": "Lead"},
    {"trigger_type": "lead.sold", "event_name": "lead_sold", "properties": {"currency": "USD"}},
    {"trigger_type": "lead.sold", "event_name": "Purchase", "properties": {"currency": "USD"}},
)


def stored(trigger_id: int | None = None) -> list[Postback]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        query = select(Postback).order_by(Postback.id)
        if trigger_id is not None:
            query = query.where(Postback.trigger_id == trigger_id)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def trigger_row(trigger_id: int) -> Trigger:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        row = session.get(Trigger, trigger_id)
        assert row is not None
        session.expunge(row)
        return row


def set_trigger(trigger_id: int, **values: Any) -> None:
    """What the intake stores for a trigger that carries the field (the intake's own tests
    check the door; these check what the worker does with the stored value)."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(update(Trigger).where(Trigger.id == trigger_id).values(**values))
        session.commit()


def set_lead(lead_ref: str, **values: Any) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(update(Lead).where(Lead.lead_ref == lead_ref).values(**values))
        session.commit()


def run_worker(trigger_ids: list[int]) -> dict[str, Any]:
    from worker.tasks import process_triggers

    result: dict[str, Any] = process_triggers(trigger_ids)
    return result


def test_every_event_of_a_trigger_carries_the_callers_event_id(
    any_db: str, simulator: SimulatorControl, make_event_set: Callable[..., int]
) -> None:
    make_event_set(mappings=TWO_EVENTS)
    lead = enqueue_trigger(trigger_body("lead.submitted", "L-1", match_keys={"email": "a@b.co"}))
    sold = enqueue_trigger(trigger_body("lead.sold", "L-1", attributes={"value": 3}))
    set_trigger(sold.trigger_id, event_id=PIXEL_ID)
    run_worker([lead.trigger_id, sold.trigger_id])
    events = simulator.events()
    assert sorted((e["event"], e["event_id"]) for e in events if e["event"] != "Lead") == [
        ("Purchase", PIXEL_ID),
        ("lead_sold", PIXEL_ID),
    ]
    lead_event = next(e for e in events if e["event"] == "Lead")
    assert len(lead_event["event_id"]) == 40  # no caller id: the deterministic one
    assert {p.status for p in stored()} == {PostbackStatus.DELIVERED}


def test_a_later_trigger_with_the_same_caller_id_is_not_stored_or_sent_again(
    any_db: str, simulator: SimulatorControl, make_event_set: Callable[..., int]
) -> None:
    make_event_set(mappings=TWO_EVENTS)
    first = enqueue_trigger(trigger_body("lead.submitted", "L-1", match_keys={"email": "a@b.co"}))
    set_trigger(first.trigger_id, event_id=PIXEL_ID)
    run_worker([first.trigger_id])
    # Another lead, another idempotency key, the same Pixel id and event name: a duplicate.
    again = enqueue_trigger(trigger_body("lead.submitted", "L-2", match_keys={"email": "c@d.co"}))
    set_trigger(again.trigger_id, event_id=PIXEL_ID)
    run_worker([again.trigger_id])
    assert simulator.count_events(include_duplicates=True) == 1
    (original,) = stored()
    assert original.trigger_id == first.trigger_id
    row = trigger_row(again.trigger_id)
    assert row.status == TriggerStatus.RESOLVED
    assert row.error == (
        f"event Lead with event_id {PIXEL_ID!r} is already in the outbox as postback "
        f"{original.id} (delivered): TikTok has it; not stored again"
    )


def test_the_same_caller_id_twice_in_one_batch_is_stored_once(
    any_db: str, simulator: SimulatorControl, make_event_set: Callable[..., int]
) -> None:
    make_event_set(mappings=TWO_EVENTS)
    ids = [
        enqueue_trigger(
            trigger_body("lead.submitted", f"L-{n}", match_keys={"email": f"{n}@b.co"})
        ).trigger_id
        for n in range(3)
    ]
    for trigger_id in ids[:2]:
        set_trigger(trigger_id, event_id=PIXEL_ID)
    result = run_worker(ids)
    assert result["triggers"] == 3 and result["postbacks"] == 2
    assert [p.trigger_id for p in stored()] == [ids[0], ids[2]]
    assert simulator.count_events(include_duplicates=True) == 2
    note = trigger_row(ids[1]).error or ""
    assert f"is also made by trigger {ids[0]} of the same run" in note
    assert trigger_row(ids[0]).error is None


def test_a_row_another_worker_stored_meanwhile_is_left_out_of_the_insert_and_the_request(
    any_db: str, simulator: SimulatorControl, make_event_set: Callable[..., int]
) -> None:
    """The pre-check saw nothing; another worker committed the same event before this INSERT
    (simulated in the same transaction): ON CONFLICT DO NOTHING, no crash, nothing sent."""
    make_event_set(mappings=TWO_EVENTS)
    first = enqueue_trigger(trigger_body("lead.submitted", "L-1", match_keys={"email": "a@b.co"}))
    again = enqueue_trigger(trigger_body("lead.submitted", "L-2", match_keys={"email": "c@d.co"}))
    keep = enqueue_trigger(trigger_body("lead.submitted", "L-3", match_keys={"email": "e@f.co"}))
    set_trigger(first.trigger_id, event_id=PIXEL_ID)
    set_trigger(again.trigger_id, event_id=PIXEL_ID)
    settings = get_settings()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        now = utcnow()
        other = processing.resolve_triggers(session, [first.trigger_id], settings, now)
        processing.insert_reserved(session, other, settings, now)
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        now = utcnow()
        resolved = processing.resolve_triggers(
            session, [again.trigger_id, keep.trigger_id], settings, now
        )
        # As if the other worker's INSERT landed between this pre-check and this INSERT.
        session.execute(
            update(Postback)
            .where(Postback.trigger_id == first.trigger_id)
            .values(event_id="moved-away")
        )
        for row in resolved.new_postbacks:
            if row.trigger_id == again.trigger_id:
                row.values["event_id"] = "moved-away"
        batches = processing.insert_claimed(session, resolved, settings, now)
        session.commit()
    assert [item.lead_ref for batch in batches for item in batch.items] == ["L-3"]
    assert [p.trigger_id for p in stored()] == [first.trigger_id, keep.trigger_id]
    assert "is already in the outbox as postback" in (trigger_row(again.trigger_id).error or "")


def test_two_workers_resolving_the_same_caller_id_at_once_store_and_send_it_once(
    pg_db: str, simulator: SimulatorControl, make_event_set: Callable[..., int]
) -> None:
    """PostgreSQL, two sessions: both pass the pre-check, then both insert; the second INSERT
    waits for the first's commit and inserts nothing (ON CONFLICT DO NOTHING)."""
    make_event_set(mappings=TWO_EVENTS)
    ids = []
    for n in range(2):
        accepted = enqueue_trigger(
            trigger_body("lead.submitted", f"L-{n}", match_keys={"email": f"{n}@b.co"})
        )
        set_trigger(accepted.trigger_id, event_id=PIXEL_ID)
        ids.append(accepted.trigger_id)
    settings = get_settings()
    checked = threading.Barrier(2, timeout=20)
    sent: list[OutgoingBatch] = []
    errors: list[BaseException] = []

    def work(trigger_id: int) -> None:
        try:
            with session_scope(workspace=ALL_WORKSPACES) as session:
                now = utcnow()
                resolved = processing.resolve_triggers(session, [trigger_id], settings, now)
                checked.wait()
                sent.extend(processing.insert_claimed(session, resolved, settings, now))
                session.commit()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(trigger_id,)) for trigger_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    _send_and_record(sent)
    assert sum(len(batch.items) for batch in sent) == 1
    (row,) = stored()
    assert row.status == PostbackStatus.DELIVERED
    loser = next(i for i in ids if i != row.trigger_id)
    assert "is already in the outbox as postback" in (trigger_row(loser).error or "")
    assert simulator.count_events(include_duplicates=True) == 1


@pytest.mark.integration
@on_both_brokers
@through_pgbouncer
def test_real_workers_send_a_repeated_caller_id_once(
    start_worker: Callable[..., WorkerProcess],
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
) -> None:
    make_event_set(mappings=TWO_EVENTS)
    start_worker()
    start_worker(beat=False)
    for n in range(30):
        enqueue_trigger(
            trigger_body(
                "lead.submitted",
                f"L-{n}",
                match_keys={"email": f"{n}@b.co"},
                event_id=PIXEL_ID if n % 2 else f"own-{n}",
            )
        )
    simulator.wait_for_events(16, timeout=40)

    def settled() -> bool:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            open_ = session.scalars(
                select(Trigger.id).where(
                    Trigger.status.in_((TriggerStatus.RECEIVED, TriggerStatus.WAITING_FOR_LEAD))
                )
            ).all()
            return not open_

    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while not settled() and datetime.now(UTC) < deadline:
        threading.Event().wait(0.2)
    rows = stored()
    assert len(rows) == 16  # 15 own ids and the Pixel id once
    assert simulator.count_events(include_duplicates=True) == 16
    with session_scope(workspace=ALL_WORKSPACES) as session:
        notes = session.scalars(select(Trigger.error).where(Trigger.error.is_not(None))).all()
    assert len(notes) == 14 and all(
        # Taken by an earlier run, or by another trigger of the same run: either way one row.
        "is already in the outbox as postback" in (n or "") or "of the same run" in (n or "")
        for n in notes
    )


# --- payload from the lead's stored keys ---------------------------------------------------


def test_a_lead_with_only_a_tiktok_lead_id_goes_without_user(
    any_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> None:
    make_event_set()
    enqueue_trigger(trigger_body("lead.submitted", "L-1", match_keys={"tiktok_lead_id": "7311"}))
    (event,) = simulator.events()
    payload = event["payload"]
    assert payload["lead"] == {"lead_id": "7311", "lead_event_source": "crm-postback"}
    assert "user" not in payload
    assert payload["limited_data_use"] is False
    (row,) = stored()
    assert row.match_key_mask == MatchKeyKind.LEAD_ID


def test_a_web_lead_carries_page_and_locale_a_crm_lead_does_not(
    any_db: str, simulator: SimulatorControl, make_event_set: Callable[..., int]
) -> None:
    simulator.register_event_set("7300000000000000555", "web-token", kind="web")
    make_event_set()
    make_event_set(name="shop", source_id="7300000000000000555", token="web-token", kind="web")
    ids = []
    for event_set in ("acme", "shop"):
        accepted = enqueue_trigger(
            {
                **trigger_body("lead.submitted", f"L-{event_set}", match_keys={"email": "a@b.co"}),
                "event_set": event_set,
            }
        )
        ids.append(accepted.trigger_id)
        set_lead(
            f"L-{event_set}",
            locale="de-DE",
            page_url="https://shop.example/landing",
            page_referrer="https://www.tiktok.com/",
            first_name_hash="a" * 64,
            zip_code_hash="b" * 64,
        )
    run_worker(ids)
    by_source = {e["event_source"]: e["payload"] for e in simulator.events()}
    web, crm = by_source["web"], by_source["crm"]
    assert web["page"] == {
        "url": "https://shop.example/landing",
        "referrer": "https://www.tiktok.com/",
    }
    assert web["user"]["locale"] == "de-DE"
    assert "page" not in crm and "locale" not in crm["user"]
    for payload in (web, crm):
        assert payload["user"]["first_name"] == "a" * 64
        assert payload["user"]["zip_code"] == "b" * 64
    masks = {p.lead_ref: MatchKeyKind(p.match_key_mask or 0) for p in stored()}
    assert MatchKeyKind.PAGE_URL in masks["L-shop"] and MatchKeyKind.LOCALE in masks["L-shop"]
    assert MatchKeyKind.PAGE_URL not in masks["L-acme"]
    assert MatchKeyKind.FIRST_NAME | MatchKeyKind.EMAIL in masks["L-acme"]


@pytest.mark.parametrize(
    ("trigger_value", "lead_value", "set_value", "sent"),
    [(None, None, True, True), (None, False, True, False), (True, False, False, True)],
)
def test_limited_data_use_trigger_over_lead_over_event_set(
    any_db: str,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
    trigger_value: bool | None,
    lead_value: bool | None,
    set_value: bool,
    sent: bool,
) -> None:
    make_event_set(limited_data_use=set_value)
    accepted = enqueue_trigger(
        trigger_body("lead.submitted", "L-1", match_keys={"email": "a@b.co"})
    )
    set_trigger(accepted.trigger_id, limited_data_use=trigger_value)
    set_lead("L-1", limited_data_use=lead_value)
    run_worker([accepted.trigger_id])
    (event,) = simulator.events()
    assert event["payload"]["limited_data_use"] is sent


def test_an_event_without_an_identifying_key_ends_no_match_key_with_the_reason(
    any_db: str, simulator: SimulatorControl, make_event_set: Callable[..., int]
) -> None:
    make_event_set()
    accepted = enqueue_trigger(
        trigger_body("lead.submitted", "L-1", match_keys={"email": "a@b.co"})
    )
    # The lead's only identifying key is gone (say, dropped at the door); names remain.
    set_lead("L-1", email_hashes=[], first_name_hash="a" * 64, city_hash="c" * 64)
    run_worker([accepted.trigger_id])
    assert simulator.count_events() == 0
    (row,) = stored()
    assert row.status == PostbackStatus.NO_MATCH_KEY
    assert row.payload is None and row.next_attempt_at is None
    assert row.last_message is not None
    assert "no email, phone, external_id, ttclid or tiktok_lead_id" in row.last_message
    assert "first_name, city" in row.last_message
    mask = MatchKeyKind(row.match_key_mask or 0)
    assert not mask & IDENTIFYING and MatchKeyKind.FIRST_NAME in mask
    assert trigger_row(accepted.trigger_id).status == TriggerStatus.RESOLVED
