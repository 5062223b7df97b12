"""After a lead withdrew consent, no new key of it is stored, and every answer says so.

Through the Python API and HTTP, on SQLite and PostgreSQL: keys sent with a trigger or an
upsert leave the lead's row as it was (names, page and limited_data_use too), the answer
carries a warning naming the field and never the value, and a keyless trigger of the lead is
answered with a warning that nothing is sent for it. A withdrawal racing a stream of upserts
never lets a key answered "not stored" into the row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.api import enqueue_trigger, enqueue_triggers, upsert_lead_keys, withdraw_consent
from crm_postback.core.privacy import sha256_hex
from crm_postback.intake.lead_keys import LEAD_KEY_COLUMNS
from crm_postback.simulator import SimulatorControl
from crm_postback.web.app import create_app
from models import Lead, Postback, PostbackStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import trigger_body  # type: ignore[import-not-found]
from tests.crm_postback.web.conftest import bearer, new_key  # type: ignore[import-not-found]

NEW_KEYS: dict[str, Any] = {
    "email": "late.Address@Example.org",
    "phone": "+1 415 555 0188",
    "external_id": "crm-late-1",
    "ttclid": "E.C.P.late-click",
    "first_name": "Latecomer",
    "zip_code": "94110",
    "locale": "en-US",
    "page": {"url": "https://shop.example/late-page"},
}
RAW = ("late.address", "4155550188", "crm-late-1", "late-click", "Latecomer", "94110", "late-page")
KEYS_WARNING = ("match_keys", "the lead withdrew consent; keys not stored")
TRIGGER_WARNING = ("lead_id", "the lead withdrew consent; nothing is sent for this trigger")


@pytest.fixture
def ready(
    any_db: str, simulator: SimulatorControl, eager: None, make_event_set: Callable[..., int]
) -> SimulatorControl:
    make_event_set()
    return simulator


def keys_of(lead_ref: str) -> dict[str, Any]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        lead = session.scalars(select(Lead).where(Lead.lead_ref == lead_ref)).one()
        return {name: getattr(lead, name) for name in LEAD_KEY_COLUMNS}


def withdrawn_lead(lead_ref: str = "L-1") -> dict[str, Any]:
    enqueue_trigger(trigger_body("lead.submitted", lead_ref, match_keys={"email": "a@example.com"}))
    withdraw_consent(lead_ref)
    return keys_of(lead_ref)


def pairs(warnings: Any) -> list[tuple[str, str]]:
    return [(w.field, w.message) for w in warnings]


def test_trigger_keys_of_a_withdrawn_lead_are_not_stored(ready: SimulatorControl) -> None:
    before = withdrawn_lead()
    accepted = enqueue_trigger(
        trigger_body("lead.sold", "L-1", attributes={"value": 3}, match_keys=NEW_KEYS)
    )
    assert pairs(accepted.warnings) == [KEYS_WARNING, TRIGGER_WARNING]
    assert keys_of("L-1") == before
    assert before["email_hashes"] == [sha256_hex("a@example.com")]
    assert not any(raw in str(accepted) for raw in RAW)
    # A key that did not normalise is named as before (nothing was left to refuse).
    bad = enqueue_trigger(
        trigger_body("lead.sold", "L-1", idempotency_key="k2", match_keys={"phone": "12"})
    )
    assert [w.field for w in bad.warnings] == ["match_keys.phone", "lead_id"]
    assert bad.dropped_keys == ("phone",)
    assert keys_of("L-1") == before
    with session_scope(workspace=ALL_WORKSPACES) as session:
        statuses = set(session.scalars(select(Postback.status).where(Postback.lead_ref == "L-1")))
    assert statuses == {PostbackStatus.DELIVERED, PostbackStatus.CONSENT_WITHDRAWN}
    assert ready.count_events() == 1  # the first trigger's, before the withdrawal


def test_a_keyless_trigger_of_a_withdrawn_lead_is_answered_with_a_warning(
    ready: SimulatorControl,
) -> None:
    withdrawn_lead()
    accepted = enqueue_trigger(trigger_body("lead.sold", "L-1", attributes={"value": 3}))
    assert pairs(accepted.warnings) == [TRIGGER_WARNING]
    fresh = enqueue_trigger(trigger_body("lead.sold", "L-2", attributes={"value": 3}))
    assert fresh.warnings == ()


def test_in_one_batch_only_the_withdrawn_leads_keys_are_refused(ready: SimulatorControl) -> None:
    before = withdrawn_lead("L-1")
    enqueue_trigger(trigger_body("lead.submitted", "L-2", match_keys={"email": "b@example.com"}))
    items = enqueue_triggers(
        [
            trigger_body("lead.sold", "L-1", match_keys={"phone": "+14155550188"}),
            trigger_body("lead.sold", "L-2", match_keys={"phone": "+14155550188"}),
            trigger_body("lead.submitted", "L-3", match_keys={"phone": "+14155550188"}),
            trigger_body("lead.qualified", "L-1"),
        ]
    )
    assert [pairs(item.warnings) for item in items] == [
        [KEYS_WARNING, TRIGGER_WARNING],
        [],
        [],
        [TRIGGER_WARNING],
    ]
    assert keys_of("L-1") == before
    phone = sha256_hex("+14155550188")
    assert keys_of("L-2")["phone_hashes"] == [phone] and keys_of("L-3")["phone_hashes"] == [phone]


def test_a_large_batch_with_repeats_names_exactly_the_withdrawn_leads_triggers(
    ready: SimulatorControl,
) -> None:
    # Past the size where PostgreSQL gets the array form of the insert; the repeats are
    # answered from the read-back of the stored rows, which must say the same.
    withdrawn_lead("L-1")
    batch = [
        trigger_body("lead.sold", "L-1" if n % 3 == 0 else f"L-{n + 100}", idempotency_key=f"k{n}")
        for n in range(80)
    ]
    first = enqueue_triggers(batch)
    again = enqueue_triggers([*batch[:40], trigger_body("lead.sold", "L-1", idempotency_key="n")])
    expected = [[TRIGGER_WARNING] if n % 3 == 0 else [] for n in range(80)]
    assert [pairs(item.warnings) for item in first] == expected
    assert [pairs(item.warnings) for item in again] == [*expected[:40], [TRIGGER_WARNING]]
    assert [item.accepted.duplicate for item in again if item.accepted] == [True] * 40 + [False]


def test_an_upsert_for_a_withdrawn_lead_stores_nothing(ready: SimulatorControl) -> None:
    before = withdrawn_lead()
    answer = upsert_lead_keys("L-1", NEW_KEYS, limited_data_use=True)
    assert pairs(answer.warnings) == [KEYS_WARNING]
    assert answer.stored is False
    assert keys_of("L-1") == before
    assert not any(raw in str(answer) for raw in RAW)
    # Another lead is not affected.
    assert upsert_lead_keys("L-2", NEW_KEYS).warnings == ()
    assert keys_of("L-2")["first_name_hash"] == sha256_hex("latecomer")


def test_http_answers_carry_the_warning_and_store_nothing(ready: SimulatorControl) -> None:
    key = new_key("router")
    with TestClient(create_app()) as api:
        before = withdrawn_lead()
        answer = api.put("/v1/leads/L-1", json={"match_keys": NEW_KEYS}, headers=bearer(key))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "nothing_stored"
        assert [(w["field"], w["message"]) for w in body["warnings"]] == [KEYS_WARNING]
        posted = api.post(
            "/v1/triggers",
            json=trigger_body("lead.sold", "L-1", match_keys=NEW_KEYS),
            headers=bearer(key),
        )
        assert posted.status_code == 202, posted.text
        [item] = posted.json()["items"]
        assert [(w["field"], w["message"]) for w in item["warnings"]] == [
            KEYS_WARNING,
            TRIGGER_WARNING,
        ]
        for text in (answer.text, posted.text):
            assert not any(raw in text for raw in RAW)
    assert keys_of("L-1") == before


def test_a_withdrawal_racing_upserts_never_stores_a_key_answered_not_stored(
    ready: SimulatorControl,
) -> None:
    enqueue_trigger(trigger_body("lead.submitted", "L-1", match_keys={"email": "a@example.com"}))
    barrier = threading.Barrier(2)
    answers: dict[str, bool] = {}

    def upserts() -> None:
        barrier.wait()
        for n in range(60):
            external_id = f"crm-race-{n}"
            answers[external_id] = upsert_lead_keys("L-1", {"external_id": external_id}).stored

    def withdraw() -> None:
        barrier.wait()
        withdraw_consent("L-1")

    threads = [threading.Thread(target=upserts), threading.Thread(target=withdraw)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stored_hashes = set(keys_of("L-1")["external_id_hashes"])
    refused = {sha256_hex(ref) for ref, stored in answers.items() if not stored}
    assert len(answers) == 60 and refused, "the withdrawal came after every upsert"
    assert not stored_hashes & refused
    # Once refused, every later upsert is refused too: the withdrawal is never undone.
    order = list(answers.values())
    assert order == sorted(order, reverse=True)
