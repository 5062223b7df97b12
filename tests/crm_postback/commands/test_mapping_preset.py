"""The lead-generation preset through every face: the mappings TikTok recommends for a lead
funnel, once (a second run, or two at once, creates nothing more), refused whole on a conflict,
and ordinary mappings afterwards."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from crm_postback.commands.manage_event_sets import AddEventSet, add_event_set
from crm_postback.commands.manage_mappings import (
    ApplyPreset,
    MappingInput,
    UpdateMapping,
    apply_preset,
    update_mapping,
)
from crm_postback.commands.unit_of_work import Actor, NotPermitted
from crm_postback.configuration import audit
from crm_postback.core.errors import InputRejected
from models import DEFAULT_WORKSPACE_ID, AuditEntry, Mapping, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import TOKEN  # type: ignore[import-not-found]
from tests.crm_postback.commands.faces import (  # type: ignore[import-not-found]
    Face,
    audit_since,
    last_audit_id,
)

EDITOR = Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.EDITOR)
OWNER = Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER, operator=True)
NO_VALUE = {"value_from": None, "currency_from": None}
CRM = [
    ("lead.submitted", "Lead", NO_VALUE),
    ("lead.qualified", "lead_qualified", NO_VALUE),
    ("lead.sold", "lead_sold", {}),
    ("offer.conversion", "offer_converted", {"order_id_from": "order_id"}),
]
WEB = [
    ("lead.submitted", "Lead", NO_VALUE),
    ("lead.qualified", "SubmitApplication", NO_VALUE),
    ("lead.sold", "ApplicationApproval", {}),
    ("offer.conversion", "Purchase", {"order_id_from": "order_id"}),
]


def stored() -> list[tuple[str, str, dict[str, Any]]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = session.scalars(select(Mapping).order_by(Mapping.id))
        return [(m.trigger_type, m.event_name, dict(m.properties)) for m in rows]


def run_preset(face: Face, set_id: int) -> tuple[bool, str]:
    if face.name == "cli":
        code, out = face.cli("mapping", "preset", "lead-generation", "--event-set", "acme")
        return code == 0, out
    if face.name == "page":
        response = face.post_form(f"/event-sets/{set_id}/preset")
        assert response.status_code == 303, response.text
        assert face.page_client is not None
        page = face.page_client.get(f"/admin/event-sets/{set_id}").text
        return 'class="flash ok"' in page, page
    response = face.api.post(
        "/admin/api/event-sets/acme/preset", json={"preset": "lead-generation"}
    )
    return response.status_code == 200, response.text


@pytest.mark.parametrize(("kind", "expected"), [("crm", CRM), ("web", WEB)])
def test_preset_twice_creates_the_mappings_once(
    face: Face, make_event_set: Callable[..., int], kind: str, expected: list[Any]
) -> None:
    source = "7300000000000000001" if kind == "crm" else "CPIXEL0000000001"
    set_id = make_event_set("acme", source, mappings=(), kind=kind)
    mark = last_audit_id()
    ok, said = run_preset(face, set_id)
    assert ok, said
    assert "4 created, 0 already there" in said
    assert stored() == expected
    entries, actors = audit_since(mark)
    assert [e["action"] for e in entries] == ["mapping.create"] * 4 + ["event_set.preset"]
    assert entries[-1]["after"] == {
        "preset": "lead-generation",
        "created": [1, 2, 3, 4],
        "present": [],
    }
    assert actors == {face.actor}

    mark = last_audit_id()
    ok, said = run_preset(face, set_id)
    assert ok, said
    assert "0 created, 4 already there" in said
    assert stored() == expected
    assert audit_since(mark)[0] == []  # nothing changed, nothing audited


def test_preset_keeps_what_was_edited_since_and_adds_what_is_missing(
    make_event_set: Callable[..., int], sqlite_db: str
) -> None:
    make_event_set(
        mappings=(
            {
                "trigger_type": "lead.sold",
                "event_name": "lead_sold",
                "properties": {"currency": "EUR"},
            },
            {"trigger_type": "buyer.accepted", "event_name": "lead_sold"},
        )
    )
    result = apply_preset(ApplyPreset("acme"), EDITOR)
    assert result.summary == "3 created, 1 already there"
    assert [s.mapping.id for s in result.present] == [1]
    assert ("lead.sold", "lead_sold", {"currency": "EUR"}) in stored()
    assert len(stored()) == 5
    # Editable afterwards like any mapping; the next run leaves the edit alone.
    offer = next(s.mapping for s in result.created if s.mapping.trigger_type == "offer.conversion")
    update_mapping(
        UpdateMapping(
            offer.id,
            MappingInput(
                "offer.conversion", "offer_converted", properties={"order_id_from": "offer_id"}
            ),
        ),
        EDITOR,
    )
    assert apply_preset(ApplyPreset("acme"), EDITOR).summary == "0 created, 4 already there"
    assert ("offer.conversion", "offer_converted", {"order_id_from": "offer_id"}) in stored()


def test_a_conflicting_mapping_refuses_the_whole_preset(
    face: Face, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set(mappings=({"trigger_type": "lead.sold", "event_name": "Purchase"},))
    mark = last_audit_id()
    if face.name == "page":
        response = face.post_form(f"/event-sets/{set_id}/preset")
        assert response.status_code == 303
        assert face.page_client is not None
        said = face.page_client.get(f"/admin/event-sets/{set_id}").text
        assert 'class="flash error"' in said
    else:
        ok, said = run_preset(face, set_id)
        assert not ok
    assert "mapping 1 maps lead.sold to" in said.replace("&#39;", "'")
    assert "nothing was created" in said
    assert stored() == [("lead.sold", "Purchase", {})]
    assert audit_since(mark)[0] == []


def test_unknown_preset_and_event_set(make_event_set: Callable[..., int], sqlite_db: str) -> None:
    make_event_set(mappings=())
    with pytest.raises(InputRejected) as refused:
        apply_preset(ApplyPreset("acme", "sales"), EDITOR)
    assert refused.value.errors[0].field == "preset"
    with pytest.raises(InputRejected):
        apply_preset(ApplyPreset("nope"), EDITOR)
    viewer = Actor("cli:v", DEFAULT_WORKSPACE_ID, Role.VIEWER)
    with pytest.raises(NotPermitted):
        apply_preset(ApplyPreset("acme"), viewer)
    assert stored() == []


def test_a_new_event_set_with_the_preset_is_made_with_its_mappings_or_not_at_all(
    sqlite_db: str,
) -> None:
    created = add_event_set(
        AddEventSet("acme", "7300000000000000001", TOKEN, preset="lead-generation", kind="web"),
        OWNER,
    )
    assert created.kind == "web"
    assert stored() == WEB
    with session_scope(workspace=ALL_WORKSPACES) as session:
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions == ["event_set.create"] + ["mapping.create"] * 4 + ["event_set.preset"]
    with pytest.raises(InputRejected):
        add_event_set(AddEventSet("beta", "7300000000000000002", TOKEN, preset="nope"), OWNER)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert audit.entries(session, limit=100)[0].action == "event_set.preset"
    assert len(stored()) == 4


def test_page_create_form_starts_with_the_preset(admin_client: Any, sqlite_db: str) -> None:
    client, csrf = admin_client
    response = client.post(
        "/admin/event-sets/new",
        data={
            "csrf_token": csrf,
            "name": "acme",
            "event_set_id": "7300000000000000001",
            "kind": "crm",
            "access_token": TOKEN,
            "lead_event_source": "AcmeLeads",
            "preset": "on",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert stored() == CRM


@pytest.mark.parametrize("db", ["sqlite_db", "pg_db"])
def test_two_presets_at_once_create_each_mapping_once(
    request: pytest.FixtureRequest, db: str, make_event_set: Callable[..., int]
) -> None:
    request.getfixturevalue(db)
    make_event_set(mappings=())
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def run() -> None:
        barrier.wait()
        outcomes.append(apply_preset(ApplyPreset("acme"), EDITOR).summary)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["0 created, 4 already there"] * 3 + ["4 created, 0 already there"]
    assert stored() == CRM
