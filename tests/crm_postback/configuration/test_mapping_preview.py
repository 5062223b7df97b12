"""Preview: the exact request TikTok would get, for saved and unsaved mappings, storing nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_postback.api import enqueue_trigger
from crm_postback.configuration.event_set_service import get_event_set, update_event_set
from crm_postback.configuration.mapping_preview import DraftMapping, Preview, preview
from crm_postback.core.errors import InputRejected
from crm_postback.core.privacy import sha256_hex
from crm_postback.core.settings import get_settings
from crm_postback.simulator import SimulatorControl
from models import AuditEntry, Lead, Mapping, Postback, Trigger
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID  # type: ignore[import-not-found]

OCCURRED = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0).isoformat()
SUBMITTED = {
    "type": "lead.submitted",
    "lead_id": "L-1",
    "occurred_at": OCCURRED,
    "match_keys": {"email": "Jane@Example.com", "ttclid": "E.C.P.1", "tiktok_lead_id": "7311"},
}
SOLD = {
    "type": "lead.sold",
    "lead_id": "L-1",
    "occurred_at": OCCURRED,
    "attributes": {"value": 42.5, "buyer_id": "B17"},
}


def run(draft: DraftMapping | None = None, **kwargs: Any) -> Preview:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return preview(
            session, get_settings(), get_event_set(session, "acme"), draft=draft, **kwargs
        )


def counts() -> tuple[int, ...]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Lead, Trigger, Postback, Mapping, AuditEntry)
        )


@pytest.fixture
def acme(sqlite_db: str, make_event_set: Callable[..., int]) -> int:
    return make_event_set(lead_event_source="AcmeLeads")


def test_preview_is_exactly_what_the_simulator_then_receives(
    acme: int, simulator: SimulatorControl, eager: None
) -> None:
    shown = run(trigger=SUBMITTED)
    assert shown.request is not None and shown.unmapped is None and shown.lead_known
    [event] = shown.request["data"]
    assert event["user"]["email"] == [sha256_hex("jane@example.com")]
    assert "Jane@Example.com" not in str(shown.as_dict())
    enqueue_trigger({**SUBMITTED, "event_set": "acme"})
    [received] = simulator.events()
    assert received["payload"] == event
    assert shown.request["event_source_id"] == EVENT_SET_ID
    assert shown.request["event_source"] == "crm"
    # A stored trigger previews to the same bytes too.
    with session_scope(workspace=ALL_WORKSPACES) as session:
        trigger_id = session.scalars(select(Trigger.id)).one()
    assert run(trigger_id=trigger_id).request == shown.request


def test_preview_stores_nothing(acme: int) -> None:
    before = counts()
    run(trigger=SUBMITTED)
    run(trigger=SOLD, draft=DraftMapping("lead.sold", "Purchase"))
    assert counts() == before


def test_stored_lead_keys_are_used(acme: int, simulator: SimulatorControl, eager: None) -> None:
    enqueue_trigger({**SUBMITTED, "event_set": "acme"})
    shown = run(trigger=SOLD)
    [event] = shown.request["data"]  # type: ignore[index]
    assert event["event"] == "lead_sold"
    assert event["properties"] == {"value": 42.5, "currency": "USD"}
    assert event["user"]["ttclid"] == "E.C.P.1"
    assert event["lead"] == {"lead_id": "7311", "lead_event_source": "AcmeLeads"}


def test_unsaved_mapping_replaces_the_saved_one(acme: int) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        sold = session.scalars(select(Mapping).where(Mapping.trigger_type == "lead.sold")).one()
        sold_id, sold_version = sold.id, sold.version
    draft = DraftMapping(
        "lead.sold",
        "Purchase",
        conditions=[{"attribute": "buyer_id", "op": "eq", "value": "B17"}],
        properties={"currency": "EUR", "order_id_from": "buyer_id"},
        replaces=sold_id,
    )
    shown = run(trigger={**SOLD, "match_keys": {"ttclid": "x"}}, draft=draft)
    [event] = shown.events
    assert event.draft and event.mapping_id == sold_id and event.mapping_version == sold_version + 1
    assert event.event is not None
    assert event.event["event"] == "Purchase"
    assert event.event["properties"] == {"value": 42.5, "currency": "EUR", "order_id": "B17"}
    # the condition does not hold for another buyer: unmapped, with the reason
    other = run(
        trigger={**SOLD, "attributes": {"buyer_id": "B2"}, "match_keys": {"ttclid": "x"}},
        draft=draft,
    )
    assert other.request is None
    assert other.unmapped == "1 mapping(s) for 'lead.sold', none matched: buyer_id == \"B17\""
    assert other.checks[0].failed_conditions == ['buyer_id == "B17"']


def test_new_draft_is_added_and_shown_as_draft(acme: int) -> None:
    shown = run(
        trigger={**SUBMITTED, "attributes": {"form": "A"}},
        draft=DraftMapping("lead.submitted", "Contact"),
    )
    assert [(e.event_name, e.draft, e.mapping_id) for e in shown.events] == [
        ("Lead", False, 1),
        ("Contact", True, None),
    ]
    assert [e["event"] for e in shown.request["data"]] == ["Lead", "Contact"]  # type: ignore[index]


def test_problems_are_explained(acme: int) -> None:
    # unknown lead, no keys: would wait for the lead
    shown = run(trigger={**SOLD, "lead_id": "L-unknown"})
    assert shown.request is None
    assert "would wait for the lead" in (shown.events[0].error or "")
    # value without any currency
    with session_scope(workspace=ALL_WORKSPACES) as session:
        update_event_set(
            session, get_event_set(session, "acme"), actor="t", test_event_code="TEST1"
        )
        session.commit()
    shown = run(
        trigger={**SOLD, "match_keys": {"ttclid": "x"}},
        draft=DraftMapping("lead.sold", "lead_sold", replaces=2),
    )
    assert "needs a currency" in (shown.events[0].error or "")
    assert any("test_event_code 'TEST1'" in note for note in shown.notes)


def test_a_property_reading_a_missing_attribute_is_a_note(acme: int) -> None:
    """It was dropped silently: the event went without `properties`, and no note said so."""
    shown = run(
        trigger={**SOLD, "match_keys": {"ttclid": "x"}},
        draft=DraftMapping(
            "lead.sold",
            "lead_sold",
            properties={"value_from": "payout", "currency": "USD"},
            replaces=2,
        ),
    )
    [event] = shown.events
    assert event.error is None and event.event is not None
    assert "properties" not in event.event
    [note] = [note for note in shown.notes if "payout" in note]
    assert note.startswith("lead_sold (the edited mapping): property value reads attribute")
    assert "payout" in " ".join(shown.as_dict()["notes"])
    # Saved, the same mapping is named by its id.
    with session_scope(workspace=ALL_WORKSPACES) as session:
        mapping = session.get(Mapping, 2)
        assert mapping is not None
        mapping.properties = {"value_from": "payout", "currency": "USD"}
        mapping.version += 1
        session.commit()
    shown = run(trigger={**SOLD, "match_keys": {"ttclid": "x"}})
    assert any(note.startswith("lead_sold (mapping 2): property value") for note in shown.notes)


def test_bad_input_and_bad_drafts_are_rejected_by_field(acme: int) -> None:
    with pytest.raises(InputRejected) as caught:
        run(trigger={"type": "Lead Sold", "lead_id": "L-1"})
    assert caught.value.errors[0].field == "trigger.type"
    with pytest.raises(InputRejected) as caught:
        run(trigger=SOLD, draft=DraftMapping("lead.sold", "purchase"))
    assert caught.value.errors[0].field == "event"
    with pytest.raises(InputRejected):
        run()


FULL = {
    **SUBMITTED,
    "event_id": "pixel-evt-1",
    "limited_data_use": True,
    "match_keys": {
        **SUBMITTED["match_keys"],  # type: ignore[dict-item]
        "first_name": " Jane ",
        "last_name": "Doe",
        "city": "Los Angeles",
        "state": "CA",
        "country": "US",
        "zip_code": "90001",
        "phone": "+2132435345",
    },
}


def test_preview_of_every_key_is_exactly_what_the_simulator_then_receives(
    acme: int, simulator: SimulatorControl, eager: None
) -> None:
    """Names, address parts, the caller's event id and limited data use come out as the
    worker sends them; the key the door drops is a note, not a refusal."""
    shown = run(trigger=FULL)
    [event] = shown.request["data"]  # type: ignore[index]
    assert event["event_id"] == "pixel-evt-1" and event["limited_data_use"] is True
    assert {"first_name", "last_name", "city", "state", "country", "zip_code"} <= event[
        "user"
    ].keys()
    assert "phone" not in event["user"]
    assert any(note.startswith("match_keys.phone:") for note in shown.notes)
    for raw in ("Jane", "Los Angeles", "90001", "2132435345"):
        assert raw not in str(shown.as_dict())
    enqueue_trigger({**FULL, "event_set": "acme"})
    [received] = simulator.events()
    assert received["payload"] == event
    # The stored lead previews the same keys; a stored trigger keeps its event id.
    with session_scope(workspace=ALL_WORKSPACES) as session:
        trigger_id = session.scalars(select(Trigger.id)).one()
    assert run(trigger_id=trigger_id).request == shown.request


def test_preview_says_a_withdrawn_lead_gets_nothing(
    acme: int, simulator: SimulatorControl, eager: None
) -> None:
    from crm_postback.api import withdraw_consent

    enqueue_trigger({**SUBMITTED, "event_set": "acme"})
    withdraw_consent("L-1")
    shown = run(trigger=SOLD)
    assert any("withdrew consent" in note for note in shown.notes)
