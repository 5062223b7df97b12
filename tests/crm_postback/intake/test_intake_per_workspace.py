"""Intake and delivery per workspace: a lead is (workspace, lead id), an event set of another
workspace is an unknown one, idempotency keys are per workspace, and every event carries only
its own workspace's match keys. On SQLite and PostgreSQL, through the in-process worker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_postback.api import enqueue_trigger, enqueue_triggers, upsert_lead_keys
from crm_postback.configuration.workspaces import add_workspace
from crm_postback.core.errors import InputRejected
from crm_postback.core.privacy import hash_email
from crm_postback.intake.trigger_intake import UNKNOWN_EVENT_SET
from crm_postback.observability import metric_definitions
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, Lead, Postback, Trigger
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID  # type: ignore[import-not-found]

B_SOURCE_ID = "7300000000000000002"
B_TOKEN = "test-token-workspace-b-987654"


@dataclass(frozen=True)
class Workspaces:
    a: int  # the default workspace, event set "acme"
    b: int  # workspace "b", event set "beta"


@pytest.fixture(params=["sqlite_db", "pg_db"])
def two_workspaces(
    request: pytest.FixtureRequest,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
) -> Workspaces:
    request.getfixturevalue(request.param)
    make_event_set()
    simulator.register_event_set(B_SOURCE_ID, B_TOKEN, kind="crm", advertiser_id="7000000002")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        b = add_workspace(session, "b").id
        session.commit()
    make_event_set(
        "beta",
        B_SOURCE_ID,
        B_TOKEN,
        ({"trigger_type": "lead.submitted", "event_name": "Lead"},),
        workspace_id=b,
    )
    return Workspaces(DEFAULT_WORKSPACE_ID, b)


def submitted(event_set: str, lead: str = "L-1001", **extra: Any) -> dict[str, Any]:
    return {
        "type": "lead.submitted",
        "lead_id": lead,
        "event_set": event_set,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        **extra,
    }


def user_of(event: dict[str, Any]) -> dict[str, Any]:
    user: dict[str, Any] = event["payload"]["user"]
    return user


def test_the_same_lead_id_in_two_workspaces_is_two_leads(
    two_workspaces: Workspaces, simulator: SimulatorControl
) -> None:
    enqueue_trigger(
        submitted("acme", match_keys={"email": "a@example.com", "ttclid": "E.C.P.a"}),
    )
    enqueue_trigger(
        submitted("beta", match_keys={"email": "b@example.com", "ttclid": "E.C.P.b"}),
        workspace="b",
    )
    [event_a] = simulator.wait_for_events(1, event_source_id=EVENT_SET_ID)
    [event_b] = simulator.wait_for_events(1, event_source_id=B_SOURCE_ID)

    assert user_of(event_a)["email"] == [hash_email("a@example.com")]
    assert user_of(event_a)["ttclid"] == "E.C.P.a"
    assert user_of(event_b)["email"] == [hash_email("b@example.com")]
    assert user_of(event_b)["ttclid"] == "E.C.P.b"
    with session_scope(workspace=ALL_WORKSPACES) as session:
        leads = {
            lead.workspace_id: lead
            for lead in session.scalars(select(Lead).where(Lead.lead_ref == "L-1001"))
        }
    assert set(leads) == {two_workspaces.a, two_workspaces.b}
    assert leads[two_workspaces.a].email_hashes == [hash_email("a@example.com")]
    assert leads[two_workspaces.b].email_hashes == [hash_email("b@example.com")]


def test_keys_put_in_one_workspace_reach_only_its_events(
    two_workspaces: Workspaces, simulator: SimulatorControl
) -> None:
    """The attack of the issue: another workspace's PUT of a ttclid for `L-1001` must not
    reach this workspace's next event for its `L-1001`."""
    enqueue_trigger(submitted("acme", match_keys={"ttclid": "E.C.P.victim"}))
    simulator.wait_for_events(1, event_source_id=EVENT_SET_ID)
    upsert_lead_keys(
        "L-1001", {"ttclid": "E.C.P.attacker", "email": "x@example.com"}, workspace="b"
    )
    enqueue_trigger(
        submitted("acme", idempotency_key="second", match_keys={"phone": "+12133734253"})
    )
    events = simulator.wait_for_events(2, event_source_id=EVENT_SET_ID)
    for event in events:
        assert user_of(event)["ttclid"] == "E.C.P.victim"
        assert hash_email("x@example.com") not in user_of(event).get("email", [])


def test_an_event_set_of_another_workspace_is_an_unknown_event_set(
    two_workspaces: Workspaces,
) -> None:
    with pytest.raises(InputRejected) as other:
        enqueue_trigger(submitted("acme"), workspace="b")
    with pytest.raises(InputRejected) as nowhere:
        enqueue_trigger(submitted("no-such-set"), workspace="b")
    with pytest.raises(InputRejected) as by_source_id:
        enqueue_trigger(submitted(EVENT_SET_ID), workspace="b")
    assert other.value.errors == nowhere.value.errors == by_source_id.value.errors
    assert [(e.field, e.message) for e in other.value.errors] == [("event_set", UNKNOWN_EVENT_SET)]
    [item] = enqueue_triggers([submitted("acme")], workspace="b")
    assert item.accepted is None
    assert [(e.field, e.message) for e in item.errors] == [("event_set", UNKNOWN_EVENT_SET)]
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.scalar(select(func.count()).select_from(Trigger)) == 0


