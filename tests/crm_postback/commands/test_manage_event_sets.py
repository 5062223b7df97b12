"""Event set use cases through every face that offers them: same state, same audit entry.

The CLI adds, pauses, resumes, replaces tokens and verifies; its `edit` changes no test code,
so `update` is tested on the page and the API (the CLI's `edit`: test_event_set_settings.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import inspect, select

from crm_postback.commands import manage_event_sets as event_sets
from crm_postback.commands.lookups import NotFound
from crm_postback.commands.manage_event_sets import (
    PauseEventSet,
    VerifyEventSet,
    pause_event_set,
    verify_event_set,
)
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration import audit
from crm_postback.configuration.event_set_service import event_set_snapshot, pause
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings
from crm_postback.core.token_vault import token_hint
from crm_postback.simulator import SimulatorControl
from models import DEFAULT_WORKSPACE_ID, EventSet, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import EVENT_SET_ID, TOKEN  # type: ignore[import-not-found]
from tests.crm_postback.commands.conftest import add_acme  # type: ignore[import-not-found]
from tests.crm_postback.commands.faces import (  # type: ignore[import-not-found]
    Face,
    audit_since,
    last_audit_id,
)

NEW_TOKEN = "replacement-token-9876"


def state(name: str = "acme") -> dict[str, Any]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = session.scalars(select(EventSet).where(EventSet.name == name)).one()
        return {
            **event_set_snapshot(event_set),
            "access_token": token_hint(event_set.sealed_token, get_settings()),
        }


def masked(token: str) -> str:
    return "••••••••" + token[-4:]


def test_add(face: Face) -> None:
    mark = last_audit_id()
    add_acme(
        face,
        cli_options=[
            "--event-set-id",
            EVENT_SET_ID,
            "--crm-name",
            "AcmeLeads",
            "--advertiser-id",
            "7000000001",
            "--currency",
            "usd",
        ],
        form={
            "event_set_id": EVENT_SET_ID,
            "kind": "crm",
            "advertiser_id": "7000000001",
            "lead_event_source": "AcmeLeads",
            "currency": "usd",
            "test_event_code": "",
        },
        body={
            "event_set_id": EVENT_SET_ID,
            "advertiser_id": "7000000001",
            "lead_event_source": "AcmeLeads",
            "default_currency": "usd",
        },
    )
    expected = {
        "name": "acme",
        "kind": "crm",
        "event_set_id": EVENT_SET_ID,
        "advertiser_id": "7000000001",
        "lead_event_source": "AcmeLeads",
        "default_currency": "USD",
        "test_event_code": None,
        "status": "active",
        "paused_reason": None,
        "limited_data_use": False,
        "max_event_age_days": None,
        "access_token": masked(TOKEN),
    }
    assert state() == expected
    entries, actors = audit_since(mark)
    assert entries == [
        {
            "action": "event_set.create",
            "entity_type": "event_set",
            "entity_id": 1,
            "event_set_id": 1,
            "before": None,
            "after": expected,
            "note": None,
        }
    ]
    assert actors == {face.actor}


@pytest.mark.parametrize("face", ["page", "api"], indirect=True)
def test_update(face: Face, make_event_set: Callable[..., int]) -> None:
    set_id = make_event_set(mappings=(), advertiser_id="7000000001")
    before = state()
    mark = last_audit_id()
    if face.name == "page":
        response = face.post_form(
            f"/event-sets/{set_id}/edit",
            name="acme-crm",
            advertiser_id="7000000002",
            lead_event_source="Acme",
            currency="GBP",
            test_event_code="TEST7",
            access_token="",
        )
        assert response.status_code == 303, response.text
    else:
        response = face.api.patch(
            "/admin/api/event-sets/acme",
            json={
                "name": "acme-crm",
                "advertiser_id": "7000000002",
                "lead_event_source": "Acme",
                "default_currency": "GBP",
                "test_event_code": "TEST7",
            },
        )
        assert response.status_code == 200, response.text
    after = state("acme-crm")
    assert after == {
        **before,
        "name": "acme-crm",
        "advertiser_id": "7000000002",
        "lead_event_source": "Acme",
        "default_currency": "GBP",
        "test_event_code": "TEST7",
    }
    del before["access_token"], after["access_token"]
    entries, actors = audit_since(mark)
    assert entries == [
        {
            "action": "event_set.update",
            "entity_type": "event_set",
            "entity_id": set_id,
            "event_set_id": set_id,
            "before": before,
            "after": after,
            "note": None,
        }
    ]
    assert actors == {face.actor}


def test_pause(face: Face, make_event_set: Callable[..., int]) -> None:
    set_id = make_event_set(mappings=())
    mark = last_audit_id()
    if face.name == "cli":
        assert face.cli("event-set", "pause", "acme", "--reason", "billing") == (
            0,
            "acme: paused\n",
        )
    elif face.name == "page":
        assert face.post_form(f"/event-sets/{set_id}/pause", reason="billing").status_code == 303
    else:
        response = face.api.post("/admin/api/event-sets/acme/pause", json={"reason": "billing"})
        assert response.json()["status"] == "paused"
    assert (state()["status"], state()["paused_reason"]) == ("paused", "billing")
    entries, actors = audit_since(mark)
    assert entries == [
        {
            "action": "event_set.pause",
            "entity_type": "event_set",
            "entity_id": set_id,
            "event_set_id": set_id,
            "before": {"status": "active", "paused_reason": None},
            "after": {"status": "paused", "paused_reason": "billing"},
            "note": None,
        }
    ]
    assert actors == {face.actor}


def _paused(make_event_set: Callable[..., int]) -> int:
    set_id = make_event_set(mappings=())
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = session.get(EventSet, set_id)
        assert event_set is not None
        pause(event_set, "billing", actor=audit.SYSTEM_ACTOR)
        session.commit()
    return set_id


def test_resume(face: Face, make_event_set: Callable[..., int]) -> None:
    set_id = _paused(make_event_set)
    mark = last_audit_id()
    if face.name == "cli":
        assert face.cli("event-set", "resume", "acme") == (0, "acme: active\n")
    elif face.name == "page":
        assert face.post_form(f"/event-sets/{set_id}/resume").status_code == 303
    else:
        assert face.api.post("/admin/api/event-sets/acme/resume").json()["status"] == "active"
    assert (state()["status"], state()["paused_reason"]) == ("active", None)
    entries, actors = audit_since(mark)
    assert entries == [
        {
            "action": "event_set.resume",
            "entity_type": "event_set",
            "entity_id": set_id,
            "event_set_id": set_id,
            "before": {"status": "paused", "paused_reason": "billing"},
            "after": {"status": "active", "paused_reason": None},
            "note": None,
        }
    ]
    assert actors == {face.actor}


def test_replace_token_also_resumes(face: Face, make_event_set: Callable[..., int]) -> None:
    """The page replaces a token through its token action (and its edit form)."""
    set_id = _paused(make_event_set)
    mark = last_audit_id()
    if face.name == "cli":
        code, out = face.cli("event-set", "set-token", "acme", input=f"{NEW_TOKEN}\n")
        assert (code, out.splitlines()[-1]) == (0, "acme: token replaced")
    elif face.name == "page":
        response = face.post_form(f"/event-sets/{set_id}/token", access_token=NEW_TOKEN)
        assert response.status_code == 303
    else:
        response = face.api.patch("/admin/api/event-sets/acme", json={"access_token": NEW_TOKEN})
        assert NEW_TOKEN not in response.text
    assert state()["access_token"] == masked(NEW_TOKEN) and state()["status"] == "active"
    entries, actors = audit_since(mark)
    common = {"entity_type": "event_set", "entity_id": set_id, "event_set_id": set_id}
    assert entries == [
        {
            "action": "event_set.token",
            **common,
            "before": {"access_token": masked(TOKEN)},
            "after": {"access_token": "replaced"},
            "note": None,
        },
        {
            "action": "event_set.resume",
            **common,
            "before": {"status": "paused", "paused_reason": "billing"},
            "after": {"status": "active", "paused_reason": None},
            "note": None,
        },
    ]
    assert actors == {face.actor}
    assert NEW_TOKEN not in str(entries)


def test_verify_changes_nothing(
    face: Face, make_event_set: Callable[..., int], simulator: SimulatorControl
) -> None:
    set_id = make_event_set(mappings=(), advertiser_id="7000000001")
    mark = last_audit_id()
    message = f"verified: TikTok knows event set {EVENT_SET_ID} for advertiser 7000000001"
    if face.name == "cli":
        code, out = face.cli("event-set", "verify", "acme")
        assert code == 0 and out.startswith(f"acme: {message} (request_id ")
    elif face.name == "page":
        response = face.post_form(f"/event-sets/{set_id}/verify")
        assert response.status_code == 303
        assert message in face.page_client.get(response.headers["location"]).text  # type: ignore[union-attr]
    else:
        body = face.api.post("/admin/api/event-sets/acme/verify").json()
        assert (body["ok"], body["message"]) == (True, message)
    assert audit_since(mark)[0] == []


def test_verify_holds_no_session_during_the_http_call(
    sqlite_db: str, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_event_set(mappings=(), advertiser_id="7000000001")
    seen: list[bool] = []

    def ask(event_set: EventSet, settings: object, operator: bool) -> event_sets.Verification:
        seen.append(inspect(event_set).detached)
        return event_sets.Verification(True, "ok")

    monkeypatch.setattr(event_sets, "ask_tiktok", ask)
    assert verify_event_set(VerifyEventSet("acme"), Actor.cli()).ok
    assert seen == [True]


def test_unknown_event_sets_and_refused_input_name_the_field(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    with pytest.raises(NotFound) as missing:
        pause_event_set(
            PauseEventSet("nope", "x"), Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER)
        )
    assert [str(e) for e in missing.value.errors] == ["event_set: unknown event set 'nope'"]
    with pytest.raises(NotFound) as by_id:
        pause_event_set(PauseEventSet(99, "x"), Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER))
    assert by_id.value.message == "there is no event set 99"
    make_event_set(mappings=())
    mark = last_audit_id()
    with pytest.raises(InputRejected) as refused:
        event_sets.update_event_set(
            event_sets.UpdateEventSet("acme", default_currency="XYZ", name="renamed"),
            Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER),
        )
    assert [e.field for e in refused.value.errors] == ["currency"]
    assert state()["name"] == "acme" and audit_since(mark)[0] == []  # all or nothing
