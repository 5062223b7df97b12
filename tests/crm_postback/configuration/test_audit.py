"""Every change to an event set or a mapping is recorded: who, when, before, after; no token."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from crm_postback.commands.lookups import load_mapping
from crm_postback.configuration import audit
from crm_postback.configuration.event_set_service import (
    get_event_set,
    pause,
    resume,
    rotate_token,
    update_event_set,
)
from crm_postback.configuration.mapping_service import (
    add_mapping,
    delete_mapping,
    update_mapping,
)
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings
from models import AuditEntry, EventSet
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import TOKEN  # type: ignore[import-not-found]


@pytest.fixture
def acme(sqlite_db: str, make_event_set: Callable[..., int]) -> int:
    return make_event_set(mappings=())


def trail() -> list[AuditEntry]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        found = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        session.expunge_all()
        return found


def test_event_set_changes_are_recorded_without_the_token(acme: int) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = session.get(EventSet, acme)
        assert event_set is not None
        update_event_set(
            session, event_set, actor="web:alice", advertiser_id="7000000001", name="acme-crm"
        )
        update_event_set(session, event_set, actor="web:alice", name="acme-crm")  # no change
        update_event_set(session, event_set, actor="web:alice", test_event_code="TEST42")
        pause(event_set, "checking the token", actor="web:alice")
        rotate_token(session, get_settings(), event_set, "new-secret-token-9876", actor="cli:bob")
        session.commit()
    entries = trail()
    assert [e.action for e in entries] == [
        "event_set.create",
        "event_set.update",
        "event_set.update",
        "event_set.pause",
        "event_set.token",
        "event_set.resume",
    ]
    create, rename, test_code, paused, token, resumed = entries
    assert create.actor == "system" and create.after["access_token"] == "••••••••" + TOKEN[-4:]
    assert rename.actor == "web:alice" and rename.at is not None
    assert [(c.field, c.before, c.after) for c in audit.changes(rename)] == [
        ("name", "acme", "acme-crm"),
        ("advertiser_id", None, "7000000001"),
    ]
    assert [c.field for c in audit.changes(test_code)] == ["test_event_code"]
    assert paused.after == {"status": "paused", "paused_reason": "checking the token"}
    assert token.actor == "cli:bob" and token.after == {"access_token": "replaced"}
    assert resumed.after["status"] == "active"
    everything = str([(e.before, e.after, e.note) for e in entries])
    assert TOKEN not in everything and "new-secret-token-9876" not in everything
    assert all(e.event_set_id == acme for e in entries)


def test_mapping_changes_are_versioned_and_recorded(acme: int) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = get_event_set(session, "acme")
        mapping = add_mapping(
            session, event_set, trigger_type="lead.sold", event_name="lead_sold", actor="web:a"
        )
        update_mapping(session, mapping, event_name="Purchase", actor="api:a")
        update_mapping(session, mapping, event_name="Purchase", actor="api:a")  # no-op
        update_mapping(session, mapping, enabled=False, actor="api:a")
        mapping_id = mapping.id
        delete_mapping(session, mapping, actor="cli:c")
        session.commit()
        with pytest.raises(InputRejected):
            load_mapping(session, mapping_id, None)
    entries = [e for e in trail() if e.entity_type == "mapping"]
    assert [(e.action, e.actor) for e in entries] == [
        ("mapping.create", "web:a"),
        ("mapping.update", "api:a"),
        ("mapping.update", "api:a"),
        ("mapping.delete", "cli:c"),
    ]
    created, renamed, disabled, deleted = entries
    assert created.before is None and created.after["version"] == 1
    assert {(c.field, c.before, c.after) for c in audit.changes(renamed)} == {
        ("event_name", "lead_sold", "Purchase"),
        ("version", 1, 2),
    }
    assert disabled.after["enabled"] is False and disabled.after["version"] == 3
    assert deleted.after is None and deleted.before["event_name"] == "Purchase"
    assert all(e.entity_id == mapping_id for e in entries)


def test_a_rejected_change_records_nothing(acme: int) -> None:
    before = len(trail())
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = get_event_set(session, "acme")
        with pytest.raises(InputRejected):
            add_mapping(session, event_set, trigger_type="lead.sold", event_name="lead", actor="x")
        with pytest.raises(InputRejected):
            update_event_set(session, event_set, actor="x", default_currency="XYZ")
        session.commit()
    assert len(trail()) == before


def test_entries_filter_and_page(acme: int) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        event_set = get_event_set(session, "acme")
        for name in ("A1", "A2", "A3"):
            add_mapping(session, event_set, trigger_type="t.x", event_name=name, actor="x")
        session.commit()
        newest = audit.entries(session, event_set_id=acme, entity_type="mapping", limit=2)
        assert [e.after["event_name"] for e in newest] == ["A3", "A2"]
        older = audit.entries(session, event_set_id=acme, limit=5, before_id=newest[-1].id)
        assert [e.action for e in older] == ["mapping.create", "event_set.create"]
        assert audit.entry_dict(newest[0])["actor"] == "x"


def test_resume_and_resume_all_are_audited_from_the_cli_actor(
    acme: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "ops-bob")
    assert audit.cli_actor() == "cli:ops-bob"
    with session_scope(workspace=ALL_WORKSPACES) as session:
        resume(session, get_event_set(session, "acme"), actor=audit.cli_actor())
        session.commit()
    assert trail()[-1].actor == "cli:ops-bob"
