"""An event set's limited data use and maximum event age through every face: set, shown,
audited, cleared back to the event source's default, and refused when not a sane number."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from crm_postback.commands.manage_event_sets import UpdateEventSet, update_event_set
from crm_postback.commands.unit_of_work import Actor
from crm_postback.core.errors import InputRejected
from models import DEFAULT_WORKSPACE_ID, EventSet, Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.crm_postback.commands.conftest import add_acme  # type: ignore[import-not-found]
from tests.crm_postback.commands.faces import (  # type: ignore[import-not-found]
    Face,
    audit_since,
    last_audit_id,
)

OWNER = Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER, operator=True)


def settings_of(name: str = "acme") -> tuple[bool, float | None]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        es = session.scalars(select(EventSet).where(EventSet.name == name)).one()
        return es.limited_data_use, es.max_event_age_days


def change(face: Face, set_id: int, limited: bool, days: float | None) -> tuple[int, str]:
    """Sets both through the face; (status, what it answered)."""
    if face.name == "cli":
        age = "default" if days is None else f"{days:g}"
        flag = "--limited-data-use" if limited else "--no-limited-data-use"
        code, out = face.cli("event-set", "edit", "acme", flag, "--max-event-age-days", age)
        return (200 if code == 0 else 422), out
    if face.name == "page":
        fields: dict[str, Any] = {
            "name": "acme",
            "lead_event_source": "crm-postback",
            "max_event_age_days": "" if days is None else f"{days:g}",
        }
        if limited:
            fields["limited_data_use"] = "on"
        response = face.post_form(f"/event-sets/{set_id}/edit", **fields)
        return (200 if response.status_code == 303 else response.status_code), response.text
    response = face.api.patch(
        "/admin/api/event-sets/acme",
        json={"limited_data_use": limited, "max_event_age_days": days},
    )
    return response.status_code, response.text


def test_set_show_audit_and_clear(face: Face, make_event_set: Callable[..., int]) -> None:
    set_id = make_event_set()
    assert settings_of() == (False, None)
    mark = last_audit_id()
    assert change(face, set_id, True, 5)[0] == 200
    assert settings_of() == (True, 5.0)
    [entry], actors = audit_since(mark)
    assert entry["action"] == "event_set.update" and actors == {face.actor}
    assert (entry["before"]["limited_data_use"], entry["before"]["max_event_age_days"]) == (
        False,
        None,
    )
    assert (entry["after"]["limited_data_use"], entry["after"]["max_event_age_days"]) == (True, 5.0)

    mark = last_audit_id()
    assert change(face, set_id, True, 5)[0] == 200
    assert audit_since(mark)[0] == []  # the same values: nothing changed

    assert change(face, set_id, False, None)[0] == 200
    assert settings_of() == (False, None)

    # Shown with the default when the set has none of its own.
    if face.name == "cli":
        out = face.cli("event-set", "show", "acme")[1]
        assert "limited_data_use=false max_event_age_days=28 (crm default)" in out
        assert "max_event_age_days=28 (crm default)" in face.cli("event-set", "list")[1]
    elif face.name == "page":
        assert face.page_client is not None
        page = face.page_client.get(f"/admin/event-sets/{set_id}").text
        assert 'data-setting="max_event_age_days">28 days' in page and "(crm default)" in page
        form = face.page_client.get(f"/admin/event-sets/{set_id}/edit").text
        assert 'placeholder="default: 28 (crm)"' in form
    else:
        body = face.api.get("/admin/api/event-sets/acme").json()
        assert body["limited_data_use"] is False
        assert (body["max_event_age_days"], body["effective_max_event_age_days"]) == (None, 28)


@pytest.mark.parametrize("days", [0, -1, 366, 1e308])
def test_an_age_out_of_range_is_refused(
    face: Face, make_event_set: Callable[..., int], days: float
) -> None:
    set_id = make_event_set()
    status, said = change(face, set_id, True, days)
    assert status in (400, 422), said
    assert "max_event_age_days" in said or "at most 365" in said
    assert settings_of() == (False, None)


@pytest.mark.parametrize(
    "body",
    [
        {"max_event_age_days": "5"},
        {"max_event_age_days": True},
        {"limited_data_use": "yes"},
        {"limited_data_use": 1},
        {"max_event_age_days": [5]},
    ],
)
def test_api_refuses_other_types(
    api: Any, make_event_set: Callable[..., int], sqlite_db: str, body: dict[str, Any]
) -> None:
    make_event_set()
    response = api.patch("/admin/api/event-sets/acme", json=body)
    assert response.status_code == 422, response.text
    assert settings_of() == (False, None)


def test_nan_and_infinity_are_refused_by_the_command(
    make_event_set: Callable[..., int], sqlite_db: str
) -> None:
    make_event_set()
    for days in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(InputRejected) as refused:
            update_event_set(UpdateEventSet("acme", max_event_age_days=days), OWNER)
        assert refused.value.errors[0].field == "max_event_age_days"
    with pytest.raises(InputRejected):
        update_event_set(UpdateEventSet("acme", limited_data_use="yes"), OWNER)  # type: ignore[arg-type]
    assert settings_of() == (False, None)


def test_add_with_the_settings(face: Face) -> None:
    answer = add_acme(
        face,
        cli_options=[
            "--kind",
            "web",
            "--event-set-id",
            "CPIXEL0000000001",
            "--limited-data-use",
            "--max-event-age-days",
            "2.5",
        ],
        form={
            "event_set_id": "CPIXEL0000000001",
            "kind": "web",
            "lead_event_source": "crm-postback",
            "limited_data_use": "on",
            "max_event_age_days": "2.5",
        },
        body={
            "event_set_id": "CPIXEL0000000001",
            "kind": "web",
            "limited_data_use": True,
            "max_event_age_days": 2.5,
        },
    )
    if face.name == "cli":
        assert "limited_data_use=true max_event_age_days=2.5" in answer
    elif face.name == "api":
        assert json.loads(answer)["effective_max_event_age_days"] == 2.5
    assert settings_of() == (True, 2.5)


def test_page_refuses_a_typed_word_for_days(
    admin_client: Any, make_event_set: Callable[..., int]
) -> None:
    client, csrf = admin_client
    set_id = make_event_set()
    response = client.post(
        f"/admin/event-sets/{set_id}/edit",
        data={
            "csrf_token": csrf,
            "name": "acme",
            "lead_event_source": "x",
            "max_event_age_days": "ten",
        },
    )
    assert response.status_code == 400
    assert 'data-field="max_event_age_days"' in response.text
    assert settings_of() == (False, None)
