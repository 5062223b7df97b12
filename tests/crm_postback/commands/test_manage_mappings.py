"""Mapping use cases through every face that offers them: same state, same audit entry.

Import YAML is offered by the CLI and the JSON API (the page only exports). Disabling is the
page's toggle, `mapping set --id … --disabled` on the CLI and a PUT with enabled false.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from crm_postback.commands.manage_mappings import (
    MappingInput,
    UpdateMapping,
    VersionConflict,
    update_mapping,
)
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration import audit
from models import DEFAULT_WORKSPACE_ID, Mapping, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.commands.faces import (  # type: ignore[import-not-found]
    Face,
    audit_since,
    last_audit_id,
)

SOLD_STORED = {
    "trigger_type": "lead.sold",
    "event_name": "Purchase",
    "conditions": [{"attribute": "buyer_id", "op": "eq", "value": "B17"}],
    "properties": {"currency": "USD", "order_id_from": "sale_id"},
    "enabled": True,
}


def mappings() -> list[dict[str, Any]]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        rows = session.scalars(select(Mapping).order_by(Mapping.id))
        return [{"id": m.id, **audit.mapping_snapshot(m)} for m in rows]


def cli_set(face: Face, *extra: str, event: str = "Purchase") -> None:
    code, out = face.cli(
        "mapping",
        "set",
        "--event-set",
        "acme",
        "--trigger",
        "lead.sold",
        "--event",
        event,
        "--when",
        'buyer_id == "B17"',
        "--currency",
        "USD",
        "--order-id-from",
        "sale_id",
        *extra,
    )
    assert code == 0, out


def page_form(event: str = "Purchase", enabled: bool = True) -> dict[str, Any]:
    return {
        "trigger": "lead.sold",
        "event_choice": event,
        "event_custom": "",
        **({"enabled": "on"} if enabled else {}),
        "cond_attribute": ["buyer_id", ""],
        "cond_op": ["eq", "eq"],
        "cond_value": ["B17", ""],
        "value_mode": "attribute",
        "value_from": "value",
        "currency_mode": "fixed",
        "currency_fixed": "USD",
        "currency_from": "currency",
        "order_id_from": "sale_id",
        "content_type": "",
        "description": "",
        "action": "save",
    }


def api_body(event: str = "Purchase", enabled: bool = True) -> dict[str, Any]:
    return {
        "trigger": "lead.sold",
        "event": event,
        "enabled": enabled,
        "when": ['buyer_id == "B17"'],
        "properties": {"currency": "USD", "order_id_from": "sale_id"},
    }


def one_entry(entries: list[dict[str, Any]], **expected: Any) -> None:
    assert entries == [{"entity_type": "mapping", "note": None, **expected}]


def test_add(face: Face, make_event_set: Callable[..., int]) -> None:
    set_id = make_event_set(mappings=())
    mark = last_audit_id()
    if face.name == "cli":
        cli_set(face)
    elif face.name == "page":
        response = face.post_form(f"/event-sets/{set_id}/mappings/new", **page_form())
        assert response.status_code == 303, response.text
    else:
        response = face.api.post("/admin/api/event-sets/acme/mappings", json=api_body())
        assert response.status_code == 201, response.text
    stored = {**SOLD_STORED, "version": 1}
    assert mappings() == [{"id": 1, **stored}]
    entries, actors = audit_since(mark)
    one_entry(
        entries,
        action="mapping.create",
        entity_id=1,
        event_set_id=set_id,
        before=None,
        after=stored,
    )
    assert actors == {face.actor}


def _saved_mapping(make_event_set: Callable[..., int]) -> int:
    return make_event_set(
        mappings=(
            {
                "trigger_type": "lead.sold",
                "event_name": "lead_sold",
                "conditions": [{"attribute": "buyer_id", "op": "eq", "value": "B17"}],
                "properties": {"currency": "USD", "order_id_from": "sale_id"},
            },
        )
    )


def test_update(face: Face, make_event_set: Callable[..., int]) -> None:
    set_id = _saved_mapping(make_event_set)
    [before] = mappings()
    mark = last_audit_id()
    if face.name == "cli":
        cli_set(face, "--id", "1")
    elif face.name == "page":
        response = face.post_form(f"/event-sets/{set_id}/mappings/1", **page_form())
        assert response.status_code == 303, response.text
    else:
        response = face.api.put(
            "/admin/api/event-sets/acme/mappings/1", json={**api_body(), "version": 1}
        )
        assert response.status_code == 200, response.text
    assert mappings() == [{"id": 1, **SOLD_STORED, "version": 2}]
    del before["id"]
    entries, actors = audit_since(mark)
    one_entry(
        entries,
        action="mapping.update",
        entity_id=1,
        event_set_id=set_id,
        before=before,
        after={**SOLD_STORED, "version": 2},
    )
    assert actors == {face.actor}


def test_disable(face: Face, make_event_set: Callable[..., int]) -> None:
    set_id = _saved_mapping(make_event_set)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.get(Mapping, 1).event_name = "Purchase"  # type: ignore[union-attr]
        session.commit()
    [before] = mappings()
    mark = last_audit_id()
    if face.name == "cli":
        cli_set(face, "--id", "1", "--disabled")
    elif face.name == "page":
        assert face.post_form(f"/event-sets/{set_id}/mappings/1/toggle").status_code == 303
    else:
        response = face.api.put(
            "/admin/api/event-sets/acme/mappings/1", json=api_body(enabled=False)
        )
        assert response.json()["enabled"] is False
    disabled = {**SOLD_STORED, "enabled": False, "version": 2}
    assert mappings() == [{"id": 1, **disabled}]
    del before["id"]
    entries, actors = audit_since(mark)
    one_entry(
        entries,
        action="mapping.update",
        entity_id=1,
        event_set_id=set_id,
        before=before,
        after=disabled,
    )
    assert actors == {face.actor}


def test_delete(face: Face, make_event_set: Callable[..., int]) -> None:
    set_id = _saved_mapping(make_event_set)
    [before] = mappings()
    mark = last_audit_id()
    if face.name == "cli":
        assert face.cli("mapping", "remove", "1") == (0, "mapping 1 removed\n")
    elif face.name == "page":
        assert face.post_form(f"/event-sets/{set_id}/mappings/1/delete").status_code == 303
    else:
        assert face.api.delete("/admin/api/event-sets/acme/mappings/1").status_code == 204
    assert mappings() == []
    del before["id"]
    entries, actors = audit_since(mark)
    one_entry(
        entries,
        action="mapping.delete",
        entity_id=1,
        event_set_id=set_id,
        before=before,
        after=None,
    )
    assert actors == {face.actor}


def _edited_export(face: Face, tmp_path: Path) -> tuple[Path, str]:
    """The event set's export with mapping 1's event changed and one mapping added."""
    code, text = face.cli("mapping", "export", "acme")
    assert code == 0
    document = yaml.safe_load(text)
    document["mappings"][0]["event"] = "Purchase"
    document["mappings"].append({"trigger": "offer.click", "event": "Contact"})
    edited = yaml.safe_dump(document, sort_keys=False)
    target = tmp_path / "acme.yaml"
    target.write_text(edited)
    return target, edited


@pytest.mark.parametrize("face", ["cli", "api"], indirect=True)
def test_import_yaml(face: Face, make_event_set: Callable[..., int], tmp_path: Path) -> None:
    set_id = _saved_mapping(make_event_set)
    [before] = mappings()
    target, edited = _edited_export(face, tmp_path)
    mark = last_audit_id()
    if face.name == "cli":
        assert face.cli("mapping", "import", str(target), "--dry-run") == (
            0,
            "acme: dry run: would be 1 created, 1 updated, 0 deleted, 0 unchanged\n",
        )
    else:
        dry = face.api.put("/admin/api/event-sets/acme/mappings.yaml?dry_run=true", content=edited)
        assert dry.json()["summary"] == "1 created, 1 updated, 0 deleted, 0 unchanged"
    assert mappings() == [before] and audit_since(mark)[0] == []  # a dry run writes nothing
    if face.name == "cli":
        assert face.cli("mapping", "import", str(target)) == (
            0,
            "acme: 1 created, 1 updated, 0 deleted, 0 unchanged\n",
        )
    else:
        done = face.api.put("/admin/api/event-sets/acme/mappings.yaml", content=edited).json()
        assert (done["created"], done["updated"]) == (1, [1])
    updated = {**before, "event_name": "Purchase", "version": 2}
    created = {
        "id": 2,
        "trigger_type": "offer.click",
        "event_name": "Contact",
        "conditions": [],
        "properties": {},
        "enabled": True,
        "version": 1,
    }
    assert mappings() == [updated, created]
    del before["id"], updated["id"], created["id"]
    entries, actors = audit_since(mark)
    common = {"entity_type": "mapping", "event_set_id": set_id, "note": None}
    assert entries == [
        {"action": "mapping.update", "entity_id": 1, "before": before, "after": updated, **common},
        {"action": "mapping.create", "entity_id": 2, "before": None, "after": created, **common},
    ]
    assert actors == {face.actor}


def test_unknown_mappings_are_not_found_on_every_face(
    face: Face, make_event_set: Callable[..., int]
) -> None:
    set_id = make_event_set(mappings=())
    if face.name == "cli":
        code, out = face.cli("mapping", "remove", "7")
        assert (code, out) == (2, "error: mapping_id: no mapping 7\n")
    elif face.name == "page":
        response = face.post_form(f"/event-sets/{set_id}/mappings/7/delete")
        assert response.status_code == 404 and "event set &#39;acme&#39; has no mapping 7" in (
            response.text
        )
    else:
        response = face.api.delete("/admin/api/event-sets/acme/mappings/7")
        assert response.status_code == 404
        assert response.json()["errors"][0]["message"] == "event set 'acme' has no mapping 7"


def test_a_stale_version_is_a_conflict(sqlite_db: str, make_event_set: Callable[..., int]) -> None:
    _saved_mapping(make_event_set)
    wanted = MappingInput("lead.sold", "Purchase")
    with pytest.raises(VersionConflict) as conflict:
        update_mapping(
            UpdateMapping(1, wanted, expected_version=3),
            Actor("api:alice", DEFAULT_WORKSPACE_ID, Role.OWNER),
        )
    assert [e.field for e in conflict.value.errors] == ["version"]
    assert mappings()[0]["event_name"] == "lead_sold"
