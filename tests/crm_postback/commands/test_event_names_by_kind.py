"""Event names by event set kind, through every path that saves a mapping.

Legacy names (SubmitForm, CompletePayment, PlaceAnOrder, ClickButton) are saved on a CRM
event set with a warning naming the current one, and refused for a Pixel; names beyond ASCII
only for CRM. Each face says so its own way: the CLI on stderr, the page as a notice, the
JSON API in `warnings`. A name stored before the rule keeps working while unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from crm_postback.commands.manage_mappings import (
    AddMapping,
    ImportMappingYaml,
    MappingInput,
    SetMappingEnabled,
    UpdateMapping,
    add_mapping,
    import_mapping_yaml,
    set_mapping_enabled,
    update_mapping,
)
from crm_postback.commands.unit_of_work import Actor
from crm_postback.configuration.mapping_preview import DraftMapping, preview
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings
from models import DEFAULT_WORKSPACE_ID, EventSet, Mapping, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.commands.faces import Face  # type: ignore[import-not-found]

LEGACY = {
    "SubmitForm": "Lead",
    "CompletePayment": "Purchase",
    "PlaceAnOrder": "Purchase",
    "ClickButton": "Contact",
}
NON_ASCII = ["リード成約", "Lead qualifié", "صفقة"]
EDITOR = Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.EDITOR)


def names() -> list[str]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return list(session.scalars(select(Mapping.event_name).order_by(Mapping.id)))


def make(make_event_set: Callable[..., int], kind: str) -> int:
    source = "7300000000000000001" if kind == "crm" else "CPIXEL0000000001"
    return make_event_set("acme", source, mappings=(), kind=kind)


def save_through(face: Face, set_id: int, event: str) -> tuple[bool, str]:
    """Saves `trigger x.y -> event` through the face: (saved?, what the face said)."""
    if face.name == "cli":
        code, out = face.cli(
            "mapping", "set", "--event-set", "acme", "--trigger", "x.y", "--event", event
        )
        return code == 0, out
    if face.name == "page":
        response = face.post_form(
            f"/event-sets/{set_id}/mappings/new",
            trigger="x.y",
            event_choice="__custom__",
            event_custom=event,
            enabled="on",
            value_mode="attribute",
            value_from="value",
            currency_mode="attribute",
            currency_from="currency",
            action="save",
        )
        if response.status_code != 303:
            return False, response.text
        assert face.page_client is not None
        return True, face.page_client.get(f"/admin/event-sets/{set_id}").text
    response = face.api.post(
        "/admin/api/event-sets/acme/mappings", json={"trigger": "x.y", "event": event}
    )
    if response.status_code != 201:
        return False, response.text
    return True, str(response.json()["warnings"])


@pytest.mark.parametrize(("legacy", "current"), sorted(LEGACY.items()))
def test_legacy_name_is_saved_for_crm_with_a_warning(
    face: Face, make_event_set: Callable[..., int], legacy: str, current: str
) -> None:
    set_id = make(make_event_set, "crm")
    saved, said = save_through(face, set_id, legacy)
    assert saved, said
    assert names() == [legacy]
    assert "legacy name" in said and f"{current!r}".replace("'", "") in said.replace("&#39;", "")
    if face.name == "cli":
        assert "warning: event:" in said
    if face.name == "page":
        assert 'class="flash warn"' in said


@pytest.mark.parametrize(("legacy", "current"), sorted(LEGACY.items()))
def test_legacy_name_is_refused_for_web_with_the_current_one(
    face: Face, make_event_set: Callable[..., int], legacy: str, current: str
) -> None:
    set_id = make(make_event_set, "web")
    saved, said = save_through(face, set_id, legacy)
    assert not saved
    assert names() == []
    assert "legacy name" in said and current in said


@pytest.mark.parametrize("name", NON_ASCII)
def test_non_ascii_names_only_for_crm(
    face: Face, make_event_set: Callable[..., int], name: str
) -> None:
    set_id = make(make_event_set, "web")
    saved, said = save_through(face, set_id, name)
    assert not saved and "only for CRM" in said
    assert names() == []
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = session.get(EventSet, set_id)
        assert event_set is not None
        event_set.kind = "crm"  # type: ignore[assignment]
        session.commit()
    saved, said = save_through(face, set_id, name)
    assert saved, said
    assert names() == [name]
    assert "warning" not in said.lower() or face.name == "page"


def test_the_command_checks_the_kind_whatever_the_face_checked(
    make_event_set: Callable[..., int], sqlite_db: str
) -> None:
    """The faces read the form without the kind; the command is the gate."""
    make(make_event_set, "web")
    for name in ("SubmitForm", "リード"):
        with pytest.raises(InputRejected) as refused:
            add_mapping(AddMapping("acme", MappingInput("x.y", name)), EDITOR)
        assert refused.value.errors[0].field == "event"
    saved = add_mapping(AddMapping("acme", MappingInput("x.y", "lead_sold")), EDITOR)
    assert saved.warnings == ()
    with pytest.raises(InputRejected):
        update_mapping(UpdateMapping(saved.mapping.id, MappingInput("x.y", "PlaceAnOrder")), EDITOR)
    assert names() == ["lead_sold"]


YAML_WITH = """event_set: acme
mappings:
- trigger: lead.submitted
  event: Lead
- trigger: lead.sold
  event: {name}
