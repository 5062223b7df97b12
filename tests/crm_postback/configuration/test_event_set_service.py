"""The event-set service: how it writes back a name someone typed; names, TikTok IDs and
audit entries per workspace."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.configuration.event_set_service import (
    create_event_set,
    named,
    pause,
    resume,
    rotate_token,
    update_event_set,
)
from crm_postback.configuration.mapping_service import add_mapping, delete_mapping, update_mapping
from crm_postback.configuration.workspaces import add_workspace
from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings
from models import DEFAULT_WORKSPACE_ID, AuditEntry, EventSet
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES, WorkspaceScopeError
from tests.conftest import EVENT_SET_ID, TOKEN  # type: ignore[import-not-found]


@pytest.mark.parametrize(
    ("reference", "shown"),
    [
        ("acme-crm", "'acme-crm'"),
        ("7300000000000000001", "'7300000000000000001'"),
        ("213 373 4253", "(the name given)"),
        ("213-373-4253", "(the name given)"),
        ("jane@example.com", "(the name given)"),
        ("+12133734253", "(the name given)"),
    ],
)
def test_a_name_is_written_back_only_when_it_cannot_be_a_phone_or_an_email(
    reference: str, shown: str
) -> None:
    assert named(reference) == shown


# --- per workspace ---------------------------------------------------------------------


def _workspace(session: Session, name: str) -> int:
    return add_workspace(session, name).id


def _create(session: Session, name: str, source_id: str, workspace_id: int | None) -> EventSet:
    return create_event_set(
        session,
        get_settings(),
        name=name,
        source_id=source_id,
        access_token=TOKEN,
        actor="cli:ops",
        workspace_id=workspace_id,
    )


def test_names_and_tiktok_ids_are_unique_within_a_workspace_only(sqlite_db: str) -> None:
    """The clash checks filter by the workspace themselves: in a session over every workspace
    too, another workspace's rows neither block a name nor are named."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        a, b = _workspace(session, "a"), _workspace(session, "b")
        _create(session, "acme", EVENT_SET_ID, a)
        in_b = _create(session, "acme", EVENT_SET_ID, b)
        assert in_b.workspace_id == b
        with pytest.raises(InputRejected) as taken:
            _create(session, "acme", "7300000000000000099", a)
        assert str(taken.value) == "name: an event set named 'acme' exists"
        with pytest.raises(InputRejected) as configured:
            _create(session, "other", EVENT_SET_ID, a)
        assert str(configured.value) == f"event_set_id: {EVENT_SET_ID} is already configured"
        # A rename clashes only inside its own workspace.
        beta = _create(session, "beta", "7300000000000000002", b)
        with pytest.raises(InputRejected):
            update_event_set(session, beta, actor="cli:ops", name="acme")
        alpha = _create(session, "alpha", "7300000000000000003", a)
        update_event_set(session, alpha, actor="cli:ops", name="beta")  # b's beta: no clash
        session.commit()
    with session_scope(workspace=a) as session:
        assert sorted(session.scalars(select(EventSet.name))) == ["acme", "beta"]


def test_a_session_over_every_workspace_must_name_the_workspace(sqlite_db: str) -> None:
    with session_scope(workspace=ALL_WORKSPACES) as session, pytest.raises(WorkspaceScopeError):
        _create(session, "acme", EVENT_SET_ID, None)
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        assert _create(session, "acme", EVENT_SET_ID, None).workspace_id == DEFAULT_WORKSPACE_ID


def test_entries_belong_to_the_event_sets_workspace_whatever_the_session(
    sqlite_db: str,
) -> None:
    """The worker and maintenance change event sets in sessions over every workspace: their
    entries still go to the event set's workspace, never to the instance's."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        b = _workspace(session, "b")
        event_set = _create(session, "acme", EVENT_SET_ID, b)
        update_event_set(session, event_set, actor="system", test_event_code="TEST1")
        pause(event_set, "token error", actor="system")
        resume(session, event_set, actor="system")
        rotate_token(session, get_settings(), event_set, "new-token-123456", actor="system")
        mapping = add_mapping(
            session, event_set, trigger_type="lead.submitted", event_name="Lead", actor="system"
        )
        update_mapping(session, mapping, event_name="SubmitApplication", actor="system")
        delete_mapping(session, mapping, actor="system")
        session.commit()
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [e.action for e in entries] == [
        "event_set.create",
        "event_set.update",
        "event_set.pause",
        "event_set.resume",
        "event_set.token",
        "mapping.create",
        "mapping.update",
        "mapping.delete",
    ]
    assert {e.workspace_id for e in entries} == {b}


def test_pause_and_resume_work_in_a_session_scoped_to_the_workspace(
    sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
    """`resume` clears the leases of held rows with an ORM update, filtered by the session's
    workspace (a Core update on the table would be refused in a scoped session)."""
    set_id = make_event_set(mappings=())
    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        event_set = session.get(EventSet, set_id)
        assert event_set is not None
        pause(event_set, "billing", actor="cli:ops")
        resume(session, event_set, actor="cli:ops")
        session.commit()
        assert event_set.status == "active"