def test_the_intake_counts_triggers_by_workspace(two_workspaces: Workspaces) -> None:
    def received(workspace: str, result: str) -> float:
        labels = {"workspace": workspace, "result": result}
        value = metric_definitions.metrics().registry.get_sample_value(
            "postback_triggers_received_total", labels
        )
        return value or 0.0

    counted = [(w, r) for w in ("default", "b") for r in ("accepted", "rejected")]
    before = {key: received(*key) for key in counted}
    enqueue_trigger(submitted("beta", idempotency_key="k-b"), workspace="b")
    with pytest.raises(InputRejected):
        enqueue_trigger(submitted("acme"), workspace="b")  # another workspace's event set
    with pytest.raises(InputRejected):
        enqueue_trigger({"type": "lead.submitted"}, workspace="b")  # invalid before any lookup
    enqueue_trigger(submitted("acme", idempotency_key="k-a"))
    after = {key: received(*key) - before[key] for key in counted}
    assert after == {
        ("default", "accepted"): 1,
        ("default", "rejected"): 0,
        ("b", "accepted"): 1,
        ("b", "rejected"): 2,
    }


def test_an_idempotency_key_is_per_workspace(
    two_workspaces: Workspaces, simulator: SimulatorControl
) -> None:
    key = "crm-4711"
    in_a = enqueue_trigger(submitted("acme", idempotency_key=key, match_keys={"ttclid": "A"}))
    in_b = enqueue_trigger(
        submitted("beta", idempotency_key=key, match_keys={"ttclid": "B"}), workspace="b"
    )
    again = enqueue_trigger(submitted("beta", idempotency_key=key), workspace="b")
    assert not in_a.duplicate and not in_b.duplicate and in_a.trigger_id != in_b.trigger_id
    assert again.duplicate and again.trigger_id == in_b.trigger_id
    simulator.wait_for_events(1, event_source_id=EVENT_SET_ID)
    simulator.wait_for_events(1, event_source_id=B_SOURCE_ID)


def test_sources_of_one_workspace_share_its_leads(
    two_workspaces: Workspaces, simulator: SimulatorControl
) -> None:
    """The routing system posts the trigger, the landing pages add the TikTok click id: one
    lead of the workspace, whose event carries both."""
    upsert_lead_keys("L-1001", {"ttclid": "E.C.P.landing"}, workspace="b")
    enqueue_trigger(submitted("beta", match_keys={"email": "b@example.com"}), workspace="b")
    [event] = simulator.wait_for_events(1, event_source_id=B_SOURCE_ID)
    assert user_of(event)["ttclid"] == "E.C.P.landing"
    assert user_of(event)["email"] == [hash_email("b@example.com")]
    with session_scope(workspace=two_workspaces.b) as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 1
    with session_scope(workspace=two_workspaces.a) as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 0


def test_many_threads_enqueueing_into_two_workspaces_keep_each_trigger_in_its_own(
    two_workspaces: Workspaces, simulator: SimulatorControl
) -> None:
    """Concurrent callers share group commits, one per workspace: no trigger, lead or
    postback lands in the other workspace."""
    errors: list[BaseException] = []
    per_thread = 10

    def send(thread: int) -> None:
        workspace, event_set = ("b", "beta") if thread % 2 else ("default", "acme")
        try:
            for n in range(per_thread):
                lead = f"L-{thread}-{n}"
                enqueue_trigger(
                    submitted(event_set, lead, match_keys={"email": f"{workspace}-{lead}@x.co"}),
                    workspace=workspace,
                )
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    total = 8 * per_thread
    simulator.wait_for_events(total // 2, timeout=60, event_source_id=EVENT_SET_ID)
    simulator.wait_for_events(total // 2, timeout=60, event_source_id=B_SOURCE_ID)
    ws = {"default": two_workspaces.a, "b": two_workspaces.b}
    with session_scope(workspace=ALL_WORKSPACES) as session:
        for model in (Trigger, Postback):
            rows = session.scalars(select(model)).all()
            assert len(rows) == total
            for row in rows:
                thread = int(row.lead_ref.split("-")[1])
                assert row.workspace_id == (ws["b"] if thread % 2 else ws["default"])
        for lead in session.scalars(select(Lead)):
            thread = int(lead.lead_ref.split("-")[1])
            name = "b" if thread % 2 else "default"
            assert lead.workspace_id == ws[name]
            assert lead.email_hashes == [hash_email(f"{name}-{lead.lead_ref}@x.co")]