"""


# The import is offered by the CLI and the JSON API only.
@pytest.mark.parametrize("face", ["cli", "api"], indirect=True)
def test_yaml_import_per_kind(
    face: Face, make_event_set: Callable[..., int], tmp_path: Any
) -> None:
    make(make_event_set, "crm")
    text = YAML_WITH.format(name="CompletePayment")
    if face.name == "cli":
        path = tmp_path / "m.yaml"
        path.write_text(text, encoding="utf-8")
        code, out = face.cli("mapping", "import", str(path))
        assert code == 0, out
        assert "warning: mappings.1.event: 'CompletePayment' is a legacy name" in out
    else:
        response = face.api.put(
            "/admin/api/event-sets/acme/mappings.yaml",
            content=text.encode(),
            headers={"Content-Type": "application/yaml"},
        )
        assert response.status_code == 200, response.text
        [warning] = response.json()["warnings"]
        assert warning["field"] == "mappings.1.event" and "'Purchase'" in warning["message"]
    assert names() == ["Lead", "CompletePayment"]


def test_yaml_import_on_a_pixel_refuses_legacy_and_non_ascii_names_naming_the_entry(
    make_event_set: Callable[..., int], sqlite_db: str
) -> None:
    make(make_event_set, "web")
    for name in ("SubmitForm", "リード成約"):
        for dry_run in (True, False):
            with pytest.raises(InputRejected) as refused:
                import_mapping_yaml(
                    ImportMappingYaml(YAML_WITH.format(name=name), dry_run=dry_run), EDITOR
                )
            assert [e.field for e in refused.value.errors] == ["mappings.1.event"]
    assert names() == []


def test_a_name_saved_before_the_rule_keeps_working_while_unchanged(
    make_event_set: Callable[..., int], sqlite_db: str, admin_client: Any
) -> None:
    """A Pixel mapping named in Japanese before the rule: it can be disabled, edited (its
    properties), exported and imported back unchanged, previewed; renaming it to another such
    name is refused; the event set's page and the save say it should be renamed."""
    set_id = make(make_event_set, "web")
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        session.add(
            Mapping(
                workspace_id=DEFAULT_WORKSPACE_ID,
                event_set_id=set_id,
                trigger_type="lead.sold",
                event_name="リード成約",
                conditions=[],
                properties={},
                enabled=True,
                version=1,
            )
        )
        session.commit()
        mapping_id = session.scalars(select(Mapping.id)).one()
    toggled = set_mapping_enabled(SetMappingEnabled(mapping_id, enabled=False), EDITOR)
    assert toggled.mapping.enabled is False
    assert "only for CRM" in toggled.warnings[0].message and "rename" in toggled.warnings[0].message
    edited = update_mapping(
        UpdateMapping(
            mapping_id, MappingInput("lead.sold", "リード成約", properties={"currency": "EUR"})
        ),
        EDITOR,
    )
    assert edited.outcome == "saved" and edited.warnings
    with pytest.raises(InputRejected):
        update_mapping(UpdateMapping(mapping_id, MappingInput("lead.sold", "リード")), EDITOR)

    from crm_postback.configuration.mapping_service import list_mappings
    from crm_postback.configuration.mapping_yaml import export_mappings

    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        event_set = session.get(EventSet, set_id)
        assert event_set is not None
        text = export_mappings(event_set, list_mappings(session, event_set))
        shown = preview(
            session,
            get_settings(),
            event_set,
            trigger={
                "type": "lead.sold",
                "lead_id": "L-1",
                "event_set": "acme",
                "match_keys": {"email": "a@b.co"},
            },
            draft=DraftMapping("lead.sold", "リード成約", replaces=mapping_id),
        )
        assert any("rename" in note for note in shown.notes)
    result = import_mapping_yaml(ImportMappingYaml(text), EDITOR)
    assert result.summary == "0 created, 0 updated, 0 deleted, 1 unchanged"
    assert result.warnings and result.warnings[0].field == "mappings.0.event"
    # A new entry with the same name is a new mapping: refused.
    with pytest.raises(InputRejected):
        import_mapping_yaml(
            ImportMappingYaml(text + "- trigger: x.y\n  event: リード成約\n"), EDITOR
        )

    client, _ = admin_client
    page = client.get(f"/admin/event-sets/{set_id}").text
    assert f'data-mapping-warning="{mapping_id}"' in page and "rename it" in page


def test_preview_of_a_draft_checks_the_kind(
    make_event_set: Callable[..., int], sqlite_db: str
) -> None:
    trigger = {
        "type": "lead.sold",
        "lead_id": "L-1",
        "event_set": "acme",
        "match_keys": {"email": "a@b.co"},
    }
    set_id = make(make_event_set, "web")
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        event_set = session.get(EventSet, set_id)
        assert event_set is not None
        for name in ("SubmitForm", "リード"):
            with pytest.raises(InputRejected) as refused:
                preview(
                    session,
                    get_settings(),
                    event_set,
                    trigger=trigger,
                    draft=DraftMapping("lead.sold", name),
                )
            assert refused.value.errors[0].field == "event"
        event_set.kind = "crm"  # type: ignore[assignment]
        shown = preview(
            session,
            get_settings(),
            event_set,
            trigger=trigger,
            draft=DraftMapping("lead.sold", "SubmitForm"),
        )
        assert any("legacy name" in note and "'Lead'" in note for note in shown.notes)
        assert shown.request is not None
        assert [e["event"] for e in shown.request["data"]] == ["SubmitForm"]
        session.rollback()
