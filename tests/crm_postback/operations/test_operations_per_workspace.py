"""Operations per workspace: erase-lead, the retention purge, diagnostics and the lead history
touch and count only their workspace's rows, though both workspaces have a lead `L-1001`; the
history shows no raw IP address or user agent. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_postback.api import enqueue_trigger
from crm_postback.commands.erase_lead import EraseLead, erase_lead
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration.workspaces import add_workspace
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings
from crm_postback.observability import metric_definitions
from crm_postback.operations.diagnostics import diagnose, diagnose_all
from crm_postback.operations.postback_reports import (
    PRESENT,
    find_lead_history,
    lead_history,
    masked_ip,
)
from crm_postback.operations.retention import count_expired, purge_batch, retention_cutoff
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, EventSet, Lead, Postback, Trigger, utcnow
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from worker import retention_tasks

B_SOURCE_ID = "7300000000000000002"
B_TOKEN = "test-token-workspace-b-987654"
RAW_IP = "203.0.113.77"
RAW_UA = "Mozilla/5.0 (X11; Linux x86_64) WorkspaceAgent/9.1"


@dataclass(frozen=True)
class Workspaces:
    a: int  # the default workspace, event set "acme"
    b: int  # workspace "b", event set "beta"
    a_set: int
    b_set: int


@pytest.fixture(params=["sqlite_db", "pg_db"])
def two(
    request: pytest.FixtureRequest,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
) -> Workspaces:
    """Both workspaces have a lead L-1001 (the same email, different ttclids), delivered."""
    request.getfixturevalue(request.param)
    a_set = make_event_set()
    simulator.register_event_set(B_SOURCE_ID, B_TOKEN, kind="crm", advertiser_id="7000000002")
    with session_scope(workspace=ALL_WORKSPACES) as session:
        b = add_workspace(session, "b").id
        session.commit()
    b_set = make_event_set(
        "beta",
        B_SOURCE_ID,
        B_TOKEN,
        ({"trigger_type": "lead.submitted", "event_name": "Lead"},),
        workspace_id=b,
    )
    keys = {"email": "same@example.com", "ip": RAW_IP, "user_agent": RAW_UA}
    enqueue_trigger(submitted("acme", match_keys={**keys, "ttclid": "E.C.P.a"}))
    enqueue_trigger(submitted("beta", match_keys={**keys, "ttclid": "E.C.P.b"}), workspace="b")
    simulator.wait_for_events(2)
    return Workspaces(DEFAULT_WORKSPACE_ID, b, a_set, b_set)


def submitted(event_set: str, lead: str = "L-1001", **extra: Any) -> dict[str, Any]:
    return {
        "type": "lead.submitted",
        "lead_id": lead,
        "event_set": event_set,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        **extra,
    }


def lead_of(workspace: int) -> Lead | None:
    with session_scope(workspace=workspace) as session:
        return session.scalar(select(Lead).where(Lead.lead_ref == "L-1001"))


def bodies_of(workspace: int) -> list[Any]:
    with session_scope(workspace=workspace) as session:
        return [p.payload for p in session.scalars(select(Postback))]


def age_everything(days: float) -> None:
    then = datetime.now(UTC) - timedelta(days=days)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(update(Lead).values(updated_at=then))
        session.execute(update(Trigger).values(received_at=then))
        session.execute(update(Postback).values(created_at=then, updated_at=then))
        session.commit()


def test_erasing_a_lead_leaves_the_other_workspaces_lead_of_the_same_id(two: Workspaces) -> None:
    result = erase_lead(EraseLead("L-1001"), Actor.cli(two.a))

    assert result.lead_found and result.triggers == 1 and result.postbacks == 1
    # b's L-1001 has the same email hash, but it is not a's to name
    assert result.shared_with == []
    assert lead_of(two.a) is None
    kept = lead_of(two.b)
    assert kept is not None and kept.ttclid == "E.C.P.b" and kept.email_hashes
    assert all(body is None for body in bodies_of(two.a))
    assert all(isinstance(body, dict) for body in bodies_of(two.b))
    with session_scope(workspace=two.b) as session:
        assert session.scalars(select(Trigger)).one().error is None


def test_the_purge_of_one_workspace_never_touches_another(two: Workspaces) -> None:
    age_everything(get_settings().retention_days + 1)
    cutoff = retention_cutoff(get_settings(), utcnow())
    with session_scope(workspace=two.a) as session:
        assert (count_expired(session, cutoff).leads, count_expired(session, cutoff).payloads) == (
            1,
            1,
        )
        batch = purge_batch(session, cutoff)
        session.commit()
    assert (batch.leads, batch.payloads) == (1, 1)
    a_lead, b_lead = lead_of(two.a), lead_of(two.b)
    assert a_lead is not None and a_lead.ttclid is None and a_lead.email_hashes == []
    assert b_lead is not None and b_lead.ttclid == "E.C.P.b" and b_lead.ip == RAW_IP
    assert bodies_of(two.a) == [None] and isinstance(bodies_of(two.b)[0], dict)

    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert count_expired(session, cutoff).leads == 1  # only b's is left, counted over all
        with pytest.raises(Exception, match="scoped to one workspace"):
            purge_batch(session, cutoff)  # a session over every workspace must name one


def test_the_beat_purge_runs_workspace_by_workspace_and_counts_each(two: Workspaces) -> None:
    age_everything(get_settings().retention_days + 1)
    registry = metric_definitions.metrics().registry

    def purged(workspace: str) -> float:
        labels = {"workspace": workspace, "kind": "lead"}
        return registry.get_sample_value("postback_retention_purged_total", labels) or 0.0

    before = {name: purged(name) for name in ("default", "b")}
    answer = retention_tasks.purge_expired_data()  # the task's body, run here
    assert answer == {"leads": 2, "payloads": 2, "more": False}
    assert {name: purged(name) - before[name] for name in before} == {"default": 1, "b": 1}
    for workspace in (two.a, two.b):
        lead = lead_of(workspace)
        assert lead is not None and lead.ttclid is None


def test_diagnostics_count_only_the_workspaces_rows(two: Workspaces) -> None:
    enqueue_trigger(submitted("beta", "L-2", match_keys={"ttclid": "x"}), workspace="b")
    enqueue_trigger(submitted("beta", "L-3", match_keys={"ttclid": "y"}), workspace="b")
    with session_scope(workspace=two.a) as session:
        report = diagnose(session, two.a_set)
        everything = diagnose_all(session)
        with pytest.raises(InputRejected) as other:
            diagnose(session, two.b_set)
        with pytest.raises(InputRejected) as nowhere:
            diagnose(session, 999_999)
    assert report.events == 1 and report.delivered == 1
    assert [r.event_set for r in everything] == ["acme"]
    assert [e.field for e in other.value.errors] == [e.field for e in nowhere.value.errors]
    assert "beta" not in str(other.value)
    with session_scope(workspace=two.b) as session:
        assert diagnose(session, two.b_set).delivered == 3


def test_the_history_is_the_workspaces_lead_and_masks_ip_and_user_agent(two: Workspaces) -> None:
    with session_scope(workspace=two.a) as session:
        # A Pixel (web) event carries the raw client details in its stored body.
        row = session.scalars(select(Postback)).one()
        row.payload = {
            **row.payload,
            "user": {**row.payload["user"], "ip": RAW_IP, "user_agent": RAW_UA},
        }
        session.commit()
    with session_scope(workspace=two.a) as session:
        history = find_lead_history(session, "L-1001")
        assert find_lead_history(session, "L-nobody") is None
        assert lead_history(session, "L-nobody").found is False
    with session_scope(workspace=two.b) as session:
        b_history = find_lead_history(session, "L-1001")
    assert history is not None and b_history is not None
    assert history.match_keys["ttclid"] == "E.C.P.a"
    assert b_history.match_keys["ttclid"] == "E.C.P.b"
    assert [t.event_set for t in history.triggers] == ["acme"]
    assert history.match_keys["ip"] == "203.0.113.x"
    assert history.match_keys["user_agent"] == PRESENT
    [postback] = history.triggers[0].postbacks
    assert postback.payload is not None
    assert postback.payload["user"]["ip"] == "203.0.113.x"
    assert postback.payload["user"]["user_agent"] == PRESENT
    text = json.dumps(asdict(history), default=str)
    assert RAW_IP not in text and "WorkspaceAgent" not in text and "E.C.P.b" not in text
    # Reading the history changed nothing stored: the body is sent as it is.
    [body] = bodies_of(two.a)
    assert body["user"]["ip"] == RAW_IP and body["user"]["user_agent"] == RAW_UA


def test_a_lead_of_another_workspace_is_not_found(two: Workspaces) -> None:
    enqueue_trigger(submitted("beta", "L-only-b", match_keys={"ttclid": "z"}), workspace="b")
    with session_scope(workspace=two.a) as session:
        assert find_lead_history(session, "L-only-b") is None
        assert session.scalar(select(EventSet).where(EventSet.name == "beta")) is None


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("203.0.113.77", "203.0.113.x"),
        ("2001:db8:85a3:1234:5678:8a2e:370:7334", "2001:db8:85a3::/48"),
        ("::ffff:198.51.100.9", "198.51.100.x"),
        ("not an address", PRESENT),
    ],
)
def test_an_ip_is_masked_to_its_network(address: str, masked: str) -> None:
    assert masked_ip(address) == masked


def test_delivery_metrics_name_each_events_workspace(two: Workspaces) -> None:
    registry = metric_definitions.metrics().registry
    for workspace, event_set in (("default", "acme"), ("b", "beta")):
        labels = {"workspace": workspace, "event_set": event_set, "status": "delivered"}
        assert (
            registry.get_sample_value("postback_events_total", {**labels, "code": "0"}) or 0
        ) >= 1
