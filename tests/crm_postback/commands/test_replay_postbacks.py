"""Replay through the CLI, the delivery page and the JSON API: same rows, same audit entry.

The CLI used to write no audit entry for a replay; it writes the same one as the page now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_postback.api import enqueue_trigger
from crm_postback.commands.replay_postbacks import ReplayPostbacks, replay_postbacks
from crm_postback.commands.unit_of_work import Actor
from crm_postback.operations.replay import ReplaySelection
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, Postback, PostbackStatus, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import apply_env  # type: ignore[import-not-found]
from tests.crm_postback.commands.faces import (  # type: ignore[import-not-found]
    Face,
    audit_since,
    last_audit_id,
)
from worker.tasks import sweep_due_postbacks


def rows() -> list[dict[str, Any]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        found = session.scalars(select(Postback).order_by(Postback.id))
        return [
            {"id": r.id, "status": r.status, "replays": r.replays, "event_id": r.event_id}
            for r in found
        ]


@pytest.fixture
def dead(
    sqlite_db: str,
    simulator: SimulatorControl,
    eager: None,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> SimulatorControl:
    """Two dead postbacks of event set acme (leads L-1 and L-2)."""
    make_event_set()
    apply_env(monkeypatch, RETRY_SCHEDULE_SECONDS="[]")  # the first failure is final
    simulator.set_faults(http_5xx_rate=1.0)
    occurred = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    for lead in ("L-1", "L-2"):
        enqueue_trigger(
            {
                "type": "lead.sold",
                "lead_id": lead,
                "event_set": "acme",
                "occurred_at": occurred,
                "attributes": {"value": 10},
                "match_keys": {"email": f"{lead}@example.com"},
            }
        )
    simulator.set_faults(http_5xx_rate=0.0)
    assert {r["status"] for r in rows()} == {PostbackStatus.DEAD}
    return simulator


def test_replay_chosen_postbacks(face: Face, dead: SimulatorControl) -> None:
    first, second = rows()
    mark = last_audit_id()
    if face.name == "cli":
        code, out = face.cli("replay", "--id", str(first["id"]))
        assert code == 0 and "1 postback(s) re-queued" in out
    elif face.name == "page":
        response = face.post_form("/delivery/replay", postback_id=str(first["id"]))
        assert response.status_code == 303
    else:
        response = face.api.post("/admin/api/postbacks/replay", json={"ids": [first["id"]]})
        assert response.json() == {"requested": 1, "requeued": [first["id"]]}
    assert rows() == [{**first, "status": PostbackStatus.DELIVERED, "replays": 1}, second]
    assert [e["event_id"] for e in dead.events()] == [first["event_id"]]
    entries, actors = audit_since(mark)
    assert entries == [
        {
            "action": "postbacks.replay",
            "entity_type": "postbacks",
            "entity_id": None,
            "event_set_id": None,
            "before": None,
            "after": {"requested": 1, "requeued": 1, "postback_ids": [first["id"]]},
            "note": None,
        }
    ]
    assert actors == {face.actor}


def test_replay_an_event_sets_dead_postbacks(face: Face, dead: SimulatorControl) -> None:
    ids = [r["id"] for r in rows()]
    mark = last_audit_id()
    if face.name == "cli":
        code, out = face.cli("replay", "--event-set", "acme", "--status", "dead")
        assert code == 0 and "2 postback(s) re-queued" in out
    elif face.name == "page":
        assert face.post_form("/delivery/replay", event_set_id="1").status_code == 303
    else:
        response = face.api.post("/admin/api/postbacks/replay", json={"event_set": "acme"})
        assert response.json() == {"requested": 2, "requeued": ids}
    assert {(r["status"], r["replays"]) for r in rows()} == {(PostbackStatus.DELIVERED, 1)}
    entries, actors = audit_since(mark)
    assert entries == [
        {
            "action": "postbacks.replay",
            "entity_type": "postbacks",
            "entity_id": None,
            "event_set_id": 1,
            "before": None,
            "after": {"requested": 2, "requeued": 2, "postback_ids": ids},
            "note": None,
        }
    ]
    assert actors == {face.actor}


def test_the_api_replays_the_ids_given_and_files_the_entry_under_the_event_set_named(
    dead: SimulatorControl, make_event_set: Callable[..., int], api: TestClient
) -> None:
    """With both ids and event_set, the ids decide what is replayed (acme's postbacks here,
    although beta is named); the event set only goes into the audit entry."""
    beta = make_event_set(name="beta", source_id="CBETA0000000000000002", mappings=())
    first, second = rows()
    mark = last_audit_id()
    replayed = api.post(
        "/admin/api/postbacks/replay", json={"ids": [first["id"]], "event_set": "beta"}
    )
    assert replayed.json() == {"requested": 1, "requeued": [first["id"]]}
    assert rows() == [{**first, "status": PostbackStatus.DELIVERED, "replays": 1}, second]
    entries, _ = audit_since(mark)
    assert [(e["action"], e["event_set_id"]) for e in entries] == [("postbacks.replay", beta)]
    unknown = api.post(
        "/admin/api/postbacks/replay", json={"ids": [second["id"]], "event_set": "x"}
    )
    assert unknown.status_code == 404
    assert unknown.json()["errors"][0]["message"] == "unknown event set 'x'"
    assert rows()[1] == second


def test_the_admin_rule_chosen_ids_otherwise_the_event_sets_dead_ones() -> None:
    chosen = ReplayPostbacks.chosen_or_dead([3, 4], "acme")
    assert (chosen.selection.ids, chosen.selection.event_set) == ([3, 4], None)
    assert chosen.audited_event_set == "acme"
    by_name = ReplayPostbacks.chosen_or_dead([], "acme").selection
    assert (by_name.event_set, list(by_name.statuses)) == ("acme", [PostbackStatus.DEAD])
    by_id = ReplayPostbacks.chosen_or_dead([], 7).selection
    assert (by_id.event_set_id, list(by_id.statuses)) == (7, [PostbackStatus.DEAD])
    assert ReplayPostbacks.chosen_or_dead([], None).selection.is_empty()


def test_each_chunk_is_one_transaction_with_its_audit_entry(dead: SimulatorControl) -> None:
    ids = [r["id"] for r in rows()]
    mark = last_audit_id()
    seen: list[list[int]] = []
    outcome = replay_postbacks(
        ReplayPostbacks(ReplaySelection(event_set="acme"), chunk_size=1),
        Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER),
        on_chunk=lambda chunk: seen.append(chunk.requeued),
    )
    assert (outcome.requested, outcome.requeued, seen) == (2, ids, [[ids[0]], [ids[1]]])
    entries, _ = audit_since(mark)
    assert [e["after"]["postback_ids"] for e in entries] == [[ids[0]], [ids[1]]]


def test_a_dead_broker_keeps_the_commit_and_leaves_the_rows_for_the_sweeper(
    dead: SimulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.tasks import deliver_postbacks

    def broker_down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("broker down")

    working_delay = deliver_postbacks.delay
    monkeypatch.setattr(deliver_postbacks, "delay", broker_down)
    mark = last_audit_id()
    outcome = replay_postbacks(
        ReplayPostbacks(ReplaySelection(lead_ref="L-1")),
        Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER),
    )
    assert (outcome.requested, outcome.left_for_sweeper) == (1, 1)
    by_lead = {r["id"]: r["status"] for r in rows()}
    assert list(by_lead.values()) == [PostbackStatus.PENDING, PostbackStatus.DEAD]
    assert [e["action"] for e in audit_since(mark)[0]] == ["postbacks.replay"]
    assert dead.count_events() == 0
    monkeypatch.setattr(deliver_postbacks, "delay", working_delay)  # the broker is back
    sweep_due_postbacks()
    assert [r["status"] for r in rows()] == [PostbackStatus.DELIVERED, PostbackStatus.DEAD]


def test_cli_replay_with_the_broker_on_a_closed_port_is_audited_and_swept(
    dead: SimulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.app import app as celery_app

    monkeypatch.setattr("getpass.getuser", lambda: "ops")
    face = Face("cli")
    mark = last_audit_id()
    celery_app.conf.task_always_eager = False
    apply_env(monkeypatch, BROKER_URL="redis://127.0.0.1:1/0")
    code, out = face.cli("replay", "--lead-id", "L-1")
    assert code == 0 and "the sweeper will send 1 of them" in out
    entries, actors = audit_since(mark)
    assert [e["after"]["requeued"] for e in entries] == [1] and actors == {"cli:ops"}
    assert rows()[0]["status"] == PostbackStatus.PENDING
    apply_env(monkeypatch, BROKER_URL="memory://")
    celery_app.conf.task_always_eager = True
    sweep_due_postbacks()
    assert rows()[0]["status"] == PostbackStatus.DELIVERED


def test_an_empty_selection_is_refused(sqlite_db: str) -> None:
    from crm_postback.core.errors import InputRejected

    with pytest.raises(InputRejected) as refused:
        replay_postbacks(
            ReplayPostbacks(ReplaySelection()), Actor("api:alice", DEFAULT_WORKSPACE_ID, Role.OWNER)
        )
    assert [e.field for e in refused.value.errors] == ["postback_id"]
